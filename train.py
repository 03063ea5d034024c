"""Train a BigGAN: pretrain a source model (--stage pretrain), transfer a pretrained one to new
classes by knowledge propagation (--stage BN), fine-tune it (--stage FT), or run a baseline.

    python train.py --base_dir BASE --dataset C100 --stage BN --n_classes 20 \
        --n_pretrain_classes 80 ...
    python train.py --dataset mydata_new --stage FT --start_from mydata_BN:best \
        --experiment_name mydata_FT
    torchrun --nproc_per_node 2 train.py ...   (data parallel, one process per GPU; gloo on CPU)

Files: BASE/data/<dataset folder> (input), BASE/weights/{G,D}.pth (the pretrained source model),
BASE/weights/<experiment>/ (checkpoints, config.json), BASE/logs/ (JSON lines),
BASE/samples/<experiment>/ (run_folder.RunFolder names them all). The run is settled once
(run_spec.settle: flags, adopted saved configs, the data's classes, the start plan), then started
(run_start.py: models, optimizers, state); what happens between iterations (saving, sheets,
evaluation) is train_fns.py's. training_loop reads top to bottom: set up (a resumed run first
catches up with what its checkpoint's iteration still owes: catch_up), then per iteration train,
log, save, evaluate, and stop at --num_iters or when --patience runs out.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.distributed as dist
from tqdm import tqdm

import checkpoint_lock
import checkpoints
import datasets
import run_folder
import run_spec
import run_start
import sampling
import stages
import train_fns
import utils


def setup_distributed(config: Mapping[str, Any]) -> tuple[int, int, torch.device]:
    """(rank, world_size, device): torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; else one process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = utils.pick_device(config["device"] or None)
    if config["threads"]:
        torch.set_num_threads(config["threads"])
    if world_size == 1:
        return 0, 1, device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    elif config["cross_replica"]:
        raise utils.UsageError("--cross_replica synchronizes BN statistics across GPUs; it needs "
                               "CUDA")
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world_size, device


def make_batches(config: Mapping[str, Any], state: dict, rank: int, world_size: int,
                 device) -> datasets.ResumableBatches:
    """The run's batches from where its state stands: batch_size x num_D_steps x
    num_D_accumulations images per iteration, this process's share of the data."""
    D_batch = config["batch_size"] * config["num_D_steps"] * config["num_D_accumulations"]
    workers = min(config["num_workers"], datasets.available_cores())
    if rank == 0 and workers < config["num_workers"]:
        print(f"--num_workers {config['num_workers']}: {workers}, the CPU cores available")
    data_flags = ("dataset", "data_root", "shuffle", "hdf5", "n_classes", "augment",
                  "use_multiepoch_sampler", "num_epochs", "seed", "load_in_mem", "resolution")
    loader = datasets.get_data_loaders(
        **{flag: config[flag] for flag in data_flags}, batch_size=D_batch,
        start_itr=state["itr"], num_workers=workers, rank=rank, world_size=world_size,
        pin_memory=config["pin_memory"] and device.type == "cuda")[0]
    images = len(loader.dataset) // world_size
    if rank == 0 and config["batch_size"] > images:
        print(f"warning: --batch_size {config['batch_size']} is larger than the {images} training "
              f"images{' per process' if world_size > 1 else ''}: every D batch holds each image "
              f"about {config['batch_size'] / images:.1f} times; lower --batch_size if that is not "
              "intended", file=sys.stderr)
    return datasets.ResumableBatches(loader, config["num_epochs"], state["epoch"],
                                     state["epoch_batches"])


def describe_run(config: Mapping[str, Any], device, world_size: int,
                 models: train_fns.Models) -> None:
    count = lambda params: sum(p.numel() for p in params)
    stage = stages.get(config["stage"])
    D_trained = count(stages.D_parameters(models.D, config['freezeD_layer']))
    print(f"Experiment {config['experiment_name']} on {device} ({world_size} process(es)); stage "
          f"{stage.name} ({stage.summary}) trains {count(stages.G_parameters(models.G, stage)):,} "
          f"of {count(models.G.parameters()):,} G parameters, and {D_trained:,} of "
          f"{count(models.D.parameters()):,} of D")


def run(config: Mapping[str, Any], explicit: set[str] | None = None,
        resume: bool = False) -> dict:
    """Train as the flags `config` (flags.finalize_config's) say, holding the experiment's lock
    (rank 0) after finishing what a killed run left; the run is settled (run_spec.settle) once
    that is done. explicit: the flags the user gave (the others may be taken from saved configs);
    None: all of them. resume: continue the experiment (experiments/runs.py's start plan)."""
    rank, world_size, device = setup_distributed(config)
    is_main = rank == 0
    folder = run_folder.RunFolder.of(config)
    with checkpoint_lock.ExperimentLock(folder.weights) if is_main else contextlib.nullcontext():
        if is_main:
            checkpoints.recover(folder.weights)
            checkpoints.clean_temporaries(folder.samples)
        try:
            spec = run_spec.settle(config, explicit, resume)
            return training_loop(spec, rank, world_size, device)
        except utils.WriteError as err:  # a full disk or a read-only folder: say where it stands
            where = run_folder.where_to_continue(folder.weights)
            raise utils.WriteError(f"{err}; training stopped, {where}") from None


@dataclass
class Training:
    """A run set up: what its iterations use, and where it started."""
    spec: run_spec.RunSpec
    models: train_fns.Models
    state: dict
    step: train_fns.Step
    metrics: Any                 # inception_utils.Metrics, or None with --no_fid or off rank 0
    sheets: sampling.Sheets
    batches: datasets.ResumableBatches
    rank: int
    world_size: int
    device: torch.device
    start_itr: int = 0
    start_time: float = 0.0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def generators(self) -> list:
        return [G for G in (self.models.G, self.models.G_ema) if G is not None]

    def outside_training(self):
        return sampling.outside_training(self.generators, self.spec.config["G_eval_mode"],
                                         self.device)

    def result(self, last_metrics: dict) -> dict:
        return {"state_dict": self.state, "metrics": last_metrics, "G": self.models.G,
                "D": self.models.D, "G_ema": self.models.G_ema}


def set_up(spec: run_spec.RunSpec, rank: int, world_size: int, device) -> Training:
    """The models and state as the start plan says, the step, metrics, sheets, config.json, and
    the batches from where the state stands (a resumed run: with its random state)."""
    config, is_main = spec.config, rank == 0
    utils.seed_rng(config["seed"])
    models, state = run_start.prepare_models(spec, device, is_main)
    owed = config["resume"] and evaluation_owed(config, state)
    if config["num_iters"] and state["itr"] >= config["num_iters"] and not owed:
        raise utils.UsageError(f"--num_iters {config['num_iters']}: the checkpoint is at iteration "
                               f"{state['itr']} already; give a larger --num_iters to train "
                               "further (it counts the experiment's iterations)")
    if config["resume"] and not evaluation_due(config, state) and train_fns.out_of_patience(state,
                                                                                          config):
        raise utils.UsageError(f"the checkpoint is at iteration {state['itr']}, where the run "
                               f"stopped: {train_fns.why_stopped(state, config)}; give a larger "
                               "--patience to train further")
    if config["patience"] and world_size > 1:
        raise utils.UsageError("--patience: the stop is decided on rank 0's evaluations; run it in "
                               "one process")
    step = train_fns.build_step(models, config, device)
    metrics = None
    if is_main:
        describe_run(config, device, world_size, models)
        print(f"Training in {step.description}")
        if config["no_fid"]:
            print("--no_fid: skipping in-loop metrics (FID, IS, KMMD)")
        else:
            import inception_utils  # heavy (torchvision models); only when metrics run
            metrics = inception_utils.Metrics.from_config(config, device)
        run_folder.write_config(spec.folder, config)
    sheets = sampling.Sheets(spec.draws, models.G.dim_z, device, spec.folder.samples)
    # Same models on every rank (same seed above), different noise per rank from here on.
    torch.manual_seed(config["seed"] + rank)
    batches = make_batches(config, state, rank, world_size, device)
    if config["resume"]:
        run_start.restore_rng_state(state, rank, world_size, device)  # after the loader's seed
    return Training(spec, models, state, step, metrics, sheets, batches, rank, world_size,
                    torch.device(device), state["itr"], time.time())


def training_loop(spec: run_spec.RunSpec, rank: int, world_size: int, device) -> dict:
    """Set up; a resumed run first catches up with what its checkpoint's iteration still owes;
    then per iteration train, log, save, evaluate; finish."""
    t = set_up(spec, rank, world_size, device)
    config = spec.config
    last_metrics = catch_up(t) if config["resume"] and t.is_main else {}
    stopped = train_fns.out_of_patience(t.state, config)  # by the evaluation catch_up counted
    if stopped or config["num_iters"] and t.start_itr >= config["num_iters"]:  # all it owed
        close_distributed(world_size)
        if t.is_main and stopped:
            train_fns.save_stopped_run(t.models, t.state, config)
        elif t.is_main:
            print(f"Done: the evaluation of iteration {t.start_itr}, which the stopped run owed")
        return t.result(last_metrics)
    progress = tqdm(disable=not t.is_main, initial=t.start_itr, total=config["num_iters"] or None)
    clock = train_fns.TrainingClock(t.state)
    final = False
    try:  # closed also on an error, whose one line then starts a line of its own
        for x, y in t.batches:
            # Train one iteration.
            losses = train_iteration(t, x, y)
            itr = t.state["itr"]
            final = bool(config["num_iters"]) and itr >= config["num_iters"]
            saving = itr % config["save_every"] == 0 or final
            evaluating = not config["no_fid"] and (itr % config["test_every"] == 0 or final)
            if saving or evaluating:  # every process takes part; a best set is a checkpoint too
                t.state.update(t.batches.position(), rng_states=run_start.rng_states(t.device),
                               evaluation_due=evaluating, train_seconds=clock.seconds())
            progress.update(1)
            progress.set_postfix({"epoch": t.batches.epoch,
                                  **{k: f"{v:+.3f}" for k, v in losses.items()}})
            if not t.is_main:
                if final:
                    break
                continue

            # Log the losses, save a checkpoint and draw the sample sheets.
            utils.append_jsonl(spec.folder.training_log, {"itr": itr, **losses})
            if saving:
                with t.outside_training():
                    train_fns.save_and_sample(t.models, t.state, config, t.sheets)

            # Evaluate (and keep the best checkpoints).
            if evaluating:
                with t.outside_training():
                    last_metrics = evaluate(t, t.start_time)
                if train_fns.out_of_patience(t.state, config):  # this set, evaluated, is the last
                    train_fns.save_stopped_run(t.models, t.state, config)
                    final = True
            if saving or evaluating:
                clock.restart()  # the saves and evaluations are no training time
            if final:
                break
    finally:
        progress.close()
    finish(t, final, clock)
    return t.result(last_metrics)


def train_iteration(t: Training, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """One iteration of the step; its losses, checked to be finite."""
    t.state["itr"] += 1
    itr = t.state["itr"]
    t.models.G.train(), t.models.D.train()
    losses = t.step(x.to(t.device), y.to(t.device), itr)
    train_fns.stop_if_diverged(losses, itr, t.spec.config)
    if itr == t.start_itr + 1 and t.is_main and t.spec.config["compile"]:
        print(f"--compile: the first iteration took {time.time() - t.start_time:.1f} s, "
              "compilation included")
    return losses


def finish(t: Training, final: bool, clock: train_fns.TrainingClock) -> None:
    """A run that stopped because the data ran out (epoch mode) saves its final state too."""
    config, itr = t.spec.config, t.state["itr"]
    if itr == t.start_itr:
        raise utils.UsageError(f"no training iteration ran: the data ran out at iteration "
                               f"{t.start_itr} (--num_epochs {config['num_epochs']} over "
                               f"{len(t.batches.loader.dataset)} images); raise --num_epochs")
    if not final and itr % config["save_every"] != 0:
        t.state.update(t.batches.position(), rng_states=run_start.rng_states(t.device),
                       evaluation_due=False, train_seconds=clock.seconds())
        if t.is_main:
            with t.outside_training():
                train_fns.save_and_sample(t.models, t.state, config, t.sheets)
    close_distributed(t.world_size)
    if t.is_main:
        folder = t.spec.folder
        print(f"Done: {itr - t.start_itr} iterations ({t.start_itr + 1}-{itr}) in "
              f"{time.time() - t.start_time:.0f} s. Checkpoints in {folder.weights}, samples in "
              f"{folder.samples}, logs in {folder.logs_root}")


def close_distributed(world_size: int) -> None:
    if world_size > 1:
        dist.barrier()
        dist.destroy_process_group()


def evaluate(t: Training, start_time: float) -> dict:
    """The in-loop metrics of this iteration (train_fns.evaluate_and_keep_best: a best set when
    improved), then its log record, which marks the evaluation done (evaluation_owed)."""
    state = t.state
    results = train_fns.evaluate_and_keep_best(t.models, state, t.spec.config, t.metrics,
                                               t.step.precision, t.device, t.spec.draws)
    record = {"itr": state["itr"], "time": time.time() - start_time,
              "train_seconds": state.get("train_seconds"), **results}
    utils.append_jsonl(t.spec.folder.metrics_log,
                       {k: v for k, v in record.items() if v is not None})
    print(train_fns.format_metrics(state["itr"], results))
    return results


# ---------------------------------------------------------------------------------------------
# The logs, and what a stopped run still owes

def catch_up(t: Training) -> dict:
    """A resumed run's logs and state as an uninterrupted run has them after the saved iteration,
    whose evaluation comes after its save: made up when owed, else replayed from its log record.
    Returns the metrics made up ({} if none)."""
    config, folder, itr = t.spec.config, t.spec.folder, t.state["itr"]
    owed = evaluation_owed(config, t.state)
    for log in (folder.metrics_log, folder.training_log):
        trim_log(log, itr)
    if owed:
        print(f"Iteration {itr} was saved but not evaluated (the run stopped in between): "
              "evaluating it")
        with t.outside_training():
            return evaluate(t, time.time())
    if evaluation_due(config, t.state):
        train_fns.replay_evaluation(t.state, logged_evaluation(folder.metrics_log, itr), config)
    return {}


def trim_log(path: str, itr: int) -> None:
    """A resumed run's log as far as its checkpoint: the records of the iterations after it (the
    stopped run logged them, the resumed one logs them again) and a line cut short go."""
    if not os.path.isfile(path):
        return
    with open(path) as f:
        text = f.read()
    whole = not text or text.endswith("\n")
    records = utils.read_jsonl(path)
    kept = [record for record in records if record.get("itr", 0) <= itr]
    if len(kept) < len(records) or not whole:
        lines = [json.dumps(record) + "\n" for record in kept]
        utils.write_atomically(path, lambda f: f.writelines(lines))


def logged_evaluation(path: str, itr: int) -> dict | None:
    """The log record of iteration itr's evaluation (the last, if several); None if not logged."""
    records = utils.read_jsonl(path) if os.path.isfile(path) else []
    return next((record for record in reversed(records) if record.get("itr") == itr), None)


def evaluation_due(config: dict, state: dict) -> bool:
    """Whether the saved iteration is evaluated after its save by the run that saved it (its state
    says; earlier checkpoints: --test_every and --num_iters do), and this run can evaluate."""
    itr = state.get("itr", 0)
    if config["no_fid"] or itr <= 0:
        return False
    due = state.get("evaluation_due")
    if due is None:  # saved before states recorded it
        due = itr % config["test_every"] == 0 or 0 < config["num_iters"] <= itr
    return bool(due)


def evaluation_owed(config: dict, state: dict) -> bool:
    """The saved iteration was to be evaluated, and the log has no record of it: the run stopped
    between the save and the evaluation's end (killed, or a full disk). A resumed run makes it up
    first, also when the checkpoint is at --num_iters already."""
    logged = logged_evaluation(run_folder.RunFolder.of(config).metrics_log, state["itr"])
    return evaluation_due(config, state) and logged is None


def main(argv: list[str] | None = None) -> dict:
    return run(*run_spec.parse_flags(argv))


if __name__ == "__main__":
    utils.run_main(main)
