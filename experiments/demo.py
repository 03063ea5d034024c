"""The default run: cGANTransfer's two stages on real images, on a CPU, with nothing downloaded.
A shipped source BigGAN of a world's old classes is transferred to its new classes from a few images
each: stage BN (knowledge propagation), then stage FT started from BN's best checkpoint.

    bash train.sh                                 # python -m experiments.demo: Fashion-MNIST
    python -m experiments.demo --world toy        # the generated toy world
    python -m experiments.demo --seed 1 --base_dir base_dir_seed1

Steps, each keeping what is there (nothing the user has is overwritten; run it again after a kill
and it continues where it stopped):
  1. the world's data in BASE/data (the few shots per new class, reference statistics of held-out
     images in the world's metric classifier's space) and its source model with config.json in
     BASE/weights (worlds/)
  2. stage BN: experiment <world>_BN, in-loop metrics, best checkpoints by FID
  3. stage FT: experiment <world>_FT, --start_from <world>_BN:best
  4. the report: the metrics of each stage's best checkpoint and the memorization ratio, one plot
     over both stages, the training shots beside samples of each class, and the old classes each
     new class draws on (of FT's best checkpoint: the one `sample.py --load_weights best`
     samples).
The metrics live in the world's classifier's feature space, not Inception's.
"""
from __future__ import annotations

import argparse
import os
from typing import Any, Mapping


import checkpoints
import datasets
import explain
import flags
import run_folder
import sampling
import utils
import worlds
from worlds import registry
from experiments import memorization, plots, runs

MEMORIZATION_SAMPLES = 100  # per class, and as many fresh real images per class


def stage_argv(world: worlds.World, base: str, stage: str, iters: int, stage_flags: tuple[str, ...],
               seed: int, extra: list[str]) -> list[str]:
    """train.py's flags for one stage: the world's, the stage's, then the user's (later flags win).
    FT starts from BN's best checkpoint; from its latest, and says so, when BN kept none (it ran
    without in-loop metrics, --no_fid). Called once BN has finished (runs.train_or_load: its final
    evaluation, which saves a best set when it is the first, is part of that)."""
    argv = ["--base_dir", base, "--experiment_name", experiment_name(world, stage),
            *world.training, "--stage", stage, *stage_flags, "--num_iters", str(iters),
            "--save_every", str(max(iters // 4, 1)), "--seed", str(seed), *extra]
    if stage != "BN":
        previous = experiment_name(world, "BN")
        if checkpoints.best_sets(os.path.join(base, "weights", previous)):
            argv += ["--start_from", f"{previous}:best"]
        else:
            print(f"{previous} kept no best checkpoint (it ran without in-loop metrics): {stage} "
                  "starts from its latest")
            argv += ["--start_from", previous]
    return argv


def experiment_name(world: worlds.World, stage: str) -> str:
    return f"{world.name}_{stage}"


def write_shots_and_samples(config: Mapping[str, Any], G, path: str) -> None:
    """The few-shot training images of each new class beside G's samples of it, in one figure."""
    data = datasets.load_dataset(config["dataset"], config["data_root"],
                                 resolution=config["resolution"])
    real = datasets.first_images_per_class(data, config["n_classes"], 5)
    z = sampling.seeded_z(8, G.dim_z, config["seed"], config["z_var"])
    with sampling.sampling_mode(G, config["G_eval_mode"]):
        images, per_row = sampling.training_images_and_samples(real, G,
                                                               z.to(next(G.parameters()).device))
    sampling.save_image_grid(images, path, nrow=per_row)


def report(world: worlds.World, stages: list[tuple[Mapping[str, Any], dict]]) -> dict:
    """The metrics of each stage's best checkpoint, memorization, the figures and the old classes
    each new class draws on, of the last stage's best; returns the last stage's numbers."""
    stages = [(config, runs.best_or_last(config, result)) for config, result in stages]
    last_config, last = stages[-1]
    G = sampling.sampling_G(last["G"], last["G_ema"], last_config["use_ema"])
    samples = run_folder.RunFolder.of(last_config).samples
    plot = os.path.join(samples, "metrics.png")
    logs = [(config["stage"], run_folder.RunFolder.of(config).metrics_log) for config, _ in stages]
    if all(os.path.isfile(path) for _, path in logs):
        title = f"{world.name}: " + " then ".join(config["stage"] for config, _ in stages)
        plots.plot_stages(logs, plot, title=title, space="classifier")
    else:  # no in-loop metrics (--no_fid): no log to plot
        plot = "none (no in-loop metrics)"
    figure = os.path.join(samples, "training_images_and_samples.png")
    write_shots_and_samples(last_config, G, figure)
    fresh, fresh_labels = world.fresh_images(MEMORIZATION_SAMPLES)
    memorized = memorization.measure(G, last_config, fresh, fresh_labels, MEMORIZATION_SAMPLES,
                                     last_config["seed"])
    old_names = (last_config.get("old_class_names")
                 or explain.placeholder_names("old", G.n_pretrain_classes))
    explanation = explain.combination_report(G.cpu().eval(), last_config["class_names"], old_names)
    heatmap = os.path.join(samples, explain.HEATMAP_NAME)
    explain.write_heatmap(explanation, heatmap)

    print(f"\nMetrics of each stage's best checkpoint by {last_config['which_best']} (the one FT "
          f"starts from, and `--load_weights best`; {world.name} classifier's feature space, not "
          "Inception):")
    print(f"  {'':12s}" + "".join(f"{config['stage']:>10s}" for config, _ in stages))
    print(f"  {'iteration':12s}"
          + "".join(f"{result['state_dict'].get('itr', '-'):>10}" for _, result in stages))
    for key in ("FID", "mFID", "KMMD", "IS_mean", "class_acc", "precision", "recall"):
        values = [result["metrics"].get(key) for _, result in stages]
        if any(isinstance(v, float) for v in values):
            print(f"  {key:12s}" + "".join(f"{v:10.4f}" if isinstance(v, float) else f"{'-':>10s}"
                                           for v in values))
    print(f"  NN ratio of the {last_config['stage']} samples: {memorized['NN_ratio']:.3f} "
          "(distance to the nearest training image, relative to fresh real images'; 1: no copying)")
    print("\nWhat each new class draws on (explain.py):")
    print(explain.format_report(explanation, 3))
    print(f"\nTraining images (left) beside samples (right), per class:\n  {figure}\nMetrics over "
          f"both stages: {plot}\nCombination weights:      {heatmap}\nCheckpoints:              "
          f"{', '.join(run_folder.folder(config) for config, _ in stages)}\nSample sheets:         "
          f"   {samples}")
    return {**{k: v for k, v in last["metrics"].items() if isinstance(v, float)}, **memorized}


def prepare_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--world", default="fashion", choices=registry.NAMES, help="the world to transfer in")
    add("--base_dir", default="base_dir", help="the folder of data, weights, logs and samples")
    add("--seed", type=utils.at_least(0), default=0, help="training seed (the data stays)")
    add("--shots", type=utils.at_least(1), default=0,
        help="images per new class (0: the world's)")
    add("--iters", type=utils.at_least(1), nargs=2, default=None, metavar=("BN", "FT"),
        help="iterations of the BN and the FT stage (default: the world's)")
    add("--prepare_only", action="store_true", help="step 1 only (bash prepare_data.sh)")
    return parser


def main(argv: list[str] | None = None) -> dict:
    # the rest goes to train.py, e.g. --amp none
    args, extra = prepare_parser().parse_known_args(argv)
    # a typo stops us before any work
    flags.prepare_parser("The default run's train.py flags").parse_args(extra)
    world = registry.get(args.world)
    world.prepare(args.base_dir, args.shots or world.demo_shots)
    if args.prepare_only:
        return {}
    stages = []
    for index, (stage, iters, stage_flags) in enumerate(world.demo_stages):
        iters = args.iters[index] if args.iters else iters
        print(f"[{index + 1}/{len(world.demo_stages)}] stage {stage}, {iters} iterations")
        stages.append(runs.train_or_load(stage_argv(world, args.base_dir, stage, iters,
                                                    stage_flags, args.seed, extra)))
    return report(world, stages)


if __name__ == "__main__":
    utils.run_main(main)
