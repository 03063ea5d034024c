"""The command-line flags of train.py and sample.py: BigGAN-PyTorch's names and defaults, plus
cGANTransfer's and this project's, in groups; and the config derived from them (roots under
--base_dir, G_batch_size, the experiment name).

Groups whose title ends in "(training)" hold what only training uses: sample.py accepts those flags
(the official sample scripts pass the training flags) but leaves them out of its --help. A bad value
is refused at parse time by argparse in one line naming the flag, exit code 2; no flag is taken from
a prefix of its name.
"""
from __future__ import annotations

import argparse
import os
import sys

import BigGAN
import checkpoints
import datasets
import DiffAugment
import run_folder
import stages
from utils import BETA, NON_NEGATIVE, POSITIVE, HelpFormatter, UsageError, at_least, device_name

TRAINING = "(training)"  # the title ending of training-only groups

# Sizes both G and D have an architecture for (BigGAN.G_arch also knows 512, D_arch does not).
RESOLUTIONS = sorted(set(BigGAN.G_arch()) & set(BigGAN.D_arch()))

# Official flags accepted so that BigGAN-PyTorch/cGANTransfer scripts keep working, but without
# effect here (dest -> default): giving another value warns once.
IGNORED_FLAGS = {"toggle_grads": True, "logstyle": "%3.3e"}
IGNORED_HELP = "accepted for compatibility with BigGAN-PyTorch scripts; has no effect here"


# ---------------------------------------------------------------------------------------------
# Argument types of this parser's flags

def attention_resolutions(text: str) -> str:
    """G_attn / D_attn: resolutions joined by '_' (0: none). BigGAN.py would raise on a non-number
    and silently place no attention at a size no block has (48), so both are refused here; the
    text itself is kept, since checkpoints compare it as saved."""
    sizes = {0} | {2 ** k for k in range(2, 10)}  # every block size of G_arch and D_arch, 4 to 512
    if not all(item.isdigit() and int(item) in sizes for item in text.split("_")):
        raise argparse.ArgumentTypeError("must be block resolutions (powers of two) joined by _, "
                                         f"e.g. 64 or 32_64 (0: none), got {text!r}")
    return text


def diffaugment_policy(text: str) -> str:
    """--DiffAugment: comma-separated DiffAugment policies ('' = off), normalized ('color, cutout' →
    'color,cutout'); an unknown name is refused at parse time."""
    try:
        return ",".join(DiffAugment.parse_policy(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def start_point(text: str) -> str:
    """--start_from EXPERIMENT[:SUFFIX] ('' = none); SUFFIX names a set as --load_weights does."""
    name, _, suffix = text.partition(":")
    if text and (not name or name.startswith(".") or "/" in name):
        raise argparse.ArgumentTypeError("must be an experiment name, optionally with :SUFFIX "
                                         f"(e.g. mydata_BN:best), got {text!r}")
    try:
        checkpoints.set_name(suffix)
    except argparse.ArgumentTypeError as err:
        raise argparse.ArgumentTypeError(f"its :SUFFIX {err}") from None
    return text


# ---------------------------------------------------------------------------------------------
# The groups, as --help shows them

def add_data_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="I128", type=datasets.dataset_name, metavar="DATASET",
                   help="dataset name: one of " + ", ".join(datasets.DATASETS) + " (folder under "
                        "--data_root and resolution from datasets.DATASETS, e.g. I128: ImageNet "
                        "folder, 128 px; Toy32: the toy new classes), or any prepared folder under "
                        "data_root (prepare_dataset.py; its dataset.json gives the resolution; a "
                        "folder without one needs --resolution)")


def add_model_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model (read from a checkpoint's saved config by sample.py, --resume "
                             "and --start_from, and from a source model's config.json)")
    g.add_argument("--model", default="BigGAN", choices=["BigGAN"],
                   help="the model file (BigGAN-PyTorch's flag; only BigGAN)")
    g.add_argument("--G_param", default="SN", choices=["SN", "none"],
                   help="parameterization of G's layers: spectral norm or plain")
    g.add_argument("--D_param", default="SN", choices=["SN", "none"],
                   help="parameterization of D's layers: spectral norm or plain")
    g.add_argument("--G_ch", type=at_least(1), default=64,
                   help="G's channel multiplier (ImageNet 128 px: 96; CIFAR: 64)")
    g.add_argument("--D_ch", type=at_least(1), default=64, help="D's channel multiplier")
    g.add_argument("--D_wide", action=argparse.BooleanOptionalAction, default=True,
                   help="wide D blocks: the hidden width is the output width (BigGAN); "
                        "--no-D_wide: the input width")
    g.add_argument("--resolution", type=int, default=0, choices=[0, *RESOLUTIONS],
                   help="image size in pixels (0: the dataset's)")
    g.add_argument("--dim_z", type=at_least(1), default=128, help="size of z")
    g.add_argument("--z_var", type=POSITIVE, default=1.0,
                   help="variance of z's normal distribution")
    g.add_argument("--shared_dim", type=at_least(0), default=0,
                   help="size of the shared class embedding (0: dim_z); with --G_shared")
    g.add_argument("--G_shared", action="store_true",
                   help="one class embedding shared by all of G's conditional BNs (BigGAN)")
    g.add_argument("--hier", action="store_true",
                   help="hierarchical z: a chunk of z joins each block's class input")
    g.add_argument("--cross_replica", action="store_true",
                   help="synchronize BN statistics across torchrun processes (CUDA)")
    g.add_argument("--mybn", action="store_true",
                   help="BigGAN-PyTorch's BN, which can gather standing statistics")
    g.add_argument("--G_nl", default="relu", choices=sorted(BigGAN.ACTIVATIONS),
                   help="G's activation (ir = inplace_relu)")
    g.add_argument("--D_nl", default="relu", choices=sorted(BigGAN.ACTIVATIONS),
                   help="D's activation (ir = inplace_relu)")
    g.add_argument("--G_attn", type=attention_resolutions, default="64",
                   help="resolutions of G's self-attention blocks, e.g. 64 or 32_64 (0: none)")
    g.add_argument("--D_attn", type=attention_resolutions, default="64",
                   help="resolutions of D's self-attention blocks, e.g. 64 or 32_64 (0: none)")
    g.add_argument("--norm_style", default="bn", choices=["bn", "in", "gn", "nonorm"],
                   help="G's normalization: batch, instance, group norm, or none")
    g.add_argument("--BN_eps", type=POSITIVE, default=1e-5, help="epsilon of G's batch norms")
    g.add_argument("--SN_eps", type=POSITIVE, default=1e-8,
                   help="epsilon of the spectral norm's power iteration")
    g.add_argument("--num_G_SVs", type=at_least(1), default=1,
                   help="singular values G's spectral norm tracks")
    g.add_argument("--num_D_SVs", type=at_least(1), default=1,
                   help="singular values D's spectral norm tracks")
    g.add_argument("--num_G_SV_itrs", type=at_least(1), default=1,
                   help="power iterations per forward pass in G")
    g.add_argument("--num_D_SV_itrs", type=at_least(1), default=1,
                   help="power iterations per forward pass in D")


def add_transfer_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("transfer (cGANTransfer)")
    g.add_argument("--stage", default="BN", choices=stages.NAMES,
                   help="BN: learn the new classes' BN parameters by knowledge propagation; FT: "
                        "fine-tune G (all but combination and prior); pretrain: a plain BigGAN "
                        "from scratch (a source model, or the from-scratch baseline); baselines "
                        "whose new classes start at the old classes' mean: finetune (TransferGAN: "
                        "everything trains), BN_only (only the new classes' own BN parameters: the "
                        "ablation of knowledge propagation). See stages.py")
    g.add_argument("--n_classes", type=at_least(0), default=0,
                   help="classes of the data: the new classes when transferring (0: count them in "
                        "the data)")
    g.add_argument("--n_pretrain_classes", type=at_least(0), default=0,
                   help="classes of the pretrained source model (0: from its config.json or "
                        "--start_from; 0 for --stage pretrain)")
    g.add_argument("--kp_variant", default="imagenet", choices=["imagenet", "cifar"],
                   help="official variant of the knowledge-propagation layers: imagenet "
                        "(spectrally normalized, prior without bias) or cifar (plain linear "
                        "layers, prior with bias)")


def add_running_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("devices, precision, seed")
    g.add_argument("--seed", type=at_least(0), default=0, help="random seed")
    g.add_argument("--device", type=device_name, default="",
                   help="cpu, cuda, cuda:1 ... (default: cuda if available, else cpu)")
    g.add_argument("--parallel", action="store_true", help="DataParallel over the visible GPUs")
    g.add_argument("--threads", type=at_least(0), default=0,
                   help="CPU threads of this process (0: torch's choice; on a shared CPU, 1 per "
                        "run is fastest)")
    g.add_argument("--amp", default="auto", choices=["auto", "none", "bf16", "fp16"],
                   help="autocast precision of the forward passes: auto = bf16 where the hardware "
                        "runs it natively (AMX/AVX512-BF16 CPUs, bf16 GPUs), else fp32; none = "
                        "fp32; fp16 with loss scaling, CUDA only")
    g.add_argument("--official_numerics", action="store_true",
                   help="compute as the official code does: fp32, contiguous NCHW tensors, unfused "
                        "resampling (the faithfulness tests run this; by default the step is the "
                        "same function computed faster, equal up to rounding: bf16 where native, "
                        "channels_last and fused resampling)")
    g.add_argument("--G_batch_size", type=at_least(0), default=0,
                   help="G's batch for its update, sample sheets and metrics (0: --batch_size)")


def add_evaluation_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("evaluation and sampling")
    g.add_argument("--use_ema", action="store_true",
                   help="sample and evaluate with G_ema (needs --ema in training)")
    g.add_argument("--G_eval_mode", action="store_true",
                   help="sample in eval mode (BN running statistics) rather than with batch "
                        "statistics")
    g.add_argument("--accumulate_stats", action="store_true",
                   help="gather standing BN statistics before sampling (needs --mybn)")
    g.add_argument("--num_standing_accumulations", type=at_least(1), default=16,
                   help="batches the standing statistics average over")
    g.add_argument("--no_fid", action="store_true",
                   help="train.py: skip the in-loop metrics (FID, IS, KMMD); sample.py: leave FID "
                        "out (the reference moments are not read)")
    g.add_argument("--num_inception_images", type=at_least(1), default=50000,
                   help="samples per evaluation")
    g.add_argument("--kmmd", action="store_true",
                   help="also compute KMMD (needs the reference features file)")
    g.add_argument("--mfid", action="store_true",
                   help="also compute mFID (needs per-class reference statistics)")
    g.add_argument("--precision_recall", action="store_true",
                   help="also compute precision and recall (Kynkaanniemi et al. 2019, k = 3; needs "
                        "the reference features file)")
    g.add_argument("--backbone", default="inception",
                   choices=["inception", "tf_inception", "classifier"],
                   help="metric feature space: torchvision's Inception, TF Inception "
                        "(pytorch-fid), or a classifier trained on the classes "
                        "(train_classifier.py)")
    g.add_argument("--inception_weights", default="",
                   help="local weights file of the metric backbone")


def add_path_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("paths")
    g.add_argument("--base_dir", default="",
                   help="root holding data/ weights/ logs/ samples/ (official cGANTransfer; "
                        "default: the current folder)")
    g.add_argument("--base_root", default="", help="same as --base_dir (BigGAN-PyTorch's name)")
    g.add_argument("--data_root", default="",
                   help="datasets and reference statistics (default: BASE/data)")
    g.add_argument("--weights_root", default="",
                   help="source model and experiment checkpoints (default: BASE/weights)")
    g.add_argument("--logs_root", default="", help="logs (default: BASE/logs)")
    g.add_argument("--samples_root", default="", help="sample sheets (default: BASE/samples)")
    g.add_argument("--experiment_name", default="",
                   help="the experiment's folder name (default: made from the flags)")
    g.add_argument("--load_weights", default="", type=checkpoints.set_name,
                   help="the checkpoint set to load: latest (the default), copy0, copy1, ..., "
                        "best0, ..., or best (the best of the best sets by the run's --which_best)")


# Training only (hidden from sample.py's --help)

def add_data_loading_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(f"data loading {TRAINING}")
    g.add_argument("--augment", action="store_true",
                   help="random horizontal flips of the training images")
    g.add_argument("--DiffAugment", type=diffaugment_policy, default="", metavar="POLICY",
                   help="differentiable augmentations of every image D sees, real and fake, in the "
                        "D and G steps (Zhao et al. 2020): comma-separated policies among color, "
                        "translation, cutout, e.g. color,translation,cutout ('' = off: D sees the "
                        "images as they are)")
    g.add_argument("--num_workers", type=at_least(0), default=datasets.default_num_workers(),
                   help="data loader processes (0: load in the main process); at most the CPU "
                        "cores available")
    g.add_argument("--no_pin_memory", action="store_false", dest="pin_memory",
                   help="do not pin loaded batches in page-locked memory (pinning only applies on "
                        "CUDA)")
    g.add_argument("--shuffle", action="store_true",
                   help="reshuffle the data every epoch (default sampler)")
    g.add_argument("--load_in_mem", action="store_true",
                   help="read every image (or the HDF5 cache) into memory once")
    g.add_argument("--hdf5", action="store_true",
                   help="read the HDF5 cache built by make_hdf5.py instead of the image folder")
    g.add_argument("--use_multiepoch_sampler", action="store_true",
                   help="BigGAN-PyTorch's sampler: one shuffled pass over all --num_epochs epochs, "
                        "resumable at any batch")


def add_initialization_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(f"initialization {TRAINING}")
    g.add_argument("--G_init", default="ortho", choices=["ortho", "N02", "glorot", "xavier"],
                   help="initialization of G's weights")
    g.add_argument("--D_init", default="ortho", choices=["ortho", "N02", "glorot", "xavier"],
                   help="initialization of D's weights")
    g.add_argument("--skip_init", action="store_true",
                   help="skip the initialization (the weights are loaded anyway)")
    g.add_argument("--comb_init", default="official", choices=["official", "mean"],
                   help="official: the combination layers start as G_init leaves them (random "
                        "weights, PyTorch's default biases); mean: every new class starts at the "
                        "old classes' mean BN parameters, as the finetune/BN_only baselines do "
                        "(needs --kp_variant cifar)")


def add_transfer_training_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(f"transfer {TRAINING}")
    g.add_argument("--freezeD_layer", type=at_least(-1), default=-1,
                   help="FreezeD: keep D's first K blocks at their pretrained values (-1: train "
                        "all of D)")
    g.add_argument("--comb_l1_scale", type=NON_NEGATIVE, default=0.0,
                   help="L1 penalty on the combination weights")
    g.add_argument("--res_l2_scale", type=NON_NEGATIVE, default=0.0,
                   help="L2 penalty on the BN residuals")


def add_optimization_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(f"optimization {TRAINING}")
    g.add_argument("--G_lr", type=POSITIVE, default=5e-5, help="G's Adam learning rate")
    g.add_argument("--D_lr", type=POSITIVE, default=2e-4, help="D's Adam learning rate")
    g.add_argument("--G_B1", type=BETA, default=0.0, help="G's Adam beta1")
    g.add_argument("--D_B1", type=BETA, default=0.0, help="D's Adam beta1")
    g.add_argument("--G_B2", type=BETA, default=0.999, help="G's Adam beta2")
    g.add_argument("--D_B2", type=BETA, default=0.999, help="D's Adam beta2")
    g.add_argument("--adam_eps", type=POSITIVE, default=1e-8, help="Adam's epsilon (both models)")
    g.add_argument("--G_ortho", type=NON_NEGATIVE, default=0.0,
                   help="BigGAN's orthogonal regularization of G (0: off)")
    g.add_argument("--D_ortho", type=NON_NEGATIVE, default=0.0,
                   help="orthogonal regularization of D (0: off)")
    g.add_argument("--toggle_grads", action=argparse.BooleanOptionalAction, default=True,
                   help=IGNORED_HELP +
                   " (requires_grad is always toggled between the D and G updates)")
    g.add_argument("--batch_size", type=at_least(1), default=64, help="images per D batch")
    g.add_argument("--num_G_accumulations", type=at_least(1), default=1,
                   help="G batches accumulated per G update")
    g.add_argument("--num_D_steps", type=at_least(1), default=2, help="D updates per iteration")
    g.add_argument("--num_D_accumulations", type=at_least(1), default=1,
                   help="batches accumulated per D update")
    g.add_argument("--split_D", action="store_true",
                   help="run D on fake and real batches separately")
    g.add_argument("--num_epochs", type=at_least(1), default=100,
                   help="epochs to train (when --num_iters is 0)")
    g.add_argument("--num_iters", type=at_least(0), default=0,
                   help="the iteration to stop at, counted over the experiment: a resumed run "
                        "trains up to it (0: run --num_epochs)")
    g.add_argument("--ema", action="store_true",
                   help="keep an exponential moving average of G (G_ema)")
    g.add_argument("--ema_decay", type=BETA, default=0.9999,
                   help="G_ema = decay * G_ema + (1 - decay) * G after every iteration, in [0, 1)")
    g.add_argument("--ema_start", type=at_least(0), default=0,
                   help="iteration from which G_ema averages (before: copies G)")


def add_speed_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(f"speed {TRAINING}")
    g.add_argument("--channels_last", nargs="?", const="on", default="auto",
                   choices=["auto", "on", "off"],
                   help="G's and D's tensors in the channels_last (NHWC) memory format, the same "
                        "function up to rounding; auto = on (off with --official_numerics); "
                        "--channels_last alone = on")
    g.add_argument("--fused_resampling", nargs="?", const="on", default="auto",
                   choices=["auto", "on", "off"],
                   help="fold G's 2x upsampling and D's average pooling into the adjacent 3x3 "
                        "convolutions (4 and 9 instead of 9 and 36 multiply-adds per output "
                        "pixel), the same function up to rounding; auto = on (off with "
                        "--official_numerics); --fused_resampling alone = on")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile the training step's G_D module (compiles at the first "
                        "iterations; falls back to eager with a message where compiling fails)")


def add_in_loop_evaluation_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(f"in-loop evaluation {TRAINING}")
    g.add_argument("--test_every", type=at_least(1), default=5000,
                   help="iterations between in-loop evaluations")
    g.add_argument("--which_best", default="IS", choices=["IS", "FID", "KMMD"],
                   help="metric that picks the best checkpoints")
    g.add_argument("--patience", type=at_least(0), default=0, metavar="K",
                   help="stop when --which_best has not improved for K evaluations in a row "
                        "(--num_iters stays the cap; the best set stays the best); 0: off")


def add_checkpoint_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(f"starting, resuming, checkpoints {TRAINING}")
    g.add_argument("--start_from", type=start_point, default="", metavar="EXPERIMENT[:SUFFIX]",
                   help="start this new experiment from another one's checkpoint set (:SUFFIX as "
                        "--load_weights, e.g. mydata_BN:best): a --stage pretrain experiment is "
                        "the source model of a transfer (instead of weights_root's G.pth and "
                        "D.pth); a checkpoint of this stage's kind is continued (e.g. FT from a BN "
                        "checkpoint), optimizers and G_ema included, from iteration 0")
    g.add_argument("--resume", action="store_true",
                   help="continue the experiment from its checkpoint (--load_weights)")
    g.add_argument("--save_every", type=at_least(1), default=2000,
                   help="iterations between checkpoints")
    g.add_argument("--num_save_copies", type=at_least(0), default=2,
                   help="rotating copies of the checkpoint (copy0, copy1, ...; 0: none)")
    g.add_argument("--num_best_copies", type=at_least(1), default=2,
                   help="rotating best checkpoints (best0, best1, ...)")
    g.add_argument("--logstyle", default="%3.3e", help=IGNORED_HELP)


GROUPS = (add_data_flags, add_model_flags, add_transfer_flags, add_running_flags,
          add_evaluation_flags, add_path_flags, add_data_loading_flags, add_initialization_flags,
          add_transfer_training_flags, add_optimization_flags, add_speed_flags,
          add_in_loop_evaluation_flags, add_checkpoint_flags)


def prepare_parser(description: str = "Train a (transfer) BigGAN") -> argparse.ArgumentParser:
    """train.py's flags, in groups."""
    p = argparse.ArgumentParser(allow_abbrev=False, description=description,
                                formatter_class=HelpFormatter)
    for add in GROUPS:
        add(p)
    return p


def training_only(parser: argparse.ArgumentParser) -> set[str]:
    """The dests of the flags in training groups."""
    return {action.dest for group in parser._action_groups if group.title.endswith(TRAINING)
            for action in group._group_actions}


def prepare_sampling_parser(description: str) -> argparse.ArgumentParser:
    """Every flag of train.py, with the training-only ones hidden from --help."""
    p = prepare_parser(description)
    hidden = training_only(p)
    for action in p._actions:
        if action.dest in hidden:
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


# ---------------------------------------------------------------------------------------------
# The config derived from the flags

_warned_ignored: set[str] = set()


def warn_ignored_flags(config: dict) -> list[str]:
    """One line on stderr for each ignored official flag given another value than its default, once
    per process (the study and --resume finalize several configs). Returns the flags warned about
    now."""
    warned = []
    for flag, default in IGNORED_FLAGS.items():
        if config.get(flag, default) != default and flag not in _warned_ignored:
            print(f"warning: --{flag} {config[flag]!r} is ignored: {IGNORED_HELP}", file=sys.stderr)
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
    if not stages.get(config["stage"]).needs_source_model and config["n_pretrain_classes"]:
        raise UsageError("--stage pretrain trains a plain BigGAN: leave --n_pretrain_classes at 0")
    if config.get("comb_init") == "mean" and config["kp_variant"] != "cifar":
        raise UsageError("--comb_init mean needs --kp_variant cifar: the imagenet variant "
                         "spectrally normalizes the combination, which then cannot hold the old "
                         "classes' mean")
    if config.get("patience") and config["no_fid"]:
        raise UsageError("--patience stops on the in-loop evaluations, which --no_fid turns off: "
                         "give one of them")
    config["G_batch_size"] = config["G_batch_size"] or config["batch_size"]
    config["experiment_name"] = config["experiment_name"] or name_from_config(config)
    run_folder.check_name(config["experiment_name"], config["weights_root"])
    return config


def parse(argv: list[str] | None = None, description: str = "Train a (transfer) BigGAN") -> dict:
    """The finalized config of train.py's flags (argv: None for sys.argv)."""
    return finalize_config(vars(prepare_parser(description).parse_args(argv)))


def name_from_config(config: dict) -> str:
    parts = [config["model"], config["dataset"], config["stage"],
             f"seed{config['seed']}", f"Gch{config['G_ch']}", f"Dch{config['D_ch']}",
             f"bs{config['batch_size']}", f"Glr{config['G_lr']:.1e}", f"Dlr{config['D_lr']:.1e}"]
    if config["stage"] != "pretrain":
        parts += [f"l1{config['comb_l1_scale']}", f"res{config['res_l2_scale']}"]
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
