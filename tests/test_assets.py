"""assets/: what the project ships works on any machine. No file names a path of the machine that
built it (/work/..., /home/..., C:\\...): the source's config.json named its classifier at
/work/wt-arch/assets/fashion_classifier.pth, which every other machine followed and did not find.
Text files are read whole; of torch checkpoints, every string they record."""
import os
import re

import pytest
import torch

from conftest import ROOT

ASSETS = os.path.join(ROOT, "assets")
TEXT_EXTENSIONS = (".json", ".md", ".txt", ".csv", ".yaml", ".yml", ".toml", ".cfg", ".ini", ".sh",
                   ".py")
# An absolute path: '/' and a path segment (after a quote, a space, '=', '(' or a line start, so
# 'T-shirt/top', 'it/s' and URLs are not paths), a home folder (~/), or a drive (C:\ or C:/).
TAIL = r"""[^\s"',)]*"""
START = r"""(?:^|(?<=[\s"'=(]))"""
ABSOLUTE_PATH = re.compile(rf"{START}(?:/[\w.@+-]+{TAIL}|~/{TAIL}|[A-Za-z]:[\\/]{TAIL})",
                           re.MULTILINE)


def asset_files(*extensions):
    for folder, _, names in os.walk(ASSETS):
        for name in sorted(names):
            if name.lower().endswith(extensions):
                yield os.path.join(folder, name)


def strings_in(obj):
    """Every string a checkpoint records (its tensors aside), with dict keys."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from strings_in(key)
            yield from strings_in(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from strings_in(value)


@pytest.mark.parametrize("text,paths", [
    ('"inception_weights": "/work/wt-arch/assets/c.pth"', ["/work/wt-arch/assets/c.pth"]),
    ('trained on /home/me/data (10 images)', ["/home/me/data"]),
    ('"root": "C:\\\\data\\\\x"', ["C:\\\\data\\\\x"]), ("~/datasets/x", ["~/datasets/x"]),
    ('"class_names": ["T-shirt/top"], "url": "https://github.com/a/b", "speed": "3 it/s"', []),
    ('"inception_weights": "../fashion_classifier.pth", "ratio": "1/2"', []),
    ('"inception_weights": "/c.pth"', ["/c.pth"]),
])
def test_the_scanner_finds_absolute_paths_and_only_those(text, paths):
    assert ABSOLUTE_PATH.findall(text) == paths


def test_no_shipped_text_file_names_an_absolute_path():
    found = [f"{os.path.relpath(path, ROOT)}: {match}" for path in asset_files(*TEXT_EXTENSIONS)
             for match in ABSOLUTE_PATH.findall(open(path, encoding="utf-8").read())]
    assert list(asset_files(".json")), "assets/ holds no JSON file: the scan looks elsewhere"
    assert not found, "absolute paths in assets/ (make them relative to the asset):\n" + \
        "\n".join(found)


def test_no_shipped_checkpoint_records_an_absolute_path():
    found = [f"{os.path.relpath(path, ROOT)}: {match}" for path in asset_files(".pth")
             for text in strings_in(torch.load(path, map_location="cpu", weights_only=True))
             for match in ABSOLUTE_PATH.findall(text)]
    assert not found, "absolute paths in assets/ checkpoints:\n" + "\n".join(found)
