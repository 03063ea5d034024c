"""metrics/features.py, as a specification: the feature pass returns exactly the number of
samples asked for, with probabilities and the labels the samples were made for."""
import torch

from conftest import TinyBackbone
from metrics import features


def batches_of(images, labels, batch_size):
    """A sample() that walks (images, labels) in order, batch by batch, round and round."""
    state = {"start": 0}

    def sample():
        start = state["start"]
        state["start"] = (start + batch_size) % len(images)
        return images[start:start + batch_size], labels[start:start + batch_size]

    return sample


def test_accumulate_returns_exactly_the_number_asked_for():
    images, labels = torch.rand(50, 3, 8, 8) * 2 - 1, torch.arange(50) % 3
    pool, probs, got_labels = features.accumulate_inception_activations(
        batches_of(images, labels, 16), TinyBackbone(), 40)
    assert pool.shape == (40, 8) and probs.shape == (40, 3)
    assert got_labels.tolist() == labels[:40].tolist()
    torch.testing.assert_close(probs.sum(1), torch.ones(40))
