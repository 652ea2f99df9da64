"""The registries: built-ins known by name without torch, imported on first lookup;
``gossamer --help`` and ``gossamer list`` start without torch."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

from typer.testing import CliRunner

import gossamer.sim  # noqa: F401 - the built-ins registered, to compare with the table
from conftest import ROOT
from gossamer.cli import app
from gossamer.config import PROTOCOLS, REGISTRIES, TOPOLOGY_KINDS, load_config
from gossamer.config.builtins import BUILTINS

# Run in a fresh interpreter: what the command line imports, then the first lookup.
STARTUP = textwrap.dedent(
    """
    import json, sys
    from typer.testing import CliRunner
    from gossamer.cli import app

    seen = {}
    for args in (["--help"], ["run", "--help"], ["compare", "--help"], ["list"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        heavy = ("torch", "matplotlib", "networkx", "scipy", "numpy")
        seen[" ".join(args)] = [m for m in heavy if m in sys.modules]

    from gossamer.config import PROTOCOLS

    class Mine:
        '''Mine: replaces nosync.'''

    PROTOCOLS.register("nosync", None, Mine)  # loads the built-ins first, then replaces
    seen["after register"] = [m for m in ("torch",) if m in sys.modules]
    seen["nosync"] = PROTOCOLS.implementation("nosync").__name__
    seen["periodic"] = PROTOCOLS.implementation("periodic").__name__
    seen["described"] = PROTOCOLS.describe()["nosync"]
    print(json.dumps(seen))
    """
)


def test_help_and_list_import_no_torch_and_the_first_lookup_loads_the_built_ins():
    done = subprocess.run(
        [sys.executable, "-c", STARTUP],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
    )
    seen = json.loads(done.stdout)
    assert seen["--help"] == [] and seen["run --help"] == [] and seen["compare --help"] == []
    assert "torch" not in seen["list"]  # (numpy and matplotlib come with the output helper)
    assert seen["after register"] == ["torch"]
    assert seen["nosync"] == "Mine" and seen["periodic"] == "PeriodicAveraging"
    assert seen["described"] == "Mine: replaces nosync."


def _defined_in_gossamer(implementation) -> bool:
    """Whether a registered implementation is gossamer's own (a dataset's is its loader)."""
    return getattr(implementation, "load", implementation).__module__.startswith("gossamer.")


def test_the_builtins_table_names_exactly_what_gossamer_sim_registers():
    for kind, registry in REGISTRIES.items():
        registered = {
            name
            for name, (_, implementation) in registry._entries.items()
            if _defined_in_gossamer(implementation)
        }
        missing, extra = registered - set(BUILTINS[kind]), set(BUILTINS[kind]) - registered
        assert not missing and not extra, f"config/builtins.py, {kind}: add {missing}, drop {extra}"
        assert all(len(line) <= 55 for line in BUILTINS[kind].values())


def test_list_prints_one_line_per_component():
    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    sections: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        if line.endswith(":") and not line.startswith(" "):
            sections[line[:-1]] = []
        elif line:
            sections[list(sections)[-1]].append(line)
    where = {  # the config key that names each kind
        "compression": "protocol.compression.name",
        "aggregator": "protocol.aggregator.name",
        "dataset": "data.dataset",
    }
    kind_of = {where.get(kind, f"{kind}.name"): kind for kind in REGISTRIES}
    assert list(sections) == [*kind_of, "topology.kind"]
    assert list(sections)[:4] == ["protocol.name", "model.name", "optimizer.name", "data.dataset"]
    resolved = load_config(None, []).model_dump()  # each heading is a key of the config
    for key in sections:
        section = resolved
        for part in key.split("."):
            assert isinstance(section, dict) and part in section, key
            section = section[part]
    for line in (  # the built-ins: a name, at least two spaces, its line
        "  adam +Adam \\(Kingma & Ba 2015\\), weight decay as an L2 term",
        "  adamw +Adam with decoupled weight decay \\(default 0.01\\)",
        "  sgd +SGD with heavy-ball or Nesterov momentum",
    ):
        assert any(re.fullmatch(line, shown) for shown in sections["optimizer.name"]), line
    assert (
        "  dpsgd                  D-PSGD: train, then average with neighbours"
        in (sections["protocol.name"])
    )
    expected = {key: REGISTRIES[kind].describe() for key, kind in kind_of.items()}
    expected["topology.kind"] = dict(TOPOLOGY_KINDS)
    for key, lines in sections.items():
        named = dict(line.strip().split(maxsplit=1) for line in lines)
        assert named == expected[key], key  # other tests may have registered more
        kind = kind_of.get(key)
        if kind in BUILTINS:
            assert {name: named[name] for name in BUILTINS[kind]} == BUILTINS[kind]
    listed = json.loads(CliRunner().invoke(app, ["list", "--json"]).stdout)
    assert {name: listed["dataset"][name] for name in BUILTINS["dataset"]} == BUILTINS["dataset"]
    assert listed["topology"] == dict(TOPOLOGY_KINDS)


def test_a_component_registered_under_a_builtin_name_replaces_it(monkeypatch):
    monkeypatch.setattr(PROTOCOLS, "_entries", dict(PROTOCOLS._entries))  # undone after
    monkeypatch.setattr(PROTOCOLS, "_replaced", set(PROTOCOLS._replaced))

    class Quiet:
        """Never talks.

        More text."""

    assert PROTOCOLS.describe()["nosync"] == BUILTINS["protocol"]["nosync"]
    PROTOCOLS.register("nosync", None, Quiet)
    assert PROTOCOLS.implementation("nosync") is Quiet
    assert PROTOCOLS.describe()["nosync"] == "Never talks."
