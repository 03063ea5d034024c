"""experiments/demo.py (what `bash train.sh` runs): both stages of the method on a world, the second
started from the first's best checkpoint, a report, and a run that continues where it stopped."""
import importlib
import json
import os

import pytest
import torch

import checkpoints
import utils
from conftest import calling
from helpers.faults import killed_at_change
from experiments import demo
from worlds import toy

pytestmark = pytest.mark.slow  # every test here runs the default run

FEW = ["--world", "toy", "--shots", "5", "--iters", "4", "4", "--test_every", "2",
       "--num_inception_images", "100"]
# Smaller reference statistics and memorization samples than the world's (500 and 100 images per
# class: ~3 s of a run's ~13): what these tests check does not depend on them.
SMALLER = [["worlds.toy", "REFERENCE_IMAGES_PER_CLASS", 20],
           ["experiments.demo", "MEMORIZATION_SAMPLES", 10]]


@pytest.fixture(autouse=True)
def smaller_world(monkeypatch):
    for module, name, value in SMALLER:
        monkeypatch.setattr(importlib.import_module(module), name, value)


def test_the_default_run_trains_BN_then_FT_from_the_best_BN_checkpoint_and_reports(tmp_path,
                                                                                   capsys):
    result = demo.main(["--base_dir", str(tmp_path), *FEW])
    out = capsys.readouterr().out
    weights, samples = tmp_path / "weights", tmp_path / "samples" / "toy_FT"
    ft_config = json.loads((weights / "toy_FT" / "config.json").read_text())
    assert ft_config["stage"] == "FT" and ft_config["start_from"] == "toy_BN:best"
    assert ft_config["old_class_names"] == toy.OLD_CLASSES
    assert ft_config["class_names"] == toy.NEW_CLASSES
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


def test_without_in_loop_metrics_FT_starts_from_BN_s_latest_set_and_says_so(tmp_path, capsys):
    result = demo.main(["--base_dir", str(tmp_path), "--world", "toy", "--shots", "5",
                        "--iters", "1", "1", "--no_fid"])
    assert ("toy_BN kept no best checkpoint (it ran without in-loop metrics): FT starts from its "
            "latest") in capsys.readouterr().out
    ft_config = json.loads((tmp_path / "weights" / "toy_FT" / "config.json").read_text())
    assert ft_config["start_from"] == "toy_BN"
    assert not (tmp_path / "samples" / "toy_FT" / "metrics.png").exists() and result["NN_ratio"] > 0


# BN and FT of 2 iterations, each saved (the latest set and copy0) and evaluated (best0) at 2 only;
# SMALLER patched into each process: a run is about 3 s.
KILLED = ["--world", "toy", "--shots", "5", "--iters", "2", "2", "--save_every", "2",
          "--test_every", "2", "--num_inception_images", "50"]


def test_the_default_run_killed_after_a_stage_s_final_save_reruns_to_the_same_end(tmp_path,
                                                                                   command_lines):
    """Killed right after BN's final save, before its final evaluation (the evaluation that keeps
    its best set and logs it), `python -m experiments.demo` (what `bash train.sh` runs) reruns
    twice with exit code 0: the first makes up BN's evaluation and trains FT from BN's best set,
    the second finds both stages finished. Killed right after FT's final save, the rerun makes up
    FT's. Each ends with the weights, best set and logs of a run never killed. Real kills
    (helpers/faults.py) of processes forked from the server that imported torch once
    (conftest.CommandLines): 7 runs of about 1-3 s; every kill point of that window is covered at
    the level of train.py (tests/test_train_resume.py), every write of a save by
    tests/test_checkpoints.py."""
    def demo(base, kill_at=None):
        """demo.main as `python -m experiments.demo` runs it, with SMALLER patched in: (its
        returncode, its output: stdout, then stderr)."""
        argv = [*calling("experiments.demo:main"), "--base_dir", tmp_path / base, *KILLED]
        result = command_lines.run(killed_at_change(kill_at, argv), patches=SMALLER)
        return result.returncode, result.stdout + result.stderr
    code, output = demo("reference")
    assert code == 0, output[-3000:]
    outputs = [output]
    # Changes to the checkpoint folders, counted over the run: BN's latest set 1-13 (its swap
    # the 8th), copy0 14-26, best0 27-39; FT's latest set 40-52 (swap 47), copy0 53-65, best0
    # 66-78.
    for base, kill_at in (("killed_after_BN_save", 9), ("killed_after_FT_save", 48)):
        code, output = demo(base, kill_at)
        assert code == -9, (base, code, output[-3000:])
        outputs.append(output)
        for rerun in range(2):
            code, output = demo(base)
            assert code == 0 and "Traceback" not in output, output[-3000:]
            assert ("saved but not evaluated" in output) == (rerun == 0), (base, rerun)
            outputs.append(output)
        assert output.count("finished before") == 2, base
        assert_same_runs(tmp_path / base, tmp_path / "reference")
    # FT started once per base folder, each time from BN's best set
    starts = [line for output in outputs for line in output.splitlines()
              if line.startswith("Starting from")]
    assert len(starts) == 3, starts
    assert all(line.startswith("Starting from checkpoint best0 in ") for line in starts), starts


def assert_same_runs(base, reference):
    """Both stages: the latest and the best set of the same bits, the same metrics logged."""
    for stage in ("toy_BN", "toy_FT"):
        for slot in ("", "best0"):
            ours, theirs = (checkpoints.load_set(str(b / "weights" / stage), slot, ["G", "D"])
                            for b in (base, reference))
            for part in ("G", "D"):
                for key, value in theirs[part].items():
                    assert torch.equal(ours[part][key], value), (base, stage, slot, part, key)
        read = lambda b: utils.read_jsonl(str(b / "logs" / f"{stage}_log.jsonl"))
        logs = [[(r["itr"], r["FID"]) for r in read(b)]
                for b in (base, reference)]
        assert logs[0] == logs[1] == [(2, logs[1][0][1])], (base, stage)
