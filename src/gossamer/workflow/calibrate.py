"""Calibration: a starting delta for dynamic averaging, from a short run without sync."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from gossamer.config import Config, ConfigError, comparison_base, load_config
from gossamer.sim import Simulation


def suggest_delta(
    config: Config | Mapping[str, Any] | str | Path | None,
    periods: int = 5,
    overrides: Sequence[str] = (),
) -> dict[str, float]:
    """Calibrate delta: the squared drift of the models over one period, without sync.

    Runs the configured experiment with local training only for ``periods`` periods
    of the configured protocol's ``period`` (1 if it has none) and measures
    ``||x_i(t + b) - x_i(t)||^2`` for every node and period. The suggestion is the
    median: a node then violates a check about half the time early in training, and
    less as training converges.

    ``config`` may be a comparison file: its base config (without ``variants``) is used.
    Returns the period, the quantiles of the measured drift and the suggestion.
    """
    if not isinstance(periods, int) or periods < 1:
        raise ConfigError(f"periods: expected an integer of at least 1; got {periods!r}")
    config = load_config(comparison_base(config), overrides)
    period = getattr(config.protocol, "period", 1)
    local = load_config(config, ["protocol=nosync", f"rounds={max(config.rounds, 1)}"])
    sim = Simulation.build(local)
    drifts, round_ = [], 0
    for _ in range(periods):
        start = sim.population.params.clone()
        for _ in range(period):
            sim.population.train(config.local_steps, round=round_)
            round_ += 1
        drifts.append(sim.population.squared_distance(start))
    values = torch.cat(drifts).float()
    q = torch.quantile(values, torch.tensor([0.1, 0.5, 0.9])).tolist()
    return {
        "period": period,
        "periods_measured": periods,
        "drift_p10": q[0],
        "drift_median": q[1],
        "drift_p90": q[2],
        "drift_mean": float(values.mean()),
        "suggested_delta": q[1],
        "parameters": sim.model.num_params,
        "lr": config.optimizer.lr,
        "per_parameter_rms": math.sqrt(q[1] / sim.model.num_params),
    }
