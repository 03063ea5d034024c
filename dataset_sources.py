"""The sources prepare_dataset.py reads, each as its class names and a training and (maybe) a test
split whose images load on demand: a torchvision.datasets class with train/test splits
(--torchvision), the four IDX files of MNIST-like data (--idx, each may be gzip'd), or a folder of
class folders of images (--image_folder, no test split: its references are held out of it)."""
from __future__ import annotations

import argparse
import gzip
import inspect
import os
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

import datasets
import utils

PRESETS = {  # class names in label order, and the default new classes
    "fashion-mnist": (["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                       "Sneaker", "Bag", "Ankle boot"],
                      ["Pullover", "Coat", "Ankle boot"]),
}

# stem -> (magic number, dimensions): unsigned bytes (type 0x08), images 3-d, labels 1-d
IDX_FILES = {
    "train-images-idx3-ubyte": (0x00000803, 3), "train-labels-idx1-ubyte": (0x00000801, 1),
    "t10k-images-idx3-ubyte": (0x00000803, 3), "t10k-labels-idx1-ubyte": (0x00000801, 1),
}


@dataclass
class Split:
    """One split of a source: labels, image i on demand, and its file name in the outputs."""
    name: str                              # the file-name prefix: train / test (image: a folder)
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
    raise utils.UsageError(f"--idx {folder} holds no {stem} (or {stem}.gz); the folder needs the "
                           f"four IDX files {', '.join(IDX_FILES)} (each may be gzip'd)")


def read_idx(path: str, magic: int, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes (gzip'd when it ends in .gz), checked against its header."""
    try:
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise utils.UsageError(f"cannot read {path} ({type(err).__name__}: {err}); replace the "
                               "file") from None
    header = 4 + 4 * ndim
    found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if found != magic or len(raw) < header:
        what = "images" if ndim == 3 else "labels"
        number = "missing" if found is None else f"{found:#010x}"
        raise utils.UsageError(f"{path} is not an IDX file of {what}: its magic number is "
                               f"{number}, expected {magic:#010x} (unsigned bytes, {ndim}-d); "
                               "check the file, or whether images and labels are swapped")
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, np.uint8, offset=header)
    if data.size != int(np.prod(shape)):
        raise utils.UsageError(f"{path} is damaged: its header says "
                               f"{' x '.join(map(str, shape))} bytes of data, but it holds "
                               f"{data.size}; replace the file")
    return data.reshape(shape)


def read_idx_split(folder: str, prefix: str, name: str) -> Split:
    images_stem, labels_stem = f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"
    images = read_idx(idx_path(folder, images_stem), *IDX_FILES[images_stem])
    labels = read_idx(idx_path(folder, labels_stem), *IDX_FILES[labels_stem])
    if len(images) != len(labels):
        raise utils.UsageError(f"--idx {folder}: the {prefix} split has {len(images)} images but "
                               f"{len(labels)} labels; the files do not belong together")
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
        raise utils.UsageError(f"{flag} {args.class_names!r} has an empty class name; give one "
                               "name per label")
    if len(names) != num_classes:
        raise utils.UsageError(f"{flag} gives {len(names)} class names but the labels of --idx "
                               f"{args.idx} are 0..{num_classes - 1} ({num_classes} classes); give "
                               "one name per label, in label order")
    return names


def open_idx(args: argparse.Namespace) -> Source:
    train = read_idx_split(args.idx, "train", "train")
    test = read_idx_split(args.idx, "t10k", "test")
    num_classes = int(max(train.labels.max(initial=-1), test.labels.max(initial=-1))) + 1
    return Source({"kind": "idx", "path": os.path.abspath(args.idx)},
                  idx_class_names(args, num_classes), train, test)


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
    if not (isinstance(dataset_class, type)
            and "train" in inspect.signature(dataset_class).parameters):
        raise utils.UsageError(f"--torchvision {args.torchvision} is not a torchvision.datasets "
                               "class with train and test splits; use e.g. FashionMNIST, MNIST, "
                               "KMNIST, CIFAR10 or CIFAR100, or "
                               "--idx / --image_folder")
    splits = []
    for train in (True, False):
        try:
            data = dataset_class(args.torchvision_root, train=train, download=args.download)
        # torchvision raises RuntimeError when missing, network errors when downloading
        except Exception as err:
            first_line = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise utils.UsageError(f"--torchvision {args.torchvision} could not be read from "
                                   f"--torchvision_root {args.torchvision_root} ({first_line}); "
                                   "put the dataset there, or pass "
                                   "--download where there is a network") from None
        splits.append(torchvision_split(data, "train" if train else "test"))
    return Source({"kind": "torchvision", "name": args.torchvision,
                   "root": os.path.abspath(args.torchvision_root)},
                  [str(name) for name in data.classes], *splits)


def output_file_names(paths: list[str]) -> list[str]:
    """An image folder's files keep their names, as PNG: cat01.jpg -> cat01.png (cat01_jpg.png when
    two files of the class share the stem)."""
    stems = [os.path.splitext(os.path.basename(path))[0] for path in paths]
    return [f"{stem}.png" if stems.count(stem) == 1
            else f"{os.path.basename(path).replace('.', '_')}.png"
            for stem, path in zip(stems, paths)]


def load_image_file(path: str) -> Image.Image:
    try:
        with Image.open(path) as image:  # converted inside, so that the result outlives the file
            return datasets.eight_bit(image, path).copy()
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise utils.UsageError(f"cannot read image {path} ({err}); delete or replace that file and "
                               "run again") from None


def open_image_folder(args: argparse.Namespace) -> Source:
    root = args.image_folder
    if not os.path.isdir(root):
        raise utils.UsageError(f"--image_folder {root} is not a folder; give a folder of class "
                               "folders of images")
    classes = datasets.find_classes(root)
    paths, labels, names = [], [], []
    for label, name in enumerate(classes):
        class_paths = datasets.find_images(os.path.join(root, name))
        paths += class_paths
        labels += [label] * len(class_paths)
        names += output_file_names(class_paths)
    split = Split("image", np.array(labels, dtype=np.int64), lambda i: load_image_file(paths[i]),
                  names)
    return Source({"kind": "image_folder", "path": os.path.abspath(root)}, classes, split, None)


def open_source(args: argparse.Namespace) -> Source:
    if args.torchvision:
        source = open_torchvision(args)
    elif args.idx:
        source = open_idx(args)
    else:
        source = open_image_folder(args)
    if args.preset and source.class_names != PRESETS[args.preset][0]:
        raise utils.UsageError(f"--preset {args.preset} knows the classes "
                               f"{', '.join(PRESETS[args.preset][0])}, but the source has "
                               f"{', '.join(source.class_names[:12])}; leave --preset out")
    if len(set(source.class_names)) != len(source.class_names):
        raise utils.UsageError(f"the class names are not unique ({', '.join(source.class_names)}); "
                               "give distinct names")
    return source
