"""The stage table: for every --stage, the model it builds, how a new experiment starts, and which
parameters of G it trains. Every script asks this table; nothing else decides what a stage means.

    BN        cGANTransfer stage 1: knowledge propagation learns the new classes' BN parameters
    FT        cGANTransfer stage 2: fine-tune G (all but the combination and the prior)
    pretrain  a plain BigGAN from scratch: a source model, or the from-scratch baseline
    finetune  TransferGAN: a plain G of the new classes at the old classes' mean, everything trains
    BN_only   the ablation of knowledge propagation: as finetune, but only the new classes' own BN
              parameters train

D trains fully in every stage (FreezeD, --freezeD_layer, keeps its first blocks).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import torch.nn as nn

import BigGAN

# How a new experiment starts (a resumed one loads its checkpoint instead).
FROM_KNOWLEDGE = "knowledge loading"          # source weights, then the prior from the old classes
FROM_OLD_CLASS_MEAN = "old-class mean"        # source weights, new classes at the old classes' mean
FROM_SCRATCH = "scratch"                      # random initialization

# The official cGANTransfer parameter sets of G, by parameter name (its train_fns.py toggles
# requires_grad by these substrings).
BN_STAGE_PARTS = ("comb_layer", "res_g", "res_b", "prev_knowledge", "z_layer")
FT_STAGE_FROZEN_PARTS = ("comb_layer", "prev_knowledge")

# A knowledge-propagation G keeps its pretrained ccbn gain/bias layers and shared embedding as the
# source of the prior and the path of the old classes (G(z, y, old_classes=True)); no stage trains
# them, so the old classes' own BN parameters stay the source's.
UNUSED_WITH_KNOWLEDGE_PROPAGATION = re.compile(
    r"(\.bn\d\.(gain|bias)\.|^shared\.|pretrain_embedding_w)")

@dataclass(frozen=True)
class Stage:
    name: str
    knowledge_propagation: bool   # G's ccbns carry the knowledge-propagation layers
    start: str                    # FROM_KNOWLEDGE, FROM_OLD_CLASS_MEAN or FROM_SCRATCH
    trains: Callable[[str, bool], bool]   # (G parameter name, G_shared) -> trained in this stage?
    summary: str

    @property
    def needs_source_model(self) -> bool:
        return self.start != FROM_SCRATCH


def _bn_stage(name: str, G_shared: bool) -> bool:
    return any(part in name for part in BN_STAGE_PARTS)


def _ft_stage(name: str, G_shared: bool) -> bool:
    return not any(part in name for part in FT_STAGE_FROZEN_PARTS)


def _everything(name: str, G_shared: bool) -> bool:
    return True


def _class_embedding_only(name: str, G_shared: bool) -> bool:
    return bool(BigGAN.CLASS_EMBEDDING[G_shared].search(name))


STAGES: dict[str, Stage] = {stage.name: stage for stage in (
    Stage("BN", True, FROM_KNOWLEDGE, _bn_stage,
          "knowledge propagation: the new classes' BN parameters from the old classes'"),
    Stage("FT", True, FROM_KNOWLEDGE, _ft_stage,
          "fine-tuning of a knowledge-propagation G: all but the combination and the prior"),
    Stage("pretrain", False, FROM_SCRATCH, _everything,
          "a plain BigGAN from scratch"),
    Stage("finetune", False, FROM_OLD_CLASS_MEAN, _everything,
          "TransferGAN fine-tuning from the old classes' mean"),
    Stage("BN_only", False, FROM_OLD_CLASS_MEAN, _class_embedding_only,
          "only the new classes' own BN parameters, from the old classes' mean"),
)}
NAMES = tuple(STAGES)


def get(name: str) -> Stage:
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; use one of {', '.join(NAMES)}")
    return STAGES[name]


def trains_G_parameter(stage: Stage, name: str, G_shared: bool) -> bool:
    if stage.knowledge_propagation and UNUSED_WITH_KNOWLEDGE_PROPAGATION.search(name):
        return False
    return stage.trains(name, G_shared)


def G_parameters(G: nn.Module, stage: Stage) -> list[nn.Parameter]:
    """The parameters of G that `stage` trains."""
    return [p for name, p in G.named_parameters() if trains_G_parameter(stage, name, G.G_shared)]


def D_parameters(D: nn.Module, freeze_layers: int) -> list[nn.Parameter]:
    """All of D but its first `freeze_layers` blocks (FreezeD; -1 or 0: all of D)."""
    frozen = tuple(f"blocks.{i}." for i in range(max(freeze_layers, 0)))
    return [p for name, p in D.named_parameters() if not name.startswith(frozen)]


def model_config(config: dict) -> dict:
    """The config G and D are built from. BigGAN.py builds the knowledge-propagation layers when
    n_pretrain_classes > 0 (as the official code); the baselines' G and D are plain models of the
    new classes, and their --n_pretrain_classes only says how many old classes the start
    averages."""
    stage = get(config["stage"])
    return {**config, "n_pretrain_classes": config["n_pretrain_classes"]
            if stage.knowledge_propagation else 0}
