"""toy_default.py (what `bash train.sh` runs offline): the whole pipeline on a few iterations."""
import json
import os
import shutil

import torch

import toy_default

FEW = ["--images_per_class", "5", "--num_iters", "4", "--test_every", "2", "--save_every", "2",
       "--num_inception_images", "100"]


def test_offline_default_runs_end_to_end_and_reports_where_the_files_are(tmp_path, capsys):
    result = toy_default.main(["--base_dir", str(tmp_path), *FEW])
    out = capsys.readouterr().out
    samples = tmp_path / "samples" / "toy_default"
    assert (samples / "metrics.png").is_file() and (samples / "class_sheet4.png").is_file()
    assert (tmp_path / "weights" / "toy_default" / "G.pth").is_file()
    log = [json.loads(line) for line in open(tmp_path / "logs" / "toy_default_log.jsonl")]
    assert [r["itr"] for r in log] == [2, 4]
    for key in ("FID", "mFID", "KMMD", "IS_mean", "class_acc"):
        assert isinstance(result["metrics"][key], float), key
    assert log[-1]["metric_space"] == "classifier"
    assert "not Inception" in out and str(samples / "metrics.png") in out
    assert len(os.listdir(tmp_path / "data" / "toy")) == 4


def test_offline_default_keeps_what_the_user_already_has(tmp_path, capsys):
    data = tmp_path / "data" / "toy"
    toy_default.prepare_target_data(str(tmp_path / "data"), 3, seed=5)
    before = sorted(os.listdir(data / os.listdir(data)[0]))
    os.makedirs(tmp_path / "weights")
    shutil.copy(os.path.join(toy_default.SOURCE_ASSETS, "G.pth"), tmp_path / "weights" / "G.pth")
    marker = torch.load(tmp_path / "weights" / "G.pth", weights_only=True)
    toy_default.main(["--base_dir", str(tmp_path), "--prepare_only"])
    assert sorted(os.listdir(data / os.listdir(data)[0])) == before
    assert "using the existing" in capsys.readouterr().out
    kept = torch.load(tmp_path / "weights" / "G.pth", weights_only=True)
    assert all(torch.equal(kept[k], marker[k]) for k in marker)
