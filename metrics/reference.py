"""The reference statistics on disk, as calculate_inception_moments.py writes them:

    <data_root>/<dataset>_<metric_space>_moments.npz   mu, sigma (+ per-class stats, class names)
    <data_root>/<dataset>_<metric_space>_features.npz  pool features and labels, for KMMD and
                                                       precision and recall

and the one-line errors that say how to make them."""
from __future__ import annotations

import os
import zipfile

import numpy as np
import torch

import utils


def reference_name(dataset: str) -> str:
    """The dataset's name for reference files: the hdf5 copy of a dataset shares them."""
    return dataset[:-len("_hdf5")] if dataset.endswith("_hdf5") else dataset


def moments_filename(dataset: str, metric_space: str = "inception") -> str:
    return f"{reference_name(dataset)}_{metric_space}_moments.npz"


def features_filename(dataset: str, metric_space: str = "inception") -> str:
    return f"{reference_name(dataset)}_{metric_space}_features.npz"


def missing_reference_error(path: str, what: str, dataset: str,
                            metric_space: str) -> utils.UsageError:
    return utils.UsageError(
        f"the reference {what} {path} do not exist; compute them with `bash prepare_data.sh` or "
        f"`python calculate_inception_moments.py --dataset {dataset} --backbone {metric_space} "
        "--data_root DIR`, or pass their path")


def damaged_reference_error(path: str, err: Exception, dataset: str,
                            metric_space: str) -> utils.UsageError:
    return utils.UsageError(
        f"{path} is damaged ({type(err).__name__}: {str(err)[:100]}); delete it and recompute it "
        "with `python calculate_inception_moments.py --dataset "
        f"{dataset} --backbone {metric_space}`")


def load_reference_moments(path: str, dataset: str, metric_space: str) -> dict[str, np.ndarray]:
    """The moments file's small arrays (class_sigma, possibly GBs, is read only when mFID asks
    for it: load_class_sigma)."""
    if not os.path.isfile(path):
        raise missing_reference_error(path, "moments", dataset, metric_space)
    try:
        with np.load(path, allow_pickle=False) as f:
            reference = {key: f[key] for key in f.files if key != "class_sigma"}
            reference["has_class_sigma"] = "class_sigma" in f.files
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise damaged_reference_error(path, err, dataset, metric_space) from None
    # files from BigGAN-PyTorch hold only mu and sigma, and those came from torchvision's Inception
    stored_space = str(reference.get("metric_space", "inception"))
    if stored_space != metric_space:
        raise utils.UsageError(f"{path} holds {stored_space} statistics, but the metric backbone "
                               f"is {metric_space}; recompute the moments with --backbone "
                               f"{metric_space} or evaluate with the backbone they were made with")
    return reference


def load_class_sigma(path: str) -> np.ndarray:
    with np.load(path, allow_pickle=False) as f:
        return f["class_sigma"]


def load_reference_features(path: str, dataset: str, metric_space: str, device: torch.device,
                            metric: str = "KMMD") -> torch.Tensor:
    if not os.path.isfile(path):
        raise missing_reference_error(path, f"features (needed for {metric})", dataset,
                                      metric_space)
    try:
        with np.load(path, allow_pickle=False) as f:
            return torch.from_numpy(f["pool"]).to(device)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise damaged_reference_error(path, err, dataset, metric_space) from None
