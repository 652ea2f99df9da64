"""Results: runs, comparisons and sweeps in memory and on disk (files written atomically)."""

from gossamer.results.comparison import (
    Comparison,
    comparison_table,
    pareto_front,
    pareto_optimal,
    recovery_rounds,
)
from gossamer.results.files import (
    atomic_open,
    atomic_write,
    column_types,
    directory_names,
    json_default,
    read_table,
    rows_to_columns,
    table_to_csv,
    typed_column,
)
from gossamer.results.frames import data_frame
from gossamer.results.load import load
from gossamer.results.run import (
    CHECKPOINT,
    FINISH_MARKS,
    Result,
    RunWriter,
    directory_kind,
    load_run,
)
from gossamer.results.sweep import (
    Sweep,
    aggregate,
    confidence_interval,
    final_metrics,
    point_label,
    runs_table,
)

__all__ = [
    "CHECKPOINT",
    "FINISH_MARKS",
    "Comparison",
    "Result",
    "RunWriter",
    "Sweep",
    "aggregate",
    "atomic_open",
    "atomic_write",
    "column_types",
    "comparison_table",
    "confidence_interval",
    "data_frame",
    "directory_kind",
    "directory_names",
    "final_metrics",
    "json_default",
    "load",
    "load_run",
    "pareto_front",
    "pareto_optimal",
    "point_label",
    "read_table",
    "recovery_rounds",
    "rows_to_columns",
    "runs_table",
    "table_to_csv",
    "typed_column",
]
