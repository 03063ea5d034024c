"""The checkpoint sets of an experiment folder, written and read atomically as a whole.

A set is what one save writes: G.pth, G_optim.pth, D.pth, D_optim.pth, state_dict.pth and G_ema.pth
with --ema. Its slot is the latest set (no suffix), a rotating copy (copy0, copy1, ...) or a best
set (best0, ...). The folder keeps BigGAN-PyTorch's flat names (G.pth, G_copy0.pth, G_ema_best1.pth,
...), so users' scripts and notebooks that open them keep working, but each name is a symbolic link
into its slot:

    weights/<experiment>/
        sets/latest-000500-3f2a/   G.pth G_optim.pth D.pth D_optim.pth state_dict.pth manifest.json
        latest -> sets/latest-000500-3f2a          one link per slot: the commit point of a save
        G.pth -> latest/G.pth                      BigGAN-PyTorch's names resolve through the slot
        G_copy0.pth -> copy0/G.pth ...

Why: a set is several files, and renaming them into place one by one left, between a kill and the
next start, a folder whose G.pth was of one iteration and D.pth or state_dict.pth of another, which
code that opens G.pth directly (BigGAN-PyTorch's scripts) read as a set. Here a save writes a whole
new set folder (every file fsynced, then `manifest.json`: format, iteration, slot, parts with byte
sizes and SHA-1s), renames it from `.staging-*` to its final name, then swaps the slot link in one
atomic rename. Every name of the slot resolves into one set folder at every moment: the old set
before the swap, the new one after, never a mix, for this module's readers and for direct readers
alike. fsyncs of the files, the set folder, `sets/` and the experiment folder come before each step
is relied upon, so the order also holds across a power loss, not only a kill.

After the swap the part links are put in place (a part new to the slot gets its link, a part the set
lacks loses its link, so no name points at a part of another set) and the previous set folder is
removed. A kill between those steps leaves a link missing or pointing at nothing, never at another
iteration; `recover` (at every start, by the lock holder, and before every save) finishes them,
removes staging folders and set folders no slot points at, and removes write_atomically's `.tmp_*`
leftovers. Saving and recovering take the folder's lock (checkpoint_lock.py).

Readers (load_set, has_checkpoint) never change the folder: they follow the slot link once, to one
set folder, and verify every file they load against its manifest (a file changed afterwards is
caught), hashing and loading one open file. Formats of earlier code load too (checkpoint_legacy.py);
the first save of a slot replaces its flat files by links (the slot link first, so this module reads
the new set from then on; a direct reader of such a folder can meet old and new files during that
one save, never afterwards).

Rotation (copies, and best sets alike): the slot to write is a free one, else the one of the oldest
iteration, never the set the run resumed from while another slot exists. `--load_weights best` names
the best of the best sets by the metric its run selected with.

The seam of the fault-injection tests is `before_change`: called right before each file-system
change this module makes to an experiment folder (writing a staged part or the manifest, renaming
the staging folder, swapping the slot link, adding, replacing or removing a part link, removing a
previous set; not fsyncs, temporaries or the lock file). It does nothing; the tests replace it with
one that SIGKILLs the process at a chosen change (tests/helpers/faults.py).
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import secrets
import shutil
from typing import Any, Iterable

import torch

import checkpoint_legacy
import utils
from checkpoint_format import (LATEST, MANIFEST, MANIFEST_FORMAT, PARTS, SETS, SLOT, describe,
                               digest, file_digest, flat_manifest_path, load_dict, part_path,
                               read_set_manifest, slot_name, suffix_of)
from checkpoint_lock import writer_lock

WEIGHT_PARTS = ("G", "D", "G_ema")  # refused when non-finite
STAGING_PREFIX = ".staging-"
LINK_TEMP_PREFIX = ".link-"
TEMP_PREFIX = utils.TEMP_PREFIX  # utils.write_atomically's temporaries
DEFAULT_HINT = "check --weights_root, --experiment_name and --load_weights"
BETTER = {"IS": max, "FID": min, "KMMD": min}  # how the best of the best sets is picked, by metric
METRIC_KEY = {"IS": "IS_mean", "FID": "FID", "KMMD": "KMMD"}  # the metric's key in an evaluation


class NonFiniteCheckpoint(Exception):
    """The weights to save hold NaN or inf: the run diverged; the previous set stays."""


def before_change() -> None:
    """The fault-injection seam (see the module docstring): nothing happens here."""


# ---------------------------------------------------------------------------------------------
# Names the user writes

SET_NAME = re.compile(r"^(latest|best|copy\d+|best\d+)$")  # what --load_weights may name
SET_NAMES = "latest, best (the best of the best sets), copyN or bestN (e.g. copy0, best1)"


def set_name(text: str) -> str:
    """--load_weights and --start_from's :SUFFIX: '' (the latest set), latest, best, copyN or
    bestN. A suffix is joined into file names (G_<suffix>.pth), so anything else, a path above all,
    is refused."""
    if text and not SET_NAME.match(text):
        raise argparse.ArgumentTypeError(f"must name a checkpoint set: {SET_NAMES}, got {text!r}")
    return text


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
    raise NonFiniteCheckpoint, a full disk or a folder without write permission a UsageError,
    another process holding the folder a UsageError; in each case the previous set stays."""
    bad = [part for part in WEIGHT_PARTS if part in objects and not all_finite(objects[part])]
    if bad:
        raise NonFiniteCheckpoint(f"{', '.join(bad)} hold non-finite values (NaN or inf)")
    state = objects.get("state_dict")
    if isinstance(state, dict) and state.get("itr") != itr:  # a wiring mistake: an unloadable set
        raise ValueError(f"save_set at iteration {itr} got a state_dict at iteration "
                         f"{state.get('itr')}")
    slot = slot_name(suffix)
    with writer_lock(folder):
        recover(folder)
        staging = _stage(folder, objects, itr, slot)
        try:
            set_folder = _name_set(folder, staging, slot, itr)
        except OSError as err:
            shutil.rmtree(staging, ignore_errors=True)
            raise _save_failed(err, folder) from None
        try:
            _swap_slot(folder, slot, set_folder)
        except OSError as err:
            shutil.rmtree(set_folder, ignore_errors=True)
            raise _save_failed(err, folder) from None
        try:
            _tidy(folder)
        except OSError as err:  # the set is saved; what is left undone the next start finishes
            problem = utils.describe_write_error(err, folder, "finish the checkpoint save")
            raise utils.WriteError(f"{problem}; the new checkpoint (iteration {itr}) is saved and "
                                   "its links are completed at the next start") from None


def _save_failed(err: OSError, folder: str) -> utils.WriteError:
    problem = utils.describe_write_error(err, folder, "save the checkpoint")
    return utils.WriteError(f"{problem}; the previous checkpoint is intact")


_staging_counter = itertools.count()


def _stage(folder: str, objects: dict[str, Any], itr: int, slot: str) -> str:
    """Every part and then the manifest, fsynced, in a fresh staging folder; or nothing left
    behind."""
    sets = os.path.join(folder, SETS)
    staging = os.path.join(sets, f"{STAGING_PREFIX}{os.getpid()}-{next(_staging_counter)}")
    try:
        os.makedirs(sets, exist_ok=True)
        os.mkdir(staging)
        parts = {}
        for part, obj in objects.items():
            path = os.path.join(staging, f"{part}.pth")
            before_change()
            with open(path, "wb") as f:
                utils.torch_save(obj, f)
                f.flush()
                os.fsync(f.fileno())
            parts[part] = {"bytes": os.path.getsize(path), "sha1": file_digest(path)}
        manifest = {"format": MANIFEST_FORMAT, "itr": itr, "suffix": suffix_of(slot),
                    "parts": parts}
        before_change()
        with open(os.path.join(staging, MANIFEST), "w") as f:
            json.dump(manifest, f)
            f.flush()
            os.fsync(f.fileno())
        _fsync(staging)
    except BaseException as err:  # also a pickling error or Ctrl-C: no half staging left
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(err, OSError):
            raise _save_failed(err, folder) from None
        raise
    return staging


def _name_set(folder: str, staging: str, slot: str, itr: int) -> str:
    """The staging folder renamed to its final name in sets/: from here on it is a complete set."""
    set_folder = os.path.join(folder, SETS, f"{slot}-{itr:06d}-{secrets.token_hex(2)}")
    before_change()
    os.rename(staging, set_folder)
    _fsync(os.path.dirname(set_folder))
    return set_folder


def _swap_slot(folder: str, slot: str, set_folder: str) -> None:
    """The commit point: the slot link now points at the new set folder (one atomic rename)."""
    _replace_with_link(os.path.join(folder, slot), os.path.relpath(set_folder, folder))
    _fsync(folder)


def _replace_with_link(path: str, target: str) -> None:
    name = f"{LINK_TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    temporary = os.path.join(os.path.dirname(path), name)
    os.symlink(target, temporary)
    try:
        before_change()
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise


def _tidy(folder: str) -> None:
    """Make the flat names agree with the slot links, and drop what no slot uses any more: set
    folders (previous sets), staging folders of killed saves, temporaries. Idempotent: a tidy killed
    halfway is finished by the next one."""
    slots = slot_links(folder)
    for slot, set_folder in slots.items():
        manifest = read_set_manifest(set_folder)
        parts = manifest["parts"] if manifest else {}
        suffix = suffix_of(slot)
        for part in PARTS:
            path = part_path(folder, part, suffix)
            link = os.path.join(slot, f"{part}.pth")
            if part in parts and not (os.path.islink(path) and os.readlink(path) == link):
                _replace_with_link(path, link)  # also replaces a flat file of an earlier format
            elif part not in parts and os.path.lexists(path):
                before_change()
                os.remove(path)
        # the flat format's manifest: the slot link rules now
        if os.path.lexists(flat_manifest_path(folder, suffix)):
            before_change()
            os.remove(flat_manifest_path(folder, suffix))
    sets = os.path.join(folder, SETS)
    if os.path.isdir(sets):
        in_use = {os.path.realpath(path) for path in slots.values()}
        for name in os.listdir(sets):
            path = os.path.join(sets, name)
            if os.path.realpath(path) not in in_use:
                before_change()
                shutil.rmtree(path, ignore_errors=True)
    clean_temporaries(folder)


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# Recovering, cleaning

def recover(folder: str) -> None:
    """Finish what a killed save left: take over a complete staging folder of the earlier flat
    format, complete the part links, remove staging folders, unused set folders and temporaries.
    Only for the holder of the folder's lock, or a process that knows nobody else writes there."""
    if not os.path.isdir(folder):
        return
    try:
        _adopt_flat_stagings(folder)
        _tidy(folder)
    except OSError as err:
        problem = utils.describe_write_error(err, folder, "finish an interrupted checkpoint save")
        raise utils.WriteError(problem) from None


def _adopt_flat_stagings(folder: str) -> None:
    """Each complete staging folder of the earlier flat format becomes its slot's set."""
    for path, manifest in checkpoint_legacy.complete_flat_stagings(folder):
        slot = slot_name(manifest["suffix"])
        os.makedirs(os.path.join(folder, SETS), exist_ok=True)
        _swap_slot(folder, slot, _name_set(folder, path, slot, manifest["itr"]))


def clean_temporaries(folder: str) -> None:
    """Remove utils.write_atomically's `.tmp_*` leftovers and half-made links of killed processes.
    Only for the lock holder, like recover."""
    if not os.path.isdir(folder):
        return
    for name in os.listdir(folder):
        if name.startswith((TEMP_PREFIX, LINK_TEMP_PREFIX)):
            _remove(os.path.join(folder, name))


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


# ---------------------------------------------------------------------------------------------
# Reading

def slot_links(folder: str) -> dict[str, str]:
    """slot -> the set folder its link points at, for every slot link in the folder."""
    if not os.path.isdir(folder):
        return {}
    return {name: os.path.join(folder, os.readlink(os.path.join(folder, name)))
            for name in sorted(os.listdir(folder))
            if SLOT.match(name) and os.path.islink(os.path.join(folder, name))}


def _located(folder: str, suffix: str) -> tuple[str, dict | None, str]:
    """Where a set's files are read from: (folder of its parts, manifest or None, format).
    Formats: 'set' (a set folder behind the slot link), 'flat' (checkpoint[_S].json beside flat
    files), 'legacy' (flat files without a manifest)."""
    link = os.path.join(folder, slot_name(suffix))
    if os.path.islink(link):
        # Followed once: a save swapping the link meanwhile cannot mix two sets into this read.
        set_folder = os.path.join(folder, os.readlink(link))
        manifest = read_set_manifest(set_folder)
        if manifest is None:
            path = os.path.join(set_folder, MANIFEST)
            raise utils.UsageError(f"{describe(folder, suffix)} is damaged: {path} is missing or "
                                   "unreadable; choose another set with --load_weights")
        return set_folder, manifest, "set"
    manifest = checkpoint_legacy.read_flat_manifest(folder, suffix)
    return folder, manifest, "legacy" if manifest is None else "flat"


def _file_of(where: str, part: str, suffix: str, kind: str) -> str:
    return os.path.join(where, f"{part}.pth") if kind == "set" else part_path(where, part, suffix)


def read_manifest(folder: str, suffix: str = "") -> dict | None:
    """The set's manifest; None for no set or a legacy one; a damaged one is a UsageError."""
    return _located(folder, suffix)[1]


def has_checkpoint(folder: str, suffix: str = "") -> bool:
    """A complete set is there: every part its manifest lists, of the listed size; without a
    manifest (legacy), G and state_dict."""
    if not os.path.isdir(folder):
        return False
    where, manifest, kind = _located(folder, suffix)
    if manifest is not None:
        return all(os.path.isfile(_file_of(where, part, suffix, kind))
                   and os.path.getsize(_file_of(where, part, suffix, kind)) == saved["bytes"]
                   for part, saved in manifest["parts"].items())
    return all(os.path.isfile(part_path(folder, part, suffix)) for part in ("G", "state_dict"))


def existing_sets(folder: str) -> list[str]:
    """The slots that hold a set in any format (latest, copy0, best1, ...), for the refusal of a new
    run in a folder that has checkpoints."""
    if not os.path.isdir(folder):
        return []
    names = set(slot_links(folder)) | checkpoint_legacy.flat_slots(folder)
    return sorted(names, key=lambda s: (s != LATEST, s))


def load_set(folder: str, suffix: str, parts: Iterable[str], optional: tuple[str, ...] = (),
             hint: str = "") -> dict[str, Any]:
    """The requested parts of one set, checked to be of one save; `optional` parts may be absent.
    Every problem is one UsageError line; hint says what to do (the flags naming the set)."""
    hint, parts = hint or DEFAULT_HINT, list(parts)
    for attempt in range(3):
        target = _link_target(folder, suffix)
        try:
            where, manifest, kind = _located(folder, suffix)
            if manifest is None:
                return checkpoint_legacy.load_legacy(folder, suffix, parts, optional, hint)
            return _load_verified(where, folder, suffix, parts, optional, hint, manifest, kind)
        except utils.UsageError:
            # A save may have swapped the slot and removed the set read from: read the new one.
            if attempt == 2 or _link_target(folder, suffix) == target:
                raise
    raise AssertionError("unreachable")


def _link_target(folder: str, suffix: str) -> str | None:
    try:
        return os.readlink(os.path.join(folder, slot_name(suffix)))
    except OSError:
        return None


def _load_verified(where: str, folder: str, suffix: str, parts: list[str],
                   optional: tuple[str, ...],
                   hint: str, manifest: dict, kind: str) -> dict[str, Any]:
    itr = manifest["itr"]
    missing = [p for p in parts if p not in manifest["parts"] and p not in optional]
    if missing:
        raise utils.UsageError(f"{describe(folder, suffix)} (iteration {itr}) has no "
                               f"{', '.join(missing)}; {hint}")
    wanted = [p for p in parts if p in manifest["parts"]]
    # state_dict.pth is checked even when not asked for: it holds the iteration of the weights
    state_part = ["state_dict"] if "state_dict" in manifest["parts"] else []
    checked = list(dict.fromkeys(wanted + state_part))
    objects = {part: _load_listed(_file_of(where, part, suffix, kind), folder, suffix, part,
                                  manifest, hint, kind)
               for part in checked}
    state = objects.get("state_dict")
    if state is not None and state.get("itr") != itr:
        problem = f"state_dict.pth is at iteration {state.get('itr')}, the set at {itr}"
        raise _damaged(folder, suffix, problem, kind)
    return {part: objects[part] for part in wanted}


def _load_listed(path: str, folder: str, suffix: str, part: str, manifest: dict, hint: str,
                 kind: str) -> dict:
    """A part the manifest lists, hashed and loaded from one open file: the loaded bytes are the
    checked ones."""
    saved, itr = manifest["parts"][part], manifest["itr"]
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        problem = f"{os.path.basename(path)} of iteration {itr} is missing"
        raise _damaged(folder, suffix, problem, kind) from None
    with f:
        name, size = os.path.basename(path), os.fstat(f.fileno()).st_size
        if size != saved["bytes"]:  # truncated, say, by a full disk or a copy that stopped
            problem = f"{name} has {size} bytes, the file saved at iteration {itr} had " \
                      f"{saved['bytes']}"
            raise _damaged(folder, suffix, problem, kind)
        if digest(f) != saved["sha1"]:
            raise _damaged(folder, suffix, f"{name} is not the file saved at iteration {itr}", kind)
        f.seek(0)
        return load_dict(f, path, part, hint)


def _damaged(folder: str, suffix: str, problem: str, kind: str) -> utils.UsageError:
    manifest = MANIFEST if kind == "set" else os.path.basename(flat_manifest_path(folder, suffix))
    return utils.UsageError(f"{describe(folder, suffix)} is damaged: {problem}; it was changed "
                            f"after the save (its {manifest} lists what was saved): restore it, or "
                            "choose another set with --load_weights")


# ---------------------------------------------------------------------------------------------
# Rotation and the best set

def saved_iteration(folder: str, suffix: str) -> int:
    """The iteration of a set: -1 for none there, 0 for one whose iteration cannot be read (the
    oldest, so rotation overwrites it first)."""
    try:
        manifest = read_manifest(folder, suffix)
    except utils.UsageError:
        return 0
    if manifest is None:
        return checkpoint_legacy.legacy_iteration(folder, suffix)
    return manifest["itr"]


def next_slot(folder: str, prefix: str, count: int, protected: str | None = None,
              itr: int | None = None) -> str:
    """The suffix to save a rotating set to (copy0, copy1, ... or best0, ...): the slot holding
    iteration `itr` already (a save of it made again after a kill: it replaces itself, as a run
    never killed has one set per iteration), else a free slot, else the one of the oldest
    iteration; never `protected` (the set this run resumed from) unless it is the only slot."""
    if count < 1:
        raise ValueError(f"rotation over {count} slots")
    slots = [f"{prefix}{i}" for i in range(count)]
    candidates = [s for s in slots if s != protected] or slots
    iterations = {s: saved_iteration(folder, s) for s in candidates}
    same = [s for s in candidates if itr is not None and iterations[s] == itr]
    return same[0] if same else min(candidates, key=lambda s: (iterations[s], slots.index(s)))


def best_sets(folder: str) -> list[str]:
    """The best sets the folder holds (best0, best1, ...), sorted by name."""
    return sorted(slot for slot in existing_sets(folder) if slot.startswith("best"))


def best_slot(folder: str, hint: str = DEFAULT_HINT) -> str:
    """The best of the best sets (best0, best1, ...): by the metric the run selected them with
    (--which_best in its saved config), each set's own value being its state_dict's best_<metric>.
    (The best slots rotate oldest-first, so best0 is not the best one.)"""
    candidates = best_sets(folder)
    if not candidates:
        raise utils.UsageError(f"--load_weights best: {folder} holds no best checkpoint (best0, "
                               "best1, ...: saved when an in-loop evaluation improves "
                               f"--which_best); {hint}")
    scored = []
    for slot in candidates:
        state = load_set(folder, slot, ["state_dict"], hint=hint)["state_dict"]
        metric = (state.get("config") or {}).get("which_best", "IS")
        # the set's own evaluation; else the best so far when it was saved (the same value here,
        # where a best set is saved after its metric was counted; BigGAN-PyTorch saved it before)
        value = (state.get("metrics") or {}).get(METRIC_KEY[metric], state.get(f"best_{metric}"))
        if isinstance(value, (int, float)):
            scored.append((metric, float(value), slot))
    if not scored:
        raise utils.UsageError(f"--load_weights best: the best checkpoints in {folder} record no "
                               f"metric value; name one ({', '.join(candidates)})")
    metric = scored[-1][0]
    choose = BETTER.get(metric, max)
    return choose((s for s in scored if s[0] == metric), key=lambda s: s[1])[2]


def resolve_suffix(folder: str, suffix: str, hint: str = DEFAULT_HINT) -> str:
    """--load_weights as the user may write it: '' or 'latest' (the latest set), 'best' (the best of
    the best sets), or a slot (copy1, best0); anything else is refused (set_name)."""
    if suffix and not SET_NAME.match(suffix):
        raise utils.UsageError(f"{suffix!r} is no checkpoint set (those are {SET_NAMES}); {hint}")
    if suffix == LATEST:
        return ""
    if suffix == "best":
        return best_slot(folder, hint)
    return suffix
