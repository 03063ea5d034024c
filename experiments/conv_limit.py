"""The machine's limit for a training step: the floating-point operations of its convolutions and
matmuls, and how fast this machine runs the step's own convolutions when nothing else runs.

One iteration is traced: every convolution (forward and backward, with its shapes, strides, dtype
and which gradients it computes) is recorded and then replayed alone on random tensors of the same
layout, best of a few runs. From that:
  - conv seconds:   the sum of the replayed convolutions' times (what they cost with nothing between
                    them: the step's floor at this machine's speed for those shapes);
  - peak GFLOP/s:   the fastest throughput any of the step's large convolutions reached alone (the
                    machine's conv limit, as a vendor's peak but measured, in the step's precision);
  - limit seconds:  the step's counted FLOPs at that peak.
A step at `limit seconds / step seconds` = 100 % would run every operation at the best conv speed.
On a CPU the times are this process's CPU time (compare them with the step's CPU time).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

CONVOLUTIONS = (torch.ops.aten.convolution.default, torch.ops.aten.convolution_backward.default)
LARGE_FLOPS = 1e8  # a convolution below this is too small to say what the machine can do


@dataclass(frozen=True)
class TensorLayout:
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: torch.dtype

    def random(self, device) -> torch.Tensor:
        return torch.empty_strided(self.shape, self.stride, dtype=self.dtype,
                                   device=device).normal_()


def _layout_of(value):
    if isinstance(value, torch.Tensor):
        return TensorLayout(tuple(value.shape), tuple(value.stride()), value.dtype)
    if isinstance(value, (list, tuple)):
        return type(value)(_layout_of(v) for v in value)
    return value


def _materialize(value, device):
    if isinstance(value, TensorLayout):
        return value.random(device)
    if isinstance(value, (list, tuple)):
        return type(value)(_materialize(v, device) for v in value)
    return value


class ConvolutionRecorder(TorchDispatchMode):
    """Records every convolution call (forward or backward) as layouts, and runs it."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in CONVOLUTIONS:
            self.calls.append((func, _layout_of(args)))
        return func(*args, **(kwargs or {}))


def count_flops(run) -> int:
    """Floating-point operations (2 per multiply-add) of one call of `run`, as PyTorch counts
    them."""
    counter = FlopCounterMode(display=False)
    with counter:
        run()
    return counter.get_total_flops()


def call_flops(func, args, device) -> int:
    counter = FlopCounterMode(display=False)
    tensors = _materialize(args, device)
    with counter:
        func(*tensors)
    return counter.get_total_flops()


def clock(device):
    """Wall time on a GPU; on a CPU this process's CPU time, which other processes on the cores
    disturb less (compare it with the step's CPU time)."""
    if device.type == "cuda":
        def synchronized():
            torch.cuda.synchronize(device)
            return time.perf_counter()
        return synchronized
    return time.process_time


def replay_seconds(func, args, device, repeats: int = 3) -> float:
    """The best of `repeats` timed runs of one recorded call, alone, after one untimed run."""
    tensors = _materialize(args, device)
    func(*tensors)
    now, best = clock(device), float("inf")
    for _ in range(repeats):
        start = now()
        func(*tensors)
        best = min(best, now() - start)
    return best


@dataclass(frozen=True)
class Limit:
    flops: int            # of the whole step, convolutions and matmuls
    conv_flops: int
    conv_seconds: float   # the step's convolutions replayed alone
    peak_gflops: float    # the best throughput of a large convolution of the step, alone

    @property
    def limit_seconds(self) -> float:
        return self.flops / (self.peak_gflops * 1e9)

    def describe(self, step_seconds: float) -> str:
        return (f"{self.flops / 1e12:.3f} TFLOP/itr ({self.conv_flops / self.flops:.0%} in "
                f"convolutions); convolutions alone {self.conv_seconds:.3f} s "
                f"({self.conv_flops / self.conv_seconds / 1e9:.0f} GFLOP/s, "
                f"{self.conv_seconds / step_seconds:.0%} of the step); peak {self.peak_gflops:.0f} "
                f"GFLOP/s: limit {self.limit_seconds:.3f} s/itr, the step at "
                f"{self.limit_seconds / step_seconds:.0%} of it")


def measure(run, device) -> Limit:
    """The limit of one call of `run` (a training iteration) on `device`."""
    flops = count_flops(run)
    recorder = ConvolutionRecorder()
    with recorder:
        run()
    conv_flops, conv_seconds, peak = 0, 0.0, 0.0
    for func, args in recorder.calls:
        call = call_flops(func, args, device)
        seconds = replay_seconds(func, args, device)
        conv_flops, conv_seconds = conv_flops + call, conv_seconds + seconds
        if call >= LARGE_FLOPS:
            peak = max(peak, call / seconds / 1e9)
    if not peak:
        peak = conv_flops / conv_seconds / 1e9
    return Limit(flops, conv_flops, conv_seconds, peak)
