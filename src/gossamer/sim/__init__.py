"""The simulation: N nodes as stacked tensors, their data, models, network and protocols.

Importing this package registers the built-in optimizers, datasets, models and
protocols with the config layer's registries; they import it on the first lookup of
one (``config/builtins.py``), so that the command line starts without torch.
"""

from gossamer.sim import data, models, network, optim, protocols  # noqa: F401 - registers built-ins
from gossamer.sim.simulation import EVAL_COLUMNS, METRIC_COLUMNS, STREAM_COLUMNS, Simulation

__all__ = ["EVAL_COLUMNS", "METRIC_COLUMNS", "STREAM_COLUMNS", "Simulation"]
