"""experiments/forgetting.py: old-class metrics of the source, after BN and after BN + FT, in both
BN-statistics modes. The BN stage trains no weight the old classes use: with standing statistics of
their own, the old classes after it are measured as the source is (the same samples but for the
spectral-norm vectors, which every train-mode forward pass moves); FT trains the shared
convolutions."""
import json
import math

import pytest

import utils
from experiments import forgetting
from fashion_split import split_study  # noqa: F401 (a fixture)
from worlds import fashion, toy


@pytest.mark.slow
def test_the_table_has_the_source_and_both_stages_and_the_BN_stage_keeps_the_old_classes(
        tmp_path, monkeypatch):
    """Costs what a forgetting study costs, at its smallest (~15 s): two runs of it, 2 trainings of
    one iteration, 14 sample.py measurements (each with its sheets and a FID per class) of 60
    images, 5 per old class: the source and every G draw the same z and classes, so the comparisons
    below are of one set of samples, not of noise between sets."""
    monkeypatch.setattr(toy, "REFERENCE_IMAGES_PER_CLASS", 20)
    monkeypatch.setattr(forgetting, "EVALUATION_IMAGES", 60)
    monkeypatch.setattr(forgetting, "STANDING_BATCHES", 1)
    argv = ["--world", "toy", "--base_dir", str(tmp_path), "--iters", "1"]
    rows = forgetting.main([*argv, "--seeds", "0"])
    models = ["source", "after BN (1 its)", "after BN + FT (2 its)"]
    assert list(rows) == [(model, stats) for model in models for stats in forgetting.STATISTICS]
    for (model, _), runs in rows.items():
        assert len(runs) == 1 and math.isfinite(runs[0]["old"]["FID"])
        assert 0 <= runs[0]["old"]["class_acc"] <= 1
        assert ("new" in runs[0]) == (model != "source")  # the source has only the old classes
    standing = forgetting.STATISTICS[1]
    source, after_BN, after_FT = (rows[(model, standing)][0]["old"] for model in models)
    assert after_BN["FID"] == pytest.approx(source["FID"], rel=0.02)
    assert after_BN["class_acc"] == pytest.approx(source["class_acc"], abs=0.02)
    assert abs(after_FT["FID"] - source["FID"]) > abs(after_BN["FID"] - source["FID"])
    table = (tmp_path / "forgetting.md").read_text()
    assert table.count("| after BN + FT (2 its) |") == 2 and "old FID" in table
    # Run again, its trainings finished: the G after BN is measured again, not the G after FT (an
    # earlier version had one experiment for both stages and measured FT's weights as "after BN").
    again = forgetting.main([*argv, "--seeds", "0"])
    for model in models[1:]:
        for stats in forgetting.STATISTICS:
            assert again[(model, stats)] == rows[(model, stats)], (model, stats)
    assert again[(models[1], standing)][0]["old"] != again[(models[2], standing)][0]["old"]


@pytest.mark.slow
def test_a_study_of_another_split_is_measured_in_its_split(split_study, tmp_path, monkeypatch):
    """--study: the split study's world (fashion_split.py): its source, its new
    classes' shots and its old classes' reference images; 2 trainings of one iteration."""
    monkeypatch.setenv("FASHION_MNIST_DIR", str(split_study.raw))
    monkeypatch.setattr(forgetting, "EVALUATION_IMAGES", 70)
    monkeypatch.setattr(forgetting, "STANDING_BATCHES", 1)
    rows = forgetting.main(["--study", str(split_study.out), "--base_dir", str(tmp_path),
                            "--iters", "1", "--seeds", "0"])
    assert math.isfinite(rows[("after BN + FT (2 its)", forgetting.STATISTICS[0])][0]["old"]["FID"])
    old = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Ankle boot"]
    weights = tmp_path / "weights"
    source = json.loads((weights / forgetting.SOURCE_EXPERIMENT / "config.json").read_text())
    assert sorted(source["class_names"]) == sorted(old)
    for name in ("BN_seed0", "BN_then_FT_seed0"):
        run = json.loads((weights / name / "config.json").read_text())
        assert sorted(run["class_names"]) == ["Bag", "Shirt", "Sneaker"]
        assert sorted(run["old_class_names"]) == sorted(old)
    reference_folder = tmp_path / "data" / f"{fashion.OLD_DATASET}_reference"
    reference = json.loads((reference_folder / "dataset.json").read_text())
    assert sorted(reference["class_names"]) == sorted(old)
    assert "new ones (Shirt, Sneaker, Bag)" in (tmp_path / "forgetting.md").read_text()


def test_a_study_folder_without_its_world_description_is_refused(tmp_path):
    with pytest.raises(utils.UsageError, match="holds no world.json"):
        forgetting.main(["--study", str(tmp_path), "--base_dir", str(tmp_path / "forgetting")])
    assert list(tmp_path.iterdir()) == []


def test_a_study_and_a_world_at_once_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        forgetting.main(["--study", str(tmp_path), "--world", "toy",
                         "--base_dir", str(tmp_path / "forgetting")])
    assert "--study" in capsys.readouterr().err
