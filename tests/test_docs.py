"""The documentation and examples stay true: keys documented, examples run."""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

import fixtures
import gossamer
from gossamer.config import REGISTRIES, Config, read_config_file, registered_names
from gossamer.workflow import load_variants

ROOT = Path(__file__).parents[1]


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        keys.append(key)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += _keys(annotation, f"{key}.")
    return keys


def test_every_config_key_is_documented():
    text = (ROOT / "docs" / "configuration.md").read_text()
    keys = _keys(Config)
    for kind in ("model", "protocol", "optimizer"):
        for name in registered_names(kind):
            keys += [f"{kind}.{k}" for k in REGISTRIES[kind].config_class(name).model_fields]
    missing = [k for k in keys if f"`{k}`" not in text]
    assert not missing, f"undocumented config keys: {missing}"


def test_protocol_example_in_docs_runs():
    text = (ROOT / "docs" / "protocols.md").read_text()
    block = re.search(r"## The interface\n\n```python\n(.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(compile(block, "docs/protocols.md", "exec", dont_inherit=True), namespace)
    result = gossamer.run(
        {
            "nodes": 6,
            "rounds": 6,
            "eval_every": 3,
            "topology": {"kind": "ring"},
            "protocol": {"name": "every_other", "skip": 3},
        }
    )
    assert result.rounds["gossiped"].tolist() == [1, 0, 0, 1, 0, 0]
    assert result.totals["messages"] == 2 * 6 * 2  # two gossip rounds on a ring of 6


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_example_configs_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # examples use paths relative to the repository
    raw = read_config_file(path)
    data = raw.get("data", {})
    overrides = []
    if data.get("dataset") in FIXTURES:  # the paper settings: fixture files stand in
        FIXTURES[data["dataset"]](tmp_path / "files")
        overrides += [f"data.root={tmp_path / 'files'}", "local_steps=1", "data.batch_size=4"]
    if "variants" in raw:  # a comparison: every variant validates...
        configs = load_variants(path, overrides)
        assert len(configs) == len(raw["variants"])
        if data.get("dataset") in FIXTURES:  # ...and the model on the files runs briefly,
            # on 8 nodes (256 copies of the FEMNIST CNN would be 1.7 GB)
            short = ["rounds=2", "eval_every=1", "device=cpu", "nodes=8", "topology.kind=ring"]
            if data.get("drift"):
                short.append("data.drift.at_rounds=[2]")
            config = gossamer.load_config(next(iter(configs.values())), short)
            assert gossamer.run(config).summary["rounds"] == 2
            return
        short = [
            *overrides,
            "rounds=12",
            "eval_every=6",
            "data.synthetic.samples=6000",
            "local_steps=1",
        ]
        if data.get("drift"):
            short.append("data.drift.at_rounds=[6]")
        comparison = gossamer.compare(path, overrides=short, out=tmp_path / "cmp")
        assert (tmp_path / "cmp" / "comparison.json").exists()
        assert len(comparison.table["variant"]) == len(raw["variants"])
        return
    config = gossamer.load_config(path, [*overrides, "rounds=2", "eval_every=1", "device=cpu"])
    if config.nodes > 64:  # keep the test fast: validate fully, run a smaller model
        config = gossamer.load_config(config, ["data.synthetic.samples=3000", "model.hidden=[8]"])
    result = gossamer.run(config, out=tmp_path / "run")
    assert (tmp_path / "run" / "summary.json").exists()
    assert result.summary["rounds"] == 2


FIXTURES = {
    "cifar10": lambda root: fixtures.cifar10(root, per_batch=110),  # 512 shards need 550
    "femnist": lambda root: fixtures.leaf(root, {f"w{i:03d}": 12 for i in range(40)}),
    "mnist": lambda root: fixtures.mnist_like(root, train=600, test=50),
}


def test_compare_protocols_example_runs(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", ["compare_protocols.py"])
    monkeypatch.setattr(gossamer, "run", _short(gossamer.run))
    runpy.run_path(str(ROOT / "examples" / "compare_protocols.py"))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[0] == "protocol" and len(lines) == 5


def _short(run):
    def wrapped(config, overrides=(), **kwargs):
        return run(config, overrides=[*overrides, "rounds=3", "eval_every=1"], **kwargs)

    return wrapped
