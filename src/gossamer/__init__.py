"""gossamer: fast, honest simulation of frugal decentralized deep learning.

All N nodes live in one process as stacked tensors; see ``gossamer.run``.
"""

__version__ = "0.1.0"

from gossamer.compare import Comparison, compare, load  # noqa: E402
from gossamer.config import Config, ConfigError, load_config  # noqa: E402
from gossamer.protocols import suggest_delta  # noqa: E402
from gossamer.results import Result  # noqa: E402
from gossamer.runner import (  # noqa: E402
    Simulation,
    resume,  # noqa: E402
    run,
)
from gossamer.sweep import Sweep, sweep  # noqa: E402

__all__ = [
    "Comparison",
    "Config",
    "ConfigError",
    "Result",
    "Simulation",
    "__version__",
    "Sweep",
    "compare",
    "load",
    "load_config",
    "resume",
    "run",
    "suggest_delta",
    "sweep",
]
