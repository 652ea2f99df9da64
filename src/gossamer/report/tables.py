"""Tables for people: one number format for every table gossamer prints or writes.

Numbers have 4 significant digits (thousands separated, without decimals, from 1,000
on); bytes and Joules are scaled to a unit of their size (B, kB, MB, GB, TB; J, kJ,
MJ, GJ: decimal, powers of 1,000) by ``format_bytes`` and ``format_energy``, which
tables, plot axes, reports and the command line all use.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

SIGNIFICANT = 4  # digits of every number shown to people
#: Unit prefixes by power of 1,000 (SI, decimal: 1 kB = 1,000 B).
PREFIXES = ("", "k", "M", "G", "T")


def format_number(value: Any) -> str:
    """A cell: floats with 4 significant digits below 1,000 (``0.8993``, ``493.4``,
    ``0.01235``) and none above (``12,346``), integers with separators, NaN and None
    empty, anything else as text."""
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)):
        return _significant(float(value))
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    return str(value)


def _significant(value: float) -> str:
    if math.isnan(value):
        return ""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude < -4:  # 0.00001234: too many zeros to read
        return f"{value:.{SIGNIFICANT - 1}e}"
    decimals = SIGNIFICANT - 1 - magnitude
    text = f"{value:.{decimals}f}"
    if abs(float(text)) >= 10 ** (magnitude + 1):  # rounding carried a digit: 9.9996
        text = f"{value:.{max(decimals - 1, 0)}f}"
    return text


def unit_scale(largest: float, unit: str) -> tuple[float, str]:
    """The power of 1,000 to show quantities up to ``largest`` in, and its unit name:
    ``unit_scale(4.9e8, "B") == (1e6, "MB")``; below 1,000 the unit itself."""
    largest = abs(float(largest)) if math.isfinite(largest) else 0.0
    power = 0
    while (
        power < len(PREFIXES) - 1 and largest >= 1000 ** (power + 1) * 0.99995
    ):  # 999.95 shows as 1.000 k
        power += 1
    return 1000.0**power, f"{PREFIXES[power]}{unit}"


def format_quantity(value: Any, unit: str) -> str:
    """A quantity in the unit of its size with 4 significant digits:
    ``format_quantity(493363200, "B") == "493.4 MB"``; NaN and None empty."""
    if value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return ""
    scale, name = unit_scale(float(value), unit)
    number = float(value) / scale
    text = _significant(number) if number != int(number) or scale > 1 else f"{int(number):,}"
    return f"{text} {name}"


def format_bytes(count: Any) -> str:
    """Bytes as B, kB, MB, GB or TB (powers of 1,000), 4 significant digits:
    ``format_bytes(493363200) == "493.4 MB"``, ``format_bytes(512) == "512 B"``."""
    return format_quantity(count, "B")


def format_energy(joules: Any) -> str:
    """Joules as J, kJ, MJ, GJ or TJ, 4 significant digits:
    ``format_energy(12345.6) == "12.35 kJ"``, ``format_energy(0.5) == "0.5000 J"``."""
    return format_quantity(joules, "J")


def format_interval(mean: Any, low: Any, high: Any, unit: str | None = None) -> str:
    """``mean [low, high]`` (a confidence interval); the mean alone when there is none.
    With ``unit`` ("B", "J") all three in the unit of the largest:
    ``format_interval(2.1e6, 1.9e6, 2.3e6, "B") == "2.100 [1.900, 2.300] MB"``."""
    if unit is None:
        if _missing(low):
            return format_number(mean)
        return f"{format_number(mean)} [{format_number(low)}, {format_number(high)}]"
    if _missing(mean):
        return ""
    largest = max(abs(float(v)) for v in (mean, low, high) if not _missing(v))
    scale, name = unit_scale(largest, unit)
    numbers = [_significant(float(v) / scale) for v in (mean, low, high) if not _missing(v)]
    if len(numbers) == 1:
        return f"{numbers[0]} {name}"
    return f"{numbers[0]} [{numbers[1]}, {numbers[2]}] {name}"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))


def with_units(table: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
    """A comparison or sweep table for people: its columns of megabytes and Joules
    (``megabytes_sent``, ``megabytes_after_drift_<r>``, ``energy_joules``) as text in the
    unit of each value's size (``bytes sent``: ``493.4 MB``, ``energy``: ``12.35 kJ``);
    every other column as it is."""
    shown: dict[str, list[Any]] = {}
    for key, values in table.items():
        if key == "megabytes_sent" or key.startswith("megabytes_after_drift_"):
            name = "bytes sent" + key[len("megabytes") :].replace("_", " ").replace(" sent", "")
            shown[name] = [format_bytes(_times(v, 1e6)) for v in values]
        elif key == "energy_joules":
            shown["energy"] = [format_energy(v) for v in values]
        else:
            shown[key] = list(values)
    return shown


def _times(value: Any, factor: float) -> Any:
    return None if _missing(value) else float(value) * factor


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
