"""Differentiable augmentations of every image D sees, real and fake (DiffAugment: Zhao, Liu, Lin,
Zhu, Han, "Differentiable Augmentation for Data-Efficient GAN Training", NeurIPS 2020).

D overfits a few hundred real images quickly; DiffAugment shows D only randomly transformed
images, real and generated alike, so D cannot memorize the exact training set, and because every
transform is differentiable, G's gradient flows back through the same transforms. Written from the
paper's definitions (images in [-1, 1], parameters drawn independently for every image):

    color        brightness: x + b,                     b ~ U[-0.5, 0.5)
                 saturation: m_c + s (x - m_c),         s ~ U[0, 2),  m_c the mean over channels
                 contrast:   m + c (x - m),             c ~ U[0.5, 1.5), m the image's mean
    translation  shift by (dy, dx), integers uniform in [-r H, r H] x [-r W, r W] (r = 1/8,
                 rounded), the uncovered border filled with zeros
    cutout       zero a square of half the image's size (rounded) centred on a uniformly drawn pixel
                 (it may reach over the border; only the part inside is zeroed)

A policy is a comma-separated list of these names ("color,translation,cutout"), applied in the
order given; '' is off. Everything runs on the input's device and dtype (autocast, bf16) and
keeps a channels_last input channels_last.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

TRANSLATION_RATIO = 1 / 8
CUTOUT_RATIO = 1 / 2


def _per_image(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """One U[low, high) value per image, shaped to broadcast over [B, C, H, W]."""
    u = torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=torch.float32)
    return (low + (high - low) * u).to(x.dtype)


def brightness(x: torch.Tensor) -> torch.Tensor:
    return x + _per_image(x, -0.5, 0.5)


def saturation(x: torch.Tensor) -> torch.Tensor:
    gray = x.mean(dim=1, keepdim=True)
    return gray + (x - gray) * _per_image(x, 0.0, 2.0)


def contrast(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return mean + (x - mean) * _per_image(x, 0.5, 1.5)


def _in_layout_of(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    # A channels_last input stays channels_last (D's convolutions run in the format they are given).
    channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    return out.contiguous(memory_format=torch.channels_last if channels_last
                          else torch.contiguous_format)


def _fraction(size: int, ratio: float) -> int:
    return int(size * ratio + 0.5)


def translation(x: torch.Tensor, ratio: float = TRANSLATION_RATIO) -> torch.Tensor:
    """Output pixel (i, j) of an image shifted by (dy, dx) shows input pixel (i - dy, j - dx), or
    zero where that lies outside the image."""
    B, _, H, W = x.shape
    max_dy, max_dx = _fraction(H, ratio), _fraction(W, ratio)
    dy = torch.randint(-max_dy, max_dy + 1, (B, 1, 1), device=x.device)
    dx = torch.randint(-max_dx, max_dx + 1, (B, 1, 1), device=x.device)
    # Index into a copy with a one-pixel zero border: every source pixel outside the image is
    # clamped onto that border, so it reads zero (and indexing keeps the gradient to x).
    rows = (torch.arange(H, device=x.device).reshape(1, H, 1) - dy + 1).clamp(0, H + 1)
    cols = (torch.arange(W, device=x.device).reshape(1, 1, W) - dx + 1).clamp(0, W + 1)
    batch = torch.arange(B, device=x.device).reshape(B, 1, 1)
    padded = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1)  # [B, H + 2, W + 2, C]
    return _in_layout_of(padded[batch, rows, cols].permute(0, 3, 1, 2), x)


def cutout(x: torch.Tensor, ratio: float = CUTOUT_RATIO) -> torch.Tensor:
    B, _, H, W = x.shape
    size_h, size_w = _fraction(H, ratio), _fraction(W, ratio)
    top = torch.randint(0, H, (B, 1, 1), device=x.device) - size_h // 2
    left = torch.randint(0, W, (B, 1, 1), device=x.device) - size_w // 2
    rows = torch.arange(H, device=x.device).reshape(1, H, 1)
    cols = torch.arange(W, device=x.device).reshape(1, 1, W)
    inside = (rows >= top) & (rows < top + size_h) & (cols >= left) & (cols < left + size_w)
    return x * (~inside).unsqueeze(1).to(x.dtype)


POLICIES: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], ...]] = {
    "color": (brightness, saturation, contrast),
    "translation": (translation,),
    "cutout": (cutout,),
}


def parse_policy(policy: str | Sequence[str]) -> tuple[str, ...]:
    """'color,translation' (or a sequence of names) → ('color', 'translation'); '' → (). Raises
    ValueError naming the valid policies for an unknown one."""
    names = policy.split(",") if isinstance(policy, str) else list(policy)
    names = tuple(name.strip() for name in names if name.strip())
    unknown = [name for name in names if name not in POLICIES]
    if unknown:
        raise ValueError(f"unknown DiffAugment policy {', '.join(map(repr, unknown))}: use a "
                         f"comma-separated list of {', '.join(POLICIES)} (e.g. "
                         "color,translation,cutout; '' = off)")
    return names


class DiffAugment:
    """The augmentation T of a policy: images [B, C, H, W] → transformed images of the same shape,
    dtype and device, with fresh random parameters for every image at every call."""

    def __init__(self, policy: str | Sequence[str]):
        self.policy = parse_policy(policy)
        if not self.policy:
            raise ValueError("an empty DiffAugment policy is off: use make_augment, which gives "
                             "None")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.policy:
            for transform in POLICIES[name]:
                x = transform(x)
        return x

    def __repr__(self) -> str:
        return f"DiffAugment({','.join(self.policy)!r})"


def make_augment(policy: str | Sequence[str] | None) -> DiffAugment | None:
    """The augmentation of a --DiffAugment value: None when off ('' or None), for
    G_D(augment=...)."""
    return DiffAugment(policy) if policy and parse_policy(policy) else None
