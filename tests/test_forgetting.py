"""forgetting.py: old-class metrics of the source, after BN and after BN + FT, in both BN-statistics
modes, as a table."""
import math

import forgetting
import toy_default


def test_the_table_has_the_source_and_both_stages_in_both_statistics_modes(tmp_path, monkeypatch):
    monkeypatch.setattr(toy_default, "REFERENCE_IMAGES_PER_CLASS", 20)
    monkeypatch.setattr(forgetting, "EVALUATION_IMAGES", 120)
    monkeypatch.setattr(forgetting, "STANDING_BATCHES", 2)
    rows = forgetting.main(["--base_dir", str(tmp_path), "--iters", "2", "--seeds", "0"])
    models = ["source", "after BN (2 its)", "after BN + FT (4 its)"]
    assert list(rows) == [(model, stats) for model in models for stats in forgetting.STATISTICS]
    for (model, _), runs in rows.items():
        assert len(runs) == 1
        assert math.isfinite(runs[0]["old"]["FID"]) and 0 <= runs[0]["old"]["class_acc"] <= 1
        assert ("new" in runs[0]) == (model != "source")  # the source has only the old classes
    table = (tmp_path / "forgetting.md").read_text()
    assert table.count("| after BN + FT (4 its) |") == 2 and "old FID" in table
