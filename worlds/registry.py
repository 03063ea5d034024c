"""The worlds by name, for the command lines that take --world: the one module that imports every
world, so that a world may import the tools it builds with (train_classifier) without a circle.

It also gives the world of a study folder: experiments.study writes the description of its world
(name, new and old classes, the split's assets) into its --out as world.json before any run, and
every tool that reads a study folder (experiments.semantics, experiments.forgetting --study) takes
its world from there, so that a study of another split (`--new`) is analysed as that split.
"""
from __future__ import annotations

import dataclasses
import json
import os

import utils
from worlds import World, fashion, toy

# toy.py's World names no classes; its split is fixed.
WORLDS = {"fashion": fashion.WORLD, "toy": dataclasses.replace(
    toy.WORLD, new_classes=tuple(toy.NEW_CLASSES), old_classes=tuple(toy.OLD_CLASSES))}
NAMES = tuple(WORLDS)
STUDY_WORLD = "world.json"  # a study folder's description of its world


def get(name: str) -> World:
    if name not in WORLDS:
        raise utils.UsageError(f"unknown world {name!r}; use one of {', '.join(NAMES)}")
    return WORLDS[name]


def description(world: World, folder: str) -> dict:
    """What a study folder records of its world: its name, the new and old classes, and the folder
    of the split's own assets (relative to `folder` when inside it; None: the project's assets/)."""
    assets = None
    if world.assets:
        relative = os.path.relpath(os.path.abspath(world.assets), os.path.abspath(folder))
        assets = os.path.abspath(world.assets) if relative.startswith("..") else relative
    return {"world": world.name, "new_classes": list(world.new_classes),
            "old_classes": list(world.old_classes), "assets": assets}


def study_flags(described: dict) -> str:
    """The study's flags that give the world a description describes."""
    if described.get("assets"):
        return f"--new {','.join(described.get('new_classes', []))}"
    return f"--world {described.get('world')}"


def same_split(one: dict, other: dict, folder: str) -> bool:
    def key(described: dict) -> tuple:
        assets = described.get("assets")
        return (described.get("world"), sorted(described.get("new_classes") or []),
                sorted(described.get("old_classes") or []),
                os.path.abspath(os.path.join(folder, assets)) if assets else None)
    return key(one) == key(other)


def world_of(described: dict, folder: str) -> World:
    """The World a study folder's description describes; refused when no world has that split."""
    name, assets = described.get("world"), described.get("assets")
    if name == "fashion" and assets:
        new = tuple(described.get("new_classes") or ())
        world = fashion.world(new, os.path.join(folder, assets))
    else:
        world = get(name)
    if not same_split(description(world, folder), described, folder):
        raise utils.UsageError(
            f"{os.path.join(folder, STUDY_WORLD)} describes classes the {name} world does not have "
            f"({described}); it was edited or written by another version: run the study again into "
            "a new --out")
    return world


def read_study_world(folder: str) -> dict | None:
    path = os.path.join(folder, STUDY_WORLD)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def study_world(folder: str) -> World:
    """The world of a study folder (experiments.study's --out), from the description it holds."""
    described = read_study_world(folder)
    if described is None:
        if not os.path.isdir(folder):
            raise utils.UsageError(f"--study {folder}: no such folder; give the --out of an "
                                   "experiments.study run")
        raise utils.UsageError(
            f"--study {folder} holds no {STUDY_WORLD}, the description of its world and split (old "
            "and new classes) that experiments.study writes into its --out before any run. A study "
            "folder made before studies wrote one: run its study command once more on it, with the "
            "--world or --new it was made with and a shot count, seed and method it holds (e.g. "
            f"`python -m experiments.study --out {folder} --world fashion --shots 10 --seeds 0 "
            "--methods BN` for the default Fashion-MNIST split): it records the world and runs "
            "nothing it holds")
    return world_of(described, folder)


def check_study_world(folder: str, world: World) -> None:
    """Refused: a study folder that holds a study of another world or split."""
    described = read_study_world(folder)
    if described is not None and not same_split(described, description(world, folder), folder):
        wanted = description(world, folder)
        raise utils.UsageError(
            f"--out {folder} holds a study of the {described.get('world')} world with new classes "
            f"{', '.join(described.get('new_classes') or [])} ({study_flags(described)}), not of "
            f"the {world.name} world with new classes {', '.join(world.new_classes)} "
            f"({study_flags(wanted)}): continue it with {study_flags(described)}, or give this "
            "study another --out")


def record_study_world(folder: str, world: World) -> None:
    """The study folder's description of its world, written unless there (refused: another one)."""
    check_study_world(folder, world)
    path = os.path.join(folder, STUDY_WORLD)
    if not os.path.isfile(path):
        os.makedirs(folder, exist_ok=True)
        text = json.dumps(description(world, folder), indent=1, ensure_ascii=False) + "\n"
        utils.write_atomically(path, lambda f: f.write(text))
