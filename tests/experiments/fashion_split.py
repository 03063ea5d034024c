"""A study of another Fashion-MNIST split (`--new Shirt,Sneaker,Bag`), built once a session for the
tests of every tool that reads a study folder (`from fashion_split import split_study`): on fake
raw data (no /usr/share/datasets needed), its source pretrained for 2 iterations, one BN run of 1
iteration."""
import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

SPLIT_NEW = ("Shirt", "Sneaker", "Bag")


def write_fashion_like_idx(folder: Path, train_per_class: int = 12,
                           test_per_class: int = 16) -> None:
    """Ten classes of 28 px noise with a class-placed square, as Fashion-MNIST's four IDX files."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    for prefix, per_class in (("train", train_per_class), ("t10k", test_per_class)):
        labels = np.arange(per_class * 10) % 10
        images = rng.integers(0, 40, size=(len(labels), 28, 28))
        for i, label in enumerate(labels):
            images[i, 2 * label:2 * label + 8, 4:12] = 220
        for kind, array, magic in (("images-idx3", images, 0x00000803),
                                   ("labels-idx1", labels, 0x00000801)):
            sizes = b"".join(size.to_bytes(4, "big") for size in array.shape)
            header = magic.to_bytes(4, "big") + sizes
            with gzip.open(folder / f"{prefix}-{kind}-ubyte.gz", "wb") as f:
                f.write(header + array.astype(np.uint8).tobytes())


@dataclass
class SplitStudy:
    out: Path      # the study's --out
    raw: Path      # the fake raw data (FASHION_MNIST_DIR)
    results: dict  # what study.main returned


_BUILT: list[SplitStudy] = []  # the session's one split study, for every module importing it


@pytest.fixture(scope="session")
def split_study(tmp_path_factory) -> SplitStudy:
    if not _BUILT:
        _BUILT.append(build_split_study(tmp_path_factory))
    return _BUILT[0]


def build_split_study(tmp_path_factory) -> SplitStudy:
    """The split's assets (the shipped classifier serves it: no classifier training; a source of 2
    iterations evaluated once on 50 images, the reference statistics) and 1 BN run at 1 shot."""
    from experiments import study
    from worlds import fashion
    folder = tmp_path_factory.mktemp("split_study")
    write_fashion_like_idx(folder / "raw")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FASHION_MNIST_DIR", str(folder / "raw"))
        patch.setattr(fashion, "SOURCE_TRAINING", tuple(  # a smaller pretraining batch
            "8" if flag == "32" else flag for flag in fashion.SOURCE_TRAINING))
        patch.setattr(fashion, "SOURCE_EVALUATION_IMAGES", 50)  # its one evaluation, at the end
        for name, value in (("IW_IMAGES", 25), ("IW_STEPS", 5), ("MEMORIZATION_SAMPLES", 10)):
            patch.setattr(study, name, value)
        results = study.main(["--new", ",".join(SPLIT_NEW), "--out", str(folder / "out"),
                              "--source_iters", "2", "--iters", "1", "--shots", "1", "--seeds", "0",
                              "--methods", "BN", "--test_every", "1",
                              "--num_inception_images", "50"])
    return SplitStudy(folder / "out", folder / "raw", results)
