"""The import structure: no circles and no imports hidden inside functions (STYLE.md).

Each module's imports are read with `ast`; `from package import name` counts as an import
of the submodule `package.name` when there is one, else of `package`.
"""

import ast
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PACKAGES = ("dashboard", "experiments_app", "webui", "demo_app")


def modules():
    """{dotted module name: path} of the project's code (migrations aside: Django writes them)."""
    found = {}
    for package in PACKAGES:
        for path in (BASE_DIR / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(BASE_DIR).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imported(node, module, known):
    """The project modules an import statement brings in."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            base = ".".join(module.split(".")[: -node.level] + ([base] if base else []))
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
    return {name for name in names if name in known}


def graph():
    known = modules()
    edges, hidden = {}, []
    for module, path in known.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        top = {id(node) for node in tree.body}
        edges[module] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                targets = imported(node, module, known)
                if id(node) in top:
                    edges[module] |= targets - {module}
                elif targets:
                    hidden.append(f"{module}:{node.lineno}")
    return edges, hidden


def find_cycle(edges):
    """One import circle as a list of modules, or None."""
    state = {}

    def visit(module, trail):
        state[module] = "open"
        for target in sorted(edges.get(module, ())):
            if state.get(target) == "open":
                return trail[trail.index(target) :] + [target]
            if target not in state:
                cycle = visit(target, trail + [target])
                if cycle:
                    return cycle
        state[module] = "done"
        return None

    for module in sorted(edges):
        if module not in state:
            cycle = visit(module, [module])
            if cycle:
                return cycle
    return None


def test_the_code_has_no_import_circle():
    edges, _ = graph()
    assert find_cycle(edges) is None


def test_no_import_is_hidden_inside_a_function():
    _, hidden = graph()
    assert hidden == []


def test_nothing_imports_the_celery_tasks_module():
    edges, _ = graph()
    importers = sorted(module for module, targets in edges.items() if "experiments_app.tasks" in targets)
    assert importers == []


def test_the_cycle_finder_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_web_servers_application_loads_the_urlconf_when_a_worker_boots():
    """Not on a worker's first request (~0.4 s of imports that request would wait for)."""
    probe = "import sys, dashboard.wsgi; print('dashboard.urls' in sys.modules, 'experiments_app.api.runs' in sys.modules)"
    answer = subprocess.run([sys.executable, "-c", probe], cwd=BASE_DIR, capture_output=True, text=True, timeout=120, check=True)
    assert answer.stdout.split() == ["True", "True"]
