"""utils.py: a leaf of the project; a file the user points at that is not what it should be is one
clear error, and a failed write is one line that keeps what was there."""
import ast
import errno
import json
import os
import re

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import utils  # noqa: E402
from conftest import ROOT, inject_write_failure  # noqa: E402


def test_utils_imports_no_module_of_the_project():
    """utils is the leaf every module may import: no import of the project's, at module level or
    inside a function (BigGAN-PyTorch's utils.prepare_parser is flags.prepare_parser here)."""
    project = {name[:-3] for name in os.listdir(ROOT) if name.endswith(".py")} | {"worlds",
                                                                                  "experiments"}
    with open(os.path.join(ROOT, "utils.py")) as f:
        nodes = list(ast.walk(ast.parse(f.read())))
    imported = {alias.name.split(".")[0] for node in nodes if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in nodes if isinstance(node, ast.ImportFrom)
                 and node.module}
    assert "torch" in imported and not imported & project, imported & project


def test_a_file_that_is_not_a_checkpoint_is_one_clear_error(tmp_path):
    path = tmp_path / "G.pth"
    path.write_bytes(b"not a torch file")
    with pytest.raises(utils.UsageError, match=r"is not a readable generator weights .*; retrain"):
        utils.load_file(str(path), "generator weights", "retrain")
    with pytest.raises(utils.UsageError, match=r"does not exist; retrain"):
        utils.load_file(str(tmp_path / "nothing.pth"), "generator weights", "retrain")


@pytest.mark.parametrize("text,reason",
                         [('{"resolution": 3', r"Expecting"), ('[1, 2]', r"not a JSON object")])
def test_a_json_file_that_is_not_an_object_is_one_clear_error_and_an_absent_one_is_none(tmp_path,
                                                                                        text,
                                                                                        reason):
    path = tmp_path / "config.json"
    assert utils.read_json_object(str(path), "delete it") is None
    path.write_text('{"G_ch": 16}')
    assert utils.read_json_object(str(path), "delete it") == {"G_ch": 16}
    path.write_text(text)
    with pytest.raises(utils.UsageError,
                       match=rf"config\.json is damaged \({reason}.*\); delete it$"):
        utils.read_json_object(str(path), "delete it")


KEY_TYPES = {"resolution": int, "lr": float, "ema": bool, "names": list[str], "cap": int | None,
             "split": dict[str, list[str]]}
GOOD = {"resolution": 32, "lr": 1, "ema": False, "names": ["a"], "cap": None,
        "split": {"new": ["a"]}}


@pytest.mark.parametrize("key,value,named", [
    ("resolution", "32", 'resolution must be an integer, got "32"'),
    ("resolution", True, "resolution must be an integer, got true"),
    ("resolution", 32.0, "resolution must be an integer, got 32.0"),
    ("lr", "1e-3", "lr must be a number"), ("ema", 1, "ema must be true or false"),
    ("names", 5, "names must be a list of strings, got 5"),
    ("names", ["a", 3], "names must be a list of strings"),
    ("cap", "7", "cap must be an integer or null"),
    ("split", {"new": "a"}, "split must be an object whose values are each a list of strings"),
])
def test_a_json_key_of_another_type_is_one_line_naming_the_file_and_the_key(tmp_path, key, value,
                                                                            named):
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(GOOD))
    assert utils.read_json_object(str(path), "fix it", KEY_TYPES) == GOOD  # lr 1: ints are numbers
    path.write_text(json.dumps({**GOOD, key: value}))
    expected = re.escape(f"{path} is damaged: {named}") + ".*; fix it$"
    with pytest.raises(utils.UsageError, match=expected):
        utils.read_json_object(str(path), "fix it", KEY_TYPES)


def test_a_json_file_lacking_a_key_or_naming_a_folder_outside_its_root_is_refused(tmp_path):
    path = tmp_path / "data" / "mine" / "dataset.json"
    os.makedirs(path.parent)
    path.write_text('{"format": 1}')
    with pytest.raises(utils.UsageError, match=r"dataset\.json is damaged: it has no resolution"):
        utils.read_json_object(str(path), "fix it", required=("resolution",))
    root = str(tmp_path / "data")
    folders = {"reference": ("the data root", root)}
    for name in ("mine_reference", "sub/inner", "a/../b"):
        path.write_text(json.dumps({"reference": name}))
        assert utils.read_json_object(str(path), "fix it", folders=folders)
    for name in ("../../../etc", "/etc", "..", ".", "a/../../b", ""):
        path.write_text(json.dumps({"reference": [name]}))
        outside = re.escape(f"reference {name!r} points outside the data root {root}")
        with pytest.raises(utils.UsageError, match=outside):
            utils.read_json_object(str(path), "fix it", folders=folders)


# --- Writing files: every failure one line, and the previous file kept

WRITERS = {
    "text (json, csv, logs)": (False, lambda f: f.write('{"FID": 1.0}\n' * 200)),
    "numpy npz": (True, lambda f: np.savez(f, x=np.zeros((64, 64)))),
    "torch.save": (True, lambda f: utils.torch_save({"w": torch.zeros(64, 64)}, f)),
    "a matplotlib figure": (True, lambda f: plt.figure().savefig(f, format="png")),
}


@pytest.mark.parametrize("kind", list(WRITERS))
@pytest.mark.parametrize("code,reason", [(errno.ENOSPC, "no space left on device"),
                                         (errno.EROFS, "read-only file system")])
@pytest.mark.parametrize("after_bytes", [0, 600])
def test_a_failed_atomic_write_is_one_line_and_keeps_the_previous_file(tmp_path, monkeypatch, kind,
                                                                       code, reason, after_bytes):
    path = tmp_path / "out" / "result.bin"
    path.parent.mkdir()
    path.write_bytes(b"the previous result")
    binary, write = WRITERS[kind]
    inject_write_failure(monkeypatch, utils, code, after_bytes=after_bytes)
    with pytest.raises(utils.WriteError) as raised:
        utils.write_atomically(str(path), write, binary=binary)
    message = str(raised.value)
    assert "\n" not in message and reason in message and str(path.parent) in message
    assert f"{path} is unchanged" in message and "--samples_root" in message
    assert path.read_bytes() == b"the previous result" and os.listdir(path.parent) == ["result.bin"]


def test_a_failed_log_line_is_one_line_and_keeps_the_earlier_lines(tmp_path, monkeypatch):
    log = tmp_path / "log.jsonl"
    utils.append_jsonl(str(log), {"itr": 1})
    inject_write_failure(monkeypatch, utils, errno.ENOSPC)
    with pytest.raises(utils.WriteError,
                       match=r"no space left on device in .*log.jsonl to append to the log: .*"
                             r"its earlier lines are intact"):
        utils.append_jsonl(str(log), {"itr": 2})
    assert log.read_text() == '{"itr": 1}\n'


def test_a_log_reads_back_without_a_line_cut_short_and_a_damaged_line_is_one_error(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"itr": 1, "FID": 2.5}\n{"itr": 2, "FI')  # the writer lost power mid-line
    assert utils.read_jsonl(str(log)) == [{"itr": 1, "FID": 2.5}]
    log.write_text('{"itr": 1}\nnot json\n{"itr": 3}\n')
    with pytest.raises(utils.UsageError, match=r"log.jsonl, line 2: not a JSON record"):
        utils.read_jsonl(str(log))
