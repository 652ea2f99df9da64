"""Reports: a self-contained HTML page and a Markdown summary of runs.

``gossamer report DIR...`` (and ``run``/``compare`` by default) writes ``report.html``
(inline CSS, every plot embedded as a base64 PNG: it opens offline, with nothing to
fetch) and ``report.md`` with its plots in ``report_files/`` as PNG (and, when asked
for with ``formats``, as PDF and SVG beside them, for papers). One run directory gets
its configuration, results and the plots of one run; a comparison directory or
several run directories get a comparison table, overlaid plots and a section per run.
Every plot has a caption that says what is drawn and how its points were chosen; a
plot left out (e.g. accuracy against bytes when every variant sent the same bytes) is
replaced by a note saying why.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from gossamer.config import ConfigError, RunDirectoryError, dump_config
from gossamer.config.errors import spelled
from gossamer.report.figures import FIGURE_FORMATS, Plot, save_figure
from gossamer.report.plots import comparison_figures, run_figures
from gossamer.report.sweep_plots import METRIC_WORDS, grid_value, sweep_curves, sweep_figures
from gossamer.report.tables import (
    format_bytes,
    format_energy,
    format_interval,
    format_number,
    markdown_rows,
)
from gossamer.results import (
    Result,
    atomic_write,
    directory_kind,
    directory_names,
    load,
    load_run,
    pareto_front,
    read_table,
)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9em; }
.table { overflow-x: auto; margin: 1em 0; }
td, th { border: 1px solid #ddd; padding: 4px 8px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 0.85em; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; }
figcaption { color: #555; font-size: 0.9em; max-width: 800px; }
.note { background: #fff4e0; padding: 0.6em 1em; border-left: 4px solid #f0a030; }
"""


def write_report(
    dirs: list[str | Path], out: str | Path | None = None, formats: Sequence[str] = ("png",)
) -> Path:
    """Write report.html and report.md; returns the folder they are in.

    Args:
        dirs: one run directory, one comparison directory, or several run directories.
        out: where to write (default: the directory itself, or for several runs the
            parent of the first).
        formats: the files of every plot in ``report_files/``: PNG always (the Markdown
            shows it), PDF and SVG when named here (vector figures for a paper).
    """
    formats = _formats(formats)
    dirs = [Path(d) for d in dirs]
    if not dirs:
        raise RunDirectoryError("report: expected at least one directory; got none")
    for d in dirs:
        if not d.is_dir():
            raise RunDirectoryError(f"report: '{d}' is not a directory")
    kind = directory_kind(dirs[0]) if len(dirs) == 1 else None
    if kind == "sweep":
        target, title = dirs[0], f"Sweep: {dirs[0].name}"
        blocks = _sweep_sections(dirs[0], title)
    else:
        if kind == "comparison":
            results = load(dirs[0]).results
            runs = {name: (r, _edges(r.run_dir)) for name, r in results.items()}
            target, title = dirs[0], f"Comparison: {dirs[0].name}"
        elif len(dirs) == 1:
            runs = {dirs[0].name: _load(dirs[0])}
            target, title = dirs[0], f"Run: {dirs[0].name}"
        else:
            runs = {name: _load(d) for name, d in zip(_display_names(dirs), dirs, strict=True)}
            target, title = dirs[0].parent, "Comparison of runs"
        blocks = _sections(runs, title)
    target = Path(out) if out else target
    target.mkdir(parents=True, exist_ok=True)
    sections = _render(blocks)
    atomic_write(target / "report.html", _html(title, sections))
    atomic_write(target / "report.md", _markdown(title, sections, target / "report_files", formats))
    return target


def _formats(formats: Sequence[str]) -> tuple[str, ...]:
    """The plot formats asked for, checked before any work; PNG always comes first."""
    if isinstance(formats, str):
        formats = [formats]
    unknown = [f for f in formats if f not in FIGURE_FORMATS]
    if unknown:
        raise ConfigError(
            f"{spelled('formats', '--format')}: expected some of {', '.join(FIGURE_FORMATS)}; "
            f"got {', '.join(map(str, unknown))}"
        )
    return ("png", *dict.fromkeys(f for f in formats if f != "png"))


def _display_names(dirs: list[Path]) -> list[str]:
    """Folder names; where two are equal, paths from the folders' common parent."""
    names = [d.name for d in dirs]
    if len(set(names)) < len(names):
        common = Path(os.path.commonpath([d.resolve() for d in dirs]))
        names = [d.resolve().relative_to(common).as_posix() or d.name for d in dirs]
    if len(set(names)) < len(names):  # the same folder twice
        names = [f"{name} ({i + 1})" for i, name in enumerate(names)]
    return names


def _load(path: Path) -> tuple[Result, dict | None]:
    return load_run(path), _edges(path)


def _edges(path: Path) -> dict | None:
    """The run's topology.csv columns, if it has a graph."""
    return read_table(path / "topology.csv") if (path / "topology.csv").is_file() else None


def _sections(runs: dict[str, tuple[Result, dict | None]], title: str) -> list[dict]:
    """Report content as neutral blocks: headings, notes, tables, code and figures."""
    blocks: list[dict] = [{"kind": "h1", "text": title}]
    results = {name: result for name, (result, _) in runs.items()}
    if len(runs) > 1:
        blocks.append({"kind": "h2", "text": "Results"})
        rows = [_row(n, r) for n, r in results.items()]
        _mark_pareto(rows, list(results.values()))
        blocks.append({"kind": "table", "rows": rows})
        finished = {n: r for n, r in results.items() if len(r.metrics.get("round", ()))}
        blocks += _plot_blocks(comparison_figures(finished))
    stems = dict(zip(runs, directory_names(list(runs), limit=40), strict=True))
    for name, (result, edges) in runs.items():
        blocks.append({"kind": "h2", "text": name if len(runs) > 1 else "Results"})
        if not result.summary.get("finished"):
            done = int(result.metrics["round"][-1]) if len(result.metrics.get("round", ())) else 0
            blocks.append(
                {
                    "kind": "note",
                    "text": f"Unfinished run: metrics up to round {done} "
                    f"of {result.config.rounds}. Continue it with gossamer resume.",
                }
            )
        blocks.append({"kind": "table", "rows": [_row(name, result)]})
        if len(result.metrics.get("round", ())):
            blocks += _plot_blocks(run_figures(result, edges), prefix=f"{stems[name]}_")
        blocks.append({"kind": "h3", "text": "Configuration"})
        blocks.append({"kind": "code", "text": dump_config(result.config)})
    return blocks


def _plot_blocks(plots: list[Plot], prefix: str = "") -> list[dict]:
    """A figure block per drawn plot, a note per plot left out (its caption says why)."""
    blocks = []
    for plot in plots:
        if plot.figure is None:
            blocks.append({"kind": "note", "text": f"{plot.title}. {plot.caption}"})
        else:
            blocks.append(
                {
                    "kind": "figure",
                    "stem": prefix + plot.stem,
                    "title": plot.title,
                    "caption": plot.caption,
                    "figure": plot.figure,
                }
            )
    return blocks


def _sweep_sections(path: Path, title: str) -> list[dict]:
    """A sweep: its table (mean and 95% interval per point), its plots, and every
    point's learning curve (mean over seeds, 95% band)."""
    info = json.loads((path / "sweep.json").read_text())
    keys, table = info["grid"], read_table(path / "sweep.csv", info.get("columns"))
    blocks: list[dict] = [{"kind": "h1", "text": title}]
    blocks.append({"kind": "h2", "text": "Results (mean [95% CI] over seeds)"})
    rows = []
    for i in range(len(table["seeds"])):
        row: dict[str, Any] = {k: grid_value(info["points"][i][k]) for k in keys}
        row["seeds"] = table["seeds"][i]
        for metric in (
            "test_accuracy_mean",
            "avg_model_accuracy",
            "megabytes_sent",
            "energy_joules",
        ):
            if metric not in table:
                continue
            words, unit, factor = METRIC_WORDS[metric]
            values = [table[f"{metric}{end}"][i] * factor for end in ("", "_ci_low", "_ci_high")]
            row[words] = format_interval(*values, unit=unit or None)
        rows.append(row)
    blocks.append({"kind": "table", "rows": rows})
    blocks += _plot_blocks(sweep_figures(table, keys))
    runs = {}
    for folder, run in info["runs"].items():
        if (path / folder / "config.yaml").is_file():
            runs[run["point"], run["seed"]] = load_run(path / folder)
    if runs:
        blocks.append({"kind": "h2", "text": "Learning curves"})
        blocks += _plot_blocks(sweep_curves(info["points"], runs))
    return blocks


def _row(name: str, result: Result) -> dict[str, Any]:
    m = result.metrics
    last = {k: v[-1] for k, v in m.items()} if len(m.get("round", ())) else {}
    row = {
        "run": name,
        "protocol": result.config.protocol.name,
        "nodes": result.config.nodes,
        "rounds done": last.get("round", 0),
        "test accuracy": last.get("test_accuracy_mean"),
        "min / max": (
            f"{format_number(last['test_accuracy_min'])} / "
            f"{format_number(last['test_accuracy_max'])}"
            if last
            else ""
        ),
        "average model": last.get("avg_model_accuracy"),
        "messages": last.get("messages"),
        "sent": format_bytes(last["bytes_sent"]) if last else None,
        "energy": format_energy(last["energy_joules"]) if last else None,
    }
    if "cumulative_prequential_loss" in last:
        row["cum. prequential loss"] = last["cumulative_prequential_loss"]
    return row


def _mark_pareto(rows: list[dict[str, Any]], results: list[Result]) -> None:
    """A Pareto column over the finished runs (accuracy, or cumulative loss with streams;
    bytes; energy), as in comparison.csv; unfinished runs get none."""
    done = [i for i, r in enumerate(results) if r.summary.get("finished")]
    front = dict(zip(done, pareto_front([results[i] for i in done]), strict=True))
    for i, row in enumerate(rows):
        row["Pareto optimal"] = front.get(i)


def _render(blocks: list[dict]) -> list[dict]:
    """Each figure's PNG, rendered once for both the HTML and the Markdown."""
    for block in blocks:
        if block["kind"] == "figure":
            block["png"] = _png(block["figure"])
    return blocks


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _html(title: str, blocks: list[dict]) -> str:
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{STYLE}</style></head><body>"
    ]
    for block in blocks:
        kind = block["kind"]
        if kind in ("h1", "h2", "h3"):
            parts.append(f"<{kind}>{html.escape(block['text'])}</{kind}>")
        elif kind == "note":
            parts.append(f"<p class='note'>{html.escape(block['text'])}</p>")
        elif kind == "code":
            parts.append(f"<pre>{html.escape(block['text'])}</pre>")
        elif kind == "table":
            rows = block["rows"]
            header = "".join(f"<th>{html.escape(k)}</th>" for k in rows[0])
            body = "".join(
                "<tr>"
                + "".join(f"<td>{html.escape(format_number(v))}</td>" for v in r.values())
                + "</tr>"
                for r in rows
            )
            # a table wider than the window scrolls inside its box, not the page
            parts.append(f"<div class='table'><table><tr>{header}</tr>{body}</table></div>")
        else:
            data = base64.b64encode(block["png"]).decode()
            title, caption = html.escape(block["title"]), html.escape(block["caption"])
            parts.append(
                f"<figure><img alt='{title}' src='data:image/png;base64,{data}'>"
                f"<figcaption><strong>{title}</strong>. {caption}</figcaption></figure>"
            )
    parts.append("<p><small>Written by gossamer.</small></p></body></html>")
    return "\n".join(parts)


def _markdown(title: str, blocks: list[dict], files: Path, formats: Sequence[str]) -> str:
    files.mkdir(parents=True, exist_ok=True)
    lines = []
    for block in blocks:
        kind = block["kind"]
        if kind in ("h1", "h2", "h3"):
            lines.append("#" * int(kind[1]) + " " + block["text"])
        elif kind == "note":
            lines.append(f"> {block['text']}")
        elif kind == "code":
            lines.append(f"```yaml\n{block['text']}```")
        elif kind == "table":
            lines.append(markdown_rows(block["rows"]).rstrip("\n"))
        else:
            name = f"{block['stem']}.png"
            (files / name).write_bytes(block["png"])
            for suffix in formats[1:]:  # vector files for papers, beside the PNG
                save_figure(block["figure"], files / f"{block['stem']}.{suffix}", (suffix,))
            lines.append(f"![{block['title']}]({files.name}/{name})")
            lines.append("")
            lines.append(f"*{block['title']}.* {block['caption']}")
        lines.append("")
    return "\n".join(lines)
