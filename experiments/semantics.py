"""Is the propagation semantic? The paper's story is that a new class borrows from the old classes it
resembles. For every knowledge-propagation run of a study this compares, per new class:

    learned   the old classes' aggregated shares in the class's combination (explain.py: the mean over
              every ccbn and both parts of |a_k| ||P[:, k]|| / sum_j |a_j| ||P[:, j]||)
    semantic  the old classes' similarity to it in the metric classifier's feature space: the cosine of
              class-mean features of real held-out images (the classifier knows every class)

by Spearman's rank correlation rho (over the old classes; a random ranking of 7 old classes gives mean
0, standard deviation 1/sqrt(6) = 0.41), with how much of the class's offset is its own residual and
how sparse the combination is (the effective number of old classes, exp of the shares' entropy:
1 = one old class, n_old = all alike). Results per method: mean ± std over seeds and new classes,
beside the study's FID and class accuracy of the same runs.

    python -m experiments.semantics --study study_fashion --shots 10
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics

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

KNOWLEDGE_PROPAGATION = ("BN", "BN+FT", "BN_lr1e-3", "BN_mean_init", "BN_mean_init_lr1e-3", "BN_no_l1",
                         "BN_no_l1_lr1e-3", "BN_l1x10_lr1e-3")


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


def class_similarity(classifier_path: str, data_root: str, new_reference: str, old_reference: str) -> np.ndarray:
    """[new, old]: cosine similarity of the classes' mean classifier features (held-out images)."""
    net = classifier.load_classifier(classifier_path)
    new = class_means(net, datasets.load_dataset(new_reference, data_root))
    old = class_means(net, datasets.load_dataset(old_reference, data_root))
    return torch.nn.functional.cosine_similarity(new[:, None], old[None], dim=2).numpy()


def effective_number(shares: list[float]) -> float:
    """exp(entropy) of the shares: 1 for one old class, n for n equal ones."""
    p = np.asarray(shares, dtype=np.float64)
    p = p[p > 0] / p.sum()
    return float(math.exp(-(p * np.log(p)).sum()))


def analyse_run(folder: str, similarity: np.ndarray) -> list[dict]:
    """Per new class of the run's latest G: rho, the residual's share and the effective number."""
    G, config = explain.load_generator(folder, "")
    report = explain.combination_report(G, config["class_names"], config["old_class_names"])
    rows = []
    for index, new in enumerate(report.new_classes):
        rho = spearmanr(new.old_class_shares, similarity[index]).statistic
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
    """The table of every knowledge-propagation method the study ran at these shots, and the numbers."""
    base = os.path.join(out, f"shots{shots}")
    data_root = os.path.join(base, "data")
    world.prepare_old(data_root)  # the old classes' held-out images
    reference = datasets.reference_dataset_name(world.new_dataset, data_root)
    old_reference = datasets.reference_dataset_name(world.old_dataset, data_root)
    if not (reference and old_reference):
        raise utils.UsageError(f"the {world.name} world keeps no folders of held-out images of its classes (their "
                               "dataset.json names none), which the similarity needs; use --world fashion")
    similarity = class_similarity(world.classifier, data_root, reference, old_reference)
    results = study.load_results(study.results_path(out, shots))
    numbers, lines = {}, []
    for method in (m for m in KNOWLEDGE_PROPAGATION if m in results):
        runs = results[method]
        per_class = [row for run in runs for row in
                     analyse_run(os.path.join(base, "weights", f"{method}_seed{run['seed']}"), similarity)]
        numbers[method] = {"classes": per_class, "FID": [r["metrics"].get("FID") for r in runs],
                           "class_acc": [r["metrics"].get("class_acc") for r in runs]}
        tops = sorted({row["top"] for row in per_class})
        lines.append(f"| {method} | {len(runs)} | {mean_std([r['rho'] for r in per_class])} | "
                     f"{mean_std([r['residual_share'] for r in per_class])} | "
                     f"{mean_std([r['effective_old_classes'] for r in per_class])} | {', '.join(tops)} | "
                     f"{mean_std(numbers[method]['FID'])} | {mean_std(numbers[method]['class_acc'])} |")
    new_names = datasets.class_display_names(world.new_dataset, data_root)
    old_names = datasets.class_display_names(world.old_dataset, data_root) if os.path.isdir(
        os.path.join(data_root, world.old_dataset)) else [f"old{j}" for j in range(similarity.shape[1])]
    nearest = [f"{name}: {', '.join(old_names[j] for j in np.argsort(-similarity[i])[:3])}"
               for i, name in enumerate(new_names)]
    table = "\n".join([
        f"Knowledge-propagation runs at {shots} images per new class; rho = Spearman correlation between a new "
        "class's combination shares over the old classes and their feature similarity to it (per new class; a "
        "random ranking: 0 ± 0.41); residual = its own share of its offset; effective old classes = "
        f"exp(entropy of the shares) of {similarity.shape[1]}. Most similar old classes: " + "; ".join(nearest) + ".\n",
        "| method | seeds | rho | residual share | effective old classes | top old class (any seed) | FID | class acc |",
        "|---|---|---|---|---|---|---|---|", *lines]) + "\n"
    return table, {"similarity": similarity.tolist(), "new_classes": new_names, "old_classes": old_names,
                   "methods": numbers}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", default="fashion", choices=registry.NAMES, help="the study's world")
    parser.add_argument("--study", required=True, help="the study's --out folder")
    parser.add_argument("--shots", type=utils.at_least(1), default=10, help="the shot count to analyse")
    args = parser.parse_args(argv)
    table, numbers = analyse(args.study, args.shots, registry.get(args.world))
    utils.write_atomically(os.path.join(args.study, f"semantics_shots{args.shots}.md"), lambda f: f.write(table))
    utils.write_atomically(os.path.join(args.study, f"semantics_shots{args.shots}.json"),
                           lambda f: json.dump(numbers, f, indent=1))
    print(table)
    return numbers


if __name__ == "__main__":
    utils.run_main(main)
