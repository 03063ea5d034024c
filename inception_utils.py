"""Metrics for GAN evaluation: IS, FID, per-class FID (mFID), KMMD, precision and recall, class consistency.

Every metric is computed in the feature space of a pluggable backbone: any nn.Module that maps
images in [-1, 1] to (features, logits). load_inception_net builds one of three:

    inception     torchvision's ImageNet Inception v3, as BigGAN-PyTorch uses it (the default)
    tf_inception  pytorch-fid's port of the TF Inception graph, the one FID papers report
    classifier    this project's own classifier (classifier.py)

Each carries `metric_space` naming the space, and the reference statistics on disk carry it too,
so a classifier-space distance is never compared with, or reported as, an Inception FID.

The reference statistics come from calculate_inception_moments.py:
    <data_root>/<dataset>_<metric_space>_moments.npz   mu, sigma (+ per-class stats, class names)
    <data_root>/<dataset>_<metric_space>_features.npz  pool features and labels, for KMMD and
                                                       precision and recall
"""
from __future__ import annotations

import math
import os
import warnings
import zipfile
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from scipy import linalg
from scipy.special import rel_entr

import datasets
import utils

BACKBONES = ("inception", "tf_inception", "classifier")
INCEPTION_WEIGHTS = torchvision.models.Inception_V3_Weights.IMAGENET1K_V1
NEWTON_SCHULZ_ITERS = 50
KMMD_BLOCK_SIZE = 4096  # a 4096 x 4096 float32 kernel block is 64 MB: fast, and far below 2 GB
PR_BLOCK_SIZE = 4096  # distances, candidates and top-k of one block: about 3 x 64 MB


# -----------------------------------------------------------------------------
# Backbones

# The torchvision Inception v3 layers up to the last mixed block, in forward order.
INCEPTION_LAYERS = (
    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1",
    "Conv2d_3b_1x1", "Conv2d_4a_3x3", "maxpool2",
    "Mixed_5b", "Mixed_5c", "Mixed_5d",
    "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
    "Mixed_7a", "Mixed_7b", "Mixed_7c",
)


class InceptionFeatures(nn.Module):
    """An Inception v3 as a metric backbone: images in [-1, 1] -> (2048-d pool features, logits)."""

    def __init__(self, net: nn.Module, imagenet_normalize: bool):
        super().__init__()
        self.net = net
        # torchvision's weights expect ImageNet-standardised inputs; the TF port expects [-1, 1]
        self.imagenet_normalize = imagenet_normalize
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.imagenet_normalize:
            x = ((x + 1) / 2 - self.mean) / self.std
        if x.shape[2:] != (299, 299):
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        for name in INCEPTION_LAYERS:
            x = getattr(self.net, name)(x)
        pool = x.mean(dim=(2, 3))
        # dropout is the identity at eval time, so the classifier sees the pool features as they are
        logits = self.net.fc(pool)
        return pool, logits


def read_state_dict(path: str, what: str) -> dict:
    return utils.load_file(path, f"{what} weights file",
                           "pass the path of a state dict saved with torch.save(model.state_dict(), path)")


def hub_state_dict(url: str, what: str) -> dict:
    """The weights from the torch hub cache, downloading them there first when that is possible."""
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=True, weights_only=True)
    except Exception as err:
        raise utils.UsageError(
            f"the {what} weights are not in the torch hub cache and could not be downloaded "
            f"({type(err).__name__}: {err}); on a machine with internet access download {url} "
            f"and put it at {cached}, or pass --inception_weights PATH to a local copy") from err


def load_weights_into(net: nn.Module, state: dict, what: str) -> None:
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise utils.UsageError(f"the weights given do not fit {what} ({str(err).splitlines()[0]}); "
                               f"pass a state dict of {what}") from err


def build_torchvision_inception(weights: str | None) -> nn.Module:
    net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False,
                                          transform_input=False)
    state = read_state_dict(weights, "Inception") if weights else hub_state_dict(INCEPTION_WEIGHTS.url, "Inception v3")
    load_weights_into(net, state, "torchvision's inception_v3")
    backbone = InceptionFeatures(net, imagenet_normalize=True)
    backbone.class_names = list(INCEPTION_WEIGHTS.meta["categories"])
    return backbone


def build_tf_inception(weights: str | None) -> nn.Module:
    try:
        from pytorch_fid import inception as fid
    except ImportError as err:
        raise utils.UsageError("backbone 'tf_inception' needs the pytorch-fid package; "
                               "run `pip install pytorch-fid`, or use --backbone inception") from err
    net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False,
                                          transform_input=False, num_classes=1008)
    # The TF graph pools differently in these blocks; pytorch-fid ships blocks patched to match it
    net.Mixed_5b = fid.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = fid.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = fid.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = fid.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = fid.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = fid.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = fid.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = fid.FIDInceptionE_1(1280)
    net.Mixed_7c = fid.FIDInceptionE_2(2048)
    state = read_state_dict(weights, "TF Inception") if weights else hub_state_dict(fid.FID_WEIGHTS_URL, "TF Inception (pytorch-fid)")
    load_weights_into(net, state, "pytorch-fid's FID Inception")
    return InceptionFeatures(net, imagenet_normalize=False)


def build_classifier(weights: str | None) -> nn.Module:
    if not weights:
        raise utils.UsageError("backbone 'classifier' needs its checkpoint; pass --inception_weights PATH "
                               "to a classifier trained on the target classes")
    try:
        import classifier
    except ImportError as err:
        raise utils.UsageError(f"backbone 'classifier' needs classifier.py from this project ({err}); "
                               "run from the repository root, or use --backbone inception") from err
    return classifier.load_classifier(weights)


def load_inception_net(backbone: str = "inception", weights: str | None = None,
                       device: str | torch.device = "cpu", parallel: bool = False) -> nn.Module:
    """The metric backbone, frozen and in eval mode on `device`, tagged with its `metric_space`."""
    builders = {"inception": build_torchvision_inception,
                "tf_inception": build_tf_inception,
                "classifier": build_classifier}
    if backbone not in builders:
        raise utils.UsageError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
    net = builders[backbone](weights).to(device).eval().requires_grad_(False)
    class_names, resolution = getattr(net, "class_names", None), getattr(net, "resolution", None)
    if parallel and torch.cuda.device_count() > 1:
        print("Parallelizing the metric backbone...")
        net = nn.DataParallel(net)
        # DataParallel hides the wrapped module's attributes
        net.class_names, net.resolution = class_names, resolution
    net.metric_space = backbone
    return net


def metric_space_of(net: nn.Module) -> str:
    return getattr(net, "metric_space", "custom")


def device_of(net: nn.Module) -> torch.device:
    param = next(net.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


# -----------------------------------------------------------------------------
# Fréchet distance: ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrt(S1 S2))

def torch_cov(m: torch.Tensor, rowvar: bool = False) -> torch.Tensor:
    """Unbiased covariance of the rows (or, with rowvar, the columns) of m, like np.cov."""
    if m.dim() < 2:
        m = m.view(1, -1)
    if rowvar:
        m = m.t()
    centered = m - m.mean(dim=0, keepdim=True)
    return centered.t() @ centered / (m.shape[0] - 1)


def sqrt_newton_schulz(A: torch.Tensor, numIters: int, dtype: torch.dtype | None = None) -> torch.Tensor:
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
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), with scipy's sqrtm (TTUR's recipe)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"the two Gaussians differ in dimension: mu {mu1.shape} vs {mu2.shape}, "
                         f"sigma {sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        # a singular product (e.g. fewer samples than dimensions): nudge both covariances off singularity
        warnings.warn(f"FID: singular covariance product; adding {eps} to the diagonals")
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        # rounding can leave a tiny imaginary part; a large one means the result is meaningless
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"FID: matrix square root has an imaginary component of {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def torch_calculate_frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> torch.Tensor:
    """Fréchet distance with a Newton-Schulz matrix square root: all on the inputs' device."""
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"the two Gaussians differ in dimension: mu {tuple(mu1.shape)} vs {tuple(mu2.shape)}, "
                         f"sigma {tuple(sigma1.shape)} vs {tuple(sigma2.shape)}")
    offset = eps * torch.eye(sigma1.shape[0], dtype=sigma1.dtype, device=sigma1.device)
    sigma1, sigma2 = sigma1 + offset, sigma2 + offset
    diff = mu1 - mu2
    covmean = sqrt_newton_schulz((sigma1 @ sigma2).unsqueeze(0), NEWTON_SCHULZ_ITERS).squeeze(0)
    return diff.dot(diff) + torch.trace(sigma1) + torch.trace(sigma2) - 2 * torch.trace(covmean)


def fid_to_reference(pool: torch.Tensor, ref_mu: np.ndarray, ref_sigma: np.ndarray, use_torch: bool) -> float:
    """FID between the Gaussian fitted to `pool` and reference moments."""
    if use_torch:
        as_tensor = lambda a: torch.as_tensor(a, dtype=pool.dtype, device=pool.device)
        return float(torch_calculate_frechet_distance(pool.mean(0), torch_cov(pool),
                                                      as_tensor(ref_mu), as_tensor(ref_sigma)))
    feats = pool.double().cpu().numpy()
    return numpy_calculate_frechet_distance(feats.mean(0), np.cov(feats, rowvar=False), ref_mu, ref_sigma)


def per_class_fid(pool: torch.Tensor, labels: torch.Tensor, class_mu: np.ndarray, class_sigma: np.ndarray,
                  class_counts: np.ndarray, use_torch: bool) -> dict[int, float]:
    """FID of each class's samples to that class's reference; classes with < 2 samples on either side are skipped."""
    fids = {}
    for c in range(len(class_mu)):
        feats = pool[labels == c]
        if feats.shape[0] < 2 or class_counts[c] < 2:
            continue
        fids[c] = fid_to_reference(feats, class_mu[c], class_sigma[c], use_torch)
    return fids


# -----------------------------------------------------------------------------
# Inception Score

def calculate_inception_score(pred, num_splits: int = 10) -> tuple[float, float]:
    """Mean and std over splits of exp(E_x KL(p(y|x) || p(y))); `pred` are softmax probabilities [N, C]."""
    pred = np.asarray(pred, dtype=np.float64)
    split = pred.shape[0] // num_splits
    if split == 0:
        raise utils.UsageError(f"the Inception Score needs at least num_splits={num_splits} samples, "
                               f"got {pred.shape[0]}; evaluate on more images")
    scores = []
    for k in range(num_splits):
        part = pred[k * split:(k + 1) * split]
        marginal = part.mean(axis=0, keepdims=True)
        # rel_entr takes 0 * log 0 as 0, so confident one-hot predictions give finite scores
        scores.append(np.exp(rel_entr(part, marginal).sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


# -----------------------------------------------------------------------------
# KMMD, as cGANTransfer's inception_utils.py defines it:
#   M_ab[i, j] = ||a_i - b_j||^2 over all pairs, diagonals included
#   scale = mean(M_real_real);  k = exp(-M / (2 sigma^2 scale))
#   KMMD = sqrt(mean k(real, real) + mean k(fake, fake) - 2 mean k(real, fake))   (the biased estimate)
# The blockwise version below never holds more than a block_size x block_size block.

def row_blocks(n: int, block_size: int) -> range:
    return range(0, n, block_size)


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


def squared_norms(x: torch.Tensor, center: torch.Tensor, block_size: int) -> torch.Tensor:
    return torch.cat([(x[i:i + block_size] - center).pow(2).sum(dim=1) for i in row_blocks(x.shape[0], block_size)])


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
            # in place from the product on: one block_size^2 buffer per block
            dist = (a @ b.t()).mul_(-2).add_(x_norms[i:i + block_size, None]).add_(y_norms[None, j:j + block_size])
            block_sum = dist.clamp_(min=0).mul_(-gamma).exp_().sum(dtype=torch.float64)
            total += 2 * block_sum if symmetric and j != i else block_sum
    return float(total) / (x.shape[0] * y.shape[0])


def calc_mmd(real_feats, fake_feats, sigma: float = 1.0, block_size: int = KMMD_BLOCK_SIZE) -> float:
    """KMMD between real and fake features with the official Gaussian kernel, in memory O(block_size^2).

    Runs in float32 with float64 sums, on the device of real_feats (numpy inputs: the cpu)."""
    x = torch.as_tensor(real_feats).float()
    y = torch.as_tensor(fake_feats).float().to(x.device)
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"KMMD needs two [N, F] feature sets of equal F, got {tuple(x.shape)} and {tuple(y.shape)}")
    scale = mean_squared_distance(x, block_size)
    if scale <= 0:
        raise ValueError("KMMD: all real features are identical, so the kernel scale is 0")
    gamma = 1.0 / (2 * sigma * sigma * scale)
    center = x.mean(dim=0)
    k_xx = mean_kernel(x, x, center, gamma, block_size, symmetric=True)
    k_yy = mean_kernel(y, y, center, gamma, block_size, symmetric=True)
    k_xy = mean_kernel(x, y, center, gamma, block_size, symmetric=False)
    # the biased MMD^2 is a squared RKHS norm, so a negative value is rounding: read it as 0
    return math.sqrt(max(k_xx + k_yy - 2 * k_xy, 0.0))


# -----------------------------------------------------------------------------
# Precision and recall (Kynkäänniemi et al. 2019, "Improved precision and recall metric"):
# each set's manifold is the union of balls around its features, the radius of a feature being
# the distance to its k-th nearest OTHER feature of the same set.
#   precision = share of fake features inside at least one real ball  (samples that look real)
#   recall    = share of real features inside at least one fake ball  (real data the samples cover)
# Distances are float32, on the device of the real features, computed block by block: memory is
# O(block_size^2) whatever N (a 4096 x 4096 block is 64 MB; 50,000 features never form the
# 10 GB full matrix). Time is O(N^2 F), 4 passes over all pairs: 5,000 vs 5,000 2048-d features
# took 3.5 s on one CPU thread (Intel Xeon), so 50,000 vs 50,000 take about 6 minutes there.

def squared_distance_block(a: torch.Tensor, b: torch.Tensor, a_norms: torch.Tensor,
                           b_norms: torch.Tensor) -> torch.Tensor:
    """||a_i - b_j||^2 for a block, by |a|^2 + |b|^2 - 2ab (rounding can dip below 0: clamped)."""
    return (a @ b.t()).mul_(-2).add_(a_norms[:, None]).add_(b_norms[None, :]).clamp_(min=0)


def kth_neighbour_squared_radii(x: torch.Tensor, norms: torch.Tensor, k: int, block_size: int) -> torch.Tensor:
    """[N] squared distance of each row of x to its k-th nearest other row, keeping only the k
    smallest distances seen so far per row (memory O(block_size * (block_size + k)))."""
    radii = []
    for i in row_blocks(x.shape[0], block_size):
        a = x[i:i + block_size]
        nearest = torch.full((a.shape[0], 0), math.inf, dtype=x.dtype, device=x.device)
        for j in row_blocks(x.shape[0], block_size):
            dist = squared_distance_block(a, x[j:j + block_size], norms[i:i + block_size], norms[j:j + block_size])
            if i == j:  # a feature is not its own neighbour (a duplicate of it is)
                dist.fill_diagonal_(math.inf)
            candidates = torch.cat([nearest, dist], dim=1)
            nearest = candidates.topk(min(k, candidates.shape[1]), dim=1, largest=False).values
        radii.append(nearest[:, k - 1])
    return torch.cat(radii)


def share_inside_balls(queries: torch.Tensor, query_norms: torch.Tensor, centers: torch.Tensor,
                       center_norms: torch.Tensor, squared_radii: torch.Tensor, block_size: int) -> float:
    """Share of queries within distance radius_j (boundary included) of at least one center j."""
    inside = torch.zeros(queries.shape[0], dtype=torch.bool, device=queries.device)
    for i in row_blocks(queries.shape[0], block_size):
        a = queries[i:i + block_size]
        for j in row_blocks(centers.shape[0], block_size):
            dist = squared_distance_block(a, centers[j:j + block_size], query_norms[i:i + block_size],
                                          center_norms[j:j + block_size])
            inside[i:i + block_size] |= (dist <= squared_radii[None, j:j + block_size]).any(dim=1)
    return inside.sum().item() / queries.shape[0]


def precision_recall(real_features, fake_features, k: int = 3, block_size: int = PR_BLOCK_SIZE) -> dict:
    """Improved precision and recall of fake against real features [N, F] (numpy or torch), k-NN balls.

    Returns {"precision": float, "recall": float}, both in [0, 1]. Each set needs more than k features."""
    x = torch.as_tensor(real_features).float()
    y = torch.as_tensor(fake_features).float().to(x.device)
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"precision/recall needs two [N, F] feature sets of equal F, got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")
    if k < 1:
        raise utils.UsageError(f"precision/recall: k must be at least 1, got {k}")
    for name, feats in (("real", x), ("fake", y)):
        if feats.shape[0] <= k:
            raise utils.UsageError(f"precision/recall with k={k} needs more than {k} {name} features (each "
                                   f"ball reaches the k-th nearest other one), got {feats.shape[0]}; "
                                   "evaluate on more images or pass a smaller k")
    # shifting both sets by one point changes no distance but makes |a|^2 + |b|^2 - 2ab cancel less
    center = x.mean(dim=0)
    x, y = x - center, y - center
    x_norms, y_norms = x.pow(2).sum(dim=1), y.pow(2).sum(dim=1)
    real_radii = kth_neighbour_squared_radii(x, x_norms, k, block_size)
    fake_radii = kth_neighbour_squared_radii(y, y_norms, k, block_size)
    return {"precision": share_inside_balls(y, y_norms, x, x_norms, real_radii, block_size),
            "recall": share_inside_balls(x, x_norms, y, y_norms, fake_radii, block_size)}


# -----------------------------------------------------------------------------
# Class consistency: does the backbone see class c in the images generated for class c?

def target_to_backbone_classes(target_names, backbone_names) -> np.ndarray | None:
    """Backbone class index of every target class, or None when some target class is unknown to it."""
    if target_names is None or backbone_names is None:
        return None
    index = {name: i for i, name in enumerate(backbone_names)}
    if not all(name in index for name in target_names):
        return None
    return np.array([index[name] for name in target_names], dtype=np.int64)


def class_consistency(probs: torch.Tensor, labels: torch.Tensor, class_map: np.ndarray) -> float:
    """Share of samples whose backbone prediction is the backbone class of the class they were made for."""
    expected = torch.as_tensor(class_map, device=labels.device)[labels.long()]
    return float((probs.argmax(dim=1) == expected.to(probs.device)).float().mean())


# -----------------------------------------------------------------------------
# What the project classifier may evaluate. Inception is a generic feature space, fit for any
# images; a classifier's features only describe the classes and the resolution it was trained on,
# so anything else would be measured silently wrong.

def listed(names: list[str], limit: int = 10) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_classifier_covers(net: nn.Module, target_names, data: str) -> None:
    """Refuse a classifier backbone that was not trained on every class of the evaluated data
    (`data` names it in the message)."""
    known = getattr(net, "class_names", None)
    if metric_space_of(net) != "classifier" or known is None or target_names is None:
        return
    known_set = set(known)
    missing = [str(name) for name in target_names if str(name) not in known_set]
    if missing:
        raise utils.UsageError(
            f"the classifier backbone was not trained on {len(missing)} class(es) of {data}: {listed(missing)} "
            f"(it knows {listed(list(known))}); train a classifier on these classes with `python "
            "train_classifier.py --train_folder DIR --test_folder DIR --resolution R --out PATH` and pass "
            "it with --inception_weights PATH")


def check_classifier_resolution(net: nn.Module, dataset: str, data_root: str | None = None) -> None:
    """Refuse, before any evaluation, a classifier backbone trained at another size than the dataset's
    (a table dataset, or a prepared folder under data_root)."""
    resolution = getattr(net, "resolution", None)
    if metric_space_of(net) != "classifier" or resolution is None:
        return
    try:
        spec = datasets.dataset_spec(reference_name(dataset), data_root)
    except (utils.UsageError, TypeError):  # a folder without dataset.json: its size is the caller's business
        return
    if spec.resolution != resolution:
        raise utils.UsageError(
            f"the classifier backbone was trained on {resolution} px images but {dataset} is {spec.resolution} px; "
            f"train one at {spec.resolution} px with `python train_classifier.py --train_folder DIR "
            f"--test_folder DIR --resolution {spec.resolution} --out PATH` and pass it with --inception_weights PATH")


# -----------------------------------------------------------------------------
# Gathering activations and the metrics entry point

def accumulate_inception_activations(sample: Callable, net: nn.Module, num_inception_images: int = 50000):
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


def reference_name(dataset: str) -> str:
    """The dataset's name for reference files: the hdf5 copy of a dataset shares them."""
    return dataset[:-len("_hdf5")] if dataset.endswith("_hdf5") else dataset


def moments_filename(dataset: str, metric_space: str = "inception") -> str:
    return f"{reference_name(dataset)}_{metric_space}_moments.npz"


def features_filename(dataset: str, metric_space: str = "inception") -> str:
    return f"{reference_name(dataset)}_{metric_space}_features.npz"


def missing_reference_error(path: str, what: str, dataset: str, metric_space: str) -> utils.UsageError:
    return utils.UsageError(
        f"the reference {what} {path} do not exist; compute them with `bash prepare_data.sh` or "
        f"`python calculate_inception_moments.py --dataset {dataset} --backbone {metric_space} --data_root DIR`, "
        "or pass their path")


def load_reference_moments(path: str, dataset: str, metric_space: str) -> dict[str, np.ndarray]:
    """The moments file's small arrays (class_sigma, possibly GBs, is read only when mFID asks for it)."""
    if not os.path.isfile(path):
        raise missing_reference_error(path, "moments", dataset, metric_space)
    try:
        with np.load(path, allow_pickle=False) as f:
            reference = {key: f[key] for key in f.files if key != "class_sigma"}
            reference["has_class_sigma"] = "class_sigma" in f.files
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise damaged_reference_error(path, err, dataset, metric_space) from None
    # files from BigGAN-PyTorch hold only mu and sigma, and those came from torchvision's Inception
    stored_space = str(reference.get("metric_space", "inception"))
    if stored_space != metric_space:
        raise utils.UsageError(f"{path} holds {stored_space} statistics, but the metric backbone is "
                               f"{metric_space}; recompute the moments with --backbone {metric_space} "
                               "or evaluate with the backbone they were made with")
    return reference


def load_reference_features(path: str, dataset: str, metric_space: str, device: torch.device,
                            metric: str = "KMMD") -> torch.Tensor:
    if not os.path.isfile(path):
        raise missing_reference_error(path, f"features (needed for {metric})", dataset, metric_space)
    try:
        with np.load(path, allow_pickle=False) as f:
            return torch.from_numpy(f["pool"]).to(device)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise damaged_reference_error(path, err, dataset, metric_space) from None


def damaged_reference_error(path: str, err: Exception, dataset: str, metric_space: str) -> utils.UsageError:
    return utils.UsageError(f"{path} is damaged ({type(err).__name__}: {str(err)[:100]}); delete it and recompute it "
                            f"with `python calculate_inception_moments.py --dataset {dataset} --backbone {metric_space}`")


class Metrics:
    """The metrics of samples against one reference: a dataset's statistics in one backbone's feature
    space. Built once (the backbone loaded; the reference files a metric needs checked now, so that a
    training run stops before its first iteration rather than at its first evaluation, and so is a
    classifier backbone that does not know every class of the reference, or its resolution); then
    metrics(sample, num_images) measures a sample function as often as asked.

    Always IS and class consistency (None when the backbone's classes are not the target classes);
    FID unless fid=False; KMMD, mFID, precision and recall (k = 3) when asked for. Reference files
    default to data_root/<dataset>_<metric space>_{moments,features}.npz."""

    def __init__(self, dataset: str, *, data_root: str = "data", backbone: str = "inception",
                 inception_weights: str | None = None, device: str | torch.device = "cpu", parallel: bool = False,
                 fid: bool = True, kmmd: bool = False, mfid: bool = False, precision_recall: bool = False,
                 moments_path: str | None = None, features_path: str | None = None, net: nn.Module | None = None):
        self.net = net if net is not None else load_inception_net(backbone, inception_weights, device, parallel)
        self.dataset, self.space = dataset, metric_space_of(self.net)
        self.kmmd, self.mfid, self.precision_recall = kmmd, mfid, precision_recall
        self.moments_path = moments_path or os.path.join(data_root, moments_filename(dataset, self.space))
        self.features_path = features_path or os.path.join(os.path.dirname(self.moments_path),
                                                           features_filename(dataset, self.space))
        self.reference = load_reference_moments(self.moments_path, dataset, self.space) if fid else None
        target_names = None if self.reference is None else self.reference.get("class_names")
        check_classifier_resolution(self.net, dataset, data_root)
        check_classifier_covers(self.net, target_names, f"{dataset} (reference {self.moments_path})")
        self.class_map = target_to_backbone_classes(target_names, getattr(self.net, "class_names", None))
        for asked, metric in ((kmmd, "KMMD"), (precision_recall, "precision and recall")):
            if asked and not os.path.isfile(self.features_path):
                raise missing_reference_error(self.features_path, f"features (needed for {metric})", dataset, self.space)
        if mfid and (self.reference is None or not self.reference["has_class_sigma"]):
            raise utils.UsageError(f"mFID needs per-class statistics, which {self.moments_path} does not hold "
                                   "(they are skipped when they would exceed 2 GB, or FID is off); evaluate without mFID")
        self._real_pool: torch.Tensor | None = None

    @classmethod
    def from_config(cls, config: dict, device, **reference) -> "Metrics":
        """The metrics a run's flags ask for (--backbone, --kmmd, --mfid, --precision_recall, --no_fid)."""
        return cls(config["dataset"], data_root=config["data_root"], backbone=config["backbone"],
                   inception_weights=config["inception_weights"] or None, device=device,
                   parallel=config["parallel"], fid=not config["no_fid"], kmmd=config["kmmd"], mfid=config["mfid"],
                   precision_recall=config.get("precision_recall", False), **reference)

    def real_pool(self, device: torch.device, metric: str) -> torch.Tensor:
        """The reference features (the real side of KMMD and of precision and recall), read once."""
        if self._real_pool is None:
            self._real_pool = load_reference_features(self.features_path, self.dataset, self.space, device, metric)
        return self._real_pool

    def mean_class_fid(self, pool: torch.Tensor, labels: torch.Tensor, use_torch: bool) -> float:
        with np.load(self.moments_path, allow_pickle=False) as f:
            class_sigma = f["class_sigma"]
        fids = per_class_fid(pool, labels, self.reference["class_mu"], class_sigma, self.reference["class_counts"],
                             use_torch)
        if not fids:
            raise utils.UsageError("mFID needs at least 2 samples of some class; evaluate on more images")
        return float(np.mean(list(fids.values())))

    def __call__(self, sample: Callable, num_images: int, num_splits: int = 10, prints: bool = False,
                 use_torch: bool = False) -> dict:
        """The metrics of num_images samples of sample() (images in [-1, 1], class labels)."""
        say = print if prints else (lambda *args: None)
        say("Gathering activations...")
        pool, probs, labels = accumulate_inception_activations(sample, self.net, num_images)
        is_mean, is_std = calculate_inception_score(probs.cpu().numpy(), num_splits)
        metrics = {"IS_mean": is_mean, "IS_std": is_std, "FID": float("nan"), "metric_space": self.space}
        if self.reference is not None:
            if self.reference["mu"].shape[0] != pool.shape[1]:
                raise utils.UsageError(f"{self.moments_path} has {self.reference['mu'].shape[0]}-d features but the "
                                       f"backbone gives {pool.shape[1]}-d; recompute the moments with this backbone")
            say("Calculating FID...")
            metrics["FID"] = fid_to_reference(pool, self.reference["mu"], self.reference["sigma"], use_torch)
        if self.mfid:
            metrics["mFID"] = self.mean_class_fid(pool, labels, use_torch)
        if self.kmmd:
            say("Calculating KMMD...")
            metrics["KMMD"] = calc_mmd(self.real_pool(pool.device, "KMMD"), pool)
        if self.precision_recall:
            say("Calculating precision and recall...")
            metrics.update(precision_recall(self.real_pool(pool.device, "precision and recall"), pool))
        metrics["class_acc"] = None if self.class_map is None else class_consistency(probs, labels, self.class_map)
        return metrics
