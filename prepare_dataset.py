"""Your own dataset -> the old/new class folders a transfer needs, in one command.

    python prepare_dataset.py --idx /usr/share/datasets/fashion-mnist --preset fashion-mnist \\
        --shots 10 --name fmnist

writes, under --data_root (default base_dir/data), for --name NAME:

    NAME_old/<class>/            every training image of the old classes: the source model's data
    NAME_old_reference/<class>/  held-out images of the old classes: old-class metrics, forgetting
    NAME_new/<class>/            --shots images per new class: the transfer's training data
    NAME_new_reference/<class>/  held-out images of the new classes: the reference statistics
    NAME_classifier_train/, NAME_classifier_test/  (--classifier_data) every chosen class, the training
                                 and the held-out images, for training a metric classifier

Each folder is a dataset by its name (`--dataset NAME_new`, datasets.dataset_spec) and holds a
dataset.json: {"format": 1, "written_by", "dataset", "resolution", "class_names" (the true names,
in label order), "folders" (class folder per label), "source_labels", "images_per_class", "role",
"source", "split": {"old", "new"} (true names), "shots", "seed", "reference_per_class" and, for
NAME_new and NAME_old, "reference" (the folder of its held-out images, which
calculate_inception_moments.py uses for the statistics).

Sources (exactly one): --torchvision NAME (a torchvision.datasets class with train/test splits),
--idx DIR (the four IDX files of MNIST-like data), --image_folder DIR (DIR/<class>/<images>, no test
split). Decisions worth knowing:
- Labels in this project are the positions of the class folders in sorted order
  (datasets.find_classes), so dataset.json lists the classes in that order, not the source's.
- A class's folder is its name made safe ("T-shirt/top" -> "T-shirt_top"); dataset.json keeps the name.
- The shots of a new class are the first --shots of a permutation of its training images seeded by
  (--seed, the class's source label): the same seed gives the same files, and a class's shots do not
  depend on which other classes are new.
- References never overlap the shots: with a test split they are its images of the class (all, or
  --reference_per_class drawn by a permutation seeded by (--seed, label, 1)); an image folder's
  references are held out first by that permutation and everything else is training data.
- File names keep the source index, `train_012345.png` is image 12345 of the training split
  (`test_...` of the test split); an image folder's files keep their names, as .png.
- Images become 8-bit (datasets.eight_bit): 16-bit grey scaled by 255/65535, float grey read as
  [0, 1] when its largest value is at most 1, else as [0, 255] (rounded half up: 0.5 -> 128),
  transparent pixels (LA, PA, RGBA, palette transparency) composited on white, palette, CMYK and
  YCbCr converted to RGB; any other mode stops with one line naming the file. They are then
  center-cropped to a square on their long edge and resized (LANCZOS) to --resolution; grey images
  stay one-channel PNGs (the loader converts every image to RGB).
- Every folder is built in a hidden staging folder next to it and renamed into place once all are
  built, so a crash leaves no half dataset. Existing outputs are refused unless --overwrite, and
  even then only folders whose dataset.json this tool wrote are replaced.
"""
from __future__ import annotations

import argparse
import gzip
import inspect
import json
import os
import re
import shutil
import tempfile
import time
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

import datasets
import flags
import utils

FORMAT = 1
TOOL = "prepare_dataset.py"
REFERENCE_STREAM = 1  # the references' permutation is seeded by (seed, label, 1), the shots' by (seed, label)

PRESETS = {  # class names in label order, and the default new classes
    "fashion-mnist": (["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                       "Sneaker", "Bag", "Ankle boot"],
                      ["Pullover", "Coat", "Ankle boot"]),
}

IDX_FILES = {  # stem -> (magic number, dimensions): unsigned bytes (type 0x08), images 3-d, labels 1-d
    "train-images-idx3-ubyte": (0x00000803, 3), "train-labels-idx1-ubyte": (0x00000801, 1),
    "t10k-images-idx3-ubyte": (0x00000803, 3), "t10k-labels-idx1-ubyte": (0x00000801, 1),
}


# ----------------------------------------------------------------------------------------------
# Sources: class names, and a training and (maybe) a test split

@dataclass
class Split:
    """One split of a source: labels, image i on demand, and its file name in the outputs."""
    name: str                              # train / test (image: an image folder): the file-name prefix
    labels: np.ndarray                     # int64 [N], the source's labels
    load: Callable[[int], Image.Image]
    file_names: list[str] | None = None    # an image folder's own names; else <name>_<index>.png

    def file_name(self, index: int) -> str:
        if self.file_names is not None:
            return self.file_names[index]
        return f"{self.name}_{index:0{max(6, len(str(len(self.labels) - 1)))}d}.png"

    def indices_of(self, label: int) -> np.ndarray:
        return np.flatnonzero(self.labels == label)


@dataclass
class Source:
    description: dict            # for dataset.json: kind and where
    class_names: list[str]       # the true names, by source label
    train: Split
    test: Split | None           # None: the references are held out of the training images


def array_split(name: str, images: np.ndarray, labels: np.ndarray) -> Split:
    """A split of uint8 images [N, H, W] (grey) or [N, H, W, 3] (RGB) held in memory."""
    return Split(name, np.asarray(labels, dtype=np.int64), lambda i: Image.fromarray(images[i]))


def idx_path(folder: str, stem: str) -> str:
    for name in (stem, stem + ".gz"):
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    raise utils.UsageError(f"--idx {folder} holds no {stem} (or {stem}.gz); the folder needs the four IDX files "
                           f"{', '.join(IDX_FILES)} (each may be gzip'd)")


def read_idx(path: str, magic: int, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes (gzip'd when it ends in .gz), checked against its header."""
    try:
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise utils.UsageError(f"cannot read {path} ({type(err).__name__}: {err}); replace the file") from None
    header = 4 + 4 * ndim
    found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if found != magic or len(raw) < header:
        what = "images" if ndim == 3 else "labels"
        raise utils.UsageError(f"{path} is not an IDX file of {what}: its magic number is "
                               f"{'missing' if found is None else f'{found:#010x}'}, expected {magic:#010x} "
                               f"(unsigned bytes, {ndim}-d); check the file, or whether images and labels are swapped")
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, np.uint8, offset=header)
    if data.size != int(np.prod(shape)):
        raise utils.UsageError(f"{path} is damaged: its header says {' x '.join(map(str, shape))} bytes of data, "
                               f"but it holds {data.size}; replace the file")
    return data.reshape(shape)


def read_idx_split(folder: str, prefix: str, name: str) -> Split:
    images = read_idx(idx_path(folder, f"{prefix}-images-idx3-ubyte"), *IDX_FILES[f"{prefix}-images-idx3-ubyte"])
    labels = read_idx(idx_path(folder, f"{prefix}-labels-idx1-ubyte"), *IDX_FILES[f"{prefix}-labels-idx1-ubyte"])
    if len(images) != len(labels):
        raise utils.UsageError(f"--idx {folder}: the {prefix} split has {len(images)} images but {len(labels)} "
                               "labels; the files do not belong together")
    return array_split(name, images, labels)


def idx_class_names(args: argparse.Namespace, num_classes: int) -> list[str]:
    """--class_names, the preset's names, or the label numbers."""
    if args.class_names:
        names = [name.strip() for name in args.class_names.split(",")]
        flag = "--class_names"
    elif args.preset:
        names, flag = PRESETS[args.preset][0], f"--preset {args.preset}"
    else:
        return [str(label) for label in range(num_classes)]
    if not all(names):
        raise utils.UsageError(f"{flag} {args.class_names!r} has an empty class name; give one name per label")
    if len(names) != num_classes:
        raise utils.UsageError(f"{flag} gives {len(names)} class names but the labels of --idx {args.idx} are "
                               f"0..{num_classes - 1} ({num_classes} classes); give one name per label, in label order")
    return names


def open_idx(args: argparse.Namespace) -> Source:
    train = read_idx_split(args.idx, "train", "train")
    test = read_idx_split(args.idx, "t10k", "test")
    num_classes = int(max(train.labels.max(initial=-1), test.labels.max(initial=-1))) + 1
    return Source({"kind": "idx", "path": os.path.abspath(args.idx)}, idx_class_names(args, num_classes),
                  train, test)


def torchvision_split(data, name: str) -> Split:
    """The in-memory arrays where the dataset keeps them (MNIST, CIFAR), else its items."""
    labels = np.asarray(data.targets, dtype=np.int64)
    images = np.asarray(data.data) if hasattr(data, "data") else None
    if (images is not None and images.dtype == np.uint8 and len(images) == len(labels)
            and (images.ndim == 3 or (images.ndim == 4 and images.shape[-1] == 3))):
        return array_split(name, images, labels)
    return Split(name, labels, lambda i: data[i][0])


def open_torchvision(args: argparse.Namespace) -> Source:
    import torchvision.datasets  # only this source needs it
    dataset_class = getattr(torchvision.datasets, args.torchvision, None)
    if not (isinstance(dataset_class, type) and "train" in inspect.signature(dataset_class).parameters):
        raise utils.UsageError(f"--torchvision {args.torchvision} is not a torchvision.datasets class with train and "
                               "test splits; use e.g. FashionMNIST, MNIST, KMNIST, CIFAR10 or CIFAR100, or "
                               "--idx / --image_folder")
    splits = []
    for train in (True, False):
        try:
            data = dataset_class(args.torchvision_root, train=train, download=args.download)
        except Exception as err:  # torchvision raises RuntimeError when missing, network errors when downloading
            first_line = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise utils.UsageError(f"--torchvision {args.torchvision} could not be read from --torchvision_root "
                                   f"{args.torchvision_root} ({first_line}); put the dataset there, or pass "
                                   "--download where there is a network") from None
        splits.append(torchvision_split(data, "train" if train else "test"))
    return Source({"kind": "torchvision", "name": args.torchvision,
                   "root": os.path.abspath(args.torchvision_root)},
                  [str(name) for name in data.classes], *splits)


def output_file_names(paths: list[str]) -> list[str]:
    """An image folder's files keep their names, as PNG: cat01.jpg -> cat01.png (cat01_jpg.png when
    two files of the class share the stem)."""
    stems = [os.path.splitext(os.path.basename(path))[0] for path in paths]
    return [f"{stem}.png" if stems.count(stem) == 1 else f"{os.path.basename(path).replace('.', '_')}.png"
            for stem, path in zip(stems, paths)]


def load_image_file(path: str) -> Image.Image:
    try:
        with Image.open(path) as image:  # converted inside, so that the result outlives the file
            return datasets.eight_bit(image, path).copy()
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise utils.UsageError(f"cannot read image {path} ({err}); delete or replace that file and run again") from None


def open_image_folder(args: argparse.Namespace) -> Source:
    root = args.image_folder
    if not os.path.isdir(root):
        raise utils.UsageError(f"--image_folder {root} is not a folder; give a folder of class folders of images")
    classes = datasets.find_classes(root)
    paths, labels, names = [], [], []
    for label, name in enumerate(classes):
        class_paths = datasets.find_images(os.path.join(root, name))
        paths += class_paths
        labels += [label] * len(class_paths)
        names += output_file_names(class_paths)
    split = Split("image", np.array(labels, dtype=np.int64), lambda i: load_image_file(paths[i]), names)
    return Source({"kind": "image_folder", "path": os.path.abspath(root)}, classes, split, None)


def open_source(args: argparse.Namespace) -> Source:
    if args.torchvision:
        source = open_torchvision(args)
    elif args.idx:
        source = open_idx(args)
    else:
        source = open_image_folder(args)
    if args.preset and source.class_names != PRESETS[args.preset][0]:
        raise utils.UsageError(f"--preset {args.preset} knows the classes {', '.join(PRESETS[args.preset][0])}, but "
                               f"the source has {', '.join(source.class_names[:12])}; leave --preset out")
    if len(set(source.class_names)) != len(source.class_names):
        raise utils.UsageError(f"the class names are not unique ({', '.join(source.class_names)}); give distinct names")
    return source


# ----------------------------------------------------------------------------------------------
# The split into old and new classes, and class folder names

def listing(class_names: list[str]) -> str:
    shown = ", ".join(f"{label} {name}" for label, name in enumerate(class_names[:30]))
    return shown + (", ..." if len(class_names) > 30 else "")


def class_label(item: str, class_names: list[str], folders: list[str], flag: str) -> int:
    """A class named by its name, its folder name or its label index."""
    for names in (class_names, folders):
        if item in names:
            return names.index(item)
    if item.isdigit() and int(item) < len(class_names):
        return int(item)
    raise utils.UsageError(f"{flag}: unknown class {item!r}; the classes (label, name) are: {listing(class_names)}")


def parse_classes(text: str, flag: str, class_names: list[str], folders: list[str]) -> list[int]:
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise utils.UsageError(f"{flag} {text!r} has an empty class; give comma-separated class names or "
                               f"label indices, e.g. {flag} {class_names[0]},{len(class_names) - 1}")
    labels = [class_label(item, class_names, folders, flag) for item in items]
    twice = sorted({class_names[label] for label in labels if labels.count(label) > 1})
    if twice:
        raise utils.UsageError(f"{flag} names {', '.join(twice)} more than once; name each class once")
    return sorted(labels)


def choose_split(args: argparse.Namespace, class_names: list[str], folders: list[str]) -> tuple[list[int], list[int]]:
    """(old, new) source labels: --new (or the preset's), and --old or every other class."""
    if args.new is None and not args.preset:
        raise utils.UsageError("give the new classes with --new (comma-separated names or label indices); the "
                               f"classes are: {listing(class_names)}")
    new = parse_classes(args.new if args.new is not None else ",".join(PRESETS[args.preset][1]),
                        "--new", class_names, folders)
    if args.old is None:
        old = [label for label in range(len(class_names)) if label not in new]
        if not old:
            raise utils.UsageError("--new names every class, so no old class is left for the source model; "
                                   "keep some classes old")
        return old, new
    old = parse_classes(args.old, "--old", class_names, folders)
    both = [class_names[label] for label in old if label in new]
    if both:
        raise utils.UsageError(f"--old and --new both name {', '.join(both)}; a class is either old or new")
    return old, new


UNSAFE_IN_FOLDER_NAMES = re.compile(r'[/\\:*?"<>|\x00-\x1f]')  # what some file system refuses


def class_folders(class_names: list[str]) -> list[str]:
    """A folder name per class: the name with unsafe characters as '_', without leading or trailing
    dots and spaces (a leading dot would hide the class); unique also where case is ignored."""
    folders, taken = [], set()
    for label, name in enumerate(class_names):
        folder = UNSAFE_IN_FOLDER_NAMES.sub("_", name).strip(" .") or f"class_{label}"
        while folder.lower() in taken:
            folder = f"{folder}_{label}"
        taken.add(folder.lower())
        folders.append(folder)
    return folders


# ----------------------------------------------------------------------------------------------
# What goes where

@dataclass
class Folder:
    """One output dataset: per source label, the split and the indices of its images."""
    name: str
    role: str
    images: dict[int, tuple[Split, np.ndarray]]
    reference: str | None = None


def seeded_permutation(indices: np.ndarray, *seed: int) -> np.ndarray:
    return np.random.default_rng(list(seed)).permutation(indices)


def held_out(source: Source, label: int, args: argparse.Namespace) -> tuple[Split, np.ndarray]:
    """The class's reference images: its test images (all, or --reference_per_class of them), or,
    without a test split, --reference_per_class of its images held out of the training data."""
    split = source.test or source.train
    indices = split.indices_of(label)
    name = source.class_names[label]
    if args.reference_per_class is None:
        if not len(indices):
            raise utils.UsageError(f"class {name} has no test images; give --reference_per_class K to hold K "
                                   "of its training images out as references")
        return split, indices
    most = len(indices) - (0 if source.test else 1)  # without a test split a class keeps a training image
    if args.reference_per_class > most:
        where = "test images" if source.test else "images (and keeps one for training at least)"
        raise utils.UsageError(f"--reference_per_class {args.reference_per_class}, but class {name} has only "
                               f"{len(indices)} {where}; give --reference_per_class {most} or less")
    chosen = seeded_permutation(indices, args.seed, label, REFERENCE_STREAM)[:args.reference_per_class]
    return split, np.sort(chosen)


def training_images(source: Source, label: int, reference: tuple[Split, np.ndarray]) -> np.ndarray:
    indices = source.train.indices_of(label)
    if source.test is None:  # the references came out of the training images
        indices = np.setdiff1d(indices, reference[1])
    return indices


def shots_of(source: Source, label: int, train: np.ndarray, args: argparse.Namespace) -> np.ndarray:
    if len(train) < args.shots:
        raise utils.UsageError(f"--shots {args.shots}, but new class {source.class_names[label]} has only {len(train)} "
                               f"training images{'' if source.test else ' besides its references'}; "
                               f"give --shots {len(train)} or less")
    return np.sort(seeded_permutation(train, args.seed, label)[:args.shots])


def plan_folders(source: Source, old: list[int], new: list[int], args: argparse.Namespace) -> list[Folder]:
    name = args.name
    reference = {label: held_out(source, label, args) for label in old + new}
    train = {label: (source.train, training_images(source, label, reference[label])) for label in old + new}
    folders = [
        Folder(f"{name}_old", "old", {label: train[label] for label in old}, f"{name}_old_reference"),
        Folder(f"{name}_old_reference", "old_reference", {label: reference[label] for label in old}),
        Folder(f"{name}_new", "new", {label: (source.train, shots_of(source, label, train[label][1], args))
                                      for label in new}, f"{name}_new_reference"),
        Folder(f"{name}_new_reference", "new_reference", {label: reference[label] for label in new}),
    ]
    if args.classifier_data:
        test = source.test or source.train
        every = sorted(old + new)
        folders += [
            Folder(f"{name}_classifier_train", "classifier_train", {label: train[label] for label in every}),
            Folder(f"{name}_classifier_test", "classifier_test",
                   {label: (test, test.indices_of(label) if source.test else reference[label][1]) for label in every}),
        ]
    return folders


def empty_classes(folder: Folder, class_names: list[str]) -> list[str]:
    return [class_names[label] for label, (_, indices) in folder.images.items() if not len(indices)]


# ----------------------------------------------------------------------------------------------
# Writing

def prepared_image(image: Image.Image, resolution: int, what: str) -> Image.Image:
    """8-bit grey or RGB (datasets.eight_bit: 16-bit and float grey scaled, alpha composited on
    white), center-cropped on the long edge, then resized. what: the image, for errors."""
    image = datasets.center_crop_long_edge(datasets.eight_bit(image, what))
    if image.size != (resolution, resolution):
        image = image.resize((resolution, resolution), Image.LANCZOS)
    return image


def dataset_json(folder: Folder, source: Source, folders: list[str], old: list[int], new: list[int],
                 args: argparse.Namespace) -> dict:
    """dataset.json of one output folder: classes in label order (sorted folder names)."""
    labels = sorted(folder.images, key=lambda label: folders[label])
    info = {"format": FORMAT, "written_by": TOOL, "dataset": folder.name, "resolution": args.resolution,
            "class_names": [source.class_names[label] for label in labels],
            "folders": [folders[label] for label in labels],
            "source_labels": labels,
            "images_per_class": [len(folder.images[label][1]) for label in labels],
            "role": folder.role, "source": source.description,
            "split": {"old": [source.class_names[label] for label in old],
                      "new": [source.class_names[label] for label in new]},
            "shots": args.shots, "seed": args.seed, "reference_per_class": args.reference_per_class}
    if folder.reference:
        info["reference"] = folder.reference
    return info


def write_folder(folder: Folder, staging: str, folders: list[str], resolution: int,
                 written: dict[tuple[str, int], str]) -> None:
    """The images of folder into staging/<class>/; an image already written for another folder in
    this run (`written`: (split, index) -> path) is copied rather than made again."""
    for label, (split, indices) in folder.images.items():
        class_dir = os.path.join(staging, folders[label])
        os.makedirs(class_dir)
        for index in indices.tolist():
            path = os.path.join(class_dir, split.file_name(index))
            key = (split.name, index)
            if key in written:
                shutil.copyfile(written[key], path)
            else:
                prepared_image(split.load(index), resolution, split.file_name(index)).save(path)
                written[key] = path


def written_by_this_tool(path: str) -> bool:
    try:
        with open(os.path.join(path, datasets.DATASET_JSON)) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and info.get("written_by") == TOOL


def check_outputs(paths: list[str], overwrite: bool) -> None:
    """Every output is new, an empty folder, or (with --overwrite) a folder this tool wrote."""
    for path in paths:
        if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
            raise utils.UsageError(f"{path} exists and is not a folder; move it away or choose another --name")
        if not os.path.lexists(path) or not os.listdir(path):  # nothing there to lose
            continue
        if not overwrite:
            raise utils.UsageError(f"{path} already exists; pass --overwrite to replace it, or choose another --name")
        if not written_by_this_tool(path):
            raise utils.UsageError(f"{path} was not written by {TOOL} (it has no dataset.json of ours), so it is not "
                                   "replaced even with --overwrite; move it away or choose another --name")


def move_into_place(staging: str, path: str) -> None:
    """staging becomes path; a vetted existing path is moved aside first, then deleted."""
    if os.path.isdir(path):
        trash = tempfile.mkdtemp(dir=os.path.dirname(path), prefix=".tmp_old_")
        os.replace(path, os.path.join(trash, "old"))
        os.replace(staging, path)
        shutil.rmtree(trash)
    else:
        os.replace(staging, path)


def write_all(plan: list[Folder], data_root: str, source: Source, old: list[int], new: list[int],
              args: argparse.Namespace) -> dict[str, str]:
    """Every folder staged first, then all renamed into place; the staging never outlives a failure."""
    folders = class_folders(source.class_names)
    os.makedirs(data_root, exist_ok=True)
    staged, written = {}, {}
    try:
        for folder in plan:
            staging = tempfile.mkdtemp(dir=data_root, prefix=f".tmp_{folder.name}_")
            os.chmod(staging, 0o755)  # mkdtemp makes it private; a dataset should read like any folder
            staged[folder.name] = staging
            write_folder(folder, staging, folders, args.resolution, written)
            info = dataset_json(folder, source, folders, old, new, args)
            utils.write_atomically(os.path.join(staging, datasets.DATASET_JSON),
                                   lambda f: json.dump(info, f, indent=1, ensure_ascii=False))
        paths = {}
        for name, staging in staged.items():
            paths[name] = os.path.join(data_root, name)
            move_into_place(staging, paths[name])
        return paths
    finally:
        for staging in staged.values():
            if os.path.isdir(staging):
                shutil.rmtree(staging)


# ----------------------------------------------------------------------------------------------
# Script

def folder_name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", text):
        raise argparse.ArgumentTypeError(f"must be a folder name of letters, digits, '.', '_' and '-', not starting "
                                         f"with '.', '_' or '-', got {text!r}")
    return text


def prepare_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Prepare a labelled dataset for transfer: old-class, new-class (few "
                                            "shots) and held-out reference folders under the data root.",
                                allow_abbrev=False, formatter_class=utils.HelpFormatter)
    g = p.add_argument_group("source (exactly one)").add_mutually_exclusive_group(required=True)
    g.add_argument("--torchvision", metavar="NAME",
                   help="a torchvision.datasets class with train/test splits, e.g. FashionMNIST, MNIST, KMNIST, "
                        "CIFAR10, CIFAR100; class names from its .classes")
    g.add_argument("--idx", metavar="DIR",
                   help="a folder with the four IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                        "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (each may end in .gz)")
    g.add_argument("--image_folder", metavar="DIR",
                   help="DIR/<class>/<images>; no test split, so --reference_per_class images of each class are "
                        "held out as references. Any image Pillow opens: 16-bit and float grey are "
                        "scaled to 8 bits, transparency is composited on white")
    s = p.add_argument_group("source options")
    s.add_argument("--torchvision_root", default="", metavar="DIR",
                   help="torchvision's root folder (default: BASE_DIR/downloads); FashionMNIST reads ROOT/FashionMNIST/raw/")
    s.add_argument("--download", action="store_true", help="let torchvision download the dataset (needs a network)")
    s.add_argument("--class_names", default="", metavar="A,B,C",
                   help="--idx: the class names in label order, comma-separated (default: the label numbers)")
    s.add_argument("--preset", choices=sorted(PRESETS),
                   help="known class names in label order and a default split; fashion-mnist: new = Pullover, "
                        "Coat, Ankle boot, old = the other seven")
    c = p.add_argument_group("split")
    c.add_argument("--new", metavar="CLASSES",
                   help="the new classes: comma-separated class names (or folder names) or label indices, e.g. "
                        "'Coat,9' (required unless --preset gives a default)")
    c.add_argument("--old", metavar="CLASSES",
                   help="the old classes, as --new (default: every class that is not new); classes in neither are left out")
    c.add_argument("--shots", type=utils.at_least(1), required=True, metavar="N",
                   help="training images per new class, drawn from the training split by a permutation seeded by --seed")
    c.add_argument("--reference_per_class", type=utils.at_least(1), default=None, metavar="K",
                   help="held-out reference images per class (default: every test image of the class; required "
                        "for --image_folder, where they are held out of the class's images, apart from the shots)")
    c.add_argument("--seed", type=utils.at_least(0), default=0, help="seed of the shots and references")
    c.add_argument("--resolution", type=int, default=32, choices=flags.RESOLUTIONS,
                   help="images are center-cropped to a square and resized (LANCZOS) to this size")
    o = p.add_argument_group("output")
    o.add_argument("--name", type=folder_name, required=True,
                   help="the datasets are NAME_old, NAME_old_reference, NAME_new, NAME_new_reference")
    o.add_argument("--classifier_data", action="store_true",
                   help="also NAME_classifier_train and NAME_classifier_test: every chosen class, training and "
                        "held-out images, for training a metric classifier")
    o.add_argument("--base_dir", default="base_dir", help="project folder; data goes to BASE_DIR/data")
    o.add_argument("--data_root", default="", help="write here instead of BASE_DIR/data")
    o.add_argument("--overwrite", action="store_true",
                   help="replace existing outputs (only folders this tool wrote: they hold its dataset.json)")
    return p


def check_flag_combinations(args: argparse.Namespace) -> None:
    if not args.torchvision and (args.torchvision_root or args.download):
        raise utils.UsageError("--torchvision_root and --download only apply to --torchvision; leave them out")
    if args.class_names and not args.idx:
        raise utils.UsageError("--class_names names the labels of --idx data; torchvision datasets and image "
                               "folders name their own classes: leave it out")
    if args.class_names and args.preset:
        raise utils.UsageError("--class_names and --preset both give class names; give one of them")
    if args.image_folder and args.reference_per_class is None:
        raise utils.UsageError("--image_folder has no test split: give --reference_per_class K, the images of each "
                               "class held out as references (apart from the shots)")


def summary(plan: list[Folder], paths: dict[str, str], source: Source, old: list[int], new: list[int],
            args: argparse.Namespace, seconds: float) -> str:
    names = source.class_names
    lines = [f"prepared {args.name} from {source.description['kind']} {source.description.get('name') or source.description.get('path')} "
             f"at {args.resolution} px, seed {args.seed}, {seconds:.0f} s",
             f"  new ({len(new)}): {', '.join(names[label] for label in new)}",
             f"  old ({len(old)}): {', '.join(names[label] for label in old)}"]
    left_out = [names[label] for label in range(len(names)) if label not in old + new]
    if left_out:
        lines.append(f"  left out ({len(left_out)}): {', '.join(left_out)}")
    for folder in plan:
        counts = [len(indices) for _, indices in folder.images.values()]
        per_class = f"{min(counts)}" if min(counts) == max(counts) else f"{min(counts)}-{max(counts)}"
        lines.append(f"  {folder.name:<{max(len(f.name) for f in plan)}}  {len(counts):4d} classes  {sum(counts):7d} "
                     f"images ({per_class} per class)  {paths[folder.name]}")
    lines.append(f"next: reference statistics with `python calculate_inception_moments.py --dataset {args.name}_new "
                 f"--data_root {os.path.dirname(paths[plan[0].name])}` (they come from {args.name}_new_reference)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, str]:
    """Prepare the folders; returns their paths by dataset name."""
    start = time.time()
    args = prepare_parser().parse_args(argv)
    check_flag_combinations(args)
    data_root = args.data_root or os.path.join(args.base_dir, "data")
    args.torchvision_root = args.torchvision_root or os.path.join(args.base_dir, "downloads")
    roles = ["old", "old_reference", "new", "new_reference"] + (["classifier_train", "classifier_test"]
                                                                 if args.classifier_data else [])
    check_outputs([os.path.join(data_root, f"{args.name}_{role}") for role in roles], args.overwrite)
    source = open_source(args)
    old, new = choose_split(args, source.class_names, class_folders(source.class_names))
    plan = plan_folders(source, old, new, args)
    for folder in plan:
        missing = empty_classes(folder, source.class_names)
        if missing:
            raise utils.UsageError(f"{folder.name} would have no images of {', '.join(missing)}: the source has none "
                                   f"of them in that split; leave these classes out with --old / --new")
    paths = write_all(plan, data_root, source, old, new, args)
    print(summary(plan, paths, source, old, new, args, time.time() - start))
    return paths


if __name__ == "__main__":
    utils.run_main(main)
