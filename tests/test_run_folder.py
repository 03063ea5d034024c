"""run_folder.py: an experiment's paths, names that stay plain folders of their own, and its
config.json read back checked."""
import json
import os
import re

import pytest

import checkpoints
import flags
import run_folder
import utils


@pytest.mark.parametrize("name,problem", [(".", "plain folder name"), ("..", "plain folder name"),
                                          ("a/b", "plain folder name"),
                                          (".lock", "plain folder name"),
                                          (" padded", "plain folder name"),
                                          ("D.pth", "looks like a file name")])
def test_an_experiment_name_that_is_no_plain_folder_of_its_own_is_refused(tmp_path, name, problem):
    with pytest.raises(utils.UsageError,
                       match=re.escape(f"--experiment_name {name!r}") + f" .*{problem}"):
        run_folder.check_name(name, str(tmp_path))
    (tmp_path / "notes.txt").write_text("a file")
    with pytest.raises(utils.UsageError, match="is an existing file"):
        run_folder.check_name("notes.txt", str(tmp_path))
    run_folder.check_name("BN_stage (lr 1e-3)", str(tmp_path))  # anything else is a name


def test_a_config_json_of_wrong_types_is_one_line_naming_the_file_and_the_key(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"G_ch": 16, "hier": True, "class_names": ["a"]}))
    assert run_folder.read_config(str(tmp_path))["G_ch"] == 16
    for key, value, named in (("G_ch", "16", 'G_ch must be an integer, got "16"'),
                              ("hier", "yes", "hier must be true or false"),
                              ("BN_eps", None, "BN_eps must be a number"),
                              ("class_names", 5, "class_names must be a list of strings or null")):
        path.write_text(json.dumps({key: value}))
        with pytest.raises(utils.UsageError, match=re.escape(f"config.json is damaged: {named}")):
            run_folder.read_config(str(tmp_path))


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


def test_a_run_folder_names_every_path_of_the_base_dir_layout(tmp_path):
    config = flags.finalize_config(vars(flags.prepare_parser().parse_args(
        ["--base_dir", str(tmp_path), "--experiment_name", "exp"])))
    folder = run_folder.RunFolder.of(config)
    base = str(tmp_path)
    assert folder.weights == run_folder.folder(config) == os.path.join(base, "weights", "exp")
    assert folder.config_file == os.path.join(base, "weights", "exp", "config.json")
    assert folder.metrics_log == os.path.join(base, "logs", "exp_log.jsonl")
    assert folder.training_log == os.path.join(base, "logs", "exp", "train_log.jsonl")
    assert folder.samples == os.path.join(base, "samples", "exp")
