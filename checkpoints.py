"""Checkpoint sets of an experiment folder, written and read as a whole, and the folder's lock.

A set is BigGAN-PyTorch's files, kept flat and readable so that folders written by BigGAN-PyTorch
or the official cGANTransfer code load as they are: G.pth, G_optim.pth, D.pth, D_optim.pth,
state_dict.pth and G_ema.pth, with a suffix for the copies and best sets (G_copy0.pth, ...).

Several files cannot be renamed into place at once, so a save is a small transaction:
  1. every part goes into a fresh staging folder `.saving_<suffix>_<pid>_<n>/`, its manifest
     (iteration, parts, their sizes and SHA-1s) last: a staging folder with a manifest is complete;
  2. the parts are renamed into place, then the manifest becomes the set's `checkpoint[_SUFFIX].json`,
     then the staging folder is removed.
`recover` (run by every load and at every start) finishes step 2 for a complete staging folder and
deletes an incomplete one, so a reader sees the old set or the new one, never a mix; a killed first
save leaves no set at all, and a fresh start is allowed. Loading checks the files against the
manifest (sizes and SHA-1s, and the iteration in state_dict.pth); a folder without manifests (BigGAN-PyTorch,
the official code) loads unverified, with a note.

Tests inject faults with CGT_KILL_AT_WRITE=K: the process SIGKILLs itself right before the K-th
file-system change (a write or a rename) this module makes.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import itertools
import json
import os
import shutil
import signal
import socket
from typing import Any

import torch

import utils

PARTS = ("G", "G_optim", "D", "D_optim", "state_dict", "G_ema")
WEIGHT_PARTS = ("G", "D", "G_ema")  # refused when non-finite
STAGING_PREFIX = ".saving_"
TEMP_PREFIX = ".tmp_"  # utils.write_atomically's temporaries
LOCK_FILE = ".lock"


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
    kill_at = os.environ.get("CGT_KILL_AT_WRITE")
    if kill_at and next(_mutations) == int(kill_at):
        os.kill(os.getpid(), signal.SIGKILL)


# ---------------------------------------------------------------------------------------------
# Writing

def all_finite(state: Any) -> bool:
    """Every floating tensor of a state dict (nested dicts too) is finite."""
    if isinstance(state, dict):
        return all(all_finite(value) for value in state.values())
    if torch.is_tensor(state) and state.is_floating_point():
        return bool(torch.isfinite(state).all())
    return True


_staging_counter = itertools.count()


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_digest(path: str) -> str:
    """SHA-1 of a file: two saves of same-shaped weights have the same size, not the same digest."""
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_staged(staging: str, objects: dict[str, Any], itr: int, suffix: str) -> None:
    parts = {}
    for part, obj in objects.items():
        path = os.path.join(staging, f"{part}.pth")
        _before_mutation()
        torch.save(obj, path)
        _fsync(path)
        parts[part] = {"bytes": os.path.getsize(path), "sha1": file_digest(path)}
    manifest = {"itr": itr, "suffix": suffix, "parts": parts}
    path = os.path.join(staging, "manifest.json")
    _before_mutation()
    with open(path, "w") as f:
        json.dump(manifest, f)
        f.flush()
        os.fsync(f.fileno())
    _fsync(staging)


def _publish(folder: str, staging: str) -> None:
    """Step 2: the staged parts into place, then the set's manifest, then the staging folder goes."""
    with open(os.path.join(staging, "manifest.json")) as f:
        manifest = json.load(f)
    suffix = manifest["suffix"]
    for part in manifest["parts"]:
        staged = os.path.join(staging, f"{part}.pth")
        if os.path.exists(staged):  # else moved before an interruption
            _before_mutation()
            os.replace(staged, part_path(folder, part, suffix))
    stale = [p for p in PARTS if p not in manifest["parts"] and os.path.exists(part_path(folder, p, suffix))]
    for part in stale:  # e.g. a G_ema of an earlier run with --ema: not part of this set
        _before_mutation()
        os.remove(part_path(folder, part, suffix))
    _before_mutation()
    os.replace(os.path.join(staging, "manifest.json"), manifest_path(folder, suffix))
    _fsync(folder)
    shutil.rmtree(staging, ignore_errors=True)


def save_set(folder: str, objects: dict[str, Any], itr: int, suffix: str = "") -> None:
    """Write a checkpoint set atomically as a whole. Non-finite weights raise NonFiniteCheckpoint
    and a full disk or a folder without write permission a UsageError; the previous set stays."""
    bad = [part for part in WEIGHT_PARTS if part in objects and not all_finite(objects[part])]
    if bad:
        raise NonFiniteCheckpoint(f"{', '.join(bad)} hold non-finite values (NaN or inf)")
    staging = os.path.join(folder, f"{STAGING_PREFIX}{suffix or 'latest'}_{os.getpid()}_{next(_staging_counter)}")
    try:
        os.makedirs(staging)
        _write_staged(staging, objects, itr, suffix)
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise utils.UsageError(_os_error_message(err, folder, "write the checkpoint")) from None
    try:
        _publish(folder, staging)
    except OSError as err:  # the staging stays complete: the next start rolls it forward
        raise utils.UsageError(_os_error_message(err, folder, "publish the checkpoint")) from None


def _os_error_message(err: OSError, folder: str, action: str) -> str:
    if err.errno == errno.ENOSPC:
        return f"no space left on the device of {folder} to {action}; free space and --resume (the previous checkpoint is intact)"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot {action} in {folder}: permission denied; make it writable or choose another --weights_root"
    return f"cannot {action} in {folder}: {err.strerror or err}"


# ---------------------------------------------------------------------------------------------
# Recovering, reading

def recover(folder: str) -> None:
    """Finish interrupted saves (complete staging folders) and delete incomplete ones and stray
    temporaries. Run it only while holding the folder's lock (or with no writer about)."""
    if not os.path.isdir(folder):
        return
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.startswith(STAGING_PREFIX) and os.path.isdir(path):
            if os.path.isfile(os.path.join(path, "manifest.json")):
                _publish(folder, path)
            else:
                shutil.rmtree(path, ignore_errors=True)
    remove_temporaries(folder)


def remove_temporaries(folder: str) -> None:
    """utils.write_atomically's leftovers of a killed process (sheets, logs, checkpoints)."""
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            if name.startswith(TEMP_PREFIX) and os.path.isfile(os.path.join(folder, name)):
                os.remove(os.path.join(folder, name))


def read_manifest(folder: str, suffix: str = "") -> dict | None:
    path = manifest_path(folder, suffix)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        raise utils.UsageError(f"{path} is damaged ({err}); delete it to load the set unverified") from None


def has_checkpoint(folder: str, suffix: str = "") -> bool:
    """A complete set (or a legacy one: G.pth and state_dict.pth without a manifest) is there."""
    if read_manifest(folder, suffix) is not None:
        return True
    return all(os.path.isfile(part_path(folder, p, suffix)) for p in ("G", "state_dict"))


def load_set(folder: str, suffix: str, parts: list[str], optional: tuple[str, ...] = (), hint: str = "") -> dict[str, Any]:
    """The requested parts of one set, checked to be of one save. `optional` parts may be absent."""
    what = describe(folder, suffix)
    manifest = read_manifest(folder, suffix)
    if manifest is None and os.path.isdir(folder) and not os.path.isfile(part_path(folder, "G", suffix)):
        staged = [n for n in os.listdir(folder) if n.startswith(STAGING_PREFIX)]
        if staged:
            raise utils.UsageError(f"{what} is being written or was interrupted; run again (a training run "
                                   "with --resume finishes it)")
    objects = {}
    for part in parts:
        path = part_path(folder, part, suffix)
        if part in optional and not os.path.isfile(path):
            continue
        if manifest is not None:
            if part not in manifest["parts"]:
                raise utils.UsageError(f"{what} (itr {manifest['itr']}) has no {part}; {hint}")
            saved = manifest["parts"][part]
            if (not os.path.isfile(path) or os.path.getsize(path) != saved["bytes"]
                    or file_digest(path) != saved["sha1"]):
                raise utils.UsageError(f"{what} is inconsistent: {os.path.basename(path)} is not the file saved at "
                                       f"iteration {manifest['itr']}; a save may be in progress, run again")
        objects[part] = utils.load_file(path, f"checkpoint {part}", hint)
    for part, obj in objects.items():
        if not isinstance(obj, dict):
            raise utils.UsageError(f"{part_path(folder, part, suffix)} holds a {type(obj).__name__}, not the "
                                   f"{part} state dict a checkpoint has; {hint}")
    state = objects.get("state_dict")
    if manifest is not None and state is not None and state.get("itr") != manifest["itr"]:
        raise utils.UsageError(f"{what} is inconsistent: state_dict.pth is at iteration {state.get('itr')}, "
                               f"the set at {manifest['itr']}")
    if manifest is None and objects:
        print(f"note: {what} has no manifest (written by BigGAN-PyTorch or the official code): loaded unverified")
    return objects


def saved_iteration(folder: str, suffix: str) -> int:
    """The iteration of a set (-1: none there)."""
    manifest = read_manifest(folder, suffix)
    if manifest is not None:
        return manifest["itr"]
    path = part_path(folder, "state_dict", suffix)
    if os.path.isfile(path):
        try:
            return int(torch.load(path, map_location="cpu", weights_only=True).get("itr", 0))
        except Exception:  # an unreadable legacy file: the oldest, overwrite it first
            return 0
    return -1


def next_slot(folder: str, prefix: str, count: int, protected: str = "") -> str:
    """The suffix to save a rotating set to (copy0, copy1, ... or best0, ...): a free slot, else the
    oldest set, never `protected` (the set this run resumed from) while another slot exists."""
    slots = [f"{prefix}{i}" for i in range(count)]
    candidates = [s for s in slots if s != protected] or slots
    return min(candidates, key=lambda s: (saved_iteration(folder, s), s))


# ---------------------------------------------------------------------------------------------
# The lock

class ExperimentLock:
    """An exclusive lock on an experiment folder for the life of a run. flock: the OS releases it
    when the process dies, so a killed run never leaves a stale lock behind."""

    def __init__(self, folder: str):
        self.folder, self.path, self.file = folder, os.path.join(folder, LOCK_FILE), None

    def __enter__(self) -> "ExperimentLock":
        try:
            os.makedirs(self.folder, exist_ok=True)
            self.file = open(self.path, "a+")
        except OSError as err:
            raise utils.UsageError(_os_error_message(err, self.folder, "lock the experiment")) from None
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            raise utils.UsageError(f"experiment {os.path.basename(self.folder)} is in use by {holder}; wait for "
                                   "it to finish or choose another --experiment_name") from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"process {os.getpid()} on {socket.gethostname()}")
        self.file.flush()
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()
