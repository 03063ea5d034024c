"""Shared test helpers: the reference fixtures (see tests/fixtures/README.md) and small configs."""
import json
import os
import sys

import pytest
import torch
import torch.nn as nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
FIXTURES = os.path.join(ROOT, "tests", "fixtures")

# Settings common to every reference fixture, besides the config stored in its keys.json.
FIXTURE_COMMON = dict(num_G_SVs=1, num_D_SVs=1, num_G_SV_itrs=1, num_D_SV_itrs=1, D_wide=True,
                      bottom_width=4, G_nl="relu", D_nl="relu")
# The official code that wrote each transfer fixture: ImageNet variant for i128, cifar/ for c32.
KP_VARIANT = {"i128_small": "imagenet", "c32_small": "cifar", "I128": "imagenet", "C100": "cifar"}


def fixture_path(*parts: str) -> str:
    return os.path.join(FIXTURES, *parts)


def load_fixture(*parts: str):
    return torch.load(fixture_path(*parts), weights_only=True)


def fixture_config(*parts: str) -> dict:
    with open(fixture_path(*parts)) as f:
        return {**json.load(f)["config"], **FIXTURE_COMMON}


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


class TinyBackbone(nn.Module):
    """A fixed random conv net standing in for Inception: images in [-1, 1] -> (8-d features, logits)."""

    metric_space = "tiny"

    def __init__(self, class_names=("a", "b", "c")):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.conv = nn.Conv2d(3, 8, 3, stride=2)
            self.head = nn.Linear(8, len(class_names))
        self.class_names = list(class_names)

    def forward(self, x):
        pool = torch.relu(self.conv(x)).mean(dim=(2, 3))
        return pool, self.head(pool)
