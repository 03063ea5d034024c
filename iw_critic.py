"""The independent Wasserstein critic (IW) of TransferGAN (Wang et al. 2018), after Danihelka et
al. 2017.

A WGAN-GP critic of its own, trained apart from the GAN, in pixel space, on one half of the held-out
real images against one half of the generated images, then evaluated on the other halves. It never
saw the evaluation images, so what it still tells apart there is a real difference between the two
distributions, not memorised samples; on the training halves it also tells apart the finite samples
themselves (IW_train shows how much of that over-fitting there is).

Sign convention, as in TransferGAN's tables: the critic D is trained to score real images high,
maximising E[D(real)] - E[D(fake)] - GP_WEIGHT * GP, and we report

    IW = E[D(generated_eval)] - E[D(real_eval)]  ~  -(estimated Wasserstein-1 distance)

so IW is negative and closer to 0 is better. (The issue wrote it as E[D(real)] - E[D(gen)] with
the critic oriented the other way, scoring generated images high: the same number.) Distances are
in pixel units of images in [-1, 1] (L2 over all 3*H*W values), so IW is comparable only between
sets of the same resolution, evaluated with the same budget and seed. The gradient penalty only
asks for slopes near 1, so for far-apart sets the critic trades some penalty for a larger gap and
|IW| exceeds the Wasserstein distance W (roughly by a factor 1 + W / (2 * GP_WEIGHT) for an ideal
critic): IW ranks sets reliably, it is close to W only for close sets.

The budget (STEPS, BATCH_SIZE, LR, BETAS, GP_WEIGHT) is fixed so that numbers are comparable across
runs; a seed fixes the halves, the critic's initialisation and its batches, and the result is
deterministic for a given seed on the CPU, where it runs on one thread whatever torch's setting
(see one_cpu_thread). The global RNG is left untouched.

Cost: 1500 real + 1500 generated 32 px images, STEPS critic steps, took 16-17 s of CPU time on one
core of an Intel Xeon (17-24 s wall: the 2-core machine was shared, load about 4); evaluation is a
small part of it. Time grows with the steps and with H*W, hardly with the number of images (64 px:
about 4 times as long).

    result = independent_wasserstein(real, fake, seed=0)  # [N, 3, H, W] in [-1, 1], H = W in 28..64
    result["IW"], result["IW_train"]
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

import utils

STEPS = 600            # critic updates
BATCH_SIZE = 32        # real and generated images per update (each)
LR = 5e-4              # WGAN-GP's 1e-4 is for 100k+ steps; a 600-step budget needs a faster rate
BETAS = (0.0, 0.9)     # WGAN-GP (Gulrajani et al. 2017): no momentum on the critic
GP_WEIGHT = 10.0       # WGAN-GP's lambda
WIDTHS = (16, 32, 64)  # one stride-2 conv per width
MIN_IMAGES = 40        # per set: halves of 20, enough for a mean over held-out images to mean much
MIN_RESOLUTION, MAX_RESOLUTION = 28, 64
EVAL_BATCH = 500


class Critic(nn.Module):
    """Images [N, 3, R, R] in [-1, 1] -> scores [N]: strided 4x4 convs, LeakyReLU, no normalisation
    (a gradient penalty per sample is meaningless under batch norm), and a linear read-out."""

    def __init__(self, resolution: int, widths: tuple[int, ...]):
        super().__init__()
        layers, c_in, size = [], 3, resolution
        for width in widths:
            layers += [nn.Conv2d(c_in, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c_in, size = width, size // 2
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(c_in * size * size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)).squeeze(1)


def check_images(images: torch.Tensor, what: str) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise utils.UsageError(f"IW: the {what} images must be a tensor [N, 3, H, W], got {shape}")
    n, _, height, width = images.shape
    if height != width or not MIN_RESOLUTION <= height <= MAX_RESOLUTION:
        raise utils.UsageError(f"IW: the {what} images are {height}x{width} px; the critic takes "
                               f"square images of {MIN_RESOLUTION} to {MAX_RESOLUTION} px, resize "
                               "them first")
    if n < MIN_IMAGES:
        raise utils.UsageError(f"IW needs at least {MIN_IMAGES} {what} images (half to train the "
                               f"critic, half to evaluate it), got {n}; pass more images")
    low, high = float(images.min()), float(images.max())
    # a little slack for rounding, none for [0, 1] or [0, 255] images
    if not (low >= -1.01 and high <= 1.01):
        raise utils.UsageError(f"IW: the {what} images must be in [-1, 1] (the generator's range), "
                               f"they span [{low:.3g}, {high:.3g}]; map uint8 images with "
                               "x / 127.5 - 1")


def seeded_halves(images: torch.Tensor,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(training half, evaluation half) under a seeded permutation; an odd image goes to
    evaluation."""
    order = torch.randperm(images.shape[0], generator=generator)
    cut = images.shape[0] // 2
    return images[order[:cut]], images[order[cut:]]


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     generator: torch.Generator) -> torch.Tensor:
    """E[(||grad D(x_hat)|| - 1)^2] on random points between paired real and generated images."""
    eps = torch.rand(real.shape[0], 1, 1, 1, generator=generator).to(real.device)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    grad, = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


def seeded_critic(resolution: int, seed: int) -> Critic:
    """PyTorch's default initialisation, drawn from `seed` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Critic(resolution, WIDTHS)


@torch.enable_grad()  # also when the caller samples under no_grad (sample.py)
def train_critic(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, steps: int,
                 generator: torch.Generator) -> nn.Module:
    """The critic after `steps` WGAN-GP updates on batches drawn (with replacement) from real and
    fake."""
    optimizer = torch.optim.Adam(critic.parameters(), lr=LR, betas=BETAS)
    for _ in range(steps):
        real_batch = real[torch.randint(real.shape[0], (BATCH_SIZE,), generator=generator)]
        fake_batch = fake[torch.randint(fake.shape[0], (BATCH_SIZE,), generator=generator)]
        # the critic's loss: minus (E[D(real)] - E[D(fake)]) plus the penalty
        loss = (critic(fake_batch).mean() - critic(real_batch).mean()
                + GP_WEIGHT * gradient_penalty(critic, real_batch, fake_batch, generator))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return critic.eval()


@contextlib.contextmanager
def one_cpu_thread() -> Iterator[None]:
    """The critic is too small to gain from more threads (on 2 busy cores it loses 4x), and CPU
    convolutions round differently with another thread count: one thread keeps IW comparable."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@torch.no_grad()
def mean_score(critic: nn.Module, images: torch.Tensor) -> float:
    total = sum(critic(images[i:i + EVAL_BATCH]).double().sum()
                for i in range(0, images.shape[0], EVAL_BATCH))
    return float(total) / images.shape[0]


def independent_wasserstein(real: torch.Tensor, fake: torch.Tensor, seed: int = 0,
                            steps: int | None = None,
                            device: str | torch.device | None = None) -> dict:
    """IW between real and generated images [N, 3, H, W] in [-1, 1] (see the module docstring), the
    critic trained `steps` updates (default: STEPS, read at each call).

    Returns IW (on the evaluation halves: the number to report), IW_train (on the training halves),
    critic_steps, n_eval (held-out images in all), n_eval_real and n_eval_fake."""
    check_images(real, "real")
    check_images(fake, "generated")
    if real.shape[1:] != fake.shape[1:]:
        raise utils.UsageError(f"IW: real images are {tuple(real.shape[1:])} but generated ones "
                               f"are {tuple(fake.shape[1:])}; compare images of the same size")
    steps = STEPS if steps is None else steps
    if steps < 1:
        raise utils.UsageError(f"IW: steps must be at least 1, got {steps}")
    device = torch.device(device) if device is not None else real.device
    generator = torch.Generator().manual_seed(seed)
    real_train, real_eval = (half.float().to(device) for half in seeded_halves(real, generator))
    fake_train, fake_eval = (half.float().to(device) for half in seeded_halves(fake, generator))
    with one_cpu_thread() if device.type == "cpu" else contextlib.nullcontext():
        critic = seeded_critic(real.shape[-1], seed).to(device)
        critic = train_critic(critic, real_train, fake_train, steps, generator)
        iw = mean_score(critic, fake_eval) - mean_score(critic, real_eval)
        iw_train = mean_score(critic, fake_train) - mean_score(critic, real_train)
    return {"IW": iw, "IW_train": iw_train, "critic_steps": steps,
            "n_eval": real_eval.shape[0] + fake_eval.shape[0],
            "n_eval_real": real_eval.shape[0], "n_eval_fake": fake_eval.shape[0]}
