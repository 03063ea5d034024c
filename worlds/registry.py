"""The worlds by name, for the command lines that take --world: the one module that imports every
world, so that a world may import the tools it builds with (train_classifier) without a circle."""
from __future__ import annotations

import utils
from worlds import World, fashion, toy

WORLDS = {"fashion": fashion.WORLD, "toy": toy.WORLD}
NAMES = tuple(WORLDS)


def get(name: str) -> World:
    if name not in WORLDS:
        raise utils.UsageError(f"unknown world {name!r}; use one of {', '.join(NAMES)}")
    return WORLDS[name]
