"""Helpers every script shares: one-line errors, the device, seeding, writing files atomically
(every failure one line), argument types, reading files the user points at. Imports no module of the
project."""
from __future__ import annotations

import argparse
import errno
import itertools
import json
import math
import os
import random
import shutil
import signal
import sys
import tempfile
import types
import typing
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
            raise UsageError(f"--device {requested} asked for CUDA, but no CUDA device is "
                             "available; use --device cpu or leave --device out")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_rng(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def first_line(err: BaseException, limit: int = 200) -> str:
    """An exception as one line for an error message: its first line (torch's messages run long)."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:limit]


# ---------------------------------------------------------------------------------------------
# Writing files: atomically, and every failure one line.

TEMP_PREFIX = ".tmp_"  # write_atomically's temporaries; the next start of a run removes leftovers


class WriteError(UsageError):
    """A file could not be written (full disk, no permission, read-only file system): the message
    says what failed, what was kept and what to do; whoever knows more (a training run: its last
    checkpoint) may add to it."""


def describe_write_error(err: OSError, where: str, action: str) -> str:
    """One line for an OSError while writing in `where` (a file or folder)."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"no space left on device in {where} to {action}: free space there, or write "
                "elsewhere (--base_dir, or the --weights_root / --logs_root / --samples_root / "
                "--data_root it is under)")
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason = "read-only file system" if err.errno == errno.EROFS else "permission denied"
        return (f"cannot write to {where} to {action}: {reason}; make it writable, or write "
                "elsewhere (--base_dir, or the --weights_root / --logs_root / --samples_root / "
                "--data_root it is under)")
    return f"cannot {action} in {where}: {err.strerror or err}"


class _RecordingWriter:
    """A binary file whose write remembers the OSError it raised: torch.save reports some failed
    writes as a RuntimeError ('unexpected pos ...') that has lost the errno."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self.f.flush()


def torch_save(obj: Any, f) -> None:
    """torch.save into an open binary file; a failed write raises the OSError behind it."""
    writer = _RecordingWriter(f)
    try:
        torch.save(obj, writer)
    except Exception:
        if writer.error is not None:
            raise writer.error from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def replace_atomically(path: str, write_path: Callable[[str], None]) -> None:
    """write_path(tmp) fills a temp file next to path, which then replaces path in one rename, so
    a crash never leaves half a file (and the temp file never outlives a failure). A full disk or a
    folder that cannot be written is a WriteError; path keeps what it held."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX, suffix=os.path.basename(path))
        os.close(fd)
        write_path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        _kill_before_replace_for_tests()
        os.replace(tmp, path)
    except OSError as err:
        kept = f"{path} is unchanged" if os.path.exists(path) else f"nothing was written to {path}"
        raise WriteError(f"{describe_write_error(err, folder, f'write {os.path.basename(path)}')}; "
                         f"{kept}") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


_replacements = itertools.count(1)


def _kill_before_replace_for_tests() -> None:
    """Fault injection, for tests only: CGT_KILL_AT_OUTPUT=K SIGKILLs the process right before the
    K-th atomic replace (the worst moment: the file is written, not yet in place)."""
    kill_at = os.environ.get("CGT_KILL_AT_OUTPUT")
    if next(_replacements) == int(kill_at or 0):
        os.kill(os.getpid(), signal.SIGKILL)


def remove_stale_temporaries(paths: list[str]) -> None:
    """Remove what killed writers of these files left (TEMP_PREFIX + random + the file's name)."""
    for path in paths:
        folder, name = os.path.split(os.path.abspath(path))
        if os.path.isdir(folder):
            for entry in os.listdir(folder):
                if (entry.startswith(TEMP_PREFIX) and entry.endswith(name)
                        and len(entry) > len(TEMP_PREFIX) + len(name)):
                    os.remove(os.path.join(folder, entry))


def copy_atomically(origin: str, target: str) -> None:
    """A copy of the file or folder origin at target, whole or not at all: a file through
    replace_atomically, a folder copied under a hidden temporary name beside target and renamed into
    place, so a kill never leaves a partial copy that a later run would take for the whole."""
    if not os.path.isdir(origin):
        replace_atomically(target, lambda tmp: shutil.copyfile(origin, tmp))
        return
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=TEMP_PREFIX)
    try:
        shutil.copytree(origin, staging, dirs_exist_ok=True)
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700 folders
        os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_atomically(path: str, write: Callable, binary: bool = False) -> None:
    """write(file) into a temp file next to path, then rename it (replace_atomically)."""
    def write_file(tmp: str) -> None:
        with open(tmp, "wb" if binary else "w", newline=None if binary else "") as f:
            write(f)
    replace_atomically(path, write_file)


def atomic_save(obj: Any, path: str) -> None:
    """torch.save, written atomically."""
    write_atomically(path, lambda f: torch_save(obj, f), binary=True)


def append_jsonl(path: str, record: dict) -> None:
    """One JSON line at the end of a log; a failed write is a WriteError (earlier lines stay)."""
    line = json.dumps(record) + "\n"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "a") as f:
            f.write(line)
    except OSError as err:
        raise WriteError(f"{describe_write_error(err, path, 'append to the log')}; its earlier "
                         "lines are intact") from None


def read_jsonl(path: str) -> list[dict]:
    """The records of a JSON-lines log (append_jsonl's); a last line cut short (the writer lost
    power mid-line) is left out."""
    with open(path) as f:
        lines = f.read().split("\n")
    records = []
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if index < len(lines) - 1:  # a complete line that is no JSON: the log is damaged
                raise UsageError(f"{path}, line {index + 1}: not a JSON record; repair or remove "
                                 "the log") from None
    return records


# ---------------------------------------------------------------------------------------------
# Argument types for every script's flags (train.py's flags themselves: flags.py).

# Argument types: a bad value is refused at parse time by argparse, in one line naming the flag
# ("error: argument --save_every: must be at least 1, got 0"), with exit code 2.

def at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    parse.__name__ = "integer"  # argparse names the type in "invalid integer value: 'x'"
    return parse


def float_in(low: float, high: float = math.inf, low_open: bool = False,
             high_open: bool = False) -> Callable[[str], float]:
    """A finite float in [low, high] (an open end with low_open / high_open)."""
    def parse(text: str) -> float:
        value = float(text)
        below = value <= low if low_open else value < low
        above = value >= high if high_open else value > high
        if not math.isfinite(value) or below or above:
            interval = (f"{'(' if low_open else '['}{low:g}, "
                        f"{high:g}{')' if high_open or high == math.inf else ']'}")
            raise argparse.ArgumentTypeError(f"must be a number in {interval}, got {text}")
        return value
    parse.__name__ = "number"
    return parse


POSITIVE = float_in(0, low_open=True)
NON_NEGATIVE = float_in(0)
BETA = float_in(0, 1, high_open=True)


def device_name(text: str) -> str:
    """A device torch can name ('' = choose later); whether CUDA exists is pick_device's
    business."""
    if text:
        try:
            torch.device(text)
        except RuntimeError:
            raise argparse.ArgumentTypeError(f"must be a torch device such as cpu, cuda or cuda:1, "
                                             f"got {text!r}") from None
    return text


class HelpFormatter(argparse.HelpFormatter):
    """Appends the default to a flag's help where it says something ('' and off switches do not)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        switch = action.nargs == 0  # --flag / --no_flag: the help says what giving it does
        unsaid = action.default is None or action.default in ("", argparse.SUPPRESS)
        if switch or unsaid or "(default" in help_text or not action.option_strings:
            return help_text
        return help_text + " (default: %(default)s)"


# ---------------------------------------------------------------------------------------------
# Reading files the user points at, and logs.

def load_file(path: str, what: str, hint: str) -> Any:
    """torch.load of a file the user pointed at; a missing or unreadable file is one clear error."""
    if not os.path.isfile(path):
        raise UsageError(f"{what} {path} does not exist; {hint}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a truncated or foreign file
        raise UsageError(f"{path} is not a readable {what} ({first_line(err)}); {hint}") from None


JSON_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
                   dict: "an object", list: "a list", type(None): "null"}


def json_type_name(kind: Any) -> str:
    """How a message names a type of read_json_object's key_types ('a list of strings')."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(json_type_name(arg) for arg in args)
    if origin is list:
        item = json_type_name(args[0]).split(" ", 1)[-1]  # 'a string' -> 'string'
        return f"a list of {item}s"
    if origin is dict:
        return f"an object whose values are each {json_type_name(args[1])}"
    return JSON_TYPE_NAMES[kind]


def json_type_matches(value: Any, kind: Any) -> bool:
    """value (parsed JSON) is of kind: int, float (an integer too), str, bool, dict, list, None,
    list[X], dict[str, X] or a union of these (int | None)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return any(json_type_matches(value, arg) for arg in args)
    if origin is list:
        return isinstance(value, list) and all(json_type_matches(item, args[0]) for item in value)
    if origin is dict:
        return isinstance(value, dict) and all(json_type_matches(item, args[1])
                                               for item in value.values())
    if kind is type(None):
        return value is None
    if isinstance(value, bool) and kind is not bool:  # JSON true is no number
        return False
    return isinstance(value, (int, float) if kind is float else kind)


def names_a_folder_inside(root: str, name: Any) -> bool:
    """name is a relative path that stays inside root (judged by the text, so a dataset folder
    that is a link to elsewhere, a common way to keep data on another disk, is fine)."""
    if not isinstance(name, str) or not name or os.path.isabs(name):
        return False
    root = os.path.abspath(root)
    target = os.path.normpath(os.path.join(root, name))
    return target != root and os.path.commonpath([root, target]) == root


def read_json_object(path: str, hint: str, key_types: dict[str, Any] | None = None,
                     required: tuple[str, ...] = (),
                     folders: dict[str, tuple[str, str]] | None = None) -> dict | None:
    """The JSON object in `path`; None when there is no such file. The one reader of the JSON files
    the user points at (dataset.json, config.json): a file that is not a JSON object, lacks a
    `required` key, holds a key of another type than `key_types` says (key -> int, str, list[str],
    int | None, ...; a key not listed is not checked), or names a folder outside its root
    (`folders`: key -> (what the root is, the root); the key holds a folder name or a list of them)
    is one clear error naming the file and the key, ending in `hint` (what to do about it)."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            value = json.load(f)
    except (OSError, ValueError) as err:
        raise UsageError(f"{path} is damaged ({first_line(err)}); {hint}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{path} is damaged (not a JSON object); {hint}")
    for key in required:
        if key not in value:
            raise UsageError(f"{path} is damaged: it has no {key}; {hint}")
    for key, kind in (key_types or {}).items():
        if key in value and not json_type_matches(value[key], kind):
            raise UsageError(f"{path} is damaged: {key} must be {json_type_name(kind)}, got "
                             f"{json.dumps(value[key])[:80]}; {hint}")
    for key, (what, root) in (folders or {}).items():
        names = value.get(key)
        if names is None or names == "":  # names no folder
            continue
        for name in names if isinstance(names, list) else [names]:
            if not names_a_folder_inside(root, name):
                raise UsageError(f"{path}: {key} {name!r} points outside {what} {root}; only "
                                 f"folders inside it are followed: {hint}")
    return value
