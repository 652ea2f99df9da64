"""Reports: plots, tables (one number format) and self-contained HTML/Markdown pages."""

from gossamer.report.figures import FIGURE_FORMATS, Plot, curve_band, save_figure, save_plots
from gossamer.report.html import write_report
from gossamer.report.plots import comparison_figures, run_figures
from gossamer.report.sweep_plots import sweep_curves, sweep_figures
from gossamer.report.tables import (
    format_bytes,
    format_energy,
    format_interval,
    format_number,
    format_quantity,
    markdown_rows,
    markdown_table,
    unit_scale,
    with_units,
)

__all__ = [
    "FIGURE_FORMATS",
    "Plot",
    "comparison_figures",
    "curve_band",
    "format_bytes",
    "format_energy",
    "format_interval",
    "format_number",
    "format_quantity",
    "markdown_rows",
    "markdown_table",
    "run_figures",
    "save_figure",
    "save_plots",
    "sweep_curves",
    "sweep_figures",
    "unit_scale",
    "with_units",
    "write_report",
]
