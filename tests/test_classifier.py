"""classifier.py and the shipped assets/toy_classifier.pth: the offline evaluation backbone."""
import os

import pytest
import torch

import classifier
import toy_data
import utils

SHIPPED = os.path.join(os.path.dirname(__file__), "..", "assets", "toy_classifier.pth")


def as_model_input(images):
    """uint8 [N, 32, 32, 3] -> float [N, 3, 32, 32] in [-1, 1], the generator's range."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.5)


def test_forward_gives_pooled_features_and_logits_over_all_toy_classes():
    model = classifier.build_classifier(toy_data.ALL_CLASSES).eval()
    features, logits = model(torch.zeros(2, 3, 32, 32))
    assert features.shape == (2, classifier.FEATURE_DIM) and logits.shape == (2, 16)
    assert model.class_names == toy_data.ALL_CLASSES


def test_shipped_weights_are_small_and_name_the_toy_classes():
    assert os.path.getsize(SHIPPED) < 2_000_000
    model = classifier.load_classifier(SHIPPED)
    assert not model.training
    assert model.class_names == toy_data.ALL_CLASSES


def test_shipped_classifier_recognises_freshly_generated_images():
    images, labels = toy_data.render_dataset(toy_data.ALL_CLASSES, 25, seed=12345)
    model = classifier.load_classifier(SHIPPED)
    with torch.no_grad():
        _, logits = model(as_model_input(images))
    accuracy = (logits.argmax(1) == torch.from_numpy(labels)).float().mean().item()
    assert accuracy > 0.9


def test_save_and_load_round_trip(tmp_path):
    model = classifier.build_classifier(toy_data.ALL_CLASSES).eval()
    path = str(tmp_path / "clf.pth")
    utils.atomic_save(classifier.checkpoint_of(model), path)
    loaded = classifier.load_classifier(path)
    x = torch.randn(3, 3, 32, 32).clamp(-1, 1)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(model(x), loaded(x)))


def test_missing_checkpoint_says_how_to_make_one(tmp_path):
    with pytest.raises(utils.UsageError, match="train_classifier.py"):
        classifier.load_classifier(str(tmp_path / "nope.pth"))


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(b"definitely not torch")
    with pytest.raises(utils.UsageError, match="not a readable classifier checkpoint"):
        classifier.load_classifier(str(path))


def test_a_checkpoint_without_the_classifier_keys_is_refused(tmp_path):
    path = str(tmp_path / "G.pth")
    utils.atomic_save({"linear.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(utils.UsageError, match="not a classifier checkpoint"):
        classifier.load_classifier(path)


def test_weights_of_another_shape_are_refused(tmp_path):
    checkpoint = classifier.checkpoint_of(classifier.build_classifier(toy_data.ALL_CLASSES))
    checkpoint["class_names"] = toy_data.NEW_CLASSES  # 4 names for a 16-way head
    path = str(tmp_path / "clf.pth")
    utils.atomic_save(checkpoint, path)
    with pytest.raises(utils.UsageError, match="does not fit"):
        classifier.load_classifier(path)
