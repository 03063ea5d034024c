"""bench.py: runs every stage and every configuration kind on a tiny model and reports medians and
ratios (no timing is asserted: speed targets are read off the benchmark's output)."""
import pytest

import bench
import stages

TINY = ["--resolution", "32", "--n_classes", "2", "--n_pretrain_classes", "3", "--G_ch", "4", "--D_ch", "4",
        "--G_attn", "0", "--D_attn", "0", "--batch_size", "4", "--num_D_steps", "1", "--warmup", "1",
        "--timed", "1", "--rounds", "1", "--device", "cpu", "--kp_variant", "cifar"]


@pytest.mark.parametrize("stage", stages.NAMES)
def test_bench_runs_every_stage(stage, capsys):
    extra = ["--n_pretrain_classes", "0"] if stage == "pretrain" else []
    result = bench.main(["--stage", stage, *TINY, *extra, "--configs", "fp32,bf16+channels_last"])
    assert set(result["s_per_itr"]) == {"fp32", "bf16+channels_last"}
    assert result["speedup"]["fp32"] == 1.0 and result["peak_memory_MB"] > 0
    assert "itr/s" in capsys.readouterr().out


def test_bench_compares_configurations_against_the_first(capsys):
    result = bench.main(["--stage", "BN", *TINY, "--configs", "bf16,fp32", "--rounds", "2"])
    assert result["speedup"]["bf16"] == 1.0
    assert result["speedup"]["fp32"] == pytest.approx(result["s_per_itr"]["bf16"] / result["s_per_itr"]["fp32"])


def test_an_unknown_configuration_is_named(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--stage", "BN", *TINY, "--configs", "fp32,bf8"])
    assert "'bf8'" in capsys.readouterr().err
