"""Learning-rate schedules against torch.optim.lr_scheduler; optimizer sections; a whole
run with a schedule against N modules with their own torch.optim optimizers."""

from __future__ import annotations

import pytest
import torch

from conftest import small_config
from gossamer.config import ConfigError
from gossamer.sim import Simulation
from gossamer.sim.data import sample_batch_indices
from gossamer.sim.optim import SGDConfig, learning_rate
from reference import LoopPopulation

ROUNDS = 40


def torch_rates(config, rounds: int) -> list[float]:
    """The rate of every round by torch's schedulers, stepped once per round."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config.lr)
    schedule, warmup = config.schedule, config.schedule.warmup_rounds
    lr_scheduler = torch.optim.lr_scheduler
    if schedule.kind == "step":
        main = lr_scheduler.StepLR(optimizer, schedule.step_rounds, schedule.gamma)
    elif schedule.kind == "cosine":
        main = lr_scheduler.CosineAnnealingLR(optimizer, rounds - warmup, schedule.min_lr)
    else:
        main = lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if warmup:
        ramp = lr_scheduler.LinearLR(optimizer, 1 / warmup, 1.0, total_iters=warmup - 1)
        scheduler = lr_scheduler.SequentialLR(optimizer, [ramp, main], milestones=[warmup])
    else:
        scheduler = main
    rates = []
    for _ in range(rounds):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


@pytest.mark.parametrize(
    "schedule",
    [
        {"kind": "constant"},
        {"kind": "step", "step_rounds": 7, "gamma": 0.5},
        {"kind": "cosine", "min_lr": 0.01},
        {"kind": "cosine"},
        {"kind": "constant", "warmup_rounds": 5},
        {"kind": "step", "step_rounds": 10, "gamma": 0.3, "warmup_rounds": 4},
        {"kind": "cosine", "min_lr": 0.002, "warmup_rounds": 8},
    ],
    ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()),
)
def test_schedules_match_torch_lr_schedulers(schedule):
    config = SGDConfig(lr=0.2, schedule=schedule)
    ours = [learning_rate(config, t, ROUNDS) for t in range(ROUNDS)]
    assert ours == pytest.approx(torch_rates(config, ROUNDS), rel=1e-12, abs=1e-15)


def test_schedule_values_by_hand():
    warm = SGDConfig(lr=0.1, schedule={"kind": "cosine", "warmup_rounds": 4})
    assert [learning_rate(warm, t, 14) for t in range(5)] == pytest.approx(
        [0.025, 0.05, 0.075, 0.1, 0.1]  # (t + 1) / 4 of lr, then cos(0) = the peak
    )
    assert learning_rate(warm, 9, 14) == pytest.approx(0.05)  # half-way through 10 rounds
    constant = SGDConfig(lr=0.3)
    assert {learning_rate(constant, t, 50) for t in range(50)} == {0.3}  # the very float


def test_optimizer_sections_and_their_errors():
    adam = small_config(optimizer="adam").optimizer
    assert (adam.name, adam.lr, adam.betas, adam.weight_decay) == ("adam", 0.001, (0.9, 0.999), 0)
    assert small_config(optimizer="adamw").optimizer.weight_decay == 0.01  # torch's default
    with pytest.raises(ConfigError, match=r"optimizer.momentum: unknown key"):
        small_config(optimizer="{name: adam, momentum: 0.9}")
    with pytest.raises(ConfigError, match=r"optimizer.name: expected one of adam, adamw, sgd"):
        small_config(optimizer="rmsprop")
    with pytest.raises(ConfigError, match=r"warmup_rounds: expected fewer than rounds \(4\)"):
        small_config(**{"optimizer.schedule.warmup_rounds": 4})
    with pytest.raises(ConfigError, match=r"schedule.min_lr \(0.5\) must not exceed lr"):
        small_config(**{"optimizer.schedule": "{kind: cosine, min_lr: 0.5}"})
    with pytest.raises(ConfigError, match=r"optimizer.betas.1: input should be less than 1"):
        small_config(optimizer="{name: adam, betas: [0.9, 1.0]}")


@pytest.mark.parametrize(
    "optimizer",
    [
        "{name: sgd, lr: 0.2, momentum: 0.9, schedule: {kind: cosine, warmup_rounds: 3}}",
        "{name: adamw, lr: 0.02, schedule: {kind: step, step_rounds: 2, gamma: 0.5}}",
    ],
    ids=["sgd-cosine-warmup", "adamw-step"],
)
def test_runs_follow_the_schedule_like_torch_optim_and_its_scheduler(optimizer):
    """Every node trains 2 local steps a round at the round's rate; the reference is N
    modules, each with its own torch.optim optimizer and torch's scheduler."""
    config = small_config(protocol="nosync", rounds=8, local_steps=2, nodes=4, optimizer=optimizer)
    sim = Simulation.build(config)
    loop = LoopPopulation(sim.model.template, sim.population.params.matrix(), config.optimizer)
    rates = torch_rates(config.optimizer, config.rounds)
    batch, cursor = config.data.batch_size, torch.zeros(4, dtype=torch.int64)
    for t in range(config.rounds):
        sim.step(t)
        loop.set_lr(rates[t])
        for _ in range(config.local_steps):
            for i in range(4):
                index = sample_batch_indices(
                    sim.node_data, torch.tensor([i]), cursor[i : i + 1], batch, config.seed
                )[0]
                loop.step(i, sim.dataset.x_train[index], sim.dataset.y_train[index])
            cursor += batch
    torch.testing.assert_close(sim.population.params.matrix(), loop.rows(), rtol=1e-5, atol=2e-6)
