"""checkpoint_legacy.py, as a specification (through checkpoints.py, which reads and replaces
what it reads): sets of the earlier flat format load verified and their first save makes links; a
save of that format killed while publishing is rolled forward; folders written by BigGAN-PyTorch or
the official code load unverified with a note; a missing, half or damaged legacy set is one clear
line. The sets and oracles are test_checkpoints.py's."""
import json
import os

import pytest
import torch

import checkpoints
import utils
from test_checkpoints import (ALL_PARTS, a_set, files_on_disk, is_set_of, leftovers, sha1,
                              write_flat, write_legacy)


def test_a_set_of_the_earlier_flat_format_loads_verified_and_its_first_save_makes_links(tmp_path):
    write_flat(tmp_path, 10, "copy0")
    assert checkpoints.existing_sets(str(tmp_path)) == ["copy0"]
    assert is_set_of(checkpoints.load_set(str(tmp_path), "copy0", ALL_PARTS), 10)
    (tmp_path / "G_copy0.pth").write_bytes((tmp_path / "D_copy0.pth").read_bytes())
    damaged = "damaged: G_copy0.pth is not the file .*checkpoint_copy0.json"
    with pytest.raises(utils.UsageError, match=damaged):
        checkpoints.load_set(str(tmp_path), "copy0", ["G"])
    checkpoints.save_set(str(tmp_path), a_set(20), 20, "copy0")
    assert all(os.path.islink(tmp_path / f"{p}_copy0.pth") for p in ALL_PARTS)
    assert not (tmp_path / "checkpoint_copy0.json").exists()
    assert is_set_of(files_on_disk(tmp_path, "copy0"), 20) and leftovers(tmp_path) == []


def test_a_flat_format_save_killed_while_publishing_is_rolled_forward(tmp_path):
    write_flat(tmp_path, 10)
    # set 20 staged; G and G_optim already renamed into place
    staging = tmp_path / ".saving_latest_123_0"
    write_legacy(staging, 20)
    for part in ALL_PARTS:
        os.rename(staging / f"{part}.pth", staging / f"{part}.pth.tmp")
        os.rename(staging / f"{part}.pth.tmp", staging / f"{part}.pth")
    parts = {p: {"bytes": os.path.getsize(staging / f"{p}.pth"), "sha1": sha1(staging / f"{p}.pth")}
             for p in ALL_PARTS}
    manifest = {"format": 1, "itr": 20, "suffix": "", "parts": parts}
    (staging / "manifest.json").write_text(json.dumps(manifest))
    for part in ("G", "G_optim"):
        os.replace(staging / f"{part}.pth", tmp_path / f"{part}.pth")
    checkpoints.recover(str(tmp_path))
    assert is_set_of(checkpoints.load_set(str(tmp_path), "", ALL_PARTS), 20)
    assert is_set_of(files_on_disk(tmp_path), 20) and leftovers(tmp_path) == []


def test_a_folder_written_by_biggan_pytorch_loads_unverified_with_a_note(tmp_path, capsys):
    write_legacy(tmp_path, 5, "best1")
    assert checkpoints.has_checkpoint(str(tmp_path), "best1")
    assert is_set_of(checkpoints.load_set(str(tmp_path), "best1", ALL_PARTS), 5)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "no manifest" in out and "unverified" in out


def test_a_bare_legacy_g_loads_and_an_optional_state_dict_may_be_absent(tmp_path):
    write_legacy(tmp_path, 5, parts=("G",))  # e.g. released weights
    assert checkpoints.load_set(str(tmp_path), "", ["state_dict"], optional=("state_dict",)) == {}
    assert is_set_of(checkpoints.load_set(str(tmp_path), "", ["G"]), 5, parts=("G",))


def test_a_legacy_set_missing_a_part_names_it(tmp_path):
    write_legacy(tmp_path, 5, parts=("G", "D", "state_dict"))
    assert checkpoints.has_checkpoint(str(tmp_path))
    with pytest.raises(utils.UsageError, match=r"G_optim.pth does not exist; .*--load_weights"):
        checkpoints.load_set(str(tmp_path), "", ["G", "G_optim", "state_dict"])


def test_a_half_legacy_set_is_no_checkpoint(tmp_path):
    write_legacy(tmp_path, 5, parts=("G",))  # a first save of the old code, killed after G.pth
    assert not checkpoints.has_checkpoint(str(tmp_path))


@pytest.mark.parametrize("damage,message", [
    (lambda path: path.write_bytes(b"garbage"), "is not a readable checkpoint G"),
    (lambda path: path.write_bytes(path.read_bytes()[:100]), "is not a readable checkpoint G"),
    (lambda path: torch.save(torch.zeros(3), path), "holds a Tensor, not the G state dict"),
])
def test_a_damaged_or_foreign_legacy_file_is_one_clear_line(tmp_path, damage, message):
    write_legacy(tmp_path, 5)
    damage(tmp_path / "G.pth")
    with pytest.raises(utils.UsageError, match=message) as raised:
        checkpoints.load_set(str(tmp_path), "", ["G", "state_dict"])
    assert "\n" not in str(raised.value)


def test_an_unreadable_legacy_state_dict_fails_even_when_only_g_is_asked_for(tmp_path):
    write_legacy(tmp_path, 5)
    (tmp_path / "state_dict.pth").write_bytes(b"garbage")
    unreadable = "state_dict.pth is not a readable checkpoint state_dict"
    with pytest.raises(utils.UsageError, match=unreadable):
        checkpoints.load_set(str(tmp_path), "", ["G"])
