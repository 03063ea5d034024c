"""Config and I/O helpers shared by the scripts: errors, devices, seeding, atomic writes."""
from __future__ import annotations

import argparse
import errno
import itertools
import json
import math
import os
import random
import re
import signal
import sys
import tempfile
from typing import Any, Callable

import numpy as np
import torch

import BigGAN
import DiffAugment
import stages


class UsageError(Exception):
    """A bad input from the user: the message says what is wrong and what to do."""


def run_main(main: Callable[[], Any]) -> None:
    """Run a script's main; a UsageError becomes one clear line on stderr and exit code 2."""
    try:
        main()
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def pick_device(requested: str | None = None) -> torch.device:
    """The one place the device is chosen: the request, else cuda if available, else cpu."""
    if requested:
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UsageError(f"--device {requested} asked for CUDA, but no CUDA device is available; "
                             "use --device cpu or leave --device out")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_rng(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def first_line(err: BaseException, limit: int = 200) -> str:
    """An exception as one line for an error message: its first line (torch's messages run long)."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:limit]


# ---------------------------------------------------------------------------------------------
# Writing files: atomically, and every failure one line.

TEMP_PREFIX = ".tmp_"  # write_atomically's temporaries; the next start of a run removes leftovers


class WriteError(UsageError):
    """A file could not be written (full disk, no permission, read-only file system): the message
    says what failed, what was kept and what to do; whoever knows more (a training run: its last
    checkpoint) may add to it."""


def describe_write_error(err: OSError, where: str, action: str) -> str:
    """One line for an OSError while writing in `where` (a file or folder)."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"no space left on device in {where} to {action}: free space there, or write elsewhere "
                "(--base_dir, or the --weights_root / --logs_root / --samples_root / --data_root it is under)")
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason = "read-only file system" if err.errno == errno.EROFS else "permission denied"
        return (f"cannot write to {where} to {action}: {reason}; make it writable, or write elsewhere "
                "(--base_dir, or the --weights_root / --logs_root / --samples_root / --data_root it is under)")
    return f"cannot {action} in {where}: {err.strerror or err}"


class _RecordingWriter:
    """A binary file whose write remembers the OSError it raised: torch.save reports some failed
    writes as a RuntimeError ('unexpected pos ...') that has lost the errno."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self.f.flush()


def torch_save(obj: Any, f) -> None:
    """torch.save into an open binary file; a failed write raises the OSError behind it."""
    writer = _RecordingWriter(f)
    try:
        torch.save(obj, writer)
    except Exception:
        if writer.error is not None:
            raise writer.error from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def replace_atomically(path: str, write_path: Callable[[str], None]) -> None:
    """write_path(tmp) fills a temp file next to path, which then replaces path in one rename, so
    a crash never leaves half a file (and the temp file never outlives a failure). A full disk or a
    folder that cannot be written is a WriteError; path keeps what it held."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX, suffix=os.path.basename(path))
        os.close(fd)
        write_path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        _kill_before_replace_for_tests()
        os.replace(tmp, path)
    except OSError as err:
        kept = f"{path} is unchanged" if os.path.exists(path) else f"nothing was written to {path}"
        raise WriteError(f"{describe_write_error(err, folder, f'write {os.path.basename(path)}')}; {kept}") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


_replacements = itertools.count(1)


def _kill_before_replace_for_tests() -> None:
    """Fault injection, for tests only: CGT_KILL_AT_OUTPUT=K SIGKILLs the process right before the
    K-th atomic replace (the worst moment: the file is written, not yet in place)."""
    kill_at = os.environ.get("CGT_KILL_AT_OUTPUT")
    if next(_replacements) == int(kill_at or 0):
        os.kill(os.getpid(), signal.SIGKILL)


def remove_stale_temporaries(paths: list[str]) -> None:
    """Remove what killed writers of these files left (TEMP_PREFIX + random + the file's name)."""
    for path in paths:
        folder, name = os.path.split(os.path.abspath(path))
        if os.path.isdir(folder):
            for entry in os.listdir(folder):
                if entry.startswith(TEMP_PREFIX) and entry.endswith(name) and len(entry) > len(TEMP_PREFIX) + len(name):
                    os.remove(os.path.join(folder, entry))


def write_atomically(path: str, write: Callable, binary: bool = False) -> None:
    """write(file) into a temp file next to path, then rename it (replace_atomically)."""
    def write_file(tmp: str) -> None:
        with open(tmp, "wb" if binary else "w", newline=None if binary else "") as f:
            write(f)
    replace_atomically(path, write_file)


def atomic_save(obj: Any, path: str) -> None:
    """torch.save, written atomically."""
    write_atomically(path, lambda f: torch_save(obj, f), binary=True)


def append_jsonl(path: str, record: dict) -> None:
    """One JSON line at the end of a log; a failed write is a WriteError (earlier lines stay)."""
    line = json.dumps(record) + "\n"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "a") as f:
            f.write(line)
    except OSError as err:
        raise WriteError(f"{describe_write_error(err, path, 'append to the log')}; its earlier lines are intact") from None


# ---------------------------------------------------------------------------------------------
# Command-line configuration: BigGAN-PyTorch's flag names and defaults, plus cGANTransfer's.

# Argument types: a bad value is refused at parse time by argparse, in one line naming the flag
# ("error: argument --save_every: must be at least 1, got 0"), with exit code 2.

def at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    parse.__name__ = "integer"  # argparse names the type in "invalid integer value: 'x'"
    return parse


def float_in(low: float, high: float = math.inf, low_open: bool = False, high_open: bool = False) -> Callable[[str], float]:
    """A finite float in [low, high] (an open end with low_open / high_open)."""
    def parse(text: str) -> float:
        value = float(text)
        below = value <= low if low_open else value < low
        above = value >= high if high_open else value > high
        if not math.isfinite(value) or below or above:
            interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open or high == math.inf else ']'}"
            raise argparse.ArgumentTypeError(f"must be a number in {interval}, got {text}")
        return value
    parse.__name__ = "number"
    return parse


POSITIVE = float_in(0, low_open=True)
NON_NEGATIVE = float_in(0)
BETA = float_in(0, 1, high_open=True)


def attention_resolutions(text: str) -> str:
    """G_attn / D_attn: resolutions joined by '_' (0: none). BigGAN.py would raise on a non-number
    and silently place no attention at a size no block has (48), so both are refused here; the
    text itself is kept, since checkpoints compare it as saved."""
    sizes = {0} | {2 ** k for k in range(2, 10)}  # every block size of G_arch and D_arch, 4 to 512
    if not all(item.isdigit() and int(item) in sizes for item in text.split("_")):
        raise argparse.ArgumentTypeError(f"must be block resolutions (powers of two) joined by _, e.g. 64 or "
                                         f"32_64 (0: none), got {text!r}")
    return text


def device_name(text: str) -> str:
    """A device torch can name ('' = choose later); whether CUDA exists is pick_device's business."""
    if text:
        try:
            torch.device(text)
        except RuntimeError:
            raise argparse.ArgumentTypeError(f"must be a torch device such as cpu, cuda or cuda:1, "
                                             f"got {text!r}") from None
    return text


class HelpFormatter(argparse.HelpFormatter):
    """Appends the default to a flag's help where it says something ('' and off switches do not)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        switch = action.nargs == 0  # --flag / --no_flag: the help says what giving it does
        unsaid = action.default is None or action.default in ("", argparse.SUPPRESS)
        if switch or unsaid or "(default" in help_text or not action.option_strings:
            return help_text
        return help_text + " (default: %(default)s)"


# Sizes both G and D have an architecture for (BigGAN.G_arch also knows 512, D_arch does not).
RESOLUTIONS = sorted(set(BigGAN.G_arch()) & set(BigGAN.D_arch()))


# Official flags accepted so that BigGAN-PyTorch/cGANTransfer scripts keep working, but without
# effect here (dest -> default): giving another value warns once.
IGNORED_FLAGS = {"toggle_grads": True, "logstyle": "%3.3e"}
_IGNORED_HELP = "accepted for compatibility with BigGAN-PyTorch scripts; has no effect here"


def diffaugment_policy(text: str) -> str:
    """--DiffAugment: comma-separated DiffAugment policies ('' = off), normalized ('color, cutout' →
    'color,cutout'); an unknown name is refused at parse time."""
    try:
        return ",".join(DiffAugment.parse_policy(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_data_flags(p: argparse.ArgumentParser) -> None:
    import datasets  # here, not at the top: datasets imports utils
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="I128", type=datasets.dataset_name, metavar="DATASET",
                   help="dataset name: one of " + ", ".join(datasets.DATASETS) + " (folder under --data_root and "
                        "resolution from datasets.DATASETS, e.g. I128: ImageNet folder, 128 px; Toy32: the toy new "
                        "classes), or any prepared folder under data_root (prepare_dataset.py; its dataset.json "
                        "gives the resolution; a folder without one needs --resolution)")
    g.add_argument("--augment", action="store_true", help="random horizontal flips of the training images")
    g.add_argument("--DiffAugment", type=diffaugment_policy, default="", metavar="POLICY",
                   help="differentiable augmentations of every image D sees, real and fake, in the D and G steps "
                        "(Zhao et al. 2020): comma-separated policies among color, translation, cutout, e.g. "
                        "color,translation,cutout ('' = off: D sees the images as they are)")
    g.add_argument("--num_workers", type=at_least(0), default=8, help="data loader processes (0: load in the main process)")
    g.add_argument("--no_pin_memory", action="store_false", dest="pin_memory",
                   help="do not pin loaded batches in page-locked memory (pinning only applies on CUDA)")
    g.add_argument("--shuffle", action="store_true", help="reshuffle the data every epoch (default sampler)")
    g.add_argument("--load_in_mem", action="store_true", help="read every image (or the HDF5 cache) into memory once")
    g.add_argument("--hdf5", action="store_true", help="read the HDF5 cache built by make_hdf5.py instead of the image folder")
    g.add_argument("--use_multiepoch_sampler", action="store_true",
                   help="BigGAN-PyTorch's sampler: one shuffled pass over all --num_epochs epochs, resumable at any batch")


def add_model_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model (read from a checkpoint's saved config by sample.py and --resume)")
    g.add_argument("--model", default="BigGAN", choices=["BigGAN"], help="the model file (BigGAN-PyTorch's flag; only BigGAN)")
    g.add_argument("--G_param", default="SN", choices=["SN", "none"], help="parameterization of G's layers: spectral norm or plain")
    g.add_argument("--D_param", default="SN", choices=["SN", "none"], help="parameterization of D's layers: spectral norm or plain")
    g.add_argument("--G_ch", type=at_least(1), default=64, help="G's channel multiplier (ImageNet 128 px: 96; CIFAR: 64)")
    g.add_argument("--D_ch", type=at_least(1), default=64, help="D's channel multiplier")
    g.add_argument("--D_wide", action=argparse.BooleanOptionalAction, default=True,
                   help="wide D blocks: the hidden width is the output width (BigGAN); --no-D_wide: the input width")
    g.add_argument("--resolution", type=int, default=0, choices=[0, *RESOLUTIONS],
                   help="image size in pixels (0: the dataset's)")
    g.add_argument("--dim_z", type=at_least(1), default=128, help="size of z")
    g.add_argument("--z_var", type=POSITIVE, default=1.0, help="variance of z's normal distribution")
    g.add_argument("--shared_dim", type=at_least(0), default=0,
                   help="size of the shared class embedding (0: dim_z); with --G_shared")
    g.add_argument("--G_shared", action="store_true", help="one class embedding shared by all of G's conditional BNs (BigGAN)")
    g.add_argument("--hier", action="store_true", help="hierarchical z: a chunk of z joins each block's class input")
    g.add_argument("--cross_replica", action="store_true", help="synchronize BN statistics across torchrun processes (CUDA)")
    g.add_argument("--mybn", action="store_true", help="BigGAN-PyTorch's BN, which can gather standing statistics")
    g.add_argument("--G_nl", default="relu", choices=sorted(BigGAN.ACTIVATIONS), help="G's activation (ir = inplace_relu)")
    g.add_argument("--D_nl", default="relu", choices=sorted(BigGAN.ACTIVATIONS), help="D's activation (ir = inplace_relu)")
    g.add_argument("--G_attn", type=attention_resolutions, default="64",
                   help="resolutions of G's self-attention blocks, e.g. 64 or 32_64 (0: none)")
    g.add_argument("--D_attn", type=attention_resolutions, default="64",
                   help="resolutions of D's self-attention blocks, e.g. 64 or 32_64 (0: none)")
    g.add_argument("--norm_style", default="bn", choices=["bn", "in", "gn", "nonorm"],
                   help="G's normalization: batch, instance, group norm, or none")
    g.add_argument("--BN_eps", type=POSITIVE, default=1e-5, help="epsilon of G's batch norms")
    g.add_argument("--SN_eps", type=POSITIVE, default=1e-8, help="epsilon of the spectral norm's power iteration")
    g.add_argument("--num_G_SVs", type=at_least(1), default=1, help="singular values G's spectral norm tracks")
    g.add_argument("--num_D_SVs", type=at_least(1), default=1, help="singular values D's spectral norm tracks")
    g.add_argument("--num_G_SV_itrs", type=at_least(1), default=1, help="power iterations per forward pass in G")
    g.add_argument("--num_D_SV_itrs", type=at_least(1), default=1, help="power iterations per forward pass in D")
    g.add_argument("--G_init", default="ortho", choices=["ortho", "N02", "glorot", "xavier"], help="initialization of G's weights")
    g.add_argument("--D_init", default="ortho", choices=["ortho", "N02", "glorot", "xavier"], help="initialization of D's weights")
    g.add_argument("--skip_init", action="store_true", help="skip the initialization (the weights are loaded anyway)")


def add_transfer_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("transfer (cGANTransfer)")
    g.add_argument("--stage", default="BN", choices=stages.NAMES,
                   help="BN: learn the new classes' BN parameters by knowledge propagation; FT: fine-tune G "
                        "(all but combination and prior); pretrain: a plain BigGAN from scratch (a source model, "
                        "or the from-scratch baseline); baselines whose new classes start at the old classes' mean: "
                        "finetune (TransferGAN: everything trains), BN_only (only the new classes' own BN "
                        "parameters: the ablation of knowledge propagation). See stages.py")
    g.add_argument("--n_classes", type=at_least(0), default=0,
                   help="classes of the data: the new classes when transferring (0: count them in the data)")
    g.add_argument("--n_pretrain_classes", type=at_least(0), default=0,
                   help="classes of the pretrained source model (0 for --stage pretrain)")
    g.add_argument("--kp_variant", default="imagenet", choices=["imagenet", "cifar"],
                   help="official variant of the knowledge-propagation layers: imagenet (spectrally normalized, "
                        "prior without bias) or cifar (plain linear layers, prior with bias)")
    g.add_argument("--freezeD_layer", type=at_least(-1), default=-1,
                   help="FreezeD: keep D's first K blocks at their pretrained values (-1: train all of D)")
    g.add_argument("--comb_init", default="official", choices=["official", "mean"],
                   help="official: the combination layers start as G_init leaves them (random weights, PyTorch's "
                        "default biases); mean: every new class starts at the old classes' mean BN parameters, as "
                        "the finetune/BN_only baselines do (needs --kp_variant cifar)")
    g.add_argument("--comb_l1_scale", type=NON_NEGATIVE, default=0.0, help="L1 penalty on the combination weights")
    g.add_argument("--res_l2_scale", type=NON_NEGATIVE, default=0.0, help="L2 penalty on the BN residuals")


def add_optimization_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("optimization")
    g.add_argument("--G_lr", type=POSITIVE, default=5e-5, help="G's Adam learning rate")
    g.add_argument("--D_lr", type=POSITIVE, default=2e-4, help="D's Adam learning rate")
    g.add_argument("--G_B1", type=BETA, default=0.0, help="G's Adam beta1")
    g.add_argument("--D_B1", type=BETA, default=0.0, help="D's Adam beta1")
    g.add_argument("--G_B2", type=BETA, default=0.999, help="G's Adam beta2")
    g.add_argument("--D_B2", type=BETA, default=0.999, help="D's Adam beta2")
    g.add_argument("--adam_eps", type=POSITIVE, default=1e-8, help="Adam's epsilon (both models)")
    g.add_argument("--G_ortho", type=NON_NEGATIVE, default=0.0, help="BigGAN's orthogonal regularization of G (0: off)")
    g.add_argument("--D_ortho", type=NON_NEGATIVE, default=0.0, help="orthogonal regularization of D (0: off)")
    g.add_argument("--toggle_grads", action=argparse.BooleanOptionalAction, default=True, help=_IGNORED_HELP +
                   " (requires_grad is always toggled between the D and G updates)")
    g.add_argument("--batch_size", type=at_least(1), default=64, help="images per D batch")
    g.add_argument("--num_G_accumulations", type=at_least(1), default=1, help="G batches accumulated per G update")
    g.add_argument("--num_D_steps", type=at_least(1), default=2, help="D updates per iteration")
    g.add_argument("--num_D_accumulations", type=at_least(1), default=1, help="batches accumulated per D update")
    g.add_argument("--split_D", action="store_true", help="run D on fake and real batches separately")
    g.add_argument("--num_epochs", type=at_least(1), default=100, help="epochs to train (when --num_iters is 0)")
    g.add_argument("--num_iters", type=at_least(0), default=0, help="stop after this many iterations (0: run --num_epochs)")
    g.add_argument("--ema", action="store_true", help="keep an exponential moving average of G (G_ema)")
    g.add_argument("--ema_decay", type=BETA, default=0.9999,
                   help="G_ema = decay * G_ema + (1 - decay) * G after every iteration, in [0, 1)")
    g.add_argument("--ema_start", type=at_least(0), default=0, help="iteration from which G_ema averages (before: copies G)")


def add_running_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("devices, precision, seed")
    g.add_argument("--seed", type=at_least(0), default=0, help="random seed")
    g.add_argument("--device", type=device_name, default="",
                   help="cpu, cuda, cuda:1 ... (default: cuda if available, else cpu)")
    g.add_argument("--parallel", action="store_true", help="DataParallel over the visible GPUs")
    g.add_argument("--amp", default="auto", choices=["auto", "none", "bf16", "fp16"],
                   help="autocast precision of the forward passes: auto = bf16 where the hardware runs it "
                        "natively (AMX/AVX512-BF16 CPUs, bf16 GPUs), else fp32; none = fp32 (the official "
                        "numerics); fp16 with loss scaling, CUDA only")
    g.add_argument("--channels_last", nargs="?", const="on", default="auto", choices=["auto", "on", "off"],
                   help="G's and D's tensors in the channels_last (NHWC) memory format, the same function up to "
                        "rounding; auto = on where autocast runs (--amp bf16/fp16, where it measured faster), off "
                        "in fp32 (the official numerics); --channels_last alone = on")
    g.add_argument("--fused_resampling", nargs="?", const="on", default="auto", choices=["auto", "on", "off"],
                   help="fold G's 2x upsampling and D's average pooling into the adjacent 3x3 convolutions "
                        "(16 instead of 36 multiply-adds per output), the same function up to rounding; auto = on "
                        "where autocast runs, off in fp32; --fused_resampling alone = on")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile the training step's G_D module (compiles at the first iterations; "
                        "falls back to eager with a message where compiling fails)")
    g.add_argument("--G_batch_size", type=at_least(0), default=0,
                   help="G's batch for its update, sample sheets and metrics (0: --batch_size)")


def add_evaluation_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("evaluation and sampling")
    g.add_argument("--use_ema", action="store_true", help="sample and evaluate with G_ema (needs --ema in training)")
    g.add_argument("--G_eval_mode", action="store_true",
                   help="sample in eval mode (BN running statistics) rather than with batch statistics")
    g.add_argument("--accumulate_stats", action="store_true",
                   help="gather standing BN statistics before sampling (needs --mybn)")
    g.add_argument("--num_standing_accumulations", type=at_least(1), default=16,
                   help="batches the standing statistics average over")
    g.add_argument("--no_fid", action="store_true",
                   help="train.py: skip the in-loop metrics (FID, IS, KMMD); sample.py: leave FID out (the "
                        "reference moments are not read)")
    g.add_argument("--test_every", type=at_least(1), default=5000, help="iterations between in-loop evaluations")
    g.add_argument("--which_best", default="IS", choices=["IS", "FID", "KMMD"], help="metric that picks the best checkpoints")
    g.add_argument("--num_inception_images", type=at_least(1), default=50000, help="samples per evaluation")
    g.add_argument("--kmmd", action="store_true", help="also compute KMMD (needs the reference features file)")
    g.add_argument("--mfid", action="store_true", help="also compute mFID (needs per-class reference statistics)")
    g.add_argument("--backbone", default="inception", choices=["inception", "tf_inception", "classifier"],
                   help="metric feature space: torchvision's Inception, TF Inception (pytorch-fid), or the toy classifier")
    g.add_argument("--inception_weights", default="", help="local weights file of the metric backbone")


def add_io_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("paths, checkpoints, resuming")
    g.add_argument("--base_dir", default="",
                   help="root holding data/ weights/ logs/ samples/ (official cGANTransfer; default: the "
                        "current folder)")
    g.add_argument("--base_root", default="", help="same as --base_dir (BigGAN-PyTorch's name)")
    g.add_argument("--data_root", default="", help="datasets and reference statistics (default: BASE/data)")
    g.add_argument("--weights_root", default="", help="source model and experiment checkpoints (default: BASE/weights)")
    g.add_argument("--logs_root", default="", help="logs (default: BASE/logs)")
    g.add_argument("--samples_root", default="", help="sample sheets (default: BASE/samples)")
    g.add_argument("--experiment_name", default="", help="the experiment's folder name (default: made from the flags)")
    g.add_argument("--load_weights", default="", help="suffix of the checkpoint to load, e.g. best0, copy1 (default: the latest)")
    g.add_argument("--resume", action="store_true", help="continue the experiment from its checkpoint (--load_weights)")
    g.add_argument("--save_every", type=at_least(1), default=2000, help="iterations between checkpoints")
    g.add_argument("--num_save_copies", type=at_least(0), default=2,
                   help="rotating copies of the checkpoint (copy0, copy1, ...; 0: none)")
    g.add_argument("--num_best_copies", type=at_least(1), default=2, help="rotating best checkpoints (best0, best1, ...)")
    g.add_argument("--logstyle", default="%3.3e", help=_IGNORED_HELP)


def prepare_parser(description: str = "Train a (transfer) BigGAN") -> argparse.ArgumentParser:
    """train.py's flags: BigGAN-PyTorch's names and defaults, plus cGANTransfer's, in groups."""
    p = argparse.ArgumentParser(allow_abbrev=False, description=description, formatter_class=HelpFormatter)
    for add in (add_data_flags, add_model_flags, add_transfer_flags, add_optimization_flags,
                add_running_flags, add_evaluation_flags, add_io_flags):
        add(p)
    return p


# Training-only flags: the sampling parser accepts them (the official sample scripts pass the
# training flags) but leaves them out of its --help.
TRAINING_ONLY = {"augment", "num_workers", "pin_memory", "shuffle", "load_in_mem", "hdf5", "use_multiepoch_sampler",
                 "DiffAugment",
                 "freezeD_layer", "comb_init", "comb_l1_scale", "res_l2_scale", "G_lr", "D_lr", "G_B1", "D_B1",
                 "G_B2", "D_B2", "adam_eps", "G_ortho", "D_ortho", "toggle_grads", "batch_size",
                 "num_G_accumulations", "num_D_steps", "num_D_accumulations", "split_D", "num_epochs", "num_iters",
                 "ema", "ema_decay", "ema_start", "test_every", "which_best", "resume", "save_every",
                 "num_save_copies", "num_best_copies", "logstyle", "G_init", "D_init", "skip_init",
                 "channels_last", "fused_resampling", "compile"}


def prepare_sampling_parser(description: str) -> argparse.ArgumentParser:
    """Every flag of train.py, with the training-only ones hidden from --help."""
    p = prepare_parser(description)
    for action in p._actions:
        if action.dest in TRAINING_ONLY:
            action.help = argparse.SUPPRESS
    return p


def explicit_flags(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> set[str]:
    """The dests the user gave on the command line (the rest hold defaults): parsed again with
    every default suppressed."""
    defaults = [(action, action.default) for action in parser._actions]
    parser_defaults = parser._defaults
    try:
        for action, _ in defaults:
            action.default = argparse.SUPPRESS
        parser._defaults = {}
        given, _ = parser.parse_known_args(argv)
    finally:
        for action, default in defaults:
            action.default = default
        parser._defaults = parser_defaults
    return set(vars(given))


_warned_ignored: set[str] = set()


def warn_ignored_flags(config: dict) -> list[str]:
    """One line on stderr for each ignored official flag given another value than its default, once
    per process (study.py and --resume finalize several configs). Returns the flags warned about now."""
    warned = []
    for flag, default in IGNORED_FLAGS.items():
        if config.get(flag, default) != default and flag not in _warned_ignored:
            print(f"warning: --{flag} {config[flag]!r} is ignored: {_IGNORED_HELP}", file=sys.stderr)
            _warned_ignored.add(flag)
            warned.append(flag)
    return warned


def resolve_roots(config: dict) -> dict:
    """data/ weights/ logs/ samples/ under --base_dir (or --base_root), unless given one by one."""
    base = config.get("base_dir") or config.get("base_root") or "."
    config["base_dir"] = base
    for key, folder in (("data_root", "data"), ("weights_root", "weights"),
                        ("logs_root", "logs"), ("samples_root", "samples")):
        config[key] = config.get(key) or os.path.join(base, folder)
    return config


def finalize_config(config: dict) -> dict:
    """Fill the derived entries (roots under base_dir, G_batch_size, experiment name) and check
    the flags that only make sense together."""
    resolve_roots(config)
    warn_ignored_flags(config)
    needs_source_model = stages.get(config["stage"]).needs_source_model
    if not needs_source_model and config["n_pretrain_classes"]:
        raise UsageError("--stage pretrain trains a plain BigGAN: leave --n_pretrain_classes at 0")
    if needs_source_model and config["n_pretrain_classes"] <= 0:
        raise UsageError(f"--stage {config['stage']} starts from a pretrained model: give "
                         "--n_pretrain_classes (the classes of the source model, e.g. 1000)")
    if config.get("comb_init") == "mean" and config["kp_variant"] != "cifar":
        raise UsageError("--comb_init mean needs --kp_variant cifar: the imagenet variant spectrally "
                         "normalizes the combination, which then cannot hold the old classes' mean")
    config["G_batch_size"] = config["G_batch_size"] or config["batch_size"]
    config["experiment_name"] = config["experiment_name"] or name_from_config(config)
    check_experiment_name(config["experiment_name"], config["weights_root"])
    return config


# A name becomes a folder under --weights_root: nothing that could resolve onto that folder itself, the
# source model's files beside it, another folder (a path, a link) or the project's hidden files.
NOT_IN_A_NAME = re.compile(r"[/\\\x00-\x1f\x7f]")
FILE_EXTENSIONS = (".pth", ".json", ".npz", ".hdf5", ".pt")


def check_experiment_name(name: str, weights_root: str) -> None:
    """Refuse a --experiment_name whose folder would not be a fresh subfolder of weights_root of
    its own: '.', '..', paths, hidden names, file names (G.pth), a link, or an existing file."""
    folder = os.path.join(weights_root, name)
    problem = None
    if not name.strip() or name != name.strip() or name.startswith(".") or NOT_IN_A_NAME.search(name):
        problem = ("must be a plain folder name: no path separators or control characters, not starting with "
                   "'.' (so not '.' or '..'), no spaces around it")
    elif name.lower().endswith(FILE_EXTENSIONS):
        problem = "looks like a file name (the source model's G.pth and D.pth live beside the experiments)"
    elif os.path.islink(folder):
        problem = f"is a link ({folder} -> {os.readlink(folder)}); runs write only into folders of their own"
    elif os.path.exists(folder) and not os.path.isdir(folder):
        problem = f"is an existing file in {weights_root}"
    if problem:
        raise UsageError(f"--experiment_name {name!r} {problem}; choose another name")


def name_from_config(config: dict) -> str:
    parts = [config["model"], config["dataset"], config["stage"],
             f"seed{config['seed']}", f"Gch{config['G_ch']}", f"Dch{config['D_ch']}",
             f"bs{config['batch_size']}", f"Glr{config['G_lr']:.1e}", f"Dlr{config['D_lr']:.1e}"]
    if config["stage"] != "pretrain":
        parts += [f"old{config['n_pretrain_classes']}", f"new{config['n_classes']}",
                  f"l1{config['comb_l1_scale']}", f"res{config['res_l2_scale']}"]
    if config.get("comb_init", "official") != "official":
        parts.append(f"comb{config['comb_init']}")
    if config.get("freezeD_layer", -1) >= 0:
        parts.append(f"freezeD{config['freezeD_layer']}")
    if config.get("DiffAugment"):
        parts.append("DiffAug-" + config["DiffAugment"].replace(",", "-"))
    if config["hier"]:
        parts.append("hier")
    if config["G_shared"]:
        parts.append("shared")
    if config["ema"]:
        parts.append("ema")
    return "_".join(parts)


# ---------------------------------------------------------------------------------------------
# Reading files the user points at, and logs.

def load_file(path: str, what: str, hint: str) -> Any:
    """torch.load of a file the user pointed at; a missing or unreadable file is one clear error."""
    if not os.path.isfile(path):
        raise UsageError(f"{what} {path} does not exist; {hint}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a truncated or foreign file
        raise UsageError(f"{path} is not a readable {what} ({first_line(err)}); {hint}") from None


# ---------------------------------------------------------------------------------------------
# A checkpoint's saved training config.

def adopt_saved_config(config: dict, saved: dict, explicit: set[str] | None, flags: tuple[str, ...],
                       what: str) -> list[str]:
    """Take `flags` from a checkpoint's saved training config: a flag the user left out gets the
    saved value; one the user gave (explicit; None: every flag counts as given) must equal it, since
    a model built otherwise would not fit the weights, or not compute what was trained. Returns the
    flags whose value was taken from the checkpoint."""
    adopted, conflicts = [], []
    for flag in flags:
        if flag not in saved or flag not in config or saved[flag] == config[flag]:
            continue
        if explicit is None or flag in explicit:
            conflicts.append(f"--{flag} {config[flag]} (trained with {saved[flag]})")
        else:
            config[flag] = saved[flag]
            adopted.append(flag)
    if conflicts:
        raise UsageError(f"{what} was trained with other model flags than given: {', '.join(conflicts)}; "
                         "leave these flags out to use the checkpoint's values")
    return adopted
