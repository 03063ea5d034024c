"""Reading and writing checkpoint sets of an experiment folder, atomically as a whole, and locking the folder.

A set keeps BigGAN-PyTorch's flat file names (G.pth, G_optim.pth, D.pth, D_optim.pth, state_dict.pth,
G_ema.pth; a suffix for copies and best sets: G_copy0.pth, G_ema_best1.pth, ...) so that users' scripts
and folders written by BigGAN-PyTorch or the official cGANTransfer code keep working.

Why a write-ahead scheme: a set is several files and a rename replaces one at a time, so a process killed
(or a disk filled) between renames used to leave G of one iteration next to optimizers, counters and RNG
of another, and resume loaded it silently. A save is therefore a small transaction:
  1. stage: every part is written and fsynced into a fresh hidden folder `.saving_<suffix>_<pid>_<n>/`
     inside the experiment folder (the same file system, so the renames below are atomic and need no
     space); `manifest.json` (format, iteration, suffix, parts with byte sizes and SHA-1s) is written
     last, so a staging folder holding a valid manifest is complete and one without never published;
  2. publish: each part is renamed into place, parts of an older set that this one lacks are removed,
     then the manifest is renamed to `checkpoint[_SUFFIX].json` (the commit point), then the staging
     folder is removed.
`recover` rolls a complete staging folder forward (finishes step 2; each step is skipped once done, so a
recovery killed in turn is finished by the next one) and deletes an incomplete one, whose set was never
touched. It runs at every start (the lock holder), in save_set before staging (so a publish never starts
beside an unfinished one, whose renamed parts it would overwrite) and in readers of a folder not in use.
Readers verify the files against the manifest: sizes and SHA-1s (two saves of same-shaped weights have
equal sizes, not equal digests) and the iteration in state_dict.pth, hashing and loading one open file
so that a rename in between cannot slip through. A set is thus the old one or the new one, never a mix;
a killed first save leaves no set at all, which blocks no fresh start. fsyncs (parts, manifest, folders)
keep that order true across a power loss, not only a kill.

Why a lock: saving and recovering mutate the folder, and two runs on one experiment overwrote each
other. ExperimentLock is an flock on `<folder>/.lock`, released by the OS when its process dies, so a
killed run leaves no stale lock; the holder's pid and host are written into the file only for the
message. Writers (save_set) hold it or take it for the save. Readers (load_set, has_checkpoint) recover
a folder only when they can take the lock at once: a folder locked by a live run is never changed by a
reader, whose verification then reports a save in progress rather than returning a mix.

Legacy folders (no manifest: BigGAN-PyTorch, the official code) load as far as they can be checked (the
requested parts present and readable state dicts) with a one-line note that they are unverified.

Rotation (copies, and best sets alike): the slot to write is a free one, else the one with the oldest
iteration, never the set the run resumed from while another slot exists. For best sets oldest-first
is BigGAN-PyTorch's cycle, and the oldest best is the worst one.

Fault injection, for tests only: with the environment variable CGT_KILL_AT_WRITE=K the process SIGKILLs
itself right before the K-th file-system change this module makes to a set, counted across the whole
process: writing a staged part or the staged manifest, renaming a part or the manifest into place,
removing a stale part. A save of n parts is thus 2n + 2 changes (plus one per stale part). Creating the
staging folder, fsyncs, removing temporaries and the lock file are not counted.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import itertools
import json
import os
import shutil
import signal
import socket
import time
from typing import IO, Any, Iterable

import torch

import utils

PARTS = ("G", "G_optim", "D", "D_optim", "state_dict", "G_ema")
WEIGHT_PARTS = ("G", "D", "G_ema")  # refused when non-finite
STAGING_PREFIX = ".saving_"
STAGED_MANIFEST = "manifest.json"
TEMP_PREFIX = ".tmp_"  # utils.write_atomically's temporaries
LOCK_FILE = ".lock"
MANIFEST_FORMAT = 1
DEFAULT_HINT = "check --weights_root, --experiment_name and --load_weights"


class NonFiniteCheckpoint(Exception):
    """The weights to save hold NaN or inf: the run diverged; the previous set stays."""


# ---------------------------------------------------------------------------------------------
# Names

def part_path(folder: str, part: str, suffix: str = "") -> str:
    return os.path.join(folder, f"{part}{'_' + suffix if suffix else ''}.pth")


def manifest_path(folder: str, suffix: str = "") -> str:
    return os.path.join(folder, f"checkpoint{'_' + suffix if suffix else ''}.json")


def describe(folder: str, suffix: str) -> str:
    return f"checkpoint {suffix or '(latest)'} in {folder}"


# ---------------------------------------------------------------------------------------------
# Fault injection (tests only)

_mutations = itertools.count(1)


def _before_mutation() -> None:
    kill_at = os.environ.get("CGT_KILL_AT_WRITE")  # read each time: a forked child may set it
    if next(_mutations) == int(kill_at or 0):
        os.kill(os.getpid(), signal.SIGKILL)


# ---------------------------------------------------------------------------------------------
# The lock

_held: set[str] = set()  # folders whose ExperimentLock this process holds


def _key(folder: str) -> str:
    return os.path.realpath(folder)


def holds_lock(folder: str) -> bool:
    """This process holds the folder's ExperimentLock (so it may recover and save there)."""
    return _key(folder) in _held


class ExperimentLock:
    """An exclusive lock on an experiment folder, for a run or a save. A second holder, even in the
    same process, is refused with one line naming the holder. wait_s: how long to retry first (a
    reader recovering an interrupted save holds the lock for a moment)."""

    def __init__(self, folder: str, wait_s: float = 0.5):
        self.folder, self.path, self.wait_s = folder, os.path.join(folder, LOCK_FILE), wait_s
        self.file: IO[str] | None = None

    def __enter__(self) -> "ExperimentLock":
        try:
            os.makedirs(self.folder, exist_ok=True)
            self.file = open(self.path, "a+")
        except OSError as err:
            raise utils.UsageError(_os_error_message(err, self.folder, "lock the experiment")) from None
        if not self._flock_within(self.wait_s):
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            raise utils.UsageError(f"experiment {os.path.basename(os.path.abspath(self.folder))} is in use by "
                                   f"{holder}; wait for it to finish or choose another --experiment_name")
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"process {os.getpid()} on {socket.gethostname()}")
        self.file.flush()
        _held.add(_key(self.folder))
        return self

    def _flock_within(self, wait_s: float) -> bool:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.05)

    def __exit__(self, *exc) -> None:  # the file stays: removing it would race with a waiting process
        _held.discard(_key(self.folder))
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


def _writer_lock(folder: str):
    """The lock a save needs: none more when this process holds it already (a training run)."""
    return contextlib.nullcontext() if holds_lock(folder) else ExperimentLock(folder)


# ---------------------------------------------------------------------------------------------
# Writing

def all_finite(state: Any) -> bool:
    """Every floating tensor of a state dict (nested dicts and lists too) is finite."""
    if isinstance(state, dict):
        return all(all_finite(value) for value in state.values())
    if isinstance(state, (list, tuple)):
        return all(all_finite(value) for value in state)
    if torch.is_tensor(state) and state.is_floating_point():
        return bool(torch.isfinite(state).all())
    return True


def save_set(folder: str, objects: dict[str, Any], itr: int, suffix: str = "") -> None:
    """Write a checkpoint set atomically as a whole (see the module docstring). Non-finite weights
    raise NonFiniteCheckpoint, a full disk or a folder without write permission a UsageError, another
    process holding the folder a UsageError; in each case the previous set stays."""
    bad = [part for part in WEIGHT_PARTS if part in objects and not all_finite(objects[part])]
    if bad:
        raise NonFiniteCheckpoint(f"{', '.join(bad)} hold non-finite values (NaN or inf)")
    state = objects.get("state_dict")
    if isinstance(state, dict) and state.get("itr") != itr:  # a wiring mistake would make an unloadable set
        raise ValueError(f"save_set at iteration {itr} got a state_dict at iteration {state.get('itr')}")
    with _writer_lock(folder):
        recover(folder)  # never publish beside an unfinished publish: its renamed parts would be overwritten
        staging = _stage(folder, objects, itr, suffix)
        try:
            _publish(folder, staging)
        except OSError as err:
            if _nothing_published(staging):
                shutil.rmtree(staging, ignore_errors=True)
                outcome = "the previous checkpoint is intact"
            else:  # the staging is complete: recover rolls it forward
                outcome = "the new checkpoint is complete at the next start"
            raise utils.UsageError(f"{_os_error_message(err, folder, 'save the checkpoint')}; {outcome}") from None


_staging_counter = itertools.count()


def _stage(folder: str, objects: dict[str, Any], itr: int, suffix: str) -> str:
    """Step 1: a complete staging folder, or nothing left behind."""
    staging = os.path.join(folder, f"{STAGING_PREFIX}{suffix or 'latest'}_{os.getpid()}_{next(_staging_counter)}")
    try:
        os.makedirs(staging)
        parts = {}
        for part, obj in objects.items():
            path = os.path.join(staging, f"{part}.pth")
            _before_mutation()
            torch.save(obj, path)
            _fsync(path)
            parts[part] = {"bytes": os.path.getsize(path), "sha1": file_digest(path)}
        manifest = {"format": MANIFEST_FORMAT, "itr": itr, "suffix": suffix, "parts": parts}
        _before_mutation()
        with open(os.path.join(staging, STAGED_MANIFEST), "w") as f:
            json.dump(manifest, f)
            f.flush()
            os.fsync(f.fileno())
        _fsync(staging)
    except BaseException as err:  # also a pickling error or Ctrl-C: no half staging left
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(err, OSError):
            raise utils.UsageError(f"{_os_error_message(err, folder, 'save the checkpoint')}; "
                                   "the previous checkpoint is intact") from None
        raise
    return staging


def _publish(folder: str, staging: str) -> None:
    """Step 2, for a staging folder with a valid manifest; idempotent, to finish an interrupted one."""
    manifest = _staged_manifest(staging)
    suffix = manifest["suffix"]
    for part in manifest["parts"]:
        staged = os.path.join(staging, f"{part}.pth")
        if os.path.exists(staged):  # else renamed before an interruption
            _before_mutation()
            os.replace(staged, part_path(folder, part, suffix))
    stale = [p for p in PARTS if p not in manifest["parts"] and os.path.exists(part_path(folder, p, suffix))]
    for part in stale:  # e.g. a G_ema of an earlier run with --ema: not of this set
        _before_mutation()
        os.remove(part_path(folder, part, suffix))
    _before_mutation()
    os.replace(os.path.join(staging, STAGED_MANIFEST), manifest_path(folder, suffix))
    _fsync(folder)
    shutil.rmtree(staging, ignore_errors=True)


def _nothing_published(staging: str) -> bool:
    manifest = _staged_manifest(staging)
    return manifest is not None and all(os.path.exists(os.path.join(staging, f"{part}.pth"))
                                        for part in manifest["parts"])


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_digest(path: str) -> str:
    with open(path, "rb") as f:
        return _digest(f)


def _digest(f: IO[bytes]) -> str:
    digest = hashlib.sha1()
    for block in iter(lambda: f.read(1 << 22), b""):
        digest.update(block)
    return digest.hexdigest()


def _os_error_message(err: OSError, folder: str, action: str) -> str:
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"no space left on device in {folder} to {action}: free space there (or choose another "
                "--weights_root) and --resume")
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason = "read-only file system" if err.errno == errno.EROFS else "permission denied"
        return f"cannot write to {folder} to {action}: {reason}; make it writable or choose another --weights_root"
    return f"cannot {action} in {folder}: {err.strerror or err}"


# ---------------------------------------------------------------------------------------------
# Recovering, cleaning

def recover(folder: str) -> None:
    """Finish the save a killed process staged completely, delete incomplete ones and stray temporaries.
    Only for the holder of the folder's lock, or a process that knows nobody else writes there: a live
    writer's staging folder would be taken from under it. (At most one staging folder is complete, as
    save_set recovers before it stages.)"""
    if not os.path.isdir(folder):
        return
    try:
        for staging, manifest in _stagings(folder):
            if manifest is not None:
                _publish(folder, staging)
        clean_temporaries(folder)
    except OSError as err:
        raise utils.UsageError(_os_error_message(err, folder, "finish an interrupted checkpoint save")) from None


def clean_temporaries(folder: str) -> None:
    """Remove utils.write_atomically's `.tmp_*` leftovers and dead (manifest-less) staging folders
    of killed processes. A complete staging folder is no temporary but a set being published: it
    is left to recover. Only for the lock holder, like recover."""
    if not os.path.isdir(folder):
        return
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if name.startswith(TEMP_PREFIX):
            _remove(path)
    for path, manifest in _stagings(folder):
        if manifest is None:
            _remove(path)


def remove_temporaries(folder: str) -> None:
    """The name train.py uses: clean_temporaries."""
    clean_temporaries(folder)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def _stagings(folder: str) -> list[tuple[str, dict | None]]:
    """Staging folders with their manifest (None: incomplete)."""
    names = sorted(n for n in os.listdir(folder) if n.startswith(STAGING_PREFIX))
    paths = [os.path.join(folder, n) for n in names if os.path.isdir(os.path.join(folder, n))]
    return [(path, _staged_manifest(path)) for path in paths]


def _staged_manifest(staging: str) -> dict | None:
    """A staging folder's manifest; None when absent or torn (a kill while writing it: nothing of
    that save was published yet)."""
    try:
        with open(os.path.join(staging, STAGED_MANIFEST)) as f:
            manifest = json.load(f)
    except (FileNotFoundError, ValueError):  # any other error is no proof of an unpublished save: raised
        return None
    return manifest if _is_manifest(manifest) else None


def _is_manifest(manifest: Any) -> bool:
    return (isinstance(manifest, dict) and isinstance(manifest.get("itr"), int)
            and isinstance(manifest.get("suffix"), str) and isinstance(manifest.get("parts"), dict)
            and all(isinstance(p, dict) and isinstance(p.get("bytes"), int) and isinstance(p.get("sha1"), str)
                    for p in manifest["parts"].values()))


def _needs_recovery(folder: str) -> bool:
    return os.path.isdir(folder) and any(n.startswith((STAGING_PREFIX, TEMP_PREFIX)) for n in os.listdir(folder))


def _recover_unless_in_use(folder: str) -> None:
    """A reader's recovery: only when the folder is free (or ours); a live run's folder is left alone."""
    if not _needs_recovery(folder):
        return
    if holds_lock(folder):
        recover(folder)
        return
    try:
        lock = ExperimentLock(folder, wait_s=0).__enter__()
    except utils.UsageError:  # in use by a live run, or not writable: verification still applies
        return
    try:
        recover(folder)
    finally:
        lock.__exit__(None, None, None)


def _pending_suffixes(folder: str) -> set[str]:
    """Sets that a staging folder is about to publish (a live run's, or one recovery could not finish)."""
    if not os.path.isdir(folder):
        return set()
    return {manifest["suffix"] for _, manifest in _stagings(folder) if manifest is not None}


# ---------------------------------------------------------------------------------------------
# Reading

def read_manifest(folder: str, suffix: str = "") -> dict | None:
    """The set's published manifest; None for no set or a legacy one; a damaged one is a UsageError."""
    path = manifest_path(folder, suffix)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, ValueError) as err:
        manifest, problem = None, str(err)
    else:
        problem = "not a checkpoint manifest"
    if not _is_manifest(manifest):
        raise utils.UsageError(f"{path} is damaged ({problem}); delete it to load the set unverified, "
                               "or choose another set with --load_weights")
    return manifest


def has_checkpoint(folder: str, suffix: str = "") -> bool:
    """A complete set is there (after recovering the folder when it is not in use): every part its
    manifest lists, of the listed size; without a manifest (legacy), G and state_dict."""
    _recover_unless_in_use(folder)
    manifest = read_manifest(folder, suffix)
    if manifest is not None:
        return all(os.path.isfile(part_path(folder, part, suffix))
                   and os.path.getsize(part_path(folder, part, suffix)) == saved["bytes"]
                   for part, saved in manifest["parts"].items())
    if suffix in _pending_suffixes(folder):  # a first save being published: not yet a set
        return False
    return all(os.path.isfile(part_path(folder, part, suffix)) for part in ("G", "state_dict"))


def load_set(folder: str, suffix: str, parts: Iterable[str], optional: tuple[str, ...] = (),
             hint: str = "") -> dict[str, Any]:
    """The requested parts of one set (after recovering the folder when it is not in use), checked to
    be of one save; `optional` parts may be absent. Every problem is one UsageError line; hint says
    what to do (the flags naming the set)."""
    hint = hint or DEFAULT_HINT
    _recover_unless_in_use(folder)
    manifest = read_manifest(folder, suffix)
    if manifest is None:
        return _load_legacy(folder, suffix, list(parts), optional, hint)
    return _load_verified(folder, suffix, list(parts), optional, hint, manifest)


def _load_verified(folder: str, suffix: str, parts: list[str], optional: tuple[str, ...], hint: str,
                   manifest: dict) -> dict[str, Any]:
    itr = manifest["itr"]
    missing = [p for p in parts if p not in manifest["parts"] and p not in optional]
    if missing:
        raise utils.UsageError(f"{describe(folder, suffix)} (iteration {itr}) has no {', '.join(missing)}; {hint}")
    wanted = [p for p in parts if p in manifest["parts"]]
    # state_dict.pth is checked even when not asked for: it holds the iteration of the weights
    checked = list(dict.fromkeys(wanted + (["state_dict"] if "state_dict" in manifest["parts"] else [])))
    objects = {part: _load_listed(folder, suffix, part, manifest, hint) for part in checked}
    state = objects.get("state_dict")
    if state is not None and state.get("itr") != itr:
        raise _inconsistent(folder, suffix, f"state_dict.pth is at iteration {state.get('itr')}, the set at {itr}")
    return {part: objects[part] for part in wanted}


def _load_listed(folder: str, suffix: str, part: str, manifest: dict, hint: str) -> dict:
    """A part the manifest lists, hashed and loaded from one open file: a rename in between cannot
    make the loaded bytes differ from the checked ones."""
    path, saved, itr = part_path(folder, part, suffix), manifest["parts"][part], manifest["itr"]
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise _inconsistent(folder, suffix, f"{os.path.basename(path)} of iteration {itr} is missing") from None
    with f:
        if os.fstat(f.fileno()).st_size != saved["bytes"] or _digest(f) != saved["sha1"]:
            problem = f"{os.path.basename(path)} is not the file saved at iteration {itr}"
            raise _inconsistent(folder, suffix, problem)
        f.seek(0)
        return _load_dict(f, path, part, hint)


def _inconsistent(folder: str, suffix: str, problem: str) -> utils.UsageError:
    if suffix in _pending_suffixes(folder):
        advice = "a save of it is in progress or was interrupted: run again (a run with --resume finishes it)"
    else:
        advice = (f"it was changed after the save: restore it, or delete "
                  f"{os.path.basename(manifest_path(folder, suffix))} to load the set unverified")
    return utils.UsageError(f"{describe(folder, suffix)} is inconsistent: {problem}; {advice}")


def _load_legacy(folder: str, suffix: str, parts: list[str], optional: tuple[str, ...],
                 hint: str) -> dict[str, Any]:
    """A set without a manifest (BigGAN-PyTorch, the official code): checked as far as it can be."""
    what = describe(folder, suffix)
    present = [p for p in parts if os.path.isfile(part_path(folder, p, suffix))]
    absent = [p for p in parts if p not in present and p not in optional]
    if suffix in _pending_suffixes(folder):  # files in place may be of the old set and the new one
        raise _inconsistent(folder, suffix, "its files are in place without their manifest")
    if len(absent) == 1:
        path = part_path(folder, absent[0], suffix)
        raise utils.UsageError(f"checkpoint {absent[0]} {path} does not exist; {hint}")
    if absent:
        names = ", ".join(part_path(folder, p, suffix) for p in absent)
        problem = f"{what} is incomplete" if present else f"no {what}"
        raise utils.UsageError(f"{problem}: {names} do not exist; {hint}")
    objects = {}
    for part in present:
        path = part_path(folder, part, suffix)
        with open(path, "rb") as f:
            objects[part] = _load_dict(f, path, part, hint)
    state_path = part_path(folder, "state_dict", suffix)
    if "state_dict" not in objects and objects and os.path.isfile(state_path):
        with open(state_path, "rb") as f:  # unrequested, still a sign of a damaged set
            _load_dict(f, state_path, "state_dict", hint)
    if objects:
        print(f"note: {what} has no manifest (written by BigGAN-PyTorch or the official code): "
              "loaded unverified")
    return objects


def _load_dict(f: IO[bytes], path: str, part: str, hint: str) -> dict:
    try:
        obj = torch.load(f, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a truncated or foreign file
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise utils.UsageError(f"{path} is not a readable checkpoint {part} ({first_line}); {hint}") from None
    if not isinstance(obj, dict):
        raise utils.UsageError(f"{path} holds a {type(obj).__name__}, not the {part} state dict a checkpoint "
                               f"has; {hint}")
    return obj


# ---------------------------------------------------------------------------------------------
# Rotation

def saved_iteration(folder: str, suffix: str) -> int:
    """The iteration of a set: -1 for none there, 0 for one whose iteration cannot be read (the oldest,
    so rotation overwrites it first)."""
    try:
        manifest = read_manifest(folder, suffix)
    except utils.UsageError:
        return 0
    if manifest is not None:
        return manifest["itr"]
    path = part_path(folder, "state_dict", suffix)
    if not os.path.isfile(path):
        return -1
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        return int(state.get("itr", 0))
    except Exception:  # an unreadable legacy file
        return 0


def next_slot(folder: str, prefix: str, count: int, protected: str | None = None) -> str:
    """The suffix to save a rotating set to (copy0, copy1, ... or best0, ...): a free slot, else the
    one of the oldest iteration, never `protected` (the set this run resumed from) unless it is the
    only slot."""
    if count < 1:
        raise ValueError(f"rotation over {count} slots")
    slots = [f"{prefix}{i}" for i in range(count)]
    candidates = [s for s in slots if s != protected] or slots
    return min(candidates, key=lambda s: (saved_iteration(folder, s), slots.index(s)))


def next_copy_slot(folder: str, num_copies: int, protected_suffix: str | None = None) -> str:
    """The copy (copy0 ... copy<num_copies-1>) to save next; see next_slot."""
    return next_slot(folder, "copy", num_copies, protected_suffix)


def next_best_slot(folder: str, num_best: int, protected_suffix: str | None = None) -> str:
    """The best set (best0 ...) to save next: the oldest best is the worst one; see next_slot."""
    return next_slot(folder, "best", num_best, protected_suffix)
