"""Precision and recall (Kynkäänniemi et al. 2019, "Improved precision and recall metric"): each
set's manifold is the union of balls around its features, the radius of a feature being the
distance to its k-th nearest OTHER feature of the same set.

    precision = share of fake features inside at least one real ball  (samples that look real)
    recall    = share of real features inside at least one fake ball  (real data the samples cover)

Distances are float32, on the device of the real features, computed block by block: memory is
O(block_size^2) whatever N (a 4096 x 4096 block is 64 MB; 50,000 features never form the 10 GB
full matrix). Time is O(N^2 F), 4 passes over all pairs: 5,000 vs 5,000 2048-d features took
3.5 s on one CPU thread (Intel Xeon), so 50,000 vs 50,000 take about 6 minutes there."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

import utils
from metrics.pairwise import row_blocks, squared_distance_block

PR_BLOCK_SIZE = 4096  # distances, candidates and top-k of one block: about 3 x 64 MB


def kth_neighbour_squared_radii(x: torch.Tensor, norms: torch.Tensor, k: int,
                                block_size: int) -> torch.Tensor:
    """[N] squared distance of each row of x to its k-th nearest other row, keeping only the k
    smallest distances seen so far per row (memory O(block_size * (block_size + k)))."""
    radii = []
    for i in row_blocks(x.shape[0], block_size):
        a = x[i:i + block_size]
        nearest = torch.full((a.shape[0], 0), math.inf, dtype=x.dtype, device=x.device)
        for j in row_blocks(x.shape[0], block_size):
            dist = squared_distance_block(a, x[j:j + block_size], norms[i:i + block_size],
                                          norms[j:j + block_size])
            if i == j:  # a feature is not its own neighbour (a duplicate of it is)
                dist.fill_diagonal_(math.inf)
            candidates = torch.cat([nearest, dist], dim=1)
            nearest = candidates.topk(min(k, candidates.shape[1]), dim=1, largest=False).values
        radii.append(nearest[:, k - 1])
    return torch.cat(radii)


def share_inside_balls(queries: torch.Tensor, query_norms: torch.Tensor, centers: torch.Tensor,
                       center_norms: torch.Tensor, squared_radii: torch.Tensor,
                       block_size: int) -> float:
    """Share of queries within distance radius_j (boundary included) of at least one center j."""
    inside = torch.zeros(queries.shape[0], dtype=torch.bool, device=queries.device)
    for i in row_blocks(queries.shape[0], block_size):
        a = queries[i:i + block_size]
        for j in row_blocks(centers.shape[0], block_size):
            dist = squared_distance_block(a, centers[j:j + block_size],
                                          query_norms[i:i + block_size],
                                          center_norms[j:j + block_size])
            inside[i:i + block_size] |= (dist <= squared_radii[None, j:j + block_size]).any(dim=1)
    return inside.sum().item() / queries.shape[0]


def check_sizes(x: torch.Tensor, y: torch.Tensor, k: int) -> None:
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError("precision/recall needs two [N, F] feature sets of equal F, got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    if k < 1:
        raise utils.UsageError(f"precision/recall: k must be at least 1, got {k}")
    for name, feats in (("real", x), ("fake", y)):
        if feats.shape[0] <= k:
            raise utils.UsageError(
                f"precision/recall with k={k} needs more than {k} {name} features (each ball "
                f"reaches the k-th nearest other one), got {feats.shape[0]}; evaluate on more "
                "images or pass a smaller k")


@dataclass(frozen=True)
class RealBalls:
    """The real features' balls, the same at every evaluation against them: an evaluation loop
    computes them once (metrics/evaluation.py)."""
    center: torch.Tensor         # the real mean, that both sets are shifted by
    x: torch.Tensor              # [N, F] the real features minus center
    norms: torch.Tensor          # [N] their squared norms
    squared_radii: torch.Tensor  # [N] squared distance to the k-th nearest other real feature
    k: int
    block_size: int


def real_balls(real_features, k: int = 3, block_size: int = PR_BLOCK_SIZE) -> RealBalls:
    x = torch.as_tensor(real_features).float()
    check_sizes(x, x, k)
    # shifting both sets by one point changes no distance but makes |a|^2 + |b|^2 - 2ab cancel less
    center = x.mean(dim=0)
    x = x - center
    norms = x.pow(2).sum(dim=1)
    return RealBalls(center, x, norms, kth_neighbour_squared_radii(x, norms, k, block_size), k,
                     block_size)


def precision_recall_to(real: RealBalls, fake_features) -> dict:
    """Precision and recall of fake features against real balls computed before."""
    y = torch.as_tensor(fake_features).float().to(real.x.device)
    check_sizes(real.x, y, real.k)
    y = y - real.center
    y_norms = y.pow(2).sum(dim=1)
    fake_radii = kth_neighbour_squared_radii(y, y_norms, real.k, real.block_size)
    return {"precision": share_inside_balls(y, y_norms, real.x, real.norms, real.squared_radii,
                                            real.block_size),
            "recall": share_inside_balls(real.x, real.norms, y, y_norms, fake_radii,
                                         real.block_size)}


def precision_recall(real_features, fake_features, k: int = 3,
                     block_size: int = PR_BLOCK_SIZE) -> dict:
    """Improved precision and recall of fake against real features [N, F] (numpy or torch), k-NN
    balls. Returns {"precision": float, "recall": float}, both in [0, 1]. Each set needs more
    than k features."""
    x = torch.as_tensor(real_features).float()
    check_sizes(x, torch.as_tensor(fake_features).float(), k)
    return precision_recall_to(real_balls(x, k, block_size), fake_features)
