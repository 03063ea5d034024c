"""metrics/inception_score.py, as a specification: uniform predictions score 1, confident
balanced ones over k classes score k, and too few samples per split is one clear error."""
import numpy as np
import pytest

import utils
from metrics import inception_score


def test_uniform_predictions_score_1():
    pred = np.full((1000, 7), 1 / 7)
    mean, std = inception_score.calculate_inception_score(pred)
    assert mean == pytest.approx(1.0) and std == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("k", [2, 5, 10])
def test_confident_balanced_predictions_over_k_classes_score_k(k):
    pred = np.eye(k)[np.arange(1000) % k]  # every split of 100 holds each class equally often
    mean, _ = inception_score.calculate_inception_score(pred, num_splits=10)
    assert mean == pytest.approx(k)


def test_inception_score_needs_a_sample_per_split():
    with pytest.raises(utils.UsageError, match="num_splits"):
        inception_score.calculate_inception_score(np.full((5, 3), 1 / 3), num_splits=10)
