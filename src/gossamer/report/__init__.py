"""Reports: plots, tables (one number format) and self-contained HTML/Markdown pages."""

from gossamer.report.html import write_report
from gossamer.report.plots import comparison_figures, run_figures, save_figure, sweep_figures
from gossamer.report.tables import format_interval, format_number, markdown_rows, markdown_table

__all__ = [
    "comparison_figures",
    "format_interval",
    "format_number",
    "markdown_rows",
    "markdown_table",
    "run_figures",
    "save_figure",
    "sweep_figures",
    "write_report",
]
