"""experiment.py: experiment names stay plain folders of their own, model flags travel with the weights
(a saved config fills what was left out and refuses what differs), and a run starts from a source
experiment or continues another experiment's checkpoint (--start_from)."""
import json
import os
import re

import pytest

import experiment
import utils
import worlds
from conftest import ROOT


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


def test_a_config_json_of_wrong_types_is_one_line_naming_the_file_and_the_key(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"G_ch": 16, "hier": True, "class_names": ["a"]}))
    assert experiment.read_config(str(tmp_path))["G_ch"] == 16
    for key, value, named in (("G_ch", "16", 'G_ch must be an integer, got "16"'),
                              ("hier", "yes", "hier must be true or false"), ("BN_eps", None, "BN_eps must be a number"),
                              ("class_names", 5, "class_names must be a list of strings or null, got 5")):
        (tmp_path / "config.json").write_text(json.dumps({key: value}))
        with pytest.raises(utils.UsageError, match=re.escape(f"config.json is damaged: {named}")):
            experiment.read_config(str(tmp_path))


def test_the_shipped_source_names_its_classifier_relative_to_itself_and_a_transfer_finds_it(tmp_path):
    source, classifier = os.path.join(ROOT, "assets", "fashion_source"), os.path.join(ROOT, "assets",
                                                                                       "fashion_classifier.pth")
    with open(os.path.join(source, "config.json")) as f:
        assert not os.path.isabs(json.load(f)["inception_weights"])
    saved = experiment.read_config(source)  # as --weights_root assets/fashion_source reads it
    assert saved["inception_weights"] == classifier
    config = {"backbone": "inception", "inception_weights": ""}
    experiment.adopt_source_config(config, saved, explicit=set(), what="the source")
    assert config == {"backbone": "classifier", "inception_weights": classifier, "old_class_names": saved["class_names"]}
    worlds.install_source(str(tmp_path / "weights"), source)  # as the worlds lay out a base folder
    assert experiment.read_config(str(tmp_path / "weights"))["inception_weights"] == classifier
    # elsewhere a relative path stays as the run was given it (relative to the working directory)
    (tmp_path / "config.json").write_text(json.dumps({"inception_weights": "base/weights/c.pth"}))
    assert experiment.read_config(str(tmp_path))["inception_weights"] == "base/weights/c.pth"
