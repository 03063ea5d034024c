"""Squared distances between feature sets, block by block: KMMD and precision and recall need all
N^2 pairs, which at evaluation scale (50,000 features) would be a 10 GB matrix; one block of
block_size x block_size is 64 MB at 4096."""
from __future__ import annotations

import torch


def row_blocks(n: int, block_size: int) -> range:
    return range(0, n, block_size)


def squared_norms(x: torch.Tensor, center: torch.Tensor, block_size: int) -> torch.Tensor:
    """[N] ||x_i - center||^2, block by block."""
    return torch.cat([(x[i:i + block_size] - center).pow(2).sum(dim=1)
                      for i in row_blocks(x.shape[0], block_size)])


def squared_distance_block(a: torch.Tensor, b: torch.Tensor, a_norms: torch.Tensor,
                           b_norms: torch.Tensor) -> torch.Tensor:
    """||a_i - b_j||^2 for a block, by |a|^2 + |b|^2 - 2ab, in place from the product on (one
    block-sized buffer); rounding can dip below 0: clamped."""
    return (a @ b.t()).mul_(-2).add_(a_norms[:, None]).add_(b_norms[None, :]).clamp_(min=0)
