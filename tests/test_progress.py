"""Progress for people and for logs: plain lines, the live bar, Jupyter, the CLI."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import gossamer
from conftest import SMALL, small_config, stop_at
from gossamer.cli.app import app
from gossamer.config import ConfigError
from gossamer.report.tables import format_bytes
from gossamer.workflow.progress import (
    BarProgress,
    LineProgress,
    NotebookProgress,
    _duration,
    progress_display,
)

runner = CliRunner()


@pytest.fixture
def tiny_file(tmp_path):
    """conftest's SMALL experiment as a config file, for the command line."""
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    return str(path)


ROUND_LINE = re.compile(
    r"round (\d+)/(\d+)  acc (\d\.\d{3})  sent ([\d.]+ [kMGT]?B)  "
    r"elapsed (\d+:\d\d)  ETA (\d+:\d\d)"
)


def test_durations_by_hand():  # bytes: format_bytes, tests/test_report.py
    assert [_duration(s) for s in (0, 59.6, 400, 3600, 3725)] == [
        "0:00",
        "1:00",
        "6:40",
        "1:00:00",
        "1:02:05",
    ]


def test_cli_in_a_log_prints_a_line_every_5_percent(tmp_path, tiny_file):
    """20 rounds at 5%: a line every round, after two set-up lines (the 5% steps of a
    longer run: ``test_lines_also_every_few_minutes_and_the_eta_from_the_pace``)."""
    out = tmp_path / "r"
    args = ["run", tiny_file, "-s", "rounds=20", "-s", "eval_every=5", "--out", str(out)]
    result = runner.invoke(app, [*args, "--no-report"])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    metrics = gossamer.load(out).metrics
    assert lines[0] == "set-up (20 rounds)"
    assert re.fullmatch(r"set-up done in \d+:\d\d; initial accuracy (\d\.\d{3})", lines[1])
    assert lines[1].endswith(f"{metrics['test_accuracy_mean'][0]:.3f}")
    matches = [ROUND_LINE.fullmatch(line) for line in lines[2:]]
    assert all(matches) and len(matches) == 20, lines
    assert [int(m.group(1)) for m in matches] == list(range(1, 21))
    assert {m.group(2) for m in matches} == {"20"}
    bytes_per_round = np.cumsum([row["bytes_sent"] for row in _rows(out / "rounds.csv")])
    for match in matches:
        done = int(match.group(1))
        evaluated = metrics["round"] <= done  # the latest evaluation so far
        accuracy = metrics["test_accuracy_mean"][evaluated][-1]
        assert match.group(3) == f"{accuracy:.3f}"
        assert match.group(4) == format_bytes(bytes_per_round[done - 1])
    assert "test accuracy (mean over nodes)" in result.stdout  # the table, on stdout


def _rows(path):
    import csv

    with open(path) as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


@pytest.mark.parametrize("flag", ["--quiet", "--json", "--progress=off"])
def test_cli_quiet_json_and_off_print_no_progress(tmp_path, tiny_file, flag):
    args = ["run", tiny_file, "--no-report", "--out", str(tmp_path / "r")]
    result = runner.invoke(app, [*args, flag])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    if flag == "--json":
        assert json.loads(result.stdout)["rounds"] == 4


def test_cli_refuses_an_unknown_progress_mode(tmp_path, tiny_file):
    result = runner.invoke(app, ["run", tiny_file, "--progress", "fancy", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "--progress: expected one of auto, bar, lines, off; got 'fancy'" in result.stderr
    quiet = ["run", tiny_file, "--progress", "fancy", "--quiet", "--out", str(tmp_path / "q")]
    result = runner.invoke(app, quiet)  # refused with --quiet too, before any run
    assert result.exit_code == 2 and "got 'fancy'" in result.stderr
    assert not (tmp_path / "q").exists()


def test_compare_and_sweep_lines_say_variant_k_of_n(tmp_path, tiny_file):
    compare = runner.invoke(
        app,
        [
            "compare",
            tiny_file,
            "-s",
            "rounds=2",
            "-s",
            "eval_every=1",
            "-p",
            "dpsgd",
            "-p",
            "periodic period=2",
        ]
        + ["--no-report", "--out", str(tmp_path / "c")],
    )
    assert compare.exit_code == 0, compare.output
    labels = [line.split("]")[0] + "]" for line in compare.stderr.splitlines()]
    assert labels == ["[variant 1/2 dpsgd]"] * 4 + ["[variant 2/2 periodic period=2]"] * 4
    sweep = runner.invoke(
        app,
        [
            "sweep",
            tiny_file,
            "-s",
            "rounds=2",
            "-s",
            "eval_every=1",
            "--grid",
            "optimizer.lr=0.1,0.2",
            "--seeds",
            "2",
        ]
        + ["--no-report", "--out", str(tmp_path / "s")],
    )
    assert sweep.exit_code == 0, sweep.output
    starts = [line for line in sweep.stderr.splitlines() if line.endswith("set-up (2 rounds)")]
    assert starts == [
        f"[variant {k}/4 optimizer.lr={lr}, seed {seed}] set-up (2 rounds)"
        for k, (lr, seed) in enumerate([(0.1, 3), (0.2, 3), (0.1, 4), (0.2, 4)], start=1)
    ]


class Clock:
    """Simulated time: a callback sets it to 200 s per round done."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lines_also_every_few_minutes_and_the_eta_from_the_pace():
    """200 s a round, a line per 50% or after 300 s: rounds 2, 4, 5, 7, 9, 10; the ETA
    is the rounds left at 200 s each."""
    clock, stream = Clock(), io.StringIO()

    class Tick(gossamer.Callback):
        def on_round(self, sim, row):
            clock.now = 200.0 * sim.next_round

    display = LineProgress(stream, every_percent=50, every_seconds=300, clock=clock)
    gossamer.run(small_config(rounds=10), progress=display, callbacks=[Tick()])
    lines = stream.getvalue().splitlines()
    assert lines[:2] == ["set-up (10 rounds)", "set-up done in 0:00; initial accuracy 0.383"]
    rounds = [ROUND_LINE.fullmatch(line) for line in lines[2:]]
    assert [int(m.group(1)) for m in rounds] == [2, 4, 5, 7, 9, 10]
    assert [m.group(5) for m in rounds] == [_duration(200 * k) for k in (2, 4, 5, 7, 9, 10)]
    assert [m.group(6) for m in rounds] == ["26:40", "20:00", "16:40", "10:00", "3:20", "0:00"]


def test_a_resumed_run_says_where_it_resumed(tmp_path):
    config = small_config(rounds=8)

    with pytest.raises(gossamer.RunInterrupted):
        gossamer.run(config, out=tmp_path / "cut", progress=stop_at(3))
    stream = io.StringIO()
    gossamer.resume(tmp_path / "cut", progress=LineProgress(stream, every_percent=50))
    lines = stream.getvalue().splitlines()
    assert lines[1].startswith("set-up done in") and lines[1].endswith("; resumed at round 3")
    assert [int(ROUND_LINE.fullmatch(line).group(1)) for line in lines[2:]] == [4, 8]


def test_the_bar_shows_set_up_then_rounds_with_an_eta():
    from rich.console import Console

    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=160, color_system=None)
    states = []

    class Look(gossamer.Callback):  # what the bar says when each hook has run
        def on_start(self, sim):
            states.append(display.status())

        def on_round(self, sim, row):
            states.append(display.status())

    display = BarProgress(console)
    result = gossamer.run(small_config(), progress=display, callbacks=[Look()])
    # Look runs before the display: each state is the one before that hook's update
    assert states[0].startswith("set-up: reading data, building the population  elapsed")
    assert states[1].startswith("set-up: evaluating the initial models  elapsed")
    assert re.fullmatch(r"round 0/4  acc 0\.383  sent 0 B  elapsed \d:\d\d  ETA -", states[2])
    assert re.fullmatch(
        r"round 1/4  acc 0\.383  sent 5\.904 kB  elapsed \d:\d\d  ETA \d:\d\d", states[3]
    )
    assert result.metrics["test_accuracy_mean"][0] == pytest.approx(0.3833, abs=1e-4)
    text = stream.getvalue()
    assert "set-up: reading data, building the population" in text
    assert "round 4/4" in text and "ETA" in text
    assert display.bar is None  # stopped when the run ended


def test_progress_renders_in_jupyter():
    """In a notebook (rich's Console detects Jupyter; forced here) progress is one output
    updated in place: the set-up first (an indeterminate bar), the last round at the end."""
    pytest.importorskip("IPython")
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output
    from rich.console import Console

    InteractiveShell.instance()  # the kernel's shell, as in a notebook
    display = progress_display("auto", Console(force_jupyter=True))
    assert isinstance(display, NotebookProgress)
    display.every_seconds = 0.0  # every update, to check each
    with capture_output() as captured:
        result = gossamer.run(small_config(), progress=display)
    pages = [output.data["text/html"] for output in captured.outputs]
    texts = [output.data["text/plain"] for output in captured.outputs]
    assert "<progress  style" in pages[0]  # no value: indeterminate during the set-up
    assert texts[0].startswith("run  set-up: reading data, building the population")
    assert texts[1].startswith("run  set-up: evaluating the initial models")
    accuracy = result.metrics["test_accuracy_mean"][-1]
    assert '<progress value="4" max="4"' in pages[-1]
    assert re.fullmatch(
        rf"run  round 4/4  acc {accuracy:.3f}  sent 23\.62 kB  elapsed \d:\d\d  ETA 0:00",
        texts[-1],
    )
    assert len(pages) == 2 + 5  # set-up twice, then rounds 0 (set-up done) to 4


def test_auto_is_lines_when_not_a_terminal_and_bad_progress_is_refused():
    from rich.console import Console

    assert isinstance(progress_display("auto", Console(file=io.StringIO())), LineProgress)
    assert isinstance(progress_display("auto", Console(force_terminal=True)), BarProgress)
    assert progress_display("off") is None
    with pytest.raises(ConfigError, match="progress: expected True, False, one of auto"):
        gossamer.run(small_config(), progress=3)


def test_a_run_over_an_hour_says_so_up_front():
    """10 s a round for 400 rounds (plus the set-up): after two rounds every display
    states the estimate once, 400 x 10 s = 1:06:40; a run under an hour says nothing."""
    clock, stream = Clock(), io.StringIO()

    class Tick(gossamer.Callback):
        def on_round(self, sim, row):
            clock.now = 10.0 * sim.next_round

    display = LineProgress(stream, every_percent=50, clock=clock)

    class StopAt(gossamer.Callback):  # 400 rounds would take long to simulate: stop at 4
        def on_round(self, sim, row):
            if sim.next_round == 4:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        gossamer.run(small_config(rounds=400), progress=display, callbacks=[Tick(), StopAt()])
    notices = [line for line in stream.getvalue().splitlines() if "will take" in line]
    assert notices == [
        "this run will take about 1:06:40 (from the pace of its first 2 rounds: 398 rounds "
        "left); Ctrl-C stops it at a checkpoint, `gossamer plan` estimates before running"
    ]
    stream = io.StringIO()
    display = LineProgress(stream, every_percent=50, clock=clock)
    clock.now = 0.0
    gossamer.run(small_config(rounds=6), progress=display, callbacks=[Tick()])
    assert "will take" not in stream.getvalue()
