"""Shared test helpers: the reference fixtures (see tests/fixtures/README.md) and small configs."""
import json
import os
import subprocess
import sys
import tempfile

# Under pytest-xdist (README's test command: -n 2), each worker and every process a test starts
# computes on one thread: two workers of two threads each on a 2-core machine oversubscribe it,
# and OpenMP's spinning threads then make a 3 s test take minutes.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
FIXTURES = os.path.join(ROOT, "tests", "fixtures")

# Settings common to every reference fixture, besides the config stored in its keys.json.
FIXTURE_COMMON = dict(num_G_SVs=1, num_D_SVs=1, num_G_SV_itrs=1, num_D_SV_itrs=1, D_wide=True,
                      bottom_width=4, G_nl="relu", D_nl="relu")
# The official code that wrote each transfer fixture: ImageNet variant for i128, cifar/ for c32.
KP_VARIANT = {"i128_small": "imagenet", "c32_small": "cifar", "I128": "imagenet", "C100": "cifar"}


def fixture_path(*parts: str) -> str:
    return os.path.join(FIXTURES, *parts)


def load_fixture(*parts: str):
    return torch.load(fixture_path(*parts), weights_only=True)


def fixture_config(*parts: str) -> dict:
    with open(fixture_path(*parts)) as f:
        return {**json.load(f)["config"], **FIXTURE_COMMON}


def pytest_collection_modifyitems(items):
    """The slow tests first (in their order), so that two workers (README's `-n 2 --dist
    worksteal`) end together rather than one finishing a 40 s test after the other is done."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


class CommandLines:
    """Runs `python SCRIPT ARGS`, `python -m MODULE ARGS` or `python -c PROGRAM` as
    subprocess.run(capture_output=True, text=True) does, each in a child of one server that
    imported torch and the project once (tests/helpers/cli_server.py: what a child shares with a
    fresh process and what not)."""

    def __init__(self):
        server = os.path.join(ROOT, "tests", "helpers", "cli_server.py")
        self.server = subprocess.Popen([sys.executable, server], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert json.loads(self.server.stdout.readline()) == {"ready": True}

    def run(self, argv: list[str], env: dict | None = None, cwd: str = ROOT, timeout: float = 120,
            patches: tuple = (), kill_after: float | None = None) -> subprocess.CompletedProcess:
        """`patches`: (module, attribute, value) set in the child before the command runs.
        `kill_after`: the child is SIGKILLed after that many seconds, as a user kills a run at a
        random moment: its returncode -9 comes back (0 if it finished first), no TimeoutExpired."""
        argv = [str(arg) for arg in argv]
        with tempfile.TemporaryDirectory() as folder:
            out, err = os.path.join(folder, "stdout"), os.path.join(folder, "stderr")
            for path in (out, err):
                open(path, "w").close()
            request = {"argv": argv,
                       "env": dict(os.environ if env is None else env), "cwd": str(cwd),
                       "timeout": timeout if kill_after is None else kill_after,
                       "stdout": out, "stderr": err, "patches": list(patches)}
            self.server.stdin.write(json.dumps(request) + "\n")
            self.server.stdin.flush()
            line = self.server.stdout.readline()
            assert line, "the command-line server stopped (tests/helpers/cli_server.py)"
            reply = json.loads(line)
            with open(out) as stdout, open(err) as stderr:
                result = subprocess.CompletedProcess(["python", *argv], reply["returncode"],
                                                     stdout.read(), stderr.read())
        if reply["timed_out"] and kill_after is None:
            raise subprocess.TimeoutExpired(result.args, timeout, result.stdout, result.stderr)
        return result

    def close(self):
        self.server.stdin.close()
        self.server.wait(timeout=60)


def calling(entry: str) -> list[str]:
    """The head of a command line (`python -c ...`) that calls "module:function" with the rest of
    its argv as a script's __main__ block does (utils.run_main: a UsageError one line, exit code 2):
    an entry point without a script of its own, or one whose module the test patches (`-m MODULE`
    runs a second copy of the module, which the patches miss)."""
    module, function = entry.split(":")
    return ["-c", f"import sys, utils, {module}\n"
                  f"utils.run_main(lambda: {module}.{function}(sys.argv[1:]))"]


@pytest.fixture(scope="session")
def command_lines():
    """The project's command lines, run without paying Python's and torch's imports each time."""
    lines = CommandLines()
    yield lines
    lines.close()


class TinyBackbone(nn.Module):
    """A fixed random conv net standing in for Inception: images in [-1, 1] -> (8-d features,
    logits)."""

    metric_space = "tiny"

    def __init__(self, class_names=("a", "b", "c")):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.conv = nn.Conv2d(3, 8, 3, stride=2)
            self.head = nn.Linear(8, len(class_names))
        self.class_names = list(class_names)

    def forward(self, x):
        pool = torch.relu(self.conv(x)).mean(dim=(2, 3))
        return pool, self.head(pool)


class _FailingFile:
    """A file open for writing whose writes fail with an OSError once more than `after` bytes went
    in: what a full disk (ENOSPC) or a file system remounted read-only (EROFS) does to a writer."""

    def __init__(self, f, code: int, after: int):
        self.f, self.code, self.after, self.written = f, code, after, 0

    def write(self, data):
        self.written += len(data)
        if self.written > self.after:
            raise OSError(self.code, os.strerror(self.code))
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def inject_write_failure(monkeypatch, module, code: int, when=lambda path: True,
                         after_bytes: int = 0) -> None:
    """Files that `module` opens for writing (the builtin open, looked up in the module first) fail
    with errno `code` after `after_bytes` bytes when when(path) holds; no tmpfs or privileges
    needed."""
    import builtins

    def fake_open(path, mode="r", *args, **kwargs):
        f = builtins.open(path, mode, *args, **kwargs)
        writing = any(flag in mode for flag in "wax+")
        return _FailingFile(f, code, after_bytes) if writing and when(str(path)) else f
    monkeypatch.setattr(module, "open", fake_open, raising=False)
