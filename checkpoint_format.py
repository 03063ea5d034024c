"""The on-disk vocabulary of checkpoint sets (checkpoints.py): slots, parts and their flat
BigGAN-PyTorch names, the manifest that lists a set's parts, and reading one part with one clear
error. Nothing here changes a folder."""
from __future__ import annotations

import hashlib
import json
import os
import re
from typing import IO, Any

import torch

import utils

PARTS = ("G", "G_optim", "D", "D_optim", "state_dict", "G_ema")
SETS = "sets"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 2
LATEST = "latest"  # the slot link of the set without suffix
SLOT = re.compile(r"^(latest|copy\d+|best\d+)$")


def slot_name(suffix: str) -> str:
    """The slot link of a suffix: '' (BigGAN-PyTorch's latest set) -> 'latest'."""
    return suffix or LATEST


def suffix_of(slot: str) -> str:
    return "" if slot == LATEST else slot


def part_name(part: str, suffix: str = "") -> str:
    return f"{part}{'_' + suffix if suffix else ''}.pth"


def part_path(folder: str, part: str, suffix: str = "") -> str:
    """BigGAN-PyTorch's flat path of a part (G_copy0.pth): a link into the slot here."""
    return os.path.join(folder, part_name(part, suffix))


def flat_manifest_path(folder: str, suffix: str = "") -> str:
    """The manifest of the earlier flat format (checkpoint[_SUFFIX].json)."""
    return os.path.join(folder, f"checkpoint{'_' + suffix if suffix else ''}.json")


def describe(folder: str, suffix: str) -> str:
    return f"checkpoint {suffix or '(latest)'} in {folder}"


def is_manifest(manifest: Any) -> bool:
    """A manifest of either format: the iteration, the slot's suffix, each part's size and SHA-1."""
    return (isinstance(manifest, dict) and isinstance(manifest.get("itr"), int)
            and isinstance(manifest.get("suffix"), str) and isinstance(manifest.get("parts"), dict)
            and all(isinstance(p, dict) and isinstance(p.get("bytes"), int)
                    and isinstance(p.get("sha1"), str) for p in manifest["parts"].values()))


def read_set_manifest(set_folder: str) -> dict | None:
    """A set folder's manifest; None when it has none (yet) or it is torn."""
    try:
        with open(os.path.join(set_folder, MANIFEST)) as f:
            manifest = json.load(f)
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    return manifest if is_manifest(manifest) else None


def file_digest(path: str) -> str:
    with open(path, "rb") as f:
        return digest(f)


def digest(f: IO[bytes]) -> str:
    """The SHA-1 of an open file, read from where it stands to its end."""
    sha1 = hashlib.sha1()
    for block in iter(lambda: f.read(1 << 22), b""):
        sha1.update(block)
    return sha1.hexdigest()


def load_dict(f: IO[bytes], path: str, part: str, hint: str) -> dict:
    """One part's state dict from an open file; a foreign or truncated file is one UsageError."""
    try:
        obj = torch.load(f, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a truncated or foreign file
        raise utils.UsageError(f"{path} is not a readable checkpoint {part} "
                               f"({utils.first_line(err)}); {hint}") from None
    if not isinstance(obj, dict):
        raise utils.UsageError(f"{path} holds a {type(obj).__name__}, not the {part} state dict "
                               f"a checkpoint has; {hint}")
    return obj
