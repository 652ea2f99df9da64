"""Comparisons: variants on identical conditions, their table, plots and CLI."""

from __future__ import annotations

import copy
import csv
import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import gossamer
from conftest import SMALL
from gossamer.cli import app
from gossamer.config import ConfigError, load_config
from gossamer.results import pareto_optimal, recovery_rounds
from gossamer.workflow import load_variants

BASE = {k: v for k, v in copy.deepcopy(SMALL).items() if k != "seed"}  # seed 0
BASE["protocol"] = {"name": "dynamic", "delta": 0.5}


def test_variants_merge_onto_the_base_and_a_new_protocol_name_replaces_its_section():
    source = {
        **BASE,
        "variants": {
            "tighter": {"protocol": {"delta": 0.1}},
            "periodic": {"protocol": {"name": "periodic", "period": 2}},
            "as list": ["protocol=nosync", "optimizer.lr=0.05"],
        },
    }
    configs = load_variants(source, protocols=["dpsgd", "periodic period=3"])
    assert list(configs) == ["tighter", "periodic", "as list", "dpsgd", "periodic period=3"]
    assert (
        configs["tighter"].protocol.delta == 0.1 and configs["tighter"].protocol.name == "dynamic"
    )
    assert configs["periodic"].protocol.period == 2  # delta dropped with the name change
    assert configs["as list"].protocol.name == "nosync" and configs["as list"].optimizer.lr == 0.05
    assert configs["periodic period=3"].protocol.period == 3
    assert {c.seed for c in configs.values()} == {0} and {c.nodes for c in configs.values()} == {6}


def test_override_of_protocol_name_replaces_the_section():
    config = load_config(BASE, ["protocol.name=periodic"])
    assert config.protocol.name == "periodic" and config.protocol.period == 10


@pytest.mark.parametrize(
    ("variants", "protocols", "message"),
    [
        ({}, [], "a comparison needs variants"),
        ({"bad": {"protocol": {"delta": -1}}}, [], r"variants.bad: invalid configuration"),
        ({"bad": 3}, [], r"variants.bad: expected a partial config"),
        ({}, ["periodic period"], r"protocols 'periodic period': expected a name then key=value"),
    ],
)
def test_bad_variants_are_rejected_before_any_run(variants, protocols, message):
    with pytest.raises(ConfigError, match=message):
        load_variants({**BASE, "variants": variants}, protocols=protocols)


def test_a_comparison_file_is_not_a_run_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**BASE, "variants": {"a": {"protocol": "nosync"}}}))
    with pytest.raises(ConfigError, match="variants: .* describes a comparison"):
        load_config(path)


def test_compare_writes_runs_table_and_plots_on_identical_conditions(tmp_path):
    source = {
        **BASE,
        "data": {**BASE["data"], "stream": True},
        "variants": {
            "dynamic": {},
            "periodic b=2": {"protocol": {"name": "periodic", "period": 2}},
            "local": {"protocol": "nosync"},
        },
    }
    result = gossamer.compare(source, out=tmp_path / "cmp")
    out = tmp_path / "cmp"
    assert {p.name for p in out.iterdir()} >= {
        "comparison.csv",
        "comparison.md",
        "comparison.json",
        "dynamic",
        "periodic-b=2",
        "local",
        "accuracy_vs_bytes.png",
        "prequential_loss_vs_bytes.png",
        "communication_vs_rounds.png",
    }
    with open(out / "comparison.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["variant"] for r in rows] == ["dynamic", "periodic b=2", "local"]
    local = result.results["local"]
    assert float(rows[2]["megabytes_sent"]) == 0.0
    assert float(rows[2]["cumulative_prequential_loss"]) == pytest.approx(
        local.final["cumulative_prequential_loss"]
    )
    # identical conditions: the same initial models, so the same round-0 evaluation
    first = {name: r.metrics["test_loss_mean"][0] for name, r in result.results.items()}
    assert len(set(first.values())) == 1
    summary = json.loads((out / "comparison.json").read_text())
    assert summary["variants"]["periodic b=2"] == "periodic-b=2"
    with pytest.raises(ConfigError, match="holds a finished comparison"):
        gossamer.compare(source, out=out)


def test_drift_columns_in_the_table():
    source = {
        **BASE,
        "rounds": 30,
        "eval_every": 10,
        "data": {
            **BASE["data"],
            "stream": True,
            "drift": {"kind": "label_permutation", "at_rounds": [15]},
        },
        "variants": {"a": {}, "b": {"protocol": "nosync"}},
    }
    table = gossamer.compare(source).table
    loss = table["loss_after_drift_15"]
    results = gossamer.compare(source).results
    expected = results["b"].rounds["prequential_loss"][14:].sum()  # rounds 15..30 (< 100)
    assert loss[1] == pytest.approx(expected)
    assert "recovery_rounds_drift_15" in table and "megabytes_after_drift_15" in table


def test_recovery_rounds_by_hand():
    loss = np.array([4.0] * 10 + [100, 50, 20, 10, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8.0])
    # drift at round 11 (index 10), baseline 4. 3-round means from the drift on:
    # 56.7, 26.7, 12.7, 8.67, 8.0: <= 2 x 4 first 4 rounds after, <= 2.2 x 4 after 3
    assert recovery_rounds(loss, 11, window=3, factor=2.0) == 4
    assert recovery_rounds(loss, 11, window=3, factor=2.2) == 3
    assert recovery_rounds(loss, 11, window=1, factor=2.0) == 4  # 100, 50, 20, 10, 8
    assert recovery_rounds(loss, 11, window=3, factor=1.5) is None  # never back to 6
    assert recovery_rounds(loss, 3, window=5) is None  # too few rounds before the drift


def test_pareto_front_by_hand():
    cost = [10.0, 5.0, 5.0, 1.0, 20.0]
    loss = [1.0, 2.0, 3.0, 4.0, 1.0]
    assert pareto_optimal(cost, loss) == [True, True, False, True, False]


def test_compare_and_delta_commands(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(BASE))
    runner = CliRunner()
    out = tmp_path / "cmp"
    result = runner.invoke(
        app,
        [
            "compare",
            str(path),
            "-p",
            "nosync",
            "-p",
            "dynamic delta=0.1",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    table = json.loads(result.stdout)["table"]
    assert [row["variant"] for row in table] == ["nosync", "dynamic delta=0.1"]
    result = runner.invoke(app, ["compare", str(path), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "a comparison needs variants" in result.stderr
    result = runner.invoke(app, ["delta", str(path), "--periods", "2", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["suggested_delta"] > 0


def test_only_runs_the_named_variants_and_names_an_unknown_one(tmp_path):
    from typer.testing import CliRunner

    from gossamer.cli import app

    base = [
        "compare",
        "--protocol",
        "dpsgd",
        "--protocol",
        "nosync",
        "--set",
        "rounds=4",
        "--set",
        "eval_every=2",
        "--set",
        "nodes=6",
        "--out",
        str(tmp_path / "c"),
    ]
    result = CliRunner().invoke(app, [*base, "--only", "nosync", "--json"])
    assert result.exit_code == 0, result.output
    assert list(json.loads(result.stdout)["variants"]) == ["nosync"]
    result = CliRunner().invoke(app, [*base, "--only", "periodic"])
    assert result.exit_code != 0
    assert "--only: expected variant names of the comparison (dpsgd, nosync); got 'periodic'" in (
        result.output
    )


def test_run_json_names_the_run_directory(tmp_path):
    from typer.testing import CliRunner

    from gossamer.cli import app

    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["run", "--set", "rounds=4", "--set", "eval_every=2", "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["run_directory"] == str(out)
