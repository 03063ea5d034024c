"""A small CNN classifier: the evaluation backbone for datasets that Inception does not fit.

Plays the part Inception plays for ImageNet: `forward(x)` returns the pooled penultimate
features (for FID/KMMD-style distances) and the logits (for accuracy / IS-style scores).
Input is x in [-1, 1], [B, 3, R, R], the generator's range, at the resolution R it was trained
on. The network itself is resolution-agnostic (global average pooling before the head), but
features of another resolution are not the ones the classifier learned, so other sizes are refused.
train_classifier.py trains one on any image-folder dataset; the shipped assets/toy_classifier.pth
is the toy world's (16 classes, 32 px).

Checkpoint (a dict, torch.save):
    state_dict     the weights
    class_names    [C] names in label order: what the logits mean, and which dataset classes
                   this classifier may evaluate (inception_utils refuses others)
    resolution     R, the side of the images it was trained on
    feature_dim    FEATURE_DIM (the width of the last stage)
  optional:
    test_accuracy  {'overall': float, 'per_class': {name: float}} on the held-out images
    trained_on     a line saying which data it was trained and tested on
"""
from __future__ import annotations

import torch
from torch import nn

import utils

RESOLUTION = 32  # the toy world's
MIN_RESOLUTION = 4  # two 2x poolings leave at least one pixel
FEATURE_DIM = 128
WIDTHS = (32, 64, FEATURE_DIM)  # one stage per width; each but the last halves the resolution
REQUIRED_KEYS = {"state_dict", "class_names", "resolution", "feature_dim"}


def conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU())


class Classifier(nn.Module):
    def __init__(self, class_names: list[str], resolution: int = RESOLUTION,
                 widths: tuple[int, ...] = WIDTHS):
        super().__init__()
        self.class_names = list(class_names)
        self.resolution = resolution
        self.feature_dim = widths[-1]
        layers, c_in = [], 3
        for i, width in enumerate(widths):
            layers += [conv_bn_relu(c_in, width), conv_bn_relu(width, width)]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            c_in = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(self.feature_dim, len(self.class_names))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, 3, R, R] in [-1, 1] -> (features [B, feature_dim], logits [B, n_classes])."""
        if tuple(x.shape[-2:]) != (self.resolution, self.resolution):
            size = "x".join(str(side) for side in x.shape[-2:])
            raise utils.UsageError(
                f"the classifier was trained on {self.resolution} px images but is given {size} "
                f"px ones; evaluate at {self.resolution} px, or train a classifier at this "
                "resolution with `python train_classifier.py --train_folder DIR --test_folder "
                f"DIR --resolution {x.shape[-1]} --out PATH`")
        features = self.body(x).mean(dim=(2, 3))
        return features, self.head(features)


def build_classifier(class_names: list[str], resolution: int = RESOLUTION) -> Classifier:
    return Classifier(class_names, resolution)


def checkpoint_of(model: Classifier, test_accuracy: dict | None = None,
                  trained_on: str | None = None) -> dict:
    checkpoint = {"state_dict": model.state_dict(), "class_names": model.class_names,
                  "resolution": model.resolution, "feature_dim": model.feature_dim}
    if test_accuracy is not None:
        checkpoint["test_accuracy"] = test_accuracy
    if trained_on is not None:
        checkpoint["trained_on"] = trained_on
    return checkpoint


def checkpoint_problem(checkpoint) -> str | None:
    """What makes this not a usable classifier checkpoint, or None."""
    if not isinstance(checkpoint, dict) or not REQUIRED_KEYS <= checkpoint.keys():
        return f"is not a classifier checkpoint (needs the keys {sorted(REQUIRED_KEYS)})"
    names, resolution = checkpoint["class_names"], checkpoint["resolution"]
    if (not isinstance(names, (list, tuple)) or not names
            or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names)):
        return "has no list of distinct class names"
    if not isinstance(resolution, int) or resolution < MIN_RESOLUTION:
        return f"has resolution {resolution!r}, not a whole number of pixels >= {MIN_RESOLUTION}"
    if checkpoint["feature_dim"] != FEATURE_DIM:
        return f"is for {checkpoint['feature_dim']} features, this code builds {FEATURE_DIM}"
    return None


def load_classifier(path: str, device: str | torch.device = "cpu") -> Classifier:
    """The classifier saved at path, on device, in eval mode."""
    retrain = "retrain it with `python train_classifier.py`"
    checkpoint = utils.load_file(path, "classifier checkpoint",
                                 f"{retrain}, or give the right path")
    problem = checkpoint_problem(checkpoint)
    if problem:
        raise utils.UsageError(f"{path} {problem}; {retrain}")
    model = build_classifier(checkpoint["class_names"], checkpoint["resolution"])
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        # torch's message is a header line, then one tab-indented line per mismatch: keep one line
        details = "; ".join(line.strip() for line in str(err).splitlines()[1:3])
        raise utils.UsageError(f"{path} does not fit this classifier ({details}); "
                               f"{retrain}") from None
    return model.to(device).eval()
