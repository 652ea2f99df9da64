"""The local optimizer interface, optax-style: explicit stacked state, an update per step.

An optimizer is a small object built from its config section. ``init`` allocates its
state for N nodes as a ``NamedTuple`` of stacked tensors (``momentum  # (N, P)``);
``step`` prepares one local step for the nodes of a slice of that state and returns
``update(l, accumulate_grad)``, which applies the step to parameter tensor l.

The gradient is never materialized by the interface: a model hands each parameter's
gradient over as an *accumulator* ``accumulate(target, beta, alpha)`` that performs
``target <- beta * target + alpha * grad`` in place. A model that knows its gradient as
a product (``dz^T h`` for a linear layer) passes ``target.baddbmm_(dz^T, h, beta=beta,
alpha=alpha)``, and SGD then costs one pass over the weights (the fused update is
the fastest MLP step measured; docs/engine.md, Performance); an optimizer that needs
the gradient itself (Adam) accumulates it into a zeroed buffer. In-place updates
break the optax habit of pure functions on purpose: a stacked population's
parameters and optimizer state are the largest tensors in the process.

Adding an optimizer is one file: a config section (a subclass of
:class:`~gossamer.config.OptimizerConfig` with ``name`` fixed by a Literal) and an
:class:`Optimizer` subclass registered with ``@register_optimizer(ItsConfig)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, NamedTuple, TypeVar

import torch

from gossamer.config import OPTIMIZERS, OptimizerConfig
from gossamer.sim.stacked import StackedTensors

Accumulator = Callable[[torch.Tensor, float, float], None]
#: ``update(l, accumulate_grad)``: apply the optimizer to parameter tensor l.
ParamUpdate = Callable[[int, Accumulator], None]
State = NamedTuple  # fields: StackedTensors (N, P), tensors (N, ...) or None


class Optimizer(ABC):
    """A local optimizer for every node at once; subclasses fix the state and the step."""

    config_class: ClassVar[type[OptimizerConfig]]

    def __init__(self, config: OptimizerConfig):
        self.config = config

    @abstractmethod
    def init(
        self,
        shapes: Sequence[tuple[int, ...]],
        num_nodes: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> State:
        """The state of N nodes that have not stepped yet (moments in ``dtype``)."""

    @abstractmethod
    def step(self, params: list[torch.Tensor], state: State, lr: float) -> ParamUpdate:
        """Prepare one local step of the n nodes of ``params`` (one (n, *shape) tensor per
        parameter) whose state is ``state`` (a slice of the population's: views or
        gathered rows); returns the update of each parameter tensor."""


O = TypeVar("O", bound=type[Optimizer])


def register_optimizer(config_class: type[OptimizerConfig]) -> Callable[[O], O]:
    """Class decorator: make ``optimizer: {name: <config name>}`` use this optimizer."""

    def decorate(cls: O) -> O:
        cls.config_class = config_class
        OPTIMIZERS.register(config_class.model_fields["name"].default, config_class, cls)
        return cls

    return decorate


def build_optimizer(config: OptimizerConfig) -> Optimizer:
    """The registered optimizer for a validated config section."""
    return OPTIMIZERS.resolve(config)(config)


def add_scaled(grad: torch.Tensor) -> Accumulator:
    """An accumulator ``t <- beta * t + alpha * grad`` of an explicit gradient."""

    def accumulate(target: torch.Tensor, beta: float, alpha: float) -> None:
        if beta != 1.0:
            target.mul_(beta)
        target.add_(grad, alpha=alpha)

    return accumulate


def gradient(param: torch.Tensor, accumulate: Accumulator) -> torch.Tensor:
    """The gradient an accumulator holds, materialized (for optimizers that need it)."""
    grad = torch.zeros_like(param)
    accumulate(grad, 0.0, 1.0)
    return grad


# ------------------------------------------------------------ state of a slice of nodes


def _map(state: State, stacked: Callable, tensor: Callable) -> State:
    fields = {}
    for name, value in state._asdict().items():
        if isinstance(value, StackedTensors):
            value = stacked(value)
        elif isinstance(value, torch.Tensor):
            value = tensor(value)
        fields[name] = value
    return type(state)(**fields)


def state_rows(state: State, lo: int, hi: int) -> State:
    """Nodes lo..hi-1 of the state, as views (updated in place)."""
    return _map(state, lambda s: s.rows(lo, hi), lambda t: t[lo:hi])


def state_select(state: State, index: torch.Tensor) -> State:
    """The given nodes of the state, copied (write back with :func:`state_write`)."""
    return _map(state, lambda s: s.index_select(index), lambda t: t.index_select(0, index))


def state_write(state: State, index: torch.Tensor, part: State) -> None:
    """Write a selected part back into the given nodes."""
    for value, source in zip(state, part, strict=True):
        if isinstance(value, StackedTensors):
            value.index_copy_(index, source)
        elif isinstance(value, torch.Tensor):
            value.index_copy_(0, index, source)


def state_dict(state: State) -> dict[str, Any]:
    """The state's tensors by field name (stacked fields as their per-parameter blocks)."""
    out: dict[str, Any] = {}
    for name, value in state._asdict().items():
        if isinstance(value, StackedTensors):
            out[name] = list(value.blocks)
        elif isinstance(value, torch.Tensor):
            out[name] = value
    return out


def load_state_dict(state: State, saved: dict[str, Any]) -> None:
    """Copy what :func:`state_dict` returned back into the state, in place."""
    for name, value in state._asdict().items():
        if isinstance(value, StackedTensors):
            for block, source in zip(value.blocks, saved[name], strict=True):
                block.copy_(source)
        elif isinstance(value, torch.Tensor):
            value.copy_(saved[name])
