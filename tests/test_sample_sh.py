"""sample.sh after the default run samples what the run reported: FT's best set, with G_ema where
the run sampled G_ema (its saved config's use_ema), and says so through sample.py's own line."""
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.mark.parametrize("use_ema", [True, False])
def test_sample_sh_samples_the_best_set_with_the_weights_the_run_sampled(tmp_path, use_ema):
    folder = tmp_path / "base" / "weights" / "fashion_FT"
    folder.mkdir(parents=True)
    (folder / "G.pth").write_bytes(b"")
    (folder / "config.json").write_text(json.dumps({"use_ema": use_ema, "ema": True}, indent=1))
    stub = tmp_path / "python"  # stands in for Python: records the command line sample.sh runs
    stub.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'argv'}\n")
    stub.chmod(0o755)
    env = {**os.environ, "BASE_DIR": str(tmp_path / "base"), "PYTHON": str(stub)}
    env.pop("SETUP", None)
    subprocess.run(["bash", os.path.join(ROOT, "sample.sh")], env=env, check=True, cwd=ROOT)
    argv = (tmp_path / "argv").read_text().split()
    assert argv[0] == "sample.py" and argv[argv.index("--experiment_name") + 1] == "fashion_FT"
    assert argv[argv.index("--load_weights") + 1] == "best"
    assert ("--use_ema" in argv) == use_ema


def test_sample_sh_without_a_default_run_says_what_to_run(tmp_path):
    env = {**os.environ, "BASE_DIR": str(tmp_path), "PYTHON": sys.executable}
    env.pop("SETUP", None)
    result = subprocess.run(["bash", os.path.join(ROOT, "sample.sh")], env=env, cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 1 and "bash train.sh" in result.stderr
