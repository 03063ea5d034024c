"""scripts/gpu_check.sh, the prepared GPU run, in its tiny configuration on the CPU (the path a CUDA
machine runs, at 32 px and 4 channels): each check runs and is listed, torchrun's experiment is
saved at its last iteration, sample.py writes a class sheet; a failing check stops the script with
one line naming it, and a used OUT folder is refused."""
import os
import subprocess
import sys

import pytest

from conftest import ROOT

SCRIPT = os.path.join(ROOT, "scripts", "gpu_check.sh")
CHECKS = ["imagenet_bench", "imagenet_bench_parallel", "images", "prepare_dataset", "torchrun_bf16",
          "cifar_bench_limit", "sample"]
TINY_ITERS = 2  # the script's tiny --num_iters


def run_script(out, python=sys.executable, **env):
    env = {**os.environ, "GPU_CHECK_TINY": "1", "PYTHON": str(python), **env}
    return subprocess.run(["bash", SCRIPT, str(out)], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_the_tiny_configuration_runs_every_check_trains_with_torchrun_and_samples(tmp_path):
    """Cost: 8 Python processes that import torch (~5 s each: most of the ~50 s of CPU time), two of
    them torchrun's gloo workers; each trains or times 1-2 iterations of a 4-channel model."""
    import checkpoints
    out = tmp_path / "out"
    result = run_script(out, PEAK_BF16_TFLOPS="2")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = (out / "summary.txt").read_text().splitlines()
    assert [line.split()[:2] for line in summary[:len(CHECKS)]] == [[name, "ok"] for name in CHECKS]
    benches = [line.split(":")[0] for line in summary[len(CHECKS):]]
    assert benches == ["imagenet_bench fp32", "imagenet_bench bf16", "imagenet_bench_parallel fp32",
                       "imagenet_bench_parallel bf16", "cifar_bench fp32", "cifar_bench default",
                       "cifar_bench bf16"]
    cifar = summary[-3:]
    assert all("TFLOP/s, " in line and "of the 2 TFLOP/s bf16 peak" in line for line in cifar)
    folder = str(out / "base" / "weights" / "gpucheck_bf16")
    assert checkpoints.saved_iteration(folder, "") == TINY_ITERS
    assert list((out / "base" / "samples" / "gpucheck_bf16").glob("*/samples0.png"))


def test_a_failing_check_stops_the_script_with_one_line_naming_it(tmp_path):
    failing = tmp_path / "python"  # stands in for Python: every command fails
    failing.write_text("#!/bin/sh\necho broken >&2\nexit 3\n")
    failing.chmod(0o755)
    result = run_script(tmp_path / "out", python=failing)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("gpu_check FAILED: imagenet_bench ")
    assert (tmp_path / "out" / "summary.txt").read_text() == ""


def test_an_out_folder_with_files_is_refused(tmp_path):
    (tmp_path / "earlier.txt").write_text("kept")
    result = run_script(tmp_path)
    assert result.returncode == 2 and "give a new folder as OUT" in result.stderr
    assert os.listdir(tmp_path) == ["earlier.txt"]
