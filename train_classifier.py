"""Train the toy evaluation classifier (classifier.py) on freshly generated toy images.

Reproduce the shipped assets/toy_classifier.pth (about 5 minutes on 2 idle CPU cores):

    python train_classifier.py --overwrite

Training and held-out images are rendered by toy_data.py with their own seeds (1 and 2 by
default), never the seed-0 images of the default toy datasets, so the classifier judges
generated images without having seen the GAN's training set.
"""
from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F

import classifier
import toy_data
import utils


def render_split(images_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All 16 classes as x float32 [N, 3, 32, 32] in [-1, 1] and y int64 [N]."""
    images, labels = toy_data.render_dataset(toy_data.ALL_CLASSES, images_per_class, seed)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.5)
    return x, torch.from_numpy(labels)


def random_flips(x: torch.Tensor) -> torch.Tensor:
    """Shapes keep their class under a mirror, so flips are free extra data."""
    flip = torch.rand(len(x), device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def train_epoch(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                optimizer: torch.optim.Optimizer,
                scheduler: torch.optim.lr_scheduler.LRScheduler) -> float:
    model.train()
    order = torch.randperm(len(x))
    total = 0.0
    for start in range(0, len(x), batch_size):
        batch = order[start:start + batch_size]
        _, logits = model(random_flips(x[batch]))
        loss = F.cross_entropy(logits, y[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.item() * len(batch)
    return total / len(x)


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500
             ) -> float:
    model.eval()
    correct = sum((model(x[i:i + batch_size])[1].argmax(1) == y[i:i + batch_size]).sum().item()
                  for i in range(0, len(x), batch_size))
    return correct / len(x)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train the toy evaluation classifier.")
    parser.add_argument("--out", default=os.path.join("assets", "toy_classifier.pth"))
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--images_per_class", type=int, default=1000)
    parser.add_argument("--held_out_per_class", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=1,
                        help="training images and init; held-out images use seed + 1")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if os.path.exists(args.out) and not args.overwrite:
        raise utils.UsageError(f"{args.out} already exists; pass --overwrite to replace it, "
                               "or choose another --out")
    for flag in ("images_per_class", "held_out_per_class", "epochs", "batch_size"):
        if getattr(args, flag) < 1:
            raise utils.UsageError(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    device = utils.pick_device(args.device)
    utils.seed_rng(args.seed)

    started = time.time()
    x_train, y_train = (t.to(device) for t in render_split(args.images_per_class, args.seed))
    x_test, y_test = (t.to(device) for t in render_split(args.held_out_per_class, args.seed + 1))
    print(f"rendered {len(x_train)} training and {len(x_test)} held-out images "
          f"in {time.time() - started:.0f}s")

    model = classifier.build_classifier(toy_data.ALL_CLASSES).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps = args.epochs * -(-len(x_train) // args.batch_size)
    # One-cycle: a warm start and a decay to ~0 reach high accuracy in few epochs.
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=steps)
    for epoch in range(args.epochs):
        loss = train_epoch(model, x_train, y_train, args.batch_size, optimizer, scheduler)
        print(f"epoch {epoch + 1}/{args.epochs}: loss {loss:.4f}, held-out accuracy "
              f"{accuracy(model, x_test, y_test):.4f} ({time.time() - started:.0f}s)")

    held_out = accuracy(model, x_test, y_test)
    print(f"held-out accuracy: {held_out:.4f} on {len(x_test)} images")
    utils.atomic_save(classifier.checkpoint_of(model.cpu()), args.out)
    print(f"saved {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB)")


if __name__ == "__main__":
    utils.run_main(main)
