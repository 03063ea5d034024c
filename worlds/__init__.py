"""Worlds: old and new classes that the project ships or builds, behind one small interface, for the
default run (experiments.demo), the transfer study (experiments.study) and the forgetting
measurement (experiments.forgetting).

    fashion  Fashion-MNIST (Xiao et al. 2017), real 28 px photos of clothes at 32 px: 7 old classes,
             3 new ones (Pullover, Coat, Ankle boot); the default
    toy      generated 32 px shapes x colours: 12 old classes, 4 new ones that recombine them

A world lays out a base directory as a user's own transfer is laid out (README, "your own dataset"):
BASE/data/<new dataset>/ with `shots` images per new class and reference statistics of the new (and
old) classes in the world's metric classifier's space, and the source model in BASE/weights/ (G.pth,
D.pth and its config.json, so no architecture flag needs repeating). Each step keeps what is there.

This package's own module holds what the worlds share; worlds.registry picks one by name.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from typing import Callable

import torch

import utils

@dataclass(frozen=True)
class World:
    name: str
    summary: str
    new_dataset: str        # the few-shot training data of the new classes (a dataset name)
    old_dataset: str        # the source model's data: the old classes (its moments describe them)
    classifier: str         # the metric classifier checkpoint (--backbone classifier)
    source: str             # the folder holding the source model: G.pth, D.pth, config.json
    # the source model's flags (a run without a source, e.g. from scratch, needs them)
    architecture: tuple[str, ...]
    # train.py flags of a transfer in this world (the demo's and the study's runs)
    training: tuple[str, ...]
    demo_shots: int            # the default run's images per new class
    # the default run: (stage, iterations, its flags)
    demo_stages: tuple[tuple[str, int, tuple[str, ...]], ...]
    # (data_root, shots, seed): the few shots and their statistics
    prepare_new: Callable[[str, int, int], None]
    # (data_root) -> the old classes' reference moments
    prepare_old: Callable[[str], str]
    # (per class) -> real new-class images no training set of the world holds, in [-1, 1], labels
    fresh_images: Callable[[int], tuple[torch.Tensor, torch.Tensor]]
    new_classes: tuple[str, ...] = ()  # the split: the new classes' names (a study records them)
    old_classes: tuple[str, ...] = ()  # the old classes' names, the source model's
    assets: str = ""  # the folder of the split's own assets ('': the project's assets/)

    def prepare(self, base: str, shots: int, seed: int = 0, source: str = "") -> None:
        """BASE/data: `shots` images per new class (chosen by seed) and their reference statistics;
        BASE/weights: the source model (the world's, or the folder `source`)."""
        self.prepare_new(os.path.join(base, "data"), shots, seed)
        install_source(os.path.join(base, "weights"), source or self.source)

    @property
    def metric_flags(self) -> tuple[str, ...]:
        return ("--backbone", "classifier", "--inception_weights", self.classifier)


def transfer_flags(dataset: str, classifier: str, batch_size: int, *more: str) -> tuple[str, ...]:
    """train.py flags of a transfer in a world: the official CIFAR propagation setup (N02 init, G_lr
    = D_lr = 2e-4, L1 0.01 on the combination, L2 0.01 on the residual) at one D step, metrics in
    the world's classifier's space every 100 iterations with best checkpoints by FID, then
    `more`."""
    return ("--dataset", dataset, "--kp_variant", "cifar", "--G_init", "N02", "--D_init", "N02",
            "--batch_size", str(batch_size), "--num_D_steps", "1", "--num_D_accumulations", "1",
            "--G_lr", "2e-4", "--D_lr", "2e-4", "--comb_l1_scale", "0.01", "--res_l2_scale", "0.01",
            "--test_every", "100", "--which_best", "FID", "--num_inception_images", "1000",
            "--mfid", "--kmmd", "--precision_recall", "--backbone", "classifier",
            "--inception_weights", classifier, "--use_multiepoch_sampler", "--num_epochs", "100000",
            "--num_workers", "0", "--num_save_copies", "1", "--num_best_copies", "1",
            # Sheets and metrics from BN running statistics: a one-class batch in train mode would
            # normalize the class-specific shifts away.
            "--G_eval_mode", *more)


MACHINE_PATHS = ("base_dir", "base_root", "data_root", "weights_root", "logs_root", "samples_root")


def publish_source(folder: str, out: str, which: str = "latest", generator: str = "G") -> None:
    """A source experiment's set `which` ('latest', 'best' or a slot) as a source model folder that
    works on any machine: its `generator` ('G', or 'G_ema': its exponential moving average) as
    G.pth, its D.pth, and its config.json with the roots of the machine that trained it blanked and
    inception_weights made relative to `out` (run_folder.read_config resolves it there)."""
    import checkpoints
    import run_folder
    import torch
    os.makedirs(out, exist_ok=True)
    slot = checkpoints.resolve_suffix(folder, which)
    saved = checkpoints.load_set(folder, slot, [generator, "D"])
    torch.save(saved[generator], os.path.join(out, "G.pth"))
    torch.save(saved["D"], os.path.join(out, "D.pth"))
    config = run_folder.read_config(folder) or {}
    config.update({key: "" for key in MACHINE_PATHS if key in config})
    weights = config.get("inception_weights")
    if weights:
        config["inception_weights"] = os.path.relpath(os.path.abspath(weights), out)
    write_config(os.path.join(out, "config.json"), config)
    print(f"wrote {out}/{{G.pth ({generator}), D.pth, config.json}} from "
          f"{checkpoints.describe(folder, slot)}")


def write_config(path: str, config: dict) -> None:
    text = json.dumps(config, indent=1, sort_keys=True) + "\n"
    utils.write_atomically(path, lambda f: f.write(text))


def install_source(weights_root: str, source: str) -> None:
    """The source model's G.pth, D.pth and config.json copied from `source` to weights_root, where
    train.py finds them; files already there are kept. The config's inception_weights, relative to
    `source`, is written as the path it resolves to."""
    import run_folder
    os.makedirs(weights_root, exist_ok=True)
    for name in ("G.pth", "D.pth", "config.json"):
        origin, target = os.path.join(source, name), os.path.join(weights_root, name)
        if os.path.exists(target):
            continue
        if not os.path.isfile(origin):
            if name == "config.json":
                continue  # a source without one: the model flags must be given
            raise utils.UsageError(f"the source model folder {source} holds no {name}; give a "
                                   "folder with the source's G.pth and D.pth (and its "
                                   "config.json), or restore the shipped one with `git checkout "
                                   "assets/`")
        if name == "config.json":
            write_config(target, run_folder.read_config(source))
        else:
            shutil.copy(origin, target)
    print(f"source model: {source} in {weights_root}")
