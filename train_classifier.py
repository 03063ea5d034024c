"""Train the evaluation classifier (classifier.py) on any image-folder dataset, or on the toy world.

Any dataset, one sub-folder per class (DIR/<class name>/<images>), the same class names in both:

    python train_classifier.py --train_folder DIR --test_folder DIR --resolution 32 --out PATH

Images are cropped and resized as the GAN's data is (datasets.ImageFolderDataset) and held in
memory as uint8. The classifier judges generated images, so train it on images the GAN never saw
where you can. Horizontal flips augment training unless --no_flip: they keep the class of a shape
or a photo, not of a digit or a letter. The held-out accuracy, overall and per class, is printed
and stored in the checkpoint ('test_accuracy'), with a line saying what it was trained on.

The toy preset reproduces the shipped assets/toy_classifier.pth (about 5 minutes on 2 idle CPU
cores); giving no folders means the same:

    python train_classifier.py --world toy --overwrite

Its training and held-out images are rendered by toy.py with their own seeds (1 and 2 by
default), never the seed-0 images of the default toy datasets, so the classifier judges generated
images without having seen the GAN's training set.
"""
from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F

import classifier
import datasets
from worlds import toy
import utils

TOY_OUT = os.path.join("assets", "toy_classifier.pth")
TOY_IMAGES_PER_CLASS, TOY_HELD_OUT_PER_CLASS = 1000, 200
EVAL_BATCH = 500


# ----------------------------------------------------------------------------------------------
# Data: uint8 images [N, 3, R, R] and labels [N], converted to the model's range batch by batch

def as_model_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 3, R, R] -> float32 in [-1, 1], with datasets.to_model_range's arithmetic."""
    return images.float().div(255).sub(0.5).div(0.5)


def render_toy_split(images_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All 16 toy classes as uint8 [N, 3, 32, 32] and labels int64 [N].

    The images stay a permuted view of [N, 32, 32, 3] (channels-last memory) as they always were:
    convolutions round differently on another layout, and the shipped weights came from this one."""
    images, labels = toy.render_dataset(toy.ALL_CLASSES, images_per_class, seed)
    return torch.from_numpy(images).permute(0, 3, 1, 2), torch.from_numpy(labels)


def read_folder(root: str, resolution: int,
                flag: str) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Every image of root/<class>/ as uint8 [N, 3, R, R], its label, and the class names."""
    if not os.path.isdir(root):
        raise utils.UsageError(f"{flag} {root} is not a folder; pass a folder with one sub-folder "
                               "of images per class")
    data = datasets.ImageFolderDataset(root, resolution)
    images = torch.stack([torch.from_numpy(data.read(i)[0]) for i in range(len(data))])
    labels = torch.tensor([label for _, label in data.samples], dtype=torch.int64)
    return images, labels, data.classes


def check_same_classes(train_classes: list[str], test_classes: list[str]) -> None:
    if train_classes == test_classes:
        return
    only_train = sorted(set(train_classes) - set(test_classes)) or ["none"]
    only_test = sorted(set(test_classes) - set(train_classes)) or ["none"]
    raise utils.UsageError("--train_folder and --test_folder must hold the same class folders; "
                           f"only in --train_folder: {', '.join(only_train)}; only in "
                           f"--test_folder: {', '.join(only_test)}; add or rename class folders so "
                           "that they match")


# ----------------------------------------------------------------------------------------------
# Training and evaluation

def random_flips(x: torch.Tensor) -> torch.Tensor:
    """Half of the images mirrored: free extra data where a mirror keeps the class."""
    flip = torch.rand(len(x), device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def train_epoch(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
                flip: bool) -> float:
    model.train()
    order = torch.randperm(len(images))
    total = 0.0
    for start in range(0, len(images), batch_size):
        batch = order[start:start + batch_size]
        x = as_model_input(images[batch])
        _, logits = model(random_flips(x) if flip else x)
        loss = F.cross_entropy(logits, labels[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.item() * len(batch)
    return total / len(images)


@torch.no_grad()
def predictions(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    model.eval()
    return torch.cat([model(as_model_input(images[i:i + EVAL_BATCH]))[1].argmax(1)
                      for i in range(0, len(images), EVAL_BATCH)])


def held_out_accuracy(predicted: torch.Tensor, labels: torch.Tensor,
                      class_names: list[str]) -> dict:
    """{'overall': share correct, 'per_class': {name: share correct among that class's images}}."""
    correct = (predicted == labels).float()
    per_class = {name: float(correct[labels == c].mean()) for c, name in enumerate(class_names)
                 if (labels == c).any()}
    return {"overall": float(correct.mean()), "per_class": per_class}


def print_accuracy(accuracy: dict, n_images: int) -> None:
    width = max(len(name) for name in accuracy["per_class"])
    for name, value in accuracy["per_class"].items():
        print(f"  {name:<{width}}  {value:.4f}")
    print(f"held-out accuracy: {accuracy['overall']:.4f} on {n_images} images")


def train(model: classifier.Classifier, train_set: tuple[torch.Tensor, torch.Tensor],
          test_set: tuple[torch.Tensor, torch.Tensor], args: argparse.Namespace) -> dict:
    """Adam with a one-cycle schedule (a warm start and a decay to ~0 reach high accuracy in few
    epochs); returns the final held-out accuracy."""
    started = time.time()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps = args.epochs * -(-len(train_set[0]) // args.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=steps)
    for epoch in range(args.epochs):
        loss = train_epoch(model, *train_set, args.batch_size, optimizer, scheduler,
                           flip=not args.no_flip)
        held_out = float((predictions(model, test_set[0]) == test_set[1]).float().mean())
        print(f"epoch {epoch + 1}/{args.epochs}: loss {loss:.4f}, held-out accuracy {held_out:.4f} "
              f"({time.time() - started:.0f}s)")
    return held_out_accuracy(predictions(model, test_set[0]), test_set[1], model.class_names)


# ----------------------------------------------------------------------------------------------
# Command line

def prepare_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Train the evaluation classifier on an "
                                     "image-folder dataset (--train_folder, --test_folder) or the "
                                     "toy world (--world toy).",
                                     allow_abbrev=False, formatter_class=utils.HelpFormatter)
    add = parser.add_argument
    add("--world", choices=["toy"], default=None,
        help="the toy preset (the default when no folders are given): reproduces " + TOY_OUT)
    add("--train_folder", default="", help="training images, DIR/<class name>/<images>")
    add("--test_folder", default="",
        help="held-out images, the same class folders as --train_folder")
    add("--resolution", type=utils.at_least(classifier.MIN_RESOLUTION), default=None,
        help="side in px the images are cropped and resized to, that of the images it will judge "
             f"(needed with folders; the toy world is {toy.RESOLUTION})")
    add("--out", default=None, help=f"checkpoint to write (needed with folders; toy: {TOY_OUT})")
    add("--overwrite", action="store_true", help="replace an existing --out")
    add("--images_per_class", type=utils.at_least(1), default=None,
        help=f"toy training images per class (default: {TOY_IMAGES_PER_CLASS})")
    add("--held_out_per_class", type=utils.at_least(1), default=None,
        help=f"toy held-out images per class (default: {TOY_HELD_OUT_PER_CLASS})")
    add("--epochs", type=utils.at_least(1), default=4,
        help="passes over the training images (default: %(default)s)")
    add("--batch_size", type=utils.at_least(1), default=128,
        help="images per step (default: %(default)s)")
    add("--lr", type=utils.POSITIVE, default=3e-3,
        help="peak learning rate of the one-cycle schedule")
    add("--seed", type=utils.at_least(0), default=1,
        help="initialisation and batch order; toy: training images, held-out images use seed + 1")
    add("--no_flip", action="store_true",
        help="no random horizontal flips (for data a mirror changes, e.g. digits)")
    add("--threads", type=utils.at_least(1), default=None,
        help="CPU threads (default: torch's choice)")
    add("--device", type=utils.device_name, default="",
        help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return prepare_parser().parse_args(argv)


def check_flags(args: argparse.Namespace) -> None:
    """Folder and toy flags do not mix; each route gets what it needs. Sets args.world and
    args.out."""
    folders = [flag for flag in ("train_folder", "test_folder") if getattr(args, flag)]
    if folders and args.world == "toy":
        raise utils.UsageError(f"--world toy renders its own images; drop --{folders[0]}, or drop "
                               "--world to train on the folders")
    if len(folders) == 1:
        missing = "test_folder" if folders[0] == "train_folder" else "train_folder"
        raise utils.UsageError(f"--{folders[0]} needs --{missing} too: the classifier is trained "
                               "on one and its accuracy measured on the other")
    if folders:
        args.world = "folders"
        toy_only = [flag for flag in ("images_per_class", "held_out_per_class")
                    if getattr(args, flag) is not None]
        if toy_only:
            raise utils.UsageError(f"--{toy_only[0]} is for --world toy only; the folders "
                                   "decide how many images there are")
        for flag, example in (("resolution", "32"), ("out", "assets/my_classifier.pth")):
            if getattr(args, flag) is None:
                raise utils.UsageError(f"training on folders needs --{flag}, e.g. --{flag} "
                                       f"{example}")
    else:
        args.world = "toy"
        if args.resolution not in (None, toy.RESOLUTION):
            raise utils.UsageError(f"the toy world is {toy.RESOLUTION} px; drop --resolution, or "
                                   "train on folders of your own images")
        args.resolution = toy.RESOLUTION
        args.out = args.out or TOY_OUT
        args.images_per_class = args.images_per_class or TOY_IMAGES_PER_CLASS
        args.held_out_per_class = args.held_out_per_class or TOY_HELD_OUT_PER_CLASS
    if os.path.exists(args.out) and not args.overwrite:
        raise utils.UsageError(f"{args.out} already exists; pass --overwrite to replace it, or "
                               "choose another --out")


def load_data(args: argparse.Namespace):
    """(training images, labels), (held-out images, labels), class names, and what they are."""
    if args.world == "toy":
        train_set = render_toy_split(args.images_per_class, args.seed)
        test_set = render_toy_split(args.held_out_per_class, args.seed + 1)
        trained_on = (f"toy.py: {args.images_per_class} images per class of seed {args.seed}, "
                      f"tested on {args.held_out_per_class} of seed {args.seed + 1}")
        return train_set, test_set, list(toy.ALL_CLASSES), trained_on
    *train_set, train_classes = read_folder(args.train_folder, args.resolution, "--train_folder")
    *test_set, test_classes = read_folder(args.test_folder, args.resolution, "--test_folder")
    check_same_classes(train_classes, test_classes)
    trained_on = (f"{os.path.abspath(args.train_folder)} ({len(train_set[0])} images), tested on "
                  f"{os.path.abspath(args.test_folder)} ({len(test_set[0])} images), "
                  f"{args.resolution} px")
    return tuple(train_set), tuple(test_set), train_classes, trained_on


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    check_flags(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = utils.pick_device(args.device or None)
    utils.seed_rng(args.seed)

    started = time.time()
    train_set, test_set, class_names, trained_on = load_data(args)
    train_set, test_set = (tuple(t.to(device) for t in split) for split in (train_set, test_set))
    print(f"read {len(train_set[0])} training and {len(test_set[0])} held-out images of "
          f"{len(class_names)} classes in {time.time() - started:.0f}s")

    model = classifier.build_classifier(class_names, args.resolution).to(device)
    accuracy = train(model, train_set, test_set, args)
    print_accuracy(accuracy, len(test_set[0]))
    utils.atomic_save(classifier.checkpoint_of(model.cpu(), accuracy, trained_on), args.out)
    print(f"saved {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB)")


if __name__ == "__main__":
    utils.run_main(main)
