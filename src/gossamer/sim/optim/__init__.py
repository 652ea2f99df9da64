"""Local optimizers on stacked parameters (optax-style state + update) and schedules."""

from gossamer.sim.optim.adam import Adam, AdamConfig, AdamState, AdamW, AdamWConfig
from gossamer.sim.optim.base import (
    Accumulator,
    Optimizer,
    ParamUpdate,
    add_scaled,
    build_optimizer,
    gradient,
    load_state_dict,
    register_optimizer,
    state_dict,
    state_rows,
    state_select,
    state_write,
)
from gossamer.sim.optim.schedule import learning_rate
from gossamer.sim.optim.sgd import SGD, SGDConfig, SGDState, sgd_update

__all__ = [
    "Accumulator",
    "Adam",
    "AdamConfig",
    "AdamState",
    "AdamW",
    "AdamWConfig",
    "Optimizer",
    "ParamUpdate",
    "SGD",
    "SGDConfig",
    "SGDState",
    "add_scaled",
    "build_optimizer",
    "gradient",
    "learning_rate",
    "load_state_dict",
    "register_optimizer",
    "sgd_update",
    "state_dict",
    "state_rows",
    "state_select",
    "state_write",
]
