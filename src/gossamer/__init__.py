"""gossamer: fast, honest simulation of frugal decentralized deep learning.

All N nodes live in one process as stacked tensors, or sharded over ranks
(``gossamer.run(..., ranks=R)`` or torchrun); see ``gossamer.run``. The package
is layered (``docs/architecture.md``): ``config`` -> ``sim`` -> ``results`` ->
``report`` -> ``workflow`` -> ``cli``; this module re-exports the Python API.

The names are imported on first use (PEP 562), not with the package: the command
line is a module of this package, and ``gossamer --help`` should not wait two
seconds for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gossamer._version import __version__

#: Each re-exported name and the module it comes from.
_EXPORTS = {
    "CheckpointError": "gossamer.config",
    "Config": "gossamer.config",
    "ConfigError": "gossamer.config",
    "DataError": "gossamer.config",
    "GossamerError": "gossamer.config",
    "ModelConfig": "gossamer.config",
    "OptimizerConfig": "gossamer.config",
    "ProtocolConfig": "gossamer.config",
    "RunDirectoryError": "gossamer.config",
    "load_config": "gossamer.config",
    "Comparison": "gossamer.results",
    "Result": "gossamer.results",
    "Sweep": "gossamer.results",
    "load": "gossamer.results",
    "Simulation": "gossamer.sim",
    "StackedModel": "gossamer.sim.models",
    "register_model": "gossamer.sim.models",
    "Optimizer": "gossamer.sim.optim",
    "register_optimizer": "gossamer.sim.optim",
    "Protocol": "gossamer.sim.protocols",
    "register_protocol": "gossamer.sim.protocols",
    "RunInterrupted": "gossamer.workflow",
    "compare": "gossamer.workflow",
    "resume": "gossamer.workflow",
    "run": "gossamer.workflow",
    "suggest_delta": "gossamer.workflow",
    "sweep": "gossamer.workflow",
    "Callback": "gossamer.workflow.callbacks",
    "RankFailedError": "gossamer.workflow.distributed",
}
#: The layers, as attributes (``gossamer.report.write_report``).
_PACKAGES = ("config", "sim", "results", "report", "workflow", "cli")

__all__ = [
    "Callback",
    "CheckpointError",
    "Comparison",
    "Config",
    "ConfigError",
    "DataError",
    "GossamerError",
    "ModelConfig",
    "Optimizer",
    "OptimizerConfig",
    "Protocol",
    "ProtocolConfig",
    "RankFailedError",
    "Result",
    "RunDirectoryError",
    "RunInterrupted",
    "Simulation",
    "StackedModel",
    "Sweep",
    "__version__",
    "compare",
    "load",
    "load_config",
    "register_model",
    "register_optimizer",
    "register_protocol",
    "resume",
    "run",
    "suggest_delta",
    "sweep",
]


def __getattr__(name: str) -> Any:
    """Import a re-exported name (or a layer) on first use."""
    if name in _PACKAGES:
        return importlib.import_module(f"gossamer.{name}")
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gossamer' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, *_PACKAGES})


if TYPE_CHECKING:  # what type checkers and editors see
    from gossamer.config import (
        CheckpointError,
        Config,
        ConfigError,
        DataError,
        GossamerError,
        ModelConfig,
        OptimizerConfig,
        ProtocolConfig,
        RunDirectoryError,
        load_config,
    )
    from gossamer.results import Comparison, Result, Sweep, load
    from gossamer.sim import Simulation
    from gossamer.sim.models import StackedModel, register_model
    from gossamer.sim.optim import Optimizer, register_optimizer
    from gossamer.sim.protocols import Protocol, register_protocol
    from gossamer.workflow import RunInterrupted, compare, resume, run, suggest_delta, sweep
    from gossamer.workflow.callbacks import Callback
    from gossamer.workflow.distributed import RankFailedError
