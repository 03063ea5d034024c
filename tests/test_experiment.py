"""experiment.py: experiment names stay plain folders of their own, model flags travel with the weights
(a saved config fills what was left out and refuses what differs), and a run starts from a source
experiment or continues another experiment's checkpoint (--start_from)."""
import json
import os
import re

import pytest

import checkpoint_format
import checkpoints
import experiment
import flags
import utils
import worlds
from conftest import ROOT
from test_checkpoints import a_set


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
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"G_ch": 16, "hier": True, "class_names": ["a"]}))
    assert experiment.read_config(str(tmp_path))["G_ch"] == 16
    for key, value, named in (("G_ch", "16", 'G_ch must be an integer, got "16"'),
                              ("hier", "yes", "hier must be true or false"),
                              ("BN_eps", None, "BN_eps must be a number"),
                              ("class_names", 5, "class_names must be a list of strings or null")):
        path.write_text(json.dumps({key: value}))
        with pytest.raises(utils.UsageError, match=re.escape(f"config.json is damaged: {named}")):
            experiment.read_config(str(tmp_path))


def test_the_shipped_source_names_its_classifier_relative_to_itself_and_a_transfer_finds_it(
        tmp_path):
    source = os.path.join(ROOT, "assets", "fashion_source")
    classifier = os.path.join(ROOT, "assets", "fashion_classifier.pth")
    with open(os.path.join(source, "config.json")) as f:
        assert not os.path.isabs(json.load(f)["inception_weights"])
    saved = experiment.read_config(source)  # as --weights_root assets/fashion_source reads it
    assert saved["inception_weights"] == classifier
    config = {"backbone": "inception", "inception_weights": ""}
    experiment.adopt_source_config(config, saved, explicit=set(), what="the source")
    assert config == {"backbone": "classifier", "inception_weights": classifier,
                      "old_class_names": saved["class_names"]}
    worlds.install_source(str(tmp_path / "weights"), source)  # as the worlds lay out a base folder
    assert experiment.read_config(str(tmp_path / "weights"))["inception_weights"] == classifier
    # elsewhere a relative path stays as the run was given it (relative to the working directory)
    (tmp_path / "config.json").write_text(json.dumps({"inception_weights": "base/weights/c.pth"}))
    assert experiment.read_config(str(tmp_path))["inception_weights"] == "base/weights/c.pth"


@pytest.mark.parametrize("suffix", ["", "copy0"])
def test_resume_or_start_from_a_set_whose_G_is_truncated_names_the_set_and_the_file_as_damaged(
        tmp_path, suffix):
    folder = tmp_path / "exp"
    checkpoints.save_set(str(folder), a_set(4), 4, suffix)
    G = folder / checkpoint_format.part_name("G", suffix)
    saved_bytes = G.stat().st_size
    with open(os.path.realpath(G), "r+b") as f:
        f.truncate(saved_bytes // 2)
    damaged = re.escape(f"checkpoint {suffix or '(latest)'} in {folder} is damaged: G.pth has "
                        f"{saved_bytes // 2} bytes, the file saved at iteration 4 had "
                        f"{saved_bytes}")
    config = {"experiment_name": "exp", "weights_root": str(tmp_path), "load_weights": suffix,
              "ema": False, "start_from": f"exp:{suffix}" if suffix else "exp"}
    with pytest.raises(utils.UsageError, match=damaged):
        experiment.read_resume_set(config)
    with pytest.raises(utils.UsageError, match=damaged):
        experiment.read_start_from(config)


def test_a_checkpoint_suffix_names_a_set_or_is_refused_naming_the_flag(tmp_path, capsys):
    names = ["", "latest", "best", "copy0", "best12"]
    assert [checkpoints.set_name(name) for name in names] == names
    for flag, value, suffix in (("--load_weights", "../../x", "../../x"),
                                ("--load_weights", "copy", "copy"),
                                ("--start_from", "EXP:../../x", "../../x"),
                                ("--start_from", "EXP:G", "G")):
        with pytest.raises(SystemExit) as exit_:
            flags.prepare_parser().parse_args([flag, value])
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert exit_.value.code == 2 and f"error: argument {flag}: " in line
        assert "must name a checkpoint set: latest, best (the best of the best sets), copyN" in line
        assert line.endswith(f"got {suffix!r}")
    refused = r"'\.\./x' is no checkpoint set \(those are latest, .*\); check"
    with pytest.raises(utils.UsageError, match=refused):
        checkpoints.resolve_suffix(str(tmp_path), "../x", "check --load_weights")
