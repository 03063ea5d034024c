"""train.py runs for the project's experiments (the default run, the study, forgetting): a run whose
experiment has checkpoints continues (--resume), and one that reached its iterations is only loaded,
so an experiment started again after a stop picks up where it was and keeps every finished run."""
from __future__ import annotations

import os

import checkpoints
import experiment
import flags
import train
from experiments import plots


def train_or_load(argv: list[str]) -> tuple[dict, dict]:
    """(config, what train.run returns) of the run train.py's flags `argv` describe."""
    parser = flags.prepare_parser()
    config = flags.finalize_config(vars(parser.parse_args(argv)))
    folder = experiment.folder(config)
    if checkpoints.existing_sets(folder):
        if checkpoints.saved_iteration(folder, "") >= config["num_iters"] > 0:
            return finished(config)
        argv = [*without_flag(argv, "--start_from"), "--resume"]  # stopped before: continue it
        config = flags.finalize_config(vars(parser.parse_args(argv)))
    return config, train.run(config, flags.explicit_flags(parser, argv))


def without_flag(argv: list[str], flag: str) -> list[str]:
    """argv without `flag` and its value."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == flag:
            skip = True
        elif not arg.startswith(flag + "="):
            kept.append(arg)
    return kept


def finished(config: dict) -> tuple[dict, dict]:
    """The saved config and what train.run returns of a run that had finished: its G and G_ema (the
    latest set's) and its last logged metrics."""
    folder = experiment.folder(config)
    saved = experiment.read_run_state(folder, "", checkpoints.DEFAULT_HINT)
    config = {**saved["config"], **{key: config[key] for key in ("experiment_name", "base_dir", "data_root",
                                                                  "weights_root", "logs_root", "samples_root")}}
    records = plots.read_jsonl(test_log(config)) if os.path.isfile(test_log(config)) else []
    print(f"{config['experiment_name']}: finished before, at iteration {saved.get('itr')}")
    return config, {**generators(config, folder, ""), "metrics": records[-1] if records else {}, "state_dict": saved}


def best_or_last(config: dict, result: dict) -> dict:
    """The run's best checkpoint by its --which_best, as train.run's result (G, G_ema, the metrics of
    its evaluation, state_dict): the set `--load_weights best` samples and `--start_from NAME:best`
    continues. `result` itself (the last iteration) when the run kept no best set."""
    folder = experiment.folder(config)
    if not checkpoints.best_sets(folder):
        return result
    suffix = checkpoints.best_slot(folder)
    saved = experiment.read_run_state(folder, suffix, checkpoints.DEFAULT_HINT)
    return {**generators(config, folder, suffix), "metrics": saved.get("metrics", {}), "state_dict": saved}


def generators(config: dict, folder: str, suffix: str) -> dict:
    """G and G_ema (None without --ema) of a saved set in `folder` (not the folder the saved config
    names: an experiment folder may have been renamed or copied since)."""
    return {name: experiment.build_trained_generator(
        config, experiment.read_generator_weights(folder, suffix, use_ema, checkpoints.DEFAULT_HINT),
        config["experiment_name"]) if not use_ema or config["ema"] else None
        for name, use_ema in (("G", False), ("G_ema", True))}


def test_log(config: dict) -> str:
    """train.py's log of the in-loop metrics."""
    return os.path.join(config["logs_root"], f"{config['experiment_name']}_log.jsonl")
