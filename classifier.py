"""A small CNN over the 16 toy classes: the evaluation backbone of the offline default.

Plays the part Inception plays for ImageNet: `forward(x)` returns the pooled penultimate
features (for FID/KMMD-style distances) and the logits (for accuracy / IS-style scores).
Input is x in [-1, 1], [B, 3, 32, 32], the generator's range. The weights shipped in
assets/toy_classifier.pth come from train_classifier.py.

Checkpoint: {'state_dict', 'class_names', 'resolution', 'feature_dim'}.
"""
from __future__ import annotations


import torch
from torch import nn

import utils

RESOLUTION = 32
FEATURE_DIM = 128
WIDTHS = (32, 64, FEATURE_DIM)  # one stage per width; each but the last halves the resolution


def conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU())


class ToyClassifier(nn.Module):
    def __init__(self, class_names: list[str], widths: tuple[int, ...] = WIDTHS):
        super().__init__()
        self.class_names = list(class_names)
        self.resolution = RESOLUTION
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
        """x [B, 3, 32, 32] in [-1, 1] -> (features [B, feature_dim], logits [B, n_classes])."""
        features = self.body(x).mean(dim=(2, 3))
        return features, self.head(features)


def build_classifier(class_names: list[str]) -> ToyClassifier:
    return ToyClassifier(class_names)


def checkpoint_of(model: ToyClassifier) -> dict:
    return {"state_dict": model.state_dict(), "class_names": model.class_names,
            "resolution": model.resolution, "feature_dim": model.feature_dim}


def load_classifier(path: str, device: str | torch.device = "cpu") -> ToyClassifier:
    """The classifier saved at path, on device, in eval mode."""
    retrain = "retrain it with `python train_classifier.py`"
    checkpoint = utils.load_file(path, "classifier checkpoint", f"{retrain}, or give the right path")
    expected = {"state_dict", "class_names", "resolution", "feature_dim"}
    if not isinstance(checkpoint, dict) or not expected <= checkpoint.keys():
        raise utils.UsageError(f"{path} is not a classifier checkpoint (needs the keys "
                               f"{sorted(expected)}); {retrain}")
    if checkpoint["resolution"] != RESOLUTION or checkpoint["feature_dim"] != FEATURE_DIM:
        raise utils.UsageError(f"{path} is for {checkpoint['resolution']} px / "
                               f"{checkpoint['feature_dim']} features, this code expects "
                               f"{RESOLUTION} px / {FEATURE_DIM}; {retrain}")
    model = build_classifier(checkpoint["class_names"])
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        raise utils.UsageError(f"{path} does not fit this classifier ({err}); {retrain}") from None
    return model.to(device).eval()
