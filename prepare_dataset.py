"""Your own dataset -> the old/new class folders a transfer needs, in one command.

    python prepare_dataset.py --idx /usr/share/datasets/fashion-mnist --preset fashion-mnist \\
        --shots 10 --name fmnist

writes, under --data_root (default base_dir/data), for --name NAME:

    NAME_old/<class>/            every training image of the old classes: the source model's data
    NAME_old_reference/<class>/  held-out images of the old classes: old-class metrics, forgetting
    NAME_new/<class>/            --shots images per new class: the transfer's training data
    NAME_new_reference/<class>/  held-out images of the new classes: the reference statistics
    NAME_classifier_train/, NAME_classifier_test/  (--classifier_data) every chosen class, the
                                 training and the held-out images, for training a metric classifier

Each folder is a dataset by its name (`--dataset NAME_new`, datasets.dataset_spec) and holds a
dataset.json: {"format": 1, "written_by", "dataset", "resolution", "class_names" (the true names,
in label order), "folders" (class folder per label), "source_labels", "images_per_class", "role",
"source", "split": {"old", "new"} (true names), "shots", "seed", "reference_per_class" and, for
NAME_new and NAME_old, "reference" (the folder of its held-out images, which
calculate_inception_moments.py uses for the statistics).

Sources (exactly one; dataset_sources.py reads them): --torchvision NAME (a torchvision.datasets
class with train/test splits), --idx DIR (the four IDX files of MNIST-like data), --image_folder DIR
(DIR/<class>/<images>, no test split). Decisions worth knowing:
- Labels in this project are the positions of the class folders in sorted order
  (datasets.find_classes), so dataset.json lists the classes in that order, not the source's.
- A class's folder is its name made safe ("T-shirt/top" -> "T-shirt_top"); dataset.json keeps the
  name.
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
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image

import datasets
import flags
import utils
from dataset_sources import PRESETS, Source, Split, open_source

FORMAT = 1
TOOL = "prepare_dataset.py"
# the references' permutation is seeded by (seed, label, 1), the shots' by (seed, label)
REFERENCE_STREAM = 1

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
    raise utils.UsageError(f"{flag}: unknown class {item!r}; the classes (label, name) are: "
                           f"{listing(class_names)}")


def parse_classes(text: str, flag: str, class_names: list[str], folders: list[str]) -> list[int]:
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise utils.UsageError(f"{flag} {text!r} has an empty class; give comma-separated class "
                               f"names or label indices, e.g. {flag} "
                               f"{class_names[0]},{len(class_names) - 1}")
    labels = [class_label(item, class_names, folders, flag) for item in items]
    twice = sorted({class_names[label] for label in labels if labels.count(label) > 1})
    if twice:
        raise utils.UsageError(f"{flag} names {', '.join(twice)} more than once; name each class "
                               "once")
    return sorted(labels)


def choose_split(args: argparse.Namespace, class_names: list[str],
                 folders: list[str]) -> tuple[list[int], list[int]]:
    """(old, new) source labels: --new (or the preset's), and --old or every other class."""
    if args.new is None and not args.preset:
        raise utils.UsageError("give the new classes with --new (comma-separated names or label "
                               f"indices); the classes are: {listing(class_names)}")
    new = parse_classes(args.new if args.new is not None else ",".join(PRESETS[args.preset][1]),
                        "--new", class_names, folders)
    if args.old is None:
        old = [label for label in range(len(class_names)) if label not in new]
        if not old:
            raise utils.UsageError("--new names every class, so no old class is left for the "
                                   "source model; keep some classes old")
        return old, new
    old = parse_classes(args.old, "--old", class_names, folders)
    both = [class_names[label] for label in old if label in new]
    if both:
        raise utils.UsageError(f"--old and --new both name {', '.join(both)}; a class is either "
                               "old or new")
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
            raise utils.UsageError(f"class {name} has no test images; give --reference_per_class "
                                   "K to hold K of its training images out as references")
        return split, indices
    # without a test split a class keeps a training image
    most = len(indices) - (0 if source.test else 1)
    if args.reference_per_class > most:
        where = "test images" if source.test else "images (and keeps one for training at least)"
        raise utils.UsageError(f"--reference_per_class {args.reference_per_class}, but class "
                               f"{name} has only {len(indices)} {where}; give "
                               f"--reference_per_class {most} or less")
    permuted = seeded_permutation(indices, args.seed, label, REFERENCE_STREAM)
    chosen = permuted[:args.reference_per_class]
    return split, np.sort(chosen)


def training_images(source: Source, label: int,
                    reference: tuple[Split, np.ndarray]) -> np.ndarray:
    indices = source.train.indices_of(label)
    if source.test is None:  # the references came out of the training images
        indices = np.setdiff1d(indices, reference[1])
    return indices


def shots_of(source: Source, label: int, train: np.ndarray,
             args: argparse.Namespace) -> np.ndarray:
    if len(train) < args.shots:
        raise utils.UsageError(f"--shots {args.shots}, but new class {source.class_names[label]} "
                               f"has only {len(train)} training images"
                               f"{'' if source.test else ' besides its references'}; "
                               f"give --shots {len(train)} or less")
    return np.sort(seeded_permutation(train, args.seed, label)[:args.shots])


def plan_folders(source: Source, old: list[int], new: list[int],
                 args: argparse.Namespace) -> list[Folder]:
    name = args.name
    reference = {label: held_out(source, label, args) for label in old + new}
    train = {label: (source.train, training_images(source, label, reference[label]))
             for label in old + new}
    shots = {label: (source.train, shots_of(source, label, train[label][1], args)) for label in new}
    of = lambda images, labels: {label: images[label] for label in labels}
    folders = [
        Folder(f"{name}_old", "old", of(train, old), f"{name}_old_reference"),
        Folder(f"{name}_old_reference", "old_reference", of(reference, old)),
        Folder(f"{name}_new", "new", shots, f"{name}_new_reference"),
        Folder(f"{name}_new_reference", "new_reference", of(reference, new)),
    ]
    if args.classifier_data:
        test = source.test or source.train
        every = sorted(old + new)
        held = {label: (test, test.indices_of(label) if source.test else reference[label][1])
                for label in every}
        folders += [
            Folder(f"{name}_classifier_train", "classifier_train", of(train, every)),
            Folder(f"{name}_classifier_test", "classifier_test", held),
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
    info = {"format": FORMAT, "written_by": TOOL, "dataset": folder.name,
            "resolution": args.resolution,
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
            raise utils.UsageError(f"{path} exists and is not a folder; move it away or choose "
                                   "another --name")
        if not os.path.lexists(path) or not os.listdir(path):  # nothing there to lose
            continue
        if not overwrite:
            raise utils.UsageError(f"{path} already exists; pass --overwrite to replace it, or "
                                   "choose another --name")
        if not written_by_this_tool(path):
            raise utils.UsageError(f"{path} was not written by {TOOL} (it has no dataset.json of "
                                   "ours), so it is not replaced even with --overwrite; move it "
                                   "away or choose another --name")


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
    """Every folder staged first, then all renamed into place; the staging never outlives a
    failure."""
    folders = class_folders(source.class_names)
    os.makedirs(data_root, exist_ok=True)
    staged, written = {}, {}
    try:
        for folder in plan:
            staging = tempfile.mkdtemp(dir=data_root, prefix=f".tmp_{folder.name}_")
            os.chmod(staging, 0o755)  # mkdtemp makes it private; a dataset reads like any folder
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
        raise argparse.ArgumentTypeError("must be a folder name of letters, digits, '.', '_' and "
                                         f"'-', not starting with '.', '_' or '-', got {text!r}")
    return text


def prepare_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Prepare a labelled dataset for transfer: old-class, "
                                            "new-class (few shots) and held-out reference folders "
                                            "under the data root.",
                                allow_abbrev=False, formatter_class=utils.HelpFormatter)
    g = p.add_argument_group("source (exactly one)").add_mutually_exclusive_group(required=True)
    g.add_argument("--torchvision", metavar="NAME",
                   help="a torchvision.datasets class with train/test splits, e.g. FashionMNIST, "
                        "MNIST, KMNIST, CIFAR10, CIFAR100; class names from its .classes")
    g.add_argument("--idx", metavar="DIR",
                   help="a folder with the four IDX files train-images-idx3-ubyte, "
                        "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte "
                        "(each may end in .gz)")
    g.add_argument("--image_folder", metavar="DIR",
                   help="DIR/<class>/<images>; no test split, so --reference_per_class images of "
                        "each class are held out as references. Any image Pillow opens: 16-bit "
                        "and float grey are scaled to 8 bits, transparency is composited on white")
    s = p.add_argument_group("source options")
    s.add_argument("--torchvision_root", default="", metavar="DIR",
                   help="torchvision's root folder (default: BASE_DIR/downloads); FashionMNIST "
                        "reads ROOT/FashionMNIST/raw/")
    s.add_argument("--download", action="store_true",
                   help="let torchvision download the dataset (needs a network)")
    s.add_argument("--class_names", default="", metavar="A,B,C",
                   help="--idx: the class names in label order, comma-separated (default: the "
                        "label numbers)")
    s.add_argument("--preset", choices=sorted(PRESETS),
                   help="known class names in label order and a default split; fashion-mnist: "
                        "new = Pullover, Coat, Ankle boot, old = the other seven")
    add_split_flags(p.add_argument_group("split"))
    o = p.add_argument_group("output")
    o.add_argument("--name", type=folder_name, required=True,
                   help="the datasets are NAME_old, NAME_old_reference, NAME_new, "
                        "NAME_new_reference")
    o.add_argument("--classifier_data", action="store_true",
                   help="also NAME_classifier_train and NAME_classifier_test: every chosen class, "
                        "training and held-out images, for training a metric classifier")
    o.add_argument("--base_dir", default="base_dir",
                   help="project folder; data goes to BASE_DIR/data")
    o.add_argument("--data_root", default="", help="write here instead of BASE_DIR/data")
    o.add_argument("--overwrite", action="store_true",
                   help="replace existing outputs (only folders this tool wrote: they hold its "
                        "dataset.json)")
    return p


def add_split_flags(c) -> None:
    c.add_argument("--new", metavar="CLASSES",
                   help="the new classes: comma-separated class names (or folder names) or label "
                        "indices, e.g. 'Coat,9' (required unless --preset gives a default)")
    c.add_argument("--old", metavar="CLASSES",
                   help="the old classes, as --new (default: every class that is not new); "
                        "classes in neither are left out")
    c.add_argument("--shots", type=utils.at_least(1), required=True, metavar="N",
                   help="training images per new class, drawn from the training split by a "
                        "permutation seeded by --seed")
    c.add_argument("--reference_per_class", type=utils.at_least(1), default=None, metavar="K",
                   help="held-out reference images per class (default: every test image of the "
                        "class; required for --image_folder, where they are held out of the "
                        "class's images, apart from the shots)")
    c.add_argument("--seed", type=utils.at_least(0), default=0,
                   help="seed of the shots and references")
    c.add_argument("--resolution", type=int, default=32, choices=flags.RESOLUTIONS,
                   help="images are center-cropped to a square and resized (LANCZOS) to this size")


def check_flag_combinations(args: argparse.Namespace) -> None:
    if not args.torchvision and (args.torchvision_root or args.download):
        raise utils.UsageError("--torchvision_root and --download only apply to --torchvision; "
                               "leave them out")
    if args.class_names and not args.idx:
        raise utils.UsageError("--class_names names the labels of --idx data; torchvision "
                               "datasets and image folders name their own classes: leave it out")
    if args.class_names and args.preset:
        raise utils.UsageError("--class_names and --preset both give class names; give one of "
                               "them")
    if args.image_folder and args.reference_per_class is None:
        raise utils.UsageError("--image_folder has no test split: give --reference_per_class K, "
                               "the images of each class held out as references (apart from the "
                               "shots)")


def summary(plan: list[Folder], paths: dict[str, str], source: Source, old: list[int],
            new: list[int], args: argparse.Namespace, seconds: float) -> str:
    names = source.class_names
    where = source.description.get("name") or source.description.get("path")
    lines = [f"prepared {args.name} from {source.description['kind']} {where} "
             f"at {args.resolution} px, seed {args.seed}, {seconds:.0f} s",
             f"  new ({len(new)}): {', '.join(names[label] for label in new)}",
             f"  old ({len(old)}): {', '.join(names[label] for label in old)}"]
    left_out = [names[label] for label in range(len(names)) if label not in old + new]
    if left_out:
        lines.append(f"  left out ({len(left_out)}): {', '.join(left_out)}")
    width = max(len(f.name) for f in plan)
    for folder in plan:
        counts = [len(indices) for _, indices in folder.images.values()]
        per_class = (f"{min(counts)}" if min(counts) == max(counts)
                     else f"{min(counts)}-{max(counts)}")
        lines.append(f"  {folder.name:<{width}}  {len(counts):4d} classes  {sum(counts):7d} "
                     f"images ({per_class} per class)  {paths[folder.name]}")
    lines.append("next: reference statistics with `python calculate_inception_moments.py "
                 f"--dataset {args.name}_new --data_root {os.path.dirname(paths[plan[0].name])}` "
                 f"(they come from {args.name}_new_reference)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, str]:
    """Prepare the folders; returns their paths by dataset name."""
    start = time.time()
    args = prepare_parser().parse_args(argv)
    check_flag_combinations(args)
    data_root = args.data_root or os.path.join(args.base_dir, "data")
    args.torchvision_root = args.torchvision_root or os.path.join(args.base_dir, "downloads")
    roles = ["old", "old_reference", "new", "new_reference"]
    roles += ["classifier_train", "classifier_test"] if args.classifier_data else []
    check_outputs([os.path.join(data_root, f"{args.name}_{role}") for role in roles],
                  args.overwrite)
    source = open_source(args)
    old, new = choose_split(args, source.class_names, class_folders(source.class_names))
    plan = plan_folders(source, old, new, args)
    for folder in plan:
        missing = empty_classes(folder, source.class_names)
        if missing:
            raise utils.UsageError(f"{folder.name} would have no images of {', '.join(missing)}: "
                                   "the source has none of them in that split; leave these classes "
                                   "out with --old / --new")
    paths = write_all(plan, data_root, source, old, new, args)
    print(summary(plan, paths, source, old, new, args, time.time() - start))
    return paths


if __name__ == "__main__":
    utils.run_main(main)
