"""Plain per-node references: N separate nn.Modules stepped in Python loops.

Every vectorized computation of gossamer is checked against one of these. They use
only torch.nn, torch.optim and Python loops, never the stacked engine.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from gossamer.config import OptimizerConfig


def torch_optimizer(params, config: OptimizerConfig) -> torch.optim.Optimizer:
    """The torch.optim optimizer a gossamer optimizer section names, with its settings."""
    if config.name == "sgd":
        return torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            nesterov=config.nesterov,
        )
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[config.name]
    return cls(
        params,
        lr=config.lr,
        betas=config.betas,
        eps=config.eps,
        weight_decay=config.weight_decay,
        amsgrad=config.amsgrad,
        foreach=False,
    )


class LoopPopulation:
    """N independent modules, each with its own torch.optim optimizer."""

    def __init__(self, template: nn.Module, rows: torch.Tensor, optimizer: OptimizerConfig):
        self.modules = []
        self.optimizers = []
        for row in rows:
            module = copy.deepcopy(template)
            nn.utils.vector_to_parameters(row.detach().clone(), module.parameters())
            self.modules.append(module)
            self.optimizers.append(torch_optimizer(module.parameters(), optimizer))

    def set_lr(self, lr: float) -> None:
        for optimizer in self.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = lr

    def step(self, node: int, inputs: torch.Tensor, targets: torch.Tensor) -> float:
        module, sgd = self.modules[node], self.optimizers[node]
        sgd.zero_grad()
        loss = F.cross_entropy(module(inputs), targets)
        loss.backward()
        sgd.step()
        return float(loss.detach())

    def rows(self) -> torch.Tensor:
        return torch.stack(
            [nn.utils.parameters_to_vector(m.parameters()).detach() for m in self.modules]
        )

    def load_rows(self, rows: torch.Tensor) -> None:
        for module, row in zip(self.modules, rows, strict=True):
            nn.utils.vector_to_parameters(row.detach().clone(), module.parameters())


def loop_gossip(state_dicts: list[dict], neighbours: list[list[int]], weight) -> list[dict]:
    """x_i <- sum over j in N(i) + {i} of weight(i, j) x_j, state dict by state dict."""
    mixed = []
    for i, sd in enumerate(state_dicts):
        out = {k: torch.zeros_like(v) for k, v in sd.items()}
        for j in [i, *neighbours[i]]:
            for k in out:
                out[k] += weight(i, j) * state_dicts[j][k]
        mixed.append(out)
    return mixed


def loop_evaluate(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean test loss and accuracy of one module."""
    with torch.no_grad():
        logits = module(x)
        return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())
