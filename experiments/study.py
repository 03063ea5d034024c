"""The transfer study: every method on a world (Fashion-MNIST by default, or the toy world), at
several shot counts and seeds, trained by the same rule, evaluated the same way. Writes a markdown
table (mean ± std over seeds), the equal-compute table, and plots of FID against iterations and
against training seconds per method.

    python -m experiments.study --out study_fashion                 # the default study
    python -m experiments.study --out quick --iters 100 --seeds 0 --shots 10   # a quick look
    python -m experiments.study --out study_fashion --DiffAugment color,translation,cutout \\
        --methods finetune BN+FT
    python -m experiments.study --world toy --out study_toy --shots 1 3 10 --seeds 0 1 --iters 1000
    # another Fashion-MNIST split:
    python -m experiments.study --new Shirt,Sneaker,Bag --out study_split2
    python -m experiments.study --out long --shots 100 500 --iters 20000 --patience 5  # to its best

Every run is saved as it finishes (OUT/shots<N>/results.json, one entry per method and seed), and a
study started again skips the runs it has and resumes a run that was stopped: it resumes and extends
(more seeds, shots or methods on the same --out; shot counts may run as separate processes).

Methods (all from the world's source model, except scratch):
  scratch    conditional BigGAN trained on the target data only (--stage pretrain)
  finetune   TransferGAN: new classes start at the old classes' mean BN parameters, all trains
  freezeD    finetune with D's first 2 blocks frozen (--freezeD_layer 2)
  BN_only    only the new classes' own BN parameters train (no knowledge propagation)
  BN         cGANTransfer's BN stage (knowledge propagation)
  BN+FT      cGANTransfer: the BN stage, then FT from the BN stage's best set
The stopping rule, the same for every stage of every method: evaluate every --test_every iterations,
keep the best set by FID (the world's --which_best), stop when FID has not improved for --patience
evaluations in a row, or at --iters iterations, the cap (--patience 0: every stage trains --iters).
A later stage is an experiment of its own (METHOD_seedS_phase1 is the first of two; METHOD_seedS the
last, whose best set is the run's) that starts from the earlier stage's best set (--start_from
NAME:best), so BN+FT trains up to twice as long in all: BN is its first part, and the ablation
finetune_x2 gives fine-tuning the same budget (fine-tuning again from its best set). With
--source DIR (and --source_classes 1 for a source without config.json) the methods start from
another source, e.g. an unconditional one (TransferGAN's conditional transfer:
`--methods finetune`).

With --DiffAugment POLICY every method runs with that augmentation of D's inputs and is listed as
METHOD+DA; run the study once with and once without it (the same --out) to compare.

Every run reports, of its best set (the last stage's; runs.best_or_last), in the world's
classifier's feature space (not Inception): FID, mFID, KMMD, class accuracy, IS, precision and
recall (k = 3); memorization (memorization.py: its samples' distance to their nearest training image
relative to fresh real images', about 1: no copying) and the IW critic (iw_critic.py: pixel space,
fresh real images against samples; negative, closer to 0 is better), both of the best set's G; the
trained G parameters; the best set's iteration; the training time and the wall time.
Iterations and training seconds of a run count over its stages (the FT stage of BN+FT starts after
all of BN's, the iterations it trained past its best included). Training seconds are the runs'
train_seconds (train.py: the wall-clock of the training iterations, over resumes, without the saves
and evaluations); wall time is the study's time for the run, evaluations and final metrics included.

Equal compute (study.md, fid_seconds.png): FID against training seconds per method (mean over the
seeds at each evaluation, as far as every seed ran, against their mean training seconds), and each
method's best FID within equal training-time budgets: with T the slowest method's mean training time
at that shot count, the budgets are 25%, 50% and 100% of T; a run's value at budget B is the lowest
FID among its evaluations (of any stage) made within B training seconds, a run that stopped before
B keeping its best; a cell is the mean ± std over seeds, "–" where a seed had no evaluation
within B.
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

import checkpoints  # noqa: E402
import flags  # noqa: E402
import iw_critic  # noqa: E402
import run_folder  # noqa: E402
import sampling  # noqa: E402
import stages  # noqa: E402
import utils  # noqa: E402
import worlds  # noqa: E402
from worlds import fashion, registry  # noqa: E402
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
    # BN+FT's budget for fine-tuning
    "finetune_x2": [["--stage", "finetune"], ["--stage", "finetune"]],
}
ALL_METHODS = {**METHODS, **ABLATIONS}
METRICS = ("FID", "mFID", "KMMD", "class_acc", "IS_mean", "precision", "recall", "NN_ratio", "IW")
HEADERS = ("FID ↓", "mFID ↓", "KMMD ↓", "class acc ↑", "IS ↑", "precision ↑", "recall ↑",
           "NN ratio", "IW ↑")
AUGMENTED = "+DA"  # suffix of a method run with --DiffAugment
MEMORIZATION_SAMPLES = 100  # per class, and as many fresh real images per class
IW_IMAGES = 500             # per class: fresh real images against as many samples
IW_STEPS = iw_critic.STEPS  # the critic's training steps


def run_name(method: str, augment: str) -> str:
    return method + AUGMENTED if augment else method


def base_method(name: str) -> str:
    return name[:-len(AUGMENTED)] if name.endswith(AUGMENTED) else name


def phase_names(method: str, augment: str, seed: int) -> list[str]:
    """The experiment of each phase (stage) of a run: the last is METHOD_seedS, whose best set is
    the run's; an earlier one METHOD_seedS_phaseK."""
    name = f"{run_name(method, augment)}_seed{seed}"
    count = len(ALL_METHODS[method])
    return [name if index == count - 1 else f"{name}_phase{index + 1}" for index in range(count)]


def measure_iw(G, config: dict, world: worlds.World) -> dict[str, float]:
    """The IW critic: IW_IMAGES fresh real images per class against as many samples of each
    class."""
    real, labels = world.fresh_images(IW_IMAGES)
    device = next(G.parameters()).device
    z = sampling.seeded_z(len(labels), G.dim_z, config["seed"], config["z_var"])
    with sampling.sampling_mode(G, config["G_eval_mode"]):
        fake = sampling.generate(G, z.to(device), G.class_input(labels.to(device)),
                                 config["G_batch_size"])
    result = iw_critic.independent_wasserstein(real, fake, seed=config["seed"], steps=IW_STEPS)
    return {"IW": result["IW"], "IW_train": result["IW_train"]}


def run_method(world: worlds.World, base: str, method: str, seed: int, iters: int, test_every: int,
               images: int, augment: str = "", amp: str = "auto", source_classes: int = 0,
               patience: int = 0) -> dict:
    """Train one method, each phase by the study's stopping rule (resuming a run that was stopped),
    a later phase from the best set of the one before; returns the metrics of the last phase's best
    set (memorization and IW of its G included), its iteration, the FID curve over all phases,
    trained G parameters, training and wall time, and the last phase's log path (relative to the
    study folder, so that the results read the same wherever the folder is moved)."""
    start, names, phases = time.time(), phase_names(method, augment, seed), []
    check_not_one_experiment(base, method, names)
    for index, phase in enumerate(ALL_METHODS[method]):
        # The phase's flags come last, so that they win (scratch: --n_pretrain_classes 0).
        argv = ["--base_dir", base, "--experiment_name", names[index], *world.training,
                "--amp", amp, "--seed", str(seed), "--num_iters", str(iters),
                "--test_every", str(test_every), "--patience", str(patience),
                "--save_every", str(max(iters // 4, 1)), "--num_inception_images", str(images),
                *(["--n_pretrain_classes", str(source_classes)] if source_classes else []), *phase]
        if augment:
            argv += ["--DiffAugment", augment]
        if index:
            argv += ["--start_from", f"{names[index - 1]}:best"]
        has_config = os.path.isfile(os.path.join(base, "weights", "config.json"))
        if not stages.get(phase[1]).needs_source_model or not has_config:
            argv += world.architecture  # no config.json to take the architecture from
        phases.append(runs.train_or_load(argv))
    config, best = phases[-1][0], runs.best_or_last(*phases[-1])
    # The union over the phases (BN then FT trains what either stage trains).
    G = sampling.sampling_G(best["G"], best["G_ema"], config["use_ema"])
    trained_ids = {id(p) for phase in ALL_METHODS[method]
                   for p in stages.G_parameters(G, stages.get(phase[1]))}
    trained = sum(p.numel() for p in G.parameters() if id(p) in trained_ids)
    fresh, fresh_labels = world.fresh_images(MEMORIZATION_SAMPLES)
    metrics = {**best["metrics"],
               **memorization.measure(G, config, fresh, fresh_labels, MEMORIZATION_SAMPLES, seed),
               **measure_iw(G, config, world)}
    curve, before = phases_curve(phases)
    at_best, end = best["state_dict"], curve_end(phases)
    return {"seed": seed, "metrics": {k: v for k, v in metrics.items() if not isinstance(v, str)},
            "trained_G_params": trained, "best_itr": before["itr"] + at_best["itr"],
            "best_train_seconds": before["train_seconds"] + at_best.get("train_seconds", 0.0),
            "iterations": end["itr"], "train_seconds": end["train_seconds"],
            "curve": curve, "seconds": time.time() - start,
            "log": os.path.relpath(os.path.join(config["logs_root"], f"{names[-1]}_log.jsonl"),
                                   os.path.dirname(os.path.abspath(base)))}


def check_not_one_experiment(base: str, method: str, names: list[str]) -> None:
    """A run of several stages that an earlier study trained in one experiment (METHOD_seedS, FT
    continuing BN's latest set) is refused: continued here, it would mix the two rules."""
    first, last = (os.path.join(base, "weights", name) for name in (names[0], names[-1]))
    if len(names) > 1 and checkpoints.existing_sets(last) and not os.path.isdir(first):
        raise utils.UsageError(f"{last} holds a {method} run of an earlier study, which trained "
                               "its stages in one experiment; move it away (or use another --out) "
                               "to run it again, each stage from the best set of the one before")


def phases_curve(phases: list[tuple[dict, dict]]) -> tuple[list[dict], dict]:
    """The FID of every evaluation of a run's phases at its iteration and training seconds counted
    over the phases, and where the last phase began (the iterations and seconds before it)."""
    curve, before = [], {"itr": 0, "train_seconds": 0.0}
    for index, (config, result) in enumerate(phases):
        if index:
            before = curve_end(phases[:index])
        log = run_folder.RunFolder.of(config).metrics_log
        for record in utils.read_jsonl(log) if os.path.isfile(log) else []:
            if "FID" in record:
                seconds = record.get("train_seconds")
                curve.append({"itr": before["itr"] + record["itr"], "FID": record["FID"],
                              "train_seconds": None if seconds is None
                              else before["train_seconds"] + seconds})
    return curve, before


def curve_end(phases: list[tuple[dict, dict]]) -> dict:
    """The iterations and training seconds of the phases in all: each phase's last state's."""
    states = [result["state_dict"] for _, result in phases]
    return {"itr": sum(state["itr"] for state in states),
            "train_seconds": sum(state.get("train_seconds", 0.0) for state in states)}


def mean_std(values: list[float], digits: int = 3) -> str:
    values = [v for v in values if isinstance(v, (int, float))]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def in_method_order(by_method: dict) -> list[tuple[str, list]]:
    """Methods in ALL_METHODS order, each without augmentation first."""
    return sorted(by_method.items(),
                  key=lambda item: (list(ALL_METHODS).index(base_method(item[0])),
                                    item[0].endswith(AUGMENTED)))


def markdown_table(results: dict) -> str:
    lines = []
    for shots, by_method in results.items():
        lines += [f"\n**{shots} images per new class**\n",
                  "| method | seeds | " + " | ".join(HEADERS)
                  + " | trained G params | best at iteration | training time (s) | wall time (s) |",
                  "|---|---|" + "---|" * (len(HEADERS) + 4)]
        for method, method_runs in in_method_order(by_method):
            cells = [mean_std([r["metrics"].get(m) for r in method_runs]) for m in METRICS]
            cells += [f"{method_runs[0]['trained_G_params']:,}",
                      mean_std([r.get("best_itr") for r in method_runs], 0),
                      mean_std([r.get("train_seconds") for r in method_runs], 0),
                      mean_std([r["seconds"] for r in method_runs], 0)]
            lines.append(f"| {method} | {len(method_runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_curve(run: dict) -> list[dict]:
    """A run's evaluations: {itr, FID, train_seconds} over its phases (a run saved before the study
    kept them: its log's, train_seconds where logged)."""
    if "curve" in run:
        return run["curve"]
    return [{"itr": r["itr"], "FID": r["FID"], "train_seconds": r.get("train_seconds")}
            for r in utils.read_jsonl(run["log"]) if "FID" in r]


def mean_curve(method_runs: list[dict], x: str) -> tuple[list[float], list[float]]:
    """(mean x, mean FID) over the seeds at each evaluation, as far as every seed ran; empty where a
    seed did not log x."""
    curves = [run_curve(run) for run in method_runs]
    length = min(len(curve) for curve in curves)
    if any(point[x] is None for curve in curves for point in curve[:length]):
        return [], []
    return ([statistics.mean(curve[i][x] for curve in curves) for i in range(length)],
            [statistics.mean(curve[i]["FID"] for curve in curves) for i in range(length)])


BUDGET_SHARES = (0.25, 0.5, 1.0)  # of the slowest method's mean training time


def best_within(run: dict, budget: float) -> float | None:
    """The lowest FID of a run's evaluations (any phase) within `budget` training seconds."""
    fids = [point["FID"] for point in run_curve(run)
            if point["train_seconds"] is not None and point["train_seconds"] <= budget]
    return min(fids) if fids else None


def equal_compute_table(results: dict) -> str:
    """Each method's best FID within 25/50/100% of the slowest method's mean training time (the
    module's docstring says how)."""
    lines = []
    for shots, by_method in results.items():
        means = [statistics.mean(r["train_seconds"] for r in method_runs)
                 for method_runs in by_method.values()
                 if all(isinstance(r.get("train_seconds"), (int, float)) for r in method_runs)]
        if not means:
            continue
        budgets = [share * max(means) for share in BUDGET_SHARES]
        columns = [f"{share:.0%} of T (≤ {budget:.0f} s)"
                   for share, budget in zip(BUDGET_SHARES, budgets)]
        lines += [f"\n**Equal compute, {shots} images per new class**: best FID within a "
                  f"training-time budget (T = {max(means):.0f} s, the slowest method's mean "
                  "training time)\n",
                  "| method | " + " | ".join(columns) + " |",
                  "|---|" + "---|" * len(budgets)]
        for method, method_runs in in_method_order(by_method):
            cells = []
            for budget in budgets:
                values = [best_within(run, budget) for run in method_runs]
                cells.append("–" if None in values else mean_std(values))
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n" if lines else ""


def curve_style(method: str) -> dict:
    """One colour per method in every panel; dashed with DiffAugment, dotted for an ablation."""
    base = base_method(method)
    colour = plt.get_cmap("tab10")(list(ALL_METHODS).index(base) % 10)
    style = "--" if method.endswith(AUGMENTED) else ":" if base in ABLATIONS else "-"
    return {"color": colour, "linestyle": style}


def plot_fid_curves(results: dict, png: str, space: str, x: str = "itr") -> None:
    """FID against iterations (x "itr") or training seconds (x "train_seconds") per method, mean
    over seeds, one panel per shot count."""
    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.5), squeeze=False)
    for ax, (shots, by_method) in zip(axes[0], results.items()):
        for method, method_runs in in_method_order(by_method):
            xs, fids = mean_curve(method_runs, x)
            if xs:
                ax.plot(xs, fids, marker="o", markersize=3, label=method, **curve_style(method))
        ax.set_title(f"{shots} images per new class, mean over seeds", fontsize=9)
        ax.set_xlabel("iteration" if x == "itr" else "training seconds")
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
    seed), keeping everything else. Locked: study processes of one --out may finish at one
    moment."""
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
    """Every shot count finished so far (runs of different shot counts may be separate
    processes)."""
    results = {}
    for name in sorted(os.listdir(out), key=lambda n: int(n[5:]) if n[5:].isdigit() else 0):
        if name.startswith("shots") and os.path.isfile(os.path.join(out, name, "results.json")):
            results[int(name[5:])] = load_results(os.path.join(out, name, "results.json"))
    return results


def write_report(out: str, world: worlds.World, iters: int, patience: int = 0) -> str:
    results = load_all_results(out)
    table = markdown_table(results) + equal_compute_table(results)
    rule = (f"each stage until FID has not improved for {patience} evaluations, at most {iters} "
            "iterations" if patience else f"{iters} iterations per stage")
    utils.write_atomically(os.path.join(out, "study.md"), lambda f: f.write(
        f"World {world.name}; {rule} (BN+FT: FT from BN's best set); every run's best set "
        "reported, its iteration counted over its stages; metrics in the world's classifier's "
        "feature space (not Inception), IW in pixel space.\n" + table))
    space = f"{world.name} classifier-space"
    plot_fid_curves(results, os.path.join(out, "fid_curves.png"), space)
    plot_fid_curves(results, os.path.join(out, "fid_seconds.png"), space, x="train_seconds")
    return table


def split_world(new: list[str], out: str, source_iters: int, source_patience: int = 0,
                source_ema: bool = False) -> worlds.World:
    """The Fashion-MNIST world of another split: its assets (the source model of its old classes,
    pretrained as `worlds.fashion build` does with these three options; its shots and reference
    statistics) built into OUT/assets from the raw data, unless there.
    Refused before any of it: an OUT of another world or split."""
    assets = os.path.join(out, "assets")
    world = fashion.world(tuple(new), assets)
    registry.check_study_world(out, world)
    fashion.build(os.path.join(out, "build"), assets, tuple(new), source_iters, classifier_epochs=6,
                  source_patience=source_patience, source_ema=source_ema)
    return world


class HelpFormatter(argparse.RawDescriptionHelpFormatter, utils.HelpFormatter):
    """The module docstring as written, and each flag's default."""


def prepare_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--world", default="fashion", choices=registry.NAMES,
                        help="the world of old and new classes")
    parser.add_argument("--out", default="study_out",
                        help="folder for the runs, the table and the plot")
    parser.add_argument("--shots", type=utils.at_least(1), nargs="+", default=[1, 5, 10, 50],
                        help="images per new class, one study each")
    parser.add_argument("--seeds", type=utils.at_least(0), nargs="+", default=[0, 1, 2],
                        help="seeds every method runs with")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(ALL_METHODS),
                        metavar="METHOD",
                        help=f"methods to run (default: the six methods {' '.join(METHODS)}; "
                             f"the ablations: {' '.join(ABLATIONS)})")
    parser.add_argument("--iters", type=utils.at_least(1), default=1000,
                        help="iterations of every stage of a method: the cap with --patience")
    parser.add_argument("--patience", type=utils.at_least(0), default=0, metavar="K",
                        help="every stage stops when FID has not improved for K evaluations in a "
                             "row (train.py --patience); 0: every stage trains --iters")
    parser.add_argument("--test_every", type=utils.at_least(1), default=200,
                        help="iterations between evaluations")
    parser.add_argument("--num_inception_images", type=utils.at_least(1), default=1000,
                        help="samples per evaluation")
    parser.add_argument("--DiffAugment", default="", metavar="POLICY",
                        type=flags.diffaugment_policy,
                        help="run every method with this DiffAugment policy (e.g. "
                             "color,translation,cutout), listed as METHOD+DA ('' = none)")
    parser.add_argument("--source", default="", metavar="DIR",
                        help="folder with the source model's G.pth, D.pth (and config.json) "
                             "(default: the world's); a study per source, each with its own --out")
    parser.add_argument("--source_classes", type=utils.at_least(0), default=0,
                        help="classes of a --source without config.json, whose architecture is "
                             "then the world's (1: an unconditional source); 0: from its "
                             "config.json")
    parser.add_argument("--amp", choices=("auto", "none", "bf16", "fp16"), default="auto",
                        help="precision of every run, train.py's --amp; compare precisions with "
                             "one --out each")
    parser.add_argument("--new", default="", metavar="CLASSES",
                        help="Fashion-MNIST: another split, its new classes comma-separated (the "
                             "others old): its source model is pretrained first into OUT/assets "
                             "(worlds/fashion.py build), then the study runs")
    fashion.add_source_pretraining_flags(parser, when="with --new: ")
    return parser


def main(argv: list[str] | None = None) -> dict:
    parser = prepare_parser()
    args = parser.parse_args(argv)
    if args.new and args.world != "fashion":
        parser.error("argument --new: only the fashion world has other splits")
    world = (split_world(args.new.split(","), args.out, args.source_iters, args.source_patience,
                         args.source_ema) if args.new
             else registry.get(args.world))
    for shots in args.shots:
        base = os.path.join(args.out, f"shots{shots}")
        registry.check_study_world(args.out, world)  # before anything is written for another world
        world.prepare(base, shots, seed=0, source=args.source)
        registry.record_study_world(args.out, world)  # its data is of this world: analyses read it
        for method in args.methods:
            name = run_name(method, args.DiffAugment)
            done = {r.get("seed")
                    for r in load_results(results_path(args.out, shots)).get(name, [])}
            for seed in args.seeds:
                if seed in done:
                    continue
                run = run_method(world, base, method, seed, args.iters, args.test_every,
                                 args.num_inception_images, args.DiffAugment, args.amp,
                                 args.source_classes, args.patience)
                save_run(args.out, shots, name, run)
    table = write_report(args.out, world, args.iters, args.patience)
    print(table)
    plots = ", ".join(os.path.join(args.out, png) for png in ("fid_curves.png", "fid_seconds.png"))
    print(f"Table: {os.path.join(args.out, 'study.md')}; plots: {plots}")
    return load_all_results(args.out)


if __name__ == "__main__":
    utils.run_main(main)
