"""An evaluation: the metrics of samples against one reference (a dataset's statistics in one
backbone's feature space), every metric computed from ONE pass of the samples through the
backbone (metrics/features.py).

REGISTRY maps a metric's name to its function: Evaluation (the features, the reference and the
settings of this evaluation) -> the values it adds to the results."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

import utils
from metrics import backbones, reference as ref
from metrics.classes import (check_classifier_covers, check_classifier_resolution,
                             class_consistency, target_to_backbone_classes)
from metrics.features import Features, feature_pass
from metrics.fid import fid_to_reference, per_class_fid
from metrics.inception_score import calculate_inception_score
from metrics.kmmd import RealSide, mmd_to, real_side
from metrics.precision_recall import RealBalls, precision_recall_to, real_balls


@dataclass
class Reference:
    """What samples are measured against. The real features are read when a metric first asks for
    them, and what KMMD and precision/recall compute of them alone (their real side: half or more
    of their work at 1,000 samples against 3,000 reference images) once; the per-class
    covariances (possibly GBs) at each mFID."""
    dataset: str
    space: str
    moments_path: str
    features_path: str
    moments: dict | None  # load_reference_moments' arrays; None when FID is off
    class_map: np.ndarray | None  # backbone class of each target class, None when unknown
    _real_pool: torch.Tensor | None = None
    _kmmd_real: RealSide | None = None
    _real_balls: RealBalls | None = None

    def real_pool(self, device: torch.device, metric: str) -> torch.Tensor:
        """The reference features (the real side of KMMD and of precision and recall), read once."""
        if self._real_pool is None:
            self._real_pool = ref.load_reference_features(self.features_path, self.dataset,
                                                          self.space, device, metric)
        return self._real_pool

    def kmmd_real(self, device: torch.device) -> RealSide:
        if self._kmmd_real is None:
            self._kmmd_real = real_side(self.real_pool(device, "KMMD"))
        return self._kmmd_real

    def real_balls(self, device: torch.device) -> RealBalls:
        if self._real_balls is None:
            self._real_balls = real_balls(self.real_pool(device, "precision and recall"))
        return self._real_balls


@dataclass(frozen=True)
class Evaluation:
    features: Features
    reference: Reference
    num_splits: int
    use_torch: bool  # Fréchet distances by Newton-Schulz on the features' device, not scipy


def inception_score(e: Evaluation) -> dict:
    is_mean, is_std = calculate_inception_score(e.features.probs.cpu().numpy(), e.num_splits)
    return {"IS_mean": is_mean, "IS_std": is_std}


def fid(e: Evaluation) -> dict:
    moments, pool = e.reference.moments, e.features.pool
    if moments["mu"].shape[0] != pool.shape[1]:
        raise utils.UsageError(f"{e.reference.moments_path} has {moments['mu'].shape[0]}-d "
                               f"features but the backbone gives {pool.shape[1]}-d; recompute "
                               "the moments with this backbone")
    return {"FID": fid_to_reference(pool, moments["mu"], moments["sigma"], e.use_torch)}


def mean_class_fid(e: Evaluation) -> dict:
    moments = e.reference.moments
    fids = per_class_fid(e.features.pool, e.features.labels, moments["class_mu"],
                         ref.load_class_sigma(e.reference.moments_path), moments["class_counts"],
                         e.use_torch)
    if not fids:
        raise utils.UsageError("mFID needs at least 2 samples of some class; evaluate on more "
                               "images")
    return {"mFID": float(np.mean(list(fids.values())))}


def kmmd(e: Evaluation) -> dict:
    pool = e.features.pool
    return {"KMMD": mmd_to(e.reference.kmmd_real(pool.device), pool)}


def precision_and_recall(e: Evaluation) -> dict:
    pool = e.features.pool
    return precision_recall_to(e.reference.real_balls(pool.device), pool)


def class_accuracy(e: Evaluation) -> dict:
    class_map = e.reference.class_map
    return {"class_acc": None if class_map is None
            else class_consistency(e.features.probs, e.features.labels, class_map)}


REGISTRY: dict[str, Callable[[Evaluation], dict]] = {
    "IS": inception_score, "FID": fid, "mFID": mean_class_fid, "KMMD": kmmd,
    "precision_recall": precision_and_recall, "class_acc": class_accuracy}
ANNOUNCED = {"FID": "FID", "KMMD": "KMMD", "precision_recall": "precision and recall"}


class Metrics:
    """The metrics of samples against one reference. Built once (the backbone loaded; the
    reference files a metric needs checked now, so that a training run stops before its first
    iteration rather than at its first evaluation, and so is a classifier backbone that does not
    know every class of the reference, or its resolution); then metrics(sample, num_images)
    measures a sample function as often as asked.

    Always IS and class consistency (None when the backbone's classes are not the target
    classes); FID unless fid=False; KMMD, mFID, precision and recall (k = 3) when asked for.
    Reference files default to data_root/<dataset>_<metric space>_{moments,features}.npz."""

    def __init__(self, dataset: str, *, data_root: str = "data", backbone: str = "inception",
                 inception_weights: str | None = None, device: str | torch.device = "cpu",
                 parallel: bool = False, fid: bool = True, kmmd: bool = False, mfid: bool = False,
                 precision_recall: bool = False, moments_path: str | None = None,
                 features_path: str | None = None, net: nn.Module | None = None):
        self.net = net if net is not None else backbones.load_inception_net(
            backbone, inception_weights, device, parallel)
        self.space = backbones.metric_space_of(self.net)
        asked = {"IS": True, "FID": fid, "mFID": mfid, "KMMD": kmmd,
                 "precision_recall": precision_recall, "class_acc": True}
        self.names = [name for name in REGISTRY if asked[name]]
        moments_path = moments_path or os.path.join(data_root,
                                                    ref.moments_filename(dataset, self.space))
        features_path = features_path or os.path.join(
            os.path.dirname(moments_path), ref.features_filename(dataset, self.space))
        moments = ref.load_reference_moments(moments_path, dataset, self.space) if fid else None
        target_names = None if moments is None else moments.get("class_names")
        check_classifier_resolution(self.net, dataset, data_root)
        check_classifier_covers(self.net, target_names, f"{dataset} (reference {moments_path})")
        class_map = target_to_backbone_classes(target_names, getattr(self.net, "class_names", None))
        self.reference = Reference(dataset, self.space, moments_path, features_path, moments,
                                   class_map)
        self.check_reference()

    def check_reference(self) -> None:
        """The files the asked metrics read, there now (the moments were read already)."""
        r = self.reference
        for name in ("KMMD", "precision_recall"):
            if name in self.names and not os.path.isfile(r.features_path):
                raise ref.missing_reference_error(r.features_path, "features (needed for "
                                                  f"{ANNOUNCED[name]})", r.dataset, r.space)
        if "mFID" in self.names and (r.moments is None or not r.moments["has_class_sigma"]):
            raise utils.UsageError(f"mFID needs per-class statistics, which {r.moments_path} does "
                                   "not hold (they are skipped when they would exceed 2 GB, or FID "
                                   "is off); evaluate without mFID")

    @classmethod
    def from_config(cls, config: dict, device, **reference) -> "Metrics":
        """The metrics a run's flags ask for (--backbone, --kmmd, --mfid, --precision_recall,
        --no_fid)."""
        return cls(config["dataset"], data_root=config["data_root"], backbone=config["backbone"],
                   inception_weights=config["inception_weights"] or None, device=device,
                   parallel=config["parallel"], fid=not config["no_fid"], kmmd=config["kmmd"],
                   mfid=config["mfid"], precision_recall=config.get("precision_recall", False),
                   **reference)

    def __call__(self, sample: Callable, num_images: int, num_splits: int = 10,
                 prints: bool = False, use_torch: bool = False) -> dict:
        """The metrics of num_images samples of sample() (images in [-1, 1], class labels)."""
        say = print if prints else (lambda *args: None)
        say("Gathering activations...")
        evaluation = Evaluation(feature_pass(sample, self.net, num_images), self.reference,
                                num_splits, use_torch)
        results = {"IS_mean": None, "IS_std": None, "FID": float("nan"),
                   "metric_space": self.space}
        for name in self.names:
            if name in ANNOUNCED:
                say(f"Calculating {ANNOUNCED[name]}...")
            results.update(REGISTRY[name](evaluation))
        return results
