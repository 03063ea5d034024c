"""bench.py: runs every stage and every configuration kind on a tiny model and reports medians and
ratios (no timing is asserted: speed targets are read off the benchmark's output)."""
import pytest
import torch

import bench
import stages

TINY = ["--resolution", "32", "--n_classes", "2", "--n_pretrain_classes", "3", "--G_ch", "4", "--D_ch", "4",
        "--G_attn", "0", "--D_attn", "0", "--batch_size", "4", "--num_D_steps", "1", "--warmup", "1",
        "--timed", "1", "--rounds", "1", "--device", "cpu", "--kp_variant", "cifar"]


@pytest.mark.parametrize("stage", stages.NAMES)
def test_bench_runs_every_stage(stage, capsys):
    extra = ["--n_pretrain_classes", "0"] if stage == "pretrain" else []
    result = bench.main(["--stage", stage, *TINY, *extra, "--configs", "fp32,bf16+channels_last+fused"])
    assert set(result["s_per_itr"]) == {"fp32", "bf16+channels_last+fused"}
    assert result["speedup"]["fp32"] == 1.0 and result["cpu_speedup"]["fp32"] == 1.0
    assert result["peak_memory_MB"] > 0
    assert "itr/s" in capsys.readouterr().out


def test_bench_compares_configurations_against_the_first(capsys):
    result = bench.main(["--stage", "BN", *TINY, "--configs", "bf16,fp32", "--rounds", "2"])
    assert result["speedup"]["bf16"] == 1.0
    assert result["speedup"]["fp32"] == pytest.approx(result["s_per_itr"]["bf16"] / result["s_per_itr"]["fp32"])


def test_bench_default_is_what_train_runs_without_speed_flags(capsys):
    threads = torch.get_num_threads()
    try:
        result = bench.main(["--stage", "FT", *TINY, "--configs", "default,fp32+fused", "--threads", "1"])
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
