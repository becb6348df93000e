"""The package's shape: one import name, dependencies that point one way, no import cycles.

Computed from the source with `ast`, lazy imports inside functions included: a stage that imports
a later one inside a function still depends on it.
"""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
# Where each subpackage's source lives (pyproject.toml's package-dir).
PACKAGES = {"mnist_opt": "mnist_opt", "mnist_opt.tuning": "tuning", "mnist_opt.export": "export",
            "mnist_opt.inference": "inference", "mnist_opt.reports": "reports",
            "mnist_opt.search_spaces": "search_spaces"}
# The layers, lowest first: a module may import its own layer and those below it, never one above.
FLOOR = {"mnist_opt", "mnist_opt.errors", "mnist_opt.runio", "mnist_opt.rundir", "mnist_opt.runtime",
         "mnist_opt.versions", "mnist_opt.data", "mnist_opt.readers", "mnist_opt.devices", "mnist_opt.workarounds",
         "mnist_opt.search_spaces"}
STAGES = ("mnist_opt.tuning", "mnist_opt.export", "mnist_opt.inference", "mnist_opt.reports")
TOP = {"mnist_opt.workflow", "mnist_opt.cli", "mnist_opt.__main__"}
OLD_NAMES = {"tuning", "export", "reports", "inference", "search_spaces"}
# Module paths in a string that is code or a module name: "export.micro", "from reports.serve import App".
OLD_MODULE = re.compile(r"^(\w+(?:\.\w+)+)$|(?:^|\W)(?:from|import) (\w+(?:\.\w+)*)")


def modules() -> dict[str, Path]:
    out = {}
    for package, folder in PACKAGES.items():
        for path in sorted((ROOT / folder).glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            out[name] = path
    return out


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The project's modules that `path` imports, anywhere in it."""
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in known}
    return found - {name}


def layer(name: str) -> int:
    if name in FLOOR:
        return 0
    if name in TOP:
        return len(STAGES) + 1
    return 1 + next(i for i, stage in enumerate(STAGES) if name == stage or name.startswith(stage + "."))


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(path, name, set(found)) for name, path in found.items()}


def test_every_module_has_a_layer(graph):
    for name in graph:
        layer(name)  # StopIteration for a module no layer names


def upward(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, deps in graph.items() for b in deps if layer(b) > layer(a))


def cycles(graph: dict[str, set[str]]) -> list[str]:
    found, state = [], {}  # state: 1 on the path, 2 done

    def visit(node, path):
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                found.append(" -> ".join(path[path.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return found


def test_no_module_imports_a_later_layer(graph):
    assert not upward(graph), "imports that point up (floor <- tuning <- export <- inference <- reports <- " \
                              "workflow, cli): " + ", ".join(upward(graph))


def test_no_import_cycles(graph):
    assert not cycles(graph), "import cycles: " + "; ".join(cycles(graph))


def test_the_checks_see_an_upward_import_and_a_cycle(tmp_path):
    """The graph checks fail on what they are for, not only pass on the code as it is."""
    fake = {"mnist_opt.tuning.a": {"mnist_opt.export.b"}, "mnist_opt.export.b": {"mnist_opt.tuning.a"}}
    assert upward(fake) == ["mnist_opt.tuning.a -> mnist_opt.export.b"]
    assert cycles(fake) == ["mnist_opt.export.b -> mnist_opt.tuning.a -> mnist_opt.export.b"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    path = tmp_path / "probe.py"
    path.write_text("from mnist_opt.reports import render\nfrom . import size\nimport mnist_opt.errors\n"
                    "def later():\n    from mnist_opt.export import micro\n")
    known = {"mnist_opt.reports.render", "mnist_opt.tuning.size", "mnist_opt.errors", "mnist_opt.reports",
             "mnist_opt.export.micro", "mnist_opt.export"}
    assert imports(path, "mnist_opt.tuning.probe", known) == known


def old_names(node: ast.AST) -> list[str]:
    """The old top-level packages an import, or a module path in code held in a string, names."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
        names = [node.module]
    elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "files" \
            and node.args and isinstance(node.args[0], ast.Constant):  # importlib.resources.files("search_spaces")
        names = [str(node.args[0].value)]
    elif isinstance(node, ast.Constant) and isinstance(node.value, str):
        names = [a or b for a, b in OLD_MODULE.findall(node.value)]  # python -m export.micro; code in a subprocess
    else:
        names = []
    return [n for n in names if n.split(".")[0] in OLD_NAMES]


def test_nothing_names_the_old_top_level_packages():
    """`import tuning` would find the folder only when run from the repository root, never from a wheel;
    so would a module named in a string: `python -m` commands, code a test runs in a subprocess."""
    sources = [p for folder in (*PACKAGES.values(), "tests", "benchmarks") for p in (ROOT / folder).rglob("*.py")
               if p != Path(__file__)]  # this file names them on purpose
    bad = [f"{path.relative_to(ROOT)}:{node.lineno}: {name}" for path in sources
           for node in ast.walk(ast.parse(path.read_text(), str(path))) for name in old_names(node)]
    assert not bad, bad


def test_the_old_names_are_seen_in_imports_and_in_strings():
    found = [n for source in ("import tuning.search", "from export import micro", "from .export import x",
                              "run(['-m', 'export.micro'])", "files('search_spaces')", "'from reports.serve import App'",
                              "'see tuning.search in the docs'", "'RUN/export/int8.tflite'", "import mnist_opt.tuning")
             for node in ast.walk(ast.parse(source)) for n in old_names(node)]
    assert found == ["tuning.search", "export", "export.micro", "search_spaces", "reports.serve"]
