"""Runs the project's command lines for the tests, each in a child forked from one Python that has
imported torch and the project once: `python train.py ...` costs ~4 s of imports before it parses a
flag, and the slow tests run some twenty command lines.

A child is a command line's own process: the script runs as __main__ (its `if __name__` block,
as `python SCRIPT` or `python -m MODULE` runs it) with its argv, environment, working directory,
stdin from /dev/null and stdout/stderr into files; its exit code is Python's (SystemExit's code, 1
after an uncaught exception, -N when killed by signal N). What it shares with the parent is only
what an import computes, done before the fork as in a fresh process; the parent runs no torch
operation, so no thread pool exists to be lost in the fork (a child forked after OpenMP ran hangs).

Protocol: one JSON request per stdin line {"argv", "env", "cwd", "timeout", "stdout", "stderr",
"patches"} (argv[0] a script path, "-m" and a module, or "-c" and a program; patches: [module,
attribute, value] set in the child before the command runs, e.g. a shorter budget), one JSON reply
per stdout line {"returncode", "timed_out"}. A child still running at its timeout is killed with
its process group.
"""
import atexit
import importlib
import json
import os
import runpy
import signal
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SITE_PATH = sys.path[1:]  # without this helper's folder, which `python SCRIPT` would not have
PRELOAD = ("torch", "torchvision", "numpy", "scipy.linalg", "PIL.Image", "matplotlib.pyplot",
           "train", "sample", "calculate_inception_moments", "prepare_dataset", "train_classifier",
           "explain", "make_hdf5", "worlds.toy", "experiments.study", "experiments.forgetting",
           "experiments.demo")


def run_command(argv: list[str]) -> int:
    """The exit code Python gives `python *argv` (argv[0]: a script, "-m" and a module, or "-c" and
    a program)."""
    try:
        if argv[0] == "-c":
            sys.path[:] = ["", *SITE_PATH]
            sys.argv = ["-c", *argv[2:]]
            exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__"})
        elif argv[0] == "-m":
            sys.path[:] = [os.getcwd(), *SITE_PATH]
            sys.argv = [argv[1], *argv[2:]]
            sys.modules.pop(argv[1], None)  # as in a fresh process: running it is its first import
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.path[:] = [os.path.dirname(os.path.abspath(argv[0])), *SITE_PATH]
            sys.argv = list(argv)
            runpy.run_path(argv[0], run_name="__main__")
        return 0
    except SystemExit as exit_:
        if exit_.code is None or isinstance(exit_.code, int):
            return exit_.code or 0
        print(exit_.code, file=sys.stderr)
        return 1
    except BaseException:  # as the interpreter does: the traceback on stderr, exit code 1
        traceback.print_exc()
        return 1


def child(request: dict) -> None:
    """In the forked child: become the command line's process, run it, exit with its code."""
    os.setpgid(0, 0)  # its own process group, killed as one at a timeout
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for fd, path, mode in ((0, os.devnull, os.O_RDONLY), (1, request["stdout"], os.O_WRONLY),
                           (2, request["stderr"], os.O_WRONLY)):
        target = os.open(path, mode)
        os.dup2(target, fd)
        os.close(target)
    for module, attribute, value in request["patches"]:
        setattr(importlib.import_module(module), attribute, value)
    code = run_command(request["argv"])
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def wait(pid: int, timeout: float) -> tuple[int, bool]:
    """(exit code, timed out) of the child, killing its process group after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), False
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), True
        time.sleep(0.02)


def serve() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()  # nothing buffered may be written twice, by the child too
        pid = os.fork()
        if pid == 0:
            child(request)
        code, timed_out = wait(pid, request["timeout"])
        print(json.dumps({"returncode": code, "timed_out": timed_out}), flush=True)


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    for module in PRELOAD:
        importlib.import_module(module)
    print(json.dumps({"ready": True}), flush=True)
    serve()
    os._exit(0)  # the tests wait for this exit: skip the seconds of torch's interpreter teardown
