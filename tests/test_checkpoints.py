"""checkpoints.py: a checkpoint set is written and read as a whole: a reader gets the old set or the
new one whatever moment a save is killed at, a killed first save blocks nothing, legacy folders
load, damaged files are one clear error, rotation never hits the set resumed from, and two
processes never share an experiment."""
import errno
import json
import os
import subprocess
import sys

import pytest
import torch

import checkpoints
import utils
from conftest import ROOT

PARTS_PER_SAVE = 3  # G, D, state_dict below
MUTATIONS_PER_SAVE = 2 * PARTS_PER_SAVE + 2  # each part written and renamed, the manifest written and renamed


def a_set(itr: int) -> dict:
    return {"G": {"w": torch.full((3,), float(itr))}, "D": {"w": torch.full((2,), -float(itr))},
            "state_dict": {"itr": itr}}


def loaded_itr(folder: str, suffix: str = "") -> int:
    """The set's iteration, after checking that every part is of that iteration."""
    objects = checkpoints.load_set(folder, suffix, ["G", "D", "state_dict"])
    itr = objects["state_dict"]["itr"]
    assert torch.equal(objects["G"]["w"], torch.full((3,), float(itr)))
    assert torch.equal(objects["D"]["w"], torch.full((2,), -float(itr)))
    return itr


def leftovers(folder: str) -> list[str]:
    return [n for n in os.listdir(folder) if n.startswith((checkpoints.STAGING_PREFIX, checkpoints.TEMP_PREFIX))]


SAVE_TWO_SETS = """
import sys, torch
sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
import checkpoints
from test_checkpoints import a_set
checkpoints.save_set({folder!r}, a_set(10), 10)
checkpoints.save_set({folder!r}, a_set(20), 20)
"""


def save_two_sets_killed_at(folder: str, kill_at: int) -> int:
    code = SAVE_TWO_SETS.format(root=ROOT, tests=os.path.join(ROOT, "tests"), folder=folder)
    result = subprocess.run([sys.executable, "-c", code], env={**os.environ, "CGT_KILL_AT_WRITE": str(kill_at)},
                            capture_output=True, text=True, timeout=120)
    return result.returncode


def test_a_set_round_trips_with_its_manifest(tmp_path):
    checkpoints.save_set(str(tmp_path), a_set(7), 7, "copy1")
    assert loaded_itr(str(tmp_path), "copy1") == 7
    manifest = json.loads((tmp_path / "checkpoint_copy1.json").read_text())
    assert manifest["itr"] == 7 and set(manifest["parts"]) == {"G", "D", "state_dict"}
    assert sorted(os.listdir(tmp_path)) == ["D_copy1.pth", "G_copy1.pth", "checkpoint_copy1.json", "state_dict_copy1.pth"]


def test_a_save_killed_at_any_point_leaves_the_old_set_or_the_new_one(tmp_path):
    # Kill points 1-8 fall in the first save, 9-16 in the second; 17 is past both.
    for kill_at in range(1, 2 * MUTATIONS_PER_SAVE + 2):
        folder = str(tmp_path / f"kill{kill_at}")
        code = save_two_sets_killed_at(folder, kill_at)
        assert code == (-9 if kill_at <= 2 * MUTATIONS_PER_SAVE else 0), kill_at
        checkpoints.recover(folder)
        assert not leftovers(folder), kill_at
        if kill_at <= MUTATIONS_PER_SAVE:  # the first save was interrupted
            expected = {10} if kill_at > PARTS_PER_SAVE + 1 else {None}  # staged completely: rolled forward
            assert (loaded_itr(folder) if checkpoints.has_checkpoint(folder) else None) in expected, kill_at
        else:
            expected = {20} if kill_at > MUTATIONS_PER_SAVE + PARTS_PER_SAVE + 1 else {10}
            assert loaded_itr(folder) in expected, kill_at


def test_a_killed_first_save_blocks_no_fresh_start(tmp_path):
    folder = str(tmp_path)
    assert save_two_sets_killed_at(folder, 2) == -9  # while staging the first set
    assert not checkpoints.has_checkpoint(folder)
    checkpoints.recover(folder)
    assert not leftovers(folder) and not checkpoints.has_checkpoint(folder)


def test_a_reader_is_told_when_a_save_is_unfinished(tmp_path):
    folder = str(tmp_path)
    checkpoints.save_set(folder, a_set(10), 10)
    assert save_two_sets_killed_at(folder, MUTATIONS_PER_SAVE + MUTATIONS_PER_SAVE + 1 - 3) == -9  # mid-publish
    with pytest.raises(utils.UsageError, match="inconsistent"):
        loaded_itr(folder)
    checkpoints.recover(folder)  # what the next training start does
    assert loaded_itr(folder) == 20


def test_a_folder_written_by_biggan_pytorch_loads_unverified(tmp_path, capsys):
    for part, obj in a_set(5).items():
        torch.save(obj, tmp_path / f"{part}_best1.pth")
    assert checkpoints.has_checkpoint(str(tmp_path), "best1")
    assert loaded_itr(str(tmp_path), "best1") == 5
    assert "no manifest" in capsys.readouterr().out


@pytest.mark.parametrize("damage,message", [
    (lambda folder: (folder / "G.pth").write_bytes(b"garbage"), "is not a readable checkpoint G"),
    (lambda folder: torch.save(torch.zeros(3), folder / "G.pth"), "holds a Tensor, not the G state dict"),
])
def test_a_damaged_legacy_file_is_one_clear_error(tmp_path, damage, message):
    for part, obj in a_set(5).items():
        torch.save(obj, tmp_path / f"{part}.pth")
    damage(tmp_path)
    with pytest.raises(utils.UsageError, match=message):
        checkpoints.load_set(str(tmp_path), "", ["G", "state_dict"])


def test_a_file_changed_behind_the_manifest_is_caught(tmp_path):
    checkpoints.save_set(str(tmp_path), a_set(10), 10)
    torch.save({"w": torch.zeros(30)}, tmp_path / "G.pth")
    with pytest.raises(utils.UsageError, match="inconsistent: G.pth is not the file saved at iteration 10"):
        loaded_itr(str(tmp_path))


def test_rotation_fills_free_slots_then_the_oldest_but_never_the_resumed_set(tmp_path):
    folder = str(tmp_path)
    assert checkpoints.next_slot(folder, "copy", 2) == "copy0"
    checkpoints.save_set(folder, a_set(10), 10, "copy0")
    assert checkpoints.next_slot(folder, "copy", 2) == "copy1"
    checkpoints.save_set(folder, a_set(20), 20, "copy1")
    assert checkpoints.next_slot(folder, "copy", 2) == "copy0"  # the oldest
    assert checkpoints.next_slot(folder, "copy", 2, protected="copy0") == "copy1"
    assert checkpoints.next_slot(folder, "copy", 1, protected="copy0") == "copy0"  # the only slot


def test_non_finite_weights_never_replace_a_good_set(tmp_path):
    checkpoints.save_set(str(tmp_path), a_set(10), 10)
    diverged = a_set(20)
    diverged["G"]["w"][1] = float("nan")
    with pytest.raises(checkpoints.NonFiniteCheckpoint, match="G hold non-finite"):
        checkpoints.save_set(str(tmp_path), diverged, 20)
    assert loaded_itr(str(tmp_path)) == 10 and not leftovers(str(tmp_path))


@pytest.mark.parametrize("code,message", [(errno.ENOSPC, "no space left"), (errno.EACCES, "permission denied")])
def test_a_full_disk_or_a_read_only_folder_is_one_clear_error(tmp_path, monkeypatch, code, message):
    checkpoints.save_set(str(tmp_path), a_set(10), 10)
    real_save = torch.save

    def failing_save(obj, path, *args, **kwargs):
        if str(path).endswith("D.pth"):
            raise OSError(code, os.strerror(code))
        return real_save(obj, path, *args, **kwargs)
    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(utils.UsageError, match=message):
        checkpoints.save_set(str(tmp_path), a_set(20), 20)
    assert loaded_itr(str(tmp_path)) == 10 and not leftovers(str(tmp_path))


HOLD_THE_LOCK = """
import sys, time
sys.path.insert(0, {root!r})
import checkpoints
with checkpoints.ExperimentLock({folder!r}):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_an_experiment_is_locked_while_a_run_holds_it_and_a_killed_holder_leaves_no_stale_lock(tmp_path):
    folder = str(tmp_path / "exp")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK.format(root=ROOT, folder=folder)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(utils.UsageError, match=rf"in use by process {holder.pid} .*another --experiment_name"):
            with checkpoints.ExperimentLock(folder):
                pass
    finally:
        holder.kill()
        holder.wait()
    with checkpoints.ExperimentLock(folder):  # the OS released the killed holder's lock
        pass
