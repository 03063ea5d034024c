"""Shared test helpers: the reference fixtures (see tests/fixtures/README.md) and small configs."""
import json
import os
import sys

import pytest
import torch

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
