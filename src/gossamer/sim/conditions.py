"""Conditions of a real fleet: which nodes are online each round, which messages arrive.

**Availability** (``network.availability``) gives every round an online mask (N,):

- ``always``: every node, every round (the default);
- ``bernoulli``: node i is online in round t iff ``u(seed, t, i) < online``,
  independently (the i.i.d. availability of many federated-learning simulators);
- ``markov``: a two-state Markov chain per node (sessions): an online node goes
  offline with probability ``1 / mean_online`` per round, an offline one comes back
  with probability ``1 / mean_offline``, so sessions have geometric lengths with
  those means and a node is online a share ``mean_online / (mean_online +
  mean_offline)`` of the time; round 0 is drawn from that stationary share;
- ``daily``: ``bernoulli`` with a share that follows a day, ``low + (high - low)(1 +
  cos(2 pi (t / period - peak))) / 2`` (devices charging at night, say);
- ``trace``: online intervals from a file, in trace time units, round t at time ``t x
  seconds_per_round``. Two formats: a CSV with columns ``node,start,end`` (online in
  ``[start, end)``), or FedScale's client-availability trace (a dict per client of
  ``active`` and ``inactive`` time lists and ``finish_time``: online in
  ``[active[k], inactive[k]]``, time taken modulo ``finish_time``, as FedScale's
  ``is_active``), as JSON or as FedScale's pickle, read by an unpickler that refuses
  every Python class, so the file cannot run code. Node i follows the i-th client in
  sorted id order.

**Delivery** (``network.delivery``): each message arrives independently with that
probability. Every random draw is a hash of ``(seed, purpose, round, ...)`` (for a
message, of the round, the exchange within the round, the sender and the receiver),
so the conditions do not depend on how nodes are batched, and a resumed run sees the
same ones.

**Simulated time** (:class:`Clock`): each node's training and traffic time per round,
from its device profile or FedScale's device-capacity trace; a round lasts as long as
its slowest online node.
"""

from __future__ import annotations

import csv
import json
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gossamer.config import AvailabilityConfig, Config, ConfigError, DataError
from gossamer.sim.energy import EnergyModel, build_energy_model
from gossamer.sim.models import StackedModel
from gossamer.sim.rng import Purpose, uniform


class Availability:
    """The online mask of every round for one run (the Markov chain's state included)."""

    def __init__(self, config: AvailabilityConfig, nodes: int, seed: int):
        self.config, self.nodes, self.seed = config, nodes, seed
        self._ids = torch.arange(nodes)
        self._online = torch.ones(nodes, dtype=torch.bool)  # (N,) of round self._round
        self._round = -1
        self._trace = read_trace(config, nodes) if config.kind == "trace" else None

    def online(self, round: int) -> torch.Tensor:
        """(N,) bool: the nodes online in (0-based) round ``round``."""
        kind = self.config.kind
        if kind == "markov":
            return self._markov(round)
        if kind == "always":
            return torch.ones(self.nodes, dtype=torch.bool)
        if kind == "trace":
            return self._trace.online(round * self.config.seconds_per_round)
        share = self.config.online if kind == "bernoulli" else self.daily_share(round)
        return self._draw(round) < share

    def check_some_online(self, rounds: int) -> None:
        """Refuse a trace under which no node is online in any of the run's ``rounds``
        (the config refuses the other kinds that leave none: ``gossamer.config.work``)."""
        trace, spr = self._trace, self.config.seconds_per_round
        if trace is None or trace.first_online_round(rounds, spr) is not None:
            return
        span = "no online interval"
        if len(trace.start):
            span = (
                f"{len(trace.start):,} online interval{'s' * (len(trace.start) > 1)} from time "
                f"{float(trace.start.min()):g} to {float(trace.end.max()):g}"
            )
        raise ConfigError(
            f"network.availability.path '{self.config.path}': expected some node online in "
            f"the run's {rounds:,} rounds (trace times 0 to {(rounds - 1) * spr:g} at "
            f"seconds_per_round {spr:g}), or the run does no work; got {span} for its "
            f"{self.nodes:,} nodes (use more rounds, another seconds_per_round or trace)"
        )

    def daily_share(self, round: int) -> float:
        c = self.config
        phase = 2 * math.pi * (round / c.period - c.peak)
        return c.low + (c.high - c.low) * (1 + math.cos(phase)) / 2

    def _draw(self, round: int) -> torch.Tensor:
        return uniform(self.seed, Purpose.AVAILABILITY, round, self._ids)  # (N,) float64

    def _markov(self, round: int) -> torch.Tensor:
        """Advance the chain to ``round`` (each round's draw is keyed, so the state is a
        pure function of the seed and the round, whoever computes it)."""
        c = self.config
        if round < self._round or self._round < 0:
            share = c.mean_online / (c.mean_online + c.mean_offline)
            self._online, self._round = self._draw(0) < share, 0
        while self._round < round:
            self._round += 1
            draw = self._draw(self._round)
            stays = draw >= 1 / c.mean_online  # an online node stays online
            returns = draw < 1 / c.mean_offline  # an offline node comes back
            self._online = torch.where(self._online, stays, returns)
        return self._online.clone()

    def state_dict(self) -> dict[str, Any]:
        return {"round": self._round, "online": self._online.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._round = int(state["round"])
        self._online = state["online"].to(torch.bool).cpu().clone()


def delivered(
    seed: int,
    round: int,
    exchange: int,
    senders: torch.Tensor,
    receivers: torch.Tensor,
    p: float,
    links: torch.Tensor | None = None,
) -> torch.Tensor:
    """Which messages arrive: (M,) bool for messages ``senders[k] -> receivers[k]``, the
    ``exchange``-th of the round (the coordinator is node id N). Each arrives with
    probability ``p``, times the reliability ``links`` (N + 1,) of both ends' links."""
    if links is not None:
        p = p * links[senders] * links[receivers]  # (M,) float64
    elif p >= 1.0:
        return torch.ones(len(senders), dtype=torch.bool)
    return uniform(seed, Purpose.DELIVERY, round, exchange, senders, receivers) < p


def link_reliability(by_device: dict[str, float], devices: EnergyModel) -> torch.Tensor | None:
    """(N + 1,) the reliability of each node's link from ``network.link_delivery``
    (devices not named: 1), and the coordinator's (1); None when none is set."""
    if not by_device:
        return None
    names = [d.name for d in devices.devices]
    unknown = sorted(set(by_device) - set(names))
    if unknown:
        raise ConfigError(
            f"network.link_delivery: unknown device {unknown[0]!r}; expected one of "
            f"{', '.join(repr(n) for n in names)}"
        )
    per_device = np.array([by_device.get(name, 1.0) for name in names], dtype=np.float64)
    return torch.as_tensor(np.append(per_device[devices.node_device], 1.0))


# ------------------------------------------------------------------ traces


class Trace:
    """Online intervals per node: node i is online at time s iff some interval of i,
    taken modulo its period (inf: none), holds s."""

    def __init__(self, node, start, end, period, nodes: int, closed: bool = False):
        self.node = torch.as_tensor(node, dtype=torch.int64)  # (K,)
        self.start = torch.as_tensor(start, dtype=torch.float64)  # (K,)
        self.end = torch.as_tensor(end, dtype=torch.float64)  # (K,)
        self.period = torch.as_tensor(period, dtype=torch.float64)  # (K,) inf: no wrap
        self.nodes = nodes
        self.closed = closed  # FedScale: [active, inactive]; CSV: [start, end)

    def online(self, time: float) -> torch.Tensor:
        local = torch.where(torch.isinf(self.period), time, time % self.period)
        inside = (self.start <= local) & (
            (local <= self.end) if self.closed else (local < self.end)
        )
        online = torch.zeros(self.nodes, dtype=torch.bool)
        online[self.node[inside]] = True
        return online

    def first_online_round(self, rounds: int, seconds_per_round: float) -> int | None:
        """The first of rounds 0..rounds-1 in which some node is online (round t at time
        ``t x seconds_per_round``, as :meth:`Availability.online` asks), or None: blocks
        of rounds against every interval at once, stopping at the first found."""
        block = max(1, 2**22 // max(1, len(self.start)))  # rounds x intervals per block
        for first in range(0, rounds, block):
            times = torch.arange(first, min(first + block, rounds), dtype=torch.float64)
            times = times * seconds_per_round  # (B,) as round * seconds_per_round
            period = self.period[None, :]  # (1, K)
            local = torch.where(torch.isinf(period), times[:, None], times[:, None] % period)
            after = self.start <= local  # (B, K)
            inside = after & ((local <= self.end) if self.closed else (local < self.end))
            found = inside.any(dim=1).nonzero()
            if len(found):
                return first + int(found[0])
        return None


def read_trace(config: AvailabilityConfig, nodes: int) -> Trace:
    """The trace file of ``network.availability.path`` for ``nodes`` nodes."""
    path = config.path
    fmt = config.format
    if fmt == "auto":
        fmt = "csv" if path.suffix.lower() == ".csv" else "fedscale"
    if fmt == "csv":
        return _read_csv_trace(path, nodes)
    return _read_fedscale_trace(path, nodes)


def _read_csv_trace(path: Path, nodes: int) -> Trace:
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        needed = ["node", "start", "end"]
        if reader.fieldnames is None or any(c not in reader.fieldnames for c in needed):
            raise DataError(
                f"network.availability.path '{path}': expected a CSV with columns "
                f"node,start,end; got {reader.fieldnames}"
            )
        for line, row in enumerate(reader, start=2):
            try:
                node, start, end = int(row["node"]), float(row["start"]), float(row["end"])
            except (TypeError, ValueError):  # a short row, or not numbers
                raise DataError(
                    f"network.availability.path '{path}' line {line}: expected an integer "
                    f"node and numbers start, end; got {[row[c] for c in needed]}"
                ) from None
            if not 0 <= node < nodes or not start <= end:  # (NaN fails too)
                raise DataError(
                    f"network.availability.path '{path}' line {line}: expected 0 <= node < "
                    f"{nodes} and start <= end; got node {node}, start {start}, end {end}"
                )
            rows.append((node, start, end))
    node, start, end = (np.array(c) for c in zip(*rows, strict=True)) if rows else ([],) * 3
    return Trace(node, start, end, np.full(len(rows), np.inf), nodes)


class _PlainData(pickle.Unpickler):
    """Unpickles dicts, lists, numbers and strings only: every class is refused, so a
    crafted file cannot run code."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refers to the Python object {module}.{name}")


def read_fedscale(path: Path, nodes: int, key: str, fields: str) -> list[tuple[Any, Any]]:
    """A FedScale trace (client id -> a dict of ``fields``), as JSON or FedScale's pickle
    read as plain data only: the first ``nodes`` clients in sorted id order, one per
    node. Errors name the config ``key``."""
    try:
        if path.suffix.lower() == ".json":
            clients = json.loads(path.read_text(encoding="utf-8"))
        else:
            with open(path, "rb") as handle:
                clients = _PlainData(handle).load()
    except Exception as error:  # a malformed or hostile file: named, never run
        raise DataError(
            f"{key} '{path}': not a readable FedScale trace (plain data only): "
            f"{type(error).__name__}: {error}"
        ) from None
    if not isinstance(clients, dict) or len(clients) < nodes:
        count = len(clients) if isinstance(clients, dict) else type(clients).__name__
        raise DataError(
            f"{key} '{path}': expected a mapping of at least {nodes} clients (one per node) "
            f"to {{{fields}}}; got {count}"
        )
    return [(name, clients[name]) for name in sorted(clients, key=_sort_key)[:nodes]]


def _read_fedscale_trace(path: Path, nodes: int) -> Trace:
    clients = read_fedscale(
        path, nodes, "network.availability.path", "active, inactive, finish_time"
    )
    node, start, end, period = [], [], [], []
    for index, (key, trace) in enumerate(clients):
        try:
            active = [float(t) for t in trace["active"]]
            inactive = [float(t) for t in trace["inactive"]]
            finish = float(trace["finish_time"])
        except (TypeError, KeyError, ValueError):
            raise DataError(
                f"network.availability.path '{path}': client {key!r} lacks numeric active, "
                "inactive and finish_time"
            ) from None
        ordered = all(a <= b for a, b in zip(active, inactive, strict=False))
        if len(active) != len(inactive) or not finish > 0 or not ordered:
            raise DataError(
                f"network.availability.path '{path}': client {key!r} needs as many active as "
                f"inactive times, each active <= its inactive, and finish_time > 0; got "
                f"{len(active)} and {len(inactive)} times, finish_time {finish}"
            )
        node += [index] * len(active)
        start += active
        end += inactive
        period += [finish] * len(active)
    return Trace(np.array(node), np.array(start), np.array(end), np.array(period), nodes, True)


def _sort_key(key: Any) -> tuple[int, Any]:
    """Client ids in numeric order when they are numbers (FedScale's are), else as text."""
    try:
        return (0, float(key))
    except (TypeError, ValueError):
        return (1, str(key))


# ------------------------------------------------------------------ simulated time


class Clock:
    """Simulated time: how long each node takes to train and to communicate in a round.

    A node's training takes ``samples x seconds per sample``, the per-sample time of
    the energy model (SkipTrain's: 3 x the model's inference time on the device); its
    communication takes ``bytes sent x 8 / upload + bytes received x 8 / download``
    plus one latency when it exchanged any message. Links come from the device
    profiles (defaults 10 Mbit/s up, 50 Mbit/s down, 50 ms: our round numbers for a
    mobile LTE link; set your own per profile), or, with ``network.capacity``, from
    FedScale's device-capacity trace (per client ``computation``: milliseconds per
    sample of inference, training 3x as in FedScale; ``communication``: kbit/s both
    ways). Rounds are synchronous: a round lasts as long as its slowest online node.
    """

    def __init__(self, energy: EnergyModel, capacity: Path | None, nodes: int):
        self.seconds_per_sample = energy.seconds_per_sample  # (N,)
        links = np.array([(d.upload_mbps, d.download_mbps, d.latency_ms) for d in energy.devices])[
            energy.node_device
        ]
        self.upload_bps, self.download_bps = links[:, 0] * 1e6, links[:, 1] * 1e6  # (N,)
        self.latency = links[:, 2] / 1e3  # (N,) seconds
        if capacity is not None:
            compute_ms, kbps = read_capacity(capacity, nodes)
            self.seconds_per_sample = 3.0 * compute_ms / 1e3
            self.upload_bps = self.download_bps = kbps * 1e3

    def training_seconds(self, samples: np.ndarray) -> np.ndarray:
        """(N,) seconds each node needs to train on ``samples`` (N,) samples."""
        return samples * self.seconds_per_sample

    def node_seconds(self, samples, bytes_sent, bytes_received, messages) -> np.ndarray:
        """(N,) each node's time in a round: training, then its traffic."""
        traffic = bytes_sent * 8 / self.upload_bps + bytes_received * 8 / self.download_bps
        return self.training_seconds(samples) + traffic + self.latency * (messages > 0)


def read_capacity(path: Path, nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """FedScale's device-capacity trace (client id -> {computation, communication}) as
    JSON or its pickle (plain data only): (N,) ms per sample and (N,) kbit/s."""
    rows = []
    for key, client in read_fedscale(path, nodes, "network.capacity", "computation, communication"):
        try:
            rows.append((float(client["computation"]), float(client["communication"])))
        except (TypeError, KeyError, ValueError):
            raise DataError(
                f"network.capacity '{path}': client {key!r} lacks numbers computation and "
                "communication"
            ) from None
    values = np.array(rows)
    if not (np.isfinite(values) & (values > 0)).all():
        raise DataError(f"network.capacity '{path}': speeds must be positive numbers")
    return values[:, 0], values[:, 1]


def fleet(config: Config, model: StackedModel) -> tuple[EnergyModel, Clock, dict[str, Any]]:
    """The devices (energy model), the clock of simulated time, and the network's
    conditions (link reliability, stragglers, availability), from the config alone:
    their errors (device names, trace files) come before any data is read."""
    devices = build_energy_model(
        config.energy,
        config.nodes,
        model.num_params,
        model.forward_flops_per_sample(),
        config.data.batch_size * config.local_steps,
        config.seed,
    )
    clock = Clock(devices, config.network.capacity, config.nodes)
    stragglers = None
    if config.network.deadline is not None:  # too slow to train a round in time
        samples = np.full(config.nodes, config.data.batch_size * config.local_steps)
        stragglers = torch.as_tensor(clock.training_seconds(samples) > config.network.deadline)
    conditions = {
        "links": link_reliability(config.network.link_delivery, devices),
        "stragglers": stragglers,
        "availability": Availability(config.network.availability, config.nodes, config.seed),
    }
    conditions["availability"].check_some_online(config.rounds)  # a trace: known only now
    return devices, clock, conditions
