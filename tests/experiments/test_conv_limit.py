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


def recorded_calls(run):
    recorder = conv_limit.ConvolutionRecorder()
    with recorder:
        run()
    return recorder.calls


def test_a_convolution_counts_two_operations_per_multiply_add():
    x, w = torch.randn(2, 3, 8, 8), torch.randn(5, 3, 3, 3)
    limit = conv_limit.measure(lambda: F.conv2d(x, w, padding=1), torch.device("cpu"))
    assert limit.flops == limit.conv_flops == 2 * (2 * 5 * 8 * 8) * (3 * 3 * 3)


def test_forward_and_backward_convolutions_are_recorded_with_their_layout():
    x = torch.randn(2, 3, 8, 8).contiguous(memory_format=torch.channels_last).requires_grad_()
    w = torch.randn(5, 3, 3, 3, requires_grad=True)
    calls = recorded_calls(lambda: conv_step(x, w))
    names = [func.__name__ for func, _ in calls]
    assert names == ["convolution.default", "convolution_backward.default"]
    forward_input = calls[0][1][0]
    assert forward_input.shape == (2, 3, 8, 8) and forward_input.stride == x.stride()
    # The backward of input and weight costs twice the forward: 2 x (2 per multiply-add).
    flops = [conv_limit.replay(func, args, torch.device("cpu"))[0] for func, args in calls]
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


@pytest.mark.parametrize("op, size, touched", [
    # A 3x3 padding-1 conv at 8 px: per row 6 outputs see 3 taps and the 2 edge ones 2.
    (lambda x, w: F.conv2d(x, w, padding=1), 8, (22 / 24) ** 2),
    # Stride 2, no padding, 33 px (D's fused pooling): every tap lies in the image.
    (lambda x, w: F.conv2d(x, w, stride=2), 33, 1.0),
    # G's fused upsampling from 4 px: 16 taps per input pixel are counted; of the 8 output pixels
    # per row, 6 receive 2 and the edge ones 1 (the official 3x3 conv's zero padding).
    (lambda x, w: F.conv_transpose2d(x, w.repeat(1, 1, 2, 2)[:, :, :4, :4], stride=2, padding=1),
     4, (14 / 16) ** 2),
])
def test_the_touched_share_leaves_out_the_taps_over_the_zero_padding(op, size, touched):
    x = torch.randn(2, 3, size, size, requires_grad=True)
    w = torch.randn(3, 3, 3, 3, requires_grad=True)
    calls = recorded_calls(lambda: op(x, w).sum().backward())
    assert len(calls) == 2  # forward and backward: the same taps
    for func, args in calls:
        assert conv_limit.touched_fraction(func, args) == pytest.approx(touched)


def test_counting_only_touched_taps_lowers_the_flops_and_the_peak_alike():
    # Literal calls: a padded 8 px conv (75 % touched) at 100 "GFLOP/s" counted, and an unpadded
    # one (all touched) at 90: the touched peak is 90, the step's touched FLOPs 7/8 of the count.
    calls = (conv_limit.ConvolutionCall("padded", 10 ** 9, 0.01, touched=0.75),
             conv_limit.ConvolutionCall("unpadded", 10 ** 9, 1 / 90, touched=1.0))
    limit = conv_limit.Limit(flops=2 * 10 ** 9, conv_flops=2 * 10 ** 9, conv_seconds=0.021,
                             peak_gflops=100.0, calls=calls)
    share, peak, of_limit = limit.touched(step_seconds=0.05)
    assert share == pytest.approx(0.875) and peak == pytest.approx(90.0)
    assert of_limit == pytest.approx(1.75e9 / 90e9 / 0.05)


def test_only_forward_3x3_stride_1_convolutions_count_as_plain_3x3():
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    w3 = torch.randn(4, 4, 3, 3, requires_grad=True)
    w1 = torch.randn(4, 4, 1, 1, requires_grad=True)

    def step():
        out = (F.conv2d(x, w3, padding=1).sum() + F.conv2d(x, w3, stride=2).sum()
               + F.conv2d(x, w1).sum() + F.conv_transpose2d(x, w3, padding=1).sum()
               + F.conv2d(x, w3[:, :2], padding=1, groups=2).sum())
        out.backward()
    calls = recorded_calls(step)
    plain = [conv_limit.is_plain_3x3_forward(func, args) for func, args in calls]
    assert len(calls) == 10 and plain == [True] + [False] * 9  # 5 forwards, then 5 backwards


def test_issue_27s_limit_is_the_largest_plain_3x3_call_not_the_fastest():
    # Literal calls: the small 3x3 forward is the fastest, the large one sets the limit; the
    # strided call, faster still, is no plain 3x3.
    calls = (conv_limit.ConvolutionCall("small 3x3", 10 ** 8, 1e-3, plain_3x3=True),
             conv_limit.ConvolutionCall("large 3x3", 10 ** 9, 1 / 80, plain_3x3=True),
             conv_limit.ConvolutionCall("strided", 10 ** 9, 1 / 120))
    limit = conv_limit.Limit(flops=2.1 * 10 ** 9, conv_flops=2.1 * 10 ** 9, conv_seconds=0.0223,
                             peak_gflops=120.0, calls=calls)
    assert limit.conv3x3_gflops == pytest.approx(80.0)
    assert limit.conv3x3_share(step_seconds=0.03) == pytest.approx(2.1e9 / 80e9 / 0.03)
    assert "(80 GFLOP/s, issue 27's limit) the step at 88%" in limit.describe(step_seconds=0.03)
    assert conv_limit.Limit(1, 1, 1.0, 1.0, calls=calls[2:]).conv3x3_gflops is None


@pytest.mark.parametrize("step_seconds", [12.5, 14.0, 20.0])
def test_the_convolution_speed_that_80_percent_needs_gives_80_percent(step_seconds):
    # 1 TFLOP at a 100 GFLOP/s peak: a 10 s limit; the convolutions alone take 12 s (83 % of the
    # peak) and the rest of the step what is left of step_seconds.
    limit = conv_limit.Limit(flops=10 ** 12, conv_flops=10 ** 12, conv_seconds=12.0,
                             peak_gflops=100.0)
    rest = step_seconds - 12.0
    needed = limit.conv_speed_needed(step_seconds)
    assert limit.conv_speed == pytest.approx(10 / 12)
    # Oracle: the step's time with the convolutions at that speed, as the docstring's model says.
    assert limit.limit_seconds / (limit.limit_seconds / needed + rest) == pytest.approx(0.8)
    assert limit.conv_speed_needed(12.0 + 12.5) == float("inf")  # the rest alone is 1.25 limits


@pytest.mark.slow  # two configurations timed and replayed on a tiny model
def test_bench_reports_each_configuration_against_the_limit(capsys):
    result = bench.main(["--stage", "BN", *TINY, "--configs", "fp32,default", "--limit"])
    assert set(result["limits"]) == {"fp32", "default"}
    assert all(0 < limit["of_limit"] and limit["TFLOP"] > 0 for limit in result["limits"].values())
    assert all(limit["conv_speed_needed_for_80"] > 0 for limit in result["limits"].values())
    out = capsys.readouterr().out
    assert "TFLOP/itr" in out and "of it" in out and "would need the convolutions at" in out
    assert "touch the image" in out and "issue 27's limit" in out
    assert all(limit["of_3x3_limit"] > 0 for limit in result["limits"].values())


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
