"""The ledger: what every node sent, received, trained and spent, per node and per round.

Message sizes are what a real deployment would put on the wire:

- a *model message* carries the parameters, ``num_params x bytes per element``
  (4 for float32), plus the fixed header;
- a *control message* (a request, an acknowledgement) is the header alone.

The header is :data:`HEADER_BYTES` = 32 bytes: sender id (4), receiver id (4),
round (8), message kind (4), payload length (8) and a CRC-32 checksum (4). It is our
choice, documented so that byte counts can be compared with other tools that count
only payloads (subtract 32 bytes per message).

The coordinator of coordinator-based protocols is not a node: its traffic is kept in
its own counters and included in the network totals.

Energy (Joules) is charged per node where the work happens, for every protocol: the
training energy of the samples a node trains on, and the link energy of the bytes it
sends and receives (``gossamer.sim.energy``). The coordinator's energy is not counted (it
is not a battery-powered device).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gossamer.sim.energy import EnergyModel

HEADER_BYTES = 32
TRAFFIC = (  # sent: attempted; received: delivered; lost: sent but not delivered
    "messages_sent",
    "messages_received",
    "messages_lost",
    "bytes_sent",
    "bytes_received",
    "bytes_lost",
)
COUNTERS = (
    *TRAFFIC,
    "local_steps",
    "samples_trained",
    "training_joules",
    "communication_joules",
    "energy_joules",
)
_FLOAT_COUNTERS = ("training_joules", "communication_joules", "energy_joules")
ROUND_FIELDS = (
    "messages",
    "messages_delivered",
    "messages_lost",
    "bytes_sent",
    "bytes_received",
    "bytes_lost",
    "local_steps",
    "samples_trained",
    "energy_joules",
)


def model_message_bytes(num_params: int, dtype: torch.dtype = torch.float32) -> int:
    """Bytes of one message carrying a whole model."""
    return num_params * dtype.itemsize + HEADER_BYTES


def _as_counts(values: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.int64)


class Ledger:
    """Cumulative counters per node and for the coordinator, and totals per round."""

    def __init__(self, num_nodes: int, energy: EnergyModel | None = None):
        self.num_nodes = num_nodes
        self.energy = energy
        self.node = {
            name: np.zeros(num_nodes, dtype=np.float64 if name in _FLOAT_COUNTERS else np.int64)
            for name in COUNTERS
        }
        self.coordinator = dict.fromkeys(TRAFFIC, 0)
        self.per_round: list[dict[str, Any]] = []  # network totals of each finished round
        self._round_start: dict[str, float] | None = None

    # ------------------------------------------------------------ rounds
    def begin_round(self) -> None:
        self._round_start = self.totals()

    def end_round(self, round_number: int, stats: dict[str, float] | None = None) -> None:
        """Close a round: store its own totals (not cumulative) and protocol stats."""
        now = self.totals()
        start = self._round_start or dict.fromkeys(now, 0)
        row: dict[str, Any] = {"round": round_number}
        row.update({k: now[k] - start[k] for k in ROUND_FIELDS})
        row.update(stats or {})
        self.per_round.append(row)
        self._round_start = None

    # ------------------------------------------------------------ events
    def record_training(self, steps: torch.Tensor | np.ndarray, batch_size: int) -> None:
        """steps: (N,) local steps each node took."""
        steps = _as_counts(steps)
        self.node["local_steps"] += steps
        self.node["samples_trained"] += steps * batch_size
        if self.energy is not None:
            self._charge("training_joules", self.energy.training_joules(steps * batch_size))

    def record_exchange(
        self,
        sent: torch.Tensor | np.ndarray,
        received: torch.Tensor | np.ndarray,
        message_bytes: int,
        delivered: torch.Tensor | np.ndarray | None = None,
    ) -> None:
        """Node-to-node messages: (N,) messages each node sent (attempted) and received
        (delivered to it), and of those it sent, how many were delivered (default all)."""
        sent, received = _as_counts(sent), _as_counts(received)
        lost = sent - _as_counts(delivered) if delivered is not None else np.zeros_like(sent)
        self._count(self.node, "sent", sent, message_bytes)
        self._count(self.node, "received", received, message_bytes)
        self._count(self.node, "lost", lost, message_bytes)
        self._charge_traffic(sent, received, message_bytes)

    def record_upload(
        self,
        senders: torch.Tensor | np.ndarray,
        message_bytes: int,
        delivered: torch.Tensor | np.ndarray | None = None,
    ) -> None:
        """Nodes to coordinator: (N,) messages each node sent to it, and which of them the
        coordinator received (default all)."""
        senders = _as_counts(senders)
        delivered = _as_counts(delivered) if delivered is not None else senders
        self._count(self.node, "sent", senders, message_bytes)
        self._count(self.node, "lost", senders - delivered, message_bytes)
        self._charge_traffic(senders, np.zeros_like(senders), message_bytes)
        self._count(self.coordinator, "received", int(delivered.sum()), message_bytes)

    def record_download(
        self,
        receivers: torch.Tensor | np.ndarray,
        message_bytes: int,
        delivered: torch.Tensor | np.ndarray | None = None,
    ) -> None:
        """Coordinator to nodes: (N,) messages it sent to each node, and which of them
        arrived (default all)."""
        receivers = _as_counts(receivers)
        delivered = _as_counts(delivered) if delivered is not None else receivers
        self._count(self.node, "received", delivered, message_bytes)
        self._charge_traffic(np.zeros_like(receivers), delivered, message_bytes)
        self._count(self.coordinator, "sent", int(receivers.sum()), message_bytes)
        self._count(self.coordinator, "lost", int((receivers - delivered).sum()), message_bytes)

    @staticmethod
    def _count(counters: dict, what: str, messages, message_bytes: int) -> None:
        counters[f"messages_{what}"] += messages
        counters[f"bytes_{what}"] += messages * message_bytes

    def _charge_traffic(self, sent: np.ndarray, received: np.ndarray, message_bytes: int) -> None:
        """Link energy of one event's messages (each of ``message_bytes``)."""
        if self.energy is not None:
            joules = self.energy.traffic_joules(sent, received, message_bytes)
            self._charge("communication_joules", joules)

    def _charge(self, counter: str, joules: np.ndarray) -> None:
        self.node[counter] += joules
        self.node["energy_joules"] += joules

    # ------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Per-node counters (as tensors sharing the arrays' memory), the coordinator's
        counters and the per-round records."""
        return {
            "node": {name: torch.from_numpy(values) for name, values in self.node.items()},
            "coordinator": dict(self.coordinator),
            "per_round": list(self.per_round),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, values in self.node.items():
            values[:] = np.asarray(state["node"][name])
        self.coordinator.update(state["coordinator"])
        self.per_round = list(state["per_round"])

    # ------------------------------------------------------------ reading
    def totals(self) -> dict[str, float]:
        """Network totals so far; messages and bytes include the coordinator's. ``messages``
        counts every message sent (attempted): ``messages_delivered + messages_lost``."""
        sent = int(self.node["messages_sent"].sum()) + self.coordinator["messages_sent"]
        lost = int(self.node["messages_lost"].sum()) + self.coordinator["messages_lost"]
        return {
            "messages": sent,
            "messages_delivered": sent - lost,
            "messages_lost": lost,
            "bytes_sent": int(self.node["bytes_sent"].sum()) + self.coordinator["bytes_sent"],
            "bytes_received": int(self.node["bytes_received"].sum())
            + self.coordinator["bytes_received"],
            "bytes_lost": int(self.node["bytes_lost"].sum()) + self.coordinator["bytes_lost"],
            "local_steps": int(self.node["local_steps"].sum()),
            "samples_trained": int(self.node["samples_trained"].sum()),
            "energy_joules": float(self.node["energy_joules"].sum()),
            "training_joules": float(self.node["training_joules"].sum()),
            "communication_joules": float(self.node["communication_joules"].sum()),
        }
