"""The project's modules import in one direction: no circle among them, counting the imports made
inside functions, and importing a package's module counting as importing the package too (Python
runs the package's __init__ first)."""
import ast
import os

from conftest import ROOT

SKIP = {"tests", "docs", "assets", "scripts", "base_dir", "__pycache__"}


def project_modules() -> dict[str, str]:
    """module name -> file, for every .py file of the project outside the tests."""
    modules = {}
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [d for d in subfolders if d not in SKIP and not d.startswith(".")]
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
                name_parts = parts[:-1] if parts[-1] == "__init__" else parts
                modules[".".join(name_parts)] = path
    return modules


def imports_of(module: str, path: str, modules: dict[str, str]) -> set[str]:
    """The project's modules that `module` imports anywhere in its file, with their packages."""
    with open(path) as f:
        tree = ast.parse(f.read())
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}".strip(".")
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    with_packages = set()
    for name in found:
        parts = name.split(".")
        with_packages |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return (with_packages & set(modules)) - {module}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle_among_the_projects_modules():
    modules = project_modules()
    assert {"train", "utils", "worlds", "worlds.toy", "experiments.demo"} <= set(modules)
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    assert circles(graph) == []


def test_a_circle_would_be_found():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []
