"""Tables for people: one number format for every table gossamer prints or writes."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def format_number(value: Any) -> str:
    """A cell: floats with 4 decimals below 1,000 and none above (thousands separated),
    integers with separators, NaN and None empty, anything else as text."""
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return ""
        return f"{value:,.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    return str(value)


def format_interval(mean: Any, low: Any, high: Any) -> str:
    """``mean [low, high]`` (a confidence interval); the mean alone when there is none."""
    if low is None or (isinstance(low, (float, np.floating)) and math.isnan(low)):
        return format_number(mean)
    return f"{format_number(mean)} [{format_number(low)}, {format_number(high)}]"


def markdown_table(columns: Mapping[str, Sequence[Any]]) -> str:
    """A Markdown table of named columns of equal length."""
    keys = list(columns)
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for i in range(len(next(iter(columns.values()))) if keys else 0):
        lines.append("| " + " | ".join(format_number(columns[k][i]) for k in keys) + " |")
    return "\n".join(lines) + "\n"


def markdown_rows(rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table of rows (dicts with the same keys)."""
    return markdown_table({key: [row[key] for row in rows] for key in rows[0]})
