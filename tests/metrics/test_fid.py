"""metrics/fid.py, as a specification: the Fréchet distance equals its formula (scipy, or
Newton-Schulz within a thousandth), is 0 for a Gaussian to itself and leaves its inputs alone."""
import numpy as np
import pytest
import scipy.linalg
import torch

from metrics import fid


def frechet_formula(mu1, sigma1, mu2, sigma2):
    """||mu1 - mu2||^2 + tr(s1 + s2 - 2 sqrtm(s1 s2)), written out plainly."""
    diff = mu1 - mu2
    return diff @ diff + np.trace(sigma1 + sigma2 - 2 * scipy.linalg.sqrtm(sigma1 @ sigma2).real)


def two_feature_sets(n=600, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(n, dim)) @ rng.normal(size=(dim, dim))
    fake = 1.3 * rng.normal(size=(n, dim)) @ rng.normal(size=(dim, dim)) + 0.5
    return real, fake


def moments(feats):
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def test_numpy_fid_equals_the_frechet_formula():
    real, fake = two_feature_sets()
    expected = frechet_formula(*moments(real), *moments(fake))
    distance = fid.numpy_calculate_frechet_distance(*moments(real), *moments(fake))
    assert distance == pytest.approx(expected, rel=1e-6)


def test_newton_schulz_fid_is_within_a_thousandth_of_the_formula():
    real, fake = two_feature_sets()
    expected = frechet_formula(*moments(real), *moments(fake))
    tensors = [torch.as_tensor(a, dtype=torch.float32) for a in (*moments(real), *moments(fake))]
    distance = float(fid.torch_calculate_frechet_distance(*tensors))
    assert distance == pytest.approx(expected, rel=1e-3)


def test_newton_schulz_square_root_squares_back():
    a = torch.randn(2, 12, 12, dtype=torch.float64)
    spd = a @ a.transpose(1, 2) + torch.eye(12, dtype=torch.float64)
    root = fid.sqrt_newton_schulz(spd, 50)
    torch.testing.assert_close(root @ root, spd, rtol=1e-6, atol=1e-6)


def test_fid_of_a_gaussian_to_itself_is_zero():
    real, _ = two_feature_sets()
    distance = fid.numpy_calculate_frechet_distance(*moments(real), *moments(real))
    assert distance == pytest.approx(0, abs=1e-6)


def test_torch_fid_leaves_its_inputs_unchanged():
    sigma = torch.eye(3)
    fid.torch_calculate_frechet_distance(torch.zeros(3), sigma, torch.ones(3), sigma)
    assert torch.equal(sigma, torch.eye(3))
