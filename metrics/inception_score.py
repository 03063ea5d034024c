"""The Inception Score: exp(E_x KL(p(y|x) || p(y))), mean and std over splits of the samples."""
from __future__ import annotations

import numpy as np
from scipy.special import rel_entr

import utils


def calculate_inception_score(pred, num_splits: int = 10) -> tuple[float, float]:
    """Mean and std over splits of exp(E_x KL(p(y|x) || p(y))); `pred` are softmax probabilities
    [N, C]."""
    pred = np.asarray(pred, dtype=np.float64)
    split = pred.shape[0] // num_splits
    if split == 0:
        raise utils.UsageError(f"the Inception Score needs at least num_splits={num_splits} "
                               f"samples, got {pred.shape[0]}; evaluate on more images")
    scores = []
    for k in range(num_splits):
        part = pred[k * split:(k + 1) * split]
        marginal = part.mean(axis=0, keepdims=True)
        # rel_entr takes 0 * log 0 as 0, so confident one-hot predictions give finite scores
        scores.append(np.exp(rel_entr(part, marginal).sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))
