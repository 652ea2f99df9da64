"""The stacked-model interface: N copies of one architecture computed at once.

A stacked model computes on a *parameter list*: one tensor (n, *shape) per parameter
of its per-node ``nn.Module`` *template*, in ``parameters()`` order (the engine's
:class:`~gossamer.sim.stacked.StackedTensors` hands out such lists without copies). A
node's flat parameter vector is the template's ``parameters_to_vector`` order, so any
node can be loaded into the template for a plain per-node reference, and back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from math import prod
from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from gossamer.sim.models.layers import count_flops_and_activations
from gossamer.sim.optim import ParamUpdate, add_scaled
from gossamer.sim.rng import Purpose, hash32
from gossamer.sim.stacked import StackedTensors


class BatchStats(NamedTuple):
    """What a training step saw, measured *before* its update (prequential)."""

    loss: torch.Tensor  # (n,) mean cross-entropy of each node's batch
    error: torch.Tensor  # (n,) fraction of each node's batch misclassified


class StackedModel(ABC):
    """A model whose N copies are computed together from stacked parameters.

    Subclasses implement :meth:`forward` over stacked parameters. The default
    :meth:`train_step` differentiates it with autograd and hands each parameter's
    gradient to the optimizer's update; a subclass may fuse the two (see ``MLP``).
    """

    #: Whether ``engine.precision: bfloat16`` autocasts this model's forward pass.
    uses_autocast: ClassVar[bool] = False
    # Test batches padded to a multiple of 16 samples (see _SAMPLE_ALIGN); False for
    # models whose outputs depend on the whole batch (BatchNorm on batch statistics).
    pads_evaluation: ClassVar[bool] = True

    def __init__(self, template: nn.Module, input_shape: tuple[int, ...], num_classes: int) -> None:
        self.template = template
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.param_shapes = [tuple(p.shape) for p in template.parameters()]
        self.num_params = sum(prod(shape) for shape in self.param_shapes)
        self.autocast_dtype: torch.dtype | None = None  # set by the engine (bf16 option)

    # ------------------------------------------------------------ layout
    def stack(self, matrix: torch.Tensor) -> StackedTensors:
        """Stacked copy of a node-major (n, P) matrix (or one (P,) row)."""
        return StackedTensors.from_matrix(matrix, self.param_shapes)

    def initial_params(self, seed: int) -> torch.Tensor:
        """(P,) the template's default PyTorch initialization, seeded."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(hash32(seed, Purpose.INIT)))
            for module in self.template.modules():
                if module is not self.template and hasattr(module, "reset_parameters"):
                    module.reset_parameters()
            return nn.utils.parameters_to_vector(self.template.parameters()).detach().clone()

    def load_row(self, row: torch.Tensor) -> nn.Module:
        """The template with one node's parameters loaded (for references and export)."""
        nn.utils.vector_to_parameters(row.detach().clone().cpu(), self.template.parameters())
        return self.template

    # ------------------------------------------------------------ compute
    @abstractmethod
    def forward(self, params: list[torch.Tensor], inputs: torch.Tensor, shared: bool = False):
        """Logits of every node.

        Args:
            params: the parameter list, one (n, *shape) tensor per template parameter.
            inputs: (n, B, *input_shape) per-node batches, or (B, *input_shape) when
                ``shared`` (every node sees the same samples, e.g. the test set).
        Returns:
            (n, B, num_classes) logits.
        """

    def activations_per_sample(self) -> int:
        """Floats of layer outputs one sample produces (sizes evaluation chunks)."""
        return self._measured()[2]

    def forward_flops_per_sample(self) -> int:
        """Multiply-adds x 2 of one sample's forward pass."""
        return self._measured()[0]

    def train_flops_per_sample(self) -> int:
        """Forward and backward of one sample: 3x the forward, less the first layer's
        input gradient (never needed). MLP and CNN override these with exact formulas;
        the defaults measure the template with forward hooks."""
        total, first, _ = self._measured()
        return 3 * total - first

    def _measured(self) -> tuple[int, int, int]:
        if not hasattr(self, "_measurements"):
            self._measurements = count_flops_and_activations(self.template, self.input_shape)
        return self._measurements

    def loss_and_grad(
        self, params: list[torch.Tensor], inputs: torch.Tensor, targets: torch.Tensor
    ) -> tuple[BatchStats, list[torch.Tensor]]:
        """Per-node batch statistics and the loss gradient (a parameter list), by autograd."""
        leaves = [p.detach().requires_grad_(True) for p in params]
        with torch.enable_grad(), self._autocast(inputs.device):
            logits = self.forward(leaves, inputs)
            loss = cross_entropy_per_node(logits, targets)
        grads = torch.autograd.grad(loss.sum(), leaves)
        return BatchStats(loss.detach(), error_per_node(logits.detach(), targets)), list(grads)

    def train_step(
        self,
        params: list[torch.Tensor],
        inputs: torch.Tensor,
        targets: torch.Tensor,
        update: ParamUpdate,
    ) -> BatchStats:
        """One local step of every node: ``update(l, accumulate_grad)`` applies the
        optimizer to parameter tensor l (in place), given its gradient as an accumulator.

        Returns each node's loss and error on its batch, before the step.
        """
        stats, grads = self.loss_and_grad(params, inputs, targets)
        for index, grad in enumerate(grads):
            update(index, add_scaled(grad))
        return stats

    @torch.no_grad()
    def evaluate(
        self, params: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor, batch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed loss (n,) and number of correct predictions (n,) on a shared test set."""
        n, device = params[0].shape[0], params[0].device
        loss_sum = torch.zeros(n, dtype=torch.float64, device=device)
        correct = torch.zeros(n, dtype=torch.int64, device=device)
        for lo in range(0, len(y), batch):
            xb, yb = x[lo : lo + batch], y[lo : lo + batch]
            b = len(yb)
            if b % _SAMPLE_ALIGN and self.pads_evaluation:  # activations 64-byte aligned
                pad = xb.new_zeros((_SAMPLE_ALIGN - b % _SAMPLE_ALIGN, *xb.shape[1:]))
                xb = torch.cat([xb, pad])
            with self._autocast(x.device):
                logits = self.forward(params, xb, shared=True).float()[:, :b]  # (n, b, C)
            targets = yb.expand(n, -1)
            loss = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
            loss_sum += loss.sum(1, dtype=torch.float64)
            correct += (logits.argmax(-1) == targets).sum(1)
        return loss_sum, correct

    def _autocast(self, device: torch.device):
        enabled = self.autocast_dtype is not None
        return torch.autocast(device.type, dtype=self.autocast_dtype, enabled=enabled)


# Test samples per evaluation batch are padded to a multiple of this: a node's block
# of activations (samples x features x 4 bytes) then starts 64-byte aligned wherever
# the node sits in the batch, and batched matrix products round its numbers the same
# way (they do not, measured, when blocks are misaligned): a node's test loss does not
# depend on which nodes are evaluated with it, or on which rank.
_SAMPLE_ALIGN = 16


def cross_entropy_per_node(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each node's batch: (n, B, C), (n, B) -> (n,).

    Reduced-precision logits (bf16 autocast) are upcast to float32; float64 stays."""
    if logits.dtype not in (torch.float32, torch.float64):
        logits = logits.float()
    return F.cross_entropy(logits.transpose(1, 2), targets, reduction="none").mean(1)


def error_per_node(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Fraction of each node's batch misclassified: (n, B, C), (n, B) -> (n,)."""
    return (logits.argmax(-1) != targets).float().mean(1)
