"""How the models run fast: autocast precision (bf16/fp16 with loss scaling), the channels_last
memory format, and torch.compile of the step's G_D module."""
from __future__ import annotations

import contextlib
import time

import torch
import torch.nn as nn

import utils


def cpu_runs_bf16_natively() -> bool:
    """AMX or AVX512-BF16: bf16 matmuls and convolutions in hardware (PyTorch's private probes;
    absent probes mean no)."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return any(probe() for probe in probes if probe is not None)


def choose_precision(amp: str, device: torch.device) -> tuple[str, str]:
    """(precision, why): --amp auto picks bf16 where the hardware runs it natively. Measured on the
    offline default (3 seeds, README): bf16's FID/mFID stay within fp32's seed spread."""
    if amp != "auto":
        return amp, f"--amp {amp}"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "--amp auto: this CUDA device runs bf16 natively (--amp none for fp32)"
        return "none", "--amp auto: this CUDA device has no native bf16 (--amp fp16 for speed)"
    if device.type == "cpu" and cpu_runs_bf16_natively():
        return "bf16", "--amp auto: this CPU runs bf16 natively (AMX/AVX512-BF16; --amp none for fp32)"
    return "none", f"--amp auto: no native bf16 on this {device.type} device"


class Precision:
    """Autocast (bf16/fp16) for the forward passes and, for fp16, loss scaling. amp: auto, none,
    bf16 or fp16; `name` is what runs and `reason` why."""

    def __init__(self, amp: str, device: torch.device):
        device = torch.device(device)
        self.name, self.reason = choose_precision(amp, device)
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)
        self.device_type = device.type
        self.scalers = {}
        if self.name == "fp16" and device.type != "cuda":
            raise utils.UsageError("--amp fp16 needs CUDA; use --amp bf16 or none on CPU")

    def describe(self) -> str:
        return f"precision {'fp32' if self.dtype is None else self.name} ({self.reason})"

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


# ---------------------------------------------------------------------------------------------
# Memory format and compilation of the step's modules.

def use_channels_last(*models: nn.Module | None) -> None:
    """NHWC weights: convolutions then run in the layout oneDNN (CPU) and cuDNN (tensor cores)
    prefer, and their outputs stay NHWC. Numerics are those of the contiguous models."""
    for model in models:
        if model is not None:
            model.to(memory_format=torch.channels_last)


class CompiledWithFallback(nn.Module):
    """torch.compile of a module; where compiling fails (no compiler toolchain, an unsupported
    op), one message and the eager module from then on. Compilation happens at the first calls
    (one per distinct call signature); their time is reported by compile_seconds."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module
        self.compiled = torch.compile(module)
        self.failed = False
        self.compile_seconds = 0.0
        self._signatures: set = set()

    def forward(self, *args, **kwargs):
        if self.failed:
            return self.module(*args, **kwargs)
        signature = tuple(sorted((k, v) for k, v in kwargs.items() if isinstance(v, bool)))
        if signature in self._signatures:
            return self.compiled(*args, **kwargs)
        start = time.perf_counter()
        try:
            out = self.compiled(*args, **kwargs)
        except Exception as err:  # torch raises many types when a backend cannot compile
            self.failed = True
            first_line = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            print(f"--compile: torch.compile failed ({type(err).__name__}: {first_line}); running eagerly")
            return self.module(*args, **kwargs)
        self._signatures.add(signature)
        self.compile_seconds += time.perf_counter() - start
        return out


def compile_step_module(module: nn.Module) -> nn.Module:
    if not hasattr(torch, "compile"):
        print("--compile: this PyTorch has no torch.compile; running eagerly")
        return module
    return CompiledWithFallback(module)
