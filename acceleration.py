"""How the models run fast: autocast precision (bf16/fp16 with loss scaling), the channels_last
memory format, resampling fused into the neighbouring convolutions, and torch.compile of the step's
G_D module. Measurements behind the defaults: docs/performance.md."""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

import layers
import utils


def cpu_runs_bf16_natively() -> bool:
    """AMX or AVX512-BF16: bf16 matmuls and convolutions in hardware (PyTorch's private probes;
    absent probes mean no), and PyTorch allowed to use AVX-512: with the instruction set capped
    (ATEN_CPU_CAPABILITY=avx2, as on an AVX2-only CPU) bf16 is emulated, whatever the CPU has."""
    if not torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
        return False
    probes = [getattr(torch.cpu, name, None)
              for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return any(probe() for probe in probes if probe is not None)


def choose_precision(amp: str, device: torch.device,
                     official_numerics: bool = False) -> tuple[str, str]:
    """(precision, why): --amp auto picks bf16 where the hardware runs it natively. Measured on the
    offline default (3 seeds, README): bf16's FID/mFID stay within fp32's seed spread.
    --official_numerics is fp32, whatever the hardware."""
    if official_numerics:
        if amp not in ("auto", "none"):
            raise utils.UsageError("--official_numerics computes in fp32, as the official code: "
                                   f"drop --amp {amp}")
        return "none", "--official_numerics"
    if amp != "auto":
        return amp, f"--amp {amp}"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "--amp auto: this CUDA device runs bf16 natively (--amp none for fp32)"
        return "none", "--amp auto: this CUDA device has no native bf16 (--amp fp16 for speed)"
    if device.type == "cpu" and cpu_runs_bf16_natively():
        return "bf16", ("--amp auto: this CPU runs bf16 natively (AMX/AVX512-BF16; --amp none for "
                        "fp32)")
    return "none", f"--amp auto: no native bf16 on this {device.type} device"


class Precision:
    """Autocast (bf16/fp16) for the forward passes and, for fp16, loss scaling. amp: auto, none,
    bf16 or fp16; `name` is what runs and `reason` why."""

    def __init__(self, amp: str, device: torch.device, official_numerics: bool = False):
        device = torch.device(device)
        self.name, self.reason = choose_precision(amp, device, official_numerics)
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
# Memory the step reuses on a CPU

_MALLOPT = {"M_TRIM_THRESHOLD": -1, "M_TOP_PAD": -2, "M_MMAP_MAX": -4}  # glibc's malloc.h


def keep_freed_memory(device: torch.device) -> bool:
    """On a CPU with glibc, freed memory stays in the process for the next iteration. glibc gives
    blocks over 32 MB (mmap) and the heap's free top (trim) back to the kernel, so each iteration's
    large activations and gradients come back as fresh pages: a page fault and a zeroed page per
    4 kB, several per cent of a CPU step (docs/performance.md). The process then holds its peak
    memory; no number changes. Returns whether it applied (not on GPUs, not without glibc)."""
    if torch.device(device).type != "cpu" or not ctypes.util.find_library("c"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    settings = {"M_MMAP_MAX": 0, "M_TRIM_THRESHOLD": 2 ** 31 - 1, "M_TOP_PAD": 64 * 2 ** 20}
    return all(mallopt(_MALLOPT[name], value) == 1 for name, value in settings.items())


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
            print(f"--compile: torch.compile failed ({type(err).__name__}: {first_line}); running "
                  "eagerly")
            return self.module(*args, **kwargs)
        self._signatures.add(signature)
        self.compile_seconds += time.perf_counter() - start
        return out


def compile_step_module(module: nn.Module) -> nn.Module:
    if not hasattr(torch, "compile"):
        print("--compile: this PyTorch has no torch.compile; running eagerly")
        return module
    return CompiledWithFallback(module)


def _is_nearest_2x(upsample) -> bool:
    """GBlock's upsample as BigGAN.py builds it: F.interpolate(scale_factor=2), nearest."""
    return (isinstance(upsample, functools.partial) and upsample.func is F.interpolate
            and not upsample.args and upsample.keywords.get("scale_factor") in (2, 2.0, (2, 2))
            and upsample.keywords.get("mode", "nearest") == "nearest"
            and set(upsample.keywords) <= {"scale_factor", "mode"})


def _is_avgpool_2x(downsample) -> bool:
    return (isinstance(downsample, nn.AvgPool2d) and downsample.kernel_size in (2, (2, 2))
            and downsample.stride in (2, (2, 2)) and downsample.padding in (0, (0, 0))
            and not downsample.ceil_mode)


def fuse_resampling(*models: nn.Module | None) -> int:
    """Fold G's nearest upsampling and D's average pooling into the adjacent 3x3 convolutions
    (layers.upsample_conv, layers.conv_avgpool): the same linear maps with 4 and 9 instead of 9
    and 36 multiply-adds per output pixel, so the same outputs up to rounding. Returns the blocks
    changed."""
    fused = 0
    for model in models:
        for block in model.modules() if model is not None else ():
            if (isinstance(block, layers.GBlock) and _is_nearest_2x(block.upsample)
                    and layers.is_plain_3x3(block.conv1)):
                block.fused_resampling = True
                fused += 1
            elif (isinstance(block, layers.DBlock) and _is_avgpool_2x(block.downsample)
                  and layers.is_plain_3x3(block.conv2)):
                block.fused_resampling = True
                fused += 1
    return fused


def _switch(value, flag: str, official_numerics: bool) -> tuple[bool, str]:
    """--flag auto|on|off (True/False as on/off) -> (on, why). auto: on, unless
    --official_numerics."""
    if value not in (True, False, None, "on", "off", "auto"):
        raise utils.UsageError(f"--{flag} {value!r}: use auto, on or off")
    if value in (True, "on"):
        if official_numerics:
            raise utils.UsageError(f"--official_numerics runs the official (contiguous, unfused) "
                                   f"computation: drop --{flag}")
        return True, f"--{flag}"
    if value in (False, "off", None):
        return False, f"--{flag} off" if value == "off" else "off"
    if official_numerics:
        return False, "--official_numerics"
    return True, "auto: the same function up to rounding, faster"


@dataclass(frozen=True)
class StepOptions:
    """How G and D run besides precision. channels_last and fused_resampling compute the same
    function (equal up to rounding) and 'auto' turns them on: they measured 1.5-1.9x faster on CPU,
    in fp32 and bf16 alike (docs/performance.md). --official_numerics turns them off, so that the
    step repeats the official code's training iterations to the tolerances of
    tests/test_train_fns.py. compile: opt-in (its compilation takes minutes on a CPU)."""
    channels_last: bool = False
    fused_resampling: bool = False
    compile: bool = False
    why: tuple[str, str] = ("off", "off")

    @classmethod
    def choose(cls, channels_last: str | bool = "auto", fused_resampling: str | bool = "auto",
               compile: bool = False, official_numerics: bool = False) -> "StepOptions":
        """From the flags of the same names ('auto', 'on'/'off' or a bool each)."""
        channels_last, why_cl = _switch(channels_last, "channels_last", official_numerics)
        fused, why_fused = _switch(fused_resampling, "fused_resampling", official_numerics)
        return cls(channels_last, fused, bool(compile), (why_cl, why_fused))

    def apply(self, *models: nn.Module | None) -> None:
        """Memory format and fused resampling of G, D (and G_ema, so that it samples alike)."""
        if self.channels_last:
            use_channels_last(*models)
        if self.fused_resampling:
            fuse_resampling(*models)

    def wrap(self, step_module: nn.Module) -> nn.Module:
        return compile_step_module(step_module) if self.compile else step_module

    def describe(self) -> str:
        on = {True: "on", False: "off"}
        return (f"channels_last {on[self.channels_last]} ({self.why[0]}), fused resampling "
                f"{on[self.fused_resampling]} ({self.why[1]}), compile {on[self.compile]}")

