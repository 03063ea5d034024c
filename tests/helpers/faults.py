"""Fault injection for the tests: checkpoints.before_change, the seam called right before each
file-system change a checkpoint save makes, replaced by one that SIGKILLs the process at its K-th
call, counted across the whole process.

In a test's own process: kill_at_change(K). For a command line (CommandLines.run, torchrun):
killed_at_change(K, argv) is `python faults.py K *argv`, which installs the kill and runs argv
(a script and its arguments, or "-c" and a program) as `python *argv` would."""
import itertools
import os
import runpy
import signal
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def kill_at_change(k: int) -> None:
    """From now on, this process SIGKILLs itself right before checkpoints' k-th change."""
    import checkpoints
    changes = itertools.count(1)

    def before_change() -> None:
        if next(changes) == k:
            os.kill(os.getpid(), signal.SIGKILL)
    checkpoints.before_change = before_change


def killed_at_change(k: int | None, argv: list) -> list:
    """The command line that runs argv with kill_at_change(k) installed; argv itself for no k."""
    return [os.path.abspath(__file__), str(k), *argv] if k else list(argv)


def main(argv: list[str]) -> None:
    k, *command = argv
    sys.path.insert(1, ROOT)
    kill_at_change(int(k))
    if command[0] == "-c":
        sys.path[0], sys.argv = "", ["-c", *command[2:]]
        exec(compile(command[1], "<string>", "exec"), {"__name__": "__main__"})
    else:
        sys.path[0], sys.argv = os.path.dirname(os.path.abspath(command[0])), command
        runpy.run_path(command[0], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
