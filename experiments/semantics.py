"""Is the propagation semantic? The paper's story is that a new class borrows from the old classes
it resembles. For every knowledge-propagation run of a study this compares, per new class:

    learned   the old classes' aggregated shares in the class's combination (explain.py: the mean
              over every ccbn and both parts of |a_k| ||P[:, k]|| / sum_j |a_j| ||P[:, j]||)
    semantic  the old classes' similarity to it in the metric classifier's feature space: the cosine
              of class-mean features of real held-out images (the classifier knows every class)

by Spearman's rank correlation rho (over the old classes; a random ranking of 7 old classes gives
mean 0, standard deviation 1/sqrt(6) = 0.41), with how much of the class's offset is its own
residual and how sparse the combination is (the effective number of old classes, exp of the shares'
entropy: 1 = one old class, n_old = all alike). Results per method: mean ± std over seeds and new
classes, beside the study's FID and class accuracy of the same runs. The study's world and split
(its old and new classes) are those its folder records (world.json, experiments.study), and classes
are matched by name: a study of another split (`--new`) is analysed against its own old classes.

    python -m experiments.semantics --study study_fashion --shots 10
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import spearmanr

import classifier
import datasets
import explain
import utils
import worlds
from worlds import registry
from experiments import study

KNOWLEDGE_PROPAGATION = ("BN", "BN+FT", "BN_lr1e-3", "BN_mean_init", "BN_mean_init_lr1e-3",
                         "BN_no_l1", "BN_no_l1_lr1e-3", "BN_l1x10_lr1e-3")


@torch.no_grad()
def class_means(net: torch.nn.Module, data) -> torch.Tensor:
    """[classes, features]: the classifier's mean feature of each class's images."""
    sums, counts = None, torch.zeros(len(data.classes))
    for start in range(0, len(data), 250):
        images, labels = zip(*(data[i] for i in range(start, min(start + 250, len(data)))))
        features, _ = net(torch.stack(images))
        labels = torch.tensor(labels)
        if sums is None:
            sums = torch.zeros(len(data.classes), features.shape[1])
        sums.index_add_(0, labels, features)
        counts += torch.bincount(labels, minlength=len(data.classes)).float()
    return sums / counts[:, None]


@dataclass(frozen=True)
class Similarity:
    """[new, old] cosine similarities of the classes' mean classifier features, with the classes'
    names (their order in the rows and columns)."""
    values: np.ndarray
    new_classes: list[str]
    old_classes: list[str]

    def aligned(self, new_classes: list[str], old_classes: list[str]) -> np.ndarray:
        """The similarities with rows and columns in the order of these names (a run's label
        orders), matched by name; refused: classes it does not hold (a run of another split)."""
        if sorted(new_classes) != sorted(self.new_classes) or \
                sorted(old_classes) != sorted(self.old_classes):
            raise utils.UsageError(
                f"a run's classes (new: {', '.join(new_classes)}; old: {', '.join(old_classes)}) "
                f"are not those of the study's split (new: {', '.join(self.new_classes)}; old: "
                f"{', '.join(self.old_classes)}): the run was made for another split; give --study "
                "the folder of its own study")
        rows = [self.new_classes.index(name) for name in new_classes]
        columns = [self.old_classes.index(name) for name in old_classes]
        return self.values[np.ix_(rows, columns)]


def class_similarity(classifier_path: str, data_root: str, new_reference: str,
                     old_reference: str) -> Similarity:
    """Cosine similarity of the new and old classes' mean classifier features (held-out images)."""
    net = classifier.load_classifier(classifier_path)
    new = class_means(net, datasets.load_dataset(new_reference, data_root))
    old = class_means(net, datasets.load_dataset(old_reference, data_root))
    return Similarity(torch.nn.functional.cosine_similarity(new[:, None], old[None], dim=2).numpy(),
                      datasets.class_display_names(new_reference, data_root),
                      datasets.class_display_names(old_reference, data_root))


def effective_number(shares: list[float]) -> float:
    """exp(entropy) of the shares: 1 for one old class, n for n equal ones."""
    p = np.asarray(shares, dtype=np.float64)
    p = p[p > 0] / p.sum()
    return float(math.exp(-(p * np.log(p)).sum()))


def analyse_run(folder: str, similarity: Similarity) -> list[dict]:
    """Per new class of the run's latest G: rho, the residual's share and the effective number."""
    G, config = explain.load_generator(folder, "")
    report = explain.combination_report(G, config["class_names"], config["old_class_names"])
    aligned = similarity.aligned([new.name for new in report.new_classes], report.old_class_names)
    rows = []
    for index, new in enumerate(report.new_classes):
        rho = spearmanr(new.old_class_shares, aligned[index]).statistic
        rows.append({"class": new.name, "rho": float(rho), "residual_share": new.residual_share,
                     "effective_old_classes": effective_number(new.old_class_shares),
                     "top": explain.top_old_classes(report, 1)[index][0][0]})
    return rows


def mean_std(values: list[float]) -> str:
    values = [v for v in values if isinstance(v, float) and math.isfinite(v)]
    if len(values) < 2:
        return f"{values[0]:.2f}" if values else "–"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def analyse(out: str, shots: int, world: worlds.World) -> tuple[str, dict]:
    """The table of every knowledge-propagation method the study ran at these shots, and the
    numbers; classes are matched by name with the study's split (its world)."""
    base = os.path.join(out, f"shots{shots}")
    data_root = os.path.join(base, "data")
    if not os.path.isfile(study.results_path(out, shots)):
        raise utils.UsageError(f"--shots {shots}: the study {out} has no results at {shots} images "
                               f"per new class ({study.results_path(out, shots)}); give a shot "
                               "count it ran")
    world.prepare_old(data_root)  # the old classes' held-out images
    reference = datasets.reference_dataset_name(world.new_dataset, data_root)
    old_reference = datasets.reference_dataset_name(world.old_dataset, data_root)
    if not (reference and old_reference):
        raise utils.UsageError(f"the {world.name} world keeps no folders of held-out images of its "
                               "classes (their dataset.json names none), which the similarity "
                               "needs: semantics analyses studies of the fashion world")
    similarity = class_similarity(world.classifier, data_root, reference, old_reference)
    # The data folder's classes must be the study's split's (not another split's prepared there).
    similarity.aligned(list(world.new_classes), list(world.old_classes))
    results = study.load_results(study.results_path(out, shots))
    numbers, lines = {}, []
    for method in (m for m in KNOWLEDGE_PROPAGATION if m in results):
        runs = results[method]
        per_class = [row for run in runs for row in
                     analyse_run(os.path.join(base, "weights", f"{method}_seed{run['seed']}"),
                                 similarity)]
        numbers[method] = {"classes": per_class, "FID": [r["metrics"].get("FID") for r in runs],
                           "class_acc": [r["metrics"].get("class_acc") for r in runs]}
        tops = sorted({row["top"] for row in per_class})
        lines.append(f"| {method} | {len(runs)} | {mean_std([r['rho'] for r in per_class])} | "
                     f"{mean_std([r['residual_share'] for r in per_class])} | "
                     f"{mean_std([r['effective_old_classes'] for r in per_class])} | "
                     f"{', '.join(tops)} | {mean_std(numbers[method]['FID'])} | "
                     f"{mean_std(numbers[method]['class_acc'])} |")
    values = similarity.values
    nearest = [f"{name}: {', '.join(similarity.old_classes[j] for j in np.argsort(-values[i])[:3])}"
               for i, name in enumerate(similarity.new_classes)]
    table = "\n".join([
        f"Knowledge-propagation runs at {shots} images per new class ({world.summary}); rho = "
        "Spearman correlation between a new class's combination shares over the old classes and "
        "their feature similarity to it (per new class; a random ranking: 0 ± 0.41); residual = "
        "its own share of its offset; effective old classes = exp(entropy of the shares) of "
        f"{values.shape[1]}. Most similar old classes: " + "; ".join(nearest) + ".\n",
        "| method | seeds | rho | residual share | effective old classes | top old class (any "
        "seed) | FID | class acc |",
        "|---|---|---|---|---|---|---|---|", *lines]) + "\n"
    return table, {"similarity": values.tolist(), "new_classes": similarity.new_classes,
                   "old_classes": similarity.old_classes, "methods": numbers}


def prepare_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", default="", choices=("", *registry.NAMES),
                        help="the study's world; it is read from the study folder (its "
                             "world.json), and a --world given must be that one")
    parser.add_argument("--study", required=True, help="the study's --out folder")
    parser.add_argument("--shots", type=utils.at_least(1), default=10,
                        help="the shot count to analyse")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = prepare_parser().parse_args(argv)
    world = registry.study_world(args.study)
    if args.world and args.world != world.name:
        raise utils.UsageError(f"--world {args.world}: the study {args.study} is of the "
                               f"{world.name} world ({registry.STUDY_WORLD}); leave --world out")
    table, numbers = analyse(args.study, args.shots, world)
    utils.write_atomically(os.path.join(args.study, f"semantics_shots{args.shots}.md"),
                           lambda f: f.write(table))
    utils.write_atomically(os.path.join(args.study, f"semantics_shots{args.shots}.json"),
                           lambda f: json.dump(numbers, f, indent=1))
    print(table)
    return numbers


if __name__ == "__main__":
    utils.run_main(main)
