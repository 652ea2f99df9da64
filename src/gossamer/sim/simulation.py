"""A simulation: everything a run is made of, built from one config, with one run state.

:meth:`Simulation.build` validates what depends on the data's shape, then allocates:
data, partition, model, optimizer, topology, energy model, ledger, population,
network and protocol. :meth:`Simulation.step` runs one round; :meth:`evaluate` measures
the nodes and records a metrics row. Everything that evolves during a run is reachable
from :meth:`state_dict` (each component owns its part), so a checkpoint is that nested
dict and a resumed run computes exactly what an uninterrupted one would.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from gossamer.config import Config, ConfigError, DivergedError, check_augmentation
from gossamer.sim.accounting import Ledger, model_message_bytes
from gossamer.sim.cache import SHARED_DATASETS, SHARED_TOPOLOGIES  # noqa: F401 - both cleared by callers
from gossamer.sim.conditions import Clock, fleet
from gossamer.sim.data import (
    ConceptShift,
    Dataset,
    DriftEvent,
    NodeData,
    dataset_info,
    drift_schedule,
    load_partitioned,
)
from gossamer.sim.engine import Population, auto_chunk, set_precision, tune_allocator
from gossamer.sim.evaluation import mean_accuracy_ci95, node_sample, stratified_subset
from gossamer.sim.memory import check_fits, check_model_fits, plan_memory
from gossamer.sim.models import StackedModel, build_model
from gossamer.sim.network import Encoder, Network, build_aggregator, build_compressor
from gossamer.sim.optim import build_optimizer
from gossamer.sim.outputs import (  # noqa: F401 - the columns are re-exported
    _TIMED,
    ENERGY_COLUMNS,
    EVAL_COLUMNS,
    METRIC_COLUMNS,
    STREAM_COLUMNS,
    node_table,
    run_summary,
)
from gossamer.sim.protocols import Context, Protocol, build_protocol
from gossamer.sim.shard import NodeRows, Shard
from gossamer.sim.timevarying import DYNAMIC_KINDS, TimeVarying, time_varying
from gossamer.sim.topology import Mixer, Topology, build_topology


@dataclass
class Simulation:
    """Everything a run is made of, built from one config."""

    config: Config
    dataset: Dataset
    node_data: NodeData
    model: StackedModel
    topology: Topology | None
    population: Population
    network: Network
    protocol: Protocol
    ledger: Ledger
    drift_events: list[DriftEvent]
    clock: Clock
    next_round: int = field(default=0, init=False)  # the 0-based round to run next
    history: list[dict[str, Any]] = field(default_factory=list, init=False)  # metrics rows
    node_loss: torch.Tensor | None = field(default=None, init=False)  # (N,) latest evaluation
    node_accuracy: torch.Tensor | None = field(default=None, init=False)  # (N,)
    train_loss: float = field(default=math.nan, init=False)  # latest round, mean over nodes
    prequential: list[float] = field(default_factory=lambda: [0.0, 0.0], init=False)
    simulated_seconds: float = field(default=0.0, init=False)  # simulated time so far
    _drifts_by_round: dict[int, list[DriftEvent]] = field(default_factory=dict, init=False)
    _test_subset: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        for event in self.drift_events:  # looked up by round, not scanned every round
            self._drifts_by_round.setdefault(event.round, []).append(event)

    @classmethod
    def build(cls, config: Config) -> Simulation:
        """Validate what depends on the data shape first, then allocate."""
        device = resolve_device(config.device)
        input_shape, classes = dataset_info(config.data)
        check_model_fits(config, device)  # the N models' memory, before the template takes any
        model = build_model(config.model, input_shape, classes)  # ConfigError if unusable
        check_augmentation(config.data, input_shape)  # known only now for npz and folders
        tf32 = set_precision(model, config.engine.precision, device)
        build_compressor(config.protocol.compression, model.param_shapes, config.seed)  # checks
        devices, clock, conditions = fleet(config, model)  # before the data: no data needed
        energy = devices if config.energy.enabled else None
        # the data before the topology: a graph of more nodes than samples is not built
        dataset, node_data = load_partitioned(config, classes, device)
        dataset = dataset.to(device)
        if config.eval.test_samples > len(dataset.y_test):
            raise ConfigError(
                f"eval.test_samples: expected at most the {len(dataset.y_test):,} samples of "
                f"the test set; got {config.eval.test_samples:,}"
            )
        topology = schedule = None
        if config.protocol.uses_topology and config.topology.kind not in DYNAMIC_KINDS:
            key = json.dumps([config.topology.model_dump(mode="json"), config.nodes, config.seed])
            topology = SHARED_TOPOLOGIES.get(  # with resample_every: the first epoch's graph
                key, lambda: build_topology(config.topology, config.nodes, config.seed)
            )
        if config.protocol.uses_topology and time_varying(config.topology):
            schedule = TimeVarying(config.topology, config.nodes, config.seed)
        events = drift_schedule(config.data.drift, config.nodes, config.rounds, config.seed)
        shift = None
        if events:
            shift = ConceptShift(
                config.data.drift, len(events) + 1, classes, input_shape, config.seed, device
            )
        if config.engine.tune_allocator and device.type == "cpu":
            tune_allocator()
        ledger = Ledger(config.nodes, energy)
        # this rank's nodes (all of them on one process), in whole node chunks
        chunk = config.engine.node_chunk or auto_chunk(
            model, config.nodes, config.data.batch_size, device
        )
        shard = Shard.current(config.nodes, chunk, device)
        if config.engine.check_memory:  # before the population
            plan = plan_memory(config, model, dataset, node_data, device, shard)
            check_fits(plan, device=device)
        population = Population(
            model,
            dataset,
            node_data,
            build_optimizer(config.optimizer),
            ledger,
            config.data.batch_size,
            config.seed,
            config.rounds,
            chunk,
            config.engine.eval_batch,
            shift,
            config.data.augment,
            shard,
            tf32=tf32,
            autotune=config.engine.autotune,
        )
        network = Network(
            population.params,
            ledger,
            model_message_bytes(model.num_params),
            topology,
            Mixer(topology, device, config.nodes, shard, all_rows=schedule is not None)
            if config.protocol.uses_topology
            else None,
            conditions=config.network,
            seed=config.seed,
            weights=config.topology.weights,
            schedule=schedule,
            shard=shard,
            encoder=Encoder(
                config.protocol.compression,
                model.param_shapes,
                config.seed,
                shard.local_nodes,
                device,
                shard.lo,
            ),
            aggregator=build_aggregator(config.protocol.aggregator),
            **conditions,
        )
        context = Context(
            population=population,
            network=network,
            topology=topology,
            local_steps=config.local_steps,
            rounds=config.rounds,
            seed=config.seed,
            energy=energy,
        )
        protocol = build_protocol(config.protocol, context)
        return cls(
            config,
            dataset,
            node_data,
            model,
            topology,
            population,
            network,
            protocol,
            ledger,
            events,
            clock,
        )

    # ------------------------------------------------------------ a round
    def step(self, t: int) -> None:
        """Round t (0-based): drift, the protocol's round, and the ledger's round record."""
        self.ledger.begin_round()
        self.network.begin_round(t)
        before = {k: self.ledger.node[k].copy() for k in _TIMED}
        stats: dict[str, float] = {}
        if self.drift_events:
            drifted = 0
            for event in self._drifts_by_round.get(t + 1, ()):
                self.population.drift(torch.from_numpy(event.nodes), event.concept)
                drifted += int(event.nodes.sum())
            stats["drift_nodes"] = drifted
        train, protocol_stats = self.protocol.step(t)
        self.check_finite(t, train.loss, before["samples_trained"])
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
        stats.update(self.network.round_stats)
        stats["online_nodes"] = int(self.network.online.sum())
        stats["round_seconds"] = self._round_seconds(before)
        self.simulated_seconds += stats["round_seconds"]
        self.ledger.end_round(t + 1, stats)
        self.next_round = t + 1

    def check_finite(self, t: int, loss: torch.Tensor | None, samples_before=None) -> None:
        """DivergedError naming round t and the nodes: trained with a non-finite loss, or
        (``loss`` None, before a checkpoint) with non-finite parameters."""
        trained = loss is not None and self.ledger.node["samples_trained"] > samples_before
        bad = (
            self.population.non_finite()
            if loss is None
            else (torch.as_tensor(trained) & ~torch.isfinite(loss.cpu()))
        )
        if bool(bad.any()):
            nodes = bad.nonzero().squeeze(1).tolist()
            shown = ", ".join(map(str, nodes[:10])) + (", ..." if len(nodes) > 10 else "")
            raise DivergedError(
                f"round {t + 1}: training diverged on {len(nodes)} node(s) ({shown}): their "
                f"{'loss is' if loss is not None else 'parameters are'} not finite; lower "
                f"optimizer.lr (got {self.config.optimizer.lr}) or add optimizer.weight_decay"
            )

    def _round_seconds(self, before: dict[str, np.ndarray]) -> float:
        """The round's simulated duration: its slowest online node's training and traffic."""
        done = {k: self.ledger.node[k] - before[k] for k in _TIMED}
        seconds = self.clock.node_seconds(
            done["samples_trained"],
            done["bytes_sent"],
            done["bytes_received"],
            done["messages_sent"] + done["messages_received"],
        )
        online = self.network.online.numpy()
        return float(seconds[online].max()) if online.any() else 0.0

    def due_for_evaluation(self) -> bool:
        """Whether the round just run is evaluated: every ``eval_every`` rounds and the last."""
        done = self.next_round
        return done % self.config.eval_every == 0 or done == self.config.rounds

    def evaluation_sample(self) -> tuple[torch.Tensor | None, tuple | None]:
        """What the evaluation after the rounds run so far measures (``eval:``): the
        nodes (N,) bool, None for all; the test inputs and labels, None for all. The
        final evaluation measures everything."""
        ev, done = self.config.eval, self.next_round
        if done == self.config.rounds:
            return None, None
        nodes = None
        if ev.nodes:
            nodes = node_sample(self.config.nodes, ev.nodes, self.config.seed, done)
        test = None
        if ev.test_samples:
            if self._test_subset is None:
                index = stratified_subset(self.dataset.y_test, ev.test_samples, self.config.seed)
                index = index.to(self.dataset.y_test.device)
                self._test_subset = (self.dataset.x_test[index], self.dataset.y_test[index])
            test = self._test_subset
        return nodes, test

    def evaluate(self, wall_seconds: float) -> dict[str, Any]:
        """Measure the nodes after the rounds run so far (every node, or the sample
        ``eval:`` asks for); records and returns one metrics row (see METRIC_COLUMNS,
        STREAM_COLUMNS and EVAL_COLUMNS)."""
        nodes, test = self.evaluation_sample()
        loss, accuracy = self.population.evaluate(nodes=nodes, test=test)
        if nodes is not None:
            loss, accuracy = loss[nodes.to(loss.device)], accuracy[nodes.to(loss.device)]
        if nodes is None and test is None:
            self.node_loss, self.node_accuracy = loss, accuracy
        avg_loss, avg_accuracy = self.population.evaluate(self.population.mean(), test=test)
        totals = self.ledger.totals()
        row = {
            "round": self.next_round,
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
            "online_nodes": int(self.network.online.sum()),
            "simulated_seconds": self.simulated_seconds,
            "wall_seconds": wall_seconds,
        }
        if self.config.data.stream:
            row.update(zip(STREAM_COLUMNS, self.prequential, strict=True))
        if self.config.eval.nodes or self.config.eval.test_samples:
            measured = len(test[1]) if test is not None else len(self.dataset.y_test)
            ci = mean_accuracy_ci95(
                accuracy.cpu().numpy(), self.config.nodes, measured, len(self.dataset.y_test)
            )
            row.update(zip(EVAL_COLUMNS, (len(accuracy), measured, ci), strict=True))
        self.history.append(row)
        return row

    # ------------------------------------------------------------ the run state
    def state_dict(self) -> dict[str, Any]:
        """Everything that evolves during a run, as one nested dict of tensors and plain
        values: the round counter, the population (parameters, optimizer state, data
        cursors, concepts), the protocol's state, the ledger, the prequential sums and
        the metrics rows so far."""
        return {
            "next_round": self.next_round,
            "population": self.population.state_dict(),
            "protocol": self.protocol.state_dict(),
            "network": self.network.state_dict(),
            "ledger": self.ledger.state_dict(),
            "train_loss": self.train_loss,
            "prequential": list(self.prequential),
            "simulated_seconds": self.simulated_seconds,
            "history": list(self.history),
        }

    def row_ranges(self) -> dict[str, tuple[int, int]]:
        """The rows of per-node state this rank holds: its nodes and (event-triggered
        gossip under conditions) its edges' copies; what a checkpoint load reads."""
        shard = self.population.shard
        ranges = {"nodes": (shard.lo, shard.hi)}
        if self.topology is not None:
            ranges["edges"] = self.network.edge_range
        return ranges

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (tensors may be on the CPU), with
        per-node tensors holding this rank's rows (:meth:`row_ranges`): as plain tensors
        (a checkpoint's) or as the :class:`NodeRows` that :meth:`state_dict` gives."""
        state = _plain_rows(state)
        self.next_round = int(state["next_round"])
        self.population.load_state_dict(state["population"])
        device = self.population.device
        self.protocol.load_state_dict({k: v.to(device) for k, v in state["protocol"].items()})
        self.network.load_state_dict(state["network"])
        self.ledger.load_state_dict(state["ledger"])
        train_loss = state["train_loss"]
        self.train_loss = train_loss if train_loss is not None else math.nan
        self.prequential[:] = state["prequential"]
        self.simulated_seconds = float(state["simulated_seconds"])
        self.history = list(state["history"])

    # ------------------------------------------------------------ what a run reports
    def summary(self, wall_seconds: float, version: str) -> dict[str, Any]:
        """summary.json: final metrics (the last evaluation), totals, model, energy."""
        return run_summary(self, wall_seconds, version)

    def node_table(self) -> dict[str, np.ndarray]:
        """nodes.csv: per node samples, degree, final accuracy and loss, the ledger's counters."""
        return node_table(self)


def _plain_rows(value: Any) -> Any:
    """``value`` with every :class:`NodeRows` replaced by its tensor (this rank's rows)."""
    if isinstance(value, NodeRows):
        return value.tensor
    if isinstance(value, dict):
        return {key: _plain_rows(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_rows(item) for item in value]
    return value


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when available."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' requested but no CUDA device is available; got 'cuda'")
    return torch.device(name)
