"""Forgetting: how well a transferred G still draws its source's (old) classes.

A knowledge-propagation G keeps the source's class path (`sample.py --classes old`). In the offline
toy world, where fresh images of the 12 old classes give reference statistics, this measures the
old-class metrics of the source model, of the G after the BN stage and after BN followed by FT,
beside the new-class metrics of the same G:

    python forgetting.py --base_dir forgetting_out --iters 1000 --seeds 0 1

Training is the offline default's (toy_default.py: 25 images per new class, batch 16, G_lr 2e-4);
FT continues the BN run for as many iterations again. Every G is sampled through sample.py in eval
mode, twice: with its BN running statistics as trained (gathered on new-class batches only) and with
standing statistics of the class set sampled (`--mybn --accumulate_stats`). Metrics live in the toy
classifier's feature space. Writes BASE/forgetting.md (mean ± std over seeds) and BASE/forgetting.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil

import sample
import study
import toy_data
import toy_default
import train
import utils

SOURCE_DATASET = "ToySource32"
SOURCE_EXPERIMENT = "toy_source"
STANDING_BATCHES = 20
EVALUATION_IMAGES = 1000
STATISTICS = ("as trained", "standing, per class set")  # the BN statistics G is sampled with
COLUMNS = (("old", "FID", "old FID ↓"), ("old", "mFID", "old mFID ↓"), ("old", "class_acc", "old class acc ↑"),
           ("new", "FID", "new FID ↓"), ("new", "class_acc", "new class acc ↑"))


def prepare_world(base: str) -> str:
    """The offline default's data, weights and new-class statistics, the old classes' reference
    statistics, and the source model as an experiment sample.py can read; returns the old moments."""
    data = os.path.join(base, "data")
    toy_default.prepare_target_data(data, 25, seed=0)
    toy_default.prepare_reference_statistics(data, seed=0)
    old_reference = toy_default.prepare_reference_statistics(data, seed=0, dataset=SOURCE_DATASET,
                                                             classes=toy_data.OLD_CLASSES)
    weights = os.path.join(base, "weights")
    toy_default.install_source_weights(weights)
    source = os.path.join(weights, SOURCE_EXPERIMENT)
    os.makedirs(source, exist_ok=True)
    if not os.path.isfile(os.path.join(source, "G.pth")):
        shutil.copy(os.path.join(weights, "G.pth"), os.path.join(source, "G.pth"))
    return old_reference


def train_stage(base: str, name: str, stage: str, iters: int, seed: int, resume: bool) -> None:
    argv = ["--base_dir", base, "--experiment_name", name, *toy_default.TOY_MODEL, *toy_default.TOY_TRAINING,
            "--stage", stage, "--seed", str(seed), "--num_iters", str(iters), "--save_every", str(iters),
            "--test_every", str(iters), *(["--resume"] if resume else [])]
    train.run(utils.finalize_config(vars(utils.prepare_parser().parse_args(argv))))


def statistics_flags(statistics: str) -> list[str]:
    if statistics == "as trained":
        return []
    return ["--mybn", "--accumulate_stats", "--num_standing_accumulations", str(STANDING_BATCHES)]


def evaluate(base: str, name: str, old_reference: str, statistics: str, folder: int,
             source: bool = False) -> dict[str, dict]:
    """{'old': metrics, 'new': metrics} of the experiment's last G (the source: its classes are the old ones)."""
    argv = ["--base_dir", base, "--experiment_name", name, "--sample_inception_metrics", "--sample_sheets",
            "--backbone", "classifier", "--inception_weights", toy_default.CLASSIFIER, "--mfid",
            "--num_inception_images", str(EVALUATION_IMAGES), "--G_eval_mode", "--G_batch_size", "50",
            "--sample_sheet_folder_num", str(folder), "--overwrite", *statistics_flags(statistics)]
    if source:  # bare weights without a saved config: the flags it was trained with
        argv += [*toy_default.TOY_ARCHITECTURE, "--dataset", SOURCE_DATASET, "--n_classes",
                 str(len(toy_data.OLD_CLASSES)), "--n_pretrain_classes", "0"]
        return {"old": sample.main(argv)["metrics"]}
    result = sample.main([*argv, "--classes", "all", "--old_reference", old_reference])
    return {"old": result["metrics_old"], "new": result["metrics"]}


def markdown_table(rows: dict[str, dict[str, list]], iters: int, seeds: list[int]) -> str:
    lines = [f"Old (source) and new classes of one G: the source, after {iters} BN-stage iterations, and after "
             f"{iters} more of FT; seeds {seeds}; toy-classifier feature space, eval mode.\n",
             "| model | BN statistics | " + " | ".join(c[2] for c in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for (model, stats), runs in rows.items():
        cells = [study.mean_std([run.get(group, {}).get(key) for run in runs]) for group, key, _ in COLUMNS]
        lines.append(f"| {model} | {stats} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base_dir", default="forgetting_out", help="folder for data, runs and the table")
    parser.add_argument("--iters", type=utils.at_least(1), default=1000,
                        help="iterations of the BN stage, and again of FT (default: 1000)")
    parser.add_argument("--seeds", type=utils.at_least(0), nargs="+", default=[0, 1],
                        help="training seeds (default: 0 1)")
    args = parser.parse_args(argv)
    base = args.base_dir
    old_reference = prepare_world(base)
    rows: dict[tuple[str, str], list] = {}
    for index, stats in enumerate(STATISTICS):
        metrics = evaluate(base, SOURCE_EXPERIMENT, old_reference, stats, folder=index, source=True)
        rows.setdefault(("source", stats), []).append(metrics)
    for seed in args.seeds:
        name = f"BN_then_FT_seed{seed}"
        for stage, label, resume in (("BN", f"after BN ({args.iters} its)", False),
                                     ("FT", f"after BN + FT ({2 * args.iters} its)", True)):
            train_stage(base, name, stage, args.iters * (2 if resume else 1), seed, resume)
            for index, stats in enumerate(STATISTICS):
                folder = 10 * (1 + int(resume)) + index
                rows.setdefault((label, stats), []).append(evaluate(base, name, old_reference, stats, folder))
    table = markdown_table(rows, args.iters, args.seeds)
    with open(os.path.join(base, "forgetting.md"), "w") as f:
        f.write(table)
    with open(os.path.join(base, "forgetting.json"), "w") as f:
        json.dump([{"model": m, "statistics": s, "runs": runs} for (m, s), runs in rows.items()], f, indent=1)
    print(table)
    return rows


if __name__ == "__main__":
    utils.run_main(main)
