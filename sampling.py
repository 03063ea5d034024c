"""Drawing images from a generator: z and classes, samples for the metrics, standing statistics,
and image sheets (training's after every save, sample.py's), without changing the training."""
from __future__ import annotations

import contextlib
import functools
import io
import math
import os
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

import layers
import utils
from acceleration import Precision


def truncate(z: torch.Tensor, threshold: float, z_var: float = 1.0) -> torch.Tensor:
    """z ~ N(0, z_var) restricted to [-threshold, threshold]: the entries outside are drawn again
    until none are left (clamping them instead would pile probability onto the bounds)."""
    if threshold <= 0:
        return z
    z = z.clone()
    outside = z.abs() > threshold
    while outside.any():
        z[outside] = torch.randn(int(outside.sum()), device=z.device, dtype=z.dtype) * z_var ** 0.5
        outside = z.abs() > threshold
    return z


def sample_z_y(batch_size: int, dim_z: int, n_classes: int, device, z_var: float = 1.0,
               generator: torch.Generator | None = None,
               truncation: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """z ~ N(0, z_var) (truncated at `truncation`, 0: off) and classes drawn uniformly."""
    z = torch.randn(batch_size, dim_z, device=device, generator=generator) * z_var ** 0.5
    y = torch.randint(0, n_classes, (batch_size,), device=device, generator=generator)
    return truncate(z, truncation, z_var), y


def seeded_z(count: int, dim_z: int, seed: int, z_var: float = 1.0) -> torch.Tensor:
    """count z's ~ N(0, z_var) drawn on the CPU from `seed` alone, the same on every device and
    run: the fixed z's of sheets and figures."""
    return torch.randn(count, dim_z, generator=torch.Generator().manual_seed(seed)) * z_var ** 0.5


@dataclass(frozen=True)
class Draws:
    """How a run draws its samples (run_spec.draws_of reads them from the flags): batch_size z's a
    forward pass (--G_batch_size), z ~ N(0, z_var) (--z_var), classes among the data's n_classes,
    standing statistics over standing_batches batches (--num_standing_accumulations), the sheets'
    fixed z's from seed (--seed)."""
    batch_size: int
    z_var: float
    n_classes: int
    standing_batches: int
    seed: int


def sampling_G(G: nn.Module, G_ema: nn.Module | None, use_ema: bool) -> nn.Module:
    """The generator that samples and metrics use: G_ema with --use_ema, else G."""
    return G_ema if (G_ema is not None and use_ema) else G


def make_sample_fn(G: nn.Module, draws: Draws, device, precision: Precision | None = None,
                   truncation: float = 0.0, old_classes: bool = False,
                   G_forward: Callable | None = None) -> Callable:
    """sample() -> (a batch of draws.batch_size images in [-1, 1], their classes drawn uniformly):
    G's new classes, or a knowledge-propagation G's old ones; z truncated at `truncation` (0: off).
    G_forward: G, or G wrapped in DataParallel."""
    forward, inputs = class_forward(G, G_forward, old_classes)
    n_classes = G.n_pretrain_classes if old_classes else draws.n_classes

    def sample():
        with torch.no_grad():
            z, y = sample_z_y(draws.batch_size, G.dim_z, n_classes, device, draws.z_var,
                              truncation=truncation)
            with precision.autocast() if precision else contextlib.nullcontext():
                images = forward(z, inputs(y))
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


@contextlib.contextmanager
def outside_training(generators: list[nn.Module], eval_mode: bool, device):
    """Sampling and evaluation during training: the generators in eval mode if asked, and afterwards
    everything training depends on exactly as before (the RNG, the generators' buffers:
    spectral-norm u's and BN statistics move in train-mode forward passes), so sheets and metrics
    never change a run."""
    buffers = [{name: b.clone() for name, b in G.named_buffers()} for G in generators]
    for G in generators:
        G.train(not eval_mode)
    with torch.random.fork_rng(devices=[device] if torch.device(device).type == "cuda" else []):
        yield
    with torch.no_grad():
        for G, saved in zip(generators, buffers):
            for name, b in G.named_buffers():
                b.copy_(saved[name])
    for G in generators:
        G.train()


def accumulate_standing_stats(G: nn.Module, draws: Draws, device,
                              old_classes: bool = False) -> None:
    """Re-estimate G's BN statistics as the average over many batches (needs --mybn), of its new
    classes or (old_classes) of a knowledge-propagation G's old classes: the two share the BN
    statistics, so each class set needs its own."""
    mybns = [m for m in G.modules() if isinstance(m, layers.myBN)]
    if not mybns:
        raise utils.UsageError("--accumulate_stats needs --mybn (standing statistics live in myBN)")
    for bn in mybns:
        bn.reset_stats()
        bn.accumulate_standing = True
    n_classes = G.n_pretrain_classes if old_classes else draws.n_classes
    forward, inputs = class_forward(G, old_classes=old_classes)
    with sampling_mode(G, eval_mode=False), torch.no_grad():
        for _ in range(draws.standing_batches):
            z, y = sample_z_y(draws.batch_size, G.dim_z, n_classes, device, draws.z_var)
            forward(z, inputs(y))


def generate(G_forward: Callable, z: torch.Tensor, class_input: torch.Tensor, batch_size: int,
             precision: Precision | None = None) -> torch.Tensor:
    """G_forward(z, class_input) in batches, gathered on the cpu (G_forward: G, or G wrapped in
    DataParallel)."""
    images = []
    with torch.no_grad():
        for i in range(0, z.shape[0], batch_size):
            with precision.autocast() if precision else contextlib.nullcontext():
                images.append(G_forward(z[i:i + batch_size],
                                        class_input[i:i + batch_size]).float().cpu())
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


# Interpolations

def other_classes(y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """A random class different from each y (when there are two classes or more)."""
    if n_classes < 2:
        return y.clone()
    return (y + torch.randint(1, n_classes, y.shape, device=y.device)) % n_classes


def mixable_classes(G: nn.Module, y: torch.Tensor,
                    old_classes: bool = False) -> torch.Tensor | None:
    """Class inputs of G that can be mixed linearly, or None when G only takes indices."""
    if old_classes:  # forward(·, old_classes=True) takes soft one-hots over the old classes
        return F.one_hot(y, G.n_pretrain_classes).float()
    inputs = G.class_input(y)
    if inputs.is_floating_point():
        return inputs  # the shared embeddings of a source G
    if G.has_knowledge_propagation or G.hier:
        # These G one-hot the indices themselves and take soft one-hot vectors as they are.
        return F.one_hot(y, G.n_classes).float()
    return None


def lerp_rows(a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    """[rows, d] endpoints -> [rows * steps, d]: each row's path from a to b, one row after
    another."""
    w = torch.linspace(0, 1, steps, device=a.device, dtype=a.dtype).view(1, steps, 1)
    return (a.unsqueeze(1) * (1 - w) + b.unsqueeze(1) * w).reshape(-1, a.shape[1])


def interp_sheet(G: nn.Module, rows: int, steps: int, draws: Draws, device, fix_z: bool,
                 fix_y: bool, truncation: float = 0.0, old_classes: bool = False,
                 precision: Precision | None = None,
                 G_forward: Callable | None = None) -> torch.Tensor:
    """Rows from one random (z, class) to another in `steps` images; fix_z keeps each row's z, fix_y
    its class (a class path needs mixable class inputs, mixable_classes)."""
    n_classes = G.n_pretrain_classes if old_classes else draws.n_classes
    z0, y0 = sample_z_y(rows, G.dim_z, n_classes, device, draws.z_var, truncation=truncation)
    z1, _ = sample_z_y(rows, G.dim_z, n_classes, device, draws.z_var, truncation=truncation)
    zs = z0.repeat_interleave(steps, 0) if fix_z else lerp_rows(z0, z1, steps)
    forward, inputs = class_forward(G, G_forward, old_classes)
    if fix_y:
        ys = inputs(y0.repeat_interleave(steps))
    else:
        y1 = other_classes(y0, n_classes)
        ys = lerp_rows(mixable_classes(G, y0, old_classes), mixable_classes(G, y1, old_classes),
                       steps)
    return generate(forward, zs, ys, draws.batch_size, precision)


# Sheets show small images enlarged to at least this size (nearest neighbour: the pixels as G
# drew them): a 32-px image is too small to judge at a glance.
SHEET_IMAGE_SIZE = 128


def enlarge(images: torch.Tensor, size: int = SHEET_IMAGE_SIZE) -> torch.Tensor:
    factor = math.ceil(size / images.shape[-1])
    return F.interpolate(images, scale_factor=factor, mode="nearest") if factor > 1 else images


def save_image_grid(images: torch.Tensor, path: str, nrow: int,
                    image_size: int = SHEET_IMAGE_SIZE) -> None:
    """A PNG grid of images in [-1, 1] (enlarged to image_size; 0: as they are), written
    atomically."""
    if image_size:
        images = enlarge(images.float(), image_size)
    # Imported here: torchvision's import pulls in torch._dynamo (~1.5 s of every tool's start).
    import torchvision.utils
    buffer = io.BytesIO()
    torchvision.utils.save_image(images, buffer, nrow=nrow, normalize=True, value_range=(-1, 1),
                                 format="png")
    utils.write_atomically(path, lambda f: f.write(buffer.getvalue()), binary=True)


def training_images_and_samples(real: list[torch.Tensor], G: nn.Module,
                                z: torch.Tensor) -> tuple[torch.Tensor, int]:
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


class Sheets:
    """The fixed-z sample sheet and the class sheet (one row per class, the same z in each row) that
    BigGAN-PyTorch writes after every save: fixed_samples<itr>.png and class_sheet<itr>.png."""

    MAX_ROWS = 50

    def __init__(self, draws: Draws, dim_z: int, device, folder: str):
        self.folder = folder  # the experiment's samples folder (run_folder.RunFolder.samples)
        z, y = sample_z_y(draws.batch_size, dim_z, draws.n_classes, "cpu", draws.z_var,
                          torch.Generator().manual_seed(draws.seed + 1))
        self.fixed_z, self.fixed_y = z.to(device), y.to(device)
        self.sheet_z = seeded_z(10, dim_z, draws.seed, draws.z_var).to(device)
        self.classes = list(range(min(draws.n_classes, self.MAX_ROWS)))

    @torch.no_grad()
    def write(self, G: nn.Module, itr: int) -> None:
        fixed = G(self.fixed_z, G.class_input(self.fixed_y)).float().cpu()
        save_image_grid(fixed, os.path.join(self.folder, f"fixed_samples{itr}.png"),
                        nrow=int(fixed.shape[0] ** 0.5))
        sheet = class_sheet(G, self.classes, self.sheet_z, batch_size=len(self.fixed_z))
        save_image_grid(sheet, os.path.join(self.folder, f"class_sheet{itr}.png"),
                        nrow=self.sheet_z.shape[0])
