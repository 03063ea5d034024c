"""The transfer study: every method on a world (Fashion-MNIST by default, or the toy world), at several
shot counts and seeds, with the same iteration budget, evaluated the same way. Writes a markdown table
(mean ± std over seeds) and a plot of FID against iterations per method.

    python -m experiments.study --out study_fashion                 # the default study
    python -m experiments.study --out quick --iters 100 --seeds 0 --shots 10   # a quick look
    python -m experiments.study --out study_fashion --DiffAugment color,translation,cutout --methods finetune BN+FT
    python -m experiments.study --world toy --out study_toy --shots 1 3 10 --seeds 0 1 --iters 1000
    python -m experiments.study --new Shirt,Sneaker,Bag --out study_split2      # another Fashion-MNIST split

Every run is saved as it finishes (OUT/shots<N>/results.json, one entry per method and seed), and a
study started again skips the runs it has and resumes a run that was stopped: it resumes and extends
(more seeds, shots or methods on the same --out; shot counts may run as separate processes).

Methods (all from the world's source model, except scratch):
  scratch    conditional BigGAN trained on the target data only (--stage pretrain)
  finetune   TransferGAN: new classes start at the old classes' mean BN parameters, all trains
  freezeD    finetune with D's first 2 blocks frozen (--freezeD_layer 2)
  BN_only    only the new classes' own BN parameters train (no knowledge propagation)
  BN         cGANTransfer's BN stage (knowledge propagation)
  BN+FT      cGANTransfer: the BN stage, then FT from where it ended
Every stage trains --iters iterations, so BN+FT trains twice as long in all: BN is its first half, and
the ablation finetune_x2 gives fine-tuning the same budget. With
--source DIR (and --source_classes 1 for a source without config.json) the methods start from another
source, e.g. an unconditional one (TransferGAN's conditional transfer: `--methods finetune`).

With --DiffAugment POLICY every method runs with that augmentation of D's inputs and is listed as
METHOD+DA; run the study once with and once without it (the same --out) to compare.

Every run reports, in the world's classifier's feature space (not Inception): FID, mFID, KMMD, class
accuracy, IS, precision and recall (k = 3); memorization (memorization.py: its samples' distance to
their nearest training image relative to fresh real images', about 1: no copying); the IW critic
(iw_critic.py: pixel space, fresh real images against samples; negative, closer to 0 is better);
the trained G parameters and the wall time.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import statistics
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import flags  # noqa: E402
import iw_critic  # noqa: E402
import sampling  # noqa: E402
import stages  # noqa: E402
import utils  # noqa: E402
import worlds  # noqa: E402
from worlds import registry  # noqa: E402
from experiments import memorization, runs  # noqa: E402

METHODS = {
    "scratch": [["--stage", "pretrain", "--n_pretrain_classes", "0"]],
    "finetune": [["--stage", "finetune"]],
    "freezeD": [["--stage", "finetune", "--freezeD_layer", "2"]],
    "BN_only": [["--stage", "BN_only"]],
    "BN": [["--stage", "BN"]],
    "BN+FT": [["--stage", "BN"], ["--stage", "FT"]],
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
    "BN_no_l1_lr1e-3": [["--stage", "BN", "--comb_l1_scale", "0", "--G_lr", "1e-3"]],
    "BN_l1x10_lr1e-3": [["--stage", "BN", "--comb_l1_scale", "0.1", "--G_lr", "1e-3"]],
    "finetune_x2": [["--stage", "finetune"], ["--stage", "finetune"]],  # BN+FT's budget for fine-tuning
}
ALL_METHODS = {**METHODS, **ABLATIONS}
METRICS = ("FID", "mFID", "KMMD", "class_acc", "IS_mean", "precision", "recall", "NN_ratio", "IW")
HEADERS = ("FID ↓", "mFID ↓", "KMMD ↓", "class acc ↑", "IS ↑", "precision ↑", "recall ↑", "NN ratio", "IW ↑")
AUGMENTED = "+DA"  # suffix of a method run with --DiffAugment
MEMORIZATION_SAMPLES = 100  # per class, and as many fresh real images per class
IW_IMAGES = 500             # per class: fresh real images against as many samples
IW_STEPS = iw_critic.STEPS  # the critic's training steps


def run_name(method: str, augment: str) -> str:
    return method + AUGMENTED if augment else method


def base_method(name: str) -> str:
    return name[:-len(AUGMENTED)] if name.endswith(AUGMENTED) else name


def phase_budgets(method: str, iters: int) -> list[int]:
    """The iteration each phase of a method ends at: every phase (stage) trains `iters` iterations,
    so BN+FT trains 2 x iters in all (BN alone is its first half; finetune_x2 its equal budget)."""
    return [iters * (index + 1) for index in range(len(ALL_METHODS[method]))]


def measure_iw(G, config: dict, world: worlds.World) -> dict[str, float]:
    """The IW critic: IW_IMAGES fresh real images per class against as many samples of each class."""
    real, labels = world.fresh_images(IW_IMAGES)
    device = next(G.parameters()).device
    z = torch.randn(len(labels), G.dim_z, generator=torch.Generator().manual_seed(config["seed"])) * config["z_var"] ** 0.5
    with sampling.sampling_mode(G, config["G_eval_mode"]):
        fake = sampling.generate(G, z.to(device), G.class_input(labels.to(device)), config["G_batch_size"])
    result = iw_critic.independent_wasserstein(real, fake, seed=config["seed"], steps=IW_STEPS)
    return {"IW": result["IW"], "IW_train": result["IW_train"]}


def run_method(world: worlds.World, base: str, method: str, seed: int, iters: int, test_every: int, images: int,
               augment: str = "", amp: str = "auto", source_classes: int = 0) -> dict:
    """Train one method (resuming a run that was stopped); returns its final metrics (memorization
    and IW included), trained G parameters, wall time and log path."""
    name = f"{run_name(method, augment)}_seed{seed}"
    start, result, config = time.time(), None, None
    for phase, budget in zip(ALL_METHODS[method], phase_budgets(method, iters)):
        # The phase's flags come last, so that they win (scratch: --n_pretrain_classes 0).
        argv = ["--base_dir", base, "--experiment_name", name, *world.training, "--amp", amp,
                "--seed", str(seed), "--num_iters", str(budget), "--test_every", str(test_every),
                "--save_every", str(max(budget // 4, 1)), "--num_inception_images", str(images),
                *(["--n_pretrain_classes", str(source_classes)] if source_classes else []), *phase]
        if augment:
            argv += ["--DiffAugment", augment]
        has_config = os.path.isfile(os.path.join(base, "weights", "config.json"))
        if not stages.get(phase[1]).needs_source_model or not has_config:
            argv += world.architecture  # no config.json to take the architecture from
        config, result = runs.train_or_load(argv)  # a later phase continues the experiment (--resume)
    # The union over the phases (BN then FT trains what either stage trains).
    G = sampling.sampling_G(result["G"], result["G_ema"], config)
    trained_ids = {id(p) for phase in ALL_METHODS[method] for p in stages.G_parameters(G, stages.get(phase[1]))}
    trained = sum(p.numel() for p in G.parameters() if id(p) in trained_ids)
    fresh, fresh_labels = world.fresh_images(MEMORIZATION_SAMPLES)
    metrics = {**result["metrics"], **memorization.measure(G, config, fresh, fresh_labels, MEMORIZATION_SAMPLES, seed),
               **measure_iw(G, config, world)}
    return {"seed": seed, "metrics": {k: v for k, v in metrics.items() if not isinstance(v, str)},
            "trained_G_params": trained, "seconds": time.time() - start,
            "log": os.path.join(config["logs_root"], f"{name}_log.jsonl")}


def mean_std(values: list[float]) -> str:
    values = [v for v in values if isinstance(v, (int, float))]
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
                  "| method | seeds | " + " | ".join(HEADERS) + " | trained G params | wall time (s) |",
                  "|---|---|" + "---|" * (len(HEADERS) + 2)]
        for method, method_runs in in_method_order(by_method):
            cells = [mean_std([r["metrics"].get(m) for r in method_runs]) for m in METRICS]
            lines.append(f"| {method} | {len(method_runs)} | " + " | ".join(cells)
                         + f" | {method_runs[0]['trained_G_params']:,} | {mean_std([r['seconds'] for r in method_runs])} |")
    return "\n".join(lines) + "\n"


def curve_style(method: str) -> dict:
    """One colour per method in every panel; dashed with DiffAugment, dotted for an ablation."""
    base = base_method(method)
    colour = plt.get_cmap("tab10")(list(ALL_METHODS).index(base) % 10)
    style = "--" if method.endswith(AUGMENTED) else ":" if base in ABLATIONS else "-"
    return {"color": colour, "linestyle": style}


def plot_fid_curves(results: dict, png: str, space: str) -> None:
    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.5), squeeze=False)
    for ax, (shots, by_method) in zip(axes[0], results.items()):
        for method, method_runs in in_method_order(by_method):
            curves = [[(r["itr"], r["FID"]) for r in utils.read_jsonl(run["log"]) if "FID" in r] for run in method_runs]
            length = min(len(c) for c in curves)
            itrs = [p[0] for p in curves[0][:length]]
            ax.plot(itrs, [statistics.mean(c[i][1] for c in curves) for i in range(length)], marker="o",
                    markersize=3, label=method, **curve_style(method))
        ax.set_title(f"{shots} images per new class, mean over seeds", fontsize=9)
        ax.set_xlabel("iteration")
        ax.set_ylabel(f"FID ({space})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    utils.write_atomically(png, lambda f: fig.savefig(f, dpi=100, format="png"), binary=True)
    plt.close(fig)


def results_path(out: str, shots: int) -> str:
    return os.path.join(out, f"shots{shots}", "results.json")


def save_run(out: str, shots: int, method: str, run: dict) -> None:
    """Add one run to the shot count's results.json (replacing an earlier run of that method and
    seed), keeping everything else. Locked: study processes of one --out may finish at one moment."""
    path = results_path(out, shots)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        saved = load_results(path)
        saved[method] = [r for r in saved.get(method, []) if r.get("seed") != run["seed"]] + [run]
        utils.write_atomically(path, lambda f: json.dump(saved, f, indent=1))


def load_results(path: str) -> dict:
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def load_all_results(out: str) -> dict:
    """Every shot count finished so far (runs of different shot counts may be separate processes)."""
    results = {}
    for name in sorted(os.listdir(out), key=lambda n: int(n[5:]) if n[5:].isdigit() else 0):
        if name.startswith("shots") and os.path.isfile(os.path.join(out, name, "results.json")):
            results[int(name[5:])] = load_results(os.path.join(out, name, "results.json"))
    return results


def write_report(out: str, world: worlds.World, iters: int) -> str:
    results = load_all_results(out)
    table = markdown_table(results)
    utils.write_atomically(os.path.join(out, "study.md"), lambda f: f.write(
        f"World {world.name}; {iters} iterations per stage (BN+FT: {2 * iters} in all); metrics in the world's "
        "classifier's feature space (not Inception), IW in pixel space.\n" + table))
    plot_fid_curves(results, os.path.join(out, "fid_curves.png"), f"{world.name} classifier-space")
    return table


def split_world(new: list[str], out: str, source_iters: int) -> worlds.World:
    """The Fashion-MNIST world of another split: its assets (the source model of its old classes, its
    shots and reference statistics) built into OUT/assets from the raw data, unless there. Refused
    before any of it: an OUT of another world or split."""
    from worlds import fashion
    assets = os.path.join(out, "assets")
    world = fashion.world(tuple(new), assets)
    registry.check_study_world(out, world)
    fashion.build(os.path.join(out, "build"), assets, tuple(new), source_iters, classifier_epochs=6)
    return world


class HelpFormatter(argparse.RawDescriptionHelpFormatter, utils.HelpFormatter):
    """The module docstring as written, and each flag's default."""


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--world", default="fashion", choices=registry.NAMES, help="the world of old and new classes")
    parser.add_argument("--out", default="study_out", help="folder for the runs, the table and the plot")
    parser.add_argument("--shots", type=utils.at_least(1), nargs="+", default=[1, 5, 10, 50],
                        help="images per new class, one study each")
    parser.add_argument("--seeds", type=utils.at_least(0), nargs="+", default=[0, 1, 2],
                        help="seeds every method runs with")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(ALL_METHODS), metavar="METHOD",
                        help=f"methods to run (default: the six methods {' '.join(METHODS)}; "
                             f"the ablations: {' '.join(ABLATIONS)})")
    parser.add_argument("--iters", type=utils.at_least(1), default=1000, help="iterations of every stage of a method")
    parser.add_argument("--test_every", type=utils.at_least(1), default=200, help="iterations between evaluations")
    parser.add_argument("--num_inception_images", type=utils.at_least(1), default=1000, help="samples per evaluation")
    parser.add_argument("--DiffAugment", default="", metavar="POLICY", type=flags.diffaugment_policy,
                        help="run every method with this DiffAugment policy (e.g. color,translation,cutout), "
                             "listed as METHOD+DA ('' = none)")
    parser.add_argument("--source", default="", metavar="DIR",
                        help="folder with the source model's G.pth, D.pth (and config.json) (default: the world's); "
                             "a study per source, each with its own --out")
    parser.add_argument("--source_classes", type=utils.at_least(0), default=0,
                        help="classes of a --source without config.json, whose architecture is then the world's "
                             "(1: an unconditional source); 0: from its "
                             "config.json")
    parser.add_argument("--amp", choices=("auto", "none", "bf16", "fp16"), default="auto",
                        help="precision of every run, train.py's --amp; compare precisions with one --out each")
    parser.add_argument("--new", default="", metavar="CLASSES",
                        help="Fashion-MNIST: another split, its new classes comma-separated (the others old): its source "
                             "model is pretrained first into OUT/assets (worlds/fashion.py build), then the study runs")
    parser.add_argument("--source_iters", type=utils.at_least(1), default=2000,
                        help="with --new: pretraining iterations of the split's source model")
    args = parser.parse_args(argv)
    if args.new and args.world != "fashion":
        parser.error("argument --new: only the fashion world has other splits")
    world = split_world(args.new.split(","), args.out, args.source_iters) if args.new else registry.get(args.world)
    for shots in args.shots:
        base = os.path.join(args.out, f"shots{shots}")
        registry.check_study_world(args.out, world)  # before anything is written for another world
        world.prepare(base, shots, seed=0, source=args.source)
        registry.record_study_world(args.out, world)  # its data is of this world: analyses read it
        for method in args.methods:
            name = run_name(method, args.DiffAugment)
            done = {r.get("seed") for r in load_results(results_path(args.out, shots)).get(name, [])}
            for seed in args.seeds:
                if seed in done:
                    continue
                run = run_method(world, base, method, seed, args.iters, args.test_every, args.num_inception_images,
                                 args.DiffAugment, args.amp, args.source_classes)
                save_run(args.out, shots, name, run)
    table = write_report(args.out, world, args.iters)
    print(table)
    print(f"Table: {os.path.join(args.out, 'study.md')}; plot: {os.path.join(args.out, 'fid_curves.png')}")
    return load_all_results(args.out)


if __name__ == "__main__":
    utils.run_main(main)
