"""The compressor interface, error feedback, and the registry of compressors.

A compressor maps the m sending nodes' vectors (an (m, P) stacked tensor) to what their
receivers decode, all nodes at once, and says how many bytes one node's message takes
(a fixed-length encoding: the same for every sender; docs/compression.md). Its
randomness is keyed by ``(seed, COMPRESSION, key..., node)``, so messages do not
depend on how nodes are batched, sharded or resumed. Per-node state that a compressor
carries from message to message (PowerSGD's warm start) is explicit: ``init_state``
allocates it, ``compress`` updates the rows it is given.

:class:`Encoder` owns one compressor for one network's nodes, with its state and,
where configured, the error-feedback residual (Seide et al., Interspeech 2014;
Karimireddy et al., ICML 2019, EF-SGD): node i sends ``C(v_i + e_i)`` and keeps
``e_i <- v_i + e_i - C(v_i + e_i)``, what compression lost, for its next message.

Adding a compressor is one file: a config section (a subclass of
:class:`~gossamer.config.LossyCompressionConfig` with ``name`` fixed by a Literal) and a
:class:`Compressor` subclass registered with ``@register_compressor(ItsConfig)``; or,
without registering, ``compression: {name: custom, import_path: "file.py:Class"}``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from math import prod
from typing import Any, ClassVar, TypeVar

import torch

from gossamer.config import COMPRESSORS, CompressionConfig
from gossamer.sim.accounting import HEADER_BYTES
from gossamer.sim.network.message import Message, SparseRows
from gossamer.sim.shard import NodeRows
from gossamer.sim.stacked import StackedTensors

CompressorState = dict[str, torch.Tensor]  # name -> (n, ...) per-node tensor


class Compressor(ABC):
    """A compression operator C applied to every sending node's vector at once."""

    config_class: ClassVar[type[CompressionConfig]]
    name: ClassVar[str]
    #: Whether E[C(v)] = v over the keyed random draws (random-k, QSGD).
    unbiased: ClassVar[bool] = False

    def __init__(self, config: CompressionConfig, shapes: Sequence[tuple[int, ...]], seed: int):
        self.config = config
        self.shapes = [tuple(shape) for shape in shapes]
        self.sizes = [prod(shape) for shape in self.shapes]
        self.num_params = sum(self.sizes)
        self.seed = seed

    @abstractmethod
    def payload_bytes(self) -> int:
        """Bytes of one node's encoded message, without the header."""

    def temporary_bytes(self, nodes: int) -> int:
        """Bytes of the temporaries one message of ``nodes`` nodes allocates at its peak
        (for the memory plan; default: two (n, P) float32 tensors)."""
        return 2 * nodes * self.num_params * 4

    def init_state(self, nodes: int, device: torch.device) -> CompressorState:
        """Per-node state of ``nodes`` nodes that have sent nothing yet (default: none)."""
        return {}

    @abstractmethod
    def compress(
        self,
        values: StackedTensors,
        ids: torch.Tensor,
        key: tuple[int, ...],
        state: CompressorState,
    ) -> StackedTensors | SparseRows:
        """What receivers decode from the messages of m nodes (a sparsifier may return
        them as :class:`SparseRows`).

        Args:
            values: (m, P) the vectors to send (not modified).
            ids: (m,) int64 global ids of the senders (what draws are keyed by).
            key: ints that make this exchange's draws its own (round, exchange).
            state: these nodes' rows of the state (updated in place).
        Returns:
            (m, P) the decoded messages (new tensors).
        """


class Dense(Compressor):
    """No compression: every message is the whole vector in float32."""

    def payload_bytes(self) -> int:
        return 4 * self.num_params

    def compress(self, values, ids, key, state):
        return values


C = TypeVar("C", bound=type[Compressor])


def register_compressor(config_class: type[CompressionConfig]) -> Callable[[C], C]:
    """Class decorator: make ``compression: {name: <config name>}`` use this compressor."""
    return COMPRESSORS.class_decorator(config_class)


COMPRESSORS.base = Compressor  # what a compressor named by import_path must subclass


def build_compressor(
    config: CompressionConfig, shapes: Sequence[tuple[int, ...]], seed: int
) -> Compressor:
    """The compressor a validated ``compression`` section selects, for a model's shapes
    (a ConfigError naming the key when the model does not suit it, e.g. a rank above
    every layer's)."""
    return COMPRESSORS.resolve(config)(config, shapes, seed)


class Encoder:
    """One network's compressor: its per-node state and error-feedback residual.

    ``nodes`` rows (this rank's), the first of which is global node ``lo``.
    """

    def __init__(
        self,
        config: CompressionConfig,
        shapes: Sequence[tuple[int, ...]],
        seed: int,
        nodes: int,
        device: torch.device,
        lo: int = 0,
    ):
        self.config = config
        self.compressor = build_compressor(config, shapes, seed)
        self.exact = not config.lossy
        self.bytes = self.compressor.payload_bytes() + HEADER_BYTES  # one message
        self.lo, self.num_nodes = lo, nodes
        self.state = self.compressor.init_state(nodes, device)
        feedback = getattr(config, "residual", False)
        self.residual = StackedTensors.zeros(shapes, nodes, device) if feedback else None
        self.ef21 = getattr(config, "ef21", False)  # the network sends changes of estimates

    def encode(
        self,
        values: StackedTensors,
        key: tuple[int, ...],
        rows: torch.Tensor | None = None,
        kind: str = "model",
    ) -> Message:
        """The message of the nodes whose local ``rows`` (m,) are given (None: every
        row), sending ``values`` (m, P); ``key`` makes the exchange's draws its own."""
        if self.exact:
            return Message(values, self.bytes, kind, exact=True)
        everyone = rows is None  # every row: views of the state, no gathering
        if everyone:
            rows = torch.arange(self.num_nodes, device=values.device)
        residual = None
        if self.residual is not None:
            residual = self.residual if everyone else self.residual.index_select(rows)
        sending = values
        if residual is not None:  # C(v + e): what was lost before is sent now
            pairs = zip(values.blocks, residual.blocks, strict=True)
            sending = StackedTensors(values.shapes, [torch.add(v, e) for v, e in pairs])
        state = self.state
        if not everyone:
            state = {name: tensor.index_select(0, rows) for name, tensor in state.items()}
        decoded = self.compressor.compress(sending, rows + self.lo, key, state)
        if not everyone:
            for name, tensor in state.items():
                self.state[name].index_copy_(0, rows, tensor)
        sparse = decoded if isinstance(decoded, SparseRows) else None
        if residual is not None:  # e <- v + e - C(v + e)
            if sparse is not None:  # v + e, less the k entries sent
                for lost, sent in zip(residual.blocks, sending.blocks, strict=True):
                    lost.copy_(sent)
                SparseRows(sparse.index, -sparse.values, sparse.shapes).add_to(residual)
            else:
                for lost, sent, got in zip(
                    residual.blocks, sending.blocks, decoded.blocks, strict=True
                ):
                    torch.sub(sent, got, out=lost)
            if not everyone:
                self.residual.index_copy_(rows, residual)
        if sparse is not None:
            return Message(None, self.bytes, kind, exact=False, sparse=sparse)
        return Message(decoded, self.bytes, kind, exact=False)

    def state_dict(self, total: int) -> dict[str, Any]:
        """The residual and compressor state as this rank's rows of ``total`` nodes."""
        state: dict[str, Any] = {
            name: NodeRows(tensor, self.lo, total) for name, tensor in self.state.items()
        }
        if self.residual is not None:
            state["residual"] = [NodeRows(b, self.lo, total) for b in self.residual.blocks]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, tensor in self.state.items():
            tensor.copy_(state[name])
        if self.residual is not None:
            for block, saved in zip(self.residual.blocks, state["residual"], strict=True):
                block.copy_(saved)
