"""checkpoints.py (with checkpoint_format.py and checkpoint_legacy.py), as a specification: a
checkpoint set is written and read as a whole. Whatever moment a save is killed at, a reader gets
the old set or the new one, never a mix: this module's readers, and code that opens G.pth, D.pth,
... directly as BigGAN-PyTorch's scripts do; the next start leaves no temporaries; a killed first
save blocks no fresh start; every file is fsynced before a step relies on it (power loss); folders
of BigGAN-PyTorch and of the earlier flat format load; damaged files are one clear line; rotation
never overwrites the set resumed from; `best` is the best of the best sets; diverged weights, a
full disk or a read-only folder never cost the good set. (The lock: test_checkpoint_lock.py;
sets of earlier formats: test_checkpoint_legacy.py.)

The oracles are independent of the module: sets whose every tensor encodes its iteration, files
read with plain torch.load through BigGAN-PyTorch's names, SHA-1s computed here, locks taken with
plain fcntl; the kills are real SIGKILLs (tests/helpers/faults.py)."""
import errno
import fcntl
import hashlib
import json
import os
import shutil
import subprocess

import pytest
import torch

import checkpoints
import utils
from conftest import ROOT, inject_write_failure

TESTS = os.path.join(ROOT, "tests")
ALL_PARTS = ("G", "G_optim", "D", "D_optim", "state_dict", "G_ema")


def a_set(itr: int) -> dict:
    """A small set whose every part says which iteration it is of."""
    def weights(sign: int) -> dict:
        return {"w": torch.full((3, 2), sign * float(itr)), "b": torch.full((2,), sign * itr + 0.5)}

    def optim() -> dict:
        return {"state": {0: {"exp_avg": torch.full((3,), float(itr))}},
                "param_groups": [{"lr": 1e-4 * itr}]}
    state = {"itr": itr, "best_FID": 100.0 / itr,
             "rng_state": torch.full((4,), itr, dtype=torch.uint8)}
    return {"G": weights(1), "G_optim": optim(), "D": weights(-1), "D_optim": optim(),
            "G_ema": weights(2), "state_dict": state}


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


def iteration_of(part: str, obj: dict) -> int:
    """The iteration a part of a_set(itr) encodes."""
    if part == "state_dict":
        return obj["itr"]
    if part.endswith("optim"):
        return int(obj["state"][0]["exp_avg"][0])
    return int(abs(obj["w"][0, 0]) / (2 if part == "G_ema" else 1))


def files_on_disk(folder, suffix: str = "") -> dict:
    """The set as a direct reader sees it: BigGAN-PyTorch's names opened with plain torch.load."""
    tail = f"_{suffix}" if suffix else ""
    paths = {p: os.path.join(folder, f"{p}{tail}.pth") for p in ALL_PARTS}
    return {p: torch.load(path, weights_only=True) for p, path in paths.items()
            if os.path.isfile(path)}


def leftovers(folder) -> list[str]:
    """What a save may leave behind: hidden entries besides the lock, staging or unused set
    folders."""
    hidden = [n for n in os.listdir(folder) if n.startswith(".") and n != ".lock"]
    sets = os.path.join(folder, "sets")
    if os.path.isdir(sets):
        links = [os.path.join(folder, n) for n in os.listdir(folder)]
        used = {os.path.realpath(path) for path in links
                if os.path.islink(path) and os.path.isdir(path)}
        hidden += [f"sets/{n}" for n in os.listdir(sets)
                   if os.path.realpath(os.path.join(sets, n)) not in used]
    return sorted(hidden)


def sha1(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()


class HeldByAnotherRun:
    """The folder's lock held as a live run elsewhere would hold it (plain flock, another open
    file)."""

    def __init__(self, folder):
        self.path = os.path.join(folder, ".lock")

    def __enter__(self):
        self.file = open(self.path, "a+")
        fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


def run_python(command_lines, code: str) -> subprocess.CompletedProcess:
    """`python -c code`, forked from the server that imported torch once (conftest.CommandLines)."""
    prelude = f"import sys; sys.path[:0] = [{ROOT!r}, {TESTS!r}]\n"
    return command_lines.run(["-c", prelude + code])


def set_folder_of(folder, slot: str = "latest") -> str:
    return os.path.realpath(os.path.join(folder, slot))


# --- Saving and loading

def test_a_set_round_trips_under_flat_biggan_names_resolving_into_one_set_folder(tmp_path):
    checkpoints.save_set(str(tmp_path), a_set(7), 7, "copy1")
    assert is_set_of(checkpoints.load_set(str(tmp_path), "copy1", ALL_PARTS), 7)
    assert is_set_of(files_on_disk(tmp_path, "copy1"), 7)
    assert leftovers(tmp_path) == []
    assert sorted(n for n in os.listdir(tmp_path) if n != ".lock") == sorted(
        [f"{p}_copy1.pth" for p in ALL_PARTS] + ["copy1", "sets"])
    set_folder = set_folder_of(tmp_path, "copy1")
    assert os.path.dirname(set_folder) == os.path.realpath(tmp_path / "sets")
    for part in ALL_PARTS:  # every flat name resolves through the slot link into the one set folder
        assert os.readlink(tmp_path / f"{part}_copy1.pth") == os.path.join("copy1", f"{part}.pth")
        assert (os.path.realpath(tmp_path / f"{part}_copy1.pth")
                == os.path.join(set_folder, f"{part}.pth"))
    manifest = json.loads(open(os.path.join(set_folder, "manifest.json")).read())
    assert manifest["itr"] == 7 and manifest["suffix"] == "copy1"
    assert set(manifest["parts"]) == set(ALL_PARTS)
    for part, saved in manifest["parts"].items():
        path = os.path.join(set_folder, f"{part}.pth")
        assert saved["bytes"] == os.path.getsize(path) and saved["sha1"] == sha1(path)


def test_the_latest_set_keeps_biggan_pytorch_names_and_a_folder_moved_elsewhere_still_loads(
        tmp_path):
    checkpoints.save_set(str(tmp_path / "a"), a_set(7), 7)
    # G.pth, D.pth, ... as BigGAN-PyTorch writes them
    assert is_set_of(files_on_disk(tmp_path / "a"), 7)
    shutil.copytree(tmp_path / "a", tmp_path / "b", symlinks=True)  # the links are relative
    shutil.rmtree(tmp_path / "a")
    assert is_set_of(checkpoints.load_set(str(tmp_path / "b"), "", ALL_PARTS), 7)
    assert is_set_of(files_on_disk(tmp_path / "b"), 7)


def test_loading_some_parts_returns_only_those_and_optional_ones_may_be_absent(tmp_path):
    objects = {p: o for p, o in a_set(3).items() if p != "G_ema"}
    checkpoints.save_set(str(tmp_path), objects, 3)
    loaded = checkpoints.load_set(str(tmp_path), "", ["G", "state_dict", "G_ema"],
                                  optional=("G_ema",))
    assert is_set_of(loaded, 3, parts=("G", "state_dict"))
    with pytest.raises(utils.UsageError, match=r"iteration 3\) has no G_ema; .*--load_weights"):
        checkpoints.load_set(str(tmp_path), "", ["G", "G_ema"])


def test_a_set_whose_state_dict_is_of_another_iteration_is_refused_before_anything_is_written(
        tmp_path):
    with pytest.raises(ValueError, match="iteration 11 got a state_dict at iteration 10"):
        checkpoints.save_set(str(tmp_path), a_set(10), 11)
    assert os.listdir(tmp_path) == []


def test_a_set_with_a_file_of_the_wrong_size_is_no_checkpoint(tmp_path):
    checkpoints.save_set(str(tmp_path), a_set(10), 10)
    (tmp_path / "D_optim.pth").write_bytes(b"short")  # through the link: the set's file
    assert not checkpoints.has_checkpoint(str(tmp_path))


def test_a_new_set_replaces_the_old_one_whole_even_with_fewer_parts(tmp_path):
    checkpoints.save_set(str(tmp_path), a_set(10), 10)
    old_set = set_folder_of(tmp_path)
    checkpoints.save_set(str(tmp_path), {p: o for p, o in a_set(20).items() if p != "G_ema"}, 20)
    assert is_set_of(files_on_disk(tmp_path), 20, parts=[p for p in ALL_PARTS if p != "G_ema"])
    assert not os.path.lexists(tmp_path / "G_ema.pth")  # no name points at a part of another set
    assert not os.path.exists(old_set) and leftovers(tmp_path) == []


def test_every_file_is_on_disk_before_the_step_that_relies_on_it(tmp_path, monkeypatch):
    """Power loss: the parts and the manifest, then their folder, are fsynced before the set is
    named; sets/ before the slot link is swapped; the experiment folder right after the swap."""
    events, real_fsync, real_rename, real_replace = [], os.fsync, os.rename, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def rename(src, dst):
        events.append(("rename", os.path.realpath(dst)))
        return real_rename(src, dst)

    def replace(src, dst):
        events.append(("replace", os.path.abspath(dst)))
        return real_replace(src, dst)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "replace", replace)
    checkpoints.save_set(str(tmp_path), a_set(10), 10)
    monkeypatch.undo()
    folder, set_folder = os.path.realpath(tmp_path), set_folder_of(tmp_path)
    named = events.index(("rename", set_folder))
    swapped = events.index(("replace", os.path.join(str(tmp_path), "latest")))
    synced_before_naming = {os.path.basename(path) for kind, path in events[:named]
                            if kind == "fsync"}
    assert {f"{p}.pth" for p in ALL_PARTS} | {"manifest.json"} <= synced_before_naming
    assert any(kind == "fsync" and ".staging-" in os.path.basename(path)
               for kind, path in events[:named])
    assert ("fsync", os.path.join(folder, "sets")) in events[named:swapped]
    assert ("fsync", folder) in events[swapped:swapped + 2]


# --- Kills at every file-system change of a save

SWEEP = """
import json, os
import checkpoints
from helpers import faults
from test_checkpoints import a_set
base, outcomes, kill_at = {base!r}, [], 1
while True:  # a child per kill point (forked: one torch import for all), until one is not killed
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            faults.kill_at_change(kill_at)
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
def sweep(tmp_path_factory, command_lines):
    base = tmp_path_factory.mktemp("sweep")
    result = run_python(command_lines, SWEEP.format(base=str(base)))
    assert result.returncode == 0, result.stderr[-3000:]
    return base, json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def killed_saves(sweep, tmp_path):
    """Folders (each test its own copy) where set A (itr 10) then set B (itr 20) was saved by a
    process killed right before its K-th file-system change, for every K until a process is not
    killed."""
    base, killed = sweep
    shutil.copytree(base, tmp_path / "kills", symlinks=True)
    return [(tmp_path / "kills" / str(k), was_killed)
            for k, was_killed in enumerate(killed, start=1)]


def loaded_itr_or_none(folder) -> int | None:
    if not checkpoints.has_checkpoint(str(folder)):
        return None
    loaded = checkpoints.load_set(str(folder), "", ALL_PARTS)
    itr = loaded["state_dict"]["itr"]
    assert is_set_of(loaded, itr), folder
    return itr


@pytest.mark.slow  # one process forks a child per kill point (SWEEP): ~0.5 s
def test_a_save_killed_at_any_change_leaves_exactly_the_old_set_or_the_new_one(killed_saves):
    # 6 staged parts + the manifest + naming the set + swapping the link, then 6 links on the
    # first save
    assert len(killed_saves) >= 2 * (len(ALL_PARTS) + 3) + len(ALL_PARTS)
    assert not killed_saves[-1][1]
    outcomes = []
    for folder, _ in killed_saves:
        # Before any recovery, a direct reader of BigGAN-PyTorch's names sees one iteration (or
        # nothing)
        direct = files_on_disk(folder) if os.path.isdir(folder) else {}
        iterations = {iteration_of(part, obj) for part, obj in direct.items()}
        assert len(iterations) <= 1, (folder, direct.keys())
        itr = loaded_itr_or_none(folder) if os.path.isdir(folder) else None
        checkpoints.recover(str(folder))  # what the next start does
        assert not os.path.isdir(folder) or leftovers(folder) == [], folder
        assert (loaded_itr_or_none(folder) if os.path.isdir(folder) else None) == itr, folder
        if itr is not None:  # and after recovery, every name is there, all of that set
            assert is_set_of(files_on_disk(folder), itr), folder
        outcomes.append(itr)
    # Nothing, then A, then B, as the kill moves later; each phase is reached.
    assert outcomes == sorted(outcomes, key=lambda itr: -1 if itr is None else itr), outcomes
    assert outcomes[0] is None and 10 in outcomes and outcomes[-1] == 20, outcomes


def test_a_reader_beside_a_live_run_gets_a_whole_set_and_never_touches_the_folder(killed_saves):
    for folder, _ in killed_saves:
        if not os.path.isdir(folder):
            continue
        with HeldByAnotherRun(folder):  # the killed save looks like one still in progress
            before = sorted(os.listdir(folder))
            if checkpoints.has_checkpoint(str(folder)):
                loaded = checkpoints.load_set(str(folder), "", ALL_PARTS)
                assert is_set_of(loaded, 10) or is_set_of(loaded, 20), folder
            else:
                with pytest.raises(utils.UsageError, match="no checkpoint .*do not exist"):
                    checkpoints.load_set(str(folder), "", ALL_PARTS)
            assert sorted(os.listdir(folder)) == before, folder


@pytest.mark.slow  # a process of its own, killed for real (forked from the command-line server)
def test_a_killed_first_save_blocks_no_fresh_start(tmp_path, command_lines):
    folder = str(tmp_path / "exp")
    code = ("import checkpoints\nfrom helpers import faults\nfrom test_checkpoints import a_set\n"
            "faults.kill_at_change(2)\n"  # killed right before writing the second staged part
            f"checkpoints.save_set({folder!r}, a_set(10), 10)")
    result = run_python(command_lines, code)
    assert result.returncode == -9, result.stderr[-3000:]
    assert leftovers(folder) != []  # the kill did leave a half save
    assert not checkpoints.has_checkpoint(folder) and checkpoints.existing_sets(folder) == []
    no_set = ("no checkpoint .*state_dict.pth.* do not exist; check --weights_root, "
              "--experiment_name")
    with pytest.raises(utils.UsageError, match=no_set):
        checkpoints.load_set(folder, "", ["state_dict", "G"])
    checkpoints.save_set(folder, a_set(1), 1)  # a fresh start
    assert is_set_of(checkpoints.load_set(folder, "", ALL_PARTS), 1) and leftovers(folder) == []


# --- Recovery and temporaries

def test_recover_removes_leftovers_of_killed_writers_and_completes_the_links(tmp_path):
    folder = str(tmp_path)
    checkpoints.save_set(folder, a_set(10), 10)
    (tmp_path / ".tmp_abcG.pth").write_bytes(b"half")  # utils.write_atomically's
    os.symlink("nowhere", tmp_path / ".link-123-abcd")  # a half-made link
    half = tmp_path / "sets" / ".staging-999-0"  # a staging folder of a killed save
    half.mkdir()
    (half / "G.pth").write_bytes(b"half")
    # a previous set the killed save did not remove
    unused = tmp_path / "sets" / "latest-000005-ffff"
    shutil.copytree(set_folder_of(tmp_path), unused)
    (tmp_path / "G_ema.pth").unlink()  # a link not yet made
    checkpoints.recover(folder)
    assert leftovers(tmp_path) == [] and is_set_of(files_on_disk(tmp_path), 10)


# --- Sets of earlier formats (their loading: test_checkpoint_legacy.py), damaged sets

def write_legacy(folder, itr: int, suffix: str = "", parts=ALL_PARTS) -> None:
    os.makedirs(folder, exist_ok=True)
    for part in parts:
        name = f"{part}{'_' + suffix if suffix else ''}.pth"
        torch.save(a_set(itr)[part], os.path.join(folder, name))


def write_flat(folder, itr: int, suffix: str = "") -> None:
    """A set as this project wrote it before set folders: flat files and checkpoint[_S].json."""
    write_legacy(folder, itr, suffix)
    tail = f"_{suffix}" if suffix else ""
    parts = {p: {"bytes": os.path.getsize(os.path.join(folder, f"{p}{tail}.pth")),
                 "sha1": sha1(os.path.join(folder, f"{p}{tail}.pth"))} for p in ALL_PARTS}
    with open(os.path.join(folder, f"checkpoint{tail}.json"), "w") as f:
        json.dump({"format": 1, "itr": itr, "suffix": suffix, "parts": parts}, f)


@pytest.mark.parametrize("change", [
    # same size, other bytes
    lambda path: torch.save({"w": torch.zeros(3, 2), "b": torch.zeros(2)}, path),
    lambda path: path.write_bytes(path.read_bytes()[:-10]),  # truncated
    lambda path: os.remove(os.path.realpath(path)),  # the set's file itself
])
def test_a_file_changed_behind_the_manifest_is_caught(tmp_path, change):
    checkpoints.save_set(str(tmp_path), a_set(10), 10)
    change(tmp_path / "G.pth")
    with pytest.raises(utils.UsageError, match="damaged: G.pth .*iteration 10.*manifest.json"):
        checkpoints.load_set(str(tmp_path), "", ["G", "state_dict"])


def test_a_state_dict_of_another_iteration_than_its_manifest_is_caught(tmp_path):
    write_flat(tmp_path, 10)
    manifest = json.loads((tmp_path / "checkpoint.json").read_text())
    (tmp_path / "checkpoint.json").write_text(json.dumps({**manifest, "itr": 11}))
    with pytest.raises(utils.UsageError, match="state_dict.pth is at iteration 10, the set at 11"):
        checkpoints.load_set(str(tmp_path), "", ["G"])


def test_a_damaged_manifest_is_one_clear_line(tmp_path):
    checkpoints.save_set(str(tmp_path), a_set(10), 10)
    with open(os.path.join(set_folder_of(tmp_path), "manifest.json"), "w") as f:
        f.write('{"itr": 10, "par')
    damaged = "is damaged: .*manifest.json is missing or unreadable; .*--load_weights"
    with pytest.raises(utils.UsageError, match=damaged):
        checkpoints.load_set(str(tmp_path), "", ["G"])
    write_flat(tmp_path / "flat", 10)
    (tmp_path / "flat" / "checkpoint.json").write_text('{"itr": 10, "par')
    damaged = "checkpoint.json is damaged .*delete it to load the set unverif"
    with pytest.raises(utils.UsageError, match=damaged):
        checkpoints.load_set(str(tmp_path / "flat"), "", ["G"])


def test_a_missing_set_names_the_file_and_the_flags(tmp_path):
    with pytest.raises(utils.UsageError, match=r"G_copy3.pth does not exist; check --weights_root, "
                                               r"--experiment_name and --load_weights"):
        checkpoints.load_set(str(tmp_path / "nowhere"), "copy3", ["G"])
    assert not checkpoints.has_checkpoint(str(tmp_path / "nowhere"), "copy3")


def test_existing_sets_lists_every_slot_in_every_format(tmp_path):
    checkpoints.save_set(str(tmp_path), a_set(10), 10, "copy0")
    write_flat(tmp_path, 5, "best1")
    write_legacy(tmp_path, 3, parts=("G",))
    assert checkpoints.existing_sets(str(tmp_path)) == ["latest", "best1", "copy0"]
    assert checkpoints.existing_sets(str(tmp_path / "nowhere")) == []


# --- Rotation and the best set

def test_rotation_fills_free_slots_then_the_oldest_but_never_the_resumed_set(tmp_path):
    folder = str(tmp_path)
    assert checkpoints.next_slot(folder, "copy", 3) == "copy0"
    checkpoints.save_set(folder, a_set(30), 30, "copy0")
    assert checkpoints.next_slot(folder, "copy", 3) == "copy1"
    checkpoints.save_set(folder, a_set(20), 20, "copy1")
    write_legacy(folder, 10, "copy2")  # a legacy set, aged by its state_dict
    assert checkpoints.next_slot(folder, "copy", 3) == "copy2"
    assert checkpoints.next_slot(folder, "copy", 3, "copy2") == "copy1"
    assert checkpoints.next_slot(folder, "copy", 1, "copy0") == "copy0"  # the only slot


def test_best_sets_rotate_alike(tmp_path):
    """The oldest best set is the worst one: it goes first."""
    folder = str(tmp_path)
    checkpoints.save_set(folder, a_set(10), 10, "best0")
    checkpoints.save_set(folder, a_set(20), 20, "best1")
    assert checkpoints.next_slot(folder, "best", 2) == "best0"
    assert checkpoints.next_slot(folder, "best", 2, "best0") == "best1"


def test_a_save_made_again_for_its_iteration_replaces_the_set_of_that_iteration(tmp_path):
    # A run killed after saving best1 at 20 evaluates 20 again when resumed: one best set of 20, as
    # in a run never killed, not a second one in place of the older best0.
    folder = str(tmp_path)
    checkpoints.save_set(folder, a_set(10), 10, "best0")
    checkpoints.save_set(folder, a_set(20), 20, "best1")
    assert checkpoints.next_slot(folder, "best", 2, itr=20) == "best1"
    assert checkpoints.next_slot(folder, "best", 2, itr=30) == "best0"
    assert checkpoints.next_slot(folder, "best", 2, protected="best1", itr=20) == "best0"


def test_a_damaged_slot_is_overwritten_first(tmp_path):
    folder = str(tmp_path)
    checkpoints.save_set(folder, a_set(10), 10, "copy0")
    checkpoints.save_set(folder, a_set(20), 20, "copy1")
    with open(os.path.join(set_folder_of(tmp_path, "copy1"), "manifest.json"), "w") as f:
        f.write("{")
    assert checkpoints.next_slot(folder, "copy", 2) == "copy1"


def best_set(itr: int, metric: str, value: float) -> dict:
    objects = a_set(itr)
    objects["state_dict"] = {**objects["state_dict"], f"best_{metric}": value,
                             "config": {"which_best": metric}}
    return objects


@pytest.mark.parametrize("metric,values,best", [("FID", (8.47, 7.68), "best1"),
                                                ("IS", (3.5, 2.9), "best0"),
                                                ("KMMD", (0.2, 0.3), "best0")])
def test_best_names_the_best_of_the_best_sets_not_the_first_slot(tmp_path, metric, values, best):
    # best0 was saved at iteration 30, best1 at 50: the slots rotate, so their order says nothing
    checkpoints.save_set(str(tmp_path), best_set(30, metric, values[0]), 30, "best0")
    checkpoints.save_set(str(tmp_path), best_set(50, metric, values[1]), 50, "best1")
    assert checkpoints.resolve_suffix(str(tmp_path), "best") == best
    assert checkpoints.resolve_suffix(str(tmp_path), "latest") == ""
    assert checkpoints.resolve_suffix(str(tmp_path), "copy1") == "copy1"


def test_best_without_best_sets_is_one_clear_line(tmp_path):
    checkpoints.save_set(str(tmp_path), a_set(10), 10)
    with pytest.raises(utils.UsageError, match="holds no best checkpoint .*--which_best"):
        checkpoints.resolve_suffix(str(tmp_path), "best")


# --- Diverged weights, full disks, read-only folders

@pytest.mark.parametrize("part,value", [("G", float("nan")), ("D", float("inf")),
                                        ("G_ema", float("-inf"))])
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
    (errno.EROFS, r"cannot write to .*: read-only file system; make it writable"),
])
@pytest.mark.parametrize("fails_after", [0, 300])  # at once, or midway through torch.save's writes
def test_a_full_disk_or_a_read_only_folder_while_staging_is_one_line_and_costs_nothing(
        tmp_path, monkeypatch, code, message, fails_after):
    checkpoints.save_set(str(tmp_path), a_set(10), 10)
    inject_write_failure(monkeypatch, checkpoints, code, when=lambda path: path.endswith("D.pth"),
                         after_bytes=fails_after)
    intact = message + ".*the previous checkpoint is intact"
    with pytest.raises(utils.UsageError, match=intact) as raised:
        checkpoints.save_set(str(tmp_path), a_set(20), 20)
    assert "\n" not in str(raised.value) and "--weights_root" in str(raised.value)
    assert is_set_of(files_on_disk(tmp_path), 10) and leftovers(tmp_path) == []


def fail_calls(monkeypatch, function: str, from_call: int, code: int) -> None:
    """os.<function> fails with `code` from its from_call-th call on."""
    real, calls = getattr(os, function), []

    def failing(*args, **kwargs):
        calls.append(args)
        if len(calls) >= from_call:
            raise OSError(code, os.strerror(code))
        return real(*args, **kwargs)
    monkeypatch.setattr(os, function, failing)


@pytest.mark.parametrize("function", ["rename", "replace"])  # naming the set; swapping the link
def test_a_refused_commit_leaves_the_old_set_and_nothing_else(tmp_path, monkeypatch, function):
    checkpoints.save_set(str(tmp_path), a_set(10), 10)
    fail_calls(monkeypatch, function, from_call=1, code=errno.EACCES)
    intact = "permission denied.*the previous checkpoint is intact"
    with pytest.raises(utils.UsageError, match=intact):
        checkpoints.save_set(str(tmp_path), a_set(20), 20)
    monkeypatch.undo()
    assert is_set_of(files_on_disk(tmp_path), 10) and leftovers(tmp_path) == []


def test_links_left_undone_by_a_failure_after_the_commit_are_completed_at_the_next_start(
        tmp_path, monkeypatch):
    checkpoints.save_set(str(tmp_path), {p: o for p, o in a_set(10).items() if p != "G_ema"}, 10)
    # the swap works, the G_ema link fails
    fail_calls(monkeypatch, "replace", from_call=2, code=errno.ENOSPC)
    saved = r"no space left.*iteration 20\) is saved .*completed at the next start"
    with pytest.raises(utils.UsageError, match=saved):
        checkpoints.save_set(str(tmp_path), a_set(20), 20)
    monkeypatch.undo()
    assert is_set_of(checkpoints.load_set(str(tmp_path), "", ALL_PARTS), 20)
    checkpoints.recover(str(tmp_path))
    assert is_set_of(files_on_disk(tmp_path), 20) and leftovers(tmp_path) == []
