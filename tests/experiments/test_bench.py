"""experiments/bench.py: runs every stage and every configuration kind on a tiny model, each as its
name says, and reports times (no timing is asserted: speed targets are read off the benchmark's
output)."""
import pytest
import torch

import stages
from experiments import bench

TINY = ["--resolution", "32", "--n_classes", "2", "--n_pretrain_classes", "3", "--G_ch", "4",
        "--D_ch", "4", "--G_attn", "0", "--D_attn", "0", "--batch_size", "4", "--num_D_steps", "1",
        "--warmup", "1", "--timed", "1", "--rounds", "1", "--device", "cpu", "--kp_variant",
        "cifar"]


@pytest.mark.slow  # ~0.6 s a stage: 2 configurations, each a warm-up and a timed iteration
@pytest.mark.parametrize("stage", stages.NAMES)
def test_bench_runs_every_stage(stage, capsys):
    extra = ["--n_pretrain_classes", "0"] if stage == "pretrain" else []
    result = bench.main(["--stage", stage, *TINY, *extra, "--configs",
                         "fp32,bf16+channels_last+fused"])
    assert set(result["s_per_itr"]) == {"fp32", "bf16+channels_last+fused"}
    assert all(seconds > 0 for seconds in result["s_per_itr"].values())
    assert result["peak_memory_MB"] > 0
    lines = {line.split(":")[0]: line for line in capsys.readouterr().out.splitlines()}
    fast = lines["bf16+channels_last+fused"]
    assert "precision fp32" in lines["fp32"] and "precision bf16" in fast
    assert "channels_last on" in fast and "channels_last off" in lines["fp32"]


def test_bench_default_is_what_train_runs_without_speed_flags(capsys):
    threads = torch.get_num_threads()
    try:
        result = bench.main(["--stage", "FT", *TINY, "--configs", "default,fp32+fused", "--threads",
                             "1"])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    lines = {line.split(":")[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "(--amp auto" in lines["default"] and "(auto" in lines["default"]
    assert "precision fp32 (--amp none); channels_last off" in lines["fp32+fused"]
    assert "fused resampling on (--fused_resampling)" in lines["fp32+fused"]
    assert set(result["s_per_itr"]) == {"default", "fp32+fused"}


def test_an_unknown_configuration_is_named(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--stage", "BN", *TINY, "--configs", "fp32,bf8"])
    assert "'bf8'" in capsys.readouterr().err


def test_profile_lists_the_step_s_operators_with_the_convolutions_share(capsys):
    result = bench.main(["--stage", "BN", *TINY, "--configs", "fp32", "--profile"])
    ops = result["profiles"]["fp32"]
    assert "aten::convolution_backward" in ops and all(seconds >= 0 for seconds in ops.values())
    out = capsys.readouterr().out
    assert "convolution operators" in out and "ms/itr" in out
