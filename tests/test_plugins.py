"""User protocols from a file (run, Ctrl-C, resume in fresh processes) and plugins
found through the ``gossamer.plugins`` entry point group."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import yaml
from typer.testing import CliRunner

import gossamer
from conftest import SMALL
from gossamer.cli import app
from gossamer.config import PROTOCOLS, ConfigError, registered_names
from gossamer.config import registry as registry_module
from test_workflow import assert_same_run

PROTOCOL_FILE = '''
import os
import signal
from typing import Literal

import torch
from pydantic import Field

from gossamer import Protocol, ProtocolConfig


class EveryKConfig(ProtocolConfig):
    name: Literal["every_k"] = "every_k"
    skip: int = Field(2, ge=1)


class EveryK(Protocol):
    """Gossip every `skip` rounds; counts each node's gossip rounds (checkpointed state)."""

    config_class = EveryKConfig

    def __init__(self, config, context):
        super().__init__(config, context)
        self.gossips = torch.zeros(self.population.num_nodes, dtype=torch.int64)

    def communicate(self, round):
        if round + 1 == int(os.environ.get("STOP_AFTER_ROUND", 0)):  # a Ctrl-C, for tests
            os.kill(os.getpid(), signal.SIGINT)
        if round % self.config.skip:
            return {"gossiped": 0}
        self.network.gossip()
        self.gossips += 1
        return {"gossiped": 1, "gossips_so_far": int(self.gossips[0])}

    def state_dict(self):
        return {"gossips": self.gossips.clone()}

    def load_state_dict(self, state):
        self.gossips.copy_(state["gossips"])


class Impostor:  # has a config section, is no Protocol
    config_class = EveryKConfig
'''


def write_protocol(folder):
    path = folder / "my_protocols.py"
    path.write_text(PROTOCOL_FILE)
    return path


def test_a_protocol_from_a_file_runs_stops_and_resumes_in_new_processes(tmp_path):
    write_protocol(tmp_path)
    config = {
        **SMALL,
        "rounds": 40,
        "eval_every": 5,
        "checkpoint_every": 0,
        "protocol": {"name": "custom", "import_path": "my_protocols.py:EveryK", "skip": 3},
    }
    config_file = tmp_path / "exp.yaml"
    config_file.write_text(yaml.safe_dump(config))
    cut = tmp_path / "cut"
    command = [sys.executable, "-m", "gossamer"]
    stopped = subprocess.run(  # from the file's folder: a relative import_path
        [*command, "run", str(config_file), "--out", str(cut), "-q"],
        cwd=tmp_path,
        capture_output=True,
        env={**os.environ, "STOP_AFTER_ROUND": "17"},  # the protocol presses Ctrl-C
    )
    assert stopped.returncode == 130, stopped.stderr.decode()[-2000:]
    assert b"stopped after round 17 with a checkpoint" in stopped.stderr
    recorded = yaml.safe_load((cut / "config.yaml").read_text())["protocol"]
    assert recorded == {
        "name": "custom",
        "compression": {"name": "none"},
        "aggregator": {"name": "mean"},
        "skip": 3,
        "import_path": f"{tmp_path / 'my_protocols.py'}:EveryK",
    }
    resumed = subprocess.run(  # another process, another directory
        [*command, "resume", str(cut), "-q", "--no-report"], cwd="/", capture_output=True
    )
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    whole = gossamer.run(yaml.safe_load((cut / "config.yaml").read_text()), out=tmp_path / "w")
    assert_same_run(tmp_path / "w", cut)
    rounds = whole.rounds
    assert rounds["gossiped"][:7].tolist() == [1, 0, 0, 1, 0, 0, 1]
    assert rounds["gossips_so_far"][-1] == 14  # rounds 0, 3, ..., 39: the state survived
    assert whole.totals["messages"] == 14 * 6 * 2  # a ring of 6


def test_a_protocol_from_a_file_in_compare_and_report(tmp_path, monkeypatch):
    path = write_protocol(tmp_path)
    source = {
        **SMALL,
        "variants": {
            "every 2": {"protocol": {"name": "custom", "import_path": f"{path}:EveryK"}},
            "dpsgd": {"protocol": "dpsgd"},
        },
    }
    comparison = gossamer.compare(source, out=tmp_path / "c")
    every, dpsgd = (comparison.results[k].totals["messages"] for k in ("every 2", "dpsgd"))
    assert every * 2 == dpsgd  # 2 of 4 rounds against 4 of 4
    loaded = gossamer.load(tmp_path / "c")  # config.yaml reloads through the import path
    assert loaded.results["every 2"].config.protocol.skip == 2
    result = CliRunner().invoke(app, ["report", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("protocol", "message"),
    [
        ({"name": "custom"}, "protocol.import_path: expected 'file.py:Class'"),
        ({"name": "custom", "import_path": "missing.py:X"}, "file '.*missing.py' not found"),
        ({"name": "custom", "import_path": "my_protocols.py:Nope"}, "is not a protocol class"),
        ({"name": "custom", "import_path": "my_protocols.py:EveryK", "skip": 0}, "skip: input"),
        ({"name": "custom", "import_path": "my_protocols.py:Impostor"}, "gossamer.Protocol"),
    ],
)
def test_bad_protocol_files_are_named_before_any_work(tmp_path, monkeypatch, protocol, message):
    write_protocol(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=message):
        gossamer.run({**SMALL, "protocol": protocol}, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_plugins_are_found_through_their_entry_points(tmp_path, monkeypatch):
    """An installed distribution (a dist-info folder on sys.path, as pip leaves it)
    whose entry point in gossamer.plugins names a module registering a protocol."""
    (tmp_path / "my_plugin.py").write_text(
        PROTOCOL_FILE.replace(
            "class EveryK(Protocol):", "@register_protocol(EveryKConfig)\nclass EveryK(Protocol):"
        ).replace(
            "from gossamer import Protocol, ProtocolConfig",
            "from gossamer import Protocol, ProtocolConfig, register_protocol",
        )
    )
    info = tmp_path / "my_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[gossamer.plugins]\nmine = my_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(PROTOCOLS, "_entries", dict(PROTOCOLS._entries))  # undone after
    monkeypatch.setattr(registry_module, "_plugins_loaded", False)
    assert "every_k" in registered_names("protocol")
    result = gossamer.run({**SMALL, "protocol": {"name": "every_k", "skip": 4}})
    assert result.rounds["gossiped"].tolist() == [1, 0, 0, 0]
    listed = CliRunner().invoke(app, ["list", "--json"])
    assert "Gossip every `skip` rounds" in json.loads(listed.stdout)["protocol"]["every_k"]


def test_a_broken_plugin_is_named(tmp_path, monkeypatch):
    (tmp_path / "broken_plugin.py").write_text("raise RuntimeError('boom')\n")
    info = tmp_path / "broken-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[gossamer.plugins]\nbroken = broken_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry_module, "_plugins_loaded", False)
    with pytest.raises(ConfigError, match=r"plugin 'broken' .* failed to load: RuntimeError: boom"):
        registered_names("protocol")


def test_protocol_file_text_is_a_valid_module():
    compile(textwrap.dedent(PROTOCOL_FILE), "my_protocols.py", "exec")


def test_a_protocol_from_a_file_needs_a_fixed_graph_unless_it_opts_in(tmp_path, monkeypatch):
    write_protocol(tmp_path)
    monkeypatch.chdir(tmp_path)
    protocol = {"name": "custom", "import_path": "my_protocols.py:EveryK"}
    with pytest.raises(ConfigError, match="'custom' needs a fixed graph"):
        gossamer.load_config(
            {**SMALL, "protocol": protocol, "topology": {"kind": "epidemic", "fanout": 2}}
        )
