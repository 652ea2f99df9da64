"""SGD with momentum, weight decay and Nesterov, as ``torch.optim.SGD`` (dampening 0)::

    g = grad + weight_decay * p
    m = momentum * m + g                      (m starts at 0, so first m = g)
    p = p - lr * (g + momentum * m)           if nesterov
    p = p - lr * m                            otherwise (p - lr * g without momentum)

Without momentum the whole update is one accumulation into the parameters, so a
model that fuses its gradient product (the MLP) never forms the gradient.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
from pydantic import Field

from gossamer.config import OptimizerConfig
from gossamer.sim.optim.base import Accumulator, Optimizer, ParamUpdate, register_optimizer
from gossamer.sim.stacked import StackedTensors


class SGDConfig(OptimizerConfig):
    """Local optimizer: SGD as ``torch.optim.SGD`` (momentum, weight decay, Nesterov)."""

    name: Literal["sgd"] = "sgd"
    momentum: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0, allow_inf_nan=False)
    nesterov: bool = False


class SGDState(NamedTuple):
    momentum: StackedTensors | None  # (N, P) heavy-ball buffer; None without momentum


@register_optimizer(SGDConfig)
class SGD(Optimizer):
    """Stochastic gradient descent (Robbins & Monro 1951) with heavy-ball momentum
    (Polyak 1964) or Nesterov momentum (Sutskever et al., ICML 2013), as torch.optim.SGD."""

    def init(
        self, shapes: Sequence[tuple[int, ...]], num_nodes: int, device="cpu", dtype=torch.float32
    ) -> SGDState:
        if not self.config.momentum:
            return SGDState(None)
        return SGDState(StackedTensors.zeros(shapes, num_nodes, device, dtype))

    def step(self, params: list[torch.Tensor], state: SGDState, lr: float) -> ParamUpdate:
        buffers = state.momentum.tensors() if state.momentum is not None else None
        config = self.config

        def update(index: int, accumulate_grad: Accumulator) -> None:
            momentum = buffers[index] if buffers is not None else None
            sgd_update(params[index], momentum, accumulate_grad, lr, config)

        return update


def sgd_update(
    param: torch.Tensor,
    momentum: torch.Tensor | None,
    accumulate_grad: Accumulator,
    lr: float,
    config: SGDConfig,
) -> None:
    """One SGD step of ``param`` (and its ``momentum`` buffer), in place.

    Args:
        param: (n, ...) stacked parameter (a view into the population's matrix).
        momentum: buffer of the same shape, or None when ``config.momentum == 0``.
        accumulate_grad: ``accumulate(t, beta, alpha)`` does ``t <- beta*t + alpha*grad``.
        lr: this round's learning rate.
    """
    mu, wd = config.momentum, config.weight_decay
    if momentum is None:
        accumulate_grad(param, 1.0 - lr * wd, -lr)  # p <- (1 - lr wd) p - lr grad
        return
    accumulate_grad(momentum, mu, 1.0)  # m <- mu m + grad
    if wd:
        momentum.add_(param, alpha=wd)  # m <- m + wd p
    if config.nesterov:
        accumulate_grad(param, 1.0 - lr * wd, -lr)  # p <- p - lr (grad + wd p)
        param.add_(momentum, alpha=-lr * mu)  # p <- p - lr mu m
    else:
        param.add_(momentum, alpha=-lr)
