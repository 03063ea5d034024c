"""Entry points run in children forked from one process, for the tests that kill runs (ForkedRuns).

Why forked: importing the project (torch, torchvision, scipy) costs seconds, a fork nothing, and a
test that kills and reruns a run a dozen times paid those seconds each time. The server imports and
never runs a torch operation itself: a child forked after OpenMP ran hangs in its first parallel
region. Each child is a run as the command line makes it: a process of its own, killed for real
(CGT_KILL_AT_WRITE=K, checkpoints.py; or SIGKILL after kill_after seconds), a UsageError one line on
stderr and exit code 2 (utils.run_main), any other exception a traceback and exit code 1.

Protocol (`python forked_runs.py`): one JSON job per line on stdin,
    {"call": "module:function", "argv": [...], "kill_at": K or null, "kill_after": seconds or null,
     "patches": [[module, attribute, value], ...] (set in the child),
     "output": the file for its stdout and stderr}
one JSON outcome per line on stdout: {"exit": code} or {"signal": number}, with "seconds".
"""
import importlib
import json
import os
import signal
import subprocess
import sys
import time
import traceback

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.dirname(TESTS), TESTS]
PRELOAD = ("utils", "train", "inception_utils", "experiments.runs", "experiments.demo")


def run_child(job: dict) -> None:
    """In the child: the entry point with its output in job['output']; never returns."""
    code = 1
    try:
        if job.get("kill_at"):
            os.environ["CGT_KILL_AT_WRITE"] = str(job["kill_at"])
        else:
            os.environ.pop("CGT_KILL_AT_WRITE", None)
        output = os.open(job["output"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(output, 1)
        os.dup2(output, 2)
        for module, attribute, value in job.get("patches", []):
            setattr(importlib.import_module(module), attribute, value)
        module, function = job["call"].split(":")
        entry = getattr(importlib.import_module(module), function)
        try:
            importlib.import_module("utils").run_main(lambda: entry(job["argv"]))
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:
            traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def wait(pid: int, kill_after: float | None) -> dict:
    deadline = None if kill_after is None else time.monotonic() + kill_after
    while True:
        done, status = os.waitpid(pid, os.WNOHANG if deadline is not None else 0)
        if done:
            break
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = None
        else:
            time.sleep(0.02)
    if os.WIFSIGNALED(status):
        return {"signal": os.WTERMSIG(status)}
    return {"exit": os.WEXITSTATUS(status)}


def serve() -> None:
    for module in PRELOAD:
        importlib.import_module(module)
    for line in sys.stdin:
        job = json.loads(line)
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            run_child(job)
        seconds = round(time.monotonic() - start, 2)
        outcome = {**wait(pid, job.get("kill_after")), "seconds": seconds}
        print(json.dumps(outcome), flush=True)


class ForkedRuns:
    """The test side: run(folder, call, argv, ...) -> the outcome, its output as "output"."""

    def __init__(self):
        self.server = subprocess.Popen([sys.executable, os.path.abspath(__file__)],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                       cwd=os.path.dirname(TESTS))
        self.count = 0

    def run(self, folder, call: str, argv: list[str], kill_at: int | None = None,
            kill_after: float | None = None, patches: list = ()) -> dict:
        self.count += 1
        output = os.path.join(str(folder), f"forked_run{self.count}.txt")
        job = {"call": call, "argv": [str(a) for a in argv], "kill_at": kill_at,
               "kill_after": kill_after, "patches": list(patches), "output": output}
        self.server.stdin.write(json.dumps(job) + "\n")
        self.server.stdin.flush()
        line = self.server.stdout.readline()
        assert line, f"the forked-runs server died (exit code {self.server.poll()})"
        with open(output) as f:
            return {**json.loads(line), "output": f.read()}

    def close(self) -> None:
        self.server.stdin.close()
        self.server.kill()  # idle between jobs; its exit would unload torch for nothing
        self.server.wait(timeout=60)


if __name__ == "__main__":
    serve()
