"""What training does besides the loop (BigGAN-PyTorch's train_fns): the run's models and
optimizers, the training step (D updates, then a G update with the transfer penalties) as train.py,
experiments/bench.py and the official-iteration test build it, EMA, and the saves and evaluations
between iterations (latest, copy and best checkpoint sets, sheets, in-loop metrics), none of which
changes the training; when a run stops early (--patience) and how long it trained
(TrainingClock)."""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn as nn

import acceleration
import BigGAN
import checkpoints
import DiffAugment
import losses
import run_folder
import sampling
import stages
import utils
from acceleration import Precision, StepOptions
from sampling import sample_z_y


@dataclass
class Models:
    """What a run trains and checkpoints, by BigGAN-PyTorch's checkpoint names."""
    G: BigGAN.Generator
    D: BigGAN.Discriminator
    G_optim: torch.optim.Optimizer
    D_optim: torch.optim.Optimizer
    G_ema: BigGAN.Generator | None = None

    def named(self) -> dict[str, nn.Module | torch.optim.Optimizer]:
        """name → object, in checkpoint order; G_ema only when the run keeps one."""
        objects = {"G": self.G, "G_optim": self.G_optim, "D": self.D, "D_optim": self.D_optim}
        if self.G_ema is not None:
            objects["G_ema"] = self.G_ema
        return objects


def make_optimizers(G: nn.Module, D: nn.Module,
                    config: dict) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam over all of G and D, as the official code, so official optimizer checkpoints load; the
    stage decides which parameters get gradients, and Adam leaves the others untouched."""
    G_optim = torch.optim.Adam(G.parameters(), lr=config["G_lr"],
                               betas=(config["G_B1"], config["G_B2"]),
                               eps=config["adam_eps"], weight_decay=0)
    D_optim = torch.optim.Adam(D.parameters(), lr=config["D_lr"],
                               betas=(config["D_B1"], config["D_B2"]),
                               eps=config["adam_eps"], weight_decay=0)
    return G_optim, D_optim


def toggle_grad(model: nn.Module, on: bool, trainable: list[nn.Parameter] | None = None) -> None:
    """requires_grad on for `trainable` (default: all of model's parameters), off for the rest."""
    wanted = {id(p) for p in (trainable if trainable is not None else model.parameters())}
    for p in model.parameters():
        p.requires_grad = on and id(p) in wanted


def transfer_regularizer_params(G: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(combination weights for the L1 penalty, residuals for the L2 penalty), as the official
    code."""
    named = list(G.named_parameters())
    return ([p for n, p in named if "comb_layer" in n],
            [p for n, p in named if "res_g" in n or "res_b" in n])


class Ema:
    """G_ema <- decay * G_ema + (1 - decay) * G over parameters and buffers (BigGAN-PyTorch).
    The target starts as given: a copy of G (ema_copy) or a resumed G_ema."""

    def __init__(self, source: nn.Module, target: nn.Module, decay: float = 0.9999,
                 start_itr: int = 0):
        self.source, self.target = source, target
        self.decay, self.start_itr = decay, start_itr

    @torch.no_grad()
    def update(self, itr: int) -> None:
        decay = 0.0 if itr < self.start_itr else self.decay
        source = self.source.state_dict()
        seen = set()  # a transfer G lists its shared embedding under several keys: update it once
        for key, value in self.target.state_dict().items():
            if value.data_ptr() in seen:
                continue
            seen.add(value.data_ptr())
            if value.is_floating_point():
                value.copy_(value * decay + source[key] * (1 - decay))
            else:
                value.copy_(source[key])


def ortho_(model: nn.Module, strength: float, blacklist: tuple = ()) -> None:
    """BigGAN's modified orthogonal regularization, added to the gradients in place: strength
    times the gradient of 1/2 ||W W^T (1 - I)||^2, W the weight as a matrix of its output rows."""
    with torch.no_grad():
        for param in model.parameters():
            if param.grad is None or param.ndim < 2 or any(param is b for b in blacklist):
                continue
            # reshape: a channels_last weight cannot be viewed so; its copy works in any layout
            w = param.reshape(param.shape[0], -1)
            off_diagonal = 1.0 - torch.eye(w.shape[0], device=w.device)
            param.grad += strength * (
                2 * torch.mm(torch.mm(w, w.t()) * off_diagonal, w)).reshape(param.shape)


def average_gradients(model: nn.Module) -> None:
    """Data parallelism across torchrun processes: average the gradients that exist.

    We all-reduce by hand instead of wrapping in DistributedDataParallel because the GAN step
    toggles requires_grad between the D and G updates, which the DDP wrapper does not support.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    world = dist.get_world_size()
    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world


def GAN_training_function(models: Models, GD: nn.Module, ema: Ema | None, config: dict,
                          precision: Precision, device) -> Callable:
    """One iteration: num_D_steps D updates over num_D_accumulations batches each, then one G
    update (BigGAN-PyTorch semantics), with the stage's G parameters and the transfer penalties."""
    G, D, G_optim, D_optim = models.G, models.D, models.G_optim, models.D_optim
    G_trainable = stages.G_parameters(G, stages.get(config["stage"]))
    D_trainable = stages.D_parameters(D, config["freezeD_layer"])
    comb_params, res_params = transfer_regularizer_params(G)
    bs, G_bs = config["batch_size"], config["G_batch_size"]
    n_classes, z_var = config["n_classes"], config["z_var"]

    def train(x: torch.Tensor, y: torch.Tensor, itr: int) -> dict[str, float]:
        xs, ys = torch.split(x, bs), torch.split(y, bs)

        # D updates: G frozen, each over num_D_accumulations real batches.
        toggle_grad(D, True, D_trainable)
        toggle_grad(G, False)
        counter = 0
        for _ in range(config["num_D_steps"]):
            D_optim.zero_grad(set_to_none=True)
            for _ in range(config["num_D_accumulations"]):
                z, gy = sample_z_y(bs, G.dim_z, n_classes, device, z_var)
                with precision.autocast():
                    D_fake, D_real = GD(z, gy, xs[counter], ys[counter], train_G=False,
                                        split_D=config["split_D"])
                    D_loss_real, D_loss_fake = losses.discriminator_loss(D_fake.float(),
                                                                         D_real.float())
                    D_loss = (D_loss_real + D_loss_fake) / config["num_D_accumulations"]
                precision.backward(D_loss, D_optim)
                counter += 1
            average_gradients(D)
            if config["D_ortho"] > 0:
                ortho_(D, config["D_ortho"])
            precision.step(D_optim)

        # G update: the stage's parameters, adversarial loss plus the transfer penalties.
        toggle_grad(D, False)
        toggle_grad(G, True, G_trainable)
        G_optim.zero_grad(set_to_none=True)
        for _ in range(config["num_G_accumulations"]):
            z, gy = sample_z_y(G_bs, G.dim_z, n_classes, device, z_var)
            with precision.autocast():
                D_fake = GD(z, gy, train_G=True, split_D=config["split_D"])
                G_adv = losses.generator_loss(D_fake.float())
            G_reg = (losses.combination_l1(comb_params, config["comb_l1_scale"])
                     + losses.residual_l2(res_params, config["res_l2_scale"]))
            G_loss = (G_adv + G_reg) / config["num_G_accumulations"]
            precision.backward(G_loss, G_optim)
        average_gradients(G)
        if config["G_ortho"] > 0:
            # Ortho reg on the shared embedding makes no sense (BigGAN-PyTorch).
            ortho_(G, config["G_ortho"], blacklist=tuple(G.shared.parameters()))
        precision.step(G_optim)

        if ema is not None:
            ema.update(itr)
        return {name: float(value.detach()) if torch.is_tensor(value) else float(value)
                for name, value in (("G_loss", G_loss), ("G_reg", G_reg),
                                    ("D_loss_real", D_loss_real), ("D_loss_fake", D_loss_fake))}

    return train


def ema_copy(G: BigGAN.Generator) -> BigGAN.Generator:
    """A G_ema made from G *after* G's weights and prior knowledge are loaded (the official code
    copied G before loading them, so its EMA started from random weights)."""
    G_ema = copy.deepcopy(G)
    for p in G_ema.parameters():
        p.requires_grad = False
    return G_ema


# ---------------------------------------------------------------------------------------------
# The step as a run builds it

@dataclass
class Step:
    """One training iteration, step(x, y, itr) -> losses, and how it runs."""
    train: Callable[[torch.Tensor, torch.Tensor, int], dict[str, float]]
    GD: nn.Module
    precision: Precision
    description: str

    def __call__(self, x: torch.Tensor, y: torch.Tensor, itr: int) -> dict[str, float]:
        return self.train(x, y, itr)


def build_step(models: Models, config: dict, device) -> Step:
    """The training step of a run: precision, memory format, fused resampling and torch.compile from
    the flags (acceleration.py), G_D with --DiffAugment, DataParallel with --parallel on CUDA, EMA
    with --ema. train.py, experiments/bench.py and the official-iteration test all build it
    here."""
    device = torch.device(device)
    official = config.get("official_numerics", False)
    precision = Precision(config["amp"], device, official)
    acceleration.keep_freed_memory(device)
    speed = StepOptions.choose(config.get("channels_last", "auto"),
                               config.get("fused_resampling", "auto"), config.get("compile", False),
                               official)
    speed.apply(models.G, models.D, models.G_ema)
    GD = BigGAN.G_D(models.G, models.D, augment=DiffAugment.make_augment(config["DiffAugment"]))
    if config["parallel"] and device.type == "cuda":
        GD = nn.DataParallel(GD)
    GD = speed.wrap(GD)
    ema = (Ema(models.G, models.G_ema, config["ema_decay"], config["ema_start"])
           if models.G_ema is not None else None)
    return Step(GAN_training_function(models, GD, ema, config, precision, device), GD, precision,
                f"{precision.describe()}; {speed.describe()}")


def stop_if_diverged(losses: dict[str, float], itr: int, config: dict) -> None:
    """Non-finite losses end the run before anything of this iteration is saved."""
    bad = {name: value for name, value in losses.items() if not math.isfinite(value)}
    if bad:
        folder = run_folder.folder(config)
        fp16 = " or fp16 overflow (try --amp bf16 or none)" if config["amp"] == "fp16" else ""
        raise utils.UsageError(
            f"training diverged at iteration {itr}: "
            f"{', '.join(f'{k} = {v}' for k, v in bad.items())}; nothing of "
            f"it was saved and the last checkpoint in {folder} stays. Likely cause: learning rates "
            f"too high (--G_lr {config['G_lr']}, --D_lr {config['D_lr']}){fp16}; lower them and "
            "--resume")


# ---------------------------------------------------------------------------------------------
# Saving and evaluating between iterations

def save_checkpoint(models: Models, state: dict, config: dict, suffix: str = "") -> None:
    """One checkpoint set, atomically as a whole; diverged weights never replace a good set."""
    folder = run_folder.folder(config)
    objects = {**{name: obj.state_dict() for name, obj in models.named().items()},
               "state_dict": state}
    try:
        checkpoints.save_set(folder, objects, state["itr"], suffix)
    except checkpoints.NonFiniteCheckpoint as err:
        raise utils.UsageError(
            f"training diverged by iteration {state['itr']}: {err}; nothing was saved and the last "
            f"checkpoint in {folder} stays. Likely cause: learning rates too high "
            f"(--G_lr {config['G_lr']}, --D_lr {config['D_lr']}); lower them and --resume"
        ) from None


def rotating_slot(config: dict, prefix: str, count: int, itr: int | None = None) -> str:
    """The copy or best slot to write: the one holding iteration itr already (a save made again
    after a kill), else the oldest, never the set this run resumed from."""
    folder = run_folder.folder(config)
    resumed_from = config["load_weights"] if config["resume"] else ""
    return checkpoints.next_slot(folder, prefix, count, resumed_from, itr)


def save_and_sample(models: Models, state: dict, config: dict, sheets: "sampling.Sheets") -> None:
    """The latest checkpoint and a rotating copy (which replaces the oldest copy, never the one this
    run resumed from), then the sample sheets, as BigGAN-PyTorch. state['rng_states'] is the
    caller's."""
    # the key of earlier checkpoints, for their readers
    state["rng_state"] = state["rng_states"][0]["cpu"]
    save_checkpoint(models, state, config)
    if config["num_save_copies"] > 0:
        slot = rotating_slot(config, "copy", config["num_save_copies"])
        save_checkpoint(models, state, config, slot)
        state["save_num"] = int(
            rotating_slot(config, "copy", config["num_save_copies"])[len("copy"):])
    sheets.write(sampling.sampling_G(models.G, models.G_ema, config["use_ema"]), state["itr"])


BETTER = {"IS": lambda new, best: new > best, "FID": lambda new, best: new < best,
          "KMMD": lambda new, best: new < best}
METRIC_KEY = {"IS": "IS_mean", "FID": "FID", "KMMD": "KMMD"}


def evaluate_and_keep_best(models: Models, state: dict, config: dict, metrics,
                           precision: Precision, device, draws: "sampling.Draws") -> dict:
    """In-loop metrics (BigGAN-PyTorch's train_fns.test); a best checkpoint set when --which_best
    improved (the official code compared FID when asked for KMMD: fixed here). state keeps the
    best of each metric so far, as BigGAN-PyTorch."""
    G = sampling.sampling_G(models.G, models.G_ema, config["use_ema"])
    if config["accumulate_stats"]:
        sampling.accumulate_standing_stats(G, draws, device)
    results = metrics(sampling.make_sample_fn(G, draws, device, precision),
                      config["num_inception_images"])
    if record_evaluation(state, results, config):
        slot = rotating_slot(config, "best", config["num_best_copies"], state["itr"])
        which = config["which_best"]
        print(f"{which} improved to {results[METRIC_KEY[which]]:.4g}, saving {slot}")
        save_checkpoint(models, state, config, slot)
        state["save_best_num"] = next_best_number(config)
    return results


def record_evaluation(state: dict, results: dict, config: dict) -> bool:
    """An evaluation's results into the run's state: its metrics and every best so far. Returns
    whether --which_best improved (then a best set is saved)."""
    which = config["which_best"]
    value = results.get(METRIC_KEY[which])
    if value is None:
        raise utils.UsageError(f"--which_best {which} needs that metric; add --kmmd for KMMD")
    state["metrics"] = {k: v for k, v in results.items()
                        if isinstance(v, float) and math.isfinite(v)}
    improved = BETTER[which](value, state[f"best_{which}"])
    # every best so far, as the official code
    better = {metric for metric, key in METRIC_KEY.items()
              if isinstance(results.get(key), float)
              and BETTER[metric](results[key], state[f"best_{metric}"])}
    for metric in better:
        state[f"best_{metric}"] = results[METRIC_KEY[metric]]
    count_since_best(state, results, better)
    return improved


def replay_evaluation(state: dict, record: dict, config: dict) -> None:
    """The state an evaluation left, from its log record, for a run resumed from the set saved
    right before it: the saved state predates it (a set is saved before its iteration is
    evaluated), and its best set, if any, was saved before the record was written."""
    results = {k: v for k, v in record.items() if k not in ("itr", "time", "train_seconds")}
    if record_evaluation(state, results, config):
        state["save_best_num"] = next_best_number(config)


def next_best_number(config: dict) -> int:
    """BigGAN-PyTorch's save_best_num: the best slot written next."""
    return int(rotating_slot(config, "best", config["num_best_copies"])[len("best"):])


def format_metrics(itr: int, metrics: dict) -> str:
    return f"itr {itr}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()
                                      if isinstance(v, float))


# ---------------------------------------------------------------------------------------------
# When a run stops early (--patience), and how long it trained

def count_since_best(state: dict, results: dict, better: set[str]) -> None:
    """Per metric, in state["since_best"]: its best value, the iteration evaluated to it, and the
    evaluations since that did not improve on it (--patience reads them). Each evaluation counts
    once: a best set's state holds its own evaluation, which a run resumed from it replays."""
    track = state.setdefault("since_best", {"itr": None, "metrics": {}})
    if track["itr"] == state["itr"]:
        return
    track["itr"] = state["itr"]
    for metric, key in METRIC_KEY.items():
        if not isinstance(results.get(key), float):
            continue
        if metric in better:
            track["metrics"][metric] = {"value": results[key], "itr": state["itr"],
                                        "evaluations": 0}
        else:  # a checkpoint that predates the count: it starts here, at the best so far
            evaluations = evaluations_since_best(state, metric)
            track["metrics"][metric] = {**best_entry(state, metric), "evaluations": evaluations + 1}


def best_entry(state: dict, metric: str) -> dict:
    """The since_best entry of `metric` that belongs to the state's best value; one of unknown
    iteration where the entry is missing (a checkpoint from before the count) or of another best
    (a new stage of the experiment tracks its bests anew: experiment.resumed_state)."""
    entry = state.get("since_best", {}).get("metrics", {}).get(metric)
    best = state.get(f"best_{metric}")
    if entry is None or entry["value"] != best:
        return {"value": best, "itr": None, "evaluations": 0}
    return entry


def evaluations_since_best(state: dict, metric: str) -> int:
    return best_entry(state, metric)["evaluations"]


def out_of_patience(state: dict, config: dict) -> bool:
    """--patience K (0: off): --which_best has not improved for K evaluations in a row."""
    patience = config.get("patience", 0)
    return patience > 0 and evaluations_since_best(state, config["which_best"]) >= patience


def why_stopped(state: dict, config: dict) -> str:
    which = config["which_best"]
    entry = best_entry(state, which)
    at = (f"iteration {entry['itr']}" if entry["itr"] is not None
          else "an iteration before the count")
    return (f"{which} has not improved for {entry['evaluations']} evaluations (--patience "
            f"{config['patience']}); the best, {which} {entry['value']:.4g}, is {at}'s")


def save_stopped_run(models: Models, state: dict, config: dict) -> None:
    """The last set of a run --patience stops, saved after its evaluation (the state counts it:
    evaluation_due False), as the latest: the run reads as finished (experiments/runs.py), and one
    resumed from it is told that it stopped. The best set stays what --load_weights best loads."""
    state["evaluation_due"] = False
    save_checkpoint(models, state, config)
    print(f"Stopped at iteration {state['itr']}: {why_stopped(state, config)}")


class TrainingClock:
    """The run's training time in seconds over resumes, state["train_seconds"] (each set saves
    it): the wall-clock of its iterations (data, step, loss log) since the experiment began; the
    saves, sheets and in-loop evaluations between them are left out (restart after them)."""

    def __init__(self, state: dict):
        self.total = state.get("train_seconds", 0.0)
        self.since = time.perf_counter()

    def seconds(self) -> float:
        now = time.perf_counter()
        self.total += now - self.since
        self.since = now
        return self.total

    def restart(self) -> None:
        """Leave out what ran since the last reading."""
        self.since = time.perf_counter()
