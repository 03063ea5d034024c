"""bench.py prints a speed and memory figure for a configuration (smoke test, no timing asserted)."""
import bench


def test_bench_reports_iterations_per_second_and_peak_memory(capsys):
    result = bench.main(["--stage", "BN", "--resolution", "32", "--n_classes", "2", "--n_pretrain_classes", "3",
                         "--G_ch", "4", "--D_ch", "4", "--G_attn", "0", "--D_attn", "0", "--batch_size", "4",
                         "--num_D_steps", "1", "--warmup", "1", "--timed", "2", "--device", "cpu"])
    assert result["itr_per_s"] > 0 and result["peak_memory_MB"] > 0
    assert "itr_per_s" in capsys.readouterr().out
