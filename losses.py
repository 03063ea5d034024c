"""GAN losses (hinge, as BigGAN-PyTorch) and cGANTransfer's regularizers of the new-class BN
path."""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F


def discriminator_loss(dis_fake: torch.Tensor,
                       dis_real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.mean(F.relu(1.0 - dis_real)), torch.mean(F.relu(1.0 + dis_fake))


def generator_loss(dis_fake: torch.Tensor) -> torch.Tensor:
    return -torch.mean(dis_fake)


def combination_l1(params: Iterable[torch.Tensor], scale: float) -> torch.Tensor | float:
    """Sparse combinations: each new class should draw on few old classes (official: per tensor)."""
    return sum(scale * p.abs().mean() for p in params) if scale else 0.0


def residual_l2(params: Iterable[torch.Tensor], scale: float) -> torch.Tensor | float:
    """Small residuals: the new classes' BN parameters should come mostly from the old classes."""
    return sum(scale * p.pow(2).mean() for p in params) if scale else 0.0
