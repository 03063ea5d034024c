"""experiments/conv_limit.py: counts a convolution's operations as the formula says (2 per
multiply-add), records the forward and both backward convolutions of a step, and replays each alone.
No timing is asserted: the numbers are read off the benchmark's output."""
import pytest
import torch
import torch.nn.functional as F

from experiments import bench, conv_limit
from tests.experiments.test_bench import TINY


def conv_step(x, w):
    out = F.conv2d(x, w, padding=1)
    out.square().sum().backward()


def test_a_convolution_counts_two_operations_per_multiply_add():
    x, w = torch.randn(2, 3, 8, 8), torch.randn(5, 3, 3, 3)
    limit = conv_limit.measure(lambda: F.conv2d(x, w, padding=1), torch.device("cpu"))
    assert limit.flops == limit.conv_flops == 2 * (2 * 5 * 8 * 8) * (3 * 3 * 3)


def test_forward_and_backward_convolutions_are_recorded_with_their_layout():
    x = torch.randn(2, 3, 8, 8).contiguous(memory_format=torch.channels_last).requires_grad_()
    w = torch.randn(5, 3, 3, 3, requires_grad=True)
    recorder = conv_limit.ConvolutionRecorder()
    with recorder:
        conv_step(x, w)
    names = [func.__name__ for func, _ in recorder.calls]
    assert names == ["convolution.default", "convolution_backward.default"]
    forward_input = recorder.calls[0][1][0]
    assert forward_input.shape == (2, 3, 8, 8) and forward_input.stride == x.stride()
    # The backward of input and weight costs twice the forward: 2 x (2 per multiply-add).
    flops = [conv_limit.replay(func, args, torch.device("cpu"))[0]
             for func, args in recorder.calls]
    assert flops[1] == 2 * flops[0]


def test_the_limit_is_the_counted_operations_at_the_best_measured_speed():
    x = torch.randn(4, 16, 16, 16, requires_grad=True)
    w = torch.randn(16, 16, 3, 3, requires_grad=True)
    limit = conv_limit.measure(lambda: conv_step(x, w), torch.device("cpu"))
    assert limit.flops == limit.conv_flops == 3 * 2 * (4 * 16 * 16 * 16) * (16 * 9)
    assert limit.conv_seconds > 0 and limit.peak_gflops > 0
    assert abs(limit.limit_seconds - limit.flops / (limit.peak_gflops * 1e9)) < 1e-12
    assert [call.what.split()[0] for call in limit.calls] == ["forward", "backward"]
    assert "x[4, 16, 16, 16] w[16, 16, 3, 3] stride [1, 1] NCHW float32" in limit.calls[0].what
    lost = [seconds for seconds, _ in limit.furthest_from_peak()]
    assert lost == sorted(lost, reverse=True) and len(lost) == 2


@pytest.mark.slow  # two configurations timed and replayed on a tiny model
def test_bench_reports_each_configuration_against_the_limit(capsys):
    result = bench.main(["--stage", "BN", *TINY, "--configs", "fp32,default", "--limit"])
    assert set(result["limits"]) == {"fp32", "default"}
    assert all(0 < limit["of_limit"] and limit["TFLOP"] > 0 for limit in result["limits"].values())
    out = capsys.readouterr().out
    assert "TFLOP/itr" in out and "of it" in out


@pytest.mark.parametrize("threads, clock", [(1, "process_time"), (2, "perf_counter")])
def test_cpu_time_is_the_clock_only_at_one_thread(threads, clock):
    # At two threads a kernel that leaves one thread idle looks twice as fast per CPU second: the
    # peak would be read off the worst-parallelized convolution (206 "GFLOP/s" against 99 measured
    # on the AVX2-capped Zen 4 before this rule).
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert conv_limit.clock(torch.device("cpu")).__name__ == clock
    finally:
        torch.set_num_threads(before)
