"""Notebook use: tables as typed pandas DataFrames, and ``report=True`` as on the command line.

One tiny comparison and one tiny sweep are run twice each, through the Python API with
``report=True`` and through the CLI (which writes a report by default); the tests read
both. Drawing the four reports' figures takes most of their time (about 10 s).
"""

from __future__ import annotations

import copy
import csv
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import gossamer
from conftest import SMALL
from gossamer.cli import app
from gossamer.config import ConfigError, RunDirectoryError
from gossamer.results import Sweep, column_types, read_table, table_to_csv

runner = CliRunner()
TINY = {**copy.deepcopy(SMALL), "nodes": 4, "rounds": 2, "eval_every": 1}
T_975_1 = 12.706204736174707  # Student's t, 97.5% quantile, 1 degree of freedom
#: Files that hold wall-clock times, which differ between two runs of the same config.
TIMED = {"metrics.csv", "summary.json", "comparison.csv", "comparison.json", "comparison.md"}


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def pareto_column(frame: pd.DataFrame) -> str:
    return next(c for c in frame.columns if c.startswith("pareto"))


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """(the API's Comparison, its directory, the CLI's directory)."""
    root = tmp_path_factory.mktemp("compare")
    config = root / "c.yaml"
    config.write_text(yaml.safe_dump(TINY))
    api_dir, cli_dir = root / "api" / "cmp", root / "cli" / "cmp"
    comparison = gossamer.compare(config, protocols=["dpsgd", "nosync"], out=api_dir, report=True)
    args = ["compare", str(config), "-p", "dpsgd", "-p", "nosync", "--out", str(cli_dir), "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return comparison, api_dir, cli_dir


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """(the API's Sweep, its directory, the CLI's directory): two points, two seeds."""
    root = tmp_path_factory.mktemp("sweep")
    config = root / "c.yaml"
    config.write_text(yaml.safe_dump(TINY))
    api_dir, cli_dir = root / "api" / "sw", root / "cli" / "sw"
    grid = "protocol=dpsgd,nosync"
    sweep = gossamer.sweep(config, grid=[grid], seeds=2, out=api_dir, report=True)
    args = ["sweep", str(config), "--grid", grid, "--seeds", "2", "--out", str(cli_dir), "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return sweep, api_dir, cli_dir


# ------------------------------------------------------------------ comparisons


@pytest.mark.slow  # shares the fixtures: two comparisons, two sweeps, four reports
def test_comparison_frame_is_typed_and_holds_the_csv_values(compared):
    comparison, out, _ = compared
    frame = comparison.frame()
    pareto = pareto_column(frame)
    assert pd.api.types.is_string_dtype(frame["variant"])
    assert pd.api.types.is_string_dtype(frame["protocol"])
    assert frame["messages"].dtype == np.int64 and frame["local_steps"].dtype == np.int64
    assert frame[pareto].dtype == np.bool_
    for column in ("test_accuracy_mean", "megabytes_sent", "energy_joules", "wall_seconds"):
        assert frame[column].dtype == np.float64, column
    # a ring of 4: each node sends its model to 2 neighbours a round, 2 rounds; nosync none
    assert frame["messages"].tolist() == [4 * 2 * 2, 0]
    assert frame["local_steps"].tolist() == [4 * 2, 4 * 2]
    assert frame[pareto].tolist()[1] is True  # nothing sends fewer bytes than nosync
    rows = csv_rows(out / "comparison.csv")
    assert list(frame.columns) == list(rows[0])
    types = json.loads((out / "comparison.json").read_text())["columns"]
    assert types["messages"] == "int" and types[pareto] == "bool" and types["variant"] == "str"
    for i, row in enumerate(rows):
        assert row["variant"] == frame["variant"][i] and row["protocol"] == frame["protocol"][i]
        assert row[pareto] == str(bool(frame[pareto][i]))
        assert int(row["messages"]) == frame["messages"][i]
        for column in ("test_accuracy_mean", "megabytes_sent", "energy_joules"):
            assert float(row[column]) == frame[column][i], column
        summary = json.loads((out / row["variant"] / "summary.json").read_text())
        assert frame["test_accuracy_mean"][i] == summary["final"]["test_accuracy_mean"]
        assert frame["megabytes_sent"][i] == summary["totals"]["bytes_sent"] / 1e6
        assert frame["messages"][i] == summary["totals"]["messages"]


@pytest.mark.slow  # shares the fixtures: two comparisons, two sweeps, four reports
def test_a_loaded_comparison_has_the_same_types_and_values(compared, tmp_path):
    comparison, _, cli_dir = compared
    loaded = gossamer.load(cli_dir)
    pareto = pareto_column(loaded.frame())
    assert loaded.table[pareto].dtype == np.bool_  # not the strings 'True' and 'False'
    assert loaded.table["messages"].dtype == np.int64
    timeless = [c for c in comparison.frame().columns if c != "wall_seconds"]
    pd.testing.assert_frame_equal(loaded.frame()[timeless], comparison.frame()[timeless])
    # a comparison written before the types were recorded: from comparison.json's records
    old = tmp_path / "old"
    shutil.copytree(cli_dir, old)
    meta = json.loads((old / "comparison.json").read_text())
    del meta["columns"]
    (old / "comparison.json").write_text(json.dumps(meta))
    pd.testing.assert_frame_equal(gossamer.load(old).frame(), loaded.frame())


@pytest.mark.slow  # shares the fixtures: two comparisons, two sweeps, four reports
def test_compare_with_report_writes_what_the_command_writes(compared):
    _, api_dir, cli_dir = compared
    assert files(api_dir) == files(cli_dir)
    assert {"report.html", "report.md"} <= set(files(api_dir))
    assert any(name.startswith("report_files/") for name in files(api_dir))
    for name in files(api_dir):
        a, b = api_dir / name, cli_dir / name
        if Path(name).name not in TIMED:
            assert a.read_bytes() == b.read_bytes(), name
        elif name.endswith(".csv"):
            strip = [{k: v for k, v in row.items() if k != "wall_seconds"} for row in csv_rows(a)]
            assert strip == [
                {k: v for k, v in row.items() if k != "wall_seconds"} for row in csv_rows(b)
            ], name


# ------------------------------------------------------------------ sweeps


@pytest.mark.slow  # shares the fixtures: two comparisons, two sweeps, four reports
def test_sweep_frames_are_typed_and_their_intervals_match_the_runs(swept):
    sweep, out, _ = swept
    points, runs = sweep.frame(), sweep.frame("runs")
    assert points["protocol"].tolist() == ["dpsgd", "nosync"]  # not the CSV's '"dpsgd"'
    assert pd.api.types.is_string_dtype(points["protocol"])
    assert points["seeds"].dtype == np.int64 and points["seeds"].tolist() == [2, 2]
    assert runs["seed"].dtype == np.int64 and runs["seed"].tolist() == [3, 3, 4, 4]
    for column in ("test_accuracy_mean", "test_accuracy_mean_ci_low", "energy_joules_ci_high"):
        assert points[column].dtype == np.float64, column
    for i, protocol in enumerate(("dpsgd", "nosync")):
        values = runs.loc[runs["protocol"] == protocol, "test_accuracy_mean"].tolist()
        mean = (values[0] + values[1]) / 2
        sd = math.sqrt((values[0] - mean) ** 2 + (values[1] - mean) ** 2)  # S-1 = 1
        half = T_975_1 * sd / math.sqrt(2)
        assert points["test_accuracy_mean"][i] == pytest.approx(mean, abs=1e-15)
        assert points["test_accuracy_mean_ci_low"][i] == pytest.approx(mean - half, abs=1e-12)
        assert points["test_accuracy_mean_ci_high"][i] == pytest.approx(mean + half, abs=1e-12)
    rows = csv_rows(out / "runs.csv")
    for i, row in enumerate(rows):
        assert json.loads(row["protocol"]) == runs["protocol"][i]
        assert int(row["seed"]) == runs["seed"][i]
        assert float(row["test_accuracy_mean"]) == runs["test_accuracy_mean"][i]
        folder = f"protocol={runs['protocol'][i]}/seed-{runs['seed'][i]}"
        summary = json.loads((out / folder / "summary.json").read_text())
        assert runs["megabytes_sent"][i] == summary["totals"]["bytes_sent"] / 1e6
    for i, row in enumerate(csv_rows(out / "sweep.csv")):
        assert float(row["test_accuracy_mean_ci_low"]) == points["test_accuracy_mean_ci_low"][i]


@pytest.mark.slow  # shares the fixtures: two comparisons, two sweeps, four reports
def test_a_loaded_sweep_has_the_same_frames(swept):
    sweep, _, cli_dir = swept
    loaded = gossamer.load(cli_dir)
    assert loaded.table["protocol"].tolist() == ['"dpsgd"', '"nosync"']  # sweep.csv's text
    assert loaded.table["seeds"].dtype == np.int64
    pd.testing.assert_frame_equal(loaded.frame(), sweep.frame())
    pd.testing.assert_frame_equal(loaded.frame("runs"), sweep.frame("runs"))
    with pytest.raises(ConfigError, match="expected table 'points' or 'runs'; got 'seeds'"):
        loaded.frame("seeds")


@pytest.mark.slow  # shares the fixtures: two comparisons, two sweeps, four reports
def test_sweep_with_report_writes_what_the_command_writes(swept):
    _, api_dir, cli_dir = swept
    assert files(api_dir) == files(cli_dir)
    assert {"report.html", "report.md", "sweep.csv", "runs.csv"} <= set(files(api_dir))
    for name in files(api_dir):
        if Path(name).name not in TIMED:
            assert (api_dir / name).read_bytes() == (cli_dir / name).read_bytes(), name


def test_grid_columns_hold_the_values_and_lists_stay_json():
    points = [
        {"optimizer.lr": 0.05, "nodes": 4, "data.stream": True, "hidden": [7]},
        {"optimizer.lr": 0.1, "nodes": 8, "data.stream": False, "hidden": [7, 7]},
    ]
    table = {
        **{k: np.array([json.dumps(p[k]) for p in points], dtype=object) for k in points[0]},
        "seeds": np.array([1, 1], dtype=object),
        "test_accuracy_mean": np.array([0.5, 0.25], dtype=object),
        "test_accuracy_mean_ci_low": np.array([math.nan, math.nan], dtype=object),
    }
    frame = Sweep(points, {}, table, None).frame()
    assert frame["optimizer.lr"].dtype == np.float64 and frame["optimizer.lr"].tolist() == [
        0.05,
        0.1,
    ]
    assert frame["nodes"].dtype == np.int64 and frame["nodes"].tolist() == [4, 8]
    assert frame["data.stream"].dtype == np.bool_ and frame["data.stream"].tolist() == [True, False]
    assert frame["hidden"].tolist() == ["[7]", "[7, 7]"]  # as in the CSV
    assert frame["seeds"].dtype == np.int64
    assert frame["test_accuracy_mean_ci_low"].dtype == np.float64
    assert frame["test_accuracy_mean_ci_low"].isna().all()  # one seed: no interval


# ------------------------------------------------------------------ column types


def test_column_types_come_from_values_and_read_tables_back(tmp_path):
    columns = {
        "variant": np.array(["1", "2.5", "x"], dtype=object),  # text that looks like numbers
        "pareto": np.array([True, False, True], dtype=object),
        "messages": np.array([3, 0, 12], dtype=object),
        "recovery": np.array([4, math.nan, 2], dtype=object),  # an int, or NaN: none
        "loss": np.array([0.5, 1e-20, math.inf], dtype=object),
    }
    types = column_types(columns)
    assert types == {
        "variant": "str",
        "pareto": "bool",
        "messages": "int",
        "recovery": "float",
        "loss": "float",
    }
    path = tmp_path / "t.csv"
    path.write_text(table_to_csv(columns))
    back = read_table(path, types)
    assert back["variant"].tolist() == ["1", "2.5", "x"]
    assert back["pareto"].dtype == np.bool_ and back["pareto"].tolist() == [True, False, True]
    assert back["messages"].dtype == np.int64 and back["messages"].tolist() == [3, 0, 12]
    assert back["recovery"].dtype == np.float64 and np.isnan(back["recovery"][1])
    assert back["loss"].tolist() == [0.5, 1e-20, math.inf]
    guessed = read_table(path)  # without the types: what the text looks like
    assert guessed["pareto"].tolist() == ["True", "False", "True"]
    path.write_text(path.read_text().replace("False", "no"))
    with pytest.raises(RunDirectoryError, match="column 'pareto' is recorded as bool"):
        read_table(path, types)
    with pytest.raises(RunDirectoryError, match="recorded as 'complex'; expected one of"):
        read_table(path, {"loss": "complex"})


# ------------------------------------------------------------------ without pandas


@pytest.mark.slow  # shares the fixtures: two comparisons, two sweeps, four reports
def test_frames_without_pandas_say_what_to_install(compared, swept, monkeypatch):
    comparison, sweep = compared[0], swept[0]
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas fails
    for frame, what in (
        (comparison.frame, "Comparison.frame"),
        (sweep.frame, "Sweep.frame"),
        (comparison.results["dpsgd"].frame, "Result.frame"),
    ):
        with pytest.raises(ImportError, match=rf"{what} needs pandas.*gossamer\[notebook\]"):
            frame()


def test_report_without_an_output_directory_is_refused_before_any_run():
    source = {**TINY, "data": {**TINY["data"], "dataset": "no-such-dataset"}}
    with pytest.raises(ConfigError, match="report=True needs out, the directory"):
        gossamer.compare(source, protocols=["dpsgd"], report=True)
    with pytest.raises(ConfigError, match="report=True needs out, the directory"):
        gossamer.sweep(source, grid=["protocol=dpsgd"], report=True)
    with pytest.raises(ConfigError, match="report=True needs out, the directory"):
        gossamer.run(source, report=True)  # one run: refused too, before any work
