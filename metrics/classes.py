"""The backbone's classes against the evaluated data's. Class consistency: does the backbone see
class c in the images generated for class c? And what the project classifier may evaluate:
Inception is a generic feature space, fit for any images; a classifier's features only describe
the classes and the resolution it was trained on, so anything else would be measured silently
wrong."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

import datasets
import utils
from metrics.backbones import metric_space_of
from metrics.reference import reference_name


def target_to_backbone_classes(target_names, backbone_names) -> np.ndarray | None:
    """Backbone class index of every target class, or None when some target class is unknown to
    it."""
    if target_names is None or backbone_names is None:
        return None
    index = {name: i for i, name in enumerate(backbone_names)}
    if not all(name in index for name in target_names):
        return None
    return np.array([index[name] for name in target_names], dtype=np.int64)


def class_consistency(probs: torch.Tensor, labels: torch.Tensor, class_map: np.ndarray) -> float:
    """Share of samples whose backbone prediction is the backbone class of the class they were
    made for."""
    expected = torch.as_tensor(class_map, device=labels.device)[labels.long()]
    return float((probs.argmax(dim=1) == expected.to(probs.device)).float().mean())


def listed(names: list[str], limit: int = 10) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def train_classifier_command(resolution: int | str) -> str:
    return (f"`python train_classifier.py --train_folder DIR --test_folder DIR --resolution "
            f"{resolution} --out PATH`")


def check_classifier_covers(net: nn.Module, target_names, data: str) -> None:
    """Refuse a classifier backbone that was not trained on every class of the evaluated data
    (`data` names it in the message)."""
    known = getattr(net, "class_names", None)
    if metric_space_of(net) != "classifier" or known is None or target_names is None:
        return
    known_set = set(known)
    missing = [str(name) for name in target_names if str(name) not in known_set]
    if missing:
        raise utils.UsageError(
            f"the classifier backbone was not trained on {len(missing)} class(es) of {data}: "
            f"{listed(missing)} (it knows {listed(list(known))}); train a classifier on these "
            f"classes with {train_classifier_command('R')} and pass it with --inception_weights "
            "PATH")


def check_classifier_resolution(net: nn.Module, dataset: str, data_root: str | None = None) -> None:
    """Refuse, before any evaluation, a classifier backbone trained at another size than the
    dataset's (a table dataset, or a prepared folder under data_root)."""
    resolution = getattr(net, "resolution", None)
    if metric_space_of(net) != "classifier" or resolution is None:
        return
    try:
        spec = datasets.dataset_spec(reference_name(dataset), data_root)
    except (utils.UsageError, TypeError):  # a folder without dataset.json: the caller's business
        return
    if spec.resolution != resolution:
        raise utils.UsageError(
            f"the classifier backbone was trained on {resolution} px images but {dataset} is "
            f"{spec.resolution} px; train one at {spec.resolution} px with "
            f"{train_classifier_command(spec.resolution)} and pass it with --inception_weights "
            "PATH")
