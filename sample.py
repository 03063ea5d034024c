"""Sample a trained (transfer) BigGAN: an npz of images, class and interpolation sheets, and metrics,
optionally over a range of truncation thresholds.

    python sample.py --base_dir BASE --experiment_name NAME --load_weights best2 [model flags] \
        --sample_npz --sample_sheets --sample_interps --sample_random \
        --sample_inception_metrics --sample_trunc_curves 0.05_0.05_1.0

The model flags (and --dataset, --stage) are read from the training config saved in the checkpoint's
state_dict: leave them out. A flag given that differs from the checkpoint's is an error. For weights
without a state_dict (e.g. a bare official G.pth) give the flags the model was trained with;
--n_pretrain_classes 0 then means a source (plain BigGAN) model.

Reads BASE/weights/NAME/G[_ema][_SUFFIX].pth and state_dict[_SUFFIX].pth. Writes, never replacing
an existing file unless --overwrite is given:
    BASE/samples/NAME/samples.npz      'x' uint8 [N, H, W, 3] (BigGAN-PyTorch wrote [N, 3, H, W]),
                                       'y' int64 class labels [N]
    BASE/samples/NAME/<FOLDER>/        FOLDER: --sample_sheet_folder_num, or by default the
                                       weights' name (e.g. G_ema_best2), so runs do not collide
        samples<i>.png                 class sheets: one row per class, the same z's in every row
        interpZ0.png, interpY0.png     interpolation of z (class fixed) / of the class (z fixed);
        interpZY0.png                  of both. Rows are pairs of endpoints.
        random_samples.png             one batch of random samples
        metrics.json                   --sample_inception_metrics
        trunc_curves.json / .csv       --sample_trunc_curves: one row per truncation threshold

Truncation: with a threshold t > 0 (--truncation t, or each value of --sample_trunc_curves), every
z entry is drawn from N(0, z_var) restricted to [-t, t] by resampling the entries outside it.
BigGAN-PyTorch's --sample_trunc_curves swept the z variance instead, as a stand-in for this.
With --accumulate_stats the standing statistics are gathered once, from untruncated z.

Old classes: a knowledge-propagation G (stages BN/FT) still holds the source's class path, so
`--classes old` draws the source's classes from it (`--classes all`: both sets). Each file above
then has an old-class twin named with _old before the extension (samples_old.npz with labels
0..n_pretrain_classes-1, samples0_old.png, metrics_old.json, ...); old-class metrics are measured
against --old_reference, the source data's moments. Old and new classes share G's BN running
statistics, which training gathered on new-class batches only; in eval mode use --mybn
--accumulate_stats, which gathers each class set's own standing statistics.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import trange

import BigGAN
import checkpoints
import datasets
import sampling
import stages
import utils
from acceleration import Precision

SAMPLES_PER_CLASS = 10   # columns of a class sheet (BigGAN-PyTorch)
CLASSES_PER_SHEET = 20   # rows of a class sheet
INTERP_MIDPOINTS = 8     # an interpolation row holds its two endpoints and these midpoints
NUM_SPLITS = 10          # of the Inception Score
CLASS_SETS = ("new", "old", "all")

def prepare_parser():
    p = utils.prepare_sampling_parser("Sample a trained (transfer) BigGAN: npz, sheets, metrics")
    add = p.add_argument_group("what to sample").add_argument
    add("--sample_npz", action="store_true", help="save --sample_num_npz samples to samples.npz")
    add("--sample_num_npz", type=utils.at_least(1), default=50000, help="samples in samples.npz")
    add("--sample_sheets", action="store_true", help="class-conditional sample sheets")
    add("--sample_interps", action="store_true", help="z and class interpolation sheets")
    add("--sample_num_interps", type=utils.at_least(1), default=16, help="rows of an interpolation sheet")
    add("--sample_sheet_folder_num", type=utils.at_least(-1), default=-1,
        help="write sheets and metrics to samples/<experiment>/<this number>/ "
             "(default -1: to a folder named after the weights, e.g. G_ema_best2)")
    add("--sample_random", action="store_true", help="one sheet of random samples")
    add("--sample_inception_metrics", action="store_true",
        help="IS/FID (KMMD with --kmmd, mFID with --mfid) in the --backbone feature space, at --truncation")
    add("--sample_trunc_curves", default="",
        help="metrics at each truncation threshold start_step_end, e.g. 0.05_0.05_1.0")
    add("--truncation", type=utils.NON_NEGATIVE, default=0.0,
        help="truncation threshold of z for all sampling but the curves (0: off)")
    add("--classes", choices=CLASS_SETS, default="new",
        help="new: the classes G was trained for; old: a knowledge-propagation G's source classes, drawn "
             "through the pretrained class path (files end in _old); all: both, each to its own files")
    add("--old_reference", default="", metavar="PATH",
        help="reference moments of the source data (calculate_inception_moments.py on it), for metrics of "
             "the old classes; KMMD reads the *_features.npz beside it")
    add("--overwrite", action="store_true", help="replace outputs of an earlier run")
    return p


def parse_config(argv: list[str] | None = None) -> dict:
    """The flags given, and the model flags left out taken from the checkpoint's saved training
    config (a given model flag that differs from it is an error)."""
    parser = prepare_parser()
    config = utils.resolve_roots(vars(parser.parse_args(argv)))
    adopt_training_config(config, load_run_state(config).get("config") or {}, utils.explicit_flags(parser, argv))
    config = utils.finalize_config(config)
    outputs = ("sample_npz", "sample_sheets", "sample_interps", "sample_random",
               "sample_inception_metrics", "sample_trunc_curves")
    if not any(config[flag] for flag in outputs):
        raise utils.UsageError("nothing to sample; give at least one of "
                               + ", ".join(f"--{flag}" for flag in outputs))
    check_class_sets(config)
    return config


def check_class_sets(config: dict) -> None:
    if config["classes"] == "new":
        return
    if not builds_transfer_G(config["stage"]):
        raise utils.UsageError(f"--classes {config['classes']} needs a knowledge-propagation G (stages BN/FT), "
                               f"which keeps the source's class path; {config['experiment_name']} is a "
                               f"--stage {config['stage']} model, whose G has only its own classes: use --classes new")
    wants_metrics = config["sample_inception_metrics"] or config["sample_trunc_curves"]
    if wants_metrics and not config["old_reference"]:
        raise utils.UsageError("metrics of the old classes need the source data's reference statistics: give "
                               "--old_reference PATH (calculate_inception_moments.py on the source dataset, "
                               f"--backbone {config['backbone']})")


def adopt_training_config(config: dict, trained: dict, explicit: set[str]) -> None:
    """The model flags (and dataset, stage) of the run that wrote the checkpoint, where not given."""
    what = f"{weights_name(config)} of {config['experiment_name']}"
    adopted = utils.adopt_saved_config(config, trained, explicit, BigGAN.weight_defining_flags() + ("dataset",), what)
    if adopted:
        print("Model flags from the checkpoint: " + ", ".join(f"--{flag} {config[flag]}" for flag in adopted))
    if "stage" not in trained:
        if config["n_pretrain_classes"] == 0:
            config["stage"] = "pretrain"  # no saved config: a source model is a plain BigGAN
    elif "stage" not in explicit:
        config["stage"] = trained["stage"]
    elif builds_transfer_G(trained["stage"]) != builds_transfer_G(config["stage"]):
        raise utils.UsageError(f"{what} was trained with --stage {trained['stage']}, a "
                               f"{'knowledge-propagation' if builds_transfer_G(trained['stage']) else 'plain'} G; "
                               f"you gave --stage {config['stage']}: leave --stage out")


# ---------------------------------------------------------------------------------------------
# Loading the generator

def weights_name(config: dict) -> str:
    part = "G_ema" if config["use_ema"] else "G"
    return f"{part}_{config['load_weights']}" if config["load_weights"] else part


def checkpoint_hint(config: dict) -> str:
    hint = (f"Check --experiment_name ({config['experiment_name']}), --load_weights "
            f"({config['load_weights'] or 'none'}) and --base_dir / --weights_root")
    if config["use_ema"]:
        hint += "; --use_ema needs a run trained with --ema"
    return hint


def experiment_folder(config: dict) -> str:
    return os.path.join(config["weights_root"], config["experiment_name"])


def load_run_state(config: dict) -> dict:
    """The checkpoint's state_dict (itr, training config); empty when the run did not save one."""
    return checkpoints.load_set(experiment_folder(config), config["load_weights"], ["state_dict"],
                                optional=("state_dict",), hint=checkpoint_hint(config)).get("state_dict", {})


def load_weights(config: dict) -> dict:
    """G's (or G_ema's) weights, checked to be of the same save as the state_dict, and finite."""
    part = "G_ema" if config["use_ema"] else "G"
    state = checkpoints.load_set(experiment_folder(config), config["load_weights"], [part],
                                 hint=checkpoint_hint(config))[part]
    if not checkpoints.all_finite(state):
        raise utils.UsageError(f"the weights of {weights_name(config)} in {experiment_folder(config)} hold non-finite "
                               "values (NaN or inf): that run diverged; sample an earlier checkpoint (--load_weights)")
    return state


def complete_model_config(config: dict) -> None:
    """n_classes must be known (from the checkpoint or the flag); resolution from the dataset if unknown."""
    if not config["n_classes"]:
        raise utils.UsageError("the number of classes is unknown: the checkpoint has no state_dict "
                               "with the training config; give --n_classes")
    config["resolution"] = config["resolution"] or datasets.dataset_spec(config["dataset"], config["data_root"]).resolution


def builds_transfer_G(stage: str) -> bool:
    return stages.get(stage).knowledge_propagation


def bn_statistics_counterpart(key: str, own: dict) -> str | None:
    """The name `key` (a BN running statistic) has in the other layout: <bn>.stored_mean without
    --mybn, <bn>.bn.stored_mean with it. Both hold the same running statistics."""
    head, _, leaf = key.rpartition(".")
    if key in own or leaf not in ("stored_mean", "stored_var"):
        return None
    other = f"{head[:-len('.bn')]}.{leaf}" if head.endswith(".bn") else f"{head}.bn.{leaf}"
    return other if other in own else None


def match_bn_layout(state: dict, own: dict) -> dict:
    """A checkpoint trained with or without --mybn, renamed for G's layout, so that --mybn
    --accumulate_stats works on any checkpoint (the official scripts suggest it for sampling)."""
    matched = {bn_statistics_counterpart(key, own) or key: value for key, value in state.items()
               if not (key.endswith(".bn.accumulation_counter") and key not in own)}
    for key, value in own.items():
        if key.endswith(".bn.accumulation_counter") and key not in matched:
            matched[key] = value  # a checkpoint without --mybn has no counter: start it fresh
    return matched


def build_generator(config: dict, state: dict) -> BigGAN.Generator:
    # skip_init: every weight comes from the checkpoint.
    try:
        G = BigGAN.Generator(**{**stages.model_config(config), "skip_init": True})
    except ValueError as err:
        raise utils.UsageError(f"{err}; fix the model flags") from err
    try:
        G.load_state_dict(match_bn_layout(state, G.state_dict()))
    except RuntimeError as err:
        first_problem = (str(err).splitlines()[1:] or [str(err)])[0].strip()[:300]
        raise utils.UsageError(f"the weights of {weights_name(config)} do not fit the generator built from "
                               f"your flags, which are probably wrong: {first_problem}; use the flags the "
                               "experiment was trained with") from err
    return G


# ---------------------------------------------------------------------------------------------
# Class sets: the new classes, and a knowledge-propagation G's old ones

@dataclass
class ClassSet:
    """The classes one round of outputs draws: G's new classes (the official file names), or a
    knowledge-propagation G's old classes through the source's class path (file names end in _old)."""
    name: str
    n_classes: int
    old_classes: bool
    suffix: str

    def forward(self, G: nn.Module, G_forward: Callable) -> tuple[Callable, Callable]:
        return sampling.class_forward(G, G_forward, self.old_classes)


def class_sets(config: dict) -> list[ClassSet]:
    new = ClassSet("new", config["n_classes"], False, "")
    old = ClassSet("old", config["n_pretrain_classes"], True, "_old")
    return {"new": [new], "old": [old], "all": [new, old]}[config["classes"]]


# ---------------------------------------------------------------------------------------------
# Sampling z and classes

def truncate(z: torch.Tensor, threshold: float, z_var: float = 1.0) -> torch.Tensor:
    """z ~ N(0, z_var) restricted to [-threshold, threshold]: the entries outside are drawn again
    until none are left (clamping them instead would pile probability onto the bounds)."""
    if threshold <= 0:
        return z
    z = z.clone()
    outside = z.abs() > threshold
    while outside.any():
        z[outside] = torch.randn(int(outside.sum()), device=z.device, dtype=z.dtype) * z_var ** 0.5
        outside = z.abs() > threshold
    return z


def sample_z_y(n: int, G: nn.Module, config: dict, device, truncation: float, n_classes: int):
    z, y = sampling.sample_z_y(n, G.dim_z, n_classes, device, config["z_var"])
    return truncate(z, truncation, config["z_var"]), y


def other_classes(y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """A random class different from each y (when there are two classes or more)."""
    if n_classes < 2:
        return y.clone()
    return (y + torch.randint(1, n_classes, y.shape, device=y.device)) % n_classes


def mixable_classes(G: BigGAN.Generator, y: torch.Tensor, old_classes: bool = False) -> torch.Tensor | None:
    """Class inputs of G that can be mixed linearly, or None when G only takes indices."""
    if old_classes:  # forward(·, old_classes=True) takes soft one-hots over the old classes
        return F.one_hot(y, G.n_pretrain_classes).float()
    inputs = G.class_input(y)
    if inputs.is_floating_point():
        return inputs  # the shared embeddings of a source G
    if G.has_knowledge_propagation or G.hier:
        # These G one-hot the indices themselves and take soft one-hot vectors as they are.
        return F.one_hot(y, G.n_classes).float()
    return None


def lerp_rows(a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    """[rows, d] endpoints -> [rows * steps, d]: each row's path from a to b, one row after another."""
    w = torch.linspace(0, 1, steps, device=a.device, dtype=a.dtype).view(1, steps, 1)
    return (a.unsqueeze(1) * (1 - w) + b.unsqueeze(1) * w).reshape(-1, a.shape[1])


def make_sampler(G, G_forward, config: dict, device, precision, truncation: float,
                 classes: ClassSet) -> Callable:
    """sample() -> (a batch of images in [-1, 1], their uniformly drawn classes of the set)."""
    forward, inputs = classes.forward(G, G_forward)

    def sample():
        z, y = sample_z_y(config["G_batch_size"], G, config, device, truncation, classes.n_classes)
        with precision.autocast():
            images = forward(z, inputs(y))
        return images.float(), y
    return sample


# ---------------------------------------------------------------------------------------------
# Outputs: npz and sheets

def to_uint8_hwc(images: torch.Tensor) -> np.ndarray:
    """[B, 3, H, W] in [-1, 1] -> uint8 [B, H, W, 3], rounded: the inverse of the data loader's map."""
    pixels = ((images.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()


def write_npz(path: str, sample: Callable, num: int, batch_size: int, resolution: int) -> None:
    x = np.empty((num, resolution, resolution, 3), dtype=np.uint8)  # 50k at 128 px: 2.5 GB
    y = np.empty((num,), dtype=np.int64)
    for i in trange(math.ceil(num / batch_size), desc="samples.npz"):
        images, labels = sample()
        n = min(batch_size, num - i * batch_size)
        x[i * batch_size:i * batch_size + n] = to_uint8_hwc(images[:n])
        y[i * batch_size:i * batch_size + n] = labels[:n].cpu().numpy()
    utils.write_atomically(path, lambda f: np.savez(f, x=x, y=y), binary=True)
    print(f"Saved {x.shape[0]} samples (x {x.shape}, y {y.shape}) to {path}")


def interp_sheet(G, G_forward, config: dict, device, precision, truncation: float,
                 fix_z: bool, fix_y: bool, classes: ClassSet) -> torch.Tensor:
    """Rows from one random (z, class) to another; fix_z keeps each row's z, fix_y its class."""
    rows, steps = config["sample_num_interps"], INTERP_MIDPOINTS + 2
    z0, y0 = sample_z_y(rows, G, config, device, truncation, classes.n_classes)
    z1, _ = sample_z_y(rows, G, config, device, truncation, classes.n_classes)
    zs = z0.repeat_interleave(steps, 0) if fix_z else lerp_rows(z0, z1, steps)
    forward, inputs = classes.forward(G, G_forward)
    if fix_y:
        ys = inputs(y0.repeat_interleave(steps))
    else:
        y1 = other_classes(y0, classes.n_classes)
        ys = lerp_rows(mixable_classes(G, y0, classes.old_classes), mixable_classes(G, y1, classes.old_classes),
                       steps)
    return sampling.generate(forward, zs, ys, config["G_batch_size"], precision)


def interp_styles(G: BigGAN.Generator, device) -> dict[str, tuple[bool, bool]]:
    """Official file tags (what is interpolated) -> (fix_z, fix_y); class interpolation only
    where G's class input can be mixed (the old classes of a knowledge-propagation G always can)."""
    styles = {"ZY": (False, False), "Z": (False, True), "Y": (True, False)}
    if mixable_classes(G, torch.zeros(1, dtype=torch.long, device=device)) is None:
        print("Skipping class interpolation: this G takes class indices only (no shared embedding)")
        styles = {"Z": (False, True)}
    return styles


# ---------------------------------------------------------------------------------------------
# Metrics

SPACE_LABELS = {"inception": "Inception", "tf_inception": "TF-Inception", "classifier": "classifier"}


def trunc_curve_values(spec: str) -> list[float]:
    """'start_step_end' -> [start, start + step, ..., <= end]."""
    try:
        start, step, end = (float(part) for part in spec.split("_"))
    except ValueError:
        raise utils.UsageError(f"--sample_trunc_curves {spec!r} is not start_step_end, "
                               "e.g. 0.05_0.05_1.0") from None
    if not (0 < start <= end and step > 0):
        raise utils.UsageError(f"--sample_trunc_curves {spec!r}: need 0 < start <= end and step > 0")
    count = math.floor((end - start) / step + 1e-9) + 1
    return [round(start + i * step, 10) for i in range(count)]


def prepare_metrics(config: dict, device, classes: ClassSet) -> Callable:
    """The metrics of a class set: the new classes against the dataset's reference statistics, the
    old ones against --old_reference (and the features file beside it)."""
    import inception_utils  # heavy (torchvision models); only when metrics run
    reference = {}
    if classes.old_classes:
        moments = config["old_reference"]
        reference = {"moments_path": moments,
                     "features_path": moments[:-len("_moments.npz")] + "_features.npz"
                     if moments.endswith("_moments.npz") else os.path.splitext(moments)[0] + "_features.npz"}
    get_metrics = inception_utils.prepare_inception_metrics(
        config["dataset"], config["parallel"], config["no_fid"], data_root=config["data_root"],
        backbone=config["backbone"], inception_weights=config["inception_weights"] or None,
        device=device, kmmd=config["kmmd"], mfid=config["mfid"], **reference)
    if classes.old_classes:
        check_old_reference(config)
    return get_metrics


def check_old_reference(config: dict) -> None:
    """--old_reference must describe the old classes, not (say) the target data."""
    with np.load(config["old_reference"], allow_pickle=False) as f:
        counts = f["class_counts"] if "class_counts" in f.files else None
    if counts is not None and len(counts) != config["n_pretrain_classes"]:
        raise utils.UsageError(f"--old_reference {config['old_reference']} holds statistics of {len(counts)} "
                               f"classes, but G has {config['n_pretrain_classes']} old classes; give the moments "
                               "of the source dataset")


def describe_metrics(metrics: dict) -> str:
    """Every number named with its feature space: a classifier-space FID never reads as Inception's."""
    space = metrics["metric_space"]
    label = SPACE_LABELS.get(space, space)
    parts = [f"{label} IS {metrics['IS_mean']:.3f} +/- {metrics['IS_std']:.3f}",
             f"{label} FID {metrics['FID']:.4f}"]
    for key in ("KMMD", "mFID"):
        if metrics.get(key) is not None:
            parts.append(f"{label} {key} {metrics[key]:.4f}")
    if metrics.get("class_acc") is not None:
        parts.append(f"{label} class accuracy {metrics['class_acc']:.3f}")
    if space == "classifier":
        note = " (feature space of the project classifier: not comparable with published Inception numbers)"
    elif space == "inception":
        note = " (PyTorch Inception: unofficial, close to but not TF Inception's)"
    else:
        note = ""
    return ", ".join(parts) + note


def evaluation_setting(config: dict, truncation: float, itr) -> str:
    """What the metrics were measured on, as BigGAN-PyTorch prints it."""
    text = (f"{'ema' if config['use_ema'] else 'non-ema'} weights in "
            f"{'eval' if config['G_eval_mode'] else 'training'} mode, z_var {config['z_var']:.3f}, "
            f"truncation {truncation if truncation > 0 else 'none'}, "
            f"over {config['num_inception_images']} images")
    if config["accumulate_stats"] or not config["G_eval_mode"]:
        text += f", batch size {config['G_batch_size']}"
    if config["accumulate_stats"]:
        text += f", {config['num_standing_accumulations']} standing stat accumulations"
    return text + f", itr {itr}"


def finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN: an absent FID (--no_fid) becomes null
    return value


def measure(get_metrics: Callable, sample: Callable, config: dict, truncation: float, itr) -> dict:
    metrics = get_metrics(sample, config["num_inception_images"], num_splits=NUM_SPLITS,
                          prints=False, use_torch=False, kmmd=config["kmmd"], mfid=config["mfid"])
    print(f"{evaluation_setting(config, truncation, itr)}: {describe_metrics(metrics)}")
    return {"truncation": truncation, **{k: finite_or_none(v) for k, v in metrics.items()}}


def write_json(path: str, record: dict) -> None:
    utils.write_atomically(path, lambda f: f.write(json.dumps(record, indent=2) + "\n"))


def write_csv(path: str, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    utils.write_atomically(path, lambda f: f.write(text.getvalue()))


# ---------------------------------------------------------------------------------------------
# The run

def planned_outputs(config: dict, folder: str, styles: dict, classes: ClassSet) -> list[str]:
    exp_dir = os.path.join(config["samples_root"], config["experiment_name"])
    tag, paths = classes.suffix, []
    if config["sample_npz"]:
        paths.append(os.path.join(exp_dir, f"samples{tag}.npz"))
    if config["sample_sheets"]:
        sheets = math.ceil(classes.n_classes / CLASSES_PER_SHEET)
        paths += [os.path.join(folder, f"samples{i}{tag}.png") for i in range(sheets)]
    if config["sample_interps"]:
        paths += [os.path.join(folder, f"interp{style}0{tag}.png") for style in styles]
    if config["sample_random"]:
        paths.append(os.path.join(folder, f"random_samples{tag}.png"))
    if config["sample_inception_metrics"]:
        paths.append(os.path.join(folder, f"metrics{tag}.json"))
    if config["sample_trunc_curves"]:
        paths += [os.path.join(folder, f"trunc_curves{tag}.json"), os.path.join(folder, f"trunc_curves{tag}.csv")]
    return paths


def refuse_to_overwrite(paths: list[str], config: dict) -> None:
    existing = [p for p in paths if os.path.exists(p)]
    if existing and not config["overwrite"]:
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        raise utils.UsageError(f"earlier outputs would be replaced: {', '.join(existing[:3])}{more}; pass "
                               "--overwrite to replace them, or --sample_sheet_folder_num N to write elsewhere")


@torch.no_grad()
def run(config: dict) -> dict:
    device = utils.pick_device(config["device"] or None)
    utils.seed_rng(config["seed"])
    run_state = load_run_state(config)
    state = load_weights(config)
    complete_model_config(config)
    G = build_generator(config, state).to(device)
    G.train(not config["G_eval_mode"])
    itr = run_state.get("itr", "unknown")
    G_forward = nn.DataParallel(G) if (config["parallel"] and device.type == "cuda"
                                       and torch.cuda.device_count() > 1) else G
    precision = Precision(config["amp"], device)

    folder_name = (str(config["sample_sheet_folder_num"]) if config["sample_sheet_folder_num"] >= 0
                   else weights_name(config))
    folder = os.path.join(config["samples_root"], config["experiment_name"], folder_name)
    styles = interp_styles(G, device) if config["sample_interps"] else {}
    sets = class_sets(config)
    outputs = [path for classes in sets for path in planned_outputs(config, folder, styles, classes)]
    refuse_to_overwrite(outputs, config)
    utils.remove_stale_temporaries(outputs)  # of a sample.py killed while writing them
    trunc_values = trunc_curve_values(config["sample_trunc_curves"]) if config["sample_trunc_curves"] else []
    # Load the backbone and reference statistics first: a missing file should stop us before hours of sampling.
    wants_metrics = config["sample_inception_metrics"] or trunc_values
    metrics_of = {classes.name: prepare_metrics(config, device, classes) for classes in sets} if wants_metrics else {}

    print(f"Sampling {weights_name(config)} of {config['experiment_name']} (itr {itr}) on {device}: "
          f"{' and '.join(f'{c.n_classes} {c.name} classes' for c in sets)}, "
          f"G in {'eval' if config['G_eval_mode'] else 'training'} mode")
    if config["G_eval_mode"] and not config["accumulate_stats"] and any(c.old_classes for c in sets):
        print("Note: in eval mode the old classes use BN running statistics gathered on new-class batches "
              "during training; --mybn --accumulate_stats gathers each class set's own")
    result = {"folder": folder, "itr": itr, "G": G,
              **{key + c.suffix: None for c in sets for key in ("metrics", "trunc_curve")}}
    setting = {"weights": weights_name(config), "itr": itr, "use_ema": config["use_ema"],
               "G_eval_mode": config["G_eval_mode"], "z_var": config["z_var"],
               "num_inception_images": config["num_inception_images"]}
    for classes in sets:
        write_outputs(config, G, G_forward, device, precision, classes, folder, styles, trunc_values,
                      metrics_of.get(classes.name), setting, itr, result)
    return result


def write_outputs(config: dict, G, G_forward, device, precision, classes: ClassSet, folder: str, styles: dict,
                  trunc_values: list[float], get_metrics: Callable | None, setting: dict, itr, result: dict) -> None:
    """Everything asked for, of one class set; its metrics go to result['metrics' + suffix] (and
    'trunc_curve' + suffix)."""
    tag, label = classes.suffix, f"{classes.name} classes"
    if config["accumulate_stats"]:
        # Old and new classes share the BN statistics: each set gets standing statistics of its own.
        print(f"Accumulating standing stats of the {label} over {config['num_standing_accumulations']} batches...")
        sampling.accumulate_standing_stats(G, config, device, old_classes=classes.old_classes)
    sample = make_sampler(G, G_forward, config, device, precision, config["truncation"], classes)
    if config["sample_npz"]:
        write_npz(os.path.join(config["samples_root"], config["experiment_name"], f"samples{tag}.npz"),
                  sample, config["sample_num_npz"], config["G_batch_size"], config["resolution"])
    if config["sample_sheets"]:
        z, _ = sample_z_y(SAMPLES_PER_CLASS, G, config, device, config["truncation"], classes.n_classes)
        for i, first in enumerate(range(0, classes.n_classes, CLASSES_PER_SHEET)):
            rows = list(range(first, min(first + CLASSES_PER_SHEET, classes.n_classes)))
            sheet = sampling.class_sheet(G, rows, z, config["G_batch_size"], precision, G_forward, classes.old_classes)
            sampling.save_image_grid(sheet, os.path.join(folder, f"samples{i}{tag}.png"), nrow=SAMPLES_PER_CLASS)
        print(f"Saved class sheets of the {label} to {folder}")
    for style, (fix_z, fix_y) in styles.items():
        sheet = interp_sheet(G, G_forward, config, device, precision, config["truncation"], fix_z, fix_y, classes)
        sampling.save_image_grid(sheet, os.path.join(folder, f"interp{style}0{tag}.png"), nrow=INTERP_MIDPOINTS + 2)
    if styles:
        print(f"Saved interpolation sheets of the {label} "
              f"({', '.join(f'interp{style}0{tag}.png' for style in styles)}) to {folder}")
    if config["sample_random"]:
        images, _ = sample()
        sampling.save_image_grid(images.cpu(), os.path.join(folder, f"random_samples{tag}.png"),
                                  nrow=int(images.shape[0] ** 0.5))
        print(f"Saved a random sheet of the {label} to {folder}")
    if config["sample_inception_metrics"]:
        print(f"Calculating metrics of the {label}...")
        result["metrics" + tag] = measure(get_metrics, sample, config, config["truncation"], itr)
        write_json(os.path.join(folder, f"metrics{tag}.json"), {**setting, "classes": classes.name,
                                                                 **result["metrics" + tag]})
    if trunc_values:
        print(f"Metrics of the {label} at truncation thresholds {trunc_values}...")
        rows = [measure(get_metrics, make_sampler(G, G_forward, config, device, precision, t, classes),
                        config, t, itr) for t in trunc_values]
        write_json(os.path.join(folder, f"trunc_curves{tag}.json"), {**setting, "classes": classes.name, "rows": rows})
        write_csv(os.path.join(folder, f"trunc_curves{tag}.csv"), rows)
        print(f"Saved the truncation curve of the {label} to {os.path.join(folder, f'trunc_curves{tag}.{{json,csv}}')}")
        result["trunc_curve" + tag] = rows


def main(argv: list[str] | None = None) -> dict:
    return run(parse_config(argv))


if __name__ == "__main__":
    utils.run_main(main)
