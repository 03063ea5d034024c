"""How the models run fast: autocast precision (bf16/fp16 with loss scaling)."""
from __future__ import annotations

import contextlib

import torch

import utils


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
