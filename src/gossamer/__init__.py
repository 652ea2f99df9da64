"""gossamer: fast, honest simulation of frugal decentralized deep learning.

All N nodes live in one process as stacked tensors, or sharded over ranks
(``gossamer.run(..., ranks=R)`` or torchrun); see ``gossamer.run``. The package
is layered (``docs/architecture.md``): ``config`` -> ``sim`` -> ``results`` ->
``report`` -> ``workflow`` -> ``cli``; this module re-exports the Python API.
"""

from gossamer import report  # noqa: F401 - gossamer.report.write_report
from gossamer._version import __version__
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
from gossamer.sim import Simulation  # registers the built-in components
from gossamer.sim.models import StackedModel, register_model
from gossamer.sim.optim import Optimizer, register_optimizer
from gossamer.sim.protocols import Protocol, register_protocol
from gossamer.workflow import RunInterrupted, compare, resume, run, suggest_delta, sweep
from gossamer.workflow.callbacks import Callback
from gossamer.workflow.distributed import RankFailedError

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
