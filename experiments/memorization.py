"""How close a generator's samples come to its training images (memorization in the few-shot
regime).

For every sample of class c: the root-mean-square pixel distance (images in [0, 1]) to the nearest
training image of class c. A generator that copies its few training images gives distances near 0.
The yardstick is the same distance for fresh real images of the class, which the generator never
saw: a generator that learned the class without copying is as far from the training set as they
are, so the ratio samples / fresh real is about 1 without memorization and well below 1 with it.
"""
from __future__ import annotations

import torch


def nearest_distances(images: torch.Tensor, labels: torch.Tensor, train_images: torch.Tensor,
                      train_labels: torch.Tensor) -> torch.Tensor:
    """[N] RMS distance of each image to its nearest training image of the same class.

    images, train_images: [*, C, H, W] in [-1, 1]; distances are in units of [0, 1] pixels."""
    flat = images.float().flatten(1) / 2       # [-1, 1] -> unit range: distances of [0, 1] images
    train = train_images.float().flatten(1) / 2
    distances = torch.empty(images.shape[0])
    for c in labels.unique().tolist():
        mine, theirs = labels == c, train_labels == c
        if not theirs.any():
            raise ValueError(f"class {c} has samples but no training images to compare them with")
        nearest = torch.cdist(flat[mine], train[theirs]).min(dim=1).values
        distances[mine] = nearest / flat.shape[1] ** 0.5
    return distances


def memorization_metrics(samples: torch.Tensor, sample_labels: torch.Tensor, fresh: torch.Tensor,
                         fresh_labels: torch.Tensor, train_images: torch.Tensor,
                         train_labels: torch.Tensor) -> dict[str, float]:
    """NN_dist: mean nearest-training-image distance of the samples; NN_dist_real: the same for
    fresh real images; NN_ratio: their ratio (< 1: samples sit closer to the training images than
    real images of the class do)."""
    to_samples = nearest_distances(samples, sample_labels, train_images, train_labels).mean().item()
    to_fresh = nearest_distances(fresh, fresh_labels, train_images, train_labels).mean().item()
    return {"NN_dist": to_samples, "NN_dist_real": to_fresh, "NN_ratio": to_samples / to_fresh}


def images_of(data) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image of a dataset (in [-1, 1]) and its labels."""
    images, labels = zip(*(data[i] for i in range(len(data))))
    return torch.stack(images), torch.tensor(labels)


def measure(G, config: dict, fresh: torch.Tensor, fresh_labels: torch.Tensor, per_class: int = 100,
            seed: int = 0) -> dict[str, float]:
    """memorization_metrics of per_class samples of each class of G (in the sampling mode config
    asks for, z seeded), against config's training images and `fresh` real images of the classes."""
    import datasets
    import sampling
    device = next(G.parameters()).device
    labels = torch.arange(config["n_classes"], device=device).repeat_interleave(per_class)
    z = sampling.seeded_z(labels.shape[0], G.dim_z, seed, config["z_var"])
    with sampling.sampling_mode(G, config["G_eval_mode"]):
        samples = sampling.generate(G, z.to(device), G.class_input(labels), config["G_batch_size"])
    train_images, train_labels = images_of(datasets.load_dataset(config["dataset"],
                                                                 config["data_root"],
                                                                 resolution=config["resolution"]))
    return memorization_metrics(samples, labels.cpu(), fresh, fresh_labels, train_images,
                                train_labels)
