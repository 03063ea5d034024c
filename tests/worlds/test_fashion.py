"""fashion.py: the Fashion-MNIST world refuses few-shot data it did not prepare for the run asked
for."""
import json
import os
import shutil

import pytest

from worlds import fashion
import utils

SHIPPED = os.path.join(fashion.assets()["data"], fashion.NEW_DATASET)


@pytest.fixture
def data_root(tmp_path):
    """A data_root holding a copy of the shipped 10-shot folder (seed 0; Pullover, Coat, Ankle
    boot)."""
    shutil.copytree(SHIPPED, tmp_path / fashion.NEW_DATASET)
    return tmp_path


def test_the_shipped_folder_is_what_the_default_run_asks_for(data_root):
    assert fashion.prepared_as(str(data_root / fashion.NEW_DATASET)) == (10, 0,
                                                                         ("Ankle boot", "Coat",
                                                                          "Pullover"))


@pytest.mark.parametrize("shots, seed, new, expected", [
    (5, 0, fashion.NEW_CLASSES,
     "holds 10 shots of seed 0 of Ankle boot, Coat, Pullover, not 5 of seed 0"),
    (10, 1, fashion.NEW_CLASSES, "not 10 of seed 1"),
    (10, 0, ("Shirt", "Sneaker", "Bag"), "not 10 of seed 0 of Bag, Shirt, Sneaker"),
])
def test_other_shots_seed_or_classes_are_refused_before_anything_is_written(data_root, shots, seed,
                                                                            new, expected):
    before = sorted(p.name for p in data_root.iterdir())
    with pytest.raises(utils.UsageError, match="use another base folder") as err:
        fashion.prepare_new(str(data_root), shots, seed, new)
    assert expected in str(err.value)
    assert sorted(p.name for p in data_root.iterdir()) == before


def test_a_folder_of_another_tool_is_refused_by_name(data_root):
    (data_root / fashion.NEW_DATASET / "dataset.json").write_text(json.dumps({"resolution": 32}))
    with pytest.raises(utils.UsageError, match="was not prepared by the Fashion-MNIST world"):
        fashion.prepare_new(str(data_root), 10, 0)


def test_a_damaged_dataset_json_is_one_error_naming_the_file(data_root):
    path = data_root / fashion.NEW_DATASET / "dataset.json"
    path.write_text('{"resolution": 32, "split": ')
    with pytest.raises(utils.UsageError, match="dataset.json"):
        fashion.prepare_new(str(data_root), 10, 0)


def test_a_copy_of_the_shipped_data_cut_short_is_never_taken_for_the_whole(tmp_path, monkeypatch):
    """The default run copies the shipped few-shot folder into its data root: a run killed during
    the copy leaves no partial folder that the next run would take for the data (it would train on
    the images that made it), and the next run copies it whole."""
    real_copyfile, copied = shutil.copyfile, []

    def killed_after_five_files(origin, target, **kwargs):
        if len(copied) == 5:
            raise KeyboardInterrupt  # what a kill is to the copy: it stops there
        copied.append(origin)
        return real_copyfile(origin, target, **kwargs)

    monkeypatch.setattr(fashion, "reference_statistics", lambda *args: None)
    monkeypatch.setattr(shutil, "copyfile", killed_after_five_files)
    with pytest.raises(KeyboardInterrupt):
        fashion.prepare_new(str(tmp_path), 10, 0)
    assert not (tmp_path / fashion.NEW_DATASET).exists()
    monkeypatch.setattr(shutil, "copyfile", real_copyfile)
    fashion.prepare_new(str(tmp_path), 10, 0)
    assert files_in(tmp_path / fashion.NEW_DATASET) == files_in(SHIPPED)


def files_in(folder) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder)
                  for f in fs)


def test_a_split_s_old_classes_are_the_other_classes_in_label_order():
    assert fashion.world(("Shirt", "Sneaker", "Bag")).old_classes == (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Ankle boot")


@pytest.mark.parametrize("new", [("Shrt",), ("Coat", "Coat"), fashion.CLASSES])
def test_a_split_that_is_not_one_is_refused_naming_new(new):
    with pytest.raises(utils.UsageError, match="--new"):
        fashion.world(new)


def test_the_old_classes_of_another_split_are_refused_and_kept(tmp_path):
    """A data folder holding the default split's old-class reference images (what an analysis that
    did not follow its study's split left there) is not taken for another split's."""
    folder = tmp_path / f"{fashion.OLD_DATASET}_reference"
    shutil.copytree(SHIPPED, folder)  # its dataset.json: the default split
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(utils.UsageError, match="holds the old classes of the split whose new "
                       "classes are Ankle boot, Coat, Pullover, not Bag, Shirt, Sneaker"):
        fashion.prepare_old(str(tmp_path), new=("Shirt", "Sneaker", "Bag"))
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_publish_ships_a_set_of_a_pretraining_and_never_writes_over_a_source(tmp_path):
    from test_worlds import published, save_run
    run, out = str(tmp_path / "run"), tmp_path / "source"
    save_run(run, {500: 9.0, 1000: 4.0, 1500: 5.0})
    fashion.main(["publish", "--experiment", run, "--out", str(out), "--set", "best", "--ema"])
    assert published(str(out)) == (2000.0, -1000.0)  # best: 1000's set; G.pth is its G_ema
    before = (out / "G.pth").read_bytes()
    with pytest.raises(utils.UsageError, match="holds a source model already; give a new --out"):
        fashion.main(["publish", "--experiment", run, "--out", str(out)])
    assert (out / "G.pth").read_bytes() == before
