"""experiments/demo.py (what `bash train.sh` runs): both stages of the method on a world, the second
started from the first's best checkpoint, a report, and a run that continues where it stopped."""
import json
import os
import subprocess
import sys

import pytest
import torch

import checkpoints
from conftest import ROOT
from experiments import demo
from worlds import toy

pytestmark = pytest.mark.slow  # every test here runs the default run

FEW = ["--world", "toy", "--shots", "5", "--iters", "4", "4", "--test_every", "2", "--num_inception_images", "100"]


def test_the_default_run_trains_BN_then_FT_from_the_best_BN_checkpoint_and_reports(tmp_path, capsys):
    result = demo.main(["--base_dir", str(tmp_path), *FEW])
    out = capsys.readouterr().out
    weights, samples = tmp_path / "weights", tmp_path / "samples" / "toy_FT"
    ft_config = json.loads((weights / "toy_FT" / "config.json").read_text())
    assert ft_config["stage"] == "FT" and ft_config["start_from"] == "toy_BN:best"
    assert ft_config["old_class_names"] == toy.OLD_CLASSES and ft_config["class_names"] == toy.NEW_CLASSES
    for stage in ("BN", "FT"):
        log = [json.loads(line) for line in open(tmp_path / "logs" / f"toy_{stage}_log.jsonl")]
        assert [r["itr"] for r in log] == [2, 4] and log[-1]["metric_space"] == "classifier"
    # the numbers are those of FT's best checkpoint (what --load_weights best samples), not its last
    assert result["FID"] == pytest.approx(min(r["FID"] for r in log))
    best = min(log, key=lambda r: r["FID"])
    assert result["class_acc"] == pytest.approx(best["class_acc"])
    assert "best checkpoint by FID" in out
    for figure in ("metrics.png", "training_images_and_samples.png", "combination_weights.png"):
        assert (samples / figure).is_file() and str(samples / figure) in out
    for key in ("FID", "mFID", "KMMD", "IS_mean", "class_acc", "NN_ratio"):
        assert isinstance(result[key], float), key
    assert "not Inception" in out and "What each new class" in out
    for name in toy.NEW_CLASSES:  # its top 3 old classes, each an old class
        block = out[out.index(f"{name} (new class"):].split("\n\n")[0]
        assert sum(line.strip().startswith(("1.", "2.", "3.")) for line in block.splitlines()) == 3
        assert all(line.split()[1] in toy.OLD_CLASSES for line in block.splitlines()
                   if line.strip().startswith(("1.", "2.", "3.")))
    assert len(os.listdir(tmp_path / "data" / "toy" / toy.NEW_CLASSES[0])) == 5


def test_run_again_it_loads_finished_stages_and_keeps_what_the_user_has(tmp_path, capsys):
    data = tmp_path / "data" / "toy"
    toy.write_image_folder(str(data), toy.NEW_CLASSES, 3, seed=5)  # the user's own few shots
    before = sorted(os.listdir(data / toy.NEW_CLASSES[0]))
    demo.main(["--base_dir", str(tmp_path), *FEW])
    saved = checkpoints.load_set(str(tmp_path / "weights" / "toy_FT"), "", ["G"])["G"]
    capsys.readouterr()
    demo.main(["--base_dir", str(tmp_path), *FEW])
    assert capsys.readouterr().out.count("finished before") == 2
    again = checkpoints.load_set(str(tmp_path / "weights" / "toy_FT"), "", ["G"])["G"]
    assert all(torch.equal(again[k], v) for k, v in saved.items())
    assert sorted(os.listdir(data / toy.NEW_CLASSES[0])) == before


def test_the_default_run_killed_while_saving_a_best_set_finishes_as_an_uninterrupted_one(tmp_path):
    """Through the entry point, with in-loop metrics: killed in BN's first best set and in FT's, then
    started again, it ends with the weights of a run that was never killed."""
    command = [sys.executable, "-m", "experiments.demo", *FEW, "--iters", "4", "4", "--save_every", "2",
               "--num_save_copies", "0"]

    def run(base, kill_at=None):
        env = {**os.environ, **({"CGT_KILL_AT_WRITE": str(kill_at)} if kill_at else {})}
        return subprocess.run([*command, "--base_dir", str(base)], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=600)
    reference = run(tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr[-2000:]
    expected = checkpoints.load_set(str(tmp_path / "reference" / "weights" / "toy_FT"), "", ["G", "D"])
    # BN saves at 2 (latest: 5 parts + manifest + naming + swap + 5 links = 13), evaluates and saves best0
    # (13 more): kill 20 falls in best0. The BN run's 4 saves and FT's first come to about 60.
    for kill_at in (20, 70):
        base = tmp_path / f"killed_at{kill_at}"
        killed = run(base, kill_at)
        assert killed.returncode == -9, (kill_at, killed.stderr[-2000:])
        finished = run(base)
        assert finished.returncode == 0, (kill_at, finished.stderr[-2000:])
        final = checkpoints.load_set(str(base / "weights" / "toy_FT"), "", ["G", "D"])
        for part in ("G", "D"):
            for key, value in expected[part].items():
                assert torch.allclose(final[part][key].float(), value.float(), atol=1e-6), (kill_at, part, key)
