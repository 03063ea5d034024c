"""checkpoint_lock.py, as a specification: two processes never share an experiment, nor two locks
in one process; another process may not save while a run holds the folder; a killed holder leaves
no stale lock, and a failed start no empty folder. The sets are test_checkpoints.py's, whose
every tensor encodes its iteration."""
import os
import subprocess
import sys

import pytest

import checkpoint_lock
import checkpoints
import utils
from conftest import ROOT
from test_checkpoints import a_set, files_on_disk, is_set_of

HOLD_THE_LOCK = """
import time
import checkpoint_lock
with checkpoint_lock.ExperimentLock({folder!r}):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.mark.slow  # another process holds the lock and is killed (~2.5 s: its torch import)
def test_an_experiment_in_use_is_refused_and_a_killed_holder_leaves_no_stale_lock(tmp_path):
    folder = str(tmp_path / "exp")
    checkpoints.save_set(folder, a_set(10), 10)
    prelude = f"import sys; sys.path[:0] = [{ROOT!r}]\n"
    holder = subprocess.Popen([sys.executable, "-c", prelude + HOLD_THE_LOCK.format(folder=folder)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        in_use = (rf"experiment exp is in use by process {holder.pid} on .*; wait for it "
                  ".*--experiment_name")
        with pytest.raises(utils.UsageError, match=in_use):
            with checkpoint_lock.ExperimentLock(folder):
                pass
        with pytest.raises(utils.UsageError, match=in_use):  # nor may another process save there
            checkpoints.save_set(folder, a_set(20), 20)
        assert is_set_of(files_on_disk(folder), 10)
    finally:
        holder.kill()
        holder.wait()
    with checkpoint_lock.ExperimentLock(folder):  # the OS released the killed holder's lock
        checkpoints.save_set(folder, a_set(20), 20)  # the holder saves without locking again
    assert is_set_of(files_on_disk(folder), 20)


def test_a_second_lock_in_the_same_process_is_refused_too(tmp_path):
    with checkpoint_lock.ExperimentLock(str(tmp_path)):
        with pytest.raises(utils.UsageError, match=f"in use by process {os.getpid()}"):
            with checkpoint_lock.ExperimentLock(str(tmp_path), wait_s=0):
                pass
    with checkpoint_lock.ExperimentLock(str(tmp_path)):
        pass


def test_a_start_that_writes_nothing_leaves_no_folder_and_an_existing_folder_stays(tmp_path):
    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError):
        with checkpoint_lock.ExperimentLock(str(fresh)):
            raise RuntimeError("a failed start")
    assert not fresh.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    with checkpoint_lock.ExperimentLock(str(kept)):
        pass
    assert kept.is_dir()
    with checkpoint_lock.ExperimentLock(str(tmp_path / "used")):
        checkpoints.save_set(str(tmp_path / "used"), a_set(1), 1)
    assert checkpoints.has_checkpoint(str(tmp_path / "used"))
