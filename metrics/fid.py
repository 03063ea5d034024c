"""Fréchet distance: ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrt(S1 S2)), between the Gaussian fitted to
sample features and reference moments: FID, and per class (mFID). With scipy's sqrtm in float64
(TTUR's recipe, the default) or a Newton-Schulz square root on the features' device."""
from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy import linalg

NEWTON_SCHULZ_ITERS = 50


def torch_cov(m: torch.Tensor, rowvar: bool = False) -> torch.Tensor:
    """Unbiased covariance of the rows (or, with rowvar, the columns) of m, like np.cov."""
    if m.dim() < 2:
        m = m.view(1, -1)
    if rowvar:
        m = m.t()
    centered = m - m.mean(dim=0, keepdim=True)
    return centered.t() @ centered / (m.shape[0] - 1)


def sqrt_newton_schulz(A: torch.Tensor, numIters: int,
                       dtype: torch.dtype | None = None) -> torch.Tensor:
    """Matrix square roots of a batch [B, d, d] by the coupled Newton-Schulz iteration.

    The iteration only converges for norms below 1, hence the scaling by the Frobenius norm."""
    with torch.no_grad():
        A = A.to(dtype) if dtype is not None else A
        batch, dim = A.shape[0], A.shape[1]
        norm = A.pow(2).sum(dim=(1, 2)).sqrt().view(batch, 1, 1)
        Y = A / norm
        eye = torch.eye(dim, dtype=A.dtype, device=A.device).expand(batch, dim, dim)
        Z = eye.clone()
        for _ in range(numIters):
            T = 0.5 * (3.0 * eye - Z.bmm(Y))
            Y = Y.bmm(T)
            Z = T.bmm(Z)
        return Y * norm.sqrt()


def numpy_calculate_frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), with scipy's sqrtm (TTUR's
    recipe)."""
    mu1, mu2 = (np.atleast_1d(np.asarray(mu, np.float64)) for mu in (mu1, mu2))
    sigma1, sigma2 = (np.atleast_2d(np.asarray(sigma, np.float64)) for sigma in (sigma1, sigma2))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"the two Gaussians differ in dimension: mu {mu1.shape} vs {mu2.shape}, "
                         f"sigma {sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        # a singular product (e.g. fewer samples than dimensions): nudge both covariances off it
        warnings.warn(f"FID: singular covariance product; adding {eps} to the diagonals")
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        # rounding can leave a tiny imaginary part; a large one means the result is meaningless
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError("FID: matrix square root has an imaginary component of "
                             f"{np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def torch_calculate_frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> torch.Tensor:
    """Fréchet distance with a Newton-Schulz matrix square root: all on the inputs' device."""
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"the two Gaussians differ in dimension: mu {tuple(mu1.shape)} vs "
                         f"{tuple(mu2.shape)}, sigma {tuple(sigma1.shape)} vs "
                         f"{tuple(sigma2.shape)}")
    offset = eps * torch.eye(sigma1.shape[0], dtype=sigma1.dtype, device=sigma1.device)
    sigma1, sigma2 = sigma1 + offset, sigma2 + offset
    diff = mu1 - mu2
    covmean = sqrt_newton_schulz((sigma1 @ sigma2).unsqueeze(0), NEWTON_SCHULZ_ITERS).squeeze(0)
    return diff.dot(diff) + torch.trace(sigma1) + torch.trace(sigma2) - 2 * torch.trace(covmean)


def fid_to_reference(pool: torch.Tensor, ref_mu: np.ndarray, ref_sigma: np.ndarray,
                     use_torch: bool) -> float:
    """FID between the Gaussian fitted to `pool` and reference moments."""
    if use_torch:
        as_tensor = lambda a: torch.as_tensor(a, dtype=pool.dtype, device=pool.device)
        return float(torch_calculate_frechet_distance(pool.mean(0), torch_cov(pool),
                                                      as_tensor(ref_mu), as_tensor(ref_sigma)))
    feats = pool.double().cpu().numpy()
    return numpy_calculate_frechet_distance(feats.mean(0), np.cov(feats, rowvar=False), ref_mu,
                                            ref_sigma)


def per_class_fid(pool: torch.Tensor, labels: torch.Tensor, class_mu: np.ndarray,
                  class_sigma: np.ndarray, class_counts: np.ndarray,
                  use_torch: bool) -> dict[int, float]:
    """FID of each class's samples to that class's reference; classes with < 2 samples on either
    side are skipped."""
    fids = {}
    for c in range(len(class_mu)):
        feats = pool[labels == c]
        if feats.shape[0] < 2 or class_counts[c] < 2:
            continue
        fids[c] = fid_to_reference(feats, class_mu[c], class_sigma[c], use_torch)
    return fids
