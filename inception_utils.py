"""Metrics for GAN evaluation: IS, FID, per-class FID (mFID), KMMD, precision and recall, class
consistency, in the feature space of a pluggable backbone (Inception v3, its TF port, or the
project's classifier).

BigGAN-PyTorch's module name, kept as the entry its users and this project's scripts call; the
metrics live in the package metrics/ (one job per module, listed in metrics/__init__.py). This
module only names what they call:

    Metrics                        an evaluation: every asked metric from one feature pass
    load_inception_net             a metric backbone, with its metric_space
    calculate_inception_score, torch_cov, sqrt_newton_schulz, numpy_calculate_frechet_distance,
    torch_calculate_frechet_distance, accumulate_inception_activations   (BigGAN-PyTorch's names)
    calc_mmd, precision_recall, class_consistency, target_to_backbone_classes
    moments_filename, features_filename   the reference statistics' file names
    check_classifier_covers, check_classifier_resolution   what a classifier backbone may evaluate
"""
from metrics.backbones import BACKBONES, load_inception_net, metric_space_of
from metrics.classes import (check_classifier_covers, check_classifier_resolution,
                             class_consistency, target_to_backbone_classes)
from metrics.evaluation import REGISTRY, Metrics
from metrics.features import accumulate_inception_activations
from metrics.fid import (numpy_calculate_frechet_distance, sqrt_newton_schulz,
                         torch_calculate_frechet_distance, torch_cov)
from metrics.inception_score import calculate_inception_score
from metrics.kmmd import KMMD_BLOCK_SIZE, calc_mmd
from metrics.precision_recall import precision_recall
from metrics.reference import features_filename, moments_filename

__all__ = ["BACKBONES", "KMMD_BLOCK_SIZE", "REGISTRY", "Metrics",
           "accumulate_inception_activations", "calc_mmd", "calculate_inception_score",
           "check_classifier_covers", "check_classifier_resolution", "class_consistency",
           "features_filename", "load_inception_net", "metric_space_of", "moments_filename",
           "numpy_calculate_frechet_distance", "precision_recall", "sqrt_newton_schulz",
           "target_to_backbone_classes", "torch_calculate_frechet_distance", "torch_cov"]
