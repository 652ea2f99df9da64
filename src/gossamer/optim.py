"""SGD with momentum, weight decay and Nesterov, on stacked parameters, in place.

Follows ``torch.optim.SGD`` exactly (dampening 0)::

    g = grad + weight_decay * p
    m = momentum * m + g                      (m starts at 0, so first m = g)
    p = p - lr * (g + momentum * m)           if nesterov
    p = p - lr * m                            otherwise (p - lr * g without momentum)

The gradient is never materialized by this function: it receives an *accumulator*
``accumulate(target, beta, alpha)`` that performs ``target <- beta*target + alpha*grad``
in place. A model that knows its gradient as a product (``dz^T h`` for a linear layer)
passes ``target.baddbmm_(dz^T, h, beta=beta, alpha=alpha)`` and the update costs one
pass over the weights (PERFORMANCE.md: the fused update is the fastest MLP step). A
model with an explicit gradient passes ``target.mul_(beta).add_(grad, alpha=alpha)``.
In-place updates break the optax habit of pure ``update`` functions on purpose: a
stacked population's parameters are the largest tensor in the process.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from gossamer.config import OptimizerConfig

Accumulator = Callable[[torch.Tensor, float, float], None]


def sgd_update(
    param: torch.Tensor,
    momentum: torch.Tensor | None,
    accumulate_grad: Accumulator,
    optimizer: OptimizerConfig,
) -> None:
    """Apply one SGD step to ``param`` (and its ``momentum`` buffer), in place.

    Args:
        param: (n, ...) stacked parameter (a view into the population's matrix).
        momentum: buffer of the same shape, or None when ``optimizer.momentum == 0``.
        accumulate_grad: ``accumulate(t, beta, alpha)`` does ``t <- beta*t + alpha*grad``.
    """
    lr, mu, wd = optimizer.lr, optimizer.momentum, optimizer.weight_decay
    if momentum is None:
        accumulate_grad(param, 1.0 - lr * wd, -lr)  # p <- (1 - lr wd) p - lr grad
        return
    accumulate_grad(momentum, mu, 1.0)  # m <- mu m + grad
    if wd:
        momentum.add_(param, alpha=wd)  # m <- m + wd p
    if optimizer.nesterov:
        accumulate_grad(param, 1.0 - lr * wd, -lr)  # p <- p - lr (grad + wd p)
        param.add_(momentum, alpha=-lr * mu)  # p <- p - lr mu m
    else:
        param.add_(momentum, alpha=-lr)
