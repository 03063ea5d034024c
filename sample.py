"""Sample a trained (transfer) BigGAN: an npz of images, class and interpolation sheets, and
metrics, optionally over a range of truncation thresholds.

    python sample.py --base_dir BASE --experiment_name NAME --load_weights best [model flags] \
        --sample_npz --sample_sheets --sample_interps --sample_random \
        --sample_inception_metrics --sample_trunc_curves 0.05_0.05_1.0 \
        [--kmmd --mfid --precision_recall --iw]

The model flags (and --dataset, --stage) are read from the training config saved with the
checkpoint (its state_dict, else the experiment's config.json): leave them out. A flag given that
differs from it is an error. For weights without a saved config (e.g. a bare official G.pth) give
the flags the model was trained with; --n_pretrain_classes 0 then means a source (plain BigGAN)
model. The run is settled once (run_spec.settle_sampling) and read-only from then on.

Reads BASE/weights/NAME/G[_ema][_SUFFIX].pth and state_dict[_SUFFIX].pth. Writes, never replacing
an existing file unless --overwrite is given (OUTPUTS lists them):
    BASE/samples/NAME/samples.npz      'x' uint8 [N, H, W, 3] (BigGAN-PyTorch wrote [N, 3, H, W]),
                                       'y' int64 class labels [N]
    BASE/samples/NAME/<FOLDER>/        FOLDER: --sample_sheet_folder_num, or by default the
                                       weights' name (e.g. G_ema_best2), so runs do not collide
        samples<i>.png                 class sheets: one row per class, the same z's in every row
        interpZ0.png, interpY0.png     interpolation of z (class fixed) / of the class (z fixed);
        interpZY0.png                  of both. Rows are pairs of endpoints.
        random_samples.png             one batch of random samples
        metrics.json                   --sample_inception_metrics (with --iw: the IW critic too)
        trunc_curves.json / .csv       --sample_trunc_curves: one row per truncation threshold

Truncation: with a threshold t > 0 (--truncation t, or each value of --sample_trunc_curves), every
z entry is drawn from N(0, z_var) restricted to [-t, t] by resampling the entries outside it.
BigGAN-PyTorch's --sample_trunc_curves swept the z variance instead, as a stand-in for this.
With --accumulate_stats the standing statistics are gathered once, from untruncated z.

IW (--iw): TransferGAN's independent Wasserstein critic (iw_critic.py), trained apart from the GAN
on half of the held-out real images of the classes (the dataset's reference folder, --iw_reference)
against as many generated ones, evaluated on the other halves; negative, closer to 0 is better.

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
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn as nn
from tqdm import trange

import BigGAN
import datasets
import flags
import iw_critic
import run_folder
import run_spec
import sampling
import stages
import trained_generator
import utils
from acceleration import Precision

SAMPLES_PER_CLASS = 10   # columns of a class sheet (BigGAN-PyTorch)
CLASSES_PER_SHEET = 20   # rows of a class sheet
INTERP_STEPS = 10        # an interpolation row: its two endpoints and 8 midpoints
NUM_SPLITS = 10          # of the Inception Score
# held-out real images per class the IW critic uses at most (and as many samples)
IW_IMAGES_PER_CLASS = 500
CLASS_SETS = ("new", "old", "all")
# file tag -> (fix_z, fix_y)
INTERPOLATIONS = {"ZY": (False, False), "Z": (False, True), "Y": (True, False)}


def prepare_parser():
    p = flags.prepare_sampling_parser("Sample a trained (transfer) BigGAN: npz, sheets, metrics")
    add = p.add_argument_group("what to sample").add_argument
    add("--sample_npz", action="store_true", help="save --sample_num_npz samples to samples.npz")
    add("--sample_num_npz", type=utils.at_least(1), default=50000, help="samples in samples.npz")
    add("--sample_sheets", action="store_true", help="class-conditional sample sheets")
    add("--sample_interps", action="store_true", help="z and class interpolation sheets")
    add("--sample_num_interps", type=utils.at_least(1), default=16,
        help="rows of an interpolation sheet")
    add("--sample_sheet_folder_num", type=utils.at_least(-1), default=-1,
        help="write sheets and metrics to samples/<experiment>/<this number>/ "
             "(default -1: to a folder named after the weights, e.g. G_ema_best2)")
    add("--sample_random", action="store_true", help="one sheet of random samples")
    add("--sample_inception_metrics", action="store_true",
        help="IS/FID (KMMD with --kmmd, mFID with --mfid, precision/recall with "
             "--precision_recall, the IW critic with --iw) in the --backbone feature space, at "
             "--truncation")
    add("--sample_trunc_curves", default="",
        help="metrics at each truncation threshold start_step_end, e.g. 0.05_0.05_1.0")
    add("--truncation", type=utils.NON_NEGATIVE, default=0.0,
        help="truncation threshold of z for all sampling but the curves (0: off)")
    add("--iw", action="store_true",
        help="with --sample_inception_metrics: TransferGAN's independent Wasserstein critic "
             "against held-out real images (negative, closer to 0 is better; iw_critic.py)")
    add("--iw_reference", default="", metavar="DATASET",
        help="the held-out real images of the classes for --iw (default: the dataset's reference "
             "folder, named in its dataset.json by prepare_dataset.py)")
    add("--classes", choices=CLASS_SETS, default="new",
        help="new: the classes G was trained for; old: a knowledge-propagation G's source "
             "classes, drawn through the pretrained class path (files end in _old); all: both, "
             "each to its own files")
    add("--old_reference", default="", metavar="PATH",
        help="reference moments of the source data (calculate_inception_moments.py on it), for "
             "metrics of the old classes; KMMD reads the *_features.npz beside it")
    add("--overwrite", action="store_true", help="replace outputs of an earlier run")
    return p


# ---------------------------------------------------------------------------------------------
# The config: the flags given, the model flags from the checkpoint (run_spec.settle_sampling)

def parse_config(argv: list[str] | None = None) -> Mapping[str, Any]:
    """The sampling run settled once, read-only (run_spec.settle_sampling), after the checks of
    what the flags ask for."""
    parser = prepare_parser()
    given = vars(parser.parse_args(argv))
    wanted = [output.flag for output in OUTPUTS]
    if not any(given[flag] for flag in wanted):
        raise utils.UsageError("nothing to sample; give at least one of "
                               + ", ".join(f"--{flag}" for flag in wanted))
    if given["iw"] and not (given["sample_inception_metrics"] or given["sample_trunc_curves"]):
        raise utils.UsageError("--iw is a metric: give --sample_inception_metrics with it")
    config = run_spec.settle_sampling(given, flags.explicit_flags(parser, argv))
    check_class_sets(config)
    return config


def check_class_sets(config: Mapping[str, Any]) -> None:
    if config["classes"] == "new":
        return
    if not stages.get(config["stage"]).knowledge_propagation:
        raise utils.UsageError(f"--classes {config['classes']} needs a knowledge-propagation G "
                               "(stages BN/FT), which keeps the source's class path; "
                               f"{config['experiment_name']} is a --stage {config['stage']} model, "
                               "whose G has only its own classes: use --classes new")
    wants_metrics = config["sample_inception_metrics"] or config["sample_trunc_curves"]
    if wants_metrics and not config["old_reference"]:
        raise utils.UsageError("metrics of the old classes need the source data's reference "
                               "statistics: give --old_reference PATH "
                               "(calculate_inception_moments.py on the source dataset, "
                               f"--backbone {config['backbone']})")


def load_generator(config: Mapping[str, Any]) -> BigGAN.Generator:
    """G (or G_ema) of the checkpoint, built from the config."""
    weights = trained_generator.read_generator_weights(
        run_folder.folder(config), config["load_weights"], config["use_ema"],
        trained_generator.checkpoint_hint(config))
    what = trained_generator.weights_name(config["use_ema"], config["load_weights"])
    return trained_generator.build_trained_generator(config, weights, what)


# ---------------------------------------------------------------------------------------------
# Class sets: the new classes, and a knowledge-propagation G's old ones

@dataclass
class ClassSet:
    """The classes one round of outputs draws: G's new classes (the official file names), or a
    knowledge-propagation G's old classes through the source's class path (file names end in
    _old)."""
    name: str
    n_classes: int
    old_classes: bool
    tag: str


def class_sets(config: dict) -> list[ClassSet]:
    new = ClassSet("new", config["n_classes"], False, "")
    old = ClassSet("old", config["n_pretrain_classes"], True, "_old")
    return {"new": [new], "old": [old], "all": [new, old]}[config["classes"]]


# ---------------------------------------------------------------------------------------------
# Metrics

SPACE_LABELS = {"inception": "Inception", "tf_inception": "TF-Inception",
                "classifier": "classifier"}


def trunc_curve_values(spec: str) -> list[float]:
    """'start_step_end' -> [start, start + step, ..., <= end]."""
    try:
        start, step, end = (float(part) for part in spec.split("_"))
    except ValueError:
        raise utils.UsageError(f"--sample_trunc_curves {spec!r} is not start_step_end, "
                               "e.g. 0.05_0.05_1.0") from None
    if not (0 < start <= end and step > 0):
        raise utils.UsageError(f"--sample_trunc_curves {spec!r}: need 0 < start <= end and "
                               "step > 0")
    count = math.floor((end - start) / step + 1e-9) + 1
    return [round(start + i * step, 10) for i in range(count)]


def prepare_metrics(config: dict, device, classes: ClassSet):
    """The metrics of a class set: the new classes against the dataset's reference statistics, the
    old ones against --old_reference (and the features file beside it)."""
    import inception_utils  # heavy (torchvision models); only when metrics run
    reference = {}
    if classes.old_classes:
        moments = config["old_reference"]
        check_old_reference(config)
        stem = (moments[:-len("_moments.npz")] if moments.endswith("_moments.npz")
                else os.path.splitext(moments)[0])
        reference = {"moments_path": moments, "features_path": stem + "_features.npz"}
    return inception_utils.Metrics.from_config(config, device, **reference)


def check_old_reference(config: dict) -> None:
    """--old_reference must describe the old classes, not (say) the target data."""
    if not os.path.isfile(config["old_reference"]):
        raise utils.UsageError(f"--old_reference {config['old_reference']} does not exist; compute "
                               "the source data's moments with calculate_inception_moments.py")
    with np.load(config["old_reference"], allow_pickle=False) as f:
        counts = f["class_counts"] if "class_counts" in f.files else None
    if counts is not None and len(counts) != config["n_pretrain_classes"]:
        raise utils.UsageError(f"--old_reference {config['old_reference']} holds statistics of "
                               f"{len(counts)} classes, but G has {config['n_pretrain_classes']} "
                               "old classes; give the moments of the source dataset")


def iw_reference_images(config: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Held-out real images of the new classes for the IW critic (at most IW_IMAGES_PER_CLASS per
    class, the same ones every time) and their labels."""
    reference = (config["iw_reference"]
                 or datasets.reference_dataset_name(config["dataset"], config["data_root"]))
    if not reference:
        raise utils.UsageError("--iw needs held-out real images of the classes: "
                               f"{config['dataset']} names no reference folder (prepare_dataset.py "
                               "writes one); give --iw_reference DATASET")
    data = datasets.load_dataset(reference, config["data_root"], resolution=config["resolution"])
    if data.classes != datasets.class_names(config["dataset"], config["data_root"]):
        raise utils.UsageError(f"--iw_reference {reference} holds the classes "
                               f"{', '.join(data.classes)}, not those of {config['dataset']}; give "
                               "the reference folder of these classes")
    per_class: dict[int, list[int]] = {}
    for index, (_, label) in enumerate(data.samples):
        per_class.setdefault(label, []).append(index)
    chosen = [i for indices in per_class.values() for i in indices[:IW_IMAGES_PER_CLASS]]
    if len(chosen) < iw_critic.MIN_IMAGES:
        raise utils.UsageError(f"--iw: the reference folder {reference} holds {len(chosen)} "
                               f"images, and the critic needs at least {iw_critic.MIN_IMAGES} "
                               "(half to train it, half to evaluate it); hold out more real "
                               "images of the classes, or give another --iw_reference")
    images, labels = zip(*(data[i] for i in chosen))
    return torch.stack(images), torch.tensor(labels)


def measure_iw(G, G_forward, config: dict, device, precision, truncation: float) -> dict:
    """The IW critic: the held-out real images against as many samples with the same class
    counts."""
    real, labels = iw_reference_images(config)
    z = sampling.truncate(torch.randn(len(labels), G.dim_z, device=device) * config["z_var"] ** 0.5,
                          truncation, config["z_var"])
    fake = sampling.generate(G_forward, z, G.class_input(labels.to(device)),
                             config["G_batch_size"], precision)
    result = iw_critic.independent_wasserstein(real, fake, seed=config["seed"])
    return {"IW": result["IW"], "IW_train": result["IW_train"], "IW_images": len(labels)}


def describe_metrics(metrics: dict) -> str:
    """Every number named with its feature space: a classifier-space FID never reads as
    Inception's."""
    space = metrics["metric_space"]
    label = SPACE_LABELS.get(space, space)
    parts = [f"{label} IS {metrics['IS_mean']:.3f} +/- {metrics['IS_std']:.3f}",
             f"{label} FID {metrics['FID']:.4f}"]
    for key in ("KMMD", "mFID", "precision", "recall"):
        if metrics.get(key) is not None:
            parts.append(f"{label} {key} {metrics[key]:.4f}")
    if metrics.get("class_acc") is not None:
        parts.append(f"{label} class accuracy {metrics['class_acc']:.3f}")
    if metrics.get("IW") is not None:
        parts.append(f"IW {metrics['IW']:.4f} (pixel critic)")
    if space == "classifier":
        note = (" (feature space of the project classifier: not comparable with published "
                "Inception numbers)")
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


# ---------------------------------------------------------------------------------------------
# Outputs: one table that both planning (what would be overwritten) and writing go through

@dataclass
class ClassSetOutputs:
    """What writing the outputs of one class set needs."""
    config: dict
    G: BigGAN.Generator
    G_forward: Callable
    device: torch.device
    precision: Precision
    classes: ClassSet
    folder: str          # sheets and metrics
    itr: object
    metrics: object      # inception_utils.Metrics, or None
    result: dict
    setting: dict

    def path(self, name: str, ext: str) -> str:
        return os.path.join(self.folder, f"{name}{self.classes.tag}.{ext}")

    @property
    def npz_path(self) -> str:
        return os.path.join(run_folder.RunFolder.of(self.config).samples,
                            f"samples{self.classes.tag}.npz")

    def sampler(self, truncation: float) -> Callable:
        return sampling.make_sample_fn(self.G, run_spec.draws_of(self.config), self.device,
                                       self.precision, truncation, self.classes.old_classes,
                                       self.G_forward)

    @property
    def label(self) -> str:
        return f"{self.classes.name} classes"


def interpolations(G: BigGAN.Generator, device) -> dict[str, tuple[bool, bool]]:
    """Official file tags -> (fix_z, fix_y): class interpolation only where G's class input can be
    mixed (the old classes of a knowledge-propagation G always can)."""
    if sampling.mixable_classes(G, torch.zeros(1, dtype=torch.long, device=device)) is None:
        return {"Z": INTERPOLATIONS["Z"]}
    return INTERPOLATIONS


def to_uint8_hwc(images: torch.Tensor) -> np.ndarray:
    """[B, 3, H, W] in [-1, 1] -> uint8 [B, H, W, 3], rounded: the inverse of the data loader's
    map."""
    pixels = ((images.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()


def write_npz(r: ClassSetOutputs) -> None:
    num, batch_size = r.config["sample_num_npz"], r.config["G_batch_size"]
    resolution = r.config["resolution"]
    sample = r.sampler(r.config["truncation"])
    x = np.empty((num, resolution, resolution, 3), dtype=np.uint8)  # 50k at 128 px: 2.5 GB
    y = np.empty((num,), dtype=np.int64)
    for i in trange(math.ceil(num / batch_size), desc=os.path.basename(r.npz_path)):
        images, labels = sample()
        n = min(batch_size, num - i * batch_size)
        x[i * batch_size:i * batch_size + n] = to_uint8_hwc(images[:n])
        y[i * batch_size:i * batch_size + n] = labels[:n].cpu().numpy()
    utils.write_atomically(r.npz_path, lambda f: np.savez(f, x=x, y=y), binary=True)
    print(f"Saved {x.shape[0]} samples (x {x.shape}, y {y.shape}) to {r.npz_path}")


def sheet_paths(r: ClassSetOutputs) -> list[str]:
    sheets = math.ceil(r.classes.n_classes / CLASSES_PER_SHEET)
    return [r.path(f"samples{i}", "png") for i in range(sheets)]


def write_sheets(r: ClassSetOutputs) -> None:
    n_classes = r.classes.n_classes
    z, _ = sampling.sample_z_y(SAMPLES_PER_CLASS, r.G.dim_z, n_classes, r.device,
                               r.config["z_var"], truncation=r.config["truncation"])
    for path, first in zip(sheet_paths(r), range(0, n_classes, CLASSES_PER_SHEET)):
        rows = list(range(first, min(first + CLASSES_PER_SHEET, n_classes)))
        sheet = sampling.class_sheet(r.G, rows, z, r.config["G_batch_size"], r.precision,
                                     r.G_forward, r.classes.old_classes)
        sampling.save_image_grid(sheet, path, nrow=SAMPLES_PER_CLASS)
    print(f"Saved class sheets of the {r.label} to {r.folder}")


def interp_paths(r: ClassSetOutputs) -> list[str]:
    return [r.path(f"interp{tag}0", "png") for tag in interpolations(r.G, r.device)]


def write_interps(r: ClassSetOutputs) -> None:
    for path, (fix_z, fix_y) in zip(interp_paths(r), interpolations(r.G, r.device).values()):
        sheet = sampling.interp_sheet(r.G, r.config["sample_num_interps"], INTERP_STEPS,
                                      run_spec.draws_of(r.config), r.device, fix_z, fix_y,
                                      r.config["truncation"],
                                      r.classes.old_classes, r.precision, r.G_forward)
        sampling.save_image_grid(sheet, path, nrow=INTERP_STEPS)
    print(f"Saved interpolation sheets of the {r.label} "
          f"({', '.join(map(os.path.basename, interp_paths(r)))})")


def write_random(r: ClassSetOutputs) -> None:
    images, _ = r.sampler(r.config["truncation"])()
    sampling.save_image_grid(images.cpu(), r.path("random_samples", "png"),
                             nrow=int(images.shape[0] ** 0.5))
    print(f"Saved a random sheet of the {r.label} to {r.folder}")


def measure(r: ClassSetOutputs, truncation: float) -> dict:
    metrics = r.metrics(r.sampler(truncation), r.config["num_inception_images"],
                        num_splits=NUM_SPLITS)
    if r.config["iw"] and not r.classes.old_classes:
        metrics.update(measure_iw(r.G, r.G_forward, r.config, r.device, r.precision, truncation))
    print(f"{evaluation_setting(r.config, truncation, r.itr)}: {describe_metrics(metrics)}")
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


def write_metrics(r: ClassSetOutputs) -> None:
    print(f"Calculating metrics of the {r.label}...")
    r.result["metrics" + r.classes.tag] = measure(r, r.config["truncation"])
    write_json(r.path("metrics", "json"), {**r.setting, "classes": r.classes.name,
                                           **r.result["metrics" + r.classes.tag]})


def write_trunc_curves(r: ClassSetOutputs) -> None:
    values = trunc_curve_values(r.config["sample_trunc_curves"])
    print(f"Metrics of the {r.label} at truncation thresholds {values}...")
    rows = [measure(r, t) for t in values]
    write_json(r.path("trunc_curves", "json"),
               {**r.setting, "classes": r.classes.name, "rows": rows})
    write_csv(r.path("trunc_curves", "csv"), rows)
    print(f"Saved the truncation curve of the {r.label} to {r.path('trunc_curves', '{json,csv}')}")
    r.result["trunc_curve" + r.classes.tag] = rows


@dataclass(frozen=True)
class Output:
    flag: str                               # the flag that asks for it
    paths: Callable[[ClassSetOutputs], list[str]]     # the files it writes
    write: Callable[[ClassSetOutputs], None]


OUTPUTS = (
    Output("sample_npz", lambda r: [r.npz_path], write_npz),
    Output("sample_sheets", sheet_paths, write_sheets),
    Output("sample_interps", interp_paths, write_interps),
    Output("sample_random", lambda r: [r.path("random_samples", "png")], write_random),
    Output("sample_inception_metrics", lambda r: [r.path("metrics", "json")], write_metrics),
    Output("sample_trunc_curves",
           lambda r: [r.path("trunc_curves", "json"), r.path("trunc_curves", "csv")],
           write_trunc_curves),
)


def refuse_to_overwrite(paths: list[str], config: dict) -> None:
    existing = [p for p in paths if os.path.exists(p)]
    if existing and not config["overwrite"]:
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        raise utils.UsageError("earlier outputs would be replaced: "
                               f"{', '.join(existing[:3])}{more}; pass --overwrite to replace "
                               "them, or --sample_sheet_folder_num N to write elsewhere")


# ---------------------------------------------------------------------------------------------
# The run

@torch.no_grad()
def run(config: dict) -> dict:
    device = utils.pick_device(config["device"] or None)
    if config["threads"]:
        torch.set_num_threads(config["threads"])
    utils.seed_rng(config["seed"])
    state = trained_generator.read_checkpoint_state(config)
    G = load_generator(config).to(device)
    G.train(not config["G_eval_mode"])
    itr = state.get("itr", "unknown")
    G_forward = nn.DataParallel(G) if (config["parallel"] and device.type == "cuda"
                                       and torch.cuda.device_count() > 1) else G
    precision = Precision(config["amp"], device, config.get("official_numerics", False))
    folder_name = (str(config["sample_sheet_folder_num"]) if config["sample_sheet_folder_num"] >= 0
                   else trained_generator.weights_name(config["use_ema"], config["load_weights"]))
    folder = os.path.join(run_folder.RunFolder.of(config).samples, folder_name)
    wanted = [output for output in OUTPUTS if config[output.flag]]
    if config["sample_trunc_curves"]:
        trunc_curve_values(config["sample_trunc_curves"])  # a bad spec stops us before any sampling
    setting = {"weights": trained_generator.weights_name(config["use_ema"], config["load_weights"]),
               "itr": itr, "use_ema": config["use_ema"], "G_eval_mode": config["G_eval_mode"],
               "z_var": config["z_var"], "num_inception_images": config["num_inception_images"]}
    result = {"folder": folder, "itr": itr, "G": G}
    # The metrics first (backbone, reference statistics): a missing file should stop us before
    # hours of sampling.
    wants_metrics = config["sample_inception_metrics"] or config["sample_trunc_curves"]
    rounds = [ClassSetOutputs(config, G, G_forward, device, precision, classes, folder, itr,
                    prepare_metrics(config, device, classes) if wants_metrics else None, result,
                    setting)
              for classes in class_sets(config)]
    if config["iw"]:
        iw_reference_images(config)  # and the IW critic's real images
    paths = [path for r in rounds for output in wanted for path in output.paths(r)]
    refuse_to_overwrite(paths, config)
    utils.remove_stale_temporaries(paths)  # of a sample.py killed while writing them

    print(f"Sampling {setting['weights']} of {config['experiment_name']} (itr {itr}) on {device}: "
          f"{' and '.join(f'{r.classes.n_classes} {r.label}' for r in rounds)}, "
          f"G in {'eval' if config['G_eval_mode'] else 'training'} mode")
    old_in_eval_mode = config["G_eval_mode"] and not config["accumulate_stats"]
    if old_in_eval_mode and any(r.classes.old_classes for r in rounds):
        print("Note: in eval mode the old classes use BN running statistics gathered on new-class "
              "batches during training; --mybn --accumulate_stats gathers each class set's own")
    for r in rounds:
        # Each class set draws from --seed alone, not from how much random init building G took:
        # the old classes of a transferred G get the very z and classes its source gets.
        utils.seed_rng(config["seed"])
        result.setdefault("metrics" + r.classes.tag, None)
        result.setdefault("trunc_curve" + r.classes.tag, None)
        if config["accumulate_stats"]:
            # Old and new classes share the BN statistics: each set gets standing statistics of
            # its own.
            print(f"Accumulating standing stats of the {r.label} over "
                  f"{config['num_standing_accumulations']} batches...")
            sampling.accumulate_standing_stats(G, run_spec.draws_of(config), device,
                                               old_classes=r.classes.old_classes)
        for output in wanted:
            output.write(r)
    return result


def main(argv: list[str] | None = None) -> dict:
    return run(parse_config(argv))


if __name__ == "__main__":
    utils.run_main(main)
