"""Config and I/O helpers shared by the scripts: errors, devices, seeding, atomic writes."""
from __future__ import annotations

import os
import random
import sys
import tempfile
from typing import Any, Callable

import numpy as np
import torch


class UsageError(Exception):
    """A bad input from the user: the message says what is wrong and what to do."""


def run_main(main: Callable[[], Any]) -> None:
    """Run a script's main; a UsageError becomes one clear line on stderr and exit code 2."""
    try:
        main()
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def pick_device(requested: str | None = None) -> torch.device:
    """The one place the device is chosen: the request, else cuda if available, else cpu."""
    if requested:
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UsageError(f"--device {requested} asked for CUDA, but no CUDA device is available; "
                             "use --device cpu or leave --device out")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_rng(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def atomic_save(obj: Any, path: str) -> None:
    """torch.save through a temp file in the same folder and a rename, so a crash never leaves half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
