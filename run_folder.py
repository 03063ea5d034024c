"""An experiment's files: the folders a run of it writes (RunFolder), its name's checks, and its
config.json, the run's settled flags (StyleGAN2-ADA's training_options.json, BigGAN-PyTorch's
metadata).

    weights/G.pth, D.pth [, config.json]   the pretrained source model (BigGAN-PyTorch's layout);
                                           its config.json, when there, says how it was built
    weights/<experiment>/                  checkpoint sets (checkpoints.py) and config.json,
                                           written when a run starts
    logs/<experiment>_log.jsonl            the in-loop metrics (BigGAN-PyTorch's
                                           logs/<experiment>_log)
    logs/<experiment>/train_log.jsonl      the losses, a JSON line per iteration
    samples/<experiment>/                  sample sheets (sample.py: npz, sheets, metrics)
"""
from __future__ import annotations

import inspect
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Mapping

import BigGAN
import checkpoints
import utils

CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class RunFolder:
    """Every path of one experiment's run, from its name and the roots."""
    name: str
    weights_root: str
    logs_root: str
    samples_root: str

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> RunFolder:
        return cls(config["experiment_name"], config["weights_root"], config.get("logs_root", ""),
                   config.get("samples_root", ""))

    @property
    def weights(self) -> str:
        """Checkpoint sets and config.json."""
        return os.path.join(self.weights_root, self.name)

    @property
    def config_file(self) -> str:
        return os.path.join(self.weights, CONFIG_FILE)

    @property
    def metrics_log(self) -> str:
        """The in-loop metrics (BigGAN-PyTorch's logs/<experiment>_log), a JSON line each."""
        return os.path.join(self.logs_root, f"{self.name}_log.jsonl")

    @property
    def training_log(self) -> str:
        """The losses, one JSON line per iteration."""
        return os.path.join(self.logs_root, self.name, "train_log.jsonl")

    @property
    def samples(self) -> str:
        """Sample sheets of training and sample.py's outputs."""
        return os.path.join(self.samples_root, self.name)


def folder(config: Mapping[str, Any]) -> str:
    """The experiment's weights folder (RunFolder.weights)."""
    return RunFolder.of(config).weights


NOT_IN_A_NAME = re.compile(r"[/\\:\x00-\x1f\x7f]")
FILE_EXTENSIONS = (".pth", ".json", ".npz", ".hdf5", ".pt")


def check_name(name: str, weights_root: str) -> None:
    """Refuse a --experiment_name whose folder would not be a subfolder of weights_root of its own:
    '.', '..', paths, hidden names, file names (G.pth), a link, or an existing file. (':' separates
    an experiment from a checkpoint in --start_from NAME:SUFFIX.)"""
    path = os.path.join(weights_root, name)
    problem = None
    if (not name.strip() or name != name.strip() or name.startswith(".")
            or NOT_IN_A_NAME.search(name)):
        problem = ("must be a plain folder name: no path separators, ':' or control characters, "
                   "not starting with '.' (so not '.' or '..'), no spaces around it")
    elif name.lower().endswith(FILE_EXTENSIONS):
        problem = ("looks like a file name (the source model's G.pth and D.pth live beside the "
                   "experiments)")
    elif os.path.islink(path):
        problem = (f"is a link ({path} -> {os.readlink(path)}); runs write only into folders of "
                   "their own")
    elif os.path.exists(path) and not os.path.isdir(path):
        problem = f"is an existing file in {weights_root}"
    if problem:
        raise utils.UsageError(f"--experiment_name {name!r} {problem}; choose another name")


# ---------------------------------------------------------------------------------------------
# config.json

def write_config(run_folder: RunFolder, config: Mapping[str, Any]) -> None:
    """config.json in the experiment folder: the flags of the run that starts now."""
    text = json.dumps(dict(config), indent=1, sort_keys=True, default=str) + "\n"
    utils.write_atomically(run_folder.config_file, lambda f: f.write(text))


JSON_SCALARS = (bool, int, float, str)


def saved_config_types() -> dict[str, Any]:
    """The type of each key of a saved config.json that a run takes over: the model flags (those of
    G's and D's constructor defaults), the metric space, the data and the classes."""
    model = {name: type(parameter.default) for cls in (BigGAN.Generator, BigGAN.Discriminator)
             for name, parameter in inspect.signature(cls.__init__).parameters.items()
             if name in BigGAN.weight_defining_flags() and type(parameter.default) in JSON_SCALARS}
    return {**model, "backbone": str, "inception_weights": str | None, "dataset": str,
            "stage": str, "which_best": str, "class_names": list[str] | None,
            "old_class_names": list[str] | None}


def read_config(folder_path: str) -> dict | None:
    """A config.json beside weights (an experiment's, or the source model's); None when absent. Its
    keys are checked (saved_config_types). A relative inception_weights that names a file next to it
    is taken as relative to its folder (a shipped source names its classifier so); otherwise a
    relative path is as the run that wrote it was given it (relative to the working directory)."""
    config = utils.read_json_object(os.path.join(folder_path, CONFIG_FILE),
                                    "restore it or delete it (then give the model flags)",
                                    saved_config_types())
    weights = (config or {}).get("inception_weights")
    beside = os.path.normpath(os.path.join(folder_path, weights)) if weights else ""
    if weights and not os.path.isabs(weights) and os.path.isfile(beside):
        config["inception_weights"] = beside
    return config


def saved_config(folder_path: str, state: dict) -> dict:
    """The training config a checkpoint was written with: its state_dict's, else the folder's
    config.json."""
    return state.get("config") or read_config(folder_path) or {}


# ---------------------------------------------------------------------------------------------
# What is there already

def guard_new_experiment(run_folder: RunFolder) -> None:
    """A new run never writes over checkpoints: any set there (latest, a copy, a best one) refuses
    it."""
    found = checkpoints.existing_sets(run_folder.weights)
    if found:
        other = found[0] if found[0] != "latest" else "SUFFIX"
        raise utils.UsageError(f"experiment {run_folder.name} already has checkpoints in "
                               f"{run_folder.weights} ({', '.join(found)}); continue it with "
                               f"--resume (--load_weights {other} for another set), or choose "
                               "another --experiment_name")


def where_to_continue(folder_path: str) -> str:
    """For a run that stopped: what is saved, and how to go on."""
    has_one = checkpoints.has_checkpoint(folder_path)
    saved = checkpoints.saved_iteration(folder_path, "") if has_one else -1
    if saved < 0:
        return "nothing of it was saved: start it again once the problem is fixed"
    return (f"its last checkpoint (iteration {saved}) in {folder_path} is intact: --resume "
            "continues from there")
