"""Reference statistics of a dataset in a metric backbone's feature space, for FID, mFID and KMMD.

Runs the backbone (inception_utils.load_inception_net) over every image of the reference dataset
once and writes, into the data root, under the name of the dataset that is trained:

    <dataset>_<metric_space>_moments.npz   mu [F], sigma [F, F]; per class: class_mu [C, F],
                                           class_counts [C] and, when it fits in 2 GB,
                                           class_sigma [C, F, F]; class_names, metric_space
    <dataset>_<metric_space>_features.npz  pool [N, F] float32, labels [N] (the real side of KMMD)

With the default backbone these are BigGAN-PyTorch's <dataset>_inception_moments.npz and
<dataset>_inception_features.npz. The data is read in order (no --shuffle) so that runs agree.

The reference dataset is --reference_dataset, else the "reference" that the dataset's dataset.json
names (prepare_dataset.py writes NAME_new_reference for NAME_new), else the dataset itself: FID
then compares samples with held-out images rather than with the few training shots. Its class
folders must be the dataset's (per-class statistics pair classes by label). With fewer reference
images than feature dimensions the covariance is singular (FID still computes, less reliably):
one warning line says so, and one more for the classes of mFID.

    python calculate_inception_moments.py --dataset Toy32 --base_dir base_dir
    # the statistics of fmnist_new, from fmnist_new_reference:
    python calculate_inception_moments.py --dataset fmnist_new --base_dir base_dir
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

import datasets
import flags
import inception_utils
import utils

MAX_CLASS_SIGMA_BYTES = 2 * 1024 ** 3  # 1000 classes x 2048^2 float32 would be 16 GB


def prepare_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(allow_abbrev=False, formatter_class=utils.HelpFormatter,
                                description="Calculate and store the reference statistics for "
                                            "IS/FID/mFID/KMMD.")
    add = p.add_argument
    add("--dataset", default="I128", type=datasets.dataset_name, metavar="DATASET",
        help="dataset name: one of " + ", ".join(datasets.DATASETS) + ", or any prepared folder "
             "under data_root (see datasets.py)")
    add("--resolution", type=int, default=0, choices=[0, *flags.RESOLUTIONS],
        help="image size, for a folder without dataset.json (0: the dataset's)")
    add("--reference_dataset", default="", metavar="NAME",
        help="the dataset whose images give the statistics, written under --dataset's file names "
             "(default: the 'reference' in the dataset's dataset.json, e.g. NAME_new_reference "
             "for NAME_new, else the dataset itself)")
    add("--base_dir", default=".", help="root holding data/ (official cGANTransfer layout)")
    add("--data_root", default="",
        help="where the data is and the statistics go (default: BASE_DIR/data)")
    add("--batch_size", type=utils.at_least(1), default=64, help="images per backbone batch")
    add("--num_workers", type=utils.at_least(0), default=datasets.default_num_workers(),
        help="data loader processes (default: one per core, 8 at most; 0: load in the main "
             "process)")
    add("--shuffle", action="store_true", help="read the data in a shuffled order")
    add("--seed", type=utils.at_least(0), default=0, help="seed of the shuffled order")
    add("--hdf5", action="store_true",
        help="read the reference dataset's HDF5 cache built by make_hdf5.py")
    add("--backbone", default="inception", choices=inception_utils.BACKBONES,
        help="feature space of the metrics (default: torchvision's Inception v3)")
    add("--inception_weights", default="",
        help="local weights of the backbone (default for Inception: the torch hub cache)")
    add("--device", type=utils.device_name, default="",
        help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    add("--parallel", action="store_true", help="DataParallel over the visible GPUs")
    return p


def compute_activations(loader, net: nn.Module, device: torch.device):
    """Pool features, softmax probabilities and labels of every image, gathered on the cpu."""
    pool, probs, labels = [], [], []
    with torch.no_grad():
        for x, y in tqdm(loader, desc="activations", file=sys.stdout):
            batch_pool, batch_logits = net(x.to(device))
            pool.append(batch_pool.float().cpu().numpy())
            probs.append(F.softmax(batch_logits, dim=1).float().cpu().numpy())
            labels.append(y.numpy())
    return np.concatenate(pool), np.concatenate(probs), np.concatenate(labels).astype(np.int64)


def class_statistics(pool: np.ndarray, labels: np.ndarray, num_classes: int):
    """Per-class means, covariances (None when they would not fit in MAX_CLASS_SIGMA_BYTES) and
    counts.

    A class with fewer than 2 images has no covariance: its entries stay NaN, and mFID skips it."""
    dim = pool.shape[1]
    counts = np.bincount(labels, minlength=num_classes)
    class_mu = np.full((num_classes, dim), np.nan)
    keep_sigma = num_classes * dim * dim * 4 < MAX_CLASS_SIGMA_BYTES
    if not keep_sigma:
        print(f"warning: per-class covariances ({num_classes} x {dim} x {dim}) would exceed 2 GB; "
              "skipping them, so mFID will not be available", file=sys.stderr)
    class_sigma = np.full((num_classes, dim, dim), np.nan, dtype=np.float32) if keep_sigma else None
    for c in range(num_classes):
        feats = pool[labels == c].astype(np.float64)
        if counts[c] >= 1:
            class_mu[c] = feats.mean(axis=0)
        if keep_sigma and counts[c] >= 2:
            class_sigma[c] = np.cov(feats, rowvar=False)
    return class_mu, class_sigma, counts


def reference_dataset(config: dict, data_root: str) -> str:
    """--reference_dataset, else the reference the dataset's dataset.json names, else the
    dataset."""
    return (config.get("reference_dataset")
            or datasets.reference_dataset_name(config["dataset"], data_root) or config["dataset"])


def check_same_classes(dataset: str, reference: str, reference_classes: list[str],
                       data_root: str) -> None:
    """Per-class statistics are stored by label, so the reference must have the dataset's
    classes."""
    folder = datasets.image_folder_path(dataset, data_root)
    if reference == dataset or not os.path.isdir(folder):
        return
    if any(entry.is_dir() and not entry.name.startswith(".") for entry in os.scandir(folder)):
        classes = datasets.find_classes(folder, dataset)
    else:  # only its dataset.json (e.g. a transfer's old classes, whose training images are unused)
        classes = (datasets.read_dataset_json(folder) or {}).get("folders", reference_classes)
    if classes != reference_classes:
        raise utils.UsageError(f"the reference {reference} has the classes "
                               f"{', '.join(reference_classes[:10])} but {dataset} has "
                               f"{', '.join(classes[:10])}; give a --reference_dataset with the "
                               "same class folders")


def warn_if_singular(pool: np.ndarray, class_counts: np.ndarray, class_names: list[str],
                     reference: str) -> None:
    """n images span at most n - 1 dimensions: with n <= F features the covariance is singular."""
    count, dim = pool.shape
    if count <= dim:
        print(f"warning: the reference {reference} has {count} images for {dim}-d features, so "
              f"its covariance is singular (rank <= {count - 1}) and FID against it is less "
              "reliable; hold out more images", file=sys.stderr)
    few = [(int(n), name) for n, name in zip(class_counts, class_names) if n <= dim]
    if few:
        n, name = min(few)
        print(f"warning: {len(few)} of {len(class_names)} classes of {reference} have at most "
              f"{dim} images for {dim}-d features (fewest: {name}, {n}), so their covariances are "
              "singular and mFID is less reliable", file=sys.stderr)


def run(config: dict, net: nn.Module | None = None) -> dict[str, str]:
    """Compute and write the statistics; `net` replaces the backbone named in config (for tests).

    Returns the paths written, by kind ('moments', 'features')."""
    data_root = config["data_root"] or os.path.join(config["base_dir"], "data")
    device = utils.pick_device(config["device"] or None)
    reference = reference_dataset(config, data_root)
    loader = datasets.get_data_loaders(reference, data_root, config["batch_size"],
                                       num_workers=config["num_workers"], shuffle=config["shuffle"],
                                       hdf5=config["hdf5"], drop_last=False, seed=config["seed"],
                                       resolution=config["resolution"])[0]
    if net is None:
        net = inception_utils.load_inception_net(config["backbone"],
                                                 config["inception_weights"] or None, device,
                                                 config["parallel"])
    space = inception_utils.metric_space_of(net)
    class_names = [str(name) for name in loader.dataset.classes]
    check_same_classes(config["dataset"], reference, class_names, data_root)
    path_of = datasets.hdf5_path if config["hdf5"] else datasets.image_folder_path
    where = path_of(reference, data_root)
    print(f"Statistics of {config['dataset']} from {len(loader.dataset)} images of {reference} "
          f"({len(class_names)} classes, {where})")
    # statistics no evaluation could use: a classifier's features of classes or sizes it never saw
    inception_utils.check_classifier_resolution(net, config["dataset"], data_root)
    inception_utils.check_classifier_covers(net, class_names, config["dataset"])

    pool, probs, labels = compute_activations(loader, net, device)
    if len(pool) >= 10:
        is_mean, is_std = inception_utils.calculate_inception_score(probs)
        print(f"The images of {reference} have an IS of {is_mean:.5f} +/- {is_std:.5f} "
              f"({space} space)")

    print("Calculating means and covariances...")
    class_mu, class_sigma, class_counts = class_statistics(pool, labels, len(class_names))
    warn_if_singular(pool, class_counts, class_names, reference)
    moments = {"mu": pool.mean(axis=0, dtype=np.float64), "sigma": np.cov(pool, rowvar=False),
               "class_mu": class_mu, "class_counts": class_counts,
               "class_names": np.array(class_names), "metric_space": np.array(space)}
    if class_sigma is not None:
        moments["class_sigma"] = class_sigma

    dataset = config["dataset"]
    paths = {"moments": os.path.join(data_root, inception_utils.moments_filename(dataset, space)),
             "features": os.path.join(data_root, inception_utils.features_filename(dataset, space))}
    utils.write_atomically(paths["moments"], lambda f: np.savez(f, **moments), binary=True)
    utils.write_atomically(paths["features"], lambda f: np.savez(f, pool=pool, labels=labels),
                           binary=True)
    for path in paths.values():
        print(f"Wrote {path}")
    return paths


def main() -> None:
    run(vars(prepare_parser().parse_args()))


if __name__ == "__main__":
    utils.run_main(main)
