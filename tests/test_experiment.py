"""experiment.py: experiment names stay plain folders of their own, model flags travel with the weights
(a saved config fills what was left out and refuses what differs), and a run starts from a source
experiment or continues another experiment's checkpoint (--start_from)."""
import re

import pytest

import experiment
import utils


def test_a_saved_config_fills_what_was_left_out_and_refuses_what_differs():
    saved = {"G_ch": 16, "hier": True, "dim_z": 120}
    config = {"G_ch": 64, "hier": False, "dim_z": 120, "seed": 3}
    assert experiment.adopt_saved_config(config, saved, set(), ("G_ch", "hier", "dim_z"), "ckpt") == ["G_ch", "hier"]
    assert config == {"G_ch": 16, "hier": True, "dim_z": 120, "seed": 3}
    with pytest.raises(utils.UsageError, match=r"ckpt was trained with .*--G_ch 32 \(trained with 16\)"):
        experiment.adopt_saved_config({**config, "G_ch": 32}, saved, {"G_ch"}, ("G_ch",), "ckpt")


@pytest.mark.parametrize("name,problem", [(".", "plain folder name"), ("..", "plain folder name"),
                                          ("a/b", "plain folder name"), (".lock", "plain folder name"),
                                          (" padded", "plain folder name"), ("D.pth", "looks like a file name")])
def test_an_experiment_name_that_is_no_plain_folder_of_its_own_is_refused(tmp_path, name, problem):
    with pytest.raises(utils.UsageError, match=re.escape(f"--experiment_name {name!r}") + f" .*{problem}"):
        experiment.check_name(name, str(tmp_path))
    (tmp_path / "notes.txt").write_text("a file")
    with pytest.raises(utils.UsageError, match="is an existing file"):
        experiment.check_name("notes.txt", str(tmp_path))
    experiment.check_name("BN_stage (lr 1e-3)", str(tmp_path))  # anything else is a name
