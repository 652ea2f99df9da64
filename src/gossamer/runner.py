"""The round loop: build a simulation from a config, run it, measure it."""

from __future__ import annotations

import collections
import contextlib
import json
import math
import signal
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gossamer import __version__, checkpoint
from gossamer.accounting import Ledger, model_message_bytes
from gossamer.checkpoint import LoopState
from gossamer.config import Config, ConfigError, load_config
from gossamer.data import (
    ConceptShift,
    Dataset,
    DriftEvent,
    NodeData,
    dataset_info,
    dataset_key,
    drift_schedule,
    load_dataset,
    partition_indices,
    to_node_data,
)
from gossamer.energy import build_energy_model
from gossamer.engine import Population, tune_allocator
from gossamer.models import StackedModel, build_model
from gossamer.protocols import Context, Protocol, build_protocol
from gossamer.results import FINISH_MARKS, Result, RunWriter, directory_kind, load_run
from gossamer.topology import Mixer, Topology, build_topology
from gossamer.tracking import check_tracking, open_logger

METRIC_COLUMNS = (
    "round",
    "test_accuracy_mean",
    "test_accuracy_min",
    "test_accuracy_max",
    "test_loss_mean",
    "avg_model_accuracy",
    "avg_model_loss",
    "consensus_distance",
    "train_loss",
    "messages",
    "bytes_sent",
    "local_steps",
    "energy_joules",
    "wall_seconds",
)
ENERGY_COLUMNS = ("energy_joules", "training_joules", "communication_joules")
# Added to metrics.csv and rounds.csv when data.stream is on.
STREAM_COLUMNS = ("cumulative_prequential_loss", "cumulative_prequential_error")

ProgressCallback = Callable[[int, dict[str, Any] | None], None]


@dataclass
class Simulation:
    """Everything a run is made of, built from one config."""

    config: Config
    dataset: Dataset
    node_data: NodeData
    model: StackedModel
    topology: Topology | None
    population: Population
    protocol: Protocol
    ledger: Ledger
    drift_events: list[DriftEvent]
    node_loss: torch.Tensor | None = field(default=None, init=False)  # (N,) latest evaluation
    node_accuracy: torch.Tensor | None = field(default=None, init=False)  # (N,)
    train_loss: float = field(default=math.nan, init=False)  # latest round, mean over nodes
    prequential: list[float] = field(default_factory=lambda: [0.0, 0.0], init=False)
    _drifts_by_round: dict[int, list[DriftEvent]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        for event in self.drift_events:  # looked up by round, not scanned every round
            self._drifts_by_round.setdefault(event.round, []).append(event)

    @classmethod
    def build(cls, config: Config) -> Simulation:
        """Validate what depends on the data shape first, then allocate."""
        device = resolve_device(config.device)
        input_shape, classes = dataset_info(config.data)
        model = build_model(config.model, input_shape, classes)  # ConfigError if unusable
        augment = config.data.augment
        if (augment.crop or augment.flip) and len(input_shape) != 3:
            raise ConfigError(
                f"data.augment: crop and flip need image inputs (C, H, W); "
                f"{config.data.dataset!r} gives {list(input_shape)}"
            )
        if config.engine.precision == "bfloat16" and model.uses_autocast:
            model.autocast_dtype = torch.bfloat16
        topology = None
        if config.protocol.uses_topology:
            key = json.dumps([config.topology.model_dump(mode="json"), config.nodes, config.seed])
            topology = SHARED_TOPOLOGIES.get(
                key, lambda: build_topology(config.topology, config.nodes, config.seed)
            )
        dataset = SHARED_DATASETS.get(
            dataset_key(config.data, config.seed), lambda: load_dataset(config.data, config.seed)
        )
        labels = dataset.y_train.numpy()
        parts = partition_indices(labels, config.nodes, config.data, config.seed, dataset.writers)
        node_data = to_node_data(parts, labels, classes, device)
        dataset = dataset.to(device)
        events = drift_schedule(config.data.drift, config.nodes, config.rounds, config.seed)
        shift = None
        if events:
            shift = ConceptShift(
                config.data.drift, len(events) + 1, classes, input_shape, config.seed, device
            )
        if config.engine.tune_allocator and device.type == "cpu":
            tune_allocator()
        population = Population(
            model,
            dataset,
            node_data,
            config.optimizer,
            config.data.batch_size,
            config.seed,
            config.engine.node_chunk,
            config.engine.eval_batch,
            shift,
            config.data.augment,
        )
        energy = None
        if config.energy.enabled:
            energy = build_energy_model(
                config.energy,
                config.nodes,
                model.num_params,
                model.forward_flops_per_sample(),
                config.data.batch_size * config.local_steps,
                config.seed,
            )
        ledger = Ledger(config.nodes, energy)
        context = Context(
            population=population,
            ledger=ledger,
            topology=topology,
            mixer=Mixer(topology, device) if topology is not None else None,
            local_steps=config.local_steps,
            rounds=config.rounds,
            message_bytes=model_message_bytes(model.num_params),
            seed=config.seed,
            energy=energy,
        )
        protocol = build_protocol(config.protocol, context)
        return cls(
            config, dataset, node_data, model, topology, population, protocol, ledger, events
        )

    def step(self, t: int) -> None:
        """Round t (0-based): drift, the protocol's round, and the ledger's round record."""
        self.ledger.begin_round()
        stats: dict[str, float] = {}
        if self.drift_events:
            drifted = 0
            for event in self._drifts_by_round.get(t + 1, ()):
                self.population.drift(torch.from_numpy(event.nodes), event.concept)
                drifted += int(event.nodes.sum())
            stats["drift_nodes"] = drifted
        train, protocol_stats = self.protocol.step(t)
        trained = ~torch.isnan(train.loss)
        self.train_loss = float(train.loss[trained].mean()) if trained.any() else math.nan
        stats["train_loss"] = self.train_loss
        if self.config.data.stream:  # prequential: each batch judged before training on it
            round_loss = float(train.loss[trained].sum())
            round_error = float(train.error[trained].sum())
            self.prequential[0] += round_loss
            self.prequential[1] += round_error
            stats.update(prequential_loss=round_loss, prequential_error=round_error)
            stats.update(zip(STREAM_COLUMNS, self.prequential, strict=True))
        stats.update(protocol_stats)
        self.ledger.end_round(t + 1, stats)

    def evaluate(self, round_number: int, wall_seconds: float) -> dict[str, Any]:
        """One metrics row (see METRIC_COLUMNS and STREAM_COLUMNS)."""
        loss, accuracy = self.population.evaluate()
        self.node_loss, self.node_accuracy = loss, accuracy
        avg_loss, avg_accuracy = self.population.evaluate(self.population.params.mean())
        totals = self.ledger.totals()
        row = {
            "round": round_number,
            "test_accuracy_mean": float(accuracy.mean()),
            "test_accuracy_min": float(accuracy.min()),
            "test_accuracy_max": float(accuracy.max()),
            "test_loss_mean": float(loss.mean()),
            "avg_model_accuracy": float(avg_accuracy[0]),
            "avg_model_loss": float(avg_loss[0]),
            "consensus_distance": self.population.consensus_distance(),
            "train_loss": self.train_loss,
            "messages": totals["messages"],
            "bytes_sent": totals["bytes_sent"],
            "local_steps": totals["local_steps"],
            "energy_joules": totals["energy_joules"],
            "wall_seconds": wall_seconds,
        }
        if self.config.data.stream:
            row.update(zip(STREAM_COLUMNS, self.prequential, strict=True))
        return row


class SharedCache:
    """The last few values built, by key: runs of one process that use the same data
    or graph (the variants of a comparison, the points of a sweep) build them once.

    Small on purpose (a dataset can be hundreds of MB); sweeps run seed by seed so
    that consecutive runs share their keys.
    """

    def __init__(self, size: int):
        self.size, self.hits, self.misses = size, 0, 0
        self.values: collections.OrderedDict[str, Any] = collections.OrderedDict()

    def get(self, key: str, build: Callable[[], Any]) -> Any:
        if key in self.values:
            self.hits += 1
            self.values.move_to_end(key)
            return self.values[key]
        self.misses += 1
        value = build()
        self.values[key] = value
        if len(self.values) > self.size:
            self.values.popitem(last=False)
        return value

    def clear(self) -> None:
        self.values.clear()
        self.hits = self.misses = 0


SHARED_DATASETS = SharedCache(2)
SHARED_TOPOLOGIES = SharedCache(4)


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when available."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' requested but no CUDA device is available; got 'cuda'")
    return torch.device(name)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run after a whole round; its directory can be resumed."""

    def __init__(self, run_dir: Path | None, rounds_done: int):
        super().__init__(f"interrupted after round {rounds_done}")
        self.run_dir, self.rounds_done = run_dir, rounds_done


def run(
    config: Config | dict | str | Path | None = None,
    *,
    overrides: Sequence[str] = (),
    out: str | Path | None = None,
    force: bool = False,
    progress: ProgressCallback | None = None,
    report: bool = False,
) -> Result:
    """Run one experiment and return its metrics.

    Args:
        config: a Config, a mapping, a YAML/TOML path, or None for the quickstart.
        overrides: ``"a.b=value"`` strings, as ``--set`` on the command line.
        out: run directory to write (config, metrics, rounds, nodes, labels, topology,
            summary, checkpoints); nothing is written when None.
        force: overwrite a finished run directory.
        progress: called as ``progress(rounds_done, metrics_row_or_None)`` each round.
        report: also write the HTML/Markdown report into ``out``.

    A first Ctrl-C (SIGINT) stops after the current round with a checkpoint and raises
    :class:`RunInterrupted`; ``resume(out)`` continues. A second Ctrl-C stops at once.
    """
    config = load_config(config, overrides)
    writer = RunWriter(Path(out), force=force) if out is not None else None  # before work
    check_tracking(config, writer.path if writer is not None else None)
    sim = Simulation.build(config)
    if writer is not None:
        writer.begin(config, sim.node_data.label_counts, sim.topology)
    return _execute(sim, LoopState(), writer, progress, report)


def resume(
    run_dir: str | Path, *, progress: ProgressCallback | None = None, report: bool = False
) -> Result:
    """Continue an interrupted run from its last checkpoint, in the same directory.

    The finished run's metrics equal those of an uninterrupted run (every random draw
    is a hash of the seed and counters; see gossamer.checkpoint).
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"resume: '{run_dir}' is not a run directory (no config.yaml)")
    writer = RunWriter(run_dir, resume=True)
    config = load_config(run_dir / "config.yaml")
    checkpoint.check(run_dir / checkpoint.CHECKPOINT, config)  # before any work
    sim = Simulation.build(config)
    loop = checkpoint.load(run_dir / checkpoint.CHECKPOINT, sim)
    return _execute(sim, loop, writer, progress, report)


def prepare_runs(out: Path, kind: str, planned: Sequence[tuple[Path, Config]], force: bool) -> None:
    """Before the first run of a comparison or sweep (``kind``) into ``out``.

    Refuses a finished one (its ``<kind>.json`` mark exists) unless ``force``, which
    removes the mark first, so that a forced rerun stopped half-way is an unfinished
    one that a rerun without ``force`` continues. Refuses, unless ``force``, to
    overwrite a run directory that holds the results of another config.
    """
    marker = out / FINISH_MARKS[kind]
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: '{out}' exists and is not a directory")
    found = directory_kind(out)
    if found not in (None, kind):
        raise ConfigError(f"--out: '{out}' holds a {found}, not a {kind}; choose another directory")
    if marker.exists() and not force:
        raise ConfigError(
            f"--out: '{out}' holds a finished {kind} ({marker.name} exists); "
            "choose another directory or pass --force"
        )
    for run_dir, config in planned:  # what would stop a run at its start, checked now
        check_tracking(config, run_dir)
        if run_dir.exists() and (not run_dir.is_dir() or _foreign(run_dir)):
            raise ConfigError(
                f"--out: '{run_dir}' exists and holds no run (no config.yaml); "
                "move it away or choose another directory"
            )
        has_results = (run_dir / "summary.json").exists() or (
            run_dir / checkpoint.CHECKPOINT
        ).exists()
        if has_results and not force and not _same_config(run_dir, config):
            raise ConfigError(
                f"--out: '{run_dir}' holds the results of another config; pass --force to "
                "overwrite them, or choose another directory"
            )
    marker.unlink(missing_ok=True)
    if force:  # every run starts over, even if this pass is stopped before reaching it
        for run_dir, _ in planned:
            (run_dir / "summary.json").unlink(missing_ok=True)
            (run_dir / checkpoint.CHECKPOINT).unlink(missing_ok=True)


def _foreign(folder: Path) -> bool:
    """A non-empty folder that is not a run directory."""
    return any(folder.iterdir()) and not (folder / "config.yaml").exists()


def _same_config(run_dir: Path, config: Config) -> bool:
    try:
        written = load_config(run_dir / "config.yaml")
    except ConfigError:
        return False
    return checkpoint.config_hash(written) == checkpoint.config_hash(config)


def run_or_continue(
    config: Config, run_dir: Path | None, force: bool, progress: ProgressCallback | None
) -> Result:
    """One run of a comparison or sweep: when ``run_dir`` already holds this very config
    (same resolved config hash) and ``force`` is off, a finished run is loaded and an
    interrupted one resumed from its checkpoint; otherwise it runs afresh."""
    if run_dir is not None and not force and _same_config(run_dir, config):
        if (run_dir / "summary.json").is_file():
            return load_run(run_dir)
        result = None
        if (run_dir / checkpoint.CHECKPOINT).is_file():
            try:  # resume checks the checkpoint before any work
                result = resume(run_dir, progress=progress)
            except ConfigError as error:  # unreadable, or another version's: redo this run
                warnings.warn(f"{error}; running it again", stacklevel=2)
        if result is None:
            result = run(config, out=run_dir, force=True, progress=progress)
    else:
        result = run(config, out=run_dir, force=True, progress=progress)
    if result.stop_requested:  # Ctrl-C in the last round: this run is done, stop here
        raise RunInterrupted(run_dir, config.rounds)
    return result


def checkpoint_interval(config: Config) -> int:
    """Rounds between checkpoints: ``checkpoint_every``, 'auto' = a tenth of the run."""
    if config.checkpoint_every == "auto":
        return max(1, config.rounds // 10)
    return config.checkpoint_every


def _execute(
    sim: Simulation,
    loop: LoopState,
    writer: RunWriter | None,
    progress: ProgressCallback | None,
    report: bool,
) -> Result:
    """The round loop, from wherever ``loop`` stands."""
    config = sim.config
    start = time.perf_counter() - loop.elapsed
    every = checkpoint_interval(config) if writer is not None else 0
    logger = open_logger(config, writer.path if writer is not None else None, loop.next_round)

    def record(rounds_done: int, row: dict[str, Any] | None) -> None:
        if row is not None:
            loop.rows.append(row)
            if writer is not None:
                writer.write_metrics(loop.rows)
            if logger is not None:
                logger.log(row)
        if progress is not None:
            progress(rounds_done, row)

    with _graceful_interrupt() as interrupt:
        if not loop.rows:
            record(0, sim.evaluate(0, time.perf_counter() - start))
        elif progress is not None:
            progress(loop.next_round, loop.rows[-1])
        for t in range(loop.next_round, config.rounds):
            sim.step(t)
            row = None
            if (t + 1) % config.eval_every == 0 or t + 1 == config.rounds:
                row = sim.evaluate(t + 1, time.perf_counter() - start)
            loop.next_round = t + 1
            record(t + 1, row)
            last = t + 1 == config.rounds
            if (
                writer is not None
                and not last
                and (interrupt.stop or (every and (t + 1) % every == 0))
            ):
                writer.write_rounds(sim.ledger.per_round)
                if logger is not None:  # logged rows never lag the checkpoint
                    logger.flush()
                checkpoint.save(
                    writer.path / checkpoint.CHECKPOINT, sim, loop, time.perf_counter() - start
                )
            if interrupt.stop and not last:
                if logger is not None:
                    logger.close()
                if writer is not None and report:
                    from gossamer.report import write_report

                    write_report([writer.path])
                raise RunInterrupted(writer.path if writer is not None else None, t + 1)
    wall = time.perf_counter() - start
    result = Result(
        config=config,
        summary=_summary(sim, loop.rows[-1], wall),
        metrics=_columns(loop.rows),
        rounds=_columns(sim.ledger.per_round),
        nodes=_node_table(sim),
        run_dir=writer.path if writer is not None else None,
        label_counts=sim.node_data.label_counts,
        stop_requested=interrupt.stop,
    )
    if logger is not None:
        logger.close()
    if writer is not None:
        writer.finish(result)
        (writer.path / checkpoint.CHECKPOINT).unlink(missing_ok=True)  # finished: not needed
        if report or (writer.path / "report.html").exists():  # never leave a stale one
            from gossamer.report import write_report

            write_report([writer.path])
    return result


class _Interrupt:
    stop = False


@contextlib.contextmanager
def _graceful_interrupt():
    """First SIGINT: finish the current round, then stop; second SIGINT: stop now."""
    state = _Interrupt()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum, frame):
        if state.stop:
            raise KeyboardInterrupt
        state.stop = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, previous)


def _summary(sim: Simulation, last: dict, wall: float) -> dict[str, Any]:
    config = sim.config
    final_keys = METRIC_COLUMNS[1:9] + (STREAM_COLUMNS if config.data.stream else ())
    summary = {
        "gossamer_version": __version__,
        "protocol": config.protocol.name,
        "rounds": config.rounds,
        "nodes": config.nodes,
        "model": {"name": config.model.name, "parameters": sim.model.num_params},
        "message_bytes": model_message_bytes(sim.model.num_params),
        "topology": sim.topology.summary() if sim.topology is not None else None,
        "final": {k: last[k] for k in final_keys},
        "totals": sim.ledger.totals(),
        "device": str(sim.population.device),
        "wall_seconds": wall,
    }
    energy = sim.ledger.energy
    if energy is not None:
        per_device = {}
        for index, device in enumerate(energy.devices):
            nodes = energy.node_device == index
            if nodes.any():
                per_device[device.name] = {
                    "nodes": int(nodes.sum()),
                    **{k: float(sim.ledger.node[k][nodes].sum()) for k in ENERGY_COLUMNS},
                    "joules_per_training_round": float(energy.joules_per_round[nodes][0]),
                    "budget_rounds": int(energy.budget_rounds[nodes][0]),
                }
        summary["energy"] = {
            "scaling": sim.config.energy.scaling,
            "link": energy.link.name,
            "per_device": per_device,
        }
    if sim.drift_events:
        summary["drift"] = [
            {"round": e.round, "concept": e.concept, "nodes": int(e.nodes.sum())}
            for e in sim.drift_events
        ]
    return summary


def _columns(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    return {k: np.array([row.get(k, np.nan) for row in rows]) for k in keys}


def _node_table(sim: Simulation) -> dict[str, np.ndarray]:
    table = {
        "node": np.arange(sim.config.nodes),
        "train_samples": sim.node_data.counts.cpu().numpy(),
        "degree": sim.topology.degree
        if sim.topology is not None
        else np.zeros(sim.config.nodes, dtype=np.int64),
        "test_accuracy": sim.node_accuracy.cpu().numpy(),
        "test_loss": sim.node_loss.cpu().numpy(),
    }
    if sim.drift_events:
        table["concept"] = sim.population.state.concept.cpu().numpy()
    if sim.ledger.energy is not None:
        table["device"] = np.array(sim.ledger.energy.device_names())
        table["budget_rounds"] = sim.ledger.energy.budget_rounds
    table.update(sim.ledger.node)
    return table
