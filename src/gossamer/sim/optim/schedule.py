"""Learning-rate schedules: the rate of round t, the same for every node.

The schedule is evaluated per round, by the round number (0-based), and every local
step of the round uses that rate. Our choice, for two reasons: all nodes then share
one rate (a node that skips rounds, as in SkipTrain, is not left behind on its
schedule), and the rate stays one scalar, which keeps the fused MLP update fused.

With ``warmup_rounds`` W > 0, round t < W uses ``lr x (t + 1) / W`` (the gradual
linear warm-up of Goyal et al., "Accurate, Large Minibatch SGD", 2017); the schedule
proper then runs over the remaining rounds, counted from s = t - W, over S = rounds - W:

- ``constant``: ``lr``;
- ``step``: ``lr x gamma ** (s // step_rounds)`` (torch.optim.lr_scheduler.StepLR);
- ``cosine``: ``min_lr + (lr - min_lr) x (1 + cos(pi x s / S)) / 2`` (Loshchilov &
  Hutter, "SGDR", ICLR 2017, without restarts; CosineAnnealingLR with T_max = S).
"""

from __future__ import annotations

import math

from gossamer.config import OptimizerConfig


def learning_rate(config: OptimizerConfig, round: int, rounds: int) -> float:
    """The learning rate of (0-based) round ``round`` of a run of ``rounds`` rounds."""
    schedule, lr = config.schedule, config.lr
    warmup = schedule.warmup_rounds
    if round < warmup:
        return lr * (round + 1) / warmup
    since, span = round - warmup, max(1, rounds - warmup)
    if schedule.kind == "step":
        return lr * schedule.gamma ** (since // schedule.step_rounds)
    if schedule.kind == "cosine":
        return schedule.min_lr + (lr - schedule.min_lr) * (1 + math.cos(math.pi * since / span)) / 2
    return lr
