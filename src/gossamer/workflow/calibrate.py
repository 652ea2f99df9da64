"""Calibration: delta for dynamic averaging, aimed at a violation rate or a budget."""

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
    violation_rate: float | None = None,
    budget: float | None = None,
) -> dict[str, float]:
    """Calibrate delta for dynamic averaging against what the protocol tests.

    A check of dynamic averaging (Kamp et al. 2018) compares each node's squared
    distance to the *reference*, the model of the last full synchronization, with
    delta; the distance grows with every period since that sync. Asked for a target,
    a ``violation_rate`` r (the share of checks at which some node violates, so that
    the coordinator communicates) or a communication ``budget`` relative to periodic
    averaging with the same period (a check that communicates costs at most one full
    synchronization, so r = budget; partial syncs cost less), the calibration aims at
    a sync every K = round(1 / r) checks (default r = 0.1):

    1. it runs the configured experiment without communication and synchronizes by
       hand every K checks as a full sync does (every model set to the mean, the new
       reference), for ``periods`` such cycles;
    2. at every check it records the largest squared distance to the reference over
       the nodes, d(k) after k checks (d(0) = 0);
    3. it takes the median over cycles (the lower middle value for an even count) of
       sqrt(d(K - 1) d(K)) (d(1) / 2 when K = 1): a cycle's checks stay below it
       until about the K-th, if every violation led to a full sync;
    4. violations mostly lead to partial syncs, which leave the reference in place, so
       it then tunes that value on the protocol itself: short runs of dynamic
       averaging, delta doubled or halved until the measured share of violating
       checks (or the bytes against periodic averaging, for a budget) brackets the
       target, then bisected; the delta measured closest to the target is suggested.

    The calibration runs at the start of training, where models move most; as
    training converges they move less and a whole run syncs less often than its
    start (our choice: it errs on the frugal side). ``config`` may be a comparison file: its
    base config (without ``variants``) is used. Returns the target, the divergence
    curve's medians, the suggestion and, for reference, the quantiles of one
    period's drift of single nodes.
    """
    if not isinstance(periods, int) or periods < 1:
        raise ConfigError(f"periods: expected an integer of at least 1; got {periods!r}")
    if violation_rate is not None and budget is not None:
        raise ConfigError("violation_rate, budget: give one target, not both")
    target = budget if budget is not None else violation_rate
    name = "budget" if budget is not None else "violation_rate"
    if target is None:
        target = 0.1
    if not 0 < target <= 1:
        raise ConfigError(f"{name}: expected a share in (0, 1]; got {target!r}")
    config = load_config(comparison_base(config), overrides)
    period = getattr(config.protocol, "period", 1)
    checks = max(1, round(1 / target))  # K: checks between syncs
    rounds = periods * checks * period
    local = load_config(config, ["protocol=nosync", f"rounds={max(config.rounds, rounds)}"])
    sim = Simulation.build(local)
    population = sim.population
    curve = torch.zeros(periods, checks + 1, dtype=torch.float64)  # d(k), d(0) = 0
    one_period = []
    reference, round_ = population.mean(), 0
    for cycle in range(periods):
        for k in range(1, checks + 1):
            for _ in range(period):
                population.train(config.local_steps, round=round_)
                round_ += 1
            distance = population.squared_distance(reference)
            curve[cycle, k] = distance.max()
            if k == 1:
                one_period.append(distance)
        reference = population.mean()  # a full synchronization
        population.params.fill_rows_(reference)
    last, before = curve[:, checks], curve[:, checks - 1]
    per_cycle = last / 2 if checks == 1 else (before * last).sqrt()
    start = float(per_cycle.median())
    measured = _tune(config, start, target, name, checks, period, periods)
    suggestion = measured["delta"]
    values = torch.cat(one_period).float()
    q = torch.quantile(values, torch.tensor([0.1, 0.5, 0.9])).tolist()
    return {
        "period": period,
        "target_violation_rate": target,
        "checks_between_syncs": checks,
        "cycles_measured": periods,
        "divergence_median_by_check": curve.median(0).values[1:].tolist(),
        "delta_from_divergence": start,
        "suggested_delta": suggestion,
        "calibration_violation_rate": measured["rate"],
        "calibration_budget": measured["budget"],
        "calibration_runs": measured["runs"],
        "drift_p10": q[0],
        "drift_median": q[1],
        "drift_p90": q[2],
        "parameters": sim.model.num_params,
        "lr": config.optimizer.lr,
        "per_parameter_rms": math.sqrt(suggestion / sim.model.num_params),
    }


def _tune(
    config: Config, start: float, target: float, name: str, checks: int, period: int, cycles: int
) -> dict[str, float]:
    """Refine ``start`` on the protocol itself: short runs of dynamic averaging (about
    ``cycles`` syncs at the target rate), delta doubled or halved until the measured
    quantity (the share of checks that violate, or the bytes against periodic
    averaging) brackets the target, then bisected in log space; the delta whose
    measurement is closest to the target (in ratio) is kept."""
    rounds = min(config.rounds, max(20, cycles * checks * 2) * period)  # the first ones
    # the configured run (its schedule, its drift, its protocol settings), only shorter
    base = (
        config
        if config.protocol.name == "dynamic"
        else load_config(config, ["protocol=dynamic", f"protocol.period={period}"])
    )
    runs: list[tuple[float, float, float]] = []  # (delta, rate, budget)

    def measure(delta: float) -> float:
        sim = Simulation.build(load_config(base, [f"protocol.delta={delta}"]))
        for t in range(rounds):
            sim.step(t)
        per_round = sim.ledger.per_round
        violated = [row.get("violations", 0) > 0 for row in per_round[period - 1 :: period]]
        rate = sum(violated) / len(violated)
        periodic = (rounds // period) * config.nodes * 2 * sim.network.message_bytes
        budget = sim.ledger.totals()["bytes_sent"] / periodic
        runs.append((delta, rate, budget))
        return budget if name == "budget" else rate

    def off(value: float) -> float:  # distance to the target, as a ratio
        return abs(math.log(max(value, 1e-9) / target))

    low = high = start
    value = measure(start)
    if value > target:  # too much communication: raise delta until it is too little
        while value > target and len(runs) < 12:
            low, high = high, high * 2
            value = measure(high)
    else:  # too frugal: lower delta until it communicates too much
        while value <= target and len(runs) < 12:
            high, low = low, low / 2
            value = measure(low)
    for _ in range(4):  # bisect between a delta above the target and one below
        if low == high:
            break
        middle = math.sqrt(low * high)
        if measure(middle) > target:
            low = middle
        else:
            high = middle
    delta, rate, budget = min(runs, key=lambda run: off(run[2] if name == "budget" else run[1]))
    return {"delta": delta, "rate": rate, "budget": budget, "runs": len(runs)}
