"""A generated, class-compositional 32 px world, so the whole project runs offline.

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

    python toy_data.py --base_dir base_dir --source_images_per_class 500 \
        --target_images_per_class 25 --seed 0

writes base_dir/data/toy_source (the 12 old classes, dataset ToySource32) and base_dir/data/toy
(the 4 new classes, dataset Toy32), one folder per class of PNG files.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile

import numpy as np
from PIL import Image, ImageDraw

import utils

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
        replace_folder(staging, root)
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging)


def replace_folder(new: str, root: str) -> None:
    """Move new to root; an existing root (already vetted) is moved aside first, then deleted."""
    if os.path.isdir(root):
        trash = tempfile.mkdtemp(dir=os.path.dirname(root), prefix=".tmp_old_")
        os.replace(root, os.path.join(trash, "old"))
        os.replace(new, root)
        shutil.rmtree(trash)
    else:
        os.replace(new, root)


# ----------------------------------------------------------------------------------------------
# Script

def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(allow_abbrev=False, description="Write the toy source (old classes) and target "
                                                 "(new classes) image folders.")
    parser.add_argument("--base_dir", default="base_dir",
                        help="project folder; data goes to <base_dir>/data (default: %(default)s)")
    parser.add_argument("--data_root", default=None,
                        help="write here instead of <base_dir>/data")
    parser.add_argument("--source_images_per_class", type=utils.at_least(1), default=500,
                        help="images per old class (default: %(default)s)")
    parser.add_argument("--target_images_per_class", type=utils.at_least(1), default=25,
                        help="images per new class (default: %(default)s)")
    parser.add_argument("--seed", type=utils.at_least(0), default=0, help="seed of the drawing (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing toy folders (only ever toy class folders)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
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
