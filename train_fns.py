"""The pieces of the training loop: which parameters a stage trains, one G/D training step,
EMA, sampling, checkpointing and in-loop evaluation."""
from __future__ import annotations

import contextlib
import copy
import os
import re
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn as nn
import torchvision

import BigGAN
import layers
import losses
import utils

# Stages whose G carries the knowledge-propagation layers (a transfer model); the others are plain.
KNOWLEDGE_PROPAGATION_STAGES = ("BN", "FT")


def model_config(config: dict) -> dict:
    """The config the models are built from: only the knowledge-propagation stages build transfer
    models; the baselines (finetune, BN_only) and pretrain build plain models of the data's classes."""
    transfer = config["stage"] in KNOWLEDGE_PROPAGATION_STAGES
    return {**config, "n_pretrain_classes": config["n_pretrain_classes"] if transfer else 0}


# Official cGANTransfer parameter sets of G (by parameter name); D is trained fully in every stage.
BN_STAGE_PARAMS = ("comb_layer", "res_g", "res_b", "prev_knowledge", "z_layer")
FT_STAGE_FROZEN = ("comb_layer", "prev_knowledge")


# A transfer G keeps its pretrained ccbn gain/bias layers and shared embedding only as the source
# of the prior knowledge: they take no part in its forward pass, so no stage can train them.
UNUSED_IN_TRANSFER = re.compile(r"(\.bn\d\.(gain|bias)\.|^shared\.|pretrain_embedding_w)")


# The new classes' own BN parameters of a plain G: its class embedding(s).
CLASS_PARAMS = {True: re.compile(r"^shared\.weight$"),  # G_shared: the shared class embedding
                False: re.compile(r"\.bn\d\.(gain|bias)\.weight$")}  # else each ccbn's embeddings


def is_trained_in_stage(name: str, stage: str, G_shared: bool = False) -> bool:
    if stage in KNOWLEDGE_PROPAGATION_STAGES and UNUSED_IN_TRANSFER.search(name):
        return False
    if stage == "BN":
        return any(part in name for part in BN_STAGE_PARAMS)
    if stage == "FT":
        return not any(part in name for part in FT_STAGE_FROZEN)
    if stage in ("pretrain", "finetune"):
        return True
    if stage == "BN_only":
        return bool(CLASS_PARAMS[G_shared].search(name))
    raise ValueError(f"unknown stage {stage!r}; use one of {utils.STAGES}")


def stage_parameters(G: nn.Module, stage: str) -> list[nn.Parameter]:
    return [p for name, p in G.named_parameters() if is_trained_in_stage(name, stage, G.G_shared)]


def trained_D_parameters(D: nn.Module, freeze_layers: int) -> list[nn.Parameter]:
    """FreezeD: all of D but its first `freeze_layers` blocks (-1 or 0: all of D)."""
    frozen = tuple(f"blocks.{i}." for i in range(max(freeze_layers, 0)))
    return [p for name, p in D.named_parameters() if not name.startswith(frozen)]


def toggle_grad(model: nn.Module, on: bool, trainable: list[nn.Parameter] | None = None) -> None:
    """requires_grad on for `trainable` (default: all of model's parameters), off for the rest."""
    wanted = {id(p) for p in (trainable if trainable is not None else model.parameters())}
    for p in model.parameters():
        p.requires_grad = on and id(p) in wanted


def transfer_regularizer_params(G: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(combination weights for the L1 penalty, residuals for the L2 penalty), as the official code."""
    named = list(G.named_parameters())
    return ([p for n, p in named if "comb_layer" in n],
            [p for n, p in named if "res_g" in n or "res_b" in n])


class Ema:
    """G_ema <- decay * G_ema + (1 - decay) * G over parameters and buffers (BigGAN-PyTorch).
    The target starts as given: a copy of G (ema_copy) or a resumed G_ema."""

    def __init__(self, source: nn.Module, target: nn.Module, decay: float = 0.9999, start_itr: int = 0):
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


def sample_z_y(batch_size: int, dim_z: int, n_classes: int, device, z_var: float = 1.0,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.randn(batch_size, dim_z, device=device, generator=generator) * z_var ** 0.5
    y = torch.randint(0, n_classes, (batch_size,), device=device, generator=generator)
    return z, y


def ortho_(model: nn.Module, strength: float, blacklist: tuple = ()) -> None:
    """BigGAN's modified orthogonal regularization, added to the gradients in place."""
    with torch.no_grad():
        for param in model.parameters():
            if param.grad is None or param.ndim < 2 or any(param is b for b in blacklist):
                continue
            w = param.view(param.shape[0], -1)
            off_diagonal = 1.0 - torch.eye(w.shape[0], device=w.device)
            param.grad += strength * (2 * torch.mm(torch.mm(w, w.t()) * off_diagonal, w)).view(param.shape)


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


class Precision:
    """Autocast (bf16/fp16) for the forward passes and, for fp16, loss scaling."""

    def __init__(self, amp: str, device: torch.device):
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        self.device_type = device.type
        self.scalers = {}
        if amp == "fp16" and device.type != "cuda":
            raise utils.UsageError("--amp fp16 needs CUDA; use --amp bf16 or none on CPU")

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor, optimizer) -> None:
        if self.dtype == torch.float16:
            scaler = self.scalers.setdefault(id(optimizer), torch.amp.GradScaler(self.device_type))
            loss = scaler.scale(loss)
        loss.backward()

    def step(self, optimizer) -> None:
        scaler = self.scalers.get(id(optimizer))
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)
            scaler.update()


def GAN_training_function(G, D, GD, G_optim, D_optim, ema: Ema | None, config: dict,
                          precision: Precision, device) -> Callable:
    """One iteration: num_D_steps D updates over num_D_accumulations batches each, then one G
    update (BigGAN-PyTorch semantics), with the stage's G parameters and the transfer penalties."""
    G_trainable = stage_parameters(G, config["stage"])
    D_trainable = trained_D_parameters(D, config["freezeD_layer"])
    comb_params, res_params = transfer_regularizer_params(G)
    bs, G_bs = config["batch_size"], config["G_batch_size"]
    n_classes, z_var = config["n_classes"], config["z_var"]

    def train(x: torch.Tensor, y: torch.Tensor, itr: int) -> dict[str, float]:
        xs, ys = torch.split(x, bs), torch.split(y, bs)
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
                    D_loss_real, D_loss_fake = losses.discriminator_loss(D_fake.float(), D_real.float())
                    D_loss = (D_loss_real + D_loss_fake) / config["num_D_accumulations"]
                precision.backward(D_loss, D_optim)
                counter += 1
            average_gradients(D)
            if config["D_ortho"] > 0:
                ortho_(D, config["D_ortho"])
            precision.step(D_optim)

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


# ---------------------------------------------------------------------------------------------
# Sampling, standing statistics, sample sheets.

def sampling_G(G, G_ema, config):
    return G_ema if (G_ema is not None and config["use_ema"]) else G


def make_sample_fn(G: nn.Module, config: dict, device, precision: Precision | None = None) -> Callable:
    """sample() → (images in [-1, 1], class indices), uniform over classes, for the metrics."""
    def sample():
        with torch.no_grad():
            z, y = sample_z_y(config["G_batch_size"], G.dim_z, config["n_classes"], device, config["z_var"])
            with precision.autocast() if precision else contextlib.nullcontext():
                images = G(z, G.class_input(y))
            return images.float(), y
    return sample


def accumulate_standing_stats(G: nn.Module, config: dict, device) -> None:
    """Re-estimate G's BN statistics as the average over many batches (needs --mybn)."""
    mybns = [m for m in G.modules() if isinstance(m, layers.myBN)]
    if not mybns:
        raise utils.UsageError("--accumulate_stats needs --mybn (standing statistics live in myBN)")
    was_training = G.training
    G.train()
    for bn in mybns:
        bn.reset_stats()
        bn.accumulate_standing = True
    with torch.no_grad():
        for _ in range(config["num_standing_accumulations"]):
            z, y = sample_z_y(config["G_batch_size"], G.dim_z, config["n_classes"], device, config["z_var"])
            G(z, G.class_input(y))
    G.train(was_training)


def class_sheet(G: nn.Module, n_classes: int, per_class: int, z: torch.Tensor) -> torch.Tensor:
    """One row per class (at most 50), the same z (per_class rows) for every row, so that
    classes can be compared."""
    rows = []
    with torch.no_grad():
        for c in range(min(n_classes, 50)):
            y = torch.full((per_class,), c, dtype=torch.long, device=z.device)
            rows.append(G(z[:per_class], G.class_input(y)).float().cpu())
    return torch.cat(rows)


def save_image_grid(images: torch.Tensor, path: str, nrow: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = os.path.join(os.path.dirname(path), ".tmp_" + os.path.basename(path))
    torchvision.utils.save_image(images, tmp, nrow=nrow, normalize=True, value_range=(-1, 1),
                                 format="png")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# Checkpoints and evaluation.

def checkpoint_objects(G, D, G_ema, G_optim, D_optim, state_dict) -> dict:
    objects = {"G": G.state_dict(), "G_optim": G_optim.state_dict(), "D": D.state_dict(),
               "D_optim": D_optim.state_dict(), "state_dict": state_dict}
    if G_ema is not None:
        objects["G_ema"] = G_ema.state_dict()
    return objects


def save_and_sample(G, D, G_ema, G_optim, D_optim, state_dict, config, fixed_z, fixed_y) -> None:
    """Checkpoint (plus a rotating copy) and a fixed-z sample sheet, as BigGAN-PyTorch."""
    state_dict["rng_state"] = torch.get_rng_state()
    objects = checkpoint_objects(G, D, G_ema, G_optim, D_optim, state_dict)
    name = config["experiment_name"]
    utils.save_checkpoint(objects, config["weights_root"], name)
    if config["num_save_copies"] > 0:
        utils.save_checkpoint(objects, config["weights_root"], name, f"copy{state_dict['save_num']}")
        state_dict["save_num"] = (state_dict["save_num"] + 1) % config["num_save_copies"]
    which_G = sampling_G(G, G_ema, config)
    with torch.no_grad():
        fixed = which_G(fixed_z, which_G.class_input(fixed_y)).float().cpu()
    folder = os.path.join(config["samples_root"], name)
    save_image_grid(fixed, os.path.join(folder, f"fixed_samples{state_dict['itr']}.png"),
                    nrow=int(fixed.shape[0] ** 0.5))
    per_class = 10
    sheet_z = torch.randn(per_class, which_G.dim_z, generator=torch.Generator().manual_seed(config["seed"]))
    sheet = class_sheet(which_G, config["n_classes"], per_class, sheet_z.to(fixed_z.device) * config["z_var"] ** 0.5)
    save_image_grid(sheet, os.path.join(folder, f"class_sheet{state_dict['itr']}.png"), nrow=per_class)


BETTER = {"IS": lambda new, best: new > best, "FID": lambda new, best: new < best,
          "KMMD": lambda new, best: new < best}
METRIC_KEY = {"IS": "IS_mean", "FID": "FID", "KMMD": "KMMD"}


def evaluate(G, D, G_ema, G_optim, D_optim, state_dict, config, get_metrics, sample, device) -> dict:
    """In-loop metrics; saves a best checkpoint when --which_best improved (the official code
    compared FID when asked for KMMD: fixed here)."""
    if config["accumulate_stats"]:
        accumulate_standing_stats(sampling_G(G, G_ema, config), config, device)
    metrics = get_metrics(sample, config["num_inception_images"], num_splits=10, use_torch=False,
                          kmmd=config["kmmd"], mfid=config["mfid"])
    which = config["which_best"]
    value = metrics.get(METRIC_KEY[which])
    if value is None:
        raise utils.UsageError(f"--which_best {which} needs that metric; add --kmmd for KMMD")
    best_key = f"best_{which}"
    if BETTER[which](value, state_dict[best_key]):
        print(f"{which} improved ({state_dict[best_key]:.4g} -> {value:.4g}), saving best{state_dict['save_best_num']}")
        state_dict[best_key] = value
        utils.save_checkpoint(checkpoint_objects(G, D, G_ema, G_optim, D_optim, state_dict),
                              config["weights_root"], config["experiment_name"],
                              f"best{state_dict['save_best_num']}")
        state_dict["save_best_num"] = (state_dict["save_best_num"] + 1) % config["num_best_copies"]
    return metrics


def ema_copy(G: BigGAN.Generator) -> BigGAN.Generator:
    """A G_ema made from G *after* G's weights and prior knowledge are loaded (the official code
    copied G before loading them, so its EMA started from random weights)."""
    G_ema = copy.deepcopy(G)
    for p in G_ema.parameters():
        p.requires_grad = False
    return G_ema
