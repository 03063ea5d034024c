"""The one feature pass of an evaluation: the samples through the backbone, once. Every metric of
the evaluation reads its result (metrics/evaluation.py)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from metrics.backbones import device_of


@dataclass(frozen=True)
class Features:
    """An evaluation's samples as the backbone sees them, on the backbone's device."""
    pool: torch.Tensor    # [N, F] pooled features: FID, mFID, KMMD, precision and recall
    probs: torch.Tensor   # [N, C] softmax probabilities: IS, class consistency
    labels: torch.Tensor  # [N] the classes the samples were made for: mFID, class consistency


def accumulate_inception_activations(sample: Callable, net: nn.Module,
                                     num_inception_images: int = 50000):
    """Run `sample()` batches (images in [-1, 1], labels) through `net` until num_inception_images.

    Returns pool features, softmax probabilities (BigGAN-PyTorch calls them "logits") and labels,
    exactly num_inception_images of each, on the backbone's device."""
    device = device_of(net)
    pool, probs, labels = [], [], []
    count = 0
    with torch.no_grad():
        while count < num_inception_images:
            images, batch_labels = sample()
            if images.shape[0] == 0:
                raise ValueError("sample() returned an empty batch")
            batch_pool, batch_logits = net(images.float().to(device))
            pool.append(batch_pool)
            probs.append(F.softmax(batch_logits, dim=1))
            labels.append(batch_labels.to(batch_pool.device))
            count += images.shape[0]
    return tuple(torch.cat(parts)[:num_inception_images] for parts in (pool, probs, labels))


def feature_pass(sample: Callable, net: nn.Module, num_images: int) -> Features:
    return Features(*accumulate_inception_activations(sample, net, num_images))
