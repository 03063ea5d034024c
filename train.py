"""Train a BigGAN: pretrain a source model (--stage pretrain), or transfer a pretrained one to new
classes by knowledge propagation (--stage BN), then fine-tune it (--stage FT).

    python train.py --base_dir BASE --dataset C100 --stage BN --n_classes 20 --n_pretrain_classes 80 ...
    torchrun --nproc_per_node 2 train.py ...      (data parallel, one process per GPU; gloo on CPU)

Files: BASE/data/<dataset folder> (input), BASE/weights/{G,D}.pth (the pretrained source model),
BASE/weights/<experiment>/ (checkpoints), BASE/logs/ (JSON lines), BASE/samples/<experiment>/.
"""
from __future__ import annotations

import os
import time

import torch
import torch.distributed as dist
import torch.nn as nn
from tqdm import tqdm

import BigGAN
import datasets
import train_fns
import utils


def setup_distributed(config: dict) -> tuple[int, int, torch.device]:
    """(rank, world_size, device): torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; else one process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1, utils.pick_device(config["device"] or None)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = utils.pick_device(config["device"] or None)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    elif config["cross_replica"]:
        raise utils.UsageError("--cross_replica synchronizes BN statistics across GPUs; it needs CUDA")
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world_size, device


def build_models(config: dict, device) -> tuple[BigGAN.Generator, BigGAN.Discriminator]:
    model_config = train_fns.model_config(config)
    G = BigGAN.Generator(**model_config).to(device)
    D = BigGAN.Discriminator(**model_config).to(device)
    return G, D


def load_pretrained(G, D, config: dict) -> None:
    """A new experiment starts from the source model in weights_root: for the knowledge-propagation
    stages, then knowledge loading; for the baselines, the new classes at the old classes' mean."""
    root = config["weights_root"]
    hint = (f"put the pretrained source model (BigGAN-PyTorch's G.pth and D.pth, {config['n_pretrain_classes']} "
            f"classes) in {root}, or point --weights_root / --base_dir at it")
    for model, part in ((G, "G"), (D, "D")):
        state = utils.load_file(os.path.join(root, f"{part}.pth"), f"pretrained {part} weights", hint)
        try:
            if G.transfer:
                BigGAN.load_pretrained_state_dict(model, state, f"pretrained {part}")
            else:
                BigGAN.mean_class_init(model, state, config["n_pretrain_classes"], f"pretrained {part}")
        except BigGAN.WeightsMismatch as err:
            raise utils.UsageError(str(err)) from err
    if G.transfer:
        G.load_previous_knowledge(config.get("comb_init", "official"))


def new_state_dict(config: dict) -> dict:
    return {"itr": 0, "epoch": 0, "save_num": 0, "save_best_num": 0, "best_IS": 0.0,
            "best_FID": float("inf"), "best_KMMD": float("inf"), "config": config}


def resume(G, D, G_ema, G_optim, D_optim, config: dict) -> dict:
    """Load weights_root/<experiment>/ (suffix --load_weights) with optimizers and counters."""
    name, suffix = config["experiment_name"], config["load_weights"]
    hint = f"check --experiment_name ({name}), --load_weights ({suffix or 'none'}) and --weights_root"
    load = lambda part: utils.load_file(
        utils.checkpoint_path(config["weights_root"], name, part, suffix), f"checkpoint {part}", hint)
    state_dict = load("state_dict")
    G.load_state_dict(load("G"))
    D.load_state_dict(load("D"))
    G_optim.load_state_dict(load("G_optim"))
    D_optim.load_state_dict(load("D_optim"))
    if G_ema is not None:
        G_ema.load_state_dict(load("G_ema"))
    fresh = new_state_dict(config)
    fresh.update({k: v for k, v in state_dict.items() if k != "config"})
    return fresh


def refuse_to_overwrite(config: dict) -> None:
    folder = os.path.join(config["weights_root"], config["experiment_name"])
    if os.path.isfile(os.path.join(folder, "G.pth")):
        raise utils.UsageError(f"experiment {config['experiment_name']} already has checkpoints in {folder}; "
                               "continue it with --resume, or choose another --experiment_name")


def make_metrics(config: dict, device):
    if config["no_fid"]:
        print("--no_fid: skipping in-loop metrics (FID, IS, KMMD)")
        return None
    import inception_utils  # heavy (torchvision models); only when metrics run
    return inception_utils.prepare_inception_metrics(
        config["dataset"], config["parallel"], data_root=config["data_root"], backbone=config["backbone"],
        inception_weights=config["inception_weights"] or None, device=device)


def set_classes_and_resolution(config: dict) -> None:
    """n_classes from the data (checked against the flag) and resolution from the dataset table."""
    classes = datasets.class_names(config["dataset"], config["data_root"], config["hdf5"])
    if config["n_classes"] and config["n_classes"] != len(classes):
        raise utils.UsageError(f"--n_classes {config['n_classes']} but {config['dataset']} has "
                               f"{len(classes)} classes ({', '.join(classes[:10])}...); fix --n_classes or the data")
    config["n_classes"] = len(classes)
    config["resolution"] = config["resolution"] or datasets.dataset_spec(config["dataset"]).resolution


def prepare_models(config: dict, device, is_main: bool):
    """G, D, G_ema (or None), their optimizers and the run's state: resumed, or a new experiment
    from the pretrained source model (or from scratch for --stage pretrain)."""
    G, D = build_models(config, device)
    if not config["resume"] and config["stage"] != "pretrain":
        load_pretrained(G, D, config)
    # After loading (and knowledge loading): the official code copied G before, a bug.
    G_ema = train_fns.ema_copy(G) if config["ema"] else None
    # Over all of G and D, as the official code, so official optimizer checkpoints load; the stage
    # decides which parameters get gradients, and Adam leaves the others untouched.
    G_optim = torch.optim.Adam(G.parameters(), lr=config["G_lr"], betas=(config["G_B1"], config["G_B2"]),
                               eps=config["adam_eps"], weight_decay=0)
    D_optim = torch.optim.Adam(D.parameters(), lr=config["D_lr"], betas=(config["D_B1"], config["D_B2"]),
                               eps=config["adam_eps"], weight_decay=0)
    if config["resume"]:
        state_dict = resume(G, D, G_ema, G_optim, D_optim, config)
    else:
        if is_main:
            refuse_to_overwrite(config)
        state_dict = new_state_dict(config)
    return G, D, G_ema, G_optim, D_optim, state_dict


def describe_run(config: dict, device, world_size: int, G, D) -> None:
    count = lambda params: sum(p.numel() for p in params)
    print(f"Experiment {config['experiment_name']} on {device} ({world_size} process(es)); stage "
          f"{config['stage']} trains {count(train_fns.stage_parameters(G, config['stage'])):,} of "
          f"{count(G.parameters()):,} G parameters, and "
          f"{count(train_fns.trained_D_parameters(D, config['freezeD_layer'])):,} of {count(D.parameters()):,} of D")


def epochs_of_batches(loader, first_batches, state_dict: dict, config: dict):
    """Batches across epochs until the data runs out (the multi-epoch sampler spans all epochs)."""
    batches = first_batches
    while True:
        yield from batches
        state_dict["epoch"] += 1
        if config["use_multiepoch_sampler"] or state_dict["epoch"] >= config["num_epochs"]:
            return
        loader.sampler.set_epoch(state_dict["epoch"])
        batches = iter(loader)


def run(config: dict) -> dict:
    rank, world_size, device = setup_distributed(config)
    is_main = rank == 0
    utils.seed_rng(config["seed"])
    set_classes_and_resolution(config)
    G, D, G_ema, G_optim, D_optim, state_dict = prepare_models(config, device, is_main)
    if is_main:
        describe_run(config, device, world_size, G, D)
    D_batch = config["batch_size"] * config["num_D_steps"] * config["num_D_accumulations"]
    loader = datasets.get_data_loaders(**{**config, "batch_size": D_batch, "start_itr": state_dict["itr"],
                                          "rank": rank, "world_size": world_size,
                                          "pin_memory": config["pin_memory"] and device.type == "cuda"})[0]
    GD = BigGAN.G_D(G, D)
    if config["parallel"] and device.type == "cuda":
        GD = nn.DataParallel(GD)
    precision = train_fns.Precision(config["amp"], device)
    ema = train_fns.Ema(G, G_ema, config["ema_decay"], config["ema_start"]) if G_ema is not None else None
    train = train_fns.GAN_training_function(G, D, GD, G_optim, D_optim, ema, config, precision, device)
    get_metrics = make_metrics(config, device) if is_main else None
    fixed_z, fixed_y = train_fns.sample_z_y(config["G_batch_size"], G.dim_z, config["n_classes"], "cpu",
                                            config["z_var"], torch.Generator().manual_seed(config["seed"] + 1))
    fixed_z, fixed_y = fixed_z.to(device), fixed_y.to(device)
    test_log = os.path.join(config["logs_root"], f"{config['experiment_name']}_log.jsonl")
    train_log = os.path.join(config["logs_root"], config["experiment_name"], "train_log.jsonl")
    last_metrics: dict = {}

    def aside(fn):
        """Sampling and evaluation: G in eval mode if asked, and the training RNG left untouched."""
        models = [m for m in (G, G_ema) if m is not None]
        for m in models:
            m.train(not config["G_eval_mode"])
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            result = fn()
        for m in models:
            m.train()
        return result

    def save_and_evaluate(itr: int, final: bool) -> None:
        nonlocal last_metrics
        if itr % config["save_every"] == 0 or final:
            aside(lambda: train_fns.save_and_sample(G, D, G_ema, G_optim, D_optim, state_dict, config,
                                                    fixed_z, fixed_y))
        if get_metrics is not None and (itr % config["test_every"] == 0 or final):
            sample = train_fns.make_sample_fn(train_fns.sampling_G(G, G_ema, config), config, device, precision)
            last_metrics = aside(lambda: train_fns.evaluate(G, D, G_ema, G_optim, D_optim, state_dict, config,
                                                            get_metrics, sample, device))
            utils.append_jsonl(test_log, {"itr": itr, "time": time.time() - start,
                                          **{k: v for k, v in last_metrics.items() if v is not None}})
            print(f"itr {itr}: " + ", ".join(f"{k} {v:.4g}" for k, v in last_metrics.items() if isinstance(v, float)))

    # Same models on every rank (same seed above), different noise per rank from here on.
    torch.manual_seed(config["seed"] + rank)
    first_batches = iter(loader)
    if config["resume"] and "rng_state" in state_dict:
        torch.set_rng_state(state_dict["rng_state"])  # after the loader drew its seed: exact resume
    start, start_itr = time.time(), state_dict["itr"]
    progress = tqdm(epochs_of_batches(loader, first_batches, state_dict, config), disable=not is_main,
                    initial=start_itr, total=config["num_iters"] or None)
    for x, y in progress:
        state_dict["itr"] += 1
        itr = state_dict["itr"]
        G.train(), D.train()
        metrics = train(x.to(device), y.to(device), itr)
        progress.set_postfix({"epoch": state_dict["epoch"], **{k: f"{v:+.3f}" for k, v in metrics.items()}})
        final = bool(config["num_iters"]) and itr >= config["num_iters"]
        if is_main:
            utils.append_jsonl(train_log, {"itr": itr, **metrics})
            save_and_evaluate(itr, final)
        if final:
            break
    if state_dict["itr"] == start_itr:
        raise utils.UsageError(f"no training iteration ran: the data ran out at iteration {start_itr} "
                               f"(--num_epochs {config['num_epochs']} over {len(loader.dataset)} images); "
                               "raise --num_epochs")
    if world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    if is_main:
        print(f"Done: {state_dict['itr']} iterations in {time.time() - start:.0f} s. Checkpoints in "
              f"{os.path.join(config['weights_root'], config['experiment_name'])}, samples in "
              f"{os.path.join(config['samples_root'], config['experiment_name'])}, logs in {config['logs_root']}")
    return {"state_dict": state_dict, "metrics": last_metrics, "G": G, "D": D, "G_ema": G_ema}


def main(argv: list[str] | None = None) -> dict:
    config = utils.finalize_config(vars(utils.prepare_parser().parse_args(argv)))
    return run(config)


if __name__ == "__main__":
    utils.run_main(main)
