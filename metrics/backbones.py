"""Metric backbones: any nn.Module that maps images in [-1, 1] to (features, logits).
load_inception_net builds one of three:

    inception     torchvision's ImageNet Inception v3, as BigGAN-PyTorch uses it (the default)
    tf_inception  pytorch-fid's port of the TF Inception graph, the one FID papers report
    classifier    this project's own classifier (classifier.py)

Each carries `metric_space` naming its space."""
from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

import utils

BACKBONES = ("inception", "tf_inception", "classifier")
INCEPTION_WEIGHTS = torchvision.models.Inception_V3_Weights.IMAGENET1K_V1

# The torchvision Inception v3 layers up to the last mixed block, in forward order.
INCEPTION_LAYERS = (
    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1",
    "Conv2d_3b_1x1", "Conv2d_4a_3x3", "maxpool2",
    "Mixed_5b", "Mixed_5c", "Mixed_5d",
    "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
    "Mixed_7a", "Mixed_7b", "Mixed_7c",
)


class InceptionFeatures(nn.Module):
    """An Inception v3 as a metric backbone: images in [-1, 1] -> (2048-d pool features, logits)."""

    def __init__(self, net: nn.Module, imagenet_normalize: bool):
        super().__init__()
        self.net = net
        # torchvision's weights expect ImageNet-standardised inputs; the TF port expects [-1, 1]
        self.imagenet_normalize = imagenet_normalize
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.imagenet_normalize:
            x = ((x + 1) / 2 - self.mean) / self.std
        if x.shape[2:] != (299, 299):
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        for name in INCEPTION_LAYERS:
            x = getattr(self.net, name)(x)
        pool = x.mean(dim=(2, 3))
        # dropout is the identity at eval time, so the classifier sees the pool features as they are
        logits = self.net.fc(pool)
        return pool, logits


def read_state_dict(path: str, what: str) -> dict:
    return utils.load_file(path, f"{what} weights file", "pass the path of a state dict saved "
                           "with torch.save(model.state_dict(), path)")


def hub_state_dict(url: str, what: str) -> dict:
    """The weights from the torch hub cache, downloading them there first when that is possible."""
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=True,
                                                  weights_only=True)
    except Exception as err:
        raise utils.UsageError(
            f"the {what} weights are not in the torch hub cache and could not be downloaded "
            f"({type(err).__name__}: {err}); on a machine with internet access download {url} "
            f"and put it at {cached}, or pass --inception_weights PATH to a local copy") from err


def load_weights_into(net: nn.Module, state: dict, what: str) -> None:
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise utils.UsageError(f"the weights given do not fit {what} ({str(err).splitlines()[0]}); "
                               f"pass a state dict of {what}") from err


def build_torchvision_inception(weights: str | None) -> nn.Module:
    net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False,
                                          transform_input=False)
    state = (read_state_dict(weights, "Inception") if weights
             else hub_state_dict(INCEPTION_WEIGHTS.url, "Inception v3"))
    load_weights_into(net, state, "torchvision's inception_v3")
    backbone = InceptionFeatures(net, imagenet_normalize=True)
    backbone.class_names = list(INCEPTION_WEIGHTS.meta["categories"])
    return backbone


def build_tf_inception(weights: str | None) -> nn.Module:
    try:
        from pytorch_fid import inception as fid
    except ImportError as err:
        raise utils.UsageError("backbone 'tf_inception' needs the pytorch-fid package; run "
                               "`pip install pytorch-fid`, or use --backbone inception") from err
    net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False,
                                          transform_input=False, num_classes=1008)
    # The TF graph pools differently in these blocks; pytorch-fid ships blocks patched to match it
    net.Mixed_5b = fid.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = fid.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = fid.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = fid.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = fid.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = fid.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = fid.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = fid.FIDInceptionE_1(1280)
    net.Mixed_7c = fid.FIDInceptionE_2(2048)
    state = (read_state_dict(weights, "TF Inception") if weights
             else hub_state_dict(fid.FID_WEIGHTS_URL, "TF Inception (pytorch-fid)"))
    load_weights_into(net, state, "pytorch-fid's FID Inception")
    return InceptionFeatures(net, imagenet_normalize=False)


def build_classifier(weights: str | None) -> nn.Module:
    if not weights:
        raise utils.UsageError("backbone 'classifier' needs its checkpoint; pass "
                               "--inception_weights PATH to a classifier trained on the target "
                               "classes")
    try:
        import classifier
    except ImportError as err:
        raise utils.UsageError(f"backbone 'classifier' needs classifier.py from this project "
                               f"({err}); run from the repository root, or use --backbone "
                               "inception") from err
    return classifier.load_classifier(weights)


def load_inception_net(backbone: str = "inception", weights: str | None = None,
                       device: str | torch.device = "cpu", parallel: bool = False) -> nn.Module:
    """The metric backbone, frozen and in eval mode on `device`, tagged with its `metric_space`."""
    builders = {"inception": build_torchvision_inception,
                "tf_inception": build_tf_inception,
                "classifier": build_classifier}
    if backbone not in builders:
        raise utils.UsageError(f"unknown backbone {backbone!r}; choose one of "
                               f"{', '.join(BACKBONES)}")
    net = builders[backbone](weights).to(device).eval().requires_grad_(False)
    class_names, resolution = getattr(net, "class_names", None), getattr(net, "resolution", None)
    if parallel and torch.cuda.device_count() > 1:
        print("Parallelizing the metric backbone...")
        net = nn.DataParallel(net)
        # DataParallel hides the wrapped module's attributes
        net.class_names, net.resolution = class_names, resolution
    net.metric_space = backbone
    return net


def metric_space_of(net: nn.Module) -> str:
    return getattr(net, "metric_space", "custom")


def device_of(net: nn.Module) -> torch.device:
    param = next(net.parameters(), None)
    return param.device if param is not None else torch.device("cpu")
