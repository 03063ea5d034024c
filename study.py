"""The transfer study: every method on the offline-default toy world, at two shot counts and several
seeds, with the same iteration budget, evaluated the same way. Writes a markdown table (mean ± std
over seeds) and a plot of FID against iterations per method.

    python study.py --out study_out                      # the full study (hours on a CPU)
    python study.py --out study_quick --iters 100 --seeds 0 --shots 10   # a quick look
Each shot count's results are saved as they finish (OUT/shots<N>/results.json) and the table covers
all shot counts present, so shot counts can also run as separate processes on the same --out.

Methods (all from the shipped 12-class toy source model, except scratch):
  scratch    conditional BigGAN trained on the target data only (--stage pretrain)
  finetune   TransferGAN: new classes start at the old classes' mean BN parameters, all trains
  freezeD    finetune with D's first 2 blocks frozen (--freezeD_layer 2)
  BN_only    only the new classes' own BN parameters train (no knowledge propagation)
  BN         cGANTransfer's BN stage (knowledge propagation)
  BN+FT      cGANTransfer: BN stage for half the budget, then FT for the other half
The metrics live in the toy classifier's feature space (see README).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import plots  # noqa: E402
import stages  # noqa: E402
import toy_default  # noqa: E402
import train  # noqa: E402
import utils  # noqa: E402

METHODS = {
    "scratch": [["--stage", "pretrain", "--n_pretrain_classes", "0"]],
    "finetune": [["--stage", "finetune"]],
    "freezeD": [["--stage", "finetune", "--freezeD_layer", "2"]],
    "BN_only": [["--stage", "BN_only"]],
    "BN": [["--stage", "BN"]],
    "BN+FT": [["--stage", "BN"], ["--stage", "FT", "--resume"]],
}
# The "why" runs: knowledge propagation (and its baseline) with one thing changed at a time.
# Baselines only ever get the same changes, never worse settings.
ABLATIONS = {
    "finetune_lr1e-3": [["--stage", "finetune", "--G_lr", "1e-3"]],
    "BN_only_lr1e-3": [["--stage", "BN_only", "--G_lr", "1e-3"]],
    "BN_lr1e-3": [["--stage", "BN", "--G_lr", "1e-3"]],
    "BN_mean_init": [["--stage", "BN", "--comb_init", "mean"]],
    "BN_mean_init_lr1e-3": [["--stage", "BN", "--comb_init", "mean", "--G_lr", "1e-3"]],
    "BN_no_l1": [["--stage", "BN", "--comb_l1_scale", "0"]],
}
ALL_METHODS = {**METHODS, **ABLATIONS}
METRICS = ("FID", "mFID", "KMMD", "class_acc", "IS_mean")


def prepare_world(base: str, shots: int) -> None:
    toy_default.prepare_target_data(os.path.join(base, "data"), shots, seed=0)
    toy_default.prepare_reference_statistics(os.path.join(base, "data"), seed=0)
    toy_default.install_source_weights(os.path.join(base, "weights"))


def run_method(base: str, method: str, seed: int, iters: int, test_every: int, images: int) -> dict:
    """Train one method; returns its final metrics, trained G parameters, wall time and log path."""
    name = f"{method}_seed{seed}"
    phases = ALL_METHODS[method]
    start, result, config = time.time(), None, None
    for index, phase in enumerate(phases):
        budget = iters * (index + 1) // len(phases)  # phases split the budget; --resume continues
        argv = ["--base_dir", base, "--experiment_name", name, *toy_default.TOY_MODEL, *toy_default.TOY_TRAINING,
                "--seed", str(seed), "--num_iters", str(budget), "--test_every", str(test_every),
                "--save_every", str(max(budget, 1)), "--num_inception_images", str(images), *phase]
        config = utils.finalize_config(vars(utils.prepare_parser().parse_args(argv)))
        result = train.run(config)
    # The union over the phases (BN then FT trains what either stage trains).
    trained_ids = {id(p) for phase in phases for p in stages.G_parameters(result["G"], stages.get(phase[1]))}
    trained = sum(p.numel() for p in result["G"].parameters() if id(p) in trained_ids)
    return {"metrics": result["metrics"], "trained_G_params": trained, "seconds": time.time() - start,
            "log": os.path.join(config["logs_root"], f"{name}_log.jsonl")}


def mean_std(values: list[float]) -> str:
    values = [v for v in values if isinstance(v, float)]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def in_method_order(by_method: dict) -> list[tuple[str, list]]:
    return sorted(by_method.items(), key=lambda item: list(ALL_METHODS).index(item[0]))


def markdown_table(results: dict) -> str:
    lines = []
    for shots, by_method in results.items():
        lines += [f"\n**{shots} images per new class**\n",
                  "| method | FID ↓ | mFID ↓ | KMMD ↓ | class acc ↑ | IS ↑ | trained G params | wall time (s) |",
                  "|---|---|---|---|---|---|---|---|"]
        for method, runs in in_method_order(by_method):
            cells = [mean_std([r["metrics"].get(m) for r in runs]) for m in METRICS]
            lines.append(f"| {method} | " + " | ".join(cells)
                         + f" | {runs[0]['trained_G_params']:,} | {mean_std([r['seconds'] for r in runs])} |")
    return "\n".join(lines) + "\n"


def plot_fid_curves(results: dict, png: str) -> None:
    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.5), squeeze=False)
    for ax, (shots, by_method) in zip(axes[0], results.items()):
        for method, runs in in_method_order(by_method):
            curves = [[(r["itr"], r["FID"]) for r in plots.read_jsonl(run["log"]) if "FID" in r] for run in runs]
            length = min(len(c) for c in curves)
            itrs = [p[0] for p in curves[0][:length]]
            ax.plot(itrs, [statistics.mean(c[i][1] for c in curves) for i in range(length)], marker="o",
                    markersize=3, label=method)
        ax.set_title(f"{shots} images per new class (classifier-space FID, mean over seeds)", fontsize=9)
        ax.set_xlabel("iteration")
        ax.set_ylabel("FID")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def results_path(out: str, shots: int) -> str:
    return os.path.join(out, f"shots{shots}", "results.json")


def save_results(out: str, shots: int, by_method: dict) -> None:
    """Add these methods' runs to the shot count's results.json, keeping the other methods there."""
    path = results_path(out, shots)
    saved = {}
    if os.path.isfile(path):
        with open(path) as f:
            saved = json.load(f)
    saved.update(by_method)
    utils.write_atomically(path, lambda f: json.dump(saved, f, indent=1))


def load_all_results(out: str) -> dict:
    """Every shot count finished so far (runs of different shot counts may be separate processes)."""
    results = {}
    for name in sorted(os.listdir(out), key=lambda n: int(n[5:]) if n[5:].isdigit() else 0):
        if name.startswith("shots") and os.path.isfile(os.path.join(out, name, "results.json")):
            with open(os.path.join(out, name, "results.json")) as f:
                results[int(name[5:])] = json.load(f)
    return results


def write_report(out: str, iters: int, seeds: list[int]) -> str:
    results = load_all_results(out)
    table = markdown_table(results)
    with open(os.path.join(out, "study.md"), "w") as f:
        f.write(f"Budget {iters} iterations per method, seeds {seeds}; metrics in the toy classifier's "
                "feature space (not Inception).\n" + table)
    plot_fid_curves(results, os.path.join(out, "fid_curves.png"))
    return table


class HelpFormatter(argparse.RawDescriptionHelpFormatter, utils.HelpFormatter):
    """The module docstring as written, and each flag's default."""


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--out", default="study_out", help="folder for the runs, the table and the plot")
    parser.add_argument("--shots", type=utils.at_least(1), nargs="+", default=[10, 50],
                        help="images per new class, one study each (default: 10 50)")
    parser.add_argument("--seeds", type=utils.at_least(0), nargs="+", default=[0, 1, 2],
                        help="seeds every method runs with (default: 0 1 2)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(ALL_METHODS), metavar="METHOD",
                        help=f"methods to run (default: the six methods {' '.join(METHODS)}; "
                             f"the ablations: {' '.join(ABLATIONS)})")
    parser.add_argument("--iters", type=utils.at_least(1), default=600, help="iteration budget of every method")
    parser.add_argument("--test_every", type=utils.at_least(1), default=100, help="iterations between evaluations")
    parser.add_argument("--num_inception_images", type=utils.at_least(1), default=1000,
                        help="samples per evaluation (default: 1000)")
    args = parser.parse_args(argv)
    # A method of several phases splits the budget; a phase of 0 iterations would mean train.py's
    # "--num_iters 0: run --num_epochs" instead.
    phases = max(len(ALL_METHODS[method]) for method in args.methods)
    if args.iters < phases:
        parser.error(f"argument --iters: must be at least {phases} (a method of {phases} phases needs an "
                     f"iteration in each), got {args.iters}")
    for shots in args.shots:
        base = os.path.join(args.out, f"shots{shots}")
        prepare_world(base, shots)
        for method in args.methods:  # saved as each finishes: a long study can stop and keep its runs
            runs = [run_method(base, method, seed, args.iters, args.test_every, args.num_inception_images)
                    for seed in args.seeds]
            save_results(args.out, shots, {method: runs})
    table = write_report(args.out, args.iters, args.seeds)
    print(table)
    print(f"Table: {os.path.join(args.out, 'study.md')}; plot: {os.path.join(args.out, 'fid_curves.png')}")
    return load_all_results(args.out)


if __name__ == "__main__":
    utils.run_main(main)
