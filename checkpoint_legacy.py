"""Readers of the checkpoint formats that came before set folders (checkpoints.py reads and
replaces them): BigGAN-PyTorch's and the official code's flat files without a manifest, checked as
far as they can be, with a note; flat files with a `checkpoint[_SUFFIX].json` manifest (this
project before set folders); and that format's staging folders (`.saving_*`), which a save killed
while publishing left and the next start takes over as the slot's set."""
from __future__ import annotations

import json
import os
import re
import shutil

import torch

import utils
from checkpoint_format import (describe, file_digest, flat_manifest_path, is_manifest, load_dict,
                               part_path, read_set_manifest, slot_name)

OLD_STAGING_PREFIX = ".saving_"  # staging folders of the earlier flat format
FLAT_FILE = re.compile(r"^(?:checkpoint|state_dict|G)(?:_(copy\d+|best\d+))?\.(?:json|pth)$")


def read_flat_manifest(folder: str, suffix: str) -> dict | None:
    """The flat format's manifest of a set; None when there is none (a legacy set, or no set); a
    damaged one is a UsageError."""
    path = flat_manifest_path(folder, suffix)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, ValueError) as err:
        manifest, problem = None, str(err)
    else:
        problem = "not a checkpoint manifest"
    if not is_manifest(manifest):
        raise utils.UsageError(f"{path} is damaged ({problem}); delete it to load the set "
                               "unverified, or choose another set with --load_weights")
    return manifest


def flat_slots(folder: str) -> set[str]:
    """The slots that hold a set of a flat format (latest, copy0, best1, ...)."""
    names = set()
    for name in os.listdir(folder):
        flat = FLAT_FILE.match(name)
        if flat and os.path.exists(os.path.join(folder, name)):  # a link must lead to a file
            names.add(slot_name(flat.group(1) or ""))
    return names


def load_legacy(folder: str, suffix: str, parts: list[str], optional: tuple[str, ...],
                hint: str) -> dict:
    """A set without a manifest (BigGAN-PyTorch, the official code): checked as far as it can be."""
    what = describe(folder, suffix)
    present = [p for p in parts if os.path.isfile(part_path(folder, p, suffix))]
    absent = [p for p in parts if p not in present and p not in optional]
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
            objects[part] = load_dict(f, path, part, hint)
    state_path = part_path(folder, "state_dict", suffix)
    if "state_dict" not in objects and objects and os.path.isfile(state_path):
        with open(state_path, "rb") as f:  # unrequested, still a sign of a damaged set
            load_dict(f, state_path, "state_dict", hint)
    if objects:
        print(f"note: {what} has no manifest (written by BigGAN-PyTorch or the official code): "
              "loaded unverified")
    return objects


def legacy_iteration(folder: str, suffix: str) -> int:
    """The iteration in a legacy set's state_dict.pth: -1 for none there, 0 for an unreadable
    one."""
    path = part_path(folder, "state_dict", suffix)
    if not os.path.isfile(path):
        return -1
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        return int(state.get("itr", 0))
    except Exception:  # an unreadable legacy file
        return 0


def complete_flat_stagings(folder: str) -> list[tuple[str, dict]]:
    """The `.saving_*` folders of the earlier flat format that hold a whole set, with their
    manifests, for the caller to make the slots' sets. One with a valid manifest is a set killed
    while publishing: the parts it no longer holds were renamed to their flat names already and are
    moved back (when they are the files the manifest lists). One without a valid manifest never
    published anything: removed. One whose part is gone altogether is left for the user to look at,
    the slot untouched."""
    complete = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not (name.startswith(OLD_STAGING_PREFIX) and os.path.isdir(path)):
            continue
        manifest = read_set_manifest(path)
        if manifest is None:
            shutil.rmtree(path, ignore_errors=True)
            continue
        for part, saved in manifest["parts"].items():
            staged = os.path.join(path, f"{part}.pth")
            published = part_path(folder, part, manifest["suffix"])
            if not os.path.exists(staged) and _is_listed_file(published, saved):
                os.rename(published, staged)
        if all(os.path.isfile(os.path.join(path, f"{part}.pth")) for part in manifest["parts"]):
            complete.append((path, manifest))
    return complete


def _is_listed_file(path: str, saved: dict) -> bool:
    return (os.path.isfile(path) and not os.path.islink(path)
            and os.path.getsize(path) == saved["bytes"] and file_digest(path) == saved["sha1"])
