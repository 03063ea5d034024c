"""Forgetting: how well a transferred G still draws its source's (old) classes.

A knowledge-propagation G keeps the source's class path (`sample.py --classes old`). In a world
whose old classes have reference statistics of held-out images, this measures the old-class metrics
of the source model, of the G after the BN stage and after BN followed by FT, beside the new-class
metrics of the same G:

    python -m experiments.forgetting --base_dir forgetting_fashion --iters 1000 --seeds 0 1 2
    python -m experiments.forgetting --world toy --base_dir forgetting_toy
    python -m experiments.forgetting --study study_split2 --base_dir forgetting_split2

Training takes the world's transfer flags (worlds.transfer_flags: the official rates) and the
default run's shots per new class; FT, started from the BN run's last checkpoint, trains as many
iterations again. Each stage is an experiment of its own (BN_seedS, BN_then_FT_seedS), so the G
after BN is still there to measure when the study is run again with more seeds. Every G is sampled
through sample.py in eval mode, twice: with its BN running statistics as trained (gathered on
new-class batches only) and with standing statistics of the class set sampled (`--mybn
--accumulate_stats`). Metrics live in the world's classifier's feature space. Writes
BASE/forgetting.md (mean ± std over seeds) and BASE/forgetting.json.
"""
from __future__ import annotations

import argparse
import json
import os

import sample
import utils
import worlds
from worlds import registry
from experiments import runs, study

SOURCE_EXPERIMENT = "source"
STANDING_BATCHES = 20
EVALUATION_IMAGES = 1000
STATISTICS = ("as trained", "standing, per class set")  # the BN statistics G is sampled with
COLUMNS = (("old", "FID", "old FID ↓"), ("old", "mFID", "old mFID ↓"),
           ("old", "class_acc", "old class acc ↑"), ("new", "FID", "new FID ↓"),
           ("new", "class_acc", "new class acc ↑"))


def prepare(world: worlds.World, base: str) -> str:
    """The world's data and source model, the old classes' reference statistics, and the source
    model as an experiment sample.py can read (G.pth with its config.json); returns the old
    moments."""
    world.prepare(base, world.demo_shots)
    old_reference = world.prepare_old(os.path.join(base, "data"))
    worlds.install_source(os.path.join(base, "weights", SOURCE_EXPERIMENT), world.source)
    return old_reference


def train_stage(world: worlds.World, base: str, name: str, stage: str, iters: int, seed: int,
                start_from: list[str]) -> None:
    # Its one in-loop evaluation, at the end, takes as many images as the measurements below.
    runs.train_or_load(["--base_dir", base, "--experiment_name", name, *world.training, "--stage",
                        stage, "--seed", str(seed), "--num_iters", str(iters), "--save_every",
                        str(iters), "--test_every", str(iters),
                        "--num_inception_images", str(EVALUATION_IMAGES), *start_from])


def statistics_flags(statistics: str) -> list[str]:
    if statistics == "as trained":
        return []
    return ["--mybn", "--accumulate_stats", "--num_standing_accumulations", str(STANDING_BATCHES)]


def evaluate(world: worlds.World, base: str, name: str, old_reference: str, statistics: str,
             folder: int, source: bool = False) -> dict[str, dict]:
    """{'old': metrics, 'new': metrics} of the experiment's last G (the source: its classes are the
    old ones)."""
    argv = ["--base_dir", base, "--experiment_name", name, "--sample_inception_metrics",
            "--sample_sheets", *world.metric_flags, "--mfid", "--num_inception_images",
            str(EVALUATION_IMAGES), "--G_eval_mode", "--G_batch_size", "50",
            "--sample_sheet_folder_num", str(folder), "--overwrite", *statistics_flags(statistics)]
    # a plain G: its classes are the old ones, against their statistics (its config's dataset)
    if source:
        return {"old": sample.main(argv)["metrics"]}
    # One class set per call: the old classes then draw the very z and classes the source drew.
    old = sample.main([*argv, "--classes", "old", "--old_reference", old_reference])["metrics_old"]
    return {"old": old, "new": sample.main(argv)["metrics"]}


def markdown_table(rows: dict[tuple[str, str], list], iters: int, seeds: list[int],
                   world: str) -> str:
    lines = [f"Old (source) and new classes of one G ({world}): the source, after {iters} BN-stage "
             f"iterations, and after {iters} more of FT; seeds {seeds}; classifier feature space, "
             "eval mode.\n",
             "| model | BN statistics | " + " | ".join(c[2] for c in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for (model, stats), measured in rows.items():
        cells = [study.mean_std([run.get(group, {}).get(key) for run in measured])
                 for group, key, _ in COLUMNS]
        lines.append(f"| {model} | {stats} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def prepare_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", default="", choices=("", *registry.NAMES),
                        help="the world of old and new classes (default: fashion)")
    parser.add_argument("--study", default="", metavar="DIR",
                        help="measure in the world of this study folder (experiments.study's "
                             "--out, its world.json: e.g. a split made with --new) instead of "
                             "--world")
    parser.add_argument("--base_dir", default="forgetting_out",
                        help="folder for data, runs and the table")
    parser.add_argument("--iters", type=utils.at_least(1), default=1000,
                        help="iterations of the BN stage, and again of FT (default: 1000)")
    parser.add_argument("--seeds", type=utils.at_least(0), nargs="+", default=[0, 1],
                        help="training seeds (default: 0 1)")
    return parser


def main(argv: list[str] | None = None) -> dict:
    parser = prepare_parser()
    args = parser.parse_args(argv)
    if args.study and args.world:
        parser.error("give --study (its world) or --world, not both")
    if args.study:
        world = registry.study_world(args.study)  # its split, e.g. one made with the study's --new
    else:
        world = registry.get(args.world or "fashion")
    base = args.base_dir
    old_reference = prepare(world, base)
    rows: dict[tuple[str, str], list] = {}
    for index, stats in enumerate(STATISTICS):
        metrics = evaluate(world, base, SOURCE_EXPERIMENT, old_reference, stats, folder=index,
                           source=True)
        rows.setdefault(("source", stats), []).append(metrics)
    for seed in args.seeds:
        BN_name = f"BN_seed{seed}"
        for stage, name, label, start_from in (
                ("BN", BN_name, f"after BN ({args.iters} its)", []),
                ("FT", f"BN_then_FT_seed{seed}", f"after BN + FT ({2 * args.iters} its)",
                 ["--start_from", BN_name])):
            train_stage(world, base, name, stage, args.iters, seed, start_from)
            for index, stats in enumerate(STATISTICS):
                folder = 10 * (1 + int(stage == "FT")) + index
                measured = evaluate(world, base, name, old_reference, stats, folder)
                rows.setdefault((label, stats), []).append(measured)
    table = markdown_table(rows, args.iters, args.seeds, world.summary)
    utils.write_atomically(os.path.join(base, "forgetting.md"), lambda f: f.write(table))
    records = [{"model": m, "statistics": s, "runs": measured}
               for (m, s), measured in rows.items()]
    utils.write_atomically(os.path.join(base, "forgetting.json"),
                           lambda f: json.dump(records, f, indent=1))
    print(table)
    return rows


if __name__ == "__main__":
    utils.run_main(main)
