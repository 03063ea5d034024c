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


class _FailingFile:
    """A file open for writing whose writes fail with an OSError once more than `after` bytes went in:
    what a full disk (ENOSPC) or a file system remounted read-only (EROFS) does to a writer."""

    def __init__(self, f, code: int, after: int):
        self.f, self.code, self.after, self.written = f, code, after, 0

    def write(self, data):
        self.written += len(data)
        if self.written > self.after:
            raise OSError(self.code, os.strerror(self.code))
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def inject_write_failure(monkeypatch, module, code: int, when=lambda path: True, after_bytes: int = 0) -> None:
    """Files that `module` opens for writing (the builtin open, looked up in the module first) fail
    with errno `code` after `after_bytes` bytes when when(path) holds; no tmpfs or privileges needed."""
    import builtins

    def fake_open(path, mode="r", *args, **kwargs):
        f = builtins.open(path, mode, *args, **kwargs)
        writing = any(flag in mode for flag in "wax+")
        return _FailingFile(f, code, after_bytes) if writing and when(str(path)) else f
    monkeypatch.setattr(module, "open", fake_open, raising=False)
