"""The public callback API: gossamer.Callback hooks, their order and arguments."""

from __future__ import annotations

import signal

import pytest

import gossamer
from conftest import small_config
from gossamer.config import ConfigError


class Recorder(gossamer.Callback):
    """Writes down every hook the loop calls, with what it can see then."""

    def __init__(self):
        self.events = []

    def on_start(self, sim):
        self.events.append(("start", sim.next_round, len(sim.history)))

    def on_round(self, sim, row):
        self.events.append(("round", sim.next_round, None if row is None else row["round"]))

    def on_save(self, sim, elapsed):
        self.events.append(("save", sim.next_round, elapsed > 0))

    def on_stop(self, sim):
        self.events.append(("stop", sim.next_round))

    def on_finish(self, sim, result):
        self.result = result
        self.events.append(("finish", sim.next_round))

    def close(self):
        self.events.append(("close",))


def test_hooks_in_order_with_their_arguments(tmp_path):
    """4 rounds, evaluated every 2 and initially; a checkpoint every round but the last
    ('auto' = a tenth of the run, at least 1)."""
    recorder = Recorder()
    result = gossamer.run(small_config(), out=tmp_path / "run", callbacks=[recorder])
    assert recorder.events == [
        ("start", 0, 0),
        ("round", 0, 0),  # the initial evaluation
        ("round", 1, None),
        ("save", 1, True),
        ("round", 2, 2),
        ("save", 2, True),
        ("round", 3, None),
        ("save", 3, True),
        ("round", 4, 4),
        ("finish", 4),
        ("close",),
    ]
    assert recorder.result is result
    assert list(result.metrics["round"]) == [0, 2, 4]


def test_stop_and_resume_tell_the_callbacks(tmp_path):
    class Stopper(Recorder):
        def on_round(self, sim, row):
            super().on_round(sim, row)
            if sim.next_round == 2:
                signal.raise_signal(signal.SIGINT)  # Ctrl-C: stop after this round

    stopper = Stopper()
    with pytest.raises(gossamer.RunInterrupted):
        gossamer.run(small_config(), out=tmp_path / "run", callbacks=[stopper])
    assert stopper.events[-3:] == [("save", 2, True), ("stop", 2), ("close",)]
    recorder = Recorder()
    gossamer.resume(tmp_path / "run", callbacks=[recorder])
    # resumed after round 2: two rows known (rounds 0 and 2), rounds 3 and 4 to run
    assert recorder.events[:2] == [("start", 2, 2), ("round", 3, None)]
    assert recorder.events[-3:] == [("round", 4, 4), ("finish", 4), ("close",)]


def test_close_runs_when_a_callback_fails():
    class Fails(Recorder):
        def on_round(self, sim, row):
            super().on_round(sim, row)
            if sim.next_round == 1:
                raise RuntimeError("tracking server down")

    fails, after = Fails(), Recorder()
    with pytest.raises(RuntimeError, match="tracking server down"):
        gossamer.run(small_config(), callbacks=[fails, after])
    assert fails.events[-1] == ("close",) and after.events[-1] == ("close",)
    assert ("round", 1, None) not in after.events  # the failing one came first


def test_compare_and_sweep_tell_the_callbacks_of_every_run():
    recorder = Recorder()
    gossamer.compare(
        small_config().model_dump(mode="json"),
        protocols=["dpsgd", "periodic period=2"],
        callbacks=[recorder],
    )
    assert [e for e in recorder.events if e[0] in ("start", "finish")] == [
        ("start", 0, 0),
        ("finish", 4),
    ] * 2
    seen = []

    class Seeds(gossamer.Callback):
        def on_start(self, sim):
            seen.append((sim.config.optimizer.lr, sim.config.seed))

    gossamer.sweep(small_config(), grid=["optimizer.lr=0.1,0.2"], seeds=2, callbacks=[Seeds()])
    assert seen == [(0.1, 3), (0.2, 3), (0.1, 4), (0.2, 4)]


def test_bad_callbacks_are_refused_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="callbacks: expected gossamer.Callback instances"):
        gossamer.run(small_config(), out=tmp_path / "a", callbacks=[print])
    assert not (tmp_path / "a").exists()
    with pytest.raises(ConfigError, match="callbacks: callbacks run in this process"):
        gossamer.run(small_config(), ranks=2, callbacks=[Recorder()])


def test_a_finished_comparison_is_untouched_by_bad_callbacks_or_progress(tmp_path):
    """compare and sweep check callbacks and progress before they prepare (with force:
    clear) the directory: a finished comparison keeps its results."""
    out = tmp_path / "cmp"
    gossamer.compare(small_config(rounds=2), protocols=["dpsgd"], out=out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for bad in ({"callbacks": [print]}, {"progress": "fancy"}):
        with pytest.raises(ConfigError, match="callbacks: expected|progress: expected"):
            gossamer.compare(
                small_config(rounds=2), protocols=["dpsgd"], out=out, force=True, **bad
            )
        with pytest.raises(ConfigError, match="callbacks: expected|progress: expected"):
            gossamer.sweep(small_config(rounds=2), grid=["seed=1"], out=out, force=True, **bad)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
