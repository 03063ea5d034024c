"""KMMD, as cGANTransfer's inception_utils.py defines it:

    M_ab[i, j] = ||a_i - b_j||^2 over all pairs, diagonals included
    scale = mean(M_real_real);  k = exp(-M / (2 sigma^2 scale))
    KMMD = sqrt(mean k(real, real) + mean k(fake, fake) - 2 mean k(real, fake))   (biased estimate)

The blockwise version here never holds more than a block_size x block_size block."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from metrics.pairwise import row_blocks, squared_distance_block, squared_norms

KMMD_BLOCK_SIZE = 4096  # a 4096 x 4096 float32 kernel block is 64 MB: fast, and far below 2 GB


def mean_squared_distance(x: torch.Tensor, block_size: int) -> float:
    """Mean of ||x_i - x_j||^2 over all N^2 pairs, with the diagonal, in float64.

    It equals 2 (mean ||x||^2 - ||mean x||^2), so one pass over row blocks gives it exactly;
    no pair is ever formed."""
    sum_sq = torch.zeros((), dtype=torch.float64, device=x.device)
    total = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    for i in row_blocks(x.shape[0], block_size):
        block = x[i:i + block_size].double()
        sum_sq += block.pow(2).sum()
        total += block.sum(dim=0)
    n = x.shape[0]
    return float(2 * (sum_sq / n - (total / n).pow(2).sum()))


def mean_kernel(x: torch.Tensor, y: torch.Tensor, center: torch.Tensor, gamma: float,
                block_size: int, symmetric: bool) -> float:
    """Mean of exp(-gamma ||x_i - y_j||^2) over all pairs, summed block by block in float64.

    Both sets are shifted by `center` (distances do not change) so that the |a|^2 + |b|^2 - 2ab
    expansion loses less to cancellation in float32. With symmetric (x is y) only the upper
    triangle of blocks is computed, each off-diagonal block counted twice."""
    x_norms, y_norms = squared_norms(x, center, block_size), squared_norms(y, center, block_size)
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for i in row_blocks(x.shape[0], block_size):
        a = x[i:i + block_size] - center
        for j in row_blocks(y.shape[0], block_size):
            if symmetric and j < i:
                continue
            b = y[j:j + block_size] - center
            dist = squared_distance_block(a, b, x_norms[i:i + block_size],
                                          y_norms[j:j + block_size])
            block_sum = dist.mul_(-gamma).exp_().sum(dtype=torch.float64)
            total += 2 * block_sum if symmetric and j != i else block_sum
    return float(total) / (x.shape[0] * y.shape[0])


@dataclass(frozen=True)
class RealSide:
    """What KMMD needs of the real features alone, the same at every evaluation against them: an
    evaluation loop computes it once (metrics/evaluation.py)."""
    x: torch.Tensor       # [N, F] float32
    center: torch.Tensor  # the real mean, that both sets are shifted by
    gamma: float          # 1 / (2 sigma^2 scale), scale the mean real-real squared distance
    k_xx: float           # mean kernel over real-real pairs
    block_size: int


def real_side(real_feats, sigma: float = 1.0, block_size: int = KMMD_BLOCK_SIZE) -> RealSide:
    x = torch.as_tensor(real_feats).float()
    if x.dim() != 2:
        raise ValueError(f"KMMD needs [N, F] real features, got {tuple(x.shape)}")
    scale = mean_squared_distance(x, block_size)
    if scale <= 0:
        raise ValueError("KMMD: all real features are identical, so the kernel scale is 0")
    gamma = 1.0 / (2 * sigma * sigma * scale)
    center = x.mean(dim=0)
    return RealSide(x, center, gamma, mean_kernel(x, x, center, gamma, block_size, symmetric=True),
                    block_size)


def mmd_to(real: RealSide, fake_feats) -> float:
    """KMMD of fake features against a real side computed before."""
    x = real.x
    y = torch.as_tensor(fake_feats).float().to(x.device)
    if y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError("KMMD needs two [N, F] feature sets of equal F, got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    k_yy = mean_kernel(y, y, real.center, real.gamma, real.block_size, symmetric=True)
    k_xy = mean_kernel(x, y, real.center, real.gamma, real.block_size, symmetric=False)
    # the biased MMD^2 is a squared RKHS norm, so a negative value is rounding: read it as 0
    return math.sqrt(max(real.k_xx + k_yy - 2 * k_xy, 0.0))


def calc_mmd(real_feats, fake_feats, sigma: float = 1.0,
             block_size: int = KMMD_BLOCK_SIZE) -> float:
    """KMMD between real and fake features with the official Gaussian kernel, in memory
    O(block_size^2). Runs in float32 with float64 sums, on the device of real_feats (numpy
    inputs: the cpu)."""
    x, y = torch.as_tensor(real_feats), torch.as_tensor(fake_feats)
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError("KMMD needs two [N, F] feature sets of equal F, got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    return mmd_to(real_side(x, sigma, block_size), y)
