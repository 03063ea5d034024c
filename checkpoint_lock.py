"""The lock of an experiment folder: one run (or one save) at a time changes its checkpoints.

Why: saving and recovering change the folder, and two runs on one experiment overwrote each other.
ExperimentLock is an flock on `<folder>/.lock`, released by the OS when its process dies, so a
killed run leaves no stale lock; the holder's pid and host are in the file only for the message. A
folder the lock created and nothing else wrote to is removed again on release, so a failed start
leaves nothing behind."""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from typing import IO

import utils

LOCK_FILE = ".lock"

_held: set[str] = set()  # folders whose ExperimentLock this process holds


def _key(folder: str) -> str:
    return os.path.realpath(folder)


def holds_lock(folder: str) -> bool:
    """This process holds the folder's ExperimentLock (so it may recover and save there)."""
    return _key(folder) in _held


def writer_lock(folder: str):
    """The lock a save needs: none more when this process holds it already (a training run)."""
    return contextlib.nullcontext() if holds_lock(folder) else ExperimentLock(folder)


def _in_use(folder: str, holder: str) -> utils.UsageError:
    name = os.path.basename(os.path.abspath(folder))
    return utils.UsageError(f"experiment {name} is in use by {holder}; wait for it to finish or "
                            "choose another --experiment_name")


class ExperimentLock:
    """An exclusive lock on an experiment folder, for a run or a save. A second holder, even in the
    same process, is refused with one line naming the holder. wait_s: how long to retry first (a
    save by another process holds the lock for a moment)."""

    def __init__(self, folder: str, wait_s: float = 0.5):
        self.folder, self.path, self.wait_s = folder, os.path.join(folder, LOCK_FILE), wait_s
        self.file: IO[str] | None = None
        self.created_folder = False

    def __enter__(self) -> "ExperimentLock":
        if _key(self.folder) in _held:
            raise _in_use(self.folder, f"process {os.getpid()} on {socket.gethostname()} "
                                       "(this process)")
        try:
            self.created_folder = not os.path.isdir(self.folder)
            os.makedirs(self.folder, exist_ok=True)
        except OSError as err:
            raise self._write_error(err) from None
        self._lock_the_file(time.monotonic() + self.wait_s)
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"process {os.getpid()} on {socket.gethostname()}")
        self.file.flush()
        _held.add(_key(self.folder))
        return self

    def _write_error(self, err: OSError) -> utils.WriteError:
        return utils.WriteError(utils.describe_write_error(err, self.folder, "lock the experiment"))

    def _lock_the_file(self, deadline: float) -> None:
        """self.file opened and flocked, or a UsageError naming the holder after the deadline."""
        while True:
            try:
                self.file = open(self.path, "a+")
            except OSError as err:
                raise self._write_error(err) from None
            if self._flock_until(deadline):
                if self._still_the_lock_file():
                    return
                self.file.close()  # its holder removed it on release: lock the new one
                continue
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            raise _in_use(self.folder, holder)

    def _flock_until(self, deadline: float) -> bool:
        while True:
            try:
                fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.05)

    def _still_the_lock_file(self) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(self.file.fileno()).st_ino
        except FileNotFoundError:
            return False

    def __exit__(self, *exc) -> None:
        _held.discard(_key(self.folder))
        if self.created_folder and os.listdir(self.folder) == [LOCK_FILE]:
            # Nothing was written: a failed start leaves no folder. Removed while locked; a process
            # waiting on this file notices it is gone (_still_the_lock_file) and locks a new one.
            os.remove(self.path)
            with contextlib.suppress(OSError):
                os.rmdir(self.folder)
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()
