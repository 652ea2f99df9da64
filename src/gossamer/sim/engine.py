"""The stacked population: N nodes' models as one stacked (N, P) tensor.

A round's work is a few whole-population tensor operations: one index tensor gathers
every training node's mini-batch, the model's batched step updates the parameters in
place (nodes outside the train mask are left bit-identical), and gossip is one sparse
product. Nodes may be processed in chunks of ``engine.node_chunk`` to bound memory;
the chunking never changes which batch a node draws, only float rounding at most.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from gossamer.config import AugmentConfig
from gossamer.sim.accounting import Ledger
from gossamer.sim.data import ConceptShift, Dataset, EpochSampler, NodeData
from gossamer.sim.data.augment import augment
from gossamer.sim.models import StackedModel
from gossamer.sim.optim import (
    Optimizer,
    learning_rate,
    load_state_dict,
    state_dict,
    state_rows,
    state_select,
    state_write,
)
from gossamer.sim.optim.base import State
from gossamer.sim.shard import NodeRows, Shard
from gossamer.sim.stacked import StackedTensors, libc

_EVAL_ACTIVATION_BUDGET = 64 * 2**20  # floats of activations per evaluation chunk
# Automatic node chunk on CPU: keep one chunk's layer outputs near the last-level cache.
# Measured (cnn on 28x28, N=256, bf16): chunks of 256/64/16 nodes ran 345/621/695
# node-steps/s; the MLP 784-200-10 (6.7k floats per node) stays unchunked to N ~ 1,250.
_TRAIN_ACTIVATION_BUDGET = 2**23  # floats
# On CUDA, chunks as large as memory allows fill the GPU; this bound (4 GB of layer
# outputs, ~12 GB with their gradients and temporaries) keeps the CNNs within a 16 GB
# card: ResNet-20 at batch 32 writes 12 M floats a node, so 89 nodes a chunk.
_GPU_TRAIN_ACTIVATION_BUDGET = 2**30  # floats


@dataclass
class PopulationState:
    """Everything about the nodes that evolves during a run, as tensors."""

    params: StackedTensors  # (n, P) float32, this rank's n nodes (all N on one process)
    optimizer: State  # the optimizer's state: (n, P) moments, (n,) step counts, ...
    cursor: torch.Tensor  # (n,) int64 samples each node has drawn
    concept: torch.Tensor  # (n,) int64 concept each node's data follows (0: no drift yet)


class TrainStats(NamedTuple):
    """Per-node results of local training, measured before each update (NaN: not trained)."""

    loss: torch.Tensor  # (N,) float64 mean batch loss over the local steps
    error: torch.Tensor  # (N,) float64 mean batch error rate over the local steps


class Population:
    """N nodes training one architecture on their own data, as stacked tensors.

    Sharded over ranks (``gossamer.sim.shard``), the population holds only its rank's
    nodes; its methods take and return per-node vectors over all N nodes (masks in,
    losses out), gathering what other ranks computed, so protocols never see shards.
    """

    def __init__(
        self,
        model: StackedModel,
        dataset: Dataset,
        node_data: NodeData,
        optimizer: Optimizer,
        ledger: Ledger,
        batch_size: int,
        seed: int,
        rounds: int,
        node_chunk: int = 0,
        eval_batch: int = 1024,
        shift: ConceptShift | None = None,
        augmentation: AugmentConfig | None = None,
        shard: Shard | None = None,
        tf32: bool = False,
        autotune: bool = False,
    ):
        self.model = model
        self.tf32 = tf32  # CUDA matmuls and convolutions in TF32 (engine.precision: tf32)
        self.autotune = autotune  # cuDNN times its convolution algorithms (engine.autotune)
        self.dataset = dataset
        self.node_data = node_data
        self.optimizer = optimizer
        self.ledger = ledger  # charged for every local step (training energy)
        self.rounds = rounds  # the run's length, for the learning-rate schedule
        self.batch_size = batch_size
        self.seed = seed
        self.num_nodes = node_data.num_nodes  # N, over all ranks
        self.shard = shard or Shard.single(self.num_nodes)
        n = self.local_nodes = self.shard.local_nodes
        device = node_data.index.device
        self.chunk = node_chunk or auto_chunk(model, n, batch_size, device)
        self.eval_batch = eval_batch
        self.shift = shift  # concept drift transforms; None without drift
        self.sampler = EpochSampler(node_data, batch_size, seed)
        active = augmentation is not None and (augmentation.crop or augmentation.flip)
        self.augmentation = augmentation if active else None
        self.newest_concept = 0  # the concept of the latest drift event
        start = model.initial_params(seed).to(device)[None]  # (1, P): every node's start
        params = StackedTensors.zeros(model.param_shapes, n, device)
        params.copy_from_matrix(start)
        self.start = StackedTensors.from_matrix(start, model.param_shapes)  # not a rank's row
        optimizer_state = optimizer.init(model.param_shapes, n, device)
        cursor, concept = (torch.zeros(n, dtype=torch.int64, device=device) for _ in range(2))
        self.state = PopulationState(params, optimizer_state, cursor, concept)

    @property
    def params(self) -> StackedTensors:
        return self.state.params

    @property
    def device(self) -> torch.device:
        return self.state.params.device

    # ------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """The nodes' evolving state: parameters, optimizer state, cursors, concepts."""
        state, rows = self.state, self.rows
        return {
            "params": [rows(block) for block in state.params.blocks],
            "optimizer": {
                name: [rows(b) for b in value] if isinstance(value, list) else rows(value)
                for name, value in state_dict(state.optimizer).items()
            },
            "cursor": rows(state.cursor),
            "concept": rows(state.concept),
            "newest_concept": self.newest_concept,
        }

    def rows(self, tensor: torch.Tensor) -> NodeRows:
        """A per-node tensor of this rank's nodes, marked as such for checkpoints."""
        return NodeRows(tensor, self.shard.lo, self.num_nodes)

    def load_state_dict(self, saved: dict) -> None:
        state = self.state
        for block, source in zip(state.params.blocks, saved["params"], strict=True):
            block.copy_(source)
        load_state_dict(state.optimizer, saved["optimizer"])
        state.cursor.copy_(saved["cursor"])
        state.concept.copy_(saved["concept"])
        self.newest_concept = int(saved["newest_concept"])

    # ------------------------------------------------------------ training
    def train(self, steps: int, mask: torch.Tensor | None = None, *, round: int) -> TrainStats:
        """``steps`` local steps on every node where ``mask`` (N,) bool is set, at the
        learning rate of (0-based) round ``round``; charges the ledger for them.

        Returns each trained node's mean batch loss and error over the steps, each batch
        measured before the step that trains on it (NaN for nodes that did not train).
        """
        lr = learning_rate(self.optimizer.config, round, self.rounds)
        n = self.local_nodes
        local = None if mask is None else self.shard.local(mask)
        totals = torch.zeros(n, 2, dtype=torch.float64, device=self.device)
        with cuda_settings(self.device, self.tf32, self.autotune):
            for _ in range(steps):
                for lo in range(0, n, self.chunk):
                    hi = min(lo + self.chunk, n)
                    active = None if local is None else local[lo:hi]
                    self._train_chunk(lo, hi, active, totals, lr)
        totals = self.shard.gather(totals / steps).T.contiguous()  # (2, N)
        if mask is not None:
            totals = torch.where(mask, totals, torch.nan)
        trained = torch.full((self.num_nodes,), steps) if mask is None else mask.cpu() * steps
        self.ledger.record_training(trained, self.batch_size)
        return TrainStats(totals[0], totals[1])

    def drift(self, nodes: torch.Tensor, concept: int) -> None:
        """Switch the given nodes (N,) bool to a new concept."""
        self.state.concept[self.shard.local(nodes)] = concept
        self.newest_concept = max(self.newest_concept, concept)

    def _train_chunk(
        self, lo: int, hi: int, active: torch.Tensor | None, totals: torch.Tensor, lr: float
    ) -> None:
        state = self.state
        if active is None or bool(active.all()):
            nodes = torch.arange(lo, hi, device=self.device)
            params = state.params.rows(lo, hi)  # views: updated in place
            optimizer_state = state_rows(state.optimizer, lo, hi)
            gathered = False
        else:
            nodes = lo + active.nonzero().squeeze(1)
            if len(nodes) == 0:
                return
            params = state.params.index_select(nodes)  # copies, written back below
            optimizer_state = state_select(state.optimizer, nodes)
            gathered = True
        ids = nodes + self.shard.lo  # global node ids: what the random draws are keyed by
        batch = self.sampler(ids, state.cursor[nodes])  # (n, B) dataset indices
        inputs = self.dataset.x_train[batch]  # (n, B, *input_shape), as stored
        if self.augmentation is not None:
            position = state.cursor[nodes][:, None] + torch.arange(
                batch.shape[1], device=self.device
            )
            inputs = augment(inputs, self.augmentation, self.seed, ids, position)
        inputs = self.dataset.prepare(inputs)  # normalized float32
        targets = self.dataset.y_train[batch]  # (n, B)
        if self.shift is not None:
            inputs, targets = self.shift.apply(inputs, targets, state.concept[nodes])
        tensors = params.tensors()
        update = self.optimizer.step(tensors, optimizer_state, lr)
        stats = self.model.train_step(tensors, inputs, targets, update)
        if gathered:
            state.params.index_copy_(nodes, params)
            state_write(state.optimizer, nodes, optimizer_state)
        state.cursor[nodes] += self.batch_size
        totals[:, 0].index_add_(0, nodes, stats.loss.to(totals.dtype))
        totals[:, 1].index_add_(0, nodes, stats.error.to(totals.dtype))

    # ------------------------------------------------------------ measuring
    @torch.no_grad()
    def evaluate(
        self,
        params: StackedTensors | None = None,
        concept: torch.Tensor | None = None,
        *,
        nodes: torch.Tensor | None = None,
        test: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Test loss (N,) and accuracy (N,) of every node, each under its own concept;
        with ``nodes`` (N,) bool only those (the others NaN).

        Given ``params`` (other models, the same on every rank, e.g. the average), they
        are evaluated under ``concept`` (one per row), by default the newest concept.
        ``test``: the test inputs and labels to use (default: the whole test set).
        """
        if params is None:
            local = None if nodes is None else self.shard.local(nodes).to(self.device)
            if local is None or bool(local.all()):
                loss, accuracy = self.evaluate(self.state.params, self.state.concept, test=test)
            else:  # no collective inside: ranks may hold different numbers of them
                loss = torch.full(
                    (self.local_nodes,), torch.nan, dtype=torch.float64, device=self.device
                )
                accuracy = loss.clone()
                index = local.nonzero().squeeze(1)
                if len(index):
                    chosen = self.state.params.index_select(index)
                    measured = self.evaluate(chosen, self.state.concept[index], test=test)
                    loss[index], accuracy[index] = measured
            both = self.shard.gather(torch.stack([loss, accuracy], 1))
            return both[:, 0].contiguous(), both[:, 1].contiguous()
        if concept is None:
            concept = torch.full((params.num_nodes,), self.newest_concept, device=self.device)
        loss = torch.empty(params.num_nodes, dtype=torch.float64, device=self.device)
        accuracy = torch.empty_like(loss)
        for c in concept.unique().tolist():  # one group per concept (a few), not per node
            rows = (concept == c).nonzero().squeeze(1)
            group = params if len(rows) == params.num_nodes else params.index_select(rows)
            loss[rows], accuracy[rows] = self._evaluate_group(group, int(c), test)
        return loss, accuracy

    def _evaluate_group(
        self, params: StackedTensors, concept: int, test=None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = test if test is not None else (self.dataset.x_test, self.dataset.y_test)
        if self.shift is not None:
            x, y = self.shift.apply_shared(x, y, concept)
        losses, accuracies = [], []
        per_sample = max(1, self.model.activations_per_sample())
        for lo in range(0, params.num_nodes, self.chunk):
            rows = params.rows(lo, lo + self.chunk)
            # from the chunk, not this group's size: a node's test batches are the same
            # whichever nodes are evaluated with it, and on whichever rank
            budget = _EVAL_ACTIVATION_BUDGET // (per_sample * self.chunk)
            batch = max(1, min(len(y), self.eval_batch, budget))
            with cuda_settings(self.device, self.tf32, self.autotune):
                loss_sum, correct = self.model.evaluate(rows.tensors(), x, y, batch)
            losses.append(loss_sum / len(y))
            accuracies.append(correct.double() / len(y))
        return torch.cat(losses), torch.cat(accuracies)

    @torch.no_grad()
    def consensus_distance(self) -> float:
        """Mean over nodes of ||x_i - x_bar||^2 (x_bar: :meth:`mean`; distances in float64)."""
        return float(self.squared_distance(self.mean()).mean())

    def non_finite(self) -> torch.Tensor:
        """(N,) bool: the nodes with an infinite or NaN parameter (a pass over them)."""
        bad = torch.zeros(self.local_nodes, dtype=torch.bool, device=self.device)
        for block in self.state.params.blocks:
            bad |= ~torch.isfinite(block).all(1)
        return self.shard.gather(bad).cpu()

    def mean(self, nodes: torch.Tensor | None = None) -> StackedTensors:
        """(1, P): the average model of all nodes, or of the nodes (N,) bool, over ranks
        (a float64 sum rounded once; see ``gossamer.sim.shard``)."""
        return self.shard.mean(self.state.params, nodes)

    def squared_distance(self, other: StackedTensors) -> torch.Tensor:
        """(N,) float64: ||x_i - y||^2 for one model y (1, P), or ||x_i - y_i||^2 for
        per-node models y of this rank's nodes (n, P)."""
        return self.shard.gather(self.state.params.squared_distance(other))


def auto_chunk(model: StackedModel, nodes: int, batch_size: int, device: torch.device) -> int:
    """Nodes per batched computation when ``engine.node_chunk`` is 0.

    On CPU as many nodes as keep a chunk's layer outputs within
    ``_TRAIN_ACTIVATION_BUDGET`` (near the last-level cache); on CUDA as many as keep
    them within ``_GPU_TRAIN_ACTIVATION_BUDGET`` (batching across nodes is what fills
    a GPU; the bound is fixed, not the card's free memory, so a run chunks alike on
    every GPU).
    """
    per_node = batch_size * max(1, model.activations_per_sample())
    budget = _TRAIN_ACTIVATION_BUDGET if device.type == "cpu" else _GPU_TRAIN_ACTIVATION_BUDGET
    return max(1, min(nodes, budget // per_node))


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 natively: a GPU that PyTorch says supports
    it, or a CPU with AVX-512 BF16 or AMX (x86) or the BF16 extension (Arm), read from
    the kernel's CPU flags. Elsewhere bf16 autocast is emulated: LeNet trained 10x
    slower in bf16 than in float32 on an AVX2-only EPYC (docs/engine.md)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:  # not Linux: unknown, so not claimed
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def set_precision(model: StackedModel, precision: str, device: torch.device) -> bool:
    """Apply ``engine.precision`` to ``model`` (bf16 autocast for the models that use
    it; a warning where the device has no native bf16); returns whether the engine
    computes in TF32 (CUDA only: elsewhere a warning, and float32)."""
    if precision == "bfloat16" and model.uses_autocast:
        model.autocast_dtype = torch.bfloat16
        if not native_bf16(device):
            warnings.warn(
                f"engine.precision: 'bfloat16' on a {device.type} without native bf16 "
                "(no AVX-512 BF16 or AMX): emulated, measured 10x slower than float32 "
                "on such a CPU; float32 is faster there",
                stacklevel=3,
            )
    if precision == "tf32" and device.type != "cuda":
        warnings.warn(
            f"engine.precision: 'tf32' is a CUDA precision; on {device.type} the run "
            "computes in float32",
            stacklevel=3,
        )
    return precision == "tf32" and device.type == "cuda"


@contextlib.contextmanager
def cuda_settings(device: torch.device, tf32: bool, autotune: bool = False) -> Iterator[None]:
    """On CUDA, float32 matmuls and cuDNN convolutions in TF32 (``tf32``) or in IEEE
    float32, and cuDNN's benchmark mode on or off (``autotune``), the previous settings
    restored after; nothing elsewhere.

    PyTorch's defaults differ (TF32 off for matmuls, on for convolutions: a CNN's fp32
    step then differed from the CPU's by 1.3-1.6% of its update on an H200), so the
    engine sets both: ``engine.precision: float32`` is float32 on every device. In
    benchmark mode cuDNN times its algorithms for each new convolution shape and keeps
    the fastest (the grouped convolutions of N stacked CNNs ran 1.7-2.0x faster on an
    H200; docs/engine.md); which one wins can change between processes, and with it
    the float rounding, so results then agree across runs to rounding, not bit for bit.
    """
    if device.type != "cuda":
        yield
        return
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark
    matmul.allow_tf32 = cudnn.allow_tf32 = tf32
    cudnn.benchmark = autotune
    try:
        yield
    finally:
        matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark = saved


def tune_allocator() -> bool:
    """Keep freed memory mapped in glibc malloc (no mmap per large temporary, no trim).

    The same as starting Python with ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=...``
    (up to 2.9x faster on steps that allocate large temporaries; docs/engine.md), but applied at
    run time with ``mallopt``. Returns whether it was applied (glibc only).
    """
    c = libc()
    if c is None or not hasattr(c, "mallopt"):  # not glibc
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(c.mallopt(m_mmap_max, 0) and c.mallopt(m_trim_threshold, 2**31 - 1))
