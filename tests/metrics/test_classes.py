"""metrics/classes.py, as a specification: class consistency maps the target classes to the
backbone's by name, and is skipped when some name is unknown to the backbone."""
import pytest
import torch

from metrics import classes


def test_class_consistency_maps_target_names_to_backbone_classes():
    class_map = classes.target_to_backbone_classes(["cat", "dog"], ["dog", "fish", "cat"])
    assert class_map.tolist() == [2, 0]
    probs = torch.eye(3)[[2, 2, 0, 1]]  # predicted: cat, cat, dog, fish
    labels = torch.tensor([0, 1, 1, 1])  # made for: cat, dog, dog, dog
    assert classes.class_consistency(probs, labels, class_map) == pytest.approx(0.5)


def test_class_consistency_is_skipped_when_names_do_not_match():
    assert classes.target_to_backbone_classes(["cat", "zebra"], ["dog", "cat"]) is None
    assert classes.target_to_backbone_classes(["cat"], None) is None
