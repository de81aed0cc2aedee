"""The package layout holds: imports go one way (cli -> export/infer -> run -> model, data,
devices, plots -> foundation), there are no import cycles, and the TensorFlow-free parts
stay free of it."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cnncli"

#: Each top-level part of cnncli and its layer: a part may import its own layer's modules
#: only within itself, and any part of a lower layer.
LAYERS = {
    "errors": 0, "yamlio": 0, "runtime": 0, "files": 0, "config": 0, "__init__": 0, "text": 0,
    "resources": 0, "parallel": 0, "runfolder": 0,
    "model": 1, "data": 1, "devices": 1, "plots": 1,
    "run": 2,
    "infer": 3,
    "export": 4, "viz": 4,
    "cli": 5, "__main__": 6,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every cnncli module `path` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("cnncli")}
        elif isinstance(node, ast.ImportFrom) and node.module and \
                node.module.startswith("cnncli"):
            for alias in node.names:  # `from cnncli.model import spec` imports a module
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if _exists(candidate) else node.module)
    return found


def _exists(module: str) -> bool:
    path = PACKAGE.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def part(module: str) -> str:
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "__init__"


def graph() -> dict[str, set[str]]:
    return {module_name(p): imported_modules(p) for p in PACKAGE.rglob("*.py")}


def test_every_part_has_a_layer():
    assert {part(m) for m in graph()} <= set(LAYERS)


def test_imports_go_down_the_layers_only():
    wrong = []
    for module, imports in graph().items():
        here = part(module)
        for other in imports:
            there = part(other)
            if there == here or other == "cnncli":
                continue
            if LAYERS[there] >= LAYERS[here] and not (LAYERS[here] == 0 and there in LAYERS
                                                       and LAYERS[there] == 0):
                wrong.append(f"{module} imports {other}")
    assert wrong == []


def test_no_import_cycles():
    edges = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for nxt in edges.get(node, ()):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt):], nxt]))
            elif nxt in edges and not state.get(nxt):
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in edges:
        if not state.get(node):
            visit(node, [node])
    assert cycles == []


@pytest.mark.parametrize("module", ["cnncli.devices", "cnncli.devices.placement",
                                    "cnncli.devices.tuning",
                                    "cnncli.config", "cnncli.cli.app"])
def test_tensorflow_free_modules_import_no_tensorflow(module):
    code = (f"import sys, {module}; "
            "print([m for m in ('tensorflow', 'keras') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.strip() == "[]", done.stderr


def test_the_readme_map_names_files_that_exist_and_the_layers_as_they_are():
    readme = (PACKAGE.parent / "README.md").read_text()
    development = readme[readme.index("## Development"):readme.index("## Troubleshooting")]
    paths = re.findall(r"`(cnncli/[\w/.]+)`", development)
    assert len(paths) > 20
    missing = [p for p in paths if not (PACKAGE.parent / p).exists()]
    assert missing == []
    flow = re.search(r"`cli` → (.*?)\.\n", development, re.S).group(1)
    said = [re.findall(r"`(\w+)`", step) for step in flow.split("→")]
    actual = sorted({layer for layer in LAYERS.values() if 0 < layer < 5}, reverse=True)
    assert [sorted(step) for step in said[:-1]] == [
        sorted(p for p, layer in LAYERS.items() if layer == n) for n in actual]
    assert set(said[-1]) <= {p for p, layer in LAYERS.items() if layer == 0}
