"""How a settled run (run_spec.RunSpec) starts: its models and optimizers, built from the config
and loaded from its start plan (a resumed set, another experiment's set, a source model's weights
with knowledge loading or the old classes' mean), and its state: new, or resumed with every
process's random state."""
from __future__ import annotations

import sys
from typing import Any, Mapping

import torch
import torch.distributed as dist

import BigGAN
import checkpoints
import run_folder
import stages
import train_fns
import utils
from run_spec import RunSpec
from train_fns import Models


def build_models(config: Mapping[str, Any], device) -> tuple[BigGAN.Generator,
                                                              BigGAN.Discriminator]:
    model_config = stages.model_config(config)
    return (BigGAN.Generator(**model_config).to(device),
            BigGAN.Discriminator(**model_config).to(device))


def prepare_models(spec: RunSpec, device, is_main: bool) -> tuple[Models, dict]:
    """The run's models and optimizers, and its state, as its start plan says. The random
    initialization comes first (seeded by the caller), then the loading."""
    config, start = spec.config, spec.start
    G, D = build_models(config, device)
    if start.source is not None:
        load_source(G, D, start.source, config)
    elif start.start is not None:  # weights first: G_ema starts as a copy of the loaded G
        load_into({"G": G, "D": D}, start.start, start.what)
    # After loading (and knowledge loading): the official code copied G before, a bug.
    G_ema = train_fns.ema_copy(G) if config["ema"] else None
    models = Models(G, D, *train_fns.make_optimizers(G, D, config), G_ema=G_ema)
    if start.resumed is not None:
        load_into(models.named(), start.resumed, f"checkpoint of {config['experiment_name']}")
        apply_optimizer_flags(models, config)
        return models, resumed_state(start.resumed["state_dict"], config)
    if start.start is not None:  # its optimizers and G_ema, where it has them
        load_into({part: obj for part, obj in models.named().items() if part not in ("G", "D")},
                  start.start, start.what)
        apply_optimizer_flags(models, config)
    if is_main:
        run_folder.guard_new_experiment(spec.folder)
    return models, new_run_state(config)


# ---------------------------------------------------------------------------------------------
# Loading weights into the models

def load_source(G: BigGAN.Generator, D: BigGAN.Discriminator, source: dict,
                config: Mapping[str, Any]) -> None:
    """The source model's weights (run_spec.read_source_model, read_start_from), then knowledge
    loading or the old classes' mean, as the stage says."""
    stage = stages.get(config["stage"])
    for model, part in ((G, "G"), (D, "D")):
        if not checkpoints.all_finite(source[part]):
            raise utils.UsageError(f"{source['paths'][part]} holds non-finite values (NaN or inf): "
                                   "the source model is damaged or came from a diverged run; use "
                                   "a healthy checkpoint")
        try:
            if stage.start == stages.FROM_KNOWLEDGE:
                BigGAN.load_pretrained_state_dict(model, source[part], f"pretrained {part}")
            else:
                BigGAN.mean_class_init(model, source[part], config["n_pretrain_classes"],
                                       f"pretrained {part}")
        except BigGAN.WeightsMismatch as err:
            raise utils.UsageError(str(err)) from err
    if stage.start == stages.FROM_KNOWLEDGE:
        G.load_previous_knowledge(config["comb_init"])


def load_into(objects: dict[str, Any], saved: dict, what: str) -> None:
    """A checkpoint set's parts into the models and optimizers (by checkpoint name) that both
    have."""
    for part, obj in objects.items():
        if part not in saved:
            continue
        try:
            obj.load_state_dict(saved[part])
        except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as err:
            lines = str(err).strip().splitlines()
            problem = lines[-1][:300] if lines else type(err).__name__
            raise utils.UsageError(f"{what}: {part} does not fit the model built from the flags "
                                   f"({problem}); use the flags it was trained with") from err


def apply_optimizer_flags(models: Models, config: Mapping[str, Any]) -> None:
    """A run continuing loaded optimizers trains with the learning rates, betas and eps the user
    gives now (the loaded optimizers would keep the checkpoint's), and says what changed."""
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
        print("Optimizers with the flags given: " + ", ".join(changes))


# ---------------------------------------------------------------------------------------------
# The run's state

def new_run_state(config: Mapping[str, Any]) -> dict:
    """The counters saved as state_dict.pth: BigGAN-PyTorch's keys with its meanings (save_num and
    save_best_num: the copy and best slot written next; best_IS/FID/KMMD: the best value seen so
    far), plus where the data stands and the latest evaluation (metrics, that of a best set's own
    weights), and the run's config (a plain dict: it is saved)."""
    return {"itr": 0, "epoch": 0, "epoch_batches": 0, "save_num": 0, "save_best_num": 0,
            "best_IS": 0.0, "best_FID": float("inf"), "best_KMMD": float("inf"), "metrics": {},
            "config": dict(config)}


def resumed_state(saved_state: dict, config: Mapping[str, Any]) -> dict:
    """The run's state from a resumed checkpoint; a new stage (BN -> FT in one experiment, the
    official route) tracks its best checkpoints anew."""
    state = new_run_state(config)
    state.update({k: v for k, v in saved_state.items() if k != "config"})
    previous = (saved_state.get("config") or {}).get("stage")
    if previous and previous != config["stage"]:
        fresh = new_run_state(config)
        for key in ("best_IS", "best_FID", "best_KMMD", "metrics"):
            state[key] = fresh[key]
        state["evaluation_due"] = False  # the previous stage's evaluation, not this one's
        print(f"Stage {config['stage']} after {previous}: its best checkpoints are tracked anew")
    return state


def rng_states(device) -> list[dict]:
    """Every process's random state (CPU, and CUDA where it draws the noise), gathered on all
    ranks: each rank draws its own noise, so an exact resume needs each one's."""
    own = {"cpu": torch.get_rng_state(),
           "cuda": (torch.cuda.get_rng_state(device) if torch.device(device).type == "cuda"
                    else None)}
    if not (dist.is_available() and dist.is_initialized()):
        return [own]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, own)
    return gathered


def restore_rng_state(state: dict, rank: int, world_size: int, device) -> None:
    """This rank's random state from a resumed checkpoint."""
    saved = state.get("rng_states")
    if saved is None:  # written before per-process states were saved: one process's CPU state
        if "rng_state" in state:
            torch.set_rng_state(state["rng_state"])
        return
    if len(saved) != world_size and rank == 0:
        print(f"warning: the checkpoint was trained by {len(saved)} process(es), this run has "
              f"{world_size}: the resumed noise differs from an uninterrupted run's",
              file=sys.stderr)
    own = saved[rank % len(saved)]
    torch.set_rng_state(own["cpu"])
    if torch.device(device).type == "cuda" and own.get("cuda") is not None:
        torch.cuda.set_rng_state(own["cuda"], device)
