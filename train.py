"""Train a BigGAN: pretrain a source model (--stage pretrain), transfer a pretrained one to new
classes by knowledge propagation (--stage BN), fine-tune it (--stage FT), or run a baseline.

    python train.py --base_dir BASE --dataset C100 --stage BN --n_classes 20 --n_pretrain_classes 80 ...
    torchrun --nproc_per_node 2 train.py ...      (data parallel, one process per GPU; gloo on CPU)

Files: BASE/data/<dataset folder> (input), BASE/weights/{G,D}.pth (the pretrained source model),
BASE/weights/<experiment>/ (checkpoints), BASE/logs/ (JSON lines), BASE/samples/<experiment>/.
The loop (run) reads top to bottom: set up, then per iteration train, log, save, evaluate.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.nn as nn
from tqdm import tqdm

import acceleration
import BigGAN
import checkpoints
import datasets
import DiffAugment
import sampling
import stages
import train_fns
import utils
from acceleration import Precision
from train_fns import Models


# ---------------------------------------------------------------------------------------------
# Setting up: processes, models, the run's state.

def setup_distributed(config: dict) -> tuple[int, int, torch.device]:
    """(rank, world_size, device): torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; else one process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = utils.pick_device(config["device"] or None)
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


def set_classes_and_resolution(config: dict) -> None:
    """n_classes from the data (checked against the flag) and resolution from the dataset: the
    table's, a prepared folder's dataset.json, or --resolution (any other folder needs it)."""
    spec = datasets.dataset_spec(config["dataset"], config["data_root"], config["resolution"])
    classes = datasets.class_names(config["dataset"], config["data_root"], config["hdf5"], config["resolution"])
    if config["n_classes"] and config["n_classes"] != len(classes):
        raise utils.UsageError(f"--n_classes {config['n_classes']} but {config['dataset']} has "
                               f"{len(classes)} classes ({', '.join(classes[:10])}...); fix --n_classes or the data")
    config["n_classes"] = len(classes)
    config["resolution"] = config["resolution"] or spec.resolution


def build_models(config: dict, device) -> tuple[BigGAN.Generator, BigGAN.Discriminator]:
    model_config = stages.model_config(config)
    return BigGAN.Generator(**model_config).to(device), BigGAN.Discriminator(**model_config).to(device)


def load_pretrained(G: BigGAN.Generator, D: BigGAN.Discriminator, config: dict) -> None:
    """Start a new experiment as its stage says: from the source model in weights_root, then
    knowledge loading or the old classes' mean; --stage pretrain starts from scratch."""
    stage = stages.get(config["stage"])
    if not stage.needs_source_model:
        return
    root = config["weights_root"]
    hint = (f"put the pretrained source model (BigGAN-PyTorch's G.pth and D.pth, {config['n_pretrain_classes']} "
            f"classes) in {root}, or point --weights_root / --base_dir at it")
    for model, part in ((G, "G"), (D, "D")):
        path = os.path.join(root, f"{part}.pth")
        state = utils.load_file(path, f"pretrained {part} weights", hint)
        if not isinstance(state, dict):
            raise utils.UsageError(f"{path} holds a {type(state).__name__}, not a state dict; {hint}")
        if not checkpoints.all_finite(state):
            raise utils.UsageError(f"{path} holds non-finite values (NaN or inf): the source model is damaged "
                                   "or came from a diverged run; use a healthy checkpoint")
        try:
            if stage.start == stages.FROM_KNOWLEDGE:
                BigGAN.load_pretrained_state_dict(model, state, f"pretrained {part}")
            else:
                BigGAN.mean_class_init(model, state, config["n_pretrain_classes"], f"pretrained {part}")
        except BigGAN.WeightsMismatch as err:
            raise utils.UsageError(str(err)) from err
    if stage.start == stages.FROM_KNOWLEDGE:
        G.load_previous_knowledge(config["comb_init"])


def new_run_state(config: dict) -> dict:
    """The counters saved as state_dict.pth (BigGAN-PyTorch's keys, plus where the data stands)."""
    return {"itr": 0, "epoch": 0, "epoch_batches": 0, "save_num": 0, "save_best_num": 0,
            "best_IS": 0.0, "best_FID": float("inf"), "best_KMMD": float("inf"), "config": config}


def checkpoint_objects(models: Models, state: dict) -> dict:
    return {**{name: obj.state_dict() for name, obj in models.named().items()}, "state_dict": state}


def experiment_folder(config: dict) -> str:
    return os.path.join(config["weights_root"], config["experiment_name"])


def save_checkpoint(models: Models, state: dict, config: dict, suffix: str = "") -> None:
    """One checkpoint set, atomically as a whole; diverged weights never replace a good set."""
    try:
        checkpoints.save_set(experiment_folder(config), checkpoint_objects(models, state), state["itr"], suffix)
    except checkpoints.NonFiniteCheckpoint as err:
        raise utils.UsageError(f"training diverged by iteration {state['itr']}: {err}; nothing was saved and the last "
                               f"checkpoint in {experiment_folder(config)} stays. Likely cause: learning rates too high "
                               f"(--G_lr {config['G_lr']}, --D_lr {config['D_lr']}); lower them and --resume") from None


def read_checkpoint(config: dict) -> dict:
    """The checkpoint set to resume: weights_root/<experiment>/ with suffix --load_weights ('best':
    the best of the best sets, 'latest' or none: the latest set)."""
    name, folder = config["experiment_name"], experiment_folder(config)
    hint = f"check --experiment_name ({name}), --load_weights ({config['load_weights'] or 'none'}) and --weights_root"
    suffix = config["load_weights"] = checkpoints.resolve_suffix(folder, config["load_weights"], hint)
    if not checkpoints.has_checkpoint(folder, suffix):
        others = checkpoints.existing_sets(folder)
        if others:
            advice = f"it holds {', '.join(others)}: name one with --load_weights"
        else:
            advice = ("nothing was saved there yet (a run saves every --save_every iterations and at its end): "
                      "start the experiment without --resume")
        raise utils.UsageError(f"--resume: no checkpoint {os.path.basename(checkpoints.part_path(folder, 'state_dict', suffix))} "
                               f"(or its set) in {folder}; {advice}, or {hint}")
    parts = ["state_dict", "G", "G_optim", "D", "D_optim"] + (["G_ema"] if config["ema"] else [])
    saved = checkpoints.load_set(folder, suffix, parts, hint=hint + ("; --ema needs a run trained with --ema" if config["ema"] else ""))
    print(f"Resuming from {checkpoints.describe(folder, suffix)}, iteration {saved['state_dict'].get('itr')}")
    return saved


def adopt_checkpoint_config(config: dict, saved_state: dict, explicit: set[str] | None) -> None:
    """A resumed run is built with its checkpoint's model flags (those the user left out are
    taken from it; n_classes and resolution come from the data and must match). Its stage may
    change (BN -> FT) but not between a knowledge-propagation G and a plain one."""
    saved = saved_state.get("config") or {}
    given = None if explicit is None else explicit | {"n_classes", "resolution"}
    what = f"checkpoint {config['experiment_name']}{' ' + config['load_weights'] if config['load_weights'] else ''}"
    adopted = utils.adopt_saved_config(config, saved, given, BigGAN.weight_defining_flags(), what)
    if adopted:
        print("Model flags from the checkpoint: " + ", ".join(f"--{flag} {config[flag]}" for flag in adopted))
    if "stage" in saved and stages.get(saved["stage"]).knowledge_propagation != stages.get(config["stage"]).knowledge_propagation:
        kinds = {True: "a knowledge-propagation G", False: "a plain G"}
        raise utils.UsageError(f"--stage {config['stage']} trains {kinds[stages.get(config['stage']).knowledge_propagation]}, "
                               f"but {what} is a --stage {saved['stage']} run ({kinds[stages.get(saved['stage']).knowledge_propagation]}); "
                               "resume it with a stage of its kind")


def load_checkpoint(models: Models, saved: dict, config: dict) -> dict:
    """Load a checkpoint set into the models; the run's state."""
    for part, obj in models.named().items():
        try:
            obj.load_state_dict(saved[part])
        except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as err:
            first_line = str(err).strip().splitlines()[-1][:300] if str(err).strip() else type(err).__name__
            raise utils.UsageError(f"checkpoint {part} of {config['experiment_name']} does not fit the model "
                                   f"built from the flags ({first_line}); resume with the flags it was trained with") from err
    state = new_run_state(config)
    state.update({k: v for k, v in saved["state_dict"].items() if k != "config"})
    return state


def apply_optimizer_flags(models: Models, config: dict) -> None:
    """A resumed run trains with the learning rates, betas and eps the user gives now (the
    loaded optimizers would keep the checkpoint's), and says what changed."""
    changes = []
    for optimizer, who in ((models.G_optim, "G"), (models.D_optim, "D")):
        wanted = {"lr": (f"{who}_lr", config[f"{who}_lr"]),
                  "betas": (f"{who}_B1/{who}_B2", (config[f"{who}_B1"], config[f"{who}_B2"])),
                  "eps": ("adam_eps", config["adam_eps"])}
        for key, (flag, value) in wanted.items():
            old = optimizer.param_groups[0][key]
            if (tuple(old) if isinstance(old, (list, tuple)) else old) != value:
                changes.append(f"--{flag} {value} (checkpoint: {old})")
            for group in optimizer.param_groups:
                group[key] = value
    if changes:
        print("Resuming with the optimizer flags given: " + ", ".join(changes))


def new_experiment_guard(config: dict) -> None:
    """A new run never writes over checkpoints: any set there (latest, a copy, a best one) refuses it."""
    found = checkpoints.existing_sets(experiment_folder(config))
    if found:
        raise utils.UsageError(f"experiment {config['experiment_name']} already has checkpoints in "
                               f"{experiment_folder(config)} ({', '.join(found)}); continue it with --resume "
                               f"(--load_weights {found[0] if found[0] != 'latest' else 'SUFFIX'} for another set), "
                               "or choose another --experiment_name")


def prepare_models(config: dict, device, is_main: bool, explicit: set[str] | None = None) -> tuple[Models, dict]:
    """The run's models and optimizers, and its state: resumed, or a new experiment."""
    saved = read_checkpoint(config) if config["resume"] else None
    if saved is not None:
        adopt_checkpoint_config(config, saved["state_dict"], explicit)
    G, D = build_models(config, device)
    if saved is None:
        load_pretrained(G, D, config)
    # After loading (and knowledge loading): the official code copied G before, a bug.
    G_ema = train_fns.ema_copy(G) if config["ema"] else None
    models = Models(G, D, *train_fns.make_optimizers(G, D, config), G_ema=G_ema)
    if saved is None:
        if is_main:
            new_experiment_guard(config)
        return models, new_run_state(config)
    state = load_checkpoint(models, saved, config)
    apply_optimizer_flags(models, config)
    if config["num_iters"] and config["num_iters"] <= state["itr"]:
        raise utils.UsageError(f"--num_iters {config['num_iters']}: the checkpoint is at iteration {state['itr']} "
                               "already; give a larger --num_iters to train further")
    return models, state


def describe_run(config: dict, device, world_size: int, models: Models) -> None:
    count = lambda params: sum(p.numel() for p in params)
    stage = stages.get(config["stage"])
    print(f"Experiment {config['experiment_name']} on {device} ({world_size} process(es)); stage "
          f"{stage.name} ({stage.summary}) trains {count(stages.G_parameters(models.G, stage)):,} of "
          f"{count(models.G.parameters()):,} G parameters, and "
          f"{count(stages.D_parameters(models.D, config['freezeD_layer'])):,} of {count(models.D.parameters()):,} of D")


def make_metrics(config: dict, device):
    if config["no_fid"]:
        print("--no_fid: skipping in-loop metrics (FID, IS, KMMD)")
        return None
    import inception_utils  # heavy (torchvision models); only when metrics run
    return inception_utils.prepare_inception_metrics(
        config["dataset"], config["parallel"], data_root=config["data_root"], backbone=config["backbone"],
        inception_weights=config["inception_weights"] or None, device=device, kmmd=config["kmmd"],
        mfid=config["mfid"])


def make_loader(config: dict, state: dict, rank: int, world_size: int, device):
    """Batches for one iteration: batch_size x num_D_steps x num_D_accumulations images."""
    D_batch = config["batch_size"] * config["num_D_steps"] * config["num_D_accumulations"]
    loader = datasets.get_data_loaders(**{**config, "batch_size": D_batch, "start_itr": state["itr"],
                                          "rank": rank, "world_size": world_size,
                                          "pin_memory": config["pin_memory"] and device.type == "cuda"})[0]
    images = len(loader.dataset) // world_size
    if rank == 0 and config["batch_size"] > images:
        print(f"warning: --batch_size {config['batch_size']} is larger than the {images} training images"
              f"{' per process' if world_size > 1 else ''}: every D batch holds each image about "
              f"{config['batch_size'] / images:.1f} times; lower --batch_size if that is not intended", file=sys.stderr)
    return loader


def batches_across_epochs(loader, state: dict, config: dict):
    """Batches until the data runs out, counting epochs and the batches of the current one in
    `state`, so that a resumed run continues at the batch where it stopped. The multi-epoch
    sampler spans all epochs itself (and skips the batches a resumed run has seen). The first
    epoch's iterator is made here, before the caller restores a resumed RNG: making it draws
    from the RNG."""
    if not config["use_multiepoch_sampler"]:
        if state["epoch"] >= config["num_epochs"]:
            return iter(())
        loader.sampler.set_epoch(state["epoch"], skip_batches=state["epoch_batches"])
    return _continue_epochs(iter(loader), loader, state, config)


def _continue_epochs(batches, loader, state: dict, config: dict):
    while True:
        for batch in batches:
            state["epoch_batches"] += 1
            yield batch
        state["epoch"] += 1
        state["epoch_batches"] = 0
        if config["use_multiepoch_sampler"] or state["epoch"] >= config["num_epochs"]:
            return
        loader.sampler.set_epoch(state["epoch"])
        batches = iter(loader)


# ---------------------------------------------------------------------------------------------
# Saving, sampling and evaluating, none of which may change the training.

@contextlib.contextmanager
def outside_training(models: Models, config: dict, device):
    """Sampling and evaluation: the generators in eval mode if asked, and afterwards everything
    training depends on exactly as before (the RNG, the generators' buffers: spectral-norm u's
    and BN statistics move in train-mode forward passes), so that sheets and metrics never change
    the run."""
    generators = [m for m in (models.G, models.G_ema) if m is not None]
    buffers = [{name: b.clone() for name, b in G.named_buffers()} for G in generators]
    for G in generators:
        G.train(not config["G_eval_mode"])
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        yield
    with torch.no_grad():
        for G, saved in zip(generators, buffers):
            for name, b in G.named_buffers():
                b.copy_(saved[name])
    for G in generators:
        G.train()


class SheetMaker:
    """The fixed-z sample sheet and the class sheet (one row per class, the same z in each row)
    that BigGAN-PyTorch writes after every save."""

    def __init__(self, config: dict, G: BigGAN.Generator, device):
        self.folder = os.path.join(config["samples_root"], config["experiment_name"])
        z, self.fixed_y = sampling.sample_z_y(config["G_batch_size"], G.dim_z, config["n_classes"], "cpu",
                                              config["z_var"], torch.Generator().manual_seed(config["seed"] + 1))
        self.fixed_z, self.fixed_y = z.to(device), self.fixed_y.to(device)
        sheet_z = torch.randn(10, G.dim_z, generator=torch.Generator().manual_seed(config["seed"]))
        self.sheet_z = sheet_z.to(device) * config["z_var"] ** 0.5
        self.n_classes = config["n_classes"]

    @torch.no_grad()
    def write(self, G: BigGAN.Generator, itr: int) -> None:
        fixed = G(self.fixed_z, G.class_input(self.fixed_y)).float().cpu()
        sampling.save_image_grid(fixed, os.path.join(self.folder, f"fixed_samples{itr}.png"),
                                 nrow=int(fixed.shape[0] ** 0.5))
        classes = list(range(min(self.n_classes, 50)))  # at most 50 rows
        sheet = sampling.class_sheet(G, classes, self.sheet_z, batch_size=len(self.fixed_z))
        sampling.save_image_grid(sheet, os.path.join(self.folder, f"class_sheet{itr}.png"),
                                 nrow=self.sheet_z.shape[0])


def rng_states(device) -> list[dict]:
    """Every process's random state (CPU, and CUDA where it draws the noise), gathered on all ranks:
    each rank draws its own noise, so an exact resume needs each one's."""
    own = {"cpu": torch.get_rng_state(),
           "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}
    if not (dist.is_available() and dist.is_initialized()):
        return [own]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, own)
    return gathered


def restore_rng_state(state: dict, rank: int, world_size: int, device) -> None:
    """This rank's random state from a resumed checkpoint (after the loader drew its seed)."""
    saved = state.get("rng_states")
    if saved is None:  # written before per-process states were saved: one process's CPU state
        if "rng_state" in state:
            torch.set_rng_state(state["rng_state"])
        return
    if len(saved) != world_size and rank == 0:
        print(f"warning: the checkpoint was trained by {len(saved)} process(es), this run has {world_size}: "
              "the resumed noise differs from an uninterrupted run's", file=sys.stderr)
    own = saved[rank % len(saved)]
    torch.set_rng_state(own["cpu"])
    if device.type == "cuda" and own.get("cuda") is not None:
        torch.cuda.set_rng_state(own["cuda"], device)


def save_and_rotate(models: Models, state: dict, config: dict) -> None:
    """The latest checkpoint and a rotating copy, as BigGAN-PyTorch; the copy replaces the oldest
    copy, never the one this run resumed from. state['rng_states'] is set by the caller."""
    state["rng_state"] = state["rng_states"][0]["cpu"]  # the key of earlier checkpoints, for their readers
    save_checkpoint(models, state, config)
    if config["num_save_copies"] > 0:
        slot = checkpoints.next_slot(experiment_folder(config), "copy", config["num_save_copies"], resumed_from(config))
        state["save_num"] = int(slot[len("copy"):])  # BigGAN-PyTorch's counter, kept for its readers
        save_checkpoint(models, state, config, slot)


def resumed_from(config: dict) -> str:
    return config["load_weights"] if config["resume"] else ""


BETTER = {"IS": lambda new, best: new > best, "FID": lambda new, best: new < best,
          "KMMD": lambda new, best: new < best}
METRIC_KEY = {"IS": "IS_mean", "FID": "FID", "KMMD": "KMMD"}


def evaluate(models: Models, state: dict, config: dict, get_metrics, precision: Precision, device) -> dict:
    """In-loop metrics; saves a best checkpoint when --which_best improved (the official code
    compared FID when asked for KMMD: fixed here)."""
    G = sampling.sampling_G(models.G, models.G_ema, config)
    if config["accumulate_stats"]:
        sampling.accumulate_standing_stats(G, config, device)
    metrics = get_metrics(sampling.make_sample_fn(G, config, device, precision), config["num_inception_images"],
                          num_splits=10, use_torch=False, kmmd=config["kmmd"], mfid=config["mfid"])
    which = config["which_best"]
    value = metrics.get(METRIC_KEY[which])
    if value is None:
        raise utils.UsageError(f"--which_best {which} needs that metric; add --kmmd for KMMD")
    best_key = f"best_{which}"
    if BETTER[which](value, state[best_key]):
        slot = checkpoints.next_slot(experiment_folder(config), "best", config["num_best_copies"], resumed_from(config))
        print(f"{which} improved ({state[best_key]:.4g} -> {value:.4g}), saving {slot}")
        state[best_key] = value
        state["save_best_num"] = int(slot[len("best"):])
        save_checkpoint(models, state, config, slot)
    return metrics


def stop_if_diverged(losses: dict[str, float], itr: int, config: dict) -> None:
    """Non-finite losses end the run before anything of this iteration is saved."""
    bad = {name: value for name, value in losses.items() if not math.isfinite(value)}
    if bad:
        folder = os.path.join(config["weights_root"], config["experiment_name"])
        fp16 = " or fp16 overflow (try --amp bf16 or none)" if config["amp"] == "fp16" else ""
        raise utils.UsageError(
            f"training diverged at iteration {itr}: {', '.join(f'{k} = {v}' for k, v in bad.items())}; nothing of "
            f"it was saved and the last checkpoint in {folder} stays. Likely cause: learning rates too high "
            f"(--G_lr {config['G_lr']}, --D_lr {config['D_lr']}){fp16}; lower them and --resume")


def format_metrics(itr: int, metrics: dict) -> str:
    return f"itr {itr}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float))


# ---------------------------------------------------------------------------------------------
# The training loop.

def run(config: dict, explicit: set[str] | None = None) -> dict:
    """Train as config says, holding the experiment's lock (rank 0) after finishing or clearing
    any save a killed run left. explicit: the flags the user gave (a resumed run takes the other
    model flags from its checkpoint); None: all of them."""
    rank, world_size, device = setup_distributed(config)
    is_main = rank == 0
    folder = experiment_folder(config)
    with checkpoints.ExperimentLock(folder) if is_main else contextlib.nullcontext():
        if is_main:
            checkpoints.recover(folder)
            checkpoints.clean_temporaries(os.path.join(config["samples_root"], config["experiment_name"]))
        try:
            return training_loop(config, explicit, rank, world_size, device)
        except utils.WriteError as err:  # a full disk or a read-only folder: say where the run stands
            raise utils.WriteError(f"{err}; training stopped, {where_to_continue(folder)}") from None


def where_to_continue(folder: str) -> str:
    saved = checkpoints.saved_iteration(folder, "") if checkpoints.has_checkpoint(folder) else -1
    if saved < 0:
        return "nothing of it was saved: start it again once the problem is fixed"
    return f"its last checkpoint (iteration {saved}) in {folder} is intact: --resume continues from there"


def training_loop(config: dict, explicit: set[str] | None, rank: int, world_size: int, device) -> dict:
    # Set up: models and state, data, the step, metrics, logs.
    is_main = rank == 0
    utils.seed_rng(config["seed"])
    set_classes_and_resolution(config)
    models, state = prepare_models(config, device, is_main, explicit)
    if is_main:
        describe_run(config, device, world_size, models)
    loader = make_loader(config, state, rank, world_size, device)
    precision = Precision(config["amp"], device)
    speed = acceleration.StepOptions.choose(config, precision)  # memory format, fused resampling, compile
    speed.apply(models.G, models.D, models.G_ema)
    GD = BigGAN.G_D(models.G, models.D, augment=DiffAugment.make_augment(config.get("DiffAugment", "")))
    if config["parallel"] and device.type == "cuda":
        GD = nn.DataParallel(GD)
    GD = speed.wrap(GD)
    if is_main:
        print(f"Training in {precision.describe()}; {speed.describe()}")
    ema = (train_fns.Ema(models.G, models.G_ema, config["ema_decay"], config["ema_start"])
           if models.G_ema is not None else None)
    train_step = train_fns.GAN_training_function(models, GD, ema, config, precision, device)
    get_metrics = make_metrics(config, device) if is_main else None
    sheets = SheetMaker(config, models.G, device)
    test_log = os.path.join(config["logs_root"], f"{config['experiment_name']}_log.jsonl")
    train_log = os.path.join(config["logs_root"], config["experiment_name"], "train_log.jsonl")
    last_metrics: dict = {}

    # Same models on every rank (same seed above), different noise per rank from here on.
    torch.manual_seed(config["seed"] + rank)
    batches = batches_across_epochs(loader, state, config)
    if config["resume"]:
        restore_rng_state(state, rank, world_size, device)  # after the loader drew its seed: exact resume
    start_time, start_itr = time.time(), state["itr"]
    progress = tqdm(disable=not is_main, initial=start_itr, total=config["num_iters"] or None)
    itr, final = start_itr, False

    try:  # closed also on an error, whose one line then starts a line of its own
        for x, y in batches:
            # Train one iteration.
            state["itr"] += 1
            itr = state["itr"]
            models.G.train(), models.D.train()
            losses = train_step(x.to(device), y.to(device), itr)
            stop_if_diverged(losses, itr, config)
            if itr == start_itr + 1 and is_main and config["compile"]:
                print(f"--compile: the first iteration took {time.time() - start_time:.1f} s, compilation included")
            final = bool(config["num_iters"]) and itr >= config["num_iters"]
            saving = itr % config["save_every"] == 0 or final
            evaluating = not config["no_fid"] and (itr % config["test_every"] == 0 or final)
            if saving or evaluating:  # every process takes part; a best set is a checkpoint to resume too
                state["rng_states"] = rng_states(device)
            progress.update(1)
            progress.set_postfix({"epoch": state["epoch"], **{k: f"{v:+.3f}" for k, v in losses.items()}})
            if not is_main:
                if final:
                    break
                continue

            # Log the losses.
            utils.append_jsonl(train_log, {"itr": itr, **losses})

            # Save a checkpoint and draw the sample sheets.
            if saving:
                with outside_training(models, config, device):
                    save_and_rotate(models, state, config)
                    sheets.write(sampling.sampling_G(models.G, models.G_ema, config), itr)

            # Evaluate (and keep the best checkpoints).
            if evaluating:
                with outside_training(models, config, device):
                    last_metrics = evaluate(models, state, config, get_metrics, precision, device)
                utils.append_jsonl(test_log, {"itr": itr, "time": time.time() - start_time,
                                              **{k: v for k, v in last_metrics.items() if v is not None}})
                print(format_metrics(itr, last_metrics))
            if final:
                break
    finally:
        progress.close()

    # Finish: a run that stopped because the data ran out (epoch mode) saves its final state too.
    if itr == start_itr:
        raise utils.UsageError(f"no training iteration ran: the data ran out at iteration {start_itr} "
                               f"(--num_epochs {config['num_epochs']} over {len(loader.dataset)} images); "
                               "raise --num_epochs")
    if not final and itr % config["save_every"] != 0:
        state["rng_states"] = rng_states(device)
    if is_main and not final and itr % config["save_every"] != 0:
        with outside_training(models, config, device):
            save_and_rotate(models, state, config)
            sheets.write(sampling.sampling_G(models.G, models.G_ema, config), itr)
    if world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    if is_main:
        print(f"Done: {itr - start_itr} iterations ({start_itr + 1}-{itr}) in {time.time() - start_time:.0f} s. "
              f"Checkpoints in {os.path.join(config['weights_root'], config['experiment_name'])}, samples in "
              f"{os.path.join(config['samples_root'], config['experiment_name'])}, logs in {config['logs_root']}")
    return {"state_dict": state, "metrics": last_metrics, "G": models.G, "D": models.D, "G_ema": models.G_ema}


def main(argv: list[str] | None = None) -> dict:
    parser = utils.prepare_parser()
    config = utils.finalize_config(vars(parser.parse_args(argv)))
    return run(config, utils.explicit_flags(parser, argv))


if __name__ == "__main__":
    utils.run_main(main)
