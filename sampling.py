"""Drawing images from a generator: z and classes, samples for the metrics, standing statistics,
and image sheets. Used by training (sheets, in-loop metrics) and by sample.py."""
from __future__ import annotations

import contextlib
import functools
import io
import math
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

import layers
import utils
from acceleration import Precision


def sample_z_y(batch_size: int, dim_z: int, n_classes: int, device, z_var: float = 1.0,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.randn(batch_size, dim_z, device=device, generator=generator) * z_var ** 0.5
    y = torch.randint(0, n_classes, (batch_size,), device=device, generator=generator)
    return z, y


def sampling_G(G: nn.Module, G_ema: nn.Module | None, config: dict) -> nn.Module:
    """The generator that samples and metrics use: G_ema with --use_ema, else G."""
    return G_ema if (G_ema is not None and config["use_ema"]) else G


def make_sample_fn(G: nn.Module, config: dict, device, precision: Precision | None = None) -> Callable:
    """sample() → (images in [-1, 1], class indices), uniform over classes, for the metrics."""
    def sample():
        with torch.no_grad():
            z, y = sample_z_y(config["G_batch_size"], G.dim_z, config["n_classes"], device, config["z_var"])
            with precision.autocast() if precision else contextlib.nullcontext():
                images = G(z, G.class_input(y))
            return images.float(), y
    return sample


@contextlib.contextmanager
def sampling_mode(G: nn.Module, eval_mode: bool):
    """G in eval mode (BN running statistics) or train mode (batch statistics) for the block, then
    back in the mode it was in."""
    was_training = G.training
    G.train(not eval_mode)
    try:
        yield G
    finally:
        G.train(was_training)


def accumulate_standing_stats(G: nn.Module, config: dict, device, old_classes: bool = False) -> None:
    """Re-estimate G's BN statistics as the average over many batches (needs --mybn), of its new
    classes or (old_classes) of a knowledge-propagation G's old classes: the two share the BN
    statistics, so each class set needs its own."""
    mybns = [m for m in G.modules() if isinstance(m, layers.myBN)]
    if not mybns:
        raise utils.UsageError("--accumulate_stats needs --mybn (standing statistics live in myBN)")
    for bn in mybns:
        bn.reset_stats()
        bn.accumulate_standing = True
    n_classes = G.n_pretrain_classes if old_classes else config["n_classes"]
    forward, inputs = class_forward(G, old_classes=old_classes)
    with sampling_mode(G, eval_mode=False), torch.no_grad():
        for _ in range(config["num_standing_accumulations"]):
            z, y = sample_z_y(config["G_batch_size"], G.dim_z, n_classes, device, config["z_var"])
            forward(z, inputs(y))


def generate(G_forward: Callable, z: torch.Tensor, class_input: torch.Tensor, batch_size: int,
             precision: Precision | None = None) -> torch.Tensor:
    """G_forward(z, class_input) in batches, gathered on the cpu (G_forward: G, or G wrapped in
    DataParallel)."""
    images = []
    with torch.no_grad():
        for i in range(0, z.shape[0], batch_size):
            with precision.autocast() if precision else contextlib.nullcontext():
                images.append(G_forward(z[i:i + batch_size], class_input[i:i + batch_size]).float().cpu())
    return torch.cat(images)


def class_forward(G: nn.Module, G_forward: Callable | None = None, old_classes: bool = False
                  ) -> tuple[Callable, Callable]:
    """(forward(z, inputs), inputs(y)) of G's new classes, or of a knowledge-propagation G's old
    classes (old_classes: the source's class path, BigGAN.Generator.forward)."""
    G_forward = G_forward or G
    if old_classes:
        return functools.partial(G_forward, old_classes=True), G.old_class_input
    return G_forward, G.class_input


def class_sheet(G: nn.Module, classes: list[int], z: torch.Tensor, batch_size: int,
                precision: Precision | None = None, G_forward: Callable | None = None,
                old_classes: bool = False) -> torch.Tensor:
    """One row per class; column j uses z[j] in every row, so that rows differ only by class."""
    forward, inputs = class_forward(G, G_forward, old_classes)
    y = torch.tensor(classes, device=z.device).repeat_interleave(z.shape[0])
    return generate(forward, z.repeat(len(classes), 1), inputs(y), batch_size, precision)


# Sheets show small images enlarged to at least this size (nearest neighbour: the pixels as G
# drew them): a 32-px image is too small to judge at a glance.
SHEET_IMAGE_SIZE = 128


def enlarge(images: torch.Tensor, size: int = SHEET_IMAGE_SIZE) -> torch.Tensor:
    factor = math.ceil(size / images.shape[-1])
    return F.interpolate(images, scale_factor=factor, mode="nearest") if factor > 1 else images


def save_image_grid(images: torch.Tensor, path: str, nrow: int, image_size: int = SHEET_IMAGE_SIZE) -> None:
    """A PNG grid of images in [-1, 1] (enlarged to image_size; 0: as they are), written atomically."""
    if image_size:
        images = enlarge(images.float(), image_size)
    buffer = io.BytesIO()
    torchvision.utils.save_image(images, buffer, nrow=nrow, normalize=True, value_range=(-1, 1), format="png")
    utils.write_atomically(path, lambda f: f.write(buffer.getvalue()), binary=True)


def training_images_and_samples(real: list[torch.Tensor], G: nn.Module, z: torch.Tensor) -> tuple[torch.Tensor, int]:
    """One row per class: that class's training images (real[c], up to 5), a blank, then G's
    samples of the class for every z, so that a user judges fidelity and copying at a glance.
    Returns (images, images per row)."""
    shown = min(5, min(len(images) for images in real))
    rows = []
    with torch.no_grad():
        for c, images in enumerate(real):
            y = torch.full((z.shape[0],), c, dtype=torch.long, device=z.device)
            samples = G(z, G.class_input(y)).float().cpu()
            blank = torch.ones_like(samples[:1])  # white in [-1, 1]
            rows.append(torch.cat([images[:shown].float().cpu(), blank, samples]))
    return torch.cat(rows), shown + 1 + z.shape[0]
