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
The same is reported counting only the multiply-adds that touch the image (touched_fraction): the
counter also counts the taps over the zero padding, which the kernels skip. Issue 27 set its target
against a gentler limit, "this CPU's measured 3x3-conv throughput": the step's share is also given
at the throughput of its largest 3x3 stride-1 forward convolution alone.
On a CPU at one thread the times are this process's CPU time (compare them with the step's CPU
time); at more threads, and on a GPU, wall time (run it on a quiet machine).
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
        """Random values in this layout (strides of 0, a summed loss's gradient, kept)."""
        extent = 1 + sum((size - 1) * stride for size, stride in zip(self.shape, self.stride))
        storage = torch.empty(extent, dtype=self.dtype, device=device).normal_()
        return storage.as_strided(self.shape, self.stride)


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


def uses_cpu_time(device) -> bool:
    """On a CPU at one thread, times are this process's CPU time, which other processes on the core
    disturb less. At more threads CPU time is no clock: a kernel that leaves a thread idle for part
    of its run looks faster per CPU second than one that keeps both busy."""
    return device.type == "cpu" and torch.get_num_threads() == 1


def clock(device):
    """The clock `uses_cpu_time` says: CPU time, else wall time (synchronized on a GPU)."""
    if uses_cpu_time(device):
        return time.process_time
    if device.type == "cuda":
        def synchronized():
            torch.cuda.synchronize(device)
            return time.perf_counter()
        return synchronized
    return time.perf_counter


def replay(func, args, device, repeats: int = 3) -> tuple[int, float]:
    """One recorded call alone on random tensors of its layout: its floating-point operations (2
    per multiply-add, as PyTorch counts them), counted in an untimed first run, and the best of
    `repeats` timed runs."""
    tensors = _materialize(args, device)
    counter = FlopCounterMode(display=False)
    with counter:
        func(*tensors)
    now, best = clock(device), float("inf")
    for _ in range(repeats):
        start = now()
        func(*tensors)
        best = min(best, now() - start)
    return counter.get_total_flops(), best


def touched_fraction(func, args) -> float:
    """The share of a convolution's counted multiply-adds that touch the image, not its padding.
    PyTorch's counter counts every tap of every output pixel, those over the zero padding too, which
    oneDNN's kernels skip: at 8 px a 3x3 convolution's padding taps are 16 % of its count, and a
    step's fastest convolution read 241 "GFLOP/s" on a core whose multiply-adds peak at 222
    (docs/performance.md). The taps that touch the image are the sum of the same convolution of
    ones over one channel (forward or backward: the same taps)."""
    forward = func is CONVOLUTIONS[0]
    x, w = (args[0], args[1]) if forward else (args[1], args[2])
    stride, padding, dilation, transposed, output_padding = args[3:8] if forward else args[4:9]
    image, taps = torch.ones(1, 1, *x.shape[2:], dtype=torch.float64), w.shape[2:]
    kernel = torch.ones(1, 1, *taps, dtype=torch.float64)
    touched = torch.ops.aten.convolution(image, kernel, None, stride, padding, dilation,
                                         transposed, output_padding, 1)
    # The counter's formula: every tap of every output pixel (of every input pixel, transposed).
    pixels = (image if transposed else touched)[0, 0].numel()
    return touched.sum().item() / (pixels * kernel.numel())


def is_plain_3x3_forward(func, args) -> bool:
    """A forward 3x3 convolution at stride 1, not transposed, not grouped: the shape whose
    throughput issue 27 took for the machine's conv limit."""
    if func is not CONVOLUTIONS[0]:
        return False
    w, stride, transposed, groups = args[1], args[3], args[6], args[8]
    return (tuple(w.shape[2:]) == (3, 3) and tuple(stride) == (1, 1) and not transposed
            and groups == 1)


@dataclass(frozen=True)
class ConvolutionCall:
    what: str             # forward or backward, the input's and the weight's shapes, the layout
    flops: int
    seconds: float        # replayed alone
    touched: float = 1.0  # the share of flops that touch the image (touched_fraction)
    plain_3x3: bool = False  # a forward 3x3 stride-1 convolution (is_plain_3x3_forward)

    @property
    def gflops(self) -> float:
        return self.flops / self.seconds / 1e9


def best_gflops(calls, touched_only: bool = False) -> float:
    """The best throughput of a large call (the average of all where none is large), counting all
    multiply-adds or only those that touch the image."""
    def flops(call: ConvolutionCall) -> float:
        return call.flops * call.touched if touched_only else call.flops
    large = [flops(call) / call.seconds for call in calls if call.flops >= LARGE_FLOPS]
    best = max(large) if large else sum(map(flops, calls)) / sum(call.seconds for call in calls)
    return best / 1e9


def describe_call(func, args) -> str:
    x, w = args[1 if func is CONVOLUTIONS[1] else 0], args[2 if func is CONVOLUTIONS[1] else 1]
    layout = "NHWC" if len(x.shape) == 4 and x.stride[1] == 1 and x.shape[1] > 1 else "NCHW"
    kind = "backward" if func is CONVOLUTIONS[1] else "forward"
    transposed = " transposed" if (args[6] if func is CONVOLUTIONS[0] else args[7]) else ""
    stride = args[3] if func is CONVOLUTIONS[0] else args[4]
    return (f"{kind}{transposed} x{list(x.shape)} w{list(w.shape)} stride {list(stride)} "
            f"{layout} {str(x.dtype).replace('torch.', '')}")


@dataclass(frozen=True)
class Limit:
    flops: int            # of the whole step, convolutions and matmuls
    conv_flops: int
    conv_seconds: float   # the step's convolutions replayed alone
    peak_gflops: float    # the best throughput of a large convolution of the step, alone
    calls: tuple[ConvolutionCall, ...] = ()

    @property
    def limit_seconds(self) -> float:
        return self.flops / (self.peak_gflops * 1e9)

    @property
    def conv_speed(self) -> float:
        """The step's convolutions alone, as a fraction of the peak."""
        return self.conv_flops / self.conv_seconds / (self.peak_gflops * 1e9)

    def conv_speed_needed(self, step_seconds: float, share: float = 0.8) -> float:
        """The fraction of the peak the convolutions would have to average for the step to run at
        `share` of the limit, the rest staying as it is: the step less its convolutions replayed
        alone (the other operators, and what the convolutions lose in the step to cold caches). At
        a fraction e the step takes limit / e + rest, so e = 1 / (1 / share - rest / limit); inf
        where the rest alone leaves no room. Above 1, no convolution kernel gets the step there."""
        rest = max(step_seconds - self.conv_seconds, 0.0)
        room = 1 / share - rest / self.limit_seconds
        return 1 / room if room > 0 else float("inf")

    @property
    def conv3x3_gflops(self) -> float | None:
        """Issue 27's measure of the machine: the throughput of the step's largest (most FLOPs)
        3x3 stride-1 forward convolution alone; None if the step has none. A typical call, not the
        best: gentler than the peak, which is the best of all calls and passes."""
        plain = [call for call in self.calls if call.plain_3x3]
        return max(plain, key=lambda call: call.flops).gflops if plain else None

    def conv3x3_share(self, step_seconds: float) -> float | None:
        """The step's share of issue 27's limit: its counted FLOPs at conv3x3_gflops."""
        gflops = self.conv3x3_gflops
        return None if gflops is None else self.flops / (gflops * 1e9) / step_seconds

    def touched(self, step_seconds: float) -> tuple[float, float, float]:
        """The limit again with only the multiply-adds that touch the image counted (the zero
        padding's left out, in the step's FLOPs and in the peak alike): (share of the counted
        FLOPs, peak GFLOP/s, the step's share of that limit)."""
        conv_touched = sum(call.flops * call.touched for call in self.calls)
        peak = best_gflops(self.calls, touched_only=True)
        flops = self.flops - self.conv_flops + conv_touched
        return flops / self.flops, peak, flops / (peak * 1e9) / step_seconds

    def describe(self, step_seconds: float) -> str:
        conv_gflops = self.conv_flops / self.conv_seconds / 1e9
        return (f"{self.flops / 1e12:.3f} TFLOP/itr ({self.conv_flops / self.flops:.0%} in "
                f"convolutions); convolutions alone {self.conv_seconds:.3f} s ({conv_gflops:.0f} "
                f"GFLOP/s, {self.conv_seconds / step_seconds:.0%} of the step); peak "
                f"{self.peak_gflops:.0f} GFLOP/s: limit {self.limit_seconds:.3f} s/itr, the step "
                f"at {self.limit_seconds / step_seconds:.0%} of it; 80 % of it would need the "
                f"convolutions at {self.conv_speed_needed(step_seconds):.0%} of the peak (they "
                f"run at {self.conv_speed:.0%}){self._describe_touched(step_seconds)}"
                f"{self._describe_3x3(step_seconds)}")

    def _describe_3x3(self, step_seconds: float) -> str:
        if self.conv3x3_gflops is None:
            return ""
        return (f"; at its largest 3x3 convolution's throughput alone ({self.conv3x3_gflops:.0f} "
                f"GFLOP/s, issue 27's limit) the step at {self.conv3x3_share(step_seconds):.0%}")

    def _describe_touched(self, step_seconds: float) -> str:
        if not self.calls:
            return ""
        share, peak, of_limit = self.touched(step_seconds)
        return (f"; counting only the multiply-adds that touch the image ({share:.0%} of them): "
                f"peak {peak:.0f} GFLOP/s, the step at {of_limit:.0%} of that limit")

    def furthest_from_peak(self, count: int = 5) -> list[tuple[float, ConvolutionCall]]:
        """The calls that lose most time against the peak: (seconds lost, call), largest first."""
        lost = [(call.seconds - call.flops / (self.peak_gflops * 1e9), call) for call in self.calls]
        return sorted(lost, key=lambda item: -item[0])[:count]


def measure(run, device) -> Limit:
    """The limit of one call of `run` (a training iteration) on `device`."""
    counter, recorder = FlopCounterMode(display=False), ConvolutionRecorder()
    with counter, recorder:  # one iteration, traced once
        run()
    flops = counter.get_total_flops()
    calls = [ConvolutionCall(describe_call(func, args), *replay(func, args, device),
                             touched_fraction(func, args), is_plain_3x3_forward(func, args))
             for func, args in recorder.calls]
    conv_flops, conv_seconds = sum(c.flops for c in calls), sum(c.seconds for c in calls)
    return Limit(flops, conv_flops, conv_seconds, best_gflops(calls), tuple(calls))
