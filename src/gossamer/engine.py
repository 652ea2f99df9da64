"""The stacked population: N nodes' models as one stacked (N, P) tensor.

A round's work is a few whole-population tensor operations: one index tensor gathers
every training node's mini-batch, the model's batched step updates the parameters in
place (nodes outside the train mask are left bit-identical), and gossip is one sparse
product. Nodes may be processed in chunks of ``engine.node_chunk`` to bound memory;
the chunking never changes which batch a node draws, only float rounding at most.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from dataclasses import dataclass

import torch

from gossamer.config import OptimizerConfig
from gossamer.data import Dataset, NodeData, sample_batch_indices
from gossamer.models import StackedModel
from gossamer.stacked import StackedTensors
from gossamer.topology import Mixer

_EVAL_ACTIVATION_BUDGET = 64 * 2**20  # floats of activations per evaluation chunk
# Automatic node chunk on CPU: keep one chunk's layer outputs near the last-level cache.
# Measured (cnn on 28x28, N=256, bf16): chunks of 256/64/16 nodes ran 345/621/695
# node-steps/s; the MLP 784-200-10 (6.7k floats per node) stays unchunked to N ~ 1,250.
_TRAIN_ACTIVATION_BUDGET = 2**23  # floats


@dataclass
class PopulationState:
    """Everything that evolves during a run, as tensors (checkpointable as is)."""

    params: StackedTensors  # (N, P) float32
    momentum: StackedTensors | None  # (N, P) float32, None without momentum
    cursor: torch.Tensor  # (N,) int64 samples each node has drawn


class Population:
    """N nodes training one architecture on their own data, as stacked tensors."""

    def __init__(
        self,
        model: StackedModel,
        dataset: Dataset,
        node_data: NodeData,
        optimizer: OptimizerConfig,
        batch_size: int,
        seed: int,
        node_chunk: int = 0,
        eval_batch: int = 1024,
    ):
        self.model = model
        self.dataset = dataset
        self.node_data = node_data
        self.optimizer = optimizer
        self.batch_size = batch_size
        self.seed = seed
        n = node_data.num_nodes
        self.num_nodes = n
        device = node_data.index.device
        self.chunk = node_chunk or auto_chunk(model, n, batch_size, device)
        self.eval_batch = eval_batch
        params = StackedTensors.zeros(model.param_shapes, n, device)
        params.copy_from_matrix(model.initial_params(seed).to(device)[None])  # same start
        momentum = (
            StackedTensors.zeros(model.param_shapes, n, device) if optimizer.momentum else None
        )
        cursor = torch.zeros(n, dtype=torch.int64, device=device)
        self.state = PopulationState(params, momentum, cursor)

    @property
    def params(self) -> StackedTensors:
        return self.state.params

    @property
    def device(self) -> torch.device:
        return self.state.params.device

    # ------------------------------------------------------------ training
    def train(self, steps: int, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``steps`` local SGD steps on every node where ``mask`` (N,) bool is set.

        Returns:
            (N,) mean mini-batch loss of each trained node over the steps (NaN elsewhere).
        """
        total = torch.zeros(self.num_nodes, dtype=torch.float64, device=self.device)
        for _ in range(steps):
            for lo in range(0, self.num_nodes, self.chunk):
                hi = min(lo + self.chunk, self.num_nodes)
                active = None if mask is None else mask[lo:hi]
                self._train_chunk(lo, hi, active, total)
        loss = total / steps
        return loss if mask is None else torch.where(mask, loss, torch.nan)

    def _train_chunk(
        self, lo: int, hi: int, active: torch.Tensor | None, total: torch.Tensor
    ) -> None:
        state = self.state
        if active is None or bool(active.all()):
            nodes = torch.arange(lo, hi, device=self.device)
            params = state.params.rows(lo, hi)  # views: updated in place
            momentum = None if state.momentum is None else state.momentum.rows(lo, hi)
            gathered = False
        else:
            nodes = lo + active.nonzero().squeeze(1)
            if len(nodes) == 0:
                return
            params = state.params.index_select(nodes)  # copies, written back below
            momentum = None if state.momentum is None else state.momentum.index_select(nodes)
            gathered = True
        batch = sample_batch_indices(
            self.node_data, nodes, state.cursor[nodes], self.batch_size, self.seed
        )  # (n, B)
        inputs = self.dataset.x_train[batch]  # (n, B, *input_shape)
        targets = self.dataset.y_train[batch]  # (n, B)
        buffers = None if momentum is None else momentum.tensors()
        loss = self.model.train_step(params.tensors(), buffers, inputs, targets, self.optimizer)
        if gathered:
            state.params.index_copy_(nodes, params)
            if momentum is not None:
                state.momentum.index_copy_(nodes, momentum)
        state.cursor[nodes] += self.batch_size
        total.index_add_(0, nodes, loss.to(total.dtype))

    # ------------------------------------------------------------ communication
    def mix(self, mixer: Mixer) -> None:
        """Gossip: params <- W params."""
        mixer.apply_(self.state.params.blocks)

    def average_all(self) -> StackedTensors:
        """Replace every node's model by the network average; returns it (1, P)."""
        mean = self.state.params.mean()
        self.state.params.fill_rows_(mean)
        return mean

    # ------------------------------------------------------------ measuring
    @torch.no_grad()
    def evaluate(self, params: StackedTensors | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Test loss (N,) and accuracy (N,) of every node (or of the given models)."""
        params = self.state.params if params is None else params
        x, y = self.dataset.x_test, self.dataset.y_test
        losses, accuracies = [], []
        per_sample = max(1, self.model.activations_per_sample())
        for lo in range(0, params.num_nodes, self.chunk):
            rows = params.rows(lo, lo + self.chunk)
            budget = _EVAL_ACTIVATION_BUDGET // (per_sample * rows.num_nodes)
            batch = max(1, min(len(y), self.eval_batch, budget))
            loss_sum, correct = self.model.evaluate(rows.tensors(), x, y, batch)
            losses.append(loss_sum / len(y))
            accuracies.append(correct.double() / len(y))
        return torch.cat(losses), torch.cat(accuracies)

    @torch.no_grad()
    def consensus_distance(self) -> float:
        """Mean over nodes of ||x_i - x_bar||^2 (x_bar computed in float64)."""
        params = self.state.params
        return float(params.squared_distance(params.mean(torch.float64)).mean())


def auto_chunk(model: StackedModel, nodes: int, batch_size: int, device: torch.device) -> int:
    """Nodes per batched computation when ``engine.node_chunk`` is 0.

    On CUDA all nodes at once (batching across nodes is what fills a GPU); on CPU as
    many nodes as keep a chunk's layer outputs within ``_TRAIN_ACTIVATION_BUDGET``.
    """
    if device.type != "cpu":
        return nodes
    per_node = batch_size * max(1, model.activations_per_sample())
    return max(1, min(nodes, _TRAIN_ACTIVATION_BUDGET // per_node))


def tune_allocator() -> bool:
    """Keep freed memory mapped in glibc malloc (no mmap per large temporary, no trim).

    The same as starting Python with ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=...``
    (PERFORMANCE.md: 1.1-2.9x on steps that allocate large temporaries), but applied at
    run time with ``mallopt``. Returns whether it was applied (glibc only).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4
        ok = libc.mallopt(m_mmap_max, 0) and libc.mallopt(m_trim_threshold, 2**31 - 1)
        return bool(ok)
    except (OSError, AttributeError):
        return False
