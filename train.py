"""Train a BigGAN: pretrain a source model (--stage pretrain), transfer a pretrained one to new
classes by knowledge propagation (--stage BN), fine-tune it (--stage FT), or run a baseline.

    python train.py --base_dir BASE --dataset C100 --stage BN --n_classes 20 --n_pretrain_classes 80 ...
    python train.py --dataset mydata_new --stage FT --start_from mydata_BN:best --experiment_name mydata_FT
    torchrun --nproc_per_node 2 train.py ...      (data parallel, one process per GPU; gloo on CPU)

Files: BASE/data/<dataset folder> (input), BASE/weights/{G,D}.pth (the pretrained source model),
BASE/weights/<experiment>/ (checkpoints, config.json), BASE/logs/ (JSON lines), BASE/samples/<experiment>/.
How a run starts (new, --start_from, --resume) is experiment.py's; what happens between iterations
(saving, sheets, evaluation) train_fns.py's. training_loop reads top to bottom: set up (a resumed
run first catches up with what its checkpoint's iteration still owes: catch_up), then per iteration
train, log, save, evaluate, and stop at --num_iters or when --patience runs out.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time

import torch
import torch.distributed as dist
from tqdm import tqdm

import checkpoints
import datasets
import experiment
import flags
import sampling
import stages
import train_fns
import utils


def setup_distributed(config: dict) -> tuple[int, int, torch.device]:
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
        raise utils.UsageError("--cross_replica synchronizes BN statistics across GPUs; it needs CUDA")
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world_size, device


def make_batches(config: dict, state: dict, rank: int, world_size: int, device) -> datasets.ResumableBatches:
    """The run's batches from where its state stands: batch_size x num_D_steps x num_D_accumulations
    images per iteration, this process's share of the data."""
    D_batch = config["batch_size"] * config["num_D_steps"] * config["num_D_accumulations"]
    workers = min(config["num_workers"], datasets.available_cores())
    if rank == 0 and workers < config["num_workers"]:
        print(f"--num_workers {config['num_workers']}: {workers}, the CPU cores available")
    loader = datasets.get_data_loaders(**{**config, "batch_size": D_batch, "start_itr": state["itr"],
                                          "num_workers": workers, "rank": rank, "world_size": world_size,
                                          "pin_memory": config["pin_memory"] and device.type == "cuda"})[0]
    images = len(loader.dataset) // world_size
    if rank == 0 and config["batch_size"] > images:
        print(f"warning: --batch_size {config['batch_size']} is larger than the {images} training images"
              f"{' per process' if world_size > 1 else ''}: every D batch holds each image about "
              f"{config['batch_size'] / images:.1f} times; lower --batch_size if that is not intended", file=sys.stderr)
    return datasets.ResumableBatches(loader, config["num_epochs"], state["epoch"], state["epoch_batches"])


def describe_run(config: dict, device, world_size: int, models: train_fns.Models) -> None:
    count = lambda params: sum(p.numel() for p in params)
    stage = stages.get(config["stage"])
    print(f"Experiment {config['experiment_name']} on {device} ({world_size} process(es)); stage "
          f"{stage.name} ({stage.summary}) trains {count(stages.G_parameters(models.G, stage)):,} of "
          f"{count(models.G.parameters()):,} G parameters, and "
          f"{count(stages.D_parameters(models.D, config['freezeD_layer'])):,} of {count(models.D.parameters()):,} of D")


def run(config: dict, explicit: set[str] | None = None) -> dict:
    """Train as config says, holding the experiment's lock (rank 0) after finishing what a killed
    run left. explicit: the flags the user gave (the others may be taken from saved configs); None:
    all of them."""
    rank, world_size, device = setup_distributed(config)
    is_main = rank == 0
    folder = experiment.folder(config)
    with checkpoints.ExperimentLock(folder) if is_main else contextlib.nullcontext():
        if is_main:
            checkpoints.recover(folder)
            checkpoints.clean_temporaries(os.path.join(config["samples_root"], config["experiment_name"]))
        try:
            return training_loop(config, explicit, rank, world_size, device)
        except utils.WriteError as err:  # a full disk or a read-only folder: say where the run stands
            raise utils.WriteError(f"{err}; training stopped, {experiment.where_to_continue(folder)}") from None


def training_loop(config: dict, explicit: set[str] | None, rank: int, world_size: int, device) -> dict:
    # Set up: the data's classes, models and state, the step, metrics, sheets, logs.
    is_main = rank == 0
    utils.seed_rng(config["seed"])
    experiment.set_classes_and_resolution(config)
    models, state = experiment.prepare_models(config, device, is_main, explicit)
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
        experiment.write_config(config)
    sheets = sampling.Sheets(config, models.G.dim_z, device)
    test_log, train_log = metrics_log(config), training_log(config)
    generators = [G for G in (models.G, models.G_ema) if G is not None]
    last_metrics: dict = {}

    # Same models on every rank (same seed above), different noise per rank from here on.
    torch.manual_seed(config["seed"] + rank)
    batches = make_batches(config, state, rank, world_size, device)
    if config["resume"]:
        experiment.restore_rng_state(state, rank, world_size, device)  # after the loader drew its seed
    start_time, start_itr = time.time(), state["itr"]
    if config["resume"] and is_main:
        last_metrics = catch_up(models, state, config, metrics, step.precision, device)
    stopped = train_fns.out_of_patience(state, config)  # by the evaluation catch_up counted
    if stopped or config["num_iters"] and start_itr >= config["num_iters"]:  # it was all it owed
        close_distributed(world_size)
        if is_main and stopped:
            train_fns.save_stopped_run(models, state, config)
        elif is_main:
            print(f"Done: the evaluation of iteration {start_itr}, which the stopped run owed")
        return {"state_dict": state, "metrics": last_metrics, "G": models.G, "D": models.D,
                "G_ema": models.G_ema}
    progress = tqdm(disable=not is_main, initial=start_itr, total=config["num_iters"] or None)
    clock = train_fns.TrainingClock(state)
    final = False
    try:  # closed also on an error, whose one line then starts a line of its own
        for x, y in batches:
            # Train one iteration.
            state["itr"] += 1
            itr = state["itr"]
            models.G.train(), models.D.train()
            losses = step(x.to(device), y.to(device), itr)
            train_fns.stop_if_diverged(losses, itr, config)
            if itr == start_itr + 1 and is_main and config["compile"]:
                print(f"--compile: the first iteration took {time.time() - start_time:.1f} s, compilation included")
            final = bool(config["num_iters"]) and itr >= config["num_iters"]
            saving = itr % config["save_every"] == 0 or final
            evaluating = not config["no_fid"] and (itr % config["test_every"] == 0 or final)
            if saving or evaluating:  # every process takes part; a best set is a checkpoint to resume too
                state.update(batches.position(), rng_states=experiment.rng_states(device),
                             evaluation_due=evaluating, train_seconds=clock.seconds())
            progress.update(1)
            progress.set_postfix({"epoch": batches.epoch, **{k: f"{v:+.3f}" for k, v in losses.items()}})
            if not is_main:
                if final:
                    break
                continue

            # Log the losses.
            utils.append_jsonl(train_log, {"itr": itr, **losses})

            # Save a checkpoint and draw the sample sheets.
            if saving:
                with sampling.outside_training(generators, config["G_eval_mode"], device):
                    train_fns.save_and_sample(models, state, config, sheets)

            # Evaluate (and keep the best checkpoints).
            if evaluating:
                with sampling.outside_training(generators, config["G_eval_mode"], device):
                    last_metrics = evaluate(models, state, config, metrics, step.precision, device,
                                            test_log, start_time)
                if train_fns.out_of_patience(state, config):  # this set, evaluated, is the last
                    train_fns.save_stopped_run(models, state, config)
                    final = True
            if saving or evaluating:
                clock.restart()  # the saves and evaluations are no training time
            if final:
                break
    finally:
        progress.close()

    # Finish: a run that stopped because the data ran out (epoch mode) saves its final state too.
    itr = state["itr"]
    if itr == start_itr:
        raise utils.UsageError(f"no training iteration ran: the data ran out at iteration {start_itr} "
                               f"(--num_epochs {config['num_epochs']} over {len(batches.loader.dataset)} images); "
                               "raise --num_epochs")
    if not final and itr % config["save_every"] != 0:
        state.update(batches.position(), rng_states=experiment.rng_states(device),
                     evaluation_due=False, train_seconds=clock.seconds())
        if is_main:
            with sampling.outside_training(generators, config["G_eval_mode"], device):
                train_fns.save_and_sample(models, state, config, sheets)
    close_distributed(world_size)
    if is_main:
        print(f"Done: {itr - start_itr} iterations ({start_itr + 1}-{itr}) in {time.time() - start_time:.0f} s. "
              f"Checkpoints in {experiment.folder(config)}, samples in "
              f"{os.path.join(config['samples_root'], config['experiment_name'])}, logs in {config['logs_root']}")
    return {"state_dict": state, "metrics": last_metrics, "G": models.G, "D": models.D, "G_ema": models.G_ema}


def close_distributed(world_size: int) -> None:
    if world_size > 1:
        dist.barrier()
        dist.destroy_process_group()


def evaluate(models: train_fns.Models, state: dict, config: dict, metrics, precision, device,
             test_log: str, start_time: float) -> dict:
    """The in-loop metrics of this iteration (train_fns.test: a best set when improved), then its
    log record, which marks the evaluation done (evaluation_owed)."""
    results = train_fns.test(models, state, config, metrics, precision, device)
    record = {"itr": state["itr"], "time": time.time() - start_time,
              "train_seconds": state.get("train_seconds"), **results}
    utils.append_jsonl(test_log, {k: v for k, v in record.items() if v is not None})
    print(train_fns.format_metrics(state["itr"], results))
    return results


# ---------------------------------------------------------------------------------------------
# The logs, and what a stopped run still owes

def catch_up(models: train_fns.Models, state: dict, config: dict, metrics, precision,
             device) -> dict:
    """A resumed run's logs and state as an uninterrupted run has them after the saved iteration,
    whose evaluation comes after its save: made up when owed, else replayed from its log record.
    Returns the metrics made up ({} if none)."""
    itr = state["itr"]
    owed = evaluation_owed(config, state)
    for log in (metrics_log(config), training_log(config)):
        trim_log(log, itr)
    if owed:
        print(f"Iteration {itr} was saved but not evaluated (the run stopped in between): "
              "evaluating it")
        generators = [G for G in (models.G, models.G_ema) if G is not None]
        with sampling.outside_training(generators, config["G_eval_mode"], device):
            return evaluate(models, state, config, metrics, precision, device, metrics_log(config),
                            time.time())
    if evaluation_due(config, state):
        train_fns.replay_evaluation(state, logged_evaluation(metrics_log(config), itr), config)
    return {}


def metrics_log(config: dict) -> str:
    """The log of the in-loop metrics (BigGAN-PyTorch's logs/<experiment>_log), a JSON line each."""
    return os.path.join(config["logs_root"], f"{config['experiment_name']}_log.jsonl")


def training_log(config: dict) -> str:
    """The log of the losses, one JSON line per iteration."""
    return os.path.join(config["logs_root"], config["experiment_name"], "train_log.jsonl")


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
    logged = logged_evaluation(metrics_log(config), state["itr"])
    return evaluation_due(config, state) and logged is None


def main(argv: list[str] | None = None) -> dict:
    parser = flags.prepare_parser()
    config = flags.finalize_config(vars(parser.parse_args(argv)))
    return run(config, flags.explicit_flags(parser, argv))


if __name__ == "__main__":
    utils.run_main(main)
