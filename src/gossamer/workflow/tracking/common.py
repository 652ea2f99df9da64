"""What the MLflow and W&B trackers log, and how a resumed run finds its tracked run."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from gossamer.config import Config
from gossamer.results import Result, atomic_write

#: In a run directory: the tracked runs' ids, so that a resumed run logs into them.
IDS_FILE = "tracking.json"


def flat_params(config: Config) -> dict[str, str]:
    """The resolved config as ``{"protocol.name": "dpsgd", ...}`` (lists as JSON)."""
    flat: dict[str, str] = {}

    def walk(value: Any, key: str) -> None:
        if isinstance(value, dict) and value:
            for name, inner in value.items():
                walk(inner, f"{key}.{name}" if key else str(name))
        else:
            flat[key] = value if isinstance(value, str) else json.dumps(value)

    walk(config.model_dump(mode="json"), "")
    return flat


def numbers(row: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a metrics row, without its round (the step)."""
    return {
        key: float(value)
        for key, value in row.items()
        if key != "round"
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    }


def final_numbers(result: Result) -> dict[str, float]:
    """The run's totals (``totals.bytes_sent``, ...) and its wall time."""
    summary = result.summary
    totals = {f"totals.{k}": v for k, v in summary["totals"].items()}
    return numbers({**totals, "wall_seconds": summary["wall_seconds"]})


def run_name(configured: str | None, run_dir: Path | None, config: Config) -> str:
    if configured:
        return configured
    return run_dir.name if run_dir is not None else config.protocol.name


def remembered_id(run_dir: Path | None, tracker: str) -> str | None:
    """The id of the tracked run an earlier process of this run directory opened."""
    if run_dir is None or not (run_dir / IDS_FILE).is_file():
        return None
    try:
        return json.loads((run_dir / IDS_FILE).read_text()).get(tracker)
    except (ValueError, AttributeError):
        return None


def remember_id(run_dir: Path | None, tracker: str, run_id: str) -> None:
    if run_dir is None:
        return
    ids = {}
    if (run_dir / IDS_FILE).is_file():
        try:
            ids = dict(json.loads((run_dir / IDS_FILE).read_text()))
        except (ValueError, TypeError):
            ids = {}
    ids[tracker] = run_id
    atomic_write(run_dir / IDS_FILE, json.dumps(ids, indent=2) + "\n")
