"""The README's "Your own dataset" commands, run as written on a tiny IDX dataset (with a few
iterations): from IDX files to old/new class folders, a metric classifier, reference statistics, a
source model, stage BN, stage FT from BN's best checkpoint, sampling with metrics, and explain.py.

Cost: nine command lines, each forked from one server that imported torch once
(conftest.CommandLines; ~4 s of imports each in a process of its own); each train.py command
trains 2 iterations with one evaluation, the fewest that leave a best checkpoint for FT to start
from; the IW critic of `sample.py --iw` trains 60 steps instead of its fixed 600 (~10 s on one
thread; iw_critic.STEPS set in the child): the route is the same, and the critic is tested apart."""
import gzip
import json
import os
import re
import shlex

import numpy as np
import pytest

from conftest import ROOT

CLASSES = ["a", "b", "c", "d", "e"]
TRAIN_PER_CLASS, TEST_PER_CLASS = 16, 24
# Appended to each command (later flags win): a few iterations and images instead of thousands.
FEWER = {"train_classifier.py": ["--epochs", "1", "--batch_size", "16"],
         "calculate_inception_moments.py": ["--num_workers", "0"],
         "train.py": ["--num_iters", "2", "--test_every", "2", "--save_every", "2",
                      "--num_inception_images", "40", "--num_workers", "0"],
         "sample.py": ["--num_inception_images", "40"]}
IW_STEPS = 60  # of the IW critic (iw_critic.STEPS: 600)


def write_idx(folder) -> None:
    """IDX files (the format's definition: big-endian magic, sizes, unsigned bytes) of 10 x 10
    images, each class a bright square in its own place on noise."""
    rng = np.random.default_rng(0)
    for prefix, per_class in (("train", TRAIN_PER_CLASS), ("t10k", TEST_PER_CLASS)):
        labels = np.arange(per_class * len(CLASSES)) % len(CLASSES)
        images = rng.integers(0, 60, size=(len(labels), 10, 10))
        for i, label in enumerate(labels):
            images[i, label:label + 4, 2 * label % 6:2 * label % 6 + 4] = 230
        for kind, array, magic in (("images-idx3", images, 0x00000803),
                                   ("labels-idx1", labels, 0x00000801)):
            header = magic.to_bytes(4, "big") + b"".join(size.to_bytes(4, "big")
                                                         for size in array.shape)
            with gzip.open(os.path.join(folder, f"{prefix}-{kind}-ubyte.gz"), "wb") as f:
                f.write(header + array.astype(np.uint8).tobytes())


def readme_commands() -> list[list[str]]:
    """The commands of the README's "Your own dataset" section, as they are written there."""
    text = open(os.path.join(ROOT, "README.md")).read()
    section = text[text.index("## Your own dataset"):]
    section = section[:section.index("\n## ", 4)]
    return [shlex.split(line.strip()) for line in section.splitlines()
            if line.startswith("    python ")]


@pytest.mark.slow
def test_the_readme_route_from_a_dataset_to_BN_FT_sampling_and_explanation(tmp_path, command_lines):
    idx, base = tmp_path / "idx", tmp_path / "base_dir"
    idx.mkdir()
    write_idx(idx)
    commands = readme_commands()
    assert [c[1] for c in commands] == ["prepare_dataset.py", "train_classifier.py",
                                        "calculate_inception_moments.py",
                                        "calculate_inception_moments.py", "train.py", "train.py",
                                        "train.py", "sample.py", "explain.py"]
    outputs = []
    for command in commands:
        argv = [re.sub(r"^base_dir", str(base), arg) for arg in command[2:]]
        argv = [str(idx) if arg == "DIR" else arg for arg in argv]
        if command[1] == "prepare_dataset.py":
            argv += ["--base_dir", str(base)]  # the default base_dir is relative to where it runs
        result = command_lines.run([command[1], *argv, *FEWER.get(command[1], [])], timeout=600,
                                   patches=[("iw_critic", "STEPS", IW_STEPS)])
        assert result.returncode == 0, (command[1], result.stderr[-3000:])
        outputs.append(result.stdout)
    ft = json.loads((base / "weights" / "mydata_FT" / "config.json").read_text())
    assert ft["start_from"].startswith("mydata_BN")
    assert ft["G_ch"] == 16 and ft["n_pretrain_classes"] == 3
    assert ft["backbone"] == "classifier" and ft["old_class_names"] == ["a", "b", "c"]
    metrics = json.loads(next((base / "samples" / "mydata_FT").glob("*/metrics.json")).read_text())
    for key in ("FID", "precision", "recall", "IW", "class_acc"):
        assert isinstance(metrics[key], float), key
    explanation = outputs[-1]
    for new in ("d (new class", "e (new class"):
        block = explanation[explanation.index(new):].split("\n\n")[0]
        assert re.search(r"1\.\s+[abc]\s", block), block
