"""The transfer study: every method on the offline-default toy world, at several shot counts and
seeds, with the same iteration budget, evaluated the same way. Writes a markdown table (mean ± std
over seeds) and a plot of FID against iterations per method.

    python study.py --out study_out                      # the full study (hours on a CPU)
    python study.py --out study_quick --iters 100 --seeds 0 --shots 10   # a quick look
    python study.py --out lowshot --shots 1 3 10 --seeds 0 1 --iters 1000 --DiffAugment color,translation,cutout \
        --methods finetune freezeD BN BN_lr1e-3 BN+FT BN_only        # the low-shot study, with DiffAugment
Each shot count's results are saved as they finish (OUT/shots<N>/results.json) and the table covers
all shot counts present, so shot counts can also run as separate processes on the same --out.

Methods (all from the shipped 12-class toy source model, except scratch):
  scratch    conditional BigGAN trained on the target data only (--stage pretrain)
  finetune   TransferGAN: new classes start at the old classes' mean BN parameters, all trains
  freezeD    finetune with D's first 2 blocks frozen (--freezeD_layer 2)
  BN_only    only the new classes' own BN parameters train (no knowledge propagation)
  BN         cGANTransfer's BN stage (knowledge propagation)
  BN+FT      cGANTransfer: BN stage for half the budget, then FT for the other half
With --source DIR --source_classes 1 the methods start from an unconditional source instead
(TransferGAN's conditional transfer: `--methods finetune`; every new class starts at the
unconditional BN parameters).

With --DiffAugment POLICY every method runs with that augmentation of D's inputs and is listed as
METHOD+DA; run the study once with and once without it (the same --out) to compare.

Besides FID/mFID/KMMD/class accuracy/IS (in the toy classifier's feature space, see README), every
run reports memorization (memorization.py): the mean distance of its samples to their nearest
training image, as a ratio to the same distance for fresh real images of the class (about 1: no
copying; well below 1: the samples are near-copies of the few training images).
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

import fcntl  # noqa: E402
import functools  # noqa: E402

import torch  # noqa: E402

import datasets  # noqa: E402
import memorization  # noqa: E402
import plots  # noqa: E402
import sampling  # noqa: E402
import stages  # noqa: E402
import toy_data  # noqa: E402
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
METRICS = ("FID", "mFID", "KMMD", "class_acc", "IS_mean", "NN_ratio")
AUGMENTED = "+DA"  # suffix of a method run with --DiffAugment
MEMORIZATION_SAMPLES = 100  # per class, and as many fresh real images per class
FRESH_IMAGES_SEED = 5000    # of the fresh real images: unlike any seed the training data uses


def prepare_world(base: str, shots: int, source: str = "") -> None:
    toy_default.prepare_target_data(os.path.join(base, "data"), shots, seed=0)
    toy_default.prepare_reference_statistics(os.path.join(base, "data"), seed=0)
    toy_default.install_source_weights(os.path.join(base, "weights"), source)


def run_name(method: str, augment: str) -> str:
    return method + AUGMENTED if augment else method


def base_method(name: str) -> str:
    return name[:-len(AUGMENTED)] if name.endswith(AUGMENTED) else name


def images_of(data) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = zip(*(data[i] for i in range(len(data))))
    return torch.stack(images), torch.tensor(labels)


@functools.lru_cache(maxsize=1)
def fresh_real_images(count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Real images of the new classes that no training set of the study holds (drawn once per
    process: every run is measured against the same ones)."""
    images, labels = toy_data.render_dataset(list(toy_data.NEW_CLASSES), count, FRESH_IMAGES_SEED)
    return datasets.to_model_range(images.transpose(0, 3, 1, 2)), torch.from_numpy(labels)


def measure_memorization(config: dict, result: dict) -> dict[str, float]:
    G = sampling.sampling_G(result["G"], result["G_ema"], config)
    device = next(G.parameters()).device
    labels = torch.arange(config["n_classes"], device=device).repeat_interleave(MEMORIZATION_SAMPLES)
    z = torch.randn(labels.shape[0], G.dim_z, generator=torch.Generator().manual_seed(config["seed"]))
    with sampling.sampling_mode(G, config["G_eval_mode"]):
        samples = sampling.generate(G, (z * config["z_var"] ** 0.5).to(device), G.class_input(labels),
                                    config["G_batch_size"])
    train_images, train_labels = images_of(datasets.load_dataset(config["dataset"], config["data_root"]))
    fresh, fresh_labels = fresh_real_images(MEMORIZATION_SAMPLES)
    return memorization.memorization_metrics(samples, labels.cpu(), fresh, fresh_labels, train_images, train_labels)


def run_method(base: str, method: str, seed: int, iters: int, test_every: int, images: int,
               augment: str = "", amp: str = "auto", source_classes: int = len(toy_data.OLD_CLASSES)) -> dict:
    """Train one method; returns its final metrics (memorization included), trained G parameters,
    wall time and log path."""
    name = f"{run_name(method, augment)}_seed{seed}"
    phases = ALL_METHODS[method]
    start, result, config = time.time(), None, None
    for index, phase in enumerate(phases):
        budget = iters * (index + 1) // len(phases)  # phases split the budget; --resume continues
        # The phase's flags come last, so that they win (scratch: --n_pretrain_classes 0).
        argv = ["--base_dir", base, "--experiment_name", name, *toy_default.TOY_MODEL, *toy_default.TOY_TRAINING,
                "--n_pretrain_classes", str(source_classes), "--amp", amp,
                "--seed", str(seed), "--num_iters", str(budget), "--test_every", str(test_every),
                "--save_every", str(max(budget, 1)), "--num_inception_images", str(images), *phase]
        if augment:
            argv += ["--DiffAugment", augment]
        config = utils.finalize_config(vars(utils.prepare_parser().parse_args(argv)))
        result = train.run(config)
    # The union over the phases (BN then FT trains what either stage trains).
    trained_ids = {id(p) for phase in phases for p in stages.G_parameters(result["G"], stages.get(phase[1]))}
    trained = sum(p.numel() for p in result["G"].parameters() if id(p) in trained_ids)
    metrics = {**result["metrics"], **measure_memorization(config, result)}
    return {"metrics": metrics, "trained_G_params": trained, "seconds": time.time() - start,
            "log": os.path.join(config["logs_root"], f"{name}_log.jsonl")}


def mean_std(values: list[float]) -> str:
    values = [v for v in values if isinstance(v, float)]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def in_method_order(by_method: dict) -> list[tuple[str, list]]:
    """Methods in ALL_METHODS order, each without augmentation first."""
    return sorted(by_method.items(), key=lambda item: (list(ALL_METHODS).index(base_method(item[0])),
                                                       item[0].endswith(AUGMENTED)))


def markdown_table(results: dict) -> str:
    lines = []
    for shots, by_method in results.items():
        lines += [f"\n**{shots} images per new class**\n",
                  "| method | FID ↓ | mFID ↓ | KMMD ↓ | class acc ↑ | IS ↑ | NN ratio | trained G params | wall time (s) |",
                  "|---|---|---|---|---|---|---|---|---|"]
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
    """Add these methods' runs to the shot count's results.json, keeping the other methods there.
    Locked, since study processes of one --out may finish runs at the same moment."""
    path = results_path(out, shots)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
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
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=HelpFormatter)
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
    parser.add_argument("--DiffAugment", default="", metavar="POLICY", type=utils.diffaugment_policy,
                        help="run every method with this DiffAugment policy (e.g. color,translation,cutout), "
                             "listed as METHOD+DA (default: none)")
    parser.add_argument("--source", default="", metavar="DIR",
                        help="folder with the source model's G.pth and D.pth (default: the shipped 12-class toy "
                             "source); a study per source, each with its own --out")
    parser.add_argument("--source_classes", type=utils.at_least(1), default=len(toy_data.OLD_CLASSES),
                        help="classes of the source model (1: an unconditional source, TransferGAN's "
                             "conditional transfer with --methods finetune)")
    parser.add_argument("--amp", choices=("auto", "none", "bf16", "fp16"), default="auto",
                        help="precision of every run, train.py's --amp; compare precisions with one --out each")
    args = parser.parse_args(argv)
    # A method of several phases splits the budget; a phase of 0 iterations would mean train.py's
    # "--num_iters 0: run --num_epochs" instead.
    phases = max(len(ALL_METHODS[method]) for method in args.methods)
    if args.iters < phases:
        parser.error(f"argument --iters: must be at least {phases} (a method of {phases} phases needs an "
                     f"iteration in each), got {args.iters}")
    for shots in args.shots:
        base = os.path.join(args.out, f"shots{shots}")
        prepare_world(base, shots, args.source)
        for method in args.methods:  # saved as each finishes: a long study can stop and keep its runs
            runs = [run_method(base, method, seed, args.iters, args.test_every, args.num_inception_images,
                               args.DiffAugment, args.amp, args.source_classes) for seed in args.seeds]
            save_results(args.out, shots, {run_name(method, args.DiffAugment): runs})
    table = write_report(args.out, args.iters, args.seeds)
    print(table)
    print(f"Table: {os.path.join(args.out, 'study.md')}; plot: {os.path.join(args.out, 'fid_curves.png')}")
    return load_all_results(args.out)


if __name__ == "__main__":
    utils.run_main(main)
