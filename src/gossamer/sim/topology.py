"""Communication graphs, mixing weights and the gossip step ``X <- W X``.

Graphs: complete, ring, 2-D torus, random d-regular, Erdős–Rényi G(n, p),
Watts–Strogatz small world, the (undirected) static exponential graph of Ying et al.
(NeurIPS 2021, arXiv 2110.13363: i ~ i + 2^j mod n), and an edge-list file in
DecentralizePy's format. Disconnected graphs are rejected.

Mixing weights W (N x N, symmetric support = edges + self loops):

- ``metropolis_hastings``: W_ij = 1 / (1 + max(d_i, d_j)) on edges, W_ii = 1 - sum
  (Xiao & Boyd 2004; DecentralizePy's default); doubly stochastic on any graph.
- ``max_degree``: W_ij = 1 / (1 + d_max), W_ii = 1 - d_i / (1 + d_max); doubly stochastic.
- ``uniform``: W_ij = 1 / (1 + d_i) for j in N(i) and i: every node weights itself and
  its neighbours equally. Row stochastic; doubly stochastic only on regular graphs,
  otherwise the network mean drifts (a warning says so).

The spectral gap reported is ``1 - max(|lambda_2|, |lambda_N|)`` of W.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np
import torch
import torch.nn.functional as F

from gossamer.config import Config, ConfigError, TopologyConfig, near_square_rows
from gossamer.config.schema import PER_ROUND_KINDS
from gossamer.sim.rng import Purpose, numpy_generator
from gossamer.sim.shard import Halo, Shard
from gossamer.sim.stacked import StackedTensors, huge_page_zeros

_DENSE_EIG_MAX_NODES = 4096
# Gossip on CPU (see Mixer): up to _GATHER_MIN_NODES nodes, MKL's CSR product on
# column blocks of _PRODUCT_BLOCK_BYTES; above, a weighted gather on copies of column
# blocks of _GATHER_BLOCK_BYTES (each the fastest measured at its sizes).
_GATHER_MIN_NODES = 2048
_PRODUCT_BLOCK_BYTES = 4 * 2**20
_GATHER_BLOCK_BYTES = 2 * 2**20
_EXCHANGE_BYTES = 64 * 2**20  # halo rows fetched from other ranks at a time
# Gossip on a GPU: cuSPARSE's CSR product on spans of columns of this many bytes (the
# product's output and a contiguous copy of its input), so that mixing N = 100,000
# MLPs (64 GB of X) does not need a second X.
_GPU_SPAN_BYTES = 512 * 2**20


@dataclass(frozen=True)
class Topology:
    """An undirected communication graph and its mixing matrix in COO form."""

    graph: nx.Graph
    rows: np.ndarray  # (nnz,) int64, self loops included
    cols: np.ndarray  # (nnz,) int64
    weights: np.ndarray  # (nnz,) float64
    degree: np.ndarray  # (N,) int64 neighbours per node (self excluded)
    spectral_gap: float
    doubly_stochastic: bool

    @property
    def num_nodes(self) -> int:
        return len(self.degree)

    def dense(self) -> np.ndarray:
        """W as a dense (N, N) float64 array (tests and small N)."""
        w = np.zeros((self.num_nodes, self.num_nodes))
        np.add.at(w, (self.rows, self.cols), self.weights)
        return w

    def summary(self) -> dict[str, float | int | bool]:
        return {
            "nodes": self.num_nodes,
            "edges": self.graph.number_of_edges(),
            "degree_min": int(self.degree.min()),
            "degree_max": int(self.degree.max()),
            "degree_mean": float(self.degree.mean()),
            "spectral_gap": self.spectral_gap,
            "doubly_stochastic": self.doubly_stochastic,
        }


def build_topology(config: TopologyConfig, nodes: int, seed: int) -> Topology:
    """The configured graph with its mixing weights; ConfigError if it is unusable."""
    graph = build_graph(config, nodes, seed)
    if not nx.is_connected(graph):
        parts = nx.number_connected_components(graph)
        raise ConfigError(
            f"topology.kind: the {config.kind!r} graph on {nodes} nodes is disconnected "
            f"({parts} components); gossip cannot reach consensus on it"
        )
    return with_weights(graph, config.weights)


def build_graph(config: TopologyConfig, nodes: int, seed: int, epoch: int = 0) -> nx.Graph:
    """The configured graph on nodes 0..N-1 (not yet checked for connectivity); ``epoch``
    > 0 draws another random graph of the kind (time-varying topologies)."""
    keys = (epoch,) if epoch else ()
    rng = numpy_generator(seed, Purpose.TOPOLOGY, *keys)
    graph_seed = int(rng.integers(2**31))
    return GRAPHS[config.kind](config, nodes, graph_seed)


def _torus(config: TopologyConfig, nodes: int) -> nx.Graph:
    rows = config.rows or near_square_rows(nodes)
    grid = nx.grid_2d_graph(rows, nodes // rows, periodic=True)
    return nx.convert_node_labels_to_integers(grid, ordering="sorted")


def _connected_random_regular(degree: int, nodes: int, seed: int) -> nx.Graph:
    """A uniformly random d-regular graph, redrawn (seeded) until connected."""
    for attempt in range(100):
        graph = nx.random_regular_graph(degree, nodes, seed=seed + attempt)
        if nx.is_connected(graph):
            return graph
    return graph  # reported as disconnected by the caller


#: The builder of each fixed kind of :data:`gossamer.config.schema.TOPOLOGIES` (the
#: per-round kinds are gossamer.sim.timevarying's): ``(config, nodes, graph_seed)``.
GRAPHS: dict[str, Callable[[TopologyConfig, int, int], nx.Graph]] = {
    "complete": lambda config, nodes, seed: nx.complete_graph(nodes),
    "ring": lambda config, nodes, seed: nx.cycle_graph(nodes),
    "torus": lambda config, nodes, seed: _torus(config, nodes),
    "regular": lambda config, nodes, seed: _connected_random_regular(config.degree, nodes, seed),
    "erdos_renyi": lambda config, nodes, seed: nx.gnp_random_graph(nodes, config.p, seed=seed),
    "small_world": lambda config, nodes, seed: nx.watts_strogatz_graph(
        nodes, config.degree, config.rewire, seed=seed
    ),
    "exponential": lambda config, nodes, seed: exponential_graph(nodes),
    "file": lambda config, nodes, seed: read_edge_list(config.path, nodes),
}


def exponential_graph(nodes: int) -> nx.Graph:
    """Undirected static exponential graph: i ~ (i + 2^j) mod n for 2^j < n."""
    graph = nx.empty_graph(nodes)
    hop = 1
    while hop < nodes:
        graph.add_edges_from((i, (i + hop) % nodes) for i in range(nodes))
        hop *= 2
    graph.remove_edges_from(nx.selfloop_edges(graph))
    return graph


def read_edge_list(path: Path, nodes: int) -> nx.Graph:
    """Read DecentralizePy's edge-list format: first line N, then one ``u v`` per line."""
    lines = path.read_text(encoding="utf-8").splitlines()
    content = [(number, line.split()) for number, line in enumerate(lines, 1) if line.strip()]
    if not content:
        raise ConfigError(f"topology.path '{path}': empty file; expected a node count")
    number, first = content[0]
    if len(first) != 1 or not first[0].isdigit():
        raise ConfigError(
            f"topology.path '{path}' line {number}: expected the node count; "
            f"got {' '.join(first)!r}"
        )
    count = int(first[0])
    if count != nodes:
        raise ConfigError(f"nodes: the graph in '{path}' has {count} nodes; got nodes = {nodes}")
    graph = nx.empty_graph(nodes)
    for number, fields in content[1:]:
        if len(fields) != 2 or not all(f.isdigit() for f in fields):
            raise ConfigError(
                f"topology.path '{path}' line {number}: expected two node ids 'u v'; "
                f"got {' '.join(fields)!r}"
            )
        u, v = int(fields[0]), int(fields[1])
        if u >= nodes or v >= nodes:
            raise ConfigError(
                f"topology.path '{path}' line {number}: node ids must be below {nodes}; got {u} {v}"
            )
        if u != v:
            graph.add_edge(u, v)
    return graph


def with_weights(graph: nx.Graph, kind: str) -> Topology:
    """Attach mixing weights of the given kind to a connected graph."""
    n = graph.number_of_nodes()
    degree = np.array([graph.degree(i) for i in range(n)], dtype=np.int64)
    edges = np.array(list(graph.edges()), dtype=np.int64).reshape(-1, 2)
    src = np.concatenate([edges[:, 0], edges[:, 1]])
    dst = np.concatenate([edges[:, 1], edges[:, 0]])
    off, diagonal = edge_weights(kind, degree, src, dst)
    nodes = np.arange(n)
    rows = np.concatenate([src, nodes])
    cols = np.concatenate([dst, nodes])
    weights = np.concatenate([off, diagonal])
    column_sums = np.bincount(cols, weights=weights, minlength=n)
    doubly = bool(np.allclose(column_sums, 1.0))
    if not doubly:
        warnings.warn(
            f"topology.weights '{kind}' on an irregular graph is not doubly stochastic: "
            "gossip will not preserve the network's mean model",
            stacklevel=2,
        )
    topology = Topology(graph, rows, cols, weights, degree, 0.0, doubly)
    return Topology(graph, rows, cols, weights, degree, spectral_gap(topology), doubly)


def edge_weights(
    kind: str, degree: np.ndarray, src: np.ndarray, dst: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Weights W_ij of the directed edges i <- j (src i, dst j) of an undirected graph of
    the given degrees, and the diagonal W_ii = 1 - sum_j W_ij (float64)."""
    if kind == "metropolis_hastings":
        off = 1.0 / (1.0 + np.maximum(degree[src], degree[dst]))
    elif kind == "max_degree":
        off = np.full(len(src), 1.0 / (1.0 + degree.max(initial=0)))
    else:  # uniform
        off = 1.0 / (1.0 + degree[src])
    return off, 1.0 - np.bincount(src, weights=off, minlength=len(degree))


def spectral_gap(topology: Topology) -> float:
    """1 - (second largest eigenvalue modulus of W)."""
    n = topology.num_nodes
    if n == 1:
        return 1.0
    if n <= _DENSE_EIG_MAX_NODES:
        w = topology.dense()
        if topology.doubly_stochastic and np.allclose(w, w.T):
            moduli = np.abs(np.linalg.eigvalsh(w))
        else:
            moduli = np.abs(np.linalg.eigvals(w))
    else:
        import scipy.sparse as sp
        from scipy.sparse.linalg import eigs

        w = sp.coo_matrix((topology.weights, (topology.rows, topology.cols)), shape=(n, n))
        moduli = np.abs(eigs(w.tocsr(), k=2, which="LM", return_eigenvectors=False))
    moduli = np.sort(moduli)
    return float(1.0 - moduli[-2])


def _block_columns(gather: bool, halo: int) -> int:
    """Columns of X mixed at a time on CPU, ``halo`` rows read (see Mixer)."""
    return max(64, (_GATHER_BLOCK_BYTES if gather else _PRODUCT_BLOCK_BYTES) // (4 * halo))


def mixing_buffer_bytes(
    nodes: int, rows: int, halo: int, distributed: bool, gpu: bool = False
) -> int:
    """Bytes of the gossip step's buffers: ``nodes`` in all, ``rows`` on this rank,
    ``halo`` rows read (on CPU the product's output block, or the gather's copy of a
    block and its mixed rows; on a GPU a span's input copy and output) and, on several
    ranks, at most one span of rows fetched from the others (see Mixer._apply_block)."""
    fetched = _EXCHANGE_BYTES if distributed else 0
    if gpu:
        return 2 * _GPU_SPAN_BYTES + fetched
    gather = nodes > _GATHER_MIN_NODES
    width = _block_columns(gather, halo)
    return (halo + rows if gather else rows) * width * 4 + fetched


class Mixer:
    """In-place gossip ``X <- W X`` over stacked parameters X (N, P).

    On CPU, X is processed in column blocks sized to stay in cache, so X is read and
    written once from memory; a full-width sparse product would re-read neighbour rows
    from memory for every node. How a block is mixed depends on the number of nodes N
    (all ranks' together, so that a sharded run sums in the same order as one process):

    - N <= 2,048: MKL's sparse CSR product of W with the block (4 MB of it) into a
      reusable buffer, copied back;
    - N > 2,048: the block (2 MB, at least 64 columns) is copied into a reusable buffer
      on 2 MB huge pages, every node's weighted sum of its neighbours' rows is taken
      there (``embedding_bag`` over W's CSR rows: the column indices are a bag's members, the
      weights their per-sample weights, summed in column order) and copied back.

    Measured on this project's 2-core machine (MLP, 6-regular graph): the product is
    7-17% faster at N = 256-1,000 and 4x slower at N = 10,000 (5.2 against 1.2 s),
    where its strided block rows are 416-byte pieces of different pages; they cross
    over between N = 2,000 and 4,000. A W that is exactly the uniform average (the
    complete graph with Metropolis–Hastings weights) is applied as a mean.

    Sharded over ranks, X holds this rank's rows; each gossip step first fetches the
    rows of other ranks that its rows of W read (:class:`gossamer.sim.shard.Halo`,
    planned once from the graph, or every row when the graph changes round by round:
    ``all_rows``), then multiplies its rows of W by them in global column order.
    """

    def __init__(
        self,
        topology: Topology | None,
        device: torch.device,
        nodes: int = 0,
        shard: Shard | None = None,
        all_rows: bool = False,
        dense_share: float = 0.5,
    ):
        n = topology.num_nodes if topology is not None else nodes
        self.device = device
        self.shard = shard or Shard.single(n)
        self._buffer: torch.Tensor | None = None  # the product's out, or the gather's copy
        identity = np.arange(n)
        if topology is None or all_rows:
            self.halo = Halo(self.shard, identity, identity, dense_share=-1.0)
        else:
            self.halo = Halo(self.shard, topology.rows, topology.cols, dense_share)
        self.gather = self.shard.num_nodes > _GATHER_MIN_NODES
        self.block = _block_columns(self.gather, self.halo.size)
        if topology is None:  # weights come round by round (time-varying topologies)
            self.set_weights(identity, identity, np.ones(n), n)
            return
        self.set_weights(topology.rows, topology.cols, topology.weights, n)
        self.is_average = len(topology.weights) == n * n and bool(
            np.allclose(topology.weights, 1.0 / n)
        )

    def set_weights(self, rows: np.ndarray, cols: np.ndarray, weights: np.ndarray, n: int) -> None:
        """Use W with entries ``W[rows[k], cols[k]] = weights[k]`` (e.g. this round's
        weights on the live subgraph), given over all N nodes."""
        rows, cols, weights = self.halo.local_matrix(rows, cols, weights)
        order = np.lexsort((cols, rows))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            self.matrix = (
                torch.sparse_coo_tensor(
                    np.stack([rows[order], cols[order]]),
                    weights[order],
                    (self.shard.local_nodes, self.halo.size),
                    dtype=torch.float32,
                )
                .coalesce()
                .to_sparse_csr()
                .to(self.device)
            )
        self.is_average = False

    def apply_(self, blocks: Iterable[torch.Tensor]) -> None:
        """Replace X by W X, in place; X is given as column blocks (N, P_l).

        ``StackedTensors.blocks`` is such a list; a plain (N, P) matrix is ``[matrix]``.
        """
        for params in blocks:
            self._apply_block(params)

    def _apply_block(self, params: torch.Tensor) -> None:
        if self.is_average:  # every node takes the mean of all (over ranks)
            mean = self.shard.mean(StackedTensors([(params.shape[1],)], [params]))
            params.copy_(mean.blocks[0].expand_as(params))
            return
        p = params.shape[1]
        width = min(self.block, p)  # columns multiplied at a time (cache-sized on CPU)
        span = p  # columns fetched from other ranks at a time (bounds the halo's memory);
        if self.shard.distributed:  # the same on every rank: each span is a collective
            span = max(1, _EXCHANGE_BYTES // (4 * self.shard.num_nodes))
        if params.device.type != "cpu":  # bounds the product's temporaries
            span = min(span, max(1, _GPU_SPAN_BYTES // (4 * self.shard.num_nodes)))
        for first in range(0, p, span):
            # (halo, s) rows of X this rank's rows of W read; params itself on one process
            source = self.halo.exchange(params[:, first : first + span])
            if params.device.type != "cpu":
                params[:, first : first + span].copy_(torch.sparse.mm(self.matrix, source))
                continue
            if self.gather:
                self._gather_columns(source, params[:, first : first + span], width)
                continue
            if not self._reusable(params.shape[0], width, params.dtype):
                self._buffer = torch.zeros(params.shape[0], width, dtype=params.dtype)
            for lo in range(0, source.shape[1], width):
                columns = source[:, lo : lo + width]
                out = self._buffer[:, : columns.shape[1]]
                torch.addmm(out, self.matrix, columns, beta=0.0, out=out)
                params[:, first + lo : first + lo + out.shape[1]].copy_(out)

    def _reusable(self, rows: int, width: int, dtype: torch.dtype) -> bool:
        buffer = self._buffer
        return (
            buffer is not None
            and buffer.shape[0] == rows
            and buffer.shape[1] >= width
            and buffer.dtype == dtype
        )

    def _gather_columns(self, source: torch.Tensor, target: torch.Tensor, width: int) -> None:
        """target <- W source, ``width`` columns at a time, by a weighted gather."""
        if not self._reusable(source.shape[0], width, source.dtype):
            self._buffer = huge_page_zeros(source.shape[0], width, source.dtype)
        # W's CSR rows as bags of source rows: a row's column indices are its members
        members, bags = self.matrix.col_indices(), self.matrix.crow_indices()[:-1]
        weights = self.matrix.values().to(source.dtype)
        for lo in range(0, source.shape[1], width):
            columns = source[:, lo : lo + width]
            held = self._buffer[:, : columns.shape[1]]
            held.copy_(columns)
            mixed = F.embedding_bag(members, held, bags, mode="sum", per_sample_weights=weights)
            target[:, lo : lo + mixed.shape[1]].copy_(mixed)


def describe_topology(config: Config) -> dict[str, float | int | bool | str]:
    """What ``gossamer topology`` shows: the configured graph's kind, weights, nodes,
    edges, degrees and the spectral gap of its mixing matrix."""
    kind = config.topology.kind
    if kind in PER_ROUND_KINDS:  # no fixed graph: see gossamer.sim.timevarying
        described = {"nodes": config.nodes, "time_varying": True}
        if kind == "epidemic":
            described["fanout"] = config.topology.fanout
        return {"kind": kind, **described}
    topology = build_topology(config.topology, config.nodes, config.seed)
    described = {"kind": kind, "weights": config.topology.weights, **topology.summary()}
    if config.topology.resample_every:
        described.update(time_varying=True, resample_every=config.topology.resample_every)
    return described


def topology_summary(
    config: Config, topology: Topology | None, changing: bool
) -> dict[str, float | int | bool | str] | None:
    """summary.json's topology: the static graph's summary; of a time-varying one
    (``changing``), its first graph and its schedule."""
    topo = config.topology
    summary = topology.summary() if topology is not None else None
    if not changing:
        return summary
    schedule: dict[str, float | int | bool | str] = {"kind": topo.kind, "time_varying": True}
    if topo.kind == "epidemic":
        schedule["fanout"] = topo.fanout
    elif topo.resample_every:
        schedule["resample_every"] = topo.resample_every
    return {**(summary or {"nodes": config.nodes}), **schedule}
