"""metrics/backbones.py, as a specification: weights from a local file or the hub cache; offline
without them, bad files, unknown backbones and a missing pytorch-fid are one clear error each."""
import importlib.util
import os
import urllib.error

import pytest
import torch
import torchvision

import utils
from metrics import backbones


@pytest.fixture
def offline_empty_hub(tmp_path, monkeypatch):
    """No cached weights, and any download fails."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)


def test_missing_inception_weights_offline_is_a_clear_usage_error(offline_empty_hub, tmp_path):
    with pytest.raises(utils.UsageError) as err:
        backbones.load_inception_net("inception")
    message = str(err.value)
    expected_file = os.path.join(str(tmp_path / "torch_home"), "hub", "checkpoints",
                                 "inception_v3_google-0cc3c7bd.pth")
    assert expected_file in message and "--inception_weights" in message


def test_inception_weights_from_a_local_state_dict(tmp_path):
    net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False,
                                          transform_input=False)
    path = str(tmp_path / "inception.pth")
    torch.save(net.state_dict(), path)
    backbone = backbones.load_inception_net("inception", weights=path)
    pool, logits = backbone(torch.rand(2, 3, 32, 32) * 2 - 1)  # resized to 299 inside
    assert pool.shape == (2, 2048) and logits.shape == (2, 1000)
    assert backbone.metric_space == "inception" and len(backbone.class_names) == 1000
    assert not any(p.requires_grad for p in backbone.parameters()) and not backbone.training


def test_bad_inception_weights_files_are_usage_errors(tmp_path):
    with pytest.raises(utils.UsageError, match="does not exist"):
        backbones.load_inception_net("inception", weights=str(tmp_path / "missing.pth"))
    foreign = str(tmp_path / "foreign.pth")
    torch.save({"weight": torch.zeros(1)}, foreign)
    with pytest.raises(utils.UsageError, match="do not fit"):
        backbones.load_inception_net("inception", weights=foreign)


def test_unknown_backbone_and_classifier_without_checkpoint_are_usage_errors():
    with pytest.raises(utils.UsageError, match="unknown backbone"):
        backbones.load_inception_net("resnet")
    with pytest.raises(utils.UsageError, match="--inception_weights"):
        backbones.load_inception_net("classifier")


def test_tf_inception_without_pytorch_fid_is_a_usage_error():
    if importlib.util.find_spec("pytorch_fid") is not None:
        pytest.skip("pytorch-fid is installed")
    with pytest.raises(utils.UsageError, match="pip install pytorch-fid"):
        backbones.load_inception_net("tf_inception")
