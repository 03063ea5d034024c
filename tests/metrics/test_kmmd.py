"""metrics/kmmd.py, as a specification: the blockwise KMMD equals the official dense formula
(written here from its definition), takes unequal sizes and numpy input, is 0 for a set with
itself."""
import math

import numpy as np
import pytest
import torch

from metrics import kmmd


def calc_mmd_dense(real_feats, fake_feats, sigma: float = 1.0) -> float:
    """The official cGANTransfer formula on full distance matrices, in float64 (written here from
    its definition, as a reference for small inputs)."""
    x = torch.as_tensor(real_feats).double().cpu()
    y = torch.as_tensor(fake_feats).double().cpu()
    squared_distances = lambda a, b: ((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :]
                                      - 2 * a @ b.t())
    m_xx, m_yy, m_xy = squared_distances(x, x), squared_distances(y, y), squared_distances(x, y)
    scale = m_xx.mean()
    kernel = lambda m: torch.exp(-m / (scale * 2 * sigma * sigma))
    return math.sqrt(kernel(m_xx).mean() + kernel(m_yy).mean() - 2 * kernel(m_xy).mean())


def two_feature_sets(n=600, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(n, dim)) @ rng.normal(size=(dim, dim))
    fake = 1.3 * rng.normal(size=(n, dim)) @ rng.normal(size=(dim, dim)) + 0.5
    return real, fake


def test_blockwise_kmmd_equals_the_dense_official_formula():
    generator = torch.Generator().manual_seed(0)
    real = torch.rand(2000, 512, generator=generator).pow(2) * 3  # non-negative, like pool features
    fake = torch.rand(2000, 512, generator=generator).pow(2) * 3.1 + 0.01
    dense = calc_mmd_dense(real, fake)
    assert dense > 0.01
    # 300 does not divide 2000: ragged edge blocks, and 7 x 7 blocks per kernel matrix
    assert kmmd.calc_mmd(real, fake, block_size=300) == pytest.approx(dense, abs=1e-6)


def test_kmmd_takes_unequal_set_sizes_and_numpy_input():
    real, fake = two_feature_sets(n=300)
    expected = calc_mmd_dense(real, fake[:170])
    assert kmmd.calc_mmd(real, fake[:170], block_size=64) == pytest.approx(expected, abs=1e-6)


def test_kmmd_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    real, _ = two_feature_sets(n=300)
    assert kmmd.calc_mmd(real, real, block_size=64) == pytest.approx(0, abs=1e-5)
    assert kmmd.calc_mmd(real, real + 0.5) < kmmd.calc_mmd(real, real + 2.0)


def test_kmmd_scale_is_the_mean_real_real_squared_distance():
    x = torch.randn(100, 5, dtype=torch.float64)
    expected = float((torch.cdist(x, x) ** 2).mean())
    assert kmmd.mean_squared_distance(x, block_size=7) == pytest.approx(expected, rel=1e-9)
