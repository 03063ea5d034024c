"""The project's shape (issue 28): no module over 600 lines, no function over 80, at most 3 % of all
lines over 100 characters, measured over every .py file of the project, tests included (not the
virtual environment, caches or the reference fixtures, which are other projects' code). Each
failure names the offenders."""
import ast
import os

from conftest import FIXTURES, ROOT

MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
MAX_LINE_CHARACTERS = 100
MAX_LONG_LINE_SHARE = 0.03


def project_files() -> list[str]:
    """Every .py file of the project, relative to its root."""
    found = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__"
                         and os.path.join(folder, d) != FIXTURES)
        found += [os.path.relpath(os.path.join(folder, name), ROOT)
                  for name in sorted(files) if name.endswith(".py")]
    return found


def lines_of(path: str) -> list[str]:
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read().splitlines()


def test_the_measure_sees_the_project_and_its_tests_but_not_the_fixtures():
    files = project_files()
    assert {"train.py", "BigGAN.py", "experiments/study.py", "worlds/toy.py",
            "tests/test_code_shape.py"} <= set(files)
    assert not [path for path in files if path.startswith(("tests/fixtures", ".venv"))]


def test_no_module_is_over_600_lines():
    long_modules = {path: n for path in project_files()
                    if (n := len(lines_of(path))) > MAX_MODULE_LINES}
    assert long_modules == {}, f"modules over {MAX_MODULE_LINES} lines"


def test_no_function_is_over_80_lines():
    long_functions = {}
    for path in project_files():
        tree = ast.parse("\n".join(lines_of(path)), filename=path)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions[f"{path}:{node.lineno} {node.name}"] = length
    assert long_functions == {}, f"functions over {MAX_FUNCTION_LINES} lines"


def test_at_most_3_percent_of_lines_are_over_100_characters():
    total, long_lines = 0, {}
    for path in project_files():
        lines = lines_of(path)
        total += len(lines)
        if n := sum(len(line) > MAX_LINE_CHARACTERS for line in lines):
            long_lines[path] = n
    share = sum(long_lines.values()) / total
    worst = dict(sorted(long_lines.items(), key=lambda item: -item[1])[:20])
    assert share <= MAX_LONG_LINE_SHARE, (
        f"{share:.2%} of {total} lines are over {MAX_LINE_CHARACTERS} characters; most: {worst}")
