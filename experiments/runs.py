"""train.py runs for the project's experiments (the default run, the study, forgetting): a run whose
experiment has checkpoints continues (--resume), and one that finished is only loaded, so an
experiment started again after a stop, or a kill at any moment, picks up where it was and keeps
every finished run. Finished: at its iterations with its final evaluation logged, or stopped by
--patience (its latest set saved after the evaluation that stopped it); a run killed
between its last save and the end of that evaluation resumes to make it up (train.py), so that its
best set and log are those of a run never stopped."""
from __future__ import annotations

import os
import types
from typing import Any, Mapping

import checkpoints
import run_folder
import run_spec
import train
import train_fns
import trained_generator
import utils


def train_or_load(argv: list[str]) -> tuple[Mapping[str, Any], dict]:
    """(the run's settled config, read-only; what train.run returns) of the run train.py's flags
    `argv` describe: a stopped run continues (the resume start plan, whatever argv says of
    --resume and --start_from)."""
    config, explicit = run_spec.parse_flags(argv)
    folder = run_folder.folder(config)
    stopped = bool(checkpoints.existing_sets(folder))
    if stopped and has_finished(config, folder):
        return finished(config)
    result = train.run(config, explicit, resume=stopped)
    return types.MappingProxyType(result["state_dict"]["config"]), result


def has_finished(config: dict, folder: str) -> bool:
    """The run's latest set is at its --num_iters, and nothing of that iteration is owed (its
    evaluation); beyond them: a later phase of the experiment trained on (the official BN then FT
    in one experiment); or --patience stopped it (its latest set counts its last evaluation)."""
    saved, latest = checkpoints.saved_iteration(folder, ""), None
    if config["patience"]:
        latest = trained_generator.read_run_state(folder, "", checkpoints.DEFAULT_HINT)
        if not train.evaluation_due(config, latest) and train_fns.out_of_patience(latest, config):
            return True
    if config["num_iters"] <= 0 or saved < config["num_iters"]:
        return False
    if saved > config["num_iters"]:
        return True
    latest = latest or trained_generator.read_run_state(folder, "", checkpoints.DEFAULT_HINT)
    return not train.evaluation_owed(config, latest)


PLACES = ("experiment_name", "base_dir", "data_root", "weights_root", "logs_root", "samples_root")


def finished(given: Mapping[str, Any]) -> tuple[Mapping[str, Any], dict]:
    """The saved config (read-only, with the places given now) and what train.run returns of a
    run that had finished: its G and G_ema (the latest set's) and its last logged metrics."""
    folder = run_folder.folder(given)
    saved = trained_generator.read_run_state(folder, "", checkpoints.DEFAULT_HINT)
    config = types.MappingProxyType({**saved["config"], **{key: given[key] for key in PLACES}})
    log = run_folder.RunFolder.of(config).metrics_log
    records = utils.read_jsonl(log) if os.path.isfile(log) else []
    print(f"{config['experiment_name']}: finished before, at iteration {saved.get('itr')}")
    return config, {**generators(config, folder, ""), "metrics": records[-1] if records else {},
                    "state_dict": saved}


def best_or_last(config: Mapping[str, Any], result: dict) -> dict:
    """The run's best checkpoint by its --which_best, as train.run's result (G, G_ema, the metrics
    of its evaluation, state_dict): the set `--load_weights best` samples and `--start_from
    NAME:best` continues. `result` itself (the last iteration) when the run kept no best set."""
    folder = run_folder.folder(config)
    if not checkpoints.best_sets(folder):
        return result
    suffix = checkpoints.best_slot(folder)
    saved = trained_generator.read_run_state(folder, suffix, checkpoints.DEFAULT_HINT)
    return {**generators(config, folder, suffix), "metrics": saved.get("metrics", {}),
            "state_dict": saved}


def generators(config: Mapping[str, Any], folder: str, suffix: str) -> dict:
    """G and G_ema (None without --ema) of a saved set in `folder` (not the folder the saved config
    names: an experiment folder may have been renamed or copied since)."""
    def read(use_ema: bool):
        weights = trained_generator.read_generator_weights(folder, suffix, use_ema,
                                                           checkpoints.DEFAULT_HINT)
        return trained_generator.build_trained_generator(config, weights, config["experiment_name"])
    return {"G": read(False), "G_ema": read(True) if config["ema"] else None}
