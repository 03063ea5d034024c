"""The Fashion-MNIST world: real images. Fashion-MNIST (Xiao et al. 2017; MIT licence) holds 70,000
grey 28 px photos of Zalando products in 10 classes, 6,000 training and 1,000 test images each; here
at 32 px. The old classes (the source model's) are T-shirt/top, Trouser, Dress, Sandal, Shirt,
Sneaker and Bag; the new ones Pullover, Coat and Ankle boot, which have relatives among the old
classes (shirt, sneaker, sandal), what knowledge propagation claims to use.

Shipped (assets/, rebuilt by `python -m worlds.fashion build`: about 1.5 hours on 2 CPU cores, most
of it the source's 2000 pretraining iterations):
    fashion_classifier.pth     the metric classifier over all 10 classes (its test accuracy inside)
    fashion_source/            the source BigGAN of the 7 old classes: G.pth, D.pth, config.json
    fashion_data/              10 training images per new class (seed 0), the new classes' 3,000
                               test images (new_reference.npz) and their reference statistics
So the default run needs no download. Other shot counts, seeds or splits are prepared from the raw
data (prepare_dataset.py): Debian's `apt-get install dataset-fashion-mnist` puts the four IDX files
in /usr/share/datasets/fashion-mnist/; elsewhere set FASHION_MNIST_DIR to a folder holding them.
A split other than the default needs its own source model (`build --new ...`).

    python -m worlds.fashion build                       # every asset, from the raw data
    python -m worlds.fashion build --new Shirt,Sneaker,Bag --out assets_split2   # another split
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import tempfile

import numpy as np
import torch
from PIL import Image

import utils
from worlds import World, publish_source, transfer_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASSETS = os.path.join(ROOT, "assets")
NAME = "fashion"  # prepare_dataset.py --name: fashion_old, fashion_new, fashion_new_reference, ...
NEW_DATASET, OLD_DATASET, NEW_REFERENCE = f"{NAME}_new", f"{NAME}_old", f"{NAME}_new_reference"
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot")
NEW_CLASSES = ("Pullover", "Coat", "Ankle boot")
SHIPPED_SHOTS, SHIPPED_SEED = 10, 0
DEBIAN_RAW = "/usr/share/datasets/fashion-mnist"

# The source model: a CIFAR-style BigGAN at 32 px (no shared embedding, no hierarchical z), small
# enough for CPUs; its flags are recorded in fashion_source/config.json.
ARCHITECTURE = ("--G_ch", "16", "--D_ch", "16", "--G_attn", "0", "--D_attn", "0", "--G_init", "N02",
                "--D_init", "N02", "--SN_eps", "1e-8")
SOURCE_TRAINING = ("--batch_size", "32", "--num_D_steps", "2", "--num_D_accumulations", "1",
                   "--G_lr", "2e-4", "--D_lr", "2e-4", "--ema", "--ema_start", "1000",
                   "--ema_decay", "0.999", "--which_best", "FID", "--load_in_mem",
                   "--use_multiepoch_sampler", "--num_epochs", "1000", "--num_workers", "0")
SOURCE_EVALUATION_IMAGES = 2000  # samples per in-loop evaluation of the source's pretraining

# The default run (experiments.demo; the trials behind it: docs/results.md, "The default run").
# Few-shot GAN training oscillates from one evaluation to the next, so G is sampled as an EMA over
# ~100 iterations; BN trains at 5x the official G_lr (it reaches its best in 500-700 iterations
# instead of > 1000); FT at a quarter of it, since at 2e-4 its first 100 iterations undo much of
# BN's best.
DEMO_EMA = ("--ema", "--use_ema", "--ema_start", "0", "--ema_decay", "0.99")


def assets(out: str = ASSETS) -> dict[str, str]:
    """The asset paths under `out` (the classifier knows all 10 classes: every split shares the
    shipped one)."""
    own = os.path.join(out, "fashion_classifier.pth")
    return {"classifier": own if os.path.isfile(own) or out == ASSETS else CLASSIFIER,
            "source": os.path.join(out, "fashion_source"),
            "data": os.path.join(out, "fashion_data")}


CLASSIFIER = os.path.join(ASSETS, "fashion_classifier.pth")


# ---------------------------------------------------------------------------------------------
# The raw data, and folders prepared from it

def raw_folder() -> str:
    """The folder of the four Fashion-MNIST IDX files."""
    folder = os.environ.get("FASHION_MNIST_DIR") or DEBIAN_RAW
    if not os.path.isfile(os.path.join(folder, "train-images-idx3-ubyte.gz")) and \
            not os.path.isfile(os.path.join(folder, "train-images-idx3-ubyte")):
        raise utils.UsageError(f"the Fashion-MNIST files are not in {folder}: `apt-get install "
                               "dataset-fashion-mnist` puts them in "
                               "/usr/share/datasets/fashion-mnist, or set FASHION_MNIST_DIR to a "
                               "folder holding train-images-idx3-ubyte(.gz) and the other three "
                               f"IDX files (the shipped default run needs none: {SHIPPED_SHOTS} "
                               f"shots, seed {SHIPPED_SEED}, default split)")
    return folder


def prepare_from_raw(data_root: str, shots: int, seed: int, new: tuple[str, ...] = NEW_CLASSES,
                     classifier_data: bool = False) -> None:
    """prepare_dataset.py on the raw data into data_root (fashion_old, _new, _old_reference,
    _new_reference; with classifier_data the classifier's training and test folders too)."""
    import prepare_dataset
    prepare_dataset.main(["--idx", raw_folder(), "--preset", "fashion-mnist", "--new",
                          ",".join(new), "--shots", str(shots), "--seed", str(seed), "--name", NAME,
                          "--data_root", data_root,
                          *(["--classifier_data"] if classifier_data else [])])


def reference_statistics(data_root: str, dataset: str, classifier: str = CLASSIFIER) -> str:
    """The dataset's moments and features in the classifier's space, from its reference folder (the
    test split), unless there; returns the moments' path."""
    import calculate_inception_moments
    moments = os.path.join(data_root, f"{dataset}_classifier_moments.npz")
    if not os.path.isfile(moments):
        calculate_inception_moments.run(
            {"dataset": dataset, "base_dir": data_root, "data_root": data_root, "batch_size": 250,
             "num_workers": 0, "shuffle": False, "seed": 0, "hdf5": False, "backbone": "classifier",
             "inception_weights": classifier, "device": "cpu", "parallel": False, "resolution": 0,
             "reference_dataset": ""})
    return moments


# ---------------------------------------------------------------------------------------------
# The shipped data: the shots, and the new classes' test images as one compact file

def pack_reference(folder: str, path: str) -> None:
    """A reference folder (class folders of grey PNGs, dataset.json) as one npz: images uint8 [N, R,
    R], labels, file names, and the dataset.json."""
    import datasets
    data = datasets.ImageFolderDataset(folder,
                                       int(datasets.read_dataset_json(folder)["resolution"]))
    images = np.stack([np.asarray(Image.open(p).convert("L")) for p, _ in data.samples])
    labels = np.array([label for _, label in data.samples], dtype=np.int64)
    names = np.array([os.path.relpath(p, folder) for p, _ in data.samples])
    with open(os.path.join(folder, "dataset.json")) as f:
        info = f.read()
    utils.write_atomically(path, lambda f: np.savez_compressed(f, images=images, labels=labels,
                                                               names=names,
                                                               dataset_json=np.array(info)),
                           binary=True)


def unpack_reference(path: str, folder: str) -> None:
    """The folder pack_reference packed, written next to its place and renamed into it."""
    with np.load(path, allow_pickle=False) as f:
        images, names, info = f["images"], f["names"], str(f["dataset_json"])
    parent = os.path.dirname(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=".tmp_reference_")
    try:
        for image, name in zip(images, names):
            os.makedirs(os.path.join(staging, os.path.dirname(str(name))), exist_ok=True)
            Image.fromarray(image, "L").save(os.path.join(staging, str(name)))
        with open(os.path.join(staging, "dataset.json"), "w") as f:
            f.write(info)
        os.chmod(staging, 0o755)
        os.rename(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def shipped_files(data_root: str, shipped: str) -> list[tuple[str, str]]:
    """(shipped path, its place in data_root) of the default run's reference statistics."""
    names = [f"{NEW_DATASET}_classifier_moments.npz", f"{NEW_DATASET}_classifier_features.npz"]
    return [(os.path.join(shipped, name), os.path.join(data_root, name)) for name in names]


def prepare_new(data_root: str, shots: int, seed: int, new: tuple[str, ...] = NEW_CLASSES,
                out: str = ASSETS) -> None:
    """data_root/fashion_new with `shots` images per new class (chosen by seed), its held-out
    reference images (the test split) and their statistics: the shipped ones where they are what is
    asked for, else from the raw data."""
    paths = assets(out)
    folder, reference = os.path.join(data_root, NEW_DATASET), os.path.join(data_root, NEW_REFERENCE)
    wanted = (shots, seed, tuple(sorted(new)))
    held = prepared_as(folder) if os.path.isdir(folder) else wanted
    if held != wanted:
        held_shots, held_seed, held_new = held
        raise utils.UsageError(f"{folder} holds {held_shots} shots of seed {held_seed} of "
                               f"{', '.join(held_new)}, not {shots} of seed {seed} of "
                               f"{', '.join(sorted(new))}: use another base folder")
    shipped = os.path.join(paths["data"], NEW_DATASET)
    if os.path.isdir(shipped) and prepared_as(shipped) == wanted:
        if not os.path.isdir(folder):
            utils.copy_atomically(shipped, folder)
        if not os.path.isdir(reference):
            unpack_reference(os.path.join(paths["data"], "new_reference.npz"), reference)
        for origin, target in shipped_files(data_root, paths["data"]):
            if not os.path.isfile(target):
                utils.copy_atomically(origin, target)
    elif not os.path.isdir(folder):
        os.makedirs(data_root, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=data_root) as tmp:
            prepare_from_raw(tmp, shots, seed, new)
            for name in (NEW_DATASET, NEW_REFERENCE):
                if not os.path.isdir(os.path.join(data_root, name)):
                    shutil.move(os.path.join(tmp, name), os.path.join(data_root, name))
    reference_statistics(data_root, NEW_DATASET, paths["classifier"])
    print(f"few-shot data: {shots} images of each of {', '.join(new)} (seed {seed}) in {folder}")


def prepared_as(folder: str) -> tuple[int, int, tuple[str, ...]]:
    """(shots, seed, sorted new classes) of a few-shot folder this world prepared; refused
    otherwise."""
    import datasets
    info = datasets.read_dataset_json(folder) or {}
    split = info.get("split") if isinstance(info.get("split"), dict) else {}
    if not isinstance(split.get("new"), list):
        raise utils.UsageError(f"{folder} was not prepared by the Fashion-MNIST world (its "
                               "dataset.json names no new classes): use another base folder, or "
                               "move that folder away")
    return info.get("shots"), info.get("seed"), tuple(sorted(split["new"]))


def prepare_old(data_root: str, new: tuple[str, ...] = NEW_CLASSES, out: str = ASSETS) -> str:
    """The old classes' reference statistics (their test images), for their metrics after transfer;
    refused where data_root holds the old classes of another split."""
    folder = os.path.join(data_root, f"{OLD_DATASET}_reference")
    if os.path.isdir(folder):
        held = sorted(prepared_as(folder)[2])
        if held != sorted(new):
            raise utils.UsageError(
                f"{folder} holds the old classes of the split whose new classes are "
                f"{', '.join(held)}, not {', '.join(sorted(new))}: move it (and "
                f"{OLD_DATASET}_classifier_*.npz beside it) away, or use another base folder")
    else:
        os.makedirs(data_root, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=data_root) as tmp:
            prepare_from_raw(tmp, SHIPPED_SHOTS, SHIPPED_SEED, new)
            shutil.move(os.path.join(tmp, f"{OLD_DATASET}_reference"),
                        os.path.join(data_root, f"{OLD_DATASET}_reference"))
            # its dataset.json names the reference
            if not os.path.isdir(os.path.join(data_root, OLD_DATASET)):
                os.makedirs(os.path.join(data_root, OLD_DATASET))
                shutil.copy(os.path.join(tmp, OLD_DATASET, "dataset.json"),
                            os.path.join(data_root, OLD_DATASET))
    return reference_statistics(data_root, OLD_DATASET, assets(out)["classifier"])


def fresh_images(per_class: int, out: str = ASSETS) -> tuple[torch.Tensor, torch.Tensor]:
    """Test images of the new classes (no training set holds them), at most per_class each, in
    [-1, 1], and their labels: the shipped ones."""
    with np.load(os.path.join(assets(out)["data"], "new_reference.npz"), allow_pickle=False) as f:
        images, labels = f["images"], f["labels"]
    chosen = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)])
    pixels = torch.from_numpy(images[chosen]).float().div(255).unsqueeze(1).expand(-1, 3, -1, -1)
    return (pixels - 0.5) / 0.5, torch.from_numpy(labels[chosen])


def old_classes_of(new: tuple[str, ...]) -> tuple[str, ...]:
    """The old classes of a split whose new classes are `new` (label order); refused: a name that is
    not a Fashion-MNIST class, a class named twice, every class new."""
    unknown = [name for name in new if name not in CLASSES]
    if unknown or len(set(new)) != len(new) or len(new) >= len(CLASSES) or not new:
        raise utils.UsageError(f"--new {','.join(new)!r}: give distinct Fashion-MNIST classes, "
                               f"comma-separated, and keep some old; the classes are "
                               f"{', '.join(CLASSES)}")
    return tuple(name for name in CLASSES if name not in new)


def world(new: tuple[str, ...] = NEW_CLASSES, out: str = ASSETS) -> World:
    """The world of a split: `new` are the new classes, the others old; its assets under `out`."""
    paths, old = assets(out), old_classes_of(new)
    # A transfer takes worlds.transfer_flags at batch 8 (the architecture comes from the source's
    # config.json) and the default speed options (acceleration.py).
    training = transfer_flags(NEW_DATASET, paths["classifier"], 8)
    return World(
        name="fashion",
        summary=f"Fashion-MNIST at 32 px: {10 - len(new)} old classes, {len(new)} new ones "
                f"({', '.join(new)})",
        new_dataset=NEW_DATASET, old_dataset=OLD_DATASET, classifier=paths["classifier"],
        source=paths["source"], architecture=ARCHITECTURE, training=training,
        demo_shots=SHIPPED_SHOTS,
        demo_stages=(("BN", 700, ("--G_lr", "1e-3", *DEMO_EMA)),
                     ("FT", 200, ("--G_lr", "5e-5", *DEMO_EMA))),
        prepare_new=functools.partial(prepare_new, new=new, out=out),
        prepare_old=functools.partial(prepare_old, new=new, out=out),
        fresh_images=functools.partial(fresh_images, out=out),
        new_classes=tuple(new), old_classes=old,
        assets="" if os.path.abspath(out) == ASSETS else os.path.abspath(out))


WORLD = world()


# ---------------------------------------------------------------------------------------------
# Building the shipped assets

def ship_few_shot_folder(origin: str, target: str) -> None:
    """The few-shot folder as shipped: its dataset.json names its source by name, not by the path of
    the raw data on the machine that built it."""
    import datasets
    shutil.copytree(origin, target)
    info = datasets.read_dataset_json(target)
    info["source"] = {"kind": info["source"]["kind"], "name": "Fashion-MNIST"}
    utils.write_atomically(os.path.join(target, datasets.DATASET_JSON),
                           lambda f: json.dump(info, f, indent=1, ensure_ascii=False))


def build(base: str, out: str, new: tuple[str, ...], source_iters: int,
          classifier_epochs: int, source_patience: int = 0, source_ema: bool = False) -> None:
    """Every asset from the raw data, each step kept when its output is there: the data (with the
    classifier's folders), the classifier, the reference statistics, the source model (pretrained
    with --stage pretrain on the old classes, with in-loop metrics of them), the shipped data.
    source_patience K > 0: the pretraining stops when the old classes' FID has not improved for K
    evaluations, and its best set is published (else its latest, at source_iters). source_ema: the
    evaluations (so the best set and the stop) are of G's moving average, and it is published."""
    import run_folder
    import train_classifier
    paths, data_root = assets(out), os.path.join(base, "data")
    if not os.path.isfile(paths["classifier"]):  # the shipped one serves every split
        paths["classifier"] = os.path.join(out, "fashion_classifier.pth")
    if not os.path.isdir(os.path.join(data_root, NEW_DATASET)):
        prepare_from_raw(data_root, SHIPPED_SHOTS, SHIPPED_SEED, new, classifier_data=True)
    if not os.path.isfile(paths["classifier"]):
        train_classifier.main(["--train_folder",
                               os.path.join(data_root, f"{NAME}_classifier_train"), "--test_folder",
                               os.path.join(data_root, f"{NAME}_classifier_test"), "--resolution",
                               "32", "--out", paths["classifier"], "--epochs",
                               str(classifier_epochs), "--threads", "2"])
    for dataset in (NEW_DATASET, OLD_DATASET):
        reference_statistics(data_root, dataset, paths["classifier"])
    if not os.path.isfile(os.path.join(paths["source"], "G.pth")):
        from experiments import runs  # a pretraining that stopped continues
        config, _ = runs.train_or_load(
            ["--base_dir", base, "--dataset", OLD_DATASET, "--stage", "pretrain",
             "--experiment_name", "fashion_source", *ARCHITECTURE, *SOURCE_TRAINING, "--num_iters",
             str(source_iters), "--save_every", "500", "--test_every", "500", "--backbone",
             "classifier", "--inception_weights", paths["classifier"], "--num_inception_images",
             str(SOURCE_EVALUATION_IMAGES), "--mfid", "--G_eval_mode", "--seed", "0",
             "--patience", str(source_patience), *(["--use_ema"] if source_ema else [])])
        publish_source(run_folder.folder(config), paths["source"],
                       "best" if source_patience else "latest", "G_ema" if source_ema else "G")
    os.makedirs(paths["data"], exist_ok=True)
    if not os.path.isdir(os.path.join(paths["data"], NEW_DATASET)):
        ship_few_shot_folder(os.path.join(data_root, NEW_DATASET),
                             os.path.join(paths["data"], NEW_DATASET))
    if not os.path.isfile(os.path.join(paths["data"], "new_reference.npz")):
        pack_reference(os.path.join(data_root, NEW_REFERENCE),
                       os.path.join(paths["data"], "new_reference.npz"))
    for target, origin in shipped_files(data_root, paths["data"]):
        if not os.path.isfile(target):
            shutil.copy(origin, target)
    print(f"Fashion-MNIST assets in {out}: fashion_classifier.pth, fashion_source/, fashion_data/")


def add_source_pretraining_flags(parser: argparse.ArgumentParser, when: str = "") -> None:
    """build's flags of the source model's pretraining (experiments.study --new passes them on;
    `when` prefixes their help there)."""
    parser.add_argument("--source_iters", type=utils.at_least(1), default=2000,
                        help=f"{when}pretraining iterations of the source model (the cap with "
                             "--source_patience)")
    parser.add_argument("--source_patience", type=utils.at_least(0), default=0, metavar="K",
                        help=f"{when}stop the pretraining when the old classes' FID has not "
                             "improved for K evaluations (every 500 iterations) and ship its best "
                             "set; 0: train --source_iters and ship the latest")
    parser.add_argument("--source_ema", action="store_true",
                        help=f"{when}evaluate (and so keep the best set and stop by) G's moving "
                             "average instead of G, and ship it as the source's G.pth")


def prepare_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("build", allow_abbrev=False, formatter_class=utils.HelpFormatter,
                               help="build the shipped assets from the raw data (each step kept "
                                    "when done)")
    make.add_argument("--base_dir", default="base_dir_fashion",
                      help="the build's data, runs and logs")
    make.add_argument("--out", default=ASSETS, help="where the assets go")
    make.add_argument("--new", default=",".join(NEW_CLASSES),
                      help="the new classes; the others are old")
    add_source_pretraining_flags(make)
    make.add_argument("--classifier_epochs", type=utils.at_least(1), default=6,
                      help="classifier training epochs")
    publish = commands.add_parser("publish", allow_abbrev=False,
                                  formatter_class=utils.HelpFormatter,
                                  help="ship a set of a pretraining's experiment folder as a source "
                                       "model folder (G.pth, D.pth, config.json)")
    publish.add_argument("--experiment", required=True,
                         help="the pretraining's weights folder, e.g. B/weights/fashion_source")
    publish.add_argument("--out", required=True, help="the source model folder to write")
    publish.add_argument("--set", default="latest",
                         help="the set: latest, best (by the run's --which_best) or a slot")
    publish.add_argument("--ema", action="store_true",
                         help="ship G's moving average (G_ema.pth, --ema runs) as G.pth")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = prepare_parser().parse_args(argv)
    if args.command == "publish":
        if os.path.exists(os.path.join(args.out, "G.pth")):
            raise utils.UsageError(f"{args.out} holds a source model already; give a new --out")
        publish_source(args.experiment, args.out, args.set, "G_ema" if args.ema else "G")
        return
    build(args.base_dir, args.out, tuple(args.new.split(",")), args.source_iters,
          args.classifier_epochs, args.source_patience, args.source_ema)


if __name__ == "__main__":
    utils.run_main(main)
