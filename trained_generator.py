"""A trained generator read back from an experiment's checkpoint (sample.py, explain.py,
experiments/): the experiment and its set, found or refused in one line naming the flags, its run
state, its weights, checked, and G built from the flags with them loaded, in either layout of the
BN running statistics (with or without --mybn)."""
from __future__ import annotations

import os
from typing import Any, Mapping

import BigGAN
import checkpoints
import run_folder
import stages
import utils


def weights_name(use_ema: bool, suffix: str) -> str:
    part = "G_ema" if use_ema else "G"
    return f"{part}_{suffix}" if suffix else part


def check_experiment_exists(config: Mapping[str, Any]) -> None:
    """The experiment named is a folder under weights_root (else whatever is said about its
    checkpoint, e.g. that the number of classes is unknown, is beside the point)."""
    path, root = run_folder.folder(config), config["weights_root"]
    if os.path.isdir(path):
        return
    if not os.path.isdir(root):
        found = f"{root} does not exist"
    else:
        there = sorted(entry.name for entry in os.scandir(root)
                       if entry.is_dir() and not entry.name.startswith("."))
        more = ", ..." if len(there) > 20 else ""
        found = (f"the experiments there: {', '.join(there[:20])}{more}" if there
                 else f"{root} holds no experiment")
    raise utils.UsageError(f"experiment {config['experiment_name']} does not exist: there is no "
                           f"folder {path}; check --experiment_name and --base_dir / "
                           f"--weights_root ({found})")


def checkpoint_hint(config: Mapping[str, Any]) -> str:
    hint = (f"check --experiment_name ({config['experiment_name']}), --load_weights "
            f"({config['load_weights'] or 'none'}) and --base_dir / --weights_root")
    return hint + ("; --use_ema needs a run trained with --ema" if config["use_ema"] else "")


def checkpoint_suffix(config: Mapping[str, Any]) -> str:
    """--load_weights resolved: 'best' is the best of the best sets, 'latest' the latest set."""
    return checkpoints.resolve_suffix(run_folder.folder(config), config["load_weights"],
                                      checkpoint_hint(config))


def read_checkpoint_state(config: Mapping[str, Any]) -> dict:
    """The run state of the set --load_weights names in the experiment's folder."""
    return read_run_state(run_folder.folder(config), config["load_weights"],
                          checkpoint_hint(config))


def read_run_state(folder_path: str, suffix: str, hint: str) -> dict:
    """A checkpoint's state_dict (itr, training config; the folder's config.json when the set has no
    state_dict, e.g. a copied source model); empty when neither is there."""
    state = checkpoints.load_set(folder_path, suffix, ["state_dict"], optional=("state_dict",),
                                 hint=hint).get("state_dict", {})
    config = run_folder.saved_config(folder_path, state)
    return {**state, "config": config} if config else state


def read_generator_weights(folder_path: str, suffix: str, use_ema: bool, hint: str) -> dict:
    """G's (or G_ema's) weights, checked to be of the same save as the state_dict, and finite."""
    part = "G_ema" if use_ema else "G"
    state = checkpoints.load_set(folder_path, suffix, [part], hint=hint)[part]
    if not checkpoints.all_finite(state):
        raise utils.UsageError(f"the weights of {weights_name(use_ema, suffix)} in {folder_path} "
                               "hold non-finite values (NaN or inf): that run diverged; use an "
                               "earlier checkpoint (--load_weights)")
    return state


def bn_statistics_counterpart(key: str, own: dict) -> str | None:
    """The name `key` (a BN running statistic) has in the other layout: <bn>.stored_mean without
    --mybn, <bn>.bn.stored_mean with it. Both hold the same running statistics."""
    head, _, leaf = key.rpartition(".")
    if key in own or leaf not in ("stored_mean", "stored_var"):
        return None
    other = f"{head[:-len('.bn')]}.{leaf}" if head.endswith(".bn") else f"{head}.bn.{leaf}"
    return other if other in own else None


def match_bn_layout(state: dict, own: dict) -> dict:
    """A checkpoint trained with or without --mybn, renamed for G's layout, so that --mybn
    --accumulate_stats works on any checkpoint (the official scripts suggest it for sampling)."""
    matched = {bn_statistics_counterpart(key, own) or key: value for key, value in state.items()
               if not (key.endswith(".bn.accumulation_counter") and key not in own)}
    for key, value in own.items():
        if key.endswith(".bn.accumulation_counter") and key not in matched:
            matched[key] = value  # a checkpoint without --mybn has no counter: start it fresh
    return matched


def build_trained_generator(config: Mapping[str, Any], weights: dict,
                            what: str) -> BigGAN.Generator:
    """G built from config (skip_init: every weight comes from the checkpoint) with `weights`
    loaded, in either BN-statistics layout; weights that do not fit the flags are one clear line."""
    try:
        G = BigGAN.Generator(**{**stages.model_config(config), "skip_init": True})
    except ValueError as err:
        raise utils.UsageError(f"{err}; fix the model flags") from err
    try:
        G.load_state_dict(match_bn_layout(weights, G.state_dict()))
    except RuntimeError as err:
        first_problem = (str(err).splitlines()[1:] or [str(err)])[0].strip()[:300]
        raise utils.UsageError(f"the weights of {what} do not fit the generator built from the "
                               f"flags, which are probably wrong: {first_problem}; use the flags "
                               "the experiment was trained with") from err
    return G
