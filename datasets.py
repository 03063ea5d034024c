"""The data path: image folders (or their HDF5 cache) -> batches (x in [-1, 1], y class index).

Layout, as in BigGAN-PyTorch and the official cGANTransfer code:

    <data_root>/<folder>/<class name>/<images>      data_root is usually <base_dir>/data

A dataset is named in one of two ways (dataset_spec):
- a name of the DATASETS table, which maps it to its folder and resolution (e.g. I128 -> ImageNet at
  128 px, C100_ImageFolder -> cifar at 32 px, Toy32 -> toy);
- the name of a folder under data_root. A folder written by prepare_dataset.py holds a dataset.json
  (DATASET_JSON) that gives its resolution, its true class names (class_display_names) and the
  folder of its held-out reference images; any other folder of class folders needs --resolution.
Table names come first: a folder named like a table entry is reached through the table.

Decisions worth knowing:

- Labels are the positions of the class folders in sorted order; get_data_loaders prints them.
- Images become 8-bit RGB (eight_bit: 16-bit and float grey scaled to 8 bits, alpha composited
  on white, other modes refused naming the file), are center-cropped to a square on their long
  edge and resized to the resolution (BigGAN-PyTorch's CenterCropLongEdge + Resize), then mapped
  to [-1, 1].
  augment=True adds random horizontal flips.
- Files whose extension is not an image extension (IMAGE_EXTENSIONS) and hidden files are ignored.
  Images are not opened up front (far too slow for ImageNet): an unreadable image stops loading
  with a UsageError naming the file when its turn comes (with num_workers > 0 it arrives inside
  the DataLoader's worker traceback, whose last line is the message).
- HDF5 cache: make_hdf5.py writes <data_root>/<dataset>.hdf5 (e.g. data/I128.hdf5) with 'imgs'
  uint8 [N, 3, H, W] (already cropped and resized), 'labels' int64 [N] and the attribute
  'class_names'; hdf5=True reads it. Both paths give bit-identical batches.
- Order: every pass over the data is a permutation seeded by (seed, pass number), independent of
  the global RNG; EpochSampler.set_epoch chooses the pass an iteration over a loader yields.
  With world_size > 1 every rank takes a disjoint slice (rank::world_size) of the same
  permutation, after dropping the n % world_size left-over images of that pass.
- Few-shot data: when a rank's share of the data is smaller than one batch and drop_last is set,
  an epoch is stretched to as many whole passes as it takes to fill a batch, so loaders always
  yield full batches and every image is still seen equally often.
- use_multiepoch_sampler (BigGAN-PyTorch): one pass over the loader walks all num_epochs epochs
  (always shuffled) and starts start_itr batches in, so a resumed run sees exactly the images it
  would have seen had it never stopped.
"""
from __future__ import annotations

import argparse
import math
import os
from typing import Iterator, NamedTuple

import h5py
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

import utils

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class DatasetSpec(NamedTuple):
    folder: str      # under data_root
    resolution: int  # images are cropped and resized to resolution x resolution


DATASETS = {
    "I32": DatasetSpec("ImageNet", 32),
    "I64": DatasetSpec("ImageNet", 64),
    "I128": DatasetSpec("ImageNet", 128),
    "I256": DatasetSpec("ImageNet", 256),
    "C10": DatasetSpec("cifar", 32),
    "C100": DatasetSpec("cifar", 32),
    "C100_ImageFolder": DatasetSpec("cifar", 32),
    "Toy32": DatasetSpec("toy", 32),              # the few-shot new classes of worlds/toy.py
    "ToySource32": DatasetSpec("toy_source", 32),  # the old classes of worlds/toy.py
}


DATASET_JSON = "dataset.json"  # written by prepare_dataset.py into every folder it prepares


# What prepare_dataset.py writes into dataset.json, by key; read_dataset_json refuses other types.
DATASET_JSON_TYPES = {
    "format": int, "written_by": str, "dataset": str, "resolution": int, "class_names": list[str],
    "folders": list[str], "source_labels": list[int], "images_per_class": list[int], "role": str,
    "source": dict, "split": dict[str, list[str]], "shots": int, "seed": int,
    "reference_per_class": int | None, "reference": str,
}


def reference_dataset_name(dataset: str, data_root: str) -> str:
    """The held-out reference images of a prepared dataset (the `reference` its dataset.json names,
    e.g. mydata_new -> mydata_new_reference); '' when it names none."""
    folder = image_folder_path(dataset, data_root)
    info = read_dataset_json(folder) if os.path.isdir(folder) else None
    reference = (info.get("reference") or "") if info else ""
    if reference and not os.path.isdir(os.path.join(data_root, reference)):
        raise utils.UsageError(f"{folder}'s dataset.json names the reference images {reference}, "
                               f"which are not under {data_root}; prepare the dataset again "
                               "(prepare_dataset.py) or name the reference images yourself")
    return reference


def read_dataset_json(folder: str) -> dict | None:
    """The dataset.json of a prepared folder (data_root/<dataset>), or None when the folder has
    none. Its keys are checked (DATASET_JSON_TYPES), and the folders it names must lie inside the
    data root (reference) or the dataset folder (folders): one clear line otherwise."""
    hint = ("prepare the dataset again with prepare_dataset.py, or delete the file and give "
            "--resolution")
    folder = os.path.normpath(folder)
    folders = {"reference": ("the data root", os.path.dirname(folder)),
               "folders": ("the dataset folder", folder)}
    return utils.read_json_object(os.path.join(folder, DATASET_JSON), hint, DATASET_JSON_TYPES,
                                  ("resolution",), folders)


def folders_with_images(data_root: str) -> list[str]:
    """The folders under data_root that look like datasets: a class folder holding an image."""
    def holds_images(folder: str) -> bool:
        for entry in os.scandir(folder):
            if entry.is_dir() and not entry.name.startswith("."):
                return any(is_image_file(name) for name in os.listdir(entry.path))
        return False
    if not os.path.isdir(data_root):
        return []
    return sorted(entry.name for entry in os.scandir(data_root)
                  if entry.is_dir() and not entry.name.startswith(".") and holds_images(entry.path))


def unknown_dataset(dataset: str, data_root: str | None) -> utils.UsageError:
    if data_root is None:
        return utils.UsageError(f"unknown dataset {dataset!r}; use one of {', '.join(DATASETS)}")
    folders = folders_with_images(data_root)
    found = (f"the folders under {data_root} that hold images: {', '.join(folders)}" if folders
             else f"no folder under {data_root} holds images yet (prepare_dataset.py writes some)")
    return utils.UsageError(f"--dataset {dataset} is neither a known dataset "
                            f"({', '.join(DATASETS)}) nor a folder under {data_root}; {found}")


def dataset_name(text: str) -> str:
    """--dataset: a table name or one folder name; whether it exists is known only once data_root
    is (dataset_spec), so here only what can never name a folder under it is refused."""
    if not text or text.startswith(".") or "/" in text or os.sep in text:
        raise argparse.ArgumentTypeError(f"must be a dataset name ({', '.join(DATASETS)}) or the "
                                         f"name of one folder under --data_root, got {text!r}")
    return text


def dataset_folder(dataset: str, data_root: str | None = None) -> str:
    """The dataset's folder name under data_root: the table's, else the dataset name itself."""
    if dataset in DATASETS:
        return DATASETS[dataset].folder
    if data_root is not None and os.path.isdir(os.path.join(data_root, dataset)):
        return dataset
    raise unknown_dataset(dataset, data_root)


def dataset_spec(dataset: str, data_root: str | None = None, resolution: int = 0) -> DatasetSpec:
    """Folder and resolution: the table entry, else the folder data_root/<dataset> at the
    resolution its dataset.json gives (the images are stored at it, so a different --resolution is
    refused) or, without one, at `resolution` (--resolution), which then must be given."""
    folder = dataset_folder(dataset, data_root)
    if dataset in DATASETS:
        return DATASETS[dataset]
    path = os.path.join(data_root, folder)
    info = read_dataset_json(path)
    if info is None:
        if not resolution:
            raise utils.UsageError(f"{path} has no {DATASET_JSON}, so its resolution is unknown; "
                                   "give --resolution (e.g. --resolution 32), or prepare the "
                                   "folder with prepare_dataset.py")
        return DatasetSpec(folder, resolution)
    if resolution and resolution != info["resolution"]:
        raise utils.UsageError(f"--resolution {resolution}, but {path} holds {info['resolution']} "
                               f"px images ({DATASET_JSON}); leave --resolution out, or prepare "
                               "the dataset again with prepare_dataset.py --resolution "
                               f"{resolution}")
    return DatasetSpec(folder, info["resolution"])


def image_folder_path(dataset: str, data_root: str) -> str:
    return os.path.join(data_root, dataset_folder(dataset, data_root))


def hdf5_path(dataset: str, data_root: str) -> str:
    dataset_folder(dataset, data_root)
    return os.path.join(data_root, f"{dataset}.hdf5")


def class_display_names(dataset: str, data_root: str) -> list[str]:
    """The true class names in label order: those in dataset.json (e.g. 'T-shirt/top', whose
    folder is T-shirt_top) when the folder has one, else the class folder names."""
    folder = image_folder_path(dataset, data_root)
    info = read_dataset_json(folder) if os.path.isdir(folder) else None
    if info is not None and "class_names" in info:
        return list(info["class_names"])
    return find_classes(folder, dataset)


def available_cores() -> int:
    """CPU cores this process may run on (its affinity, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def default_num_workers() -> int:
    """Loader processes by default: 8, as BigGAN-PyTorch's scripts, but never more than the
    cores."""
    return min(8, available_cores())


# ----------------------------------------------------------------------------------------------
# Images -> tensors

def center_crop_long_edge(image: Image.Image) -> Image.Image:
    """The largest centred square: the long edge is cut down to the short one."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return image.crop((left, top, left + side, top + side))


# Every image Pillow opens becomes 8-bit grey (L) or RGB (eight_bit); Pillow's own convert("RGB")
# clips 16-bit grey to white and float images to black, and drops alpha, so those are done here.
BACKGROUND = 255  # transparent pixels are composited on white
# Pillow converts these to RGB as they are meant (not LAB: whether its a and b are signed or offset
# by 128 depends on the file, so it is refused)
COLOUR_MODES = ("P", "RGBX", "CMYK", "YCbCr", "HSV")
ALPHA_MODES = ("LA", "PA", "RGBA", "RGBa")  # RGBa: premultiplied alpha
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # 'I': 16-bit PNGs in older Pillow
SIXTEEN_BIT_MAX = 65535


def round_to_uint8(values: np.ndarray) -> np.ndarray:
    """Values in [0, 255] rounded half up (127.5 -> 128)."""
    return np.floor(values + 0.5).astype(np.uint8)


def composite_on_background(image: Image.Image) -> Image.Image:
    """An image with alpha over an opaque BACKGROUND-white canvas, without its alpha."""
    rgba = image.convert("RGBA")  # LA, PA and premultiplied RGBa too
    canvas = Image.new("RGBA", rgba.size, (BACKGROUND,) * 3 + (255,))
    return Image.alpha_composite(canvas, rgba).convert("L" if image.mode in ("L", "LA") else "RGB")


def deep_to_eight_bit(image: Image.Image, path: str) -> Image.Image:
    """16-bit grey (0..65535, also 32-bit 'I' holding such values) and float grey, in [0, 1] when
    its largest value is at most 1, else in [0, 255], scaled to 8-bit grey."""
    values = np.asarray(image).astype(np.float64)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if image.mode == "F":
        finite = bool(np.isfinite(values).all())
        if not finite or low < 0 or high > 255:
            found = f"values from {low:g} to {high:g}" if finite else "NaN or inf"
            raise utils.UsageError(f"image {path} is a float image with {found}, neither in [0, 1] "
                                   "nor in [0, 255]; convert it to 8-bit RGB or grey")
        return Image.fromarray(round_to_uint8(values * (255 if high <= 1 else 1)), "L")
    if low < 0 or high > SIXTEEN_BIT_MAX:
        raise utils.UsageError(f"image {path} holds integer values from {low:g} to {high:g}, "
                               f"outside the 16-bit range [0, {SIXTEEN_BIT_MAX}]; convert it to "
                               "8-bit RGB or grey")
    return Image.fromarray(round_to_uint8(values * 255 / SIXTEEN_BIT_MAX), "L")


def eight_bit(image: Image.Image, path: str) -> Image.Image:
    """The image as 8-bit grey (L) or RGB: alpha (LA, PA, RGBA, a palette's or a colour's
    transparency) composited on white, 16-bit and float grey scaled (deep_to_eight_bit), palettes
    and other colour spaces converted to RGB. Any other mode is refused with one line naming the
    file."""
    mode = image.mode
    if mode in ("L", "RGB", "P") and "transparency" in image.info:
        return composite_on_background(image)
    if mode in ("L", "RGB"):
        return image
    if mode == "1":
        return image.convert("L")
    if mode in COLOUR_MODES:
        return image.convert("RGB")
    if mode in ALPHA_MODES:
        return composite_on_background(image)
    if mode in SIXTEEN_BIT_MODES or mode == "F":
        return deep_to_eight_bit(image, path)
    raise utils.UsageError(f"image {path} has the pixel mode {mode}, which is not converted to "
                           "8-bit RGB (supported: 1, L, P, RGB, RGBX, CMYK, YCbCr, HSV, LA, PA, "
                           "RGBA, 16-bit grey, float grey); convert it to 8-bit RGB or grey")


def read_image(path: str, resolution: int) -> np.ndarray:
    """The image at path (any mode eight_bit converts), cropped and resized, as uint8
    [3, resolution, resolution]."""
    try:
        with Image.open(path) as image:
            image = center_crop_long_edge(eight_bit(image, path).convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise utils.UsageError(f"cannot read image {path} ({err}); delete or replace that file "
                               "and run again") from None
    if image.size != (resolution, resolution):
        image = image.resize((resolution, resolution), Image.BILINEAR)
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).copy()


def to_model_range(image: np.ndarray) -> torch.Tensor:
    """uint8 [3, H, W] -> float32 in [-1, 1], as ToTensor + Normalize(0.5, 0.5)."""
    return (torch.from_numpy(image).float().div(255) - 0.5) / 0.5


def maybe_flip(x: torch.Tensor, augment: bool) -> torch.Tensor:
    if augment and torch.rand(()) < 0.5:
        return x.flip(-1)
    return x


# ----------------------------------------------------------------------------------------------
# Datasets

def is_image_file(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def find_classes(root: str, dataset: str = "") -> list[str]:
    """Sorted class folder names under root; their positions are the labels."""
    if not os.path.isdir(root):
        raise utils.UsageError(
            f"no data folder at {root}{f' for dataset {dataset}' if dataset else ''}; run "
            "`bash prepare_data.sh` or put the images there, one folder per class")
    classes = sorted(entry.name for entry in os.scandir(root)
                     if entry.is_dir() and not entry.name.startswith("."))
    if not classes:
        raise utils.UsageError(f"{root} holds no class folders; put the images there, "
                               "one folder per class")
    return classes


def find_images(class_folder: str) -> list[str]:
    names = sorted(name for name in os.listdir(class_folder) if is_image_file(name))
    if not names:
        raise utils.UsageError(f"class folder {class_folder} holds no images (accepted: "
                               f"{' '.join(IMAGE_EXTENSIONS)}); add images or remove the folder")
    return [os.path.join(class_folder, name) for name in names]


def check_class_count(classes: list[str], n_classes: int | None, where: str) -> None:
    if n_classes is not None and len(classes) != n_classes:
        raise utils.UsageError(f"n_classes is {n_classes} but {where} holds {len(classes)} "
                               f"classes ({', '.join(classes)}); set n_classes to {len(classes)} "
                               "or fix the data")


class ImageFolderDataset(Dataset):
    """root/<class>/<image> -> (x float32 [3, R, R] in [-1, 1], y int64)."""

    def __init__(self, root: str, resolution: int, augment: bool = False,
                 load_in_mem: bool = False, dataset: str = ""):
        self.root, self.resolution, self.augment = root, resolution, augment
        self.classes = find_classes(root, dataset)
        self.samples = [(path, label) for label, name in enumerate(self.classes)
                        for path in find_images(os.path.join(root, name))]
        self.images = [self.read(i)[0] for i in range(len(self))] if load_in_mem else None

    def __len__(self) -> int:
        return len(self.samples)

    def read(self, index: int) -> tuple[np.ndarray, int]:
        """uint8 [3, R, R] and label, before the model's range and augmentation (for make_hdf5)."""
        path, label = self.samples[index]
        return read_image(path, self.resolution), label

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index] if self.images is not None else self.read(index)[0]
        return maybe_flip(to_model_range(image), self.augment), self.samples[index][1]


class HDF5Dataset(Dataset):
    """The cache written by make_hdf5.py; same items as the ImageFolderDataset it came from."""

    def __init__(self, path: str, augment: bool = False, load_in_mem: bool = False):
        self.path, self.augment = path, augment
        with h5py.File(path, "r") as f:
            self.classes = [name.decode() if isinstance(name, bytes) else str(name)
                            for name in f.attrs["class_names"]]
            self.resolution = int(f["imgs"].shape[-1])
            self.labels = f["labels"][:]
            self.images = f["imgs"][:] if load_in_mem else None
        self.file = None  # opened on first read, so every DataLoader worker gets its own handle

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self.images is not None:
            image = self.images[index]
        else:
            if self.file is None:
                self.file = h5py.File(self.path, "r")
            image = self.file["imgs"][index]
        return maybe_flip(to_model_range(image), self.augment), int(self.labels[index])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "file": None}  # an open h5py handle cannot cross processes


def open_hdf5(dataset: str, data_root: str, augment: bool, load_in_mem: bool,
              resolution: int = 0) -> HDF5Dataset:
    path = hdf5_path(dataset, data_root)
    if not os.path.isfile(path):
        raise utils.UsageError(f"no HDF5 cache at {path}; build it with `python make_hdf5.py "
                               f"--dataset {dataset} --data_root {data_root}` or drop --hdf5")
    try:
        data = HDF5Dataset(path, augment, load_in_mem)
    except (OSError, KeyError) as err:
        raise utils.UsageError(f"{path} is not a cache written by make_hdf5.py ({err}); "
                               "delete it and run make_hdf5.py again") from None
    expected = dataset_spec(dataset, data_root, resolution).resolution
    if data.resolution != expected:
        raise utils.UsageError(f"{path} holds {data.resolution} px images but {dataset} is "
                               f"{expected} px; rebuild it with make_hdf5.py --overwrite")
    return data


def load_dataset(dataset: str, data_root: str, hdf5: bool = False, augment: bool = False,
                 load_in_mem: bool = False, n_classes: int | None = None,
                 resolution: int = 0) -> Dataset:
    """resolution: --resolution, needed only by a folder without dataset.json (dataset_spec)."""
    if hdf5:
        data = open_hdf5(dataset, data_root, augment, load_in_mem, resolution)
        where = hdf5_path(dataset, data_root)
    else:
        where = image_folder_path(dataset, data_root)
        data = ImageFolderDataset(where, dataset_spec(dataset, data_root, resolution).resolution,
                                  augment, load_in_mem, dataset)
    check_class_count(data.classes, n_classes, where)
    return data


def first_images_per_class(data: Dataset, n_classes: int, per_class: int) -> list[torch.Tensor]:
    """The first `per_class` images of each class, [k, 3, R, R] in [-1, 1] (for sheets)."""
    found: list[list[torch.Tensor]] = [[] for _ in range(n_classes)]
    for index in range(len(data)):
        x, y = data[index]
        if len(found[y]) < per_class:
            found[y].append(x)
        if all(len(images) == per_class for images in found):
            break
    return [torch.stack(images) if images else torch.empty(0) for images in found]


def class_names(dataset: str, data_root: str, hdf5: bool = False, resolution: int = 0) -> list[str]:
    """The class folder names in label order, without building a loader."""
    if hdf5:
        return open_hdf5(dataset, data_root, augment=False, load_in_mem=False,
                         resolution=resolution).classes
    return find_classes(image_folder_path(dataset, data_root), dataset)


def describe_classes(dataset: str, classes: list[str]) -> str:
    listing = ", ".join(f"{label} {name}" for label, name in enumerate(classes))
    return f"{dataset}: {len(classes)} classes, label order: {listing}"


# ----------------------------------------------------------------------------------------------
# Sampling order

def pass_order(num_samples: int, pass_index: int, seed: int, shuffle: bool, rank: int,
               world_size: int) -> np.ndarray:
    """This rank's slice of one pass over the data; the slices of all ranks are disjoint."""
    if shuffle:
        order = np.random.default_rng([seed, pass_index]).permutation(num_samples)
    else:
        order = np.arange(num_samples)
    return order[:num_samples - num_samples % world_size][rank::world_size]


class EpochSampler(Sampler[int]):
    """One epoch per iteration: a fresh seeded pass (or several for data smaller than a batch)."""

    def __init__(self, num_samples: int, batch_size: int, shuffle: bool = True, seed: int = 0,
                 rank: int = 0, world_size: int = 1, drop_last: bool = True):
        if num_samples < world_size:
            raise utils.UsageError(f"the dataset has {num_samples} images, fewer than the "
                                   f"{world_size} processes; add images or use fewer processes")
        if not 0 <= rank < world_size:
            raise utils.UsageError(f"rank {rank} is outside 0..{world_size - 1}")
        if seed < 0:
            raise utils.UsageError(f"seed must be a non-negative integer, got {seed}")
        self.num_samples, self.batch_size, self.shuffle = num_samples, batch_size, shuffle
        self.seed, self.rank, self.world_size = seed, rank, world_size
        share = num_samples // world_size
        self.passes_per_epoch = math.ceil(batch_size / share) if drop_last else 1
        self.epoch_length = self.passes_per_epoch * share
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        """Make the next iteration yield this epoch, without its first skip_batches batches (a
        resumed run continues where it stopped)."""
        self.epoch, self.skip = epoch, skip_batches * self.batch_size

    def epoch_order(self, epoch: int) -> np.ndarray:
        first = epoch * self.passes_per_epoch
        return np.concatenate([pass_order(self.num_samples, p, self.seed, self.shuffle,
                                          self.rank, self.world_size)
                               for p in range(first, first + self.passes_per_epoch)])

    def __iter__(self) -> Iterator[int]:
        """The epoch set last (torch's DistributedSampler convention: whoever iterates over epochs
        sets each one; ResumableBatches does for training)."""
        order = self.epoch_order(self.epoch)[self.skip:]
        self.skip = 0
        return iter(order.tolist())

    def __len__(self) -> int:
        return self.epoch_length


class MultiEpochSampler(EpochSampler):
    """All num_epochs epochs in one iteration, skipping the first start_itr batches."""

    def __init__(self, num_samples: int, batch_size: int, num_epochs: int, start_itr: int = 0,
                 seed: int = 0, rank: int = 0, world_size: int = 1, drop_last: bool = True):
        super().__init__(num_samples, batch_size, shuffle=True, seed=seed, rank=rank,
                         world_size=world_size, drop_last=drop_last)
        self.num_epochs, self.start_itr = num_epochs, start_itr

    def __iter__(self) -> Iterator[int]:
        first_epoch, offset = divmod(self.start_itr * self.batch_size, self.epoch_length)
        for epoch in range(first_epoch, self.num_epochs):
            order = self.epoch_order(epoch)
            yield from order[offset if epoch == first_epoch else 0:].tolist()

    def __len__(self) -> int:
        return max(0, self.num_epochs * self.epoch_length - self.start_itr * self.batch_size)


# ----------------------------------------------------------------------------------------------
# Loaders

def get_data_loaders(dataset: str, data_root: str, batch_size: int, num_workers: int = 0,
                     shuffle: bool = False, hdf5: bool = False, drop_last: bool = True,
                     n_classes: int | None = None, augment: bool = False,
                     pin_memory: bool = False, use_multiepoch_sampler: bool = False,
                     start_itr: int = 0, num_epochs: int = 500, seed: int = 0, rank: int = 0,
                     world_size: int = 1, load_in_mem: bool = False, resolution: int = 0,
                     **kwargs) -> list[DataLoader]:
    """[loader] of (x float32 [B, 3, R, R] in [-1, 1], y int64 [B]); loader.dataset.classes
    names the labels. Unknown keyword arguments are ignored, so a whole config can be passed."""
    if batch_size < 1:
        raise utils.UsageError(f"batch_size must be at least 1, got {batch_size}")
    data = load_dataset(dataset, data_root, hdf5, augment, load_in_mem, n_classes, resolution)
    print(describe_classes(dataset, data.classes))
    if use_multiepoch_sampler:
        sampler = MultiEpochSampler(len(data), batch_size, num_epochs, start_itr, seed, rank,
                                    world_size, drop_last)
    else:
        sampler = EpochSampler(len(data), batch_size, shuffle, seed, rank, world_size, drop_last)
    loader = DataLoader(data, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                        pin_memory=pin_memory, drop_last=drop_last)
    return [loader]


class ResumableBatches:
    """A run's batches until the data runs out (--num_epochs): the one owner of where the data
    stands, the epoch and how many of its batches were trained on, which a checkpoint saves
    (position()), so a resumed run continues at the batch where it stopped. The multi-epoch sampler
    spans all epochs itself (it skips the batches a resumed run has seen). The first epoch's
    iterator is made here, before the caller restores a resumed RNG: making it draws from the
    RNG."""

    def __init__(self, loader: DataLoader, num_epochs: int, epoch: int = 0, epoch_batches: int = 0):
        self.loader, self.num_epochs = loader, num_epochs
        self.epoch, self.epoch_batches = epoch, epoch_batches
        self.multi_epoch = isinstance(loader.sampler, MultiEpochSampler)
        self.ran_out = not self.multi_epoch and epoch >= num_epochs
        if not self.multi_epoch:
            loader.sampler.set_epoch(epoch, skip_batches=epoch_batches)
        self._first = None if self.ran_out else iter(loader)

    def position(self) -> dict[str, int]:
        return {"epoch": self.epoch, "epoch_batches": self.epoch_batches}

    def __iter__(self) -> Iterator:
        if self.ran_out:
            return
        batches = self._first
        while True:
            for batch in batches:
                self.epoch_batches += 1
                yield batch
            self.epoch, self.epoch_batches = self.epoch + 1, 0
            if self.multi_epoch or self.epoch >= self.num_epochs:
                return
            self.loader.sampler.set_epoch(self.epoch)
            batches = iter(self.loader)
