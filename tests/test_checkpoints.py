"""checkpoints.py, as a specification: a checkpoint set is written and read as a whole. Whatever moment
a save is killed at, a reader gets the old set or the new one (or a clear error while a live run
publishes), never a mix, and the next start leaves no temporaries; a killed first save blocks no fresh
start; folders of BigGAN-PyTorch load; damaged files are one clear line; rotation never overwrites the
set resumed from; diverged weights, a full disk or a read-only folder never cost the good set; two
processes never share an experiment, and a killed one leaves no stale lock.

The oracles are independent of the module: sets whose every tensor encodes its iteration, files read
with plain torch.load, SHA-1s computed here, locks taken with plain fcntl."""
import errno
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

import checkpoints
import utils
from conftest import ROOT

TESTS = os.path.join(ROOT, "tests")
ALL_PARTS = ("G", "G_optim", "D", "D_optim", "state_dict", "G_ema")


def a_set(itr: int) -> dict:
    """A small set whose every part says which iteration it is of."""
    def weights(sign: int) -> dict:
        return {"w": torch.full((3, 2), sign * float(itr)), "b": torch.full((2,), sign * itr + 0.5)}

    def optim() -> dict:
        return {"state": {0: {"exp_avg": torch.full((3,), float(itr))}}, "param_groups": [{"lr": 1e-4 * itr}]}
    state = {"itr": itr, "best_FID": 100.0 / itr, "rng_state": torch.full((4,), itr, dtype=torch.uint8)}
    return {"G": weights(1), "G_optim": optim(), "D": weights(-1), "D_optim": optim(), "G_ema": weights(2),
            "state_dict": state}


def same(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b)
    return a == b


def is_set_of(objects: dict, itr: int, parts=ALL_PARTS) -> bool:
    expected = a_set(itr)
    return set(objects) == set(parts) and all(same(objects[p], expected[p]) for p in parts)


def files_on_disk(folder, suffix: str = "") -> dict:
    """The set's files read with plain torch.load, independently of checkpoints.load_set."""
    tail = f"_{suffix}" if suffix else ""
    paths = {p: os.path.join(folder, f"{p}{tail}.pth") for p in ALL_PARTS}
    return {p: torch.load(path, weights_only=True) for p, path in paths.items() if os.path.isfile(path)}


def leftovers(folder) -> list[str]:
    """Hidden entries a save may create, besides the lock file."""
    return sorted(n for n in os.listdir(folder) if n.startswith(".") and n != ".lock")


def sha1(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()


class HeldByAnotherRun:
    """The folder's lock held as a live run elsewhere would hold it (plain flock, another open file)."""

    def __init__(self, folder):
        self.path = os.path.join(folder, ".lock")

    def __enter__(self):
        self.file = open(self.path, "a+")
        fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


def run_python(code: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    prelude = f"import sys; sys.path[:0] = [{ROOT!r}, {TESTS!r}]\n"
    return subprocess.run([sys.executable, "-c", prelude + code], env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=120, **kwargs)


# --- Saving and loading

def test_a_set_round_trips_under_flat_biggan_names_with_a_manifest(tmp_path):
    checkpoints.save_set(str(tmp_path), a_set(7), 7, "copy1")
    assert is_set_of(checkpoints.load_set(str(tmp_path), "copy1", ALL_PARTS), 7)
    assert is_set_of(files_on_disk(tmp_path, "copy1"), 7)
    assert leftovers(tmp_path) == []
    assert sorted(n for n in os.listdir(tmp_path) if n != ".lock") == sorted(
        [f"{p}_copy1.pth" for p in ALL_PARTS] + ["checkpoint_copy1.json"])
    manifest = json.loads((tmp_path / "checkpoint_copy1.json").read_text())
    assert manifest["itr"] == 7 and manifest["suffix"] == "copy1" and set(manifest["parts"]) == set(ALL_PARTS)
    for part, saved in manifest["parts"].items():
        path = tmp_path / f"{part}_copy1.pth"
        assert saved["bytes"] == path.stat().st_size and saved["sha1"] == sha1(path)


def test_loading_some_parts_returns_only_those_and_optional_ones_may_be_absent(tmp_path):
    objects = {p: o for p, o in a_set(3).items() if p != "G_ema"}
    checkpoints.save_set(str(tmp_path), objects, 3)
    loaded = checkpoints.load_set(str(tmp_path), "", ["G", "state_dict", "G_ema"], optional=("G_ema",))
    assert is_set_of(loaded, 3, parts=("G", "state_dict"))
    with pytest.raises(utils.UsageError, match=r"iteration 3\) has no G_ema; .*--load_weights"):
        checkpoints.load_set(str(tmp_path), "", ["G", "G_ema"])


def test_a_set_whose_state_dict_is_of_another_iteration_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="iteration 11 got a state_dict at iteration 10"):
        checkpoints.save_set(str(tmp_path), a_set(10), 11)
    assert os.listdir(tmp_path) == []


def test_a_set_with_a_file_of_the_wrong_size_is_no_checkpoint(tmp_path):
    checkpoints.save_set(str(tmp_path), a_set(10), 10)
    (tmp_path / "D_optim.pth").write_bytes(b"short")
    assert not checkpoints.has_checkpoint(str(tmp_path))


def test_a_new_set_replaces_the_old_one_whole_even_with_fewer_parts(tmp_path):
    checkpoints.save_set(str(tmp_path), a_set(10), 10)
    checkpoints.save_set(str(tmp_path), {p: o for p, o in a_set(20).items() if p != "G_ema"}, 20)
    assert is_set_of(files_on_disk(tmp_path), 20, parts=[p for p in ALL_PARTS if p != "G_ema"])


# --- Kills at every file-system change of a save

SWEEP = """
import json, os
import checkpoints
from test_checkpoints import a_set
base, outcomes, kill_at = {base!r}, [], 1
while True:  # a child per kill point (forked: one torch import for all), until one is not killed
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.environ["CGT_KILL_AT_WRITE"] = str(kill_at)
            folder = os.path.join(base, str(kill_at))
            checkpoints.save_set(folder, a_set(10), 10)
            checkpoints.save_set(folder, a_set(20), 20)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9
    assert killed or os.WEXITSTATUS(status) == 0, (kill_at, status)
    outcomes.append(killed)
    if not killed:
        break
    kill_at += 1
print(json.dumps(outcomes))
"""


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    base = tmp_path_factory.mktemp("sweep")
    result = run_python(SWEEP.format(base=str(base)))
    assert result.returncode == 0, result.stderr[-3000:]
    return base, json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def killed_saves(sweep, tmp_path):
    """Folders (each test its own copy) where set A (itr 10) then set B (itr 20) was saved by a process
    killed right before its K-th file-system change, for every K until a process is not killed."""
    base, killed = sweep
    shutil.copytree(base, tmp_path / "kills")
    return [(tmp_path / "kills" / str(k), was_killed) for k, was_killed in enumerate(killed, start=1)]


def loaded_itr_or_none(folder) -> int | None:
    if not checkpoints.has_checkpoint(str(folder)):
        return None
    loaded = checkpoints.load_set(str(folder), "", ALL_PARTS)
    itr = loaded["state_dict"]["itr"]
    assert is_set_of(loaded, itr), folder
    return itr


def test_a_save_killed_at_any_change_leaves_exactly_the_old_set_or_the_new_one(killed_saves):
    assert len(killed_saves) >= 2 * (2 * len(ALL_PARTS) + 2) and not killed_saves[-1][1]
    outcomes = []
    for folder, _ in killed_saves:
        checkpoints.recover(str(folder))  # what the next start does
        assert leftovers(folder) == [], folder
        itr = loaded_itr_or_none(folder)
        outcomes.append(itr)
        if itr is not None:  # the files themselves, read plainly, are all of that set
            assert is_set_of(files_on_disk(folder), itr), folder
    # Nothing, then A, then B, as the kill moves later; each phase is reached.
    assert outcomes == sorted(outcomes, key=lambda itr: -1 if itr is None else itr), outcomes
    assert outcomes[0] is None and 10 in outcomes and outcomes[-1] == 20, outcomes


def test_a_reader_beside_a_live_run_never_gets_a_mix_nor_touches_the_folder(killed_saves):
    mid_publish_errors = 0
    for folder, _ in killed_saves:
        with HeldByAnotherRun(folder):  # the killed save looks like one still in progress
            before = sorted(os.listdir(folder))
            try:
                loaded = checkpoints.load_set(str(folder), "", ALL_PARTS)
            except utils.UsageError as err:
                assert "\n" not in str(err)
                mid_publish_errors += "in progress" in str(err)
            else:
                assert is_set_of(loaded, 10) or is_set_of(loaded, 20), folder
            assert sorted(os.listdir(folder)) == before, folder
    assert mid_publish_errors > 0  # some kills fell between the renames of a publish


def test_a_killed_first_save_blocks_no_fresh_start(tmp_path):
    folder = str(tmp_path / "exp")
    code = ("import checkpoints\nfrom test_checkpoints import a_set\n"
            f"checkpoints.save_set({folder!r}, a_set(10), 10)")
    result = run_python(code, env={"CGT_KILL_AT_WRITE": "2"})  # right before writing the second staged part
    assert result.returncode == -9, result.stderr[-3000:]
    assert leftovers(folder) != []  # the kill did leave a half save
    assert not checkpoints.has_checkpoint(folder)
    assert leftovers(folder) == []
    no_set = "no checkpoint .*state_dict.pth.* do not exist; check --weights_root, --experiment_name"
    with pytest.raises(utils.UsageError, match=no_set):
        checkpoints.load_set(folder, "", ["state_dict", "G"])
    checkpoints.save_set(folder, a_set(1), 1)  # a fresh start
    assert is_set_of(checkpoints.load_set(folder, "", ALL_PARTS), 1)


# --- Recovery and temporaries

def test_clean_temporaries_removes_leftovers_of_killed_writers_but_not_a_staged_set(tmp_path, monkeypatch):
    folder = str(tmp_path)
    checkpoints.save_set(folder, a_set(10), 10)
    (tmp_path / ".tmp_abcG.pth").write_bytes(b"half")  # utils.write_atomically's
    (tmp_path / ".tmp_dir").mkdir()
    half = tmp_path / ".saving_latest_999_0"  # a staging folder without its manifest
    half.mkdir()
    (half / "G.pth").write_bytes(b"half")
    staged = stage_without_publishing(monkeypatch, folder, 20)
    checkpoints.clean_temporaries(folder)
    assert leftovers(tmp_path) == [os.path.basename(staged)]
    checkpoints.recover(folder)
    assert leftovers(tmp_path) == [] and is_set_of(files_on_disk(tmp_path), 20)


def stage_without_publishing(monkeypatch, folder: str, itr: int) -> str:
    """A complete staging folder, as a kill right after staging leaves it."""
    with monkeypatch.context() as patch:
        patch.setattr(checkpoints, "_publish", lambda folder, staging: None)
        checkpoints.save_set(folder, a_set(itr), itr)
    staged = [n for n in os.listdir(folder) if n.startswith(".saving_")]
    assert len(staged) == 1
    return os.path.join(folder, staged[0])


def test_a_staging_folder_with_a_torn_manifest_is_dropped_and_the_old_set_stays(tmp_path, monkeypatch):
    folder = str(tmp_path)
    checkpoints.save_set(folder, a_set(10), 10)
    staged = stage_without_publishing(monkeypatch, folder, 20)
    manifest = os.path.join(staged, "manifest.json")
    with open(manifest, "r+") as f:
        f.truncate(os.path.getsize(manifest) // 2)
    assert is_set_of(checkpoints.load_set(folder, "", ALL_PARTS), 10)
    assert leftovers(tmp_path) == []


def test_a_save_after_an_unfinished_one_finishes_it_first_so_no_mix_remains(tmp_path, monkeypatch):
    folder = str(tmp_path)
    checkpoints.save_set(folder, a_set(10), 10)
    fail_renames(monkeypatch, from_call=2, code=errno.EIO)  # G of set 20 is in place, the rest staged
    with pytest.raises(utils.UsageError, match="complete at the next start"):
        checkpoints.save_set(folder, a_set(20), 20)
    monkeypatch.undo()
    checkpoints.save_set(folder, a_set(30), 30)
    assert leftovers(tmp_path) == [] and is_set_of(files_on_disk(tmp_path), 30)


def fail_renames(monkeypatch, from_call: int, code: int) -> None:
    real_replace, calls = os.replace, []

    def replace(src, dst, *args, **kwargs):
        calls.append(dst)
        if len(calls) >= from_call:
            raise OSError(code, os.strerror(code))
        return real_replace(src, dst, *args, **kwargs)
    monkeypatch.setattr(os, "replace", replace)


# --- Legacy folders and damaged files

def write_legacy(folder, itr: int, suffix: str = "", parts=ALL_PARTS) -> None:
    os.makedirs(folder, exist_ok=True)
    for part in parts:
        torch.save(a_set(itr)[part], os.path.join(folder, f"{part}{'_' + suffix if suffix else ''}.pth"))


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
    with pytest.raises(utils.UsageError, match="state_dict.pth is not a readable checkpoint state_dict"):
        checkpoints.load_set(str(tmp_path), "", ["G"])


@pytest.mark.parametrize("change", [
    lambda path: torch.save({"w": torch.zeros(3, 2), "b": torch.zeros(2)}, path),  # same size, other bytes
    lambda path: path.write_bytes(path.read_bytes()[:-10]),  # truncated
    lambda path: path.unlink(),
])
def test_a_file_changed_behind_the_manifest_is_caught(tmp_path, change):
    checkpoints.save_set(str(tmp_path), a_set(10), 10)
    change(tmp_path / "G.pth")
    with pytest.raises(utils.UsageError, match="inconsistent: G.pth .*iteration 10.*checkpoint.json"):
        checkpoints.load_set(str(tmp_path), "", ["G", "state_dict"])


def test_a_state_dict_of_another_iteration_than_its_manifest_is_caught(tmp_path):
    write_legacy(tmp_path, 10)
    parts = {p: {"bytes": (tmp_path / f"{p}.pth").stat().st_size, "sha1": sha1(tmp_path / f"{p}.pth")}
             for p in ALL_PARTS}
    manifest = {"format": 1, "itr": 11, "suffix": "", "parts": parts}
    (tmp_path / "checkpoint.json").write_text(json.dumps(manifest))
    with pytest.raises(utils.UsageError, match="state_dict.pth is at iteration 10, the set at 11"):
        checkpoints.load_set(str(tmp_path), "", ["G"])


def test_a_damaged_manifest_is_one_clear_line(tmp_path):
    checkpoints.save_set(str(tmp_path), a_set(10), 10)
    (tmp_path / "checkpoint.json").write_text('{"itr": 10, "par')
    with pytest.raises(utils.UsageError, match="checkpoint.json is damaged .*delete it to load the set unverif"):
        checkpoints.load_set(str(tmp_path), "", ["G"])


def test_a_missing_set_names_the_file_and_the_flags(tmp_path):
    with pytest.raises(utils.UsageError, match=r"G_copy3.pth does not exist; check --weights_root, "
                                               r"--experiment_name and --load_weights"):
        checkpoints.load_set(str(tmp_path / "nowhere"), "copy3", ["G"])
    assert not checkpoints.has_checkpoint(str(tmp_path / "nowhere"), "copy3")


# --- Rotation

def test_rotation_fills_free_slots_then_the_oldest_but_never_the_resumed_set(tmp_path):
    folder = str(tmp_path)
    assert checkpoints.next_copy_slot(folder, 3) == "copy0"
    checkpoints.save_set(folder, a_set(30), 30, "copy0")
    assert checkpoints.next_copy_slot(folder, 3) == "copy1"
    checkpoints.save_set(folder, a_set(20), 20, "copy1")
    write_legacy(folder, 10, "copy2")  # a legacy set, aged by its state_dict
    assert checkpoints.next_copy_slot(folder, 3) == "copy2"
    assert checkpoints.next_copy_slot(folder, 3, protected_suffix="copy2") == "copy1"
    assert checkpoints.next_copy_slot(folder, 1, protected_suffix="copy0") == "copy0"  # the only slot


def test_best_sets_rotate_alike(tmp_path):
    folder = str(tmp_path)
    checkpoints.save_set(folder, a_set(10), 10, "best0")
    checkpoints.save_set(folder, a_set(20), 20, "best1")
    assert checkpoints.next_best_slot(folder, 2) == "best0"
    assert checkpoints.next_best_slot(folder, 2, protected_suffix="best0") == "best1"


def test_a_damaged_slot_is_overwritten_first(tmp_path):
    folder = str(tmp_path)
    checkpoints.save_set(folder, a_set(10), 10, "copy0")
    checkpoints.save_set(folder, a_set(20), 20, "copy1")
    (tmp_path / "checkpoint_copy1.json").write_text("{")
    assert checkpoints.next_copy_slot(folder, 2) == "copy1"


# --- Diverged weights, full disks, read-only folders

@pytest.mark.parametrize("part,value", [("G", float("nan")), ("D", float("inf")), ("G_ema", float("-inf"))])
def test_non_finite_weights_never_replace_a_good_set(tmp_path, part, value):
    checkpoints.save_set(str(tmp_path), a_set(10), 10)
    diverged = a_set(20)
    diverged[part]["w"][1, 0] = value
    assert not checkpoints.all_finite(diverged[part]) and checkpoints.all_finite(a_set(20)[part])
    with pytest.raises(checkpoints.NonFiniteCheckpoint, match=f"{part} hold non-finite"):
        checkpoints.save_set(str(tmp_path), diverged, 20)
    assert is_set_of(files_on_disk(tmp_path), 10) and leftovers(tmp_path) == []


@pytest.mark.parametrize("code,message", [
    (errno.ENOSPC, r"no space left on device in .*: free space there"),
    (errno.EACCES, r"cannot write to .*: permission denied; make it writable"),
])
def test_a_full_disk_or_a_read_only_folder_while_staging_is_one_line_and_costs_nothing(tmp_path, monkeypatch,
                                                                                        code, message):
    # We run as root, where chmod does not stop writes: the failure is simulated.
    checkpoints.save_set(str(tmp_path), a_set(10), 10)
    real_save = torch.save

    def failing_save(obj, path, *args, **kwargs):
        if str(path).endswith("D.pth"):
            raise OSError(code, os.strerror(code))
        return real_save(obj, path, *args, **kwargs)
    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(utils.UsageError, match=message + ".*the previous checkpoint is intact") as raised:
        checkpoints.save_set(str(tmp_path), a_set(20), 20)
    assert "\n" not in str(raised.value) and "--weights_root" in str(raised.value)
    assert is_set_of(files_on_disk(tmp_path), 10) and leftovers(tmp_path) == []


def test_a_refused_first_rename_leaves_the_old_set_and_no_staging(tmp_path, monkeypatch):
    checkpoints.save_set(str(tmp_path), a_set(10), 10)
    fail_renames(monkeypatch, from_call=1, code=errno.EACCES)
    with pytest.raises(utils.UsageError, match="permission denied.*the previous checkpoint is intact"):
        checkpoints.save_set(str(tmp_path), a_set(20), 20)
    monkeypatch.undo()
    assert is_set_of(files_on_disk(tmp_path), 10) and leftovers(tmp_path) == []


def test_a_publish_failing_halfway_is_completed_at_the_next_start(tmp_path, monkeypatch):
    checkpoints.save_set(str(tmp_path), a_set(10), 10)
    fail_renames(monkeypatch, from_call=3, code=errno.ENOSPC)
    with pytest.raises(utils.UsageError, match="no space left.*complete at the next start"):
        checkpoints.save_set(str(tmp_path), a_set(20), 20)
    monkeypatch.undo()
    with HeldByAnotherRun(str(tmp_path)), pytest.raises(utils.UsageError, match="inconsistent"):
        checkpoints.load_set(str(tmp_path), "", ALL_PARTS)  # not recovered while in use: no mix either
    assert is_set_of(checkpoints.load_set(str(tmp_path), "", ALL_PARTS), 20)
    assert leftovers(tmp_path) == []


# --- The lock

HOLD_THE_LOCK = """
import time
import checkpoints
with checkpoints.ExperimentLock({folder!r}):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_an_experiment_in_use_is_refused_and_a_killed_holder_leaves_no_stale_lock(tmp_path):
    folder = str(tmp_path / "exp")
    checkpoints.save_set(folder, a_set(10), 10)
    prelude = f"import sys; sys.path[:0] = [{ROOT!r}]\n"
    holder = subprocess.Popen([sys.executable, "-c", prelude + HOLD_THE_LOCK.format(folder=folder)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        in_use = rf"experiment exp is in use by process {holder.pid} on .*; wait for it .*--experiment_name"
        with pytest.raises(utils.UsageError, match=in_use):
            with checkpoints.ExperimentLock(folder):
                pass
        with pytest.raises(utils.UsageError, match=in_use):  # nor may another process save there
            checkpoints.save_set(folder, a_set(20), 20)
        assert is_set_of(files_on_disk(folder), 10)
    finally:
        holder.kill()
        holder.wait()
    with checkpoints.ExperimentLock(folder):  # the OS released the killed holder's lock
        checkpoints.save_set(folder, a_set(20), 20)  # the holder saves without locking again
    assert is_set_of(files_on_disk(folder), 20)


def test_a_second_lock_in_the_same_process_is_refused_too(tmp_path):
    with checkpoints.ExperimentLock(str(tmp_path)):
        with pytest.raises(utils.UsageError, match=f"in use by process {os.getpid()}"):
            with checkpoints.ExperimentLock(str(tmp_path), wait_s=0):
                pass
    with checkpoints.ExperimentLock(str(tmp_path)):
        pass
