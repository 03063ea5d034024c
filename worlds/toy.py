"""The toy world: a generated, class-compositional 32 px world, so the whole project runs offline.

Every class is a coloured shape, `<colour>_<shape>`: 4 shapes x 4 colours = 16 classes, drawn at a
random position, size and rotation over a random textured background. Knowledge propagation across
classes needs new classes that are new *combinations* of things the old classes already show, so
one colour per shape is held out in a Latin square: every shape and every colour of a NEW class
appears in three OLD classes, but never together.

              circle   square   triangle   cross
    red        NEW      old      old        old
    green      old      NEW      old        old
    blue       old      old      NEW        old
    yellow     old      old      old        NEW

Images are deterministic in (seed, class): class c uses its own generator seeded with
[seed, index of c in ALL_CLASSES], so a class looks the same whichever other classes are written.

    python -m worlds.toy data --base_dir base_dir --source_images_per_class 500 \
        --target_images_per_class 25 --seed 0

writes base_dir/data/toy_source (the 12 old classes, dataset ToySource32) and base_dir/data/toy
(the 4 new classes, dataset Toy32), one folder per class of PNG files. As a world
(worlds/__init__.py) it transfers the shipped source model (assets/toy_source, 12 old classes;
rebuilt by `python -m worlds.toy source`) to the 4 new classes, measured in the shipped toy
classifier's feature space (assets/toy_classifier.pth; rebuilt by `python train_classifier.py
--world toy --overwrite`).
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile

import numpy as np
import torch
from PIL import Image, ImageDraw

import prepare_dataset
import utils
from worlds import World, publish_source, transfer_flags

RESOLUTION = 32
SUPERSAMPLE = 4  # shapes are drawn 4x larger and shrunk, which gives them anti-aliased edges

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = {  # saturated and far apart, so colour stays readable at 32 px over a muted background
    "red": (215, 40, 40),
    "green": (40, 170, 60),
    "blue": (45, 85, 225),
    "yellow": (235, 205, 35),
}
HELD_OUT = {"circle": "red", "square": "green", "triangle": "blue", "cross": "yellow"}


def class_name(colour: str, shape: str) -> str:
    return f"{colour}_{shape}"


def parse_class(name: str) -> tuple[str, str]:
    """'red_circle' -> ('circle', 'red'): the (shape, colour) order of render_image."""
    colour, shape = name.split("_")
    return shape, colour


# Sorted, so that list order is the label order of a folder of these classes (sorted folder names).
ALL_CLASSES = sorted(class_name(colour, shape) for colour in COLOURS for shape in SHAPES)
NEW_CLASSES = sorted(class_name(colour, shape) for shape, colour in HELD_OUT.items())
OLD_CLASSES = [name for name in ALL_CLASSES if name not in NEW_CLASSES]


# ----------------------------------------------------------------------------------------------
# Drawing

def textured_background(rng: np.random.Generator) -> np.ndarray:
    """Soft, muted colour blotches plus grain, float [32, 32, 3] in 0..255: texture to ignore."""
    grey = rng.uniform(60, 190)
    tint = rng.normal(0, 10, size=3)
    coarse = rng.normal(0, 28, size=(4, 4, 3)) + grey + tint
    # Bicubic upsampling of a 4x4 grid gives smooth blotches instead of pixel noise.
    blotches = Image.fromarray(np.clip(coarse, 0, 255).astype(np.uint8)).resize(
        (RESOLUTION, RESOLUTION), Image.BICUBIC)
    grain = rng.normal(0, 7, size=(RESOLUTION, RESOLUTION, 1))
    return np.asarray(blotches, dtype=np.float32) + grain


def rotated(points: np.ndarray, angle: float) -> np.ndarray:
    cos, sin = np.cos(angle), np.sin(angle)
    return points @ np.array([[cos, sin], [-sin, cos]])


def shape_outline(shape: str, radius: float) -> np.ndarray:
    """Polygon vertices around the origin; every shape covers a similar area for the same radius."""
    if shape == "square":
        half = 0.8 * radius
        return np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
    if shape == "triangle":
        angles = np.pi / 2 + 2 * np.pi * np.arange(3) / 3
        return 1.1 * radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if shape == "cross":
        arm, half = radius, 0.35 * radius
        return np.array([[-half, -arm], [half, -arm], [half, -half], [arm, -half], [arm, half],
                         [half, half], [half, arm], [-half, arm], [-half, half], [-arm, half],
                         [-arm, -half], [-half, -half]])
    raise ValueError(f"unknown shape {shape!r}")


def shape_mask(shape: str, rng: np.random.Generator) -> np.ndarray:
    """Coverage of one randomly placed, sized and rotated shape, float [32, 32] in 0..1."""
    radius = rng.uniform(7.0, 12.0)
    centre = rng.uniform(radius * 0.9, RESOLUTION - radius * 0.9, size=2)
    canvas = Image.new("L", (RESOLUTION * SUPERSAMPLE,) * 2, 0)
    draw = ImageDraw.Draw(canvas)
    if shape == "circle":
        left, top = (centre - radius) * SUPERSAMPLE
        right, bottom = (centre + radius) * SUPERSAMPLE
        draw.ellipse([left, top, right, bottom], fill=255)
    else:
        points = rotated(shape_outline(shape, radius), rng.uniform(0, 2 * np.pi)) + centre
        draw.polygon([tuple(p) for p in points * SUPERSAMPLE], fill=255)
    small = canvas.resize((RESOLUTION, RESOLUTION), Image.BOX)
    return np.asarray(small, dtype=np.float32)[..., None] / 255.0


def shape_paint(colour: str, rng: np.random.Generator) -> np.ndarray:
    """The class colour with a per-image jitter, a light shading gradient and grain."""
    base = np.array(COLOURS[colour], dtype=np.float32) + rng.normal(0, 12, size=3)
    ramp = np.linspace(-1, 1, RESOLUTION, dtype=np.float32)
    direction = rng.normal(size=2)
    shading = 18 * (direction[0] * ramp[None, :] + direction[1] * ramp[:, None])[..., None]
    grain = rng.normal(0, 6, size=(RESOLUTION, RESOLUTION, 1))
    return base + shading + grain


def render_image(shape: str, colour: str, rng: np.random.Generator) -> Image.Image:
    """One 32 x 32 RGB image of a `colour` `shape`; all randomness comes from rng."""
    if shape not in SHAPES or colour not in COLOURS:
        raise ValueError(f"unknown shape/colour {shape!r}/{colour!r}; shapes: {SHAPES}, "
                         f"colours: {tuple(COLOURS)}")
    background = textured_background(rng)
    alpha = shape_mask(shape, rng)
    image = background * (1 - alpha) + shape_paint(colour, rng) * alpha
    return Image.fromarray(np.clip(image, 0, 255).round().astype(np.uint8), "RGB")


def class_rng(name: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, ALL_CLASSES.index(name)])


def render_class(name: str, count: int, seed: int) -> list[Image.Image]:
    """The first `count` images of class `name` for this seed (a prefix of any longer run)."""
    if name not in ALL_CLASSES:
        raise utils.UsageError(f"unknown toy class {name!r}; the classes are {ALL_CLASSES}")
    rng = class_rng(name, seed)
    shape, colour = parse_class(name)
    return [render_image(shape, colour, rng) for _ in range(count)]


def render_dataset(classes: list[str], images_per_class: int, seed: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """In-memory images uint8 [N, 32, 32, 3] and labels int64 [N] (indices into `classes`)."""
    images, labels = [], []
    for label, name in enumerate(classes):
        images += [np.asarray(image) for image in render_class(name, images_per_class, seed)]
        labels += [label] * images_per_class
    return np.stack(images), np.array(labels, dtype=np.int64)


# ----------------------------------------------------------------------------------------------
# Writing image folders

def holds_only_toy_classes(root: str) -> bool:
    """True when root holds nothing but toy class folders: safe to replace on --overwrite."""
    for entry in os.scandir(root):
        if not entry.is_dir() or entry.name not in ALL_CLASSES:
            return False
        if any(not sub.is_file() for sub in os.scandir(entry.path)):
            return False
    return True


def check_target_folder(root: str, overwrite: bool) -> None:
    if os.path.exists(root) and not os.path.isdir(root):
        raise utils.UsageError(f"{root} is a file, not a folder; pick another --base_dir")
    if not os.path.isdir(root) or not os.listdir(root):
        return
    if not overwrite:
        raise utils.UsageError(f"{root} is not empty; pass --overwrite to replace it, "
                               "or pick another --base_dir")
    if not holds_only_toy_classes(root):
        raise utils.UsageError(f"{root} holds files or folders that are not toy classes, so it is "
                               "not replaced even with --overwrite; move it away or pick another "
                               "--base_dir")


def write_image_folder(root: str, classes: list[str], images_per_class: int, seed: int,
                       overwrite: bool = False) -> None:
    """Write root/<class>/<00000>.png ... for each class.

    The folder is built next to root and renamed into place, so a crash leaves no half-written
    dataset. A non-empty root is refused unless overwrite is set, and even then only replaced
    when it holds nothing but toy class folders (never someone's real data).
    """
    root = os.path.abspath(root)
    check_target_folder(root, overwrite)
    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=f".tmp_{os.path.basename(root)}_")
    os.chmod(staging, 0o755)  # mkdtemp makes it private; a dataset should read like any folder
    try:
        for name in classes:
            os.makedirs(os.path.join(staging, name))
            for i, image in enumerate(render_class(name, images_per_class, seed)):
                image.save(os.path.join(staging, name, f"{i:05d}.png"))
        prepare_dataset.move_into_place(staging, root)
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging)


# ----------------------------------------------------------------------------------------------
# The world: the shipped 12-class source transferred to the 4 new classes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(ROOT, "assets", "toy_source")          # G.pth, D.pth, config.json
CLASSIFIER = os.path.join(ROOT, "assets", "toy_classifier.pth")
REFERENCE_IMAGES_PER_CLASS = 500   # fresh images per class behind the reference statistics
# of the fresh real images (memorization): unlike any seed of the data
FRESH_IMAGES_SEED = 5000

# The source model: a CIFAR-style BigGAN (no shared embedding, no hierarchical z) at 32 px, small
# enough for CPUs; `python -m worlds.toy source` trains it (assets/toy_source/config.json
# records it).
ARCHITECTURE = ("--G_ch", "12", "--D_ch", "12", "--G_attn", "0", "--D_attn", "0", "--G_init", "N02",
                "--D_init", "N02", "--SN_eps", "1e-8")
# A transfer in this world (the architecture comes from the source's config.json).
TRAINING = transfer_flags("Toy32", CLASSIFIER, 16, "--stage", "BN")


def reference_statistics(data_root: str, dataset: str, classes: list[str], seed: int) -> str:
    """Moments and features of `classes` in the classifier's space from REFERENCE_IMAGES_PER_CLASS
    fresh images each (the true class distribution, not the few training images), written into
    data_root under `dataset`'s names unless there; returns the moments' path."""
    import calculate_inception_moments
    import datasets
    moments = os.path.join(data_root, f"{dataset}_classifier_moments.npz")
    if os.path.isfile(moments):
        return moments
    with tempfile.TemporaryDirectory() as tmp:
        write_image_folder(os.path.join(tmp, datasets.dataset_spec(dataset).folder), classes,
                           REFERENCE_IMAGES_PER_CLASS, seed + 1000)
        written = calculate_inception_moments.run(
            {"dataset": dataset, "base_dir": tmp, "data_root": tmp, "batch_size": 250,
             "num_workers": 0, "shuffle": False, "seed": 0, "hdf5": False, "backbone": "classifier",
             "inception_weights": CLASSIFIER, "device": "cpu", "parallel": False, "resolution": 0,
             "reference_dataset": ""})
        os.makedirs(data_root, exist_ok=True)
        for path in written.values():
            shutil.move(path, os.path.join(data_root, os.path.basename(path)))
    print(f"reference statistics: {moments} ({REFERENCE_IMAGES_PER_CLASS} fresh images per class)")
    return moments


def prepare_new(data_root: str, shots: int, seed: int) -> None:
    """data_root/toy (Toy32): `shots` images of each new class, and their reference statistics."""
    folder = os.path.join(data_root, "toy")
    if not os.path.isdir(folder):
        write_image_folder(folder, NEW_CLASSES, shots, seed)
        print(f"few-shot data: {shots} images of each of {', '.join(NEW_CLASSES)} in {folder}")
    reference_statistics(data_root, "Toy32", NEW_CLASSES, seed)


def prepare_old(data_root: str) -> str:
    """The old classes' reference statistics (ToySource32), for their metrics after transfer."""
    return reference_statistics(data_root, "ToySource32", OLD_CLASSES, seed=0)


def fresh_images(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images of the new classes that no training set of this world holds, [-1, 1], and labels."""
    images, labels = render_dataset(NEW_CLASSES, per_class, FRESH_IMAGES_SEED)
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255)
    return (pixels - 0.5) / 0.5, torch.from_numpy(labels)


WORLD = World(
    name="toy",
    summary="generated shapes x colours: 12 old classes, 4 new ones that recombine them",
    new_dataset="Toy32", old_dataset="ToySource32", classifier=CLASSIFIER, source=SOURCE,
    architecture=ARCHITECTURE, training=TRAINING, demo_shots=25,
    demo_stages=(("BN", 1000, ("--G_lr", "1e-3")), ("FT", 500, ())), prepare_new=prepare_new,
    prepare_old=prepare_old, fresh_images=fresh_images)


def pretrain_source(base: str, iters: int, out: str = SOURCE) -> None:
    """The shipped source model: a plain BigGAN trained with our --stage pretrain on 500 images of
    each old class (8000 iterations: about 50 minutes on 2 idle CPU cores), copied to `out`. G.pth
    ships G itself: on this short schedule the EMA copy lags behind (old-class consistency 80 % vs
    88 %)."""
    import run_folder
    import flags
    import train
    data_root = os.path.join(base, "data")
    if not os.path.isdir(os.path.join(data_root, "toy_source")):
        write_image_folder(os.path.join(data_root, "toy_source"), OLD_CLASSES, 500, seed=0)
    config = flags.parse(["--base_dir", base, "--dataset", "ToySource32", "--stage", "pretrain",
                          "--experiment_name", "toy_source", *ARCHITECTURE, "--batch_size", "16",
                          "--num_D_steps", "1", "--num_D_accumulations", "1", "--G_lr", "2e-4",
                          "--D_lr", "2e-4", "--ema", "--use_ema", "--ema_start", "500",
                          "--ema_decay", "0.999", "--num_iters", str(iters), "--save_every", "250",
                          "--no_fid", "--use_multiepoch_sampler", "--num_epochs", "1000",
                          "--num_workers", "0", "--seed", "0", "--threads", "1"])
    train.run(config)
    publish_source(run_folder.folder(config), out)


# ----------------------------------------------------------------------------------------------
# Script: the data, and the shipped assets rebuilt

def prepare_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(allow_abbrev=False,
                                     description="The toy world: its image folders, and its "
                                                 "shipped source model rebuilt.",
                                     formatter_class=utils.HelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("data", allow_abbrev=False, formatter_class=utils.HelpFormatter,
                               help="write the old classes' (toy_source) and new classes' (toy) "
                                    "image folders")
    data.add_argument("--base_dir", default="base_dir",
                      help="project folder; data goes to <base_dir>/data")
    data.add_argument("--data_root", default=None, help="write here instead of <base_dir>/data")
    data.add_argument("--source_images_per_class", type=utils.at_least(1), default=500,
                      help="images per old class")
    data.add_argument("--target_images_per_class", type=utils.at_least(1), default=25,
                      help="images per new class")
    data.add_argument("--seed", type=utils.at_least(0), default=0, help="seed of the drawing")
    data.add_argument("--overwrite", action="store_true",
                      help="replace existing toy folders (only ever toy class folders)")
    source = commands.add_parser("source", allow_abbrev=False, formatter_class=utils.HelpFormatter,
                                 help="pretrain the source model (--stage pretrain) and write it "
                                      "to assets/toy_source")
    source.add_argument("--base_dir", default="base_dir_source",
                        help="project folder of the pretraining run")
    source.add_argument("--iters", type=utils.at_least(1), default=8000,
                        help="pretraining iterations")
    source.add_argument("--out", default=SOURCE, help="the source model folder to write")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = prepare_parser().parse_args(argv)
    if args.command == "source":
        pretrain_source(args.base_dir, args.iters, args.out)
        return
    data_root = args.data_root or os.path.join(args.base_dir, "data")
    jobs = [("toy_source", OLD_CLASSES, args.source_images_per_class),
            ("toy", NEW_CLASSES, args.target_images_per_class)]
    for folder, _, _ in jobs:  # check both before writing either: no half-done runs
        check_target_folder(os.path.join(data_root, folder), args.overwrite)
    for folder, classes, count in jobs:
        root = os.path.join(data_root, folder)
        write_image_folder(root, classes, count, args.seed, args.overwrite)
        print(f"wrote {len(classes)} classes x {count} images to {root}: {', '.join(classes)}")


if __name__ == "__main__":
    utils.run_main(main)
