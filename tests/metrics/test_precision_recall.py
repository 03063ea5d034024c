"""metrics/precision_recall.py, as a specification: the blockwise metric equals the brute-force
definition (Kynkäänniemi et al. 2019), on random sets and on hand-placed points."""
import numpy as np
import pytest
import torch

import utils
from metrics import precision_recall as pr


def brute_force_precision_recall(real, fake, k):
    """Kynkäänniemi et al.'s definition on full float64 distance matrices: a point's radius is the
    distance to its k-th nearest other point of its own set; a point counts when it lies within the
    radius of some point of the other set."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    dist = lambda a, b: np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    def radii(x):
        d = dist(x, x)
        np.fill_diagonal(d, np.inf)
        return np.sort(d, axis=1)[:, k - 1]

    precision = (dist(fake, real) <= radii(real)[None, :]).any(axis=1).mean()
    recall = (dist(real, fake) <= radii(fake)[None, :]).any(axis=1).mean()
    return precision, recall


def test_blockwise_precision_recall_equals_the_brute_force_definition():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(45, 6))
    fake = 1.2 * rng.normal(size=(38, 6)) + 1.0  # overlapping, neither inside the other
    expected = brute_force_precision_recall(real, fake, k=3)
    assert 0.1 < expected[0] < 0.9 and 0.1 < expected[1] < 0.9  # a case where counting matters
    # block_size 7 divides neither set: ragged blocks, and the k nearest carried across blocks
    got = pr.precision_recall(real, fake, k=3, block_size=7)
    assert (got["precision"], got["recall"]) == pytest.approx(expected, abs=1e-12)


def test_precision_recall_of_hand_placed_points_on_a_line():
    # k = 1. Real radii: 0,1,2,3 -> 1 and 10 -> 7. Fake radii: all 1 (0.5-1.5 and 40-41 pairs).
    # Fakes 0.5 and 1.5 lie within 1 of a real point; 40 and 41 are 30 from 10 (radius 7):
    # precision 2/4.
    # Reals 0, 1, 2 lie within 1 of 0.5 or 1.5; 3 is 1.5 from 1.5; 10 is far from all: recall 3/5.
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0], [10.0]])
    fake = torch.tensor([[0.5], [1.5], [40.0], [41.0]])
    assert pr.precision_recall(real, fake, k=1) == pytest.approx({"precision": 0.5, "recall": 0.6})


def test_a_point_on_the_boundary_of_a_ball_is_inside_it():
    # k = 1: both real radii are 2 and the fake 4 lies exactly 2 from the real 2; the fake 5
    # does not
    real, fake = torch.tensor([[0.0], [2.0]]), torch.tensor([[4.0], [5.0]])
    assert pr.precision_recall(real, fake, k=1) == {"precision": 0.5, "recall": 0.0}


def test_a_set_against_itself_has_precision_and_recall_1():
    real = torch.randn(300, 16)
    same = pr.precision_recall(real, real.clone(), block_size=64)
    assert same == {"precision": 1.0, "recall": 1.0}


def test_a_collapsed_fake_set_is_precise_but_recalls_almost_nothing():
    real = torch.randn(200, 8, generator=torch.Generator().manual_seed(1))
    fake = real[0] + 1e-3 * torch.randn(50, 8)  # every sample in a tiny ball around one real point
    result = pr.precision_recall(real, fake)
    # each fake is ~0.003 from real[0], whose ball reaches its 3rd neighbour (~1 away): all precise.
    # The fake balls are ~0.003 wide, so they hold at most real[0] itself: recall <= 1/200.
    assert result["precision"] == 1.0 and result["recall"] <= 1 / 200


def test_fakes_far_from_every_real_feature_have_precision_and_recall_0():
    real = torch.randn(100, 4)
    assert pr.precision_recall(real, real + 100.0) == {"precision": 0.0, "recall": 0.0}


def test_precision_recall_needs_more_features_than_k():
    with pytest.raises(utils.UsageError, match=r"k=3 needs more than 3 real features .* got 3"):
        pr.precision_recall(torch.randn(3, 2), torch.randn(10, 2), k=3)
    with pytest.raises(utils.UsageError, match=r"k=5 needs more than 5 fake features"):
        pr.precision_recall(torch.randn(10, 2), torch.randn(4, 2), k=5)
