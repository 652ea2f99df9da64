"""Time-varying topologies: the communication graph of each round.

- ``resample_every: k`` (kinds ``regular``, ``erdos_renyi``, ``small_world``): a fresh
  random graph every k rounds, as DecentralizePy's dynamic peer sampler (k = 1 every
  round). Epoch e = t // k draws its graph from the key (seed, topology, e); epoch 0
  is the static graph of the same config. Undirected; mixing weights as configured
  (Metropolis–Hastings by default), computed on each epoch's graph.
- ``epidemic``: Epidemic Learning (de Vos, Farhadkhani, Guerraoui, Kermarrec, Pires,
  Sharma, NeurIPS 2023), the EL-Local variant: every round each node sends its model
  to ``fanout`` (s) other nodes drawn uniformly without replacement (keys
  ``hash(seed, topology, round, i, j)``: the s smallest), and every node averages its
  own model with those it received, all with equal weight, ``x_i <- (x_i + sum_j x_j)
  / (1 + received_i)``. Directed; W is row stochastic, not doubly stochastic (as in
  the paper). Drawing the s peers costs O(N^2) hashes per round.
- ``one_peer_exponential``: the one-peer exponential graph of Ying, Yuan, Chen, Hu,
  Pan, Yin (NeurIPS 2021): in round t every node i sends to ``(i + 2^k) mod N`` with
  ``k = t mod ceil(log2 N)`` and averages its model with the one it received,
  ``x_i <- (x_i + x_{i - 2^k}) / 2`` (doubly stochastic; over ceil(log2 N) rounds
  the product is the exact average when N is a power of two).

A directed message that did not arrive (churn, loss) is simply not averaged in:
receivers weight themselves and what arrived equally.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from gossamer.config import TopologyConfig
from gossamer.config.schema import PER_ROUND_KINDS
from gossamer.sim.rng import Purpose, hash32
from gossamer.sim.topology import build_graph

DYNAMIC_KINDS = PER_ROUND_KINDS  # a graph per round: TimeVarying.ROUND_GRAPHS draws it
_HASH_ROWS = 512  # nodes whose peer keys are hashed at once (bounds the (rows, N) keys)
SPECTRAL_GAP_MAX_NODES = 256  # rounds.csv records each round's gap up to this size


@dataclass(frozen=True)
class RoundGraph:
    """The directed edges j -> i a round's messages travel, and how they are weighted."""

    receiver: torch.Tensor  # (E,) i
    sender: torch.Tensor  # (E,) j
    reverse: torch.Tensor | None  # (E,) the edge i -> j of each j -> i; None: directed
    changed: bool  # a new graph this round


def time_varying(config: TopologyConfig) -> bool:
    return config.kind in DYNAMIC_KINDS or config.resample_every > 0


class TimeVarying:
    """The graph of every round for one run (a pure function of seed and round)."""

    def __init__(self, config: TopologyConfig, nodes: int, seed: int):
        self.config, self.nodes, self.seed = config, nodes, seed
        self._epoch: int | None = None
        self._graph: RoundGraph | None = None

    def at(self, round: int) -> RoundGraph:
        drawn = self.ROUND_GRAPHS.get(self.config.kind)
        if drawn is not None:
            return drawn(self, round)
        epoch = round // self.config.resample_every
        changed = round % self.config.resample_every == 0  # a new graph starts this round
        if epoch != self._epoch:  # only the edges: the network weights them on what is live
            graph = build_graph(self.config, self.nodes, self.seed, epoch)
            edges = np.array(list(graph.edges()), dtype=np.int64).reshape(-1, 2)
            rows = np.concatenate([edges[:, 0], edges[:, 1]])
            cols = np.concatenate([edges[:, 1], edges[:, 0]])
            self._graph, self._epoch = undirected(rows, cols, True, self.nodes), epoch
        return RoundGraph(self._graph.receiver, self._graph.sender, self._graph.reverse, changed)

    def _epidemic(self, round: int) -> RoundGraph:
        n, s = self.nodes, min(self.config.fanout, self.nodes - 1)
        targets = []
        everyone = torch.arange(n)
        for lo in range(0, n, _HASH_ROWS):  # the s nodes j != i with the smallest keys
            rows = everyone[lo : lo + _HASH_ROWS, None]
            keys = hash32(self.seed, Purpose.TOPOLOGY, round, rows, everyone[None, :])
            keys[everyone[lo : lo + _HASH_ROWS] - lo, everyone[lo : lo + _HASH_ROWS]] = 2**33
            targets.append(torch.topk(keys, s, dim=1, largest=False).indices)
        receiver = torch.cat(targets).flatten()
        sender = everyone.repeat_interleave(s)
        return RoundGraph(receiver, sender, None, True)

    def _one_peer(self, round: int) -> RoundGraph:
        n = self.nodes
        hop = 2 ** (round % max(1, math.ceil(math.log2(n))))
        sender = torch.arange(n)
        return RoundGraph((sender + hop) % n, sender, None, True)

    #: How each per-round kind of :data:`gossamer.config.schema.TOPOLOGIES` draws round t.
    ROUND_GRAPHS: ClassVar = {"epidemic": _epidemic, "one_peer_exponential": _one_peer}


def undirected(rows: np.ndarray, cols: np.ndarray, changed: bool, n: int) -> RoundGraph:
    """The directed edges of an undirected graph on ``n`` nodes, given as the entries
    (rows, cols) of its W with both directions of each edge (self loops dropped),
    ordered by (receiver, sender)."""
    edges = rows != cols
    receiver, sender = rows[edges], cols[edges]
    order = np.lexsort((sender, receiver))  # by receiver: a rank's edges are contiguous
    receiver, sender = receiver[order], sender[order]
    key, back = receiver * n + sender, sender * n + receiver  # key is sorted
    reverse = np.searchsorted(key, back)
    return RoundGraph(
        torch.as_tensor(receiver), torch.as_tensor(sender), torch.as_tensor(reverse), changed
    )


def round_spectral_gap(
    rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, n: int, symmetric: bool
) -> float:
    """1 - the second largest eigenvalue modulus of a round's W (dense; small N only)."""
    if n > SPECTRAL_GAP_MAX_NODES or n < 2:
        return math.nan
    w = np.zeros((n, n))
    np.add.at(w, (rows, cols), weights)
    values = np.linalg.eigvalsh(w) if symmetric else np.linalg.eigvals(w)
    moduli = np.sort(np.abs(values))
    return max(0.0, float(1.0 - moduli[-2]))  # not below 0 by rounding
