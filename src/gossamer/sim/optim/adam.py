"""Adam and AdamW, per node, as ``torch.optim.Adam`` and ``torch.optim.AdamW``.

Adam: Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015
(arXiv 1412.6980), Algorithm 1; AdamW: Loshchilov & Hutter, "Decoupled Weight Decay
Regularization", ICLR 2019 (arXiv 1711.05101), Algorithm 2; AMSGrad: Reddi, Kale &
Kumar, ICLR 2018. For each node, with t the number of steps *that node* has taken
(a node that skips a round keeps its count, so its bias correction is its own)::

    g = grad + weight_decay * p              (Adam: L2 in the gradient)
    p = p * (1 - lr * weight_decay)          (AdamW: decoupled, before the step)
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g^2        (AMSGrad: v_max = max(v_max, v), used below)
    p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

The bias corrections are computed in float64 and rounded to the parameters' dtype,
as torch.optim does with its Python-float scalars.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal, NamedTuple

import torch
from pydantic import Field

from gossamer.config import OptimizerConfig
from gossamer.sim.optim.base import (
    Accumulator,
    Optimizer,
    ParamUpdate,
    gradient,
    register_optimizer,
)
from gossamer.sim.stacked import StackedTensors

Beta = Annotated[float, Field(ge=0, lt=1)]


class AdamConfig(OptimizerConfig):
    """Adam (Kingma & Ba 2015) as ``torch.optim.Adam``; weight decay is an L2 term."""

    name: Literal["adam"] = "adam"
    lr: float = Field(0.001, gt=0, allow_inf_nan=False)
    betas: tuple[Beta, Beta] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.0, ge=0, allow_inf_nan=False)
    amsgrad: bool = False


class AdamWConfig(AdamConfig):
    """AdamW (Loshchilov & Hutter 2019) as ``torch.optim.AdamW``: decoupled weight decay."""

    name: Literal["adamw"] = "adamw"
    weight_decay: float = Field(0.01, ge=0, allow_inf_nan=False)


class AdamState(NamedTuple):
    count: torch.Tensor  # (N,) int64 steps each node has taken
    exp_avg: StackedTensors  # (N, P) first moment m
    exp_avg_sq: StackedTensors  # (N, P) second moment v
    max_exp_avg_sq: StackedTensors | None  # (N, P) AMSGrad's running maximum of v


@register_optimizer(AdamConfig)
class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) as torch.optim.Adam, weight decay as an L2 term.

    Subclasses with ``decoupled = True`` (AdamW) decay the weights directly instead.
    """

    decoupled = False

    def init(
        self, shapes: Sequence[tuple[int, ...]], num_nodes: int, device="cpu", dtype=torch.float32
    ) -> AdamState:
        def zeros():
            return StackedTensors.zeros(shapes, num_nodes, device, dtype)

        count = torch.zeros(num_nodes, dtype=torch.int64, device=device)
        return AdamState(count, zeros(), zeros(), zeros() if self.config.amsgrad else None)

    def step(self, params: list[torch.Tensor], state: AdamState, lr: float) -> ParamUpdate:
        config = self.config
        beta1, beta2 = config.betas
        state.count.add_(1)  # the step being taken, counted first (as torch.optim.Adam)
        steps = state.count.double()
        dtype = params[0].dtype
        step_size = (lr / (1 - beta1**steps)).to(dtype)  # (n,)
        correction = torch.sqrt(1 - beta2**steps).to(dtype)  # (n,)
        moments = state.exp_avg.tensors(), state.exp_avg_sq.tensors()
        maxima = state.max_exp_avg_sq.tensors() if state.max_exp_avg_sq is not None else None

        def update(index: int, accumulate_grad: Accumulator) -> None:
            param = params[index]
            grad = gradient(param, accumulate_grad)
            shape = (-1,) + (1,) * (param.dim() - 1)  # per node, broadcast over its values
            if config.weight_decay and self.decoupled:
                param.mul_(1 - lr * config.weight_decay)
            elif config.weight_decay:
                grad.add_(param, alpha=config.weight_decay)
            exp_avg, exp_avg_sq = moments[0][index], moments[1][index]
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            second = exp_avg_sq
            if maxima is not None:
                torch.maximum(maxima[index], exp_avg_sq, out=maxima[index])
                second = maxima[index]
            # the step, computed in the gradient's buffer (no longer needed): one pass each
            step = torch.sqrt(second, out=grad).div_(correction.view(shape)).add_(config.eps)
            torch.div(exp_avg, step, out=step).mul_(step_size.view(shape))
            param.sub_(step)

        return update


@register_optimizer(AdamWConfig)
class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay (default 0.01, as torch.optim.AdamW)."""

    decoupled = True
