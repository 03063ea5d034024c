"""Config and I/O helpers shared by the scripts: errors, devices, seeding, atomic writes."""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from typing import Any, Callable

import numpy as np
import torch


class UsageError(Exception):
    """A bad input from the user: the message says what is wrong and what to do."""


def run_main(main: Callable[[], Any]) -> None:
    """Run a script's main; a UsageError becomes one clear line on stderr and exit code 2."""
    try:
        main()
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def require_positive(args, *flags: str) -> None:
    """Each named integer flag must be at least 1."""
    for flag in flags:
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag} must be at least 1, got {getattr(args, flag)}")


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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def replace_atomically(path: str, write_path: Callable[[str], None]) -> None:
    """write_path(tmp) fills a temp file next to path, which then replaces path in one rename, so
    a crash never leaves half a file (and the temp file never outlives a failure)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=os.path.basename(path))
    os.close(fd)
    try:
        write_path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_atomically(path: str, write: Callable, binary: bool = False) -> None:
    """write(file) into a temp file next to path, then rename it (replace_atomically)."""
    def write_file(tmp: str) -> None:
        with open(tmp, "wb" if binary else "w", newline=None if binary else "") as f:
            write(f)
    replace_atomically(path, write_file)


def atomic_save(obj: Any, path: str) -> None:
    """torch.save, written atomically."""
    write_atomically(path, lambda f: torch.save(obj, f), binary=True)


# ---------------------------------------------------------------------------------------------
# Command-line configuration: BigGAN-PyTorch's flag names and defaults, plus cGANTransfer's.

STAGES = ("BN", "FT", "pretrain", "finetune", "BN_only")


def prepare_parser(description: str = "Train a (transfer) BigGAN") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    add = p.add_argument
    # Data
    add("--dataset", default="I128", help="dataset name (see datasets.py); e.g. I128, C100, Toy32")
    add("--augment", action="store_true", help="random horizontal flips")
    add("--num_workers", type=int, default=8)
    add("--no_pin_memory", action="store_false", dest="pin_memory")
    add("--shuffle", action="store_true")
    add("--load_in_mem", action="store_true")
    add("--hdf5", action="store_true", help="read the HDF5 cache built by make_hdf5.py")
    add("--use_multiepoch_sampler", action="store_true")
    # Model
    add("--model", default="BigGAN")
    add("--G_param", default="SN", choices=["SN", "none"])
    add("--D_param", default="SN", choices=["SN", "none"])
    add("--G_ch", type=int, default=64)
    add("--D_ch", type=int, default=64)
    add("--D_wide", action="store_true", default=True)
    add("--resolution", type=int, default=0, help="image size; 0 = from the dataset")
    add("--dim_z", type=int, default=128)
    add("--z_var", type=float, default=1.0)
    add("--shared_dim", type=int, default=0)
    add("--G_shared", action="store_true")
    add("--hier", action="store_true")
    add("--cross_replica", action="store_true")
    add("--mybn", action="store_true")
    add("--G_nl", default="relu")
    add("--D_nl", default="relu")
    add("--G_attn", default="64")
    add("--D_attn", default="64")
    add("--norm_style", default="bn")
    # Transfer (cGANTransfer)
    add("--stage", default="BN", choices=STAGES,
        help="BN: learn the new classes' BN parameters by knowledge propagation; FT: fine-tune G "
             "(all but combination and prior); pretrain: train a plain BigGAN (a source model, or the "
             "from-scratch baseline); baselines from a source model whose new classes start at the old "
             "classes' mean BN parameters: finetune (TransferGAN: everything trains), BN_only (only the "
             "new classes' own BN parameters train: the ablation of knowledge propagation)")
    add("--freezeD_layer", type=int, default=-1,
        help="FreezeD: keep D's first K blocks at their pretrained values (-1: train all of D)")
    add("--n_classes", type=int, default=0, help="classes of the data (the new classes when transferring)")
    add("--n_pretrain_classes", type=int, default=0, help="classes of the pretrained source model")
    add("--kp_variant", default="imagenet", choices=["imagenet", "cifar"],
        help="official variant of the knowledge-propagation layers (SN, prior without bias) or plain")
    add("--comb_init", default="official", choices=["official", "mean"],
        help="official: the combination layers start as G_init leaves them (random weights, PyTorch's "
             "default biases); mean: every new class starts at the old classes' mean BN parameters, as "
             "the finetune/BN_only baselines do (needs --kp_variant cifar)")
    add("--comb_l1_scale", type=float, default=0.0, help="L1 penalty on the combination weights")
    add("--res_l2_scale", type=float, default=0.0, help="L2 penalty on the BN residuals")
    # Initialization and optimization
    add("--seed", type=int, default=0)
    add("--G_init", default="ortho")
    add("--D_init", default="ortho")
    add("--skip_init", action="store_true")
    add("--G_lr", type=float, default=5e-5)
    add("--D_lr", type=float, default=2e-4)
    add("--G_B1", type=float, default=0.0)
    add("--D_B1", type=float, default=0.0)
    add("--G_B2", type=float, default=0.999)
    add("--D_B2", type=float, default=0.999)
    add("--adam_eps", type=float, default=1e-8)
    add("--BN_eps", type=float, default=1e-5)
    add("--SN_eps", type=float, default=1e-8)
    add("--num_G_SVs", type=int, default=1)
    add("--num_D_SVs", type=int, default=1)
    add("--num_G_SV_itrs", type=int, default=1)
    add("--num_D_SV_itrs", type=int, default=1)
    add("--G_ortho", type=float, default=0.0)
    add("--D_ortho", type=float, default=0.0)
    add("--toggle_grads", action="store_true", default=True)
    # Batches and schedule
    add("--batch_size", type=int, default=64)
    add("--G_batch_size", type=int, default=0)
    add("--num_G_accumulations", type=int, default=1)
    add("--num_D_steps", type=int, default=2)
    add("--num_D_accumulations", type=int, default=1)
    add("--split_D", action="store_true")
    add("--num_epochs", type=int, default=100)
    add("--num_iters", type=int, default=0, help="stop after this many iterations (0: run num_epochs)")
    add("--parallel", action="store_true", help="DataParallel over the visible GPUs")
    add("--device", default="", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    add("--amp", default="none", choices=["none", "bf16", "fp16"], help="autocast precision")
    add("--ema", action="store_true")
    add("--use_ema", action="store_true")
    add("--ema_decay", type=float, default=0.9999)
    add("--ema_start", type=int, default=0)
    add("--G_eval_mode", action="store_true")
    add("--accumulate_stats", action="store_true")
    add("--num_standing_accumulations", type=int, default=16)
    # Paths, saving, evaluation
    add("--base_dir", default="", help="root holding data/ weights/ logs/ samples/ (official cGANTransfer)")
    add("--base_root", default="", help="same as --base_dir (BigGAN-PyTorch's name)")
    add("--data_root", default="")
    add("--weights_root", default="")
    add("--logs_root", default="")
    add("--samples_root", default="")
    add("--experiment_name", default="")
    add("--save_every", type=int, default=2000)
    add("--num_save_copies", type=int, default=2)
    add("--num_best_copies", type=int, default=2)
    add("--which_best", default="IS", choices=["IS", "FID", "KMMD"])
    add("--no_fid", action="store_true", help="skip in-loop metrics")
    add("--test_every", type=int, default=5000)
    add("--num_inception_images", type=int, default=50000)
    add("--kmmd", action="store_true", help="also compute KMMD (needs the features file)")
    add("--mfid", action="store_true", help="also compute mFID (needs per-class reference statistics)")
    add("--backbone", default="inception", choices=["inception", "tf_inception", "classifier"])
    add("--inception_weights", default="", help="local weights file of the metric backbone")
    add("--load_weights", default="", help="suffix of the checkpoint to resume (e.g. best0, copy1)")
    add("--resume", action="store_true")
    add("--logstyle", default="%3.3e")
    return p


def finalize_config(config: dict) -> dict:
    """Fill the derived entries: roots under base_dir, resolution, experiment name."""
    base = config.get("base_dir") or config.get("base_root") or "."
    config["base_dir"] = base
    for key, folder in (("data_root", "data"), ("weights_root", "weights"),
                        ("logs_root", "logs"), ("samples_root", "samples")):
        config[key] = config.get(key) or os.path.join(base, folder)
    if config["stage"] == "pretrain" and config["n_pretrain_classes"]:
        raise UsageError("--stage pretrain trains a plain BigGAN: leave --n_pretrain_classes at 0")
    if config["stage"] != "pretrain" and config["n_pretrain_classes"] <= 0:
        raise UsageError(f"--stage {config['stage']} starts from a pretrained model: give "
                         "--n_pretrain_classes (the classes of the source model, e.g. 1000)")
    if config.get("comb_init") == "mean" and config["kp_variant"] != "cifar":
        raise UsageError("--comb_init mean needs --kp_variant cifar: the imagenet variant spectrally "
                         "normalizes the combination, which then cannot hold the old classes' mean")
    config["G_batch_size"] = config["G_batch_size"] or config["batch_size"]
    config["experiment_name"] = config["experiment_name"] or name_from_config(config)
    return config


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
    if config["hier"]:
        parts.append("hier")
    if config["G_shared"]:
        parts.append("shared")
    if config["ema"]:
        parts.append("ema")
    return "_".join(parts)


# ---------------------------------------------------------------------------------------------
# Checkpoints: BigGAN-PyTorch's file names, written atomically, read with weights_only=True.

CHECKPOINT_PARTS = ("G", "G_optim", "D", "D_optim", "state_dict", "G_ema")


def checkpoint_path(root: str, experiment_name: str, part: str, suffix: str = "") -> str:
    return os.path.join(root, experiment_name, f"{part}{'_' + suffix if suffix else ''}.pth")


def save_checkpoint(objects: dict[str, Any], root: str, experiment_name: str, suffix: str = "") -> None:
    for part, obj in objects.items():
        atomic_save(obj, checkpoint_path(root, experiment_name, part, suffix))


def load_file(path: str, what: str, hint: str) -> Any:
    """torch.load of a file the user pointed at; a missing or unreadable file is one clear error."""
    if not os.path.isfile(path):
        raise UsageError(f"{what} {path} does not exist; {hint}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a truncated or foreign file
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise UsageError(f"{path} is not a readable {what} ({first_line}); {hint}") from None


def append_jsonl(path: str, record: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


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
