"""The package's layers: every import goes one way, and no module imports itself back.

Layers, each depending only on those before it: ``config`` -> ``sim`` -> ``results``
-> ``report`` -> ``workflow`` -> ``cli``; inside ``sim`` the order of
:data:`SIM_ORDER`. ``gossamer/__init__.py`` (the API facade) and ``__main__`` sit on
top; ``_version`` at the bottom. Imports inside functions count as much as those at
the top of a module. See docs/architecture.md.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src"
LAYERS = ["_version", "config", "sim", "results", "report", "workflow", "cli"]
SIM_ORDER = [
    "rng",
    "cache",
    "stacked",
    "shard",
    "optim",
    "data",
    "evaluation",
    "models",
    "topology",
    "timevarying",
    "energy",
    "accounting",
    "conditions",
    "network",
    "engine",
    "memory",
    "protocols",
    "outputs",
    "simulation",
]


def module_names() -> dict[str, Path]:
    names = {}
    for path in sorted((SRC / "gossamer").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


MODULES = module_names()


def imports_of(name: str) -> set[str]:
    """The gossamer modules ``name`` imports, anywhere in it (``from P import m`` where
    P.m is a module counts as importing P.m)."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("gossamer"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if not base.startswith("gossamer"):
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in MODULES else base)
    return {m for m in found if m != name}


def rank(name: str) -> tuple[int, int]:
    """(layer, position inside sim) of a module; the facade ranks above everything."""
    parts = name.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return (len(LAYERS), 0)
    layer = LAYERS.index(parts[1])
    inner = 0
    if parts[1] == "sim":
        inner = SIM_ORDER.index(parts[2]) if len(parts) > 2 else len(SIM_ORDER)
    return (layer, inner)


def test_every_module_belongs_to_a_layer():
    for name in MODULES:
        rank(name)  # raises ValueError for a module outside the layers


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_import_goes_upward(name):
    upward = [m for m in imports_of(name) if rank(m) > rank(name)]
    assert not upward, f"{name} imports {upward}, above it"


def test_no_circular_imports():
    graph = {name: imports_of(name) for name in MODULES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for child in sorted(graph[name]):
            if state.get(child) == 1:
                cycle = path[path.index(child) :] + [child]
                raise AssertionError("circular import: " + " -> ".join(cycle))
            if child not in state:
                visit(child)
        path.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_the_walker_sees_lazy_and_package_imports():
    """The test's own reference: imports it must find in known modules."""
    assert "gossamer.sim.engine" in imports_of("gossamer.sim.protocols.base")
    assert "gossamer.sim.models.layers" in imports_of("gossamer.sim.models.cnn")
    lazy = imports_of("gossamer.cli.inspect")  # imports inside the commands
    assert {"gossamer.sim.topology", "gossamer.sim.energy"} <= lazy
    assert rank("gossamer.config.schema") < rank("gossamer.sim.rng") < rank("gossamer.sim.engine")
    assert rank("gossamer.sim.simulation") < rank("gossamer.results.run")


def test_modules_stay_small():
    long = {
        name: n
        for name, path in MODULES.items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > 450
    }
    assert not long, f"modules over 450 lines (split them): {long}"
