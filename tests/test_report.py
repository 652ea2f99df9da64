"""Reports that do not mislead: units, Pareto fronts, bands, which points a curve joins,
which plots are drawn, and the files written for papers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.figure import Figure
from typer.testing import CliRunner

import gossamer
from conftest import small_config
from gossamer.cli import app
from gossamer.config import ConfigError
from gossamer.report import (
    comparison_figures,
    curve_band,
    format_bytes,
    format_energy,
    format_interval,
    format_number,
    run_figures,
    save_figure,
    sweep_curves,
    sweep_figures,
    with_units,
    write_report,
)
from gossamer.results import Result, comparison_table, pareto_optimal

runner = CliRunner()
T_975_2 = 4.302652729911275  # Student's t, 97.5% quantile, 2 degrees of freedom


# ------------------------------------------------------------------ one number format


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0 B"),
        (512, "512 B"),
        (999, "999 B"),
        (1000, "1.000 kB"),
        (12_345, "12.35 kB"),
        (493_363_200, "493.4 MB"),  # was "493.3632 MB"
        (999_960, "1.000 MB"),  # rounds up into the next unit, not "1000 kB"
        (2.96e9, "2.960 GB"),
        (4.5e12, "4.500 TB"),
        (float("nan"), ""),
    ],
)
def test_bytes_in_the_unit_of_their_size(value, text):
    assert format_bytes(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.5, "0.5000 J"), (181.9, "181.9 J"), (29_107.0, "29.11 kJ"), (7.277e6, "7.277 MJ")],
)
def test_energy_in_the_unit_of_its_size(value, text):
    assert format_energy(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.8993, "0.8993"),
        (0.9, "0.9000"),
        (493.3632, "493.4"),
        (0.0123456, "0.01235"),
        (9.99996, "10.00"),
        (12_345.6, "12,346"),
        (1_234_567, "1,234,567"),
        (True, "True"),
        (float("nan"), ""),
        (None, ""),
    ],
)
def test_one_number_format_of_four_significant_digits(value, text):
    assert format_number(value) == text


def test_intervals_share_one_unit():
    assert format_interval(2.1e6, 1.9e6, 2.3e6, unit="B") == "2.100 [1.900, 2.300] MB"
    assert format_interval(950.0, 900.0, 1200.0, unit="J") == "0.9500 [0.9000, 1.200] kJ"
    assert format_interval(0.5, math.nan, math.nan) == "0.5000"
    table = with_units({"variant": ["a"], "megabytes_sent": [493.3632], "energy_joules": [29107]})
    assert table == {"variant": ["a"], "bytes sent": ["493.4 MB"], "energy": ["29.11 kJ"]}


# ------------------------------------------------------------------ Pareto front


def test_pareto_over_accuracy_bytes_and_energy_by_hand():
    # (minus accuracy, MB, J): B trades accuracy for a quarter of A's energy, C is
    # dominated by B (as good in bytes and energy, worse in accuracy), D equals B.
    loss = [-0.53, -0.52, -0.50, -0.52, -0.60]
    traffic = [2960.0, 2960.0, 2960.0, 2960.0, 9000.0]
    energy = [29_107.0, 7_277.0, 7_277.0, 7_277.0, 40_000.0]
    assert pareto_optimal(loss, traffic, energy) == [True, True, False, True, True]
    # without energy, B would be dominated by A: the column this issue fixed
    assert pareto_optimal(loss, traffic) == [True, False, False, False, True]
    # a plain loop over pairs: dominated = no worse everywhere and better somewhere
    points = list(zip(loss, traffic, energy, strict=True))
    loop = []
    for p in points:
        dominated = False
        for q in points:
            if all(a <= b for a, b in zip(q, p, strict=True)) and any(
                a < b for a, b in zip(q, p, strict=True)
            ):
                dominated = True
        loop.append(not dominated)
    assert loop == pareto_optimal(loss, traffic, energy)


def fake(protocol: dict, rounds, accuracy, sent, energy, seed: int = 3, drift=()) -> Result:
    """A Result made by hand: evaluations after ``rounds`` with the given accuracy and
    cumulative bytes and Joules (every round's record from their differences)."""
    config = small_config(seed=seed, rounds=int(rounds[-1]), protocol=str(protocol))
    rounds = np.asarray(rounds, dtype=np.int64)
    accuracy, sent, energy = (np.asarray(v, dtype=float) for v in (accuracy, sent, energy))
    metrics = {
        "round": rounds,
        "test_accuracy_mean": accuracy,
        "test_accuracy_min": accuracy - 0.05,
        "test_accuracy_max": accuracy + 0.05,
        "avg_model_accuracy": accuracy + 0.01,
        "bytes_sent": sent,
        "energy_joules": energy,
        "messages": sent / 100,
    }
    every = np.arange(1, rounds[-1] + 1)
    per_round = np.diff(np.interp(np.concatenate([[0], every]), rounds, sent))
    summary = {
        "protocol": protocol["name"],
        "final": {"test_accuracy_mean": accuracy[-1], "avg_model_accuracy": accuracy[-1] + 0.01},
        "totals": {
            "messages": sent[-1] / 100,
            "bytes_sent": sent[-1],
            "local_steps": 10,
            "energy_joules": energy[-1],
        },
        "wall_seconds": 1.0,
        "drift": [{"round": d} for d in drift],
        "finished": True,
    }
    return Result(config, summary, metrics, {"round": every, "bytes_sent": per_round}, {})


def test_the_comparison_table_marks_a_cheaper_variant_pareto_optimal():
    results = {
        "D-PSGD": fake({"name": "dpsgd"}, [0, 4], [0.1, 0.53], [0, 2960e6], [0, 29_107]),
        "SkipTrain 1-3": fake(
            {"name": "skiptrain", "train_rounds": 1, "sync_rounds": 3},
            [0, 4],
            [0.1, 0.52],
            [0, 2960e6],
            [0, 7_277],
        ),
    }
    assert list(comparison_table(results)["pareto_optimal"]) == [True, True]


# ------------------------------------------------------------------ curves


def test_band_is_mean_plus_minus_t_sd_over_root_n_by_hand():
    curves = np.array([[0.1, 0.5, 0.7], [0.2, 0.4, 0.9], [0.3, 0.6, 0.8]])  # 3 seeds, 3 evals
    mean, low, high = curve_band(curves)
    for j in range(3):
        column = curves[:, j]
        m = sum(column) / 3
        sd = math.sqrt(sum((v - m) ** 2 for v in column) / 2)
        assert mean[j] == pytest.approx(m)
        assert low[j] == pytest.approx(m - T_975_2 * sd / math.sqrt(3))
        assert high[j] == pytest.approx(m + T_975_2 * sd / math.sqrt(3))
    mean, low, high = curve_band(curves[:1])  # one seed: no band
    assert np.array_equal(mean, curves[0]) and np.isnan(low).all() and np.isnan(high).all()


def test_sweep_curves_draw_the_band_and_the_mean_over_seeds():
    runs = {
        (0, s): fake({"name": "dpsgd"}, [0, 2, 4], acc, [0, 1e6, 2e6], [0, 1, 2], seed=3 + s)
        for s, acc in enumerate([[0.1, 0.5, 0.7], [0.2, 0.4, 0.9], [0.3, 0.6, 0.8]])
    }
    (plot,) = sweep_curves([{"optimizer.lr": 0.1}], runs)
    ax = plot.figure.axes[0]
    (line,) = ax.get_lines()
    assert line.get_label() == "learning rate 0.1 (3 seeds)"
    np.testing.assert_allclose(line.get_ydata(), [0.2, 0.5, 0.8])
    (band,) = ax.collections
    top = band.get_paths()[0].vertices[:, 1].max()
    sd = math.sqrt(((0.7 - 0.8) ** 2 + (0.9 - 0.8) ** 2 + 0) / 2)
    assert top == pytest.approx(0.8 + T_975_2 * sd / math.sqrt(3))
    assert "95% Student-t interval over seeds" in plot.caption


def _lines(plot, label: str):
    return [line for line in plot.figure.axes[0].get_lines() if line.get_label() == label]


def test_a_curve_joins_measured_evaluations_at_the_end_of_each_cycle_only():
    rounds = [0, 2, 4, 6, 8]
    sent = [0, 2e6, 4e6, 6e6, 8e6]
    results = {
        "D-PSGD": fake(
            {"name": "dpsgd"}, rounds, [0.1, 0.3, 0.4, 0.5, 0.6], sent, [0, 4, 8, 12, 16]
        ),
        "SkipTrain 2-2": fake(
            {"name": "skiptrain", "train_rounds": 2, "sync_rounds": 2},
            rounds,
            [0.1, 0.2, 0.45, 0.35, 0.6],  # mid-cycle evaluations (2, 6) dip: the zig-zag
            sent,
            [0, 4, 4, 8, 8],
        ),
    }
    plot = next(p for p in comparison_figures(results) if p.stem == "accuracy_vs_energy")
    (joined,) = _lines(plot, "SkipTrain 2-2")
    np.testing.assert_array_equal(joined.get_xdata(), [0, 4, 8])  # rounds 0, 4, 8 (J)
    np.testing.assert_array_equal(joined.get_ydata(), [0.1, 0.45, 0.6])
    hollow = [
        line
        for line in plot.figure.axes[0].get_lines()
        if line.get_linestyle() == "None" and line.get_markerfacecolor() == "none"
    ]
    (mid,) = hollow
    np.testing.assert_array_equal(mid.get_xdata(), [4, 8])  # rounds 2 and 6, not joined
    np.testing.assert_array_equal(mid.get_ydata(), [0.2, 0.35])
    (plain,) = _lines(plot, "D-PSGD")  # no cycle: every evaluation, nothing else
    np.testing.assert_array_equal(plain.get_xdata(), [0, 4, 8, 12, 16])
    assert "end of each 4-round cycle" in plot.caption and "SkipTrain 2-2" in plot.caption


def test_plots_against_what_all_variants_share_are_left_out_and_said():
    rounds = [0, 2, 4]
    results = {
        "D-PSGD": fake({"name": "dpsgd"}, rounds, [0.1, 0.3, 0.5], [0, 1e6, 2e6], [0, 4, 8]),
        "SkipTrain 1-1": fake(
            {"name": "skiptrain", "train_rounds": 1, "sync_rounds": 1},
            rounds,
            [0.1, 0.35, 0.55],
            [0, 1e6, 2e6],
            [0, 2, 4],
        ),
    }
    plots = {p.stem: p for p in comparison_figures(results)}
    assert plots["accuracy_vs_bytes"].figure is None
    assert "same cumulative bytes" in plots["accuracy_vs_bytes"].caption
    assert "2.000 MB in all" in plots["accuracy_vs_bytes"].caption
    assert "communication_vs_rounds" not in plots  # identical too: not drawn
    assert plots["accuracy_vs_energy"].figure is not None  # energy differs
    axis = plots["accuracy_vs_energy"].figure.axes[0].get_xlabel()
    assert axis == "cumulative energy of all nodes (J)"


def test_bytes_plot_has_only_measured_points_and_scaled_units():
    rounds = [0, 10, 20]
    results = {
        "periodic": fake(
            {"name": "periodic", "period": 10}, rounds, [0.1, 0.6, 0.8], [0, 25e6, 50e6], [0, 1, 2]
        ),
        "nosync": fake({"name": "nosync"}, rounds, [0.1, 0.4, 0.5], [0, 0, 0], [0, 1, 2]),
    }
    plot = next(p for p in comparison_figures(results) if p.stem == "accuracy_vs_bytes")
    (line,) = _lines(plot, "periodic")
    np.testing.assert_array_equal(line.get_xdata(), [0, 25, 50])  # MB, the measured points
    np.testing.assert_array_equal(line.get_ydata(), [0.1, 0.6, 0.8])
    assert plot.figure.axes[0].get_xscale() == "linear"
    assert plot.figure.axes[0].get_xlabel() == "cumulative bytes sent by all nodes (MB)"
    (silent,) = _lines(plot, "nosync (sends nothing)")
    assert list(silent.get_ydata()) == [0.5, 0.5]  # its final accuracy, horizontal
    assert "nosync sent nothing" in plot.caption


def test_no_drift_no_drift_in_titles_and_captions_and_curves_break_at_a_drift():
    rounds = [0, 5, 10, 15, 20]
    calm = fake({"name": "dpsgd"}, rounds, [0.1, 0.5, 0.7, 0.8, 0.85], np.arange(5) * 1e6, range(5))
    for plot in run_figures(calm):
        titles = [ax.get_title() for ax in plot.figure.axes]
        assert not any("drift" in text for text in [plot.title, plot.caption, *titles]), plot.stem
    drifted = fake(
        {"name": "dpsgd"},
        rounds,
        [0.1, 0.5, 0.7, 0.1, 0.6],
        np.arange(5) * 1e6,
        range(5),
        drift=[15],
    )
    plot = next(p for p in comparison_figures({"a": drifted}) if p.stem == "accuracy_vs_bytes")
    before, after = _lines(plot, "a") + [
        line for line in plot.figure.axes[0].get_lines() if line.get_label().startswith("_")
    ]
    np.testing.assert_array_equal(before.get_xdata(), [0, 1, 2])  # rounds 0, 5, 10
    np.testing.assert_array_equal(after.get_xdata(), [3, 4])  # rounds 15, 20: new concept
    assert "Concept drift at round 15" in plot.caption


def test_a_flat_sweep_metric_is_not_drawn_and_labels_are_words():
    table = {
        "optimizer.lr": np.array(["0.05", "0.1"], dtype=object),
        "seeds": np.array([2, 2], dtype=object),
    }
    for metric, values in (("test_accuracy_mean", [0.5, 0.7]), ("megabytes_sent", [49.34, 49.34])):
        table[metric] = np.array(values, dtype=object)
        table[f"{metric}_ci_low"] = np.array(values, dtype=object) - (0.1 if values[0] < 1 else 0)
        table[f"{metric}_ci_high"] = np.array(values, dtype=object) + (0.1 if values[0] < 1 else 0)
    plots = {p.stem: p for p in sweep_figures(table, ["optimizer.lr"])}
    flat = plots["sweep_megabytes_sent"]
    assert flat.figure is None and "49.34 MB at every point" in flat.caption
    ax = plots["sweep_test_accuracy_mean"].figure.axes[0]
    assert ax.get_xlabel() == "learning rate (optimizer.lr)"
    assert ax.get_ylabel() == "final test accuracy (mean over nodes)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.05", "0.1"]


# ------------------------------------------------------------------ files for papers


def test_every_plot_file_comes_as_png_pdf_and_svg_the_same_each_time(tmp_path):
    fig = Figure(figsize=(3, 2))
    fig.subplots().plot([0, 1], [1, 0])
    assert save_figure(fig, tmp_path / "a.b=0.5_curve.png") == "a.b=0.5_curve.png"
    heads = {"png": b"\x89PNG", "pdf": b"%PDF", "svg": b"<?xml"}
    for suffix, head in heads.items():
        assert (tmp_path / f"a.b=0.5_curve.{suffix}").read_bytes().startswith(head)
    first = {s: (tmp_path / f"a.b=0.5_curve.{s}").read_bytes() for s in heads}
    save_figure(fig, tmp_path / "a.b=0.5_curve.png")
    for suffix in heads:  # no date inside: the same figure gives the same file
        assert (tmp_path / f"a.b=0.5_curve.{suffix}").read_bytes() == first[suffix], suffix
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"a.b=0.5_curve.{s}" for s in ("pdf", "png", "svg")
    ]


def test_report_formats_and_their_errors(tmp_path):
    out = tmp_path / "run"
    gossamer.run(small_config(), out=out)
    with pytest.raises(ConfigError, match="formats: expected some of png, pdf, svg; got jpg"):
        write_report([out], formats=["jpg"])
    write_report([out], formats=["pdf"])
    files = {p.name for p in (out / "report_files").iterdir()}
    assert {"run_accuracy.png", "run_accuracy.pdf"} <= files and "run_accuracy.svg" not in files
    bad = runner.invoke(app, ["report", str(out), "--format", "jpg"])
    assert bad.exit_code == 2 and "--format: expected some of png, pdf, svg" in bad.stderr
    page = (out / "report.html").read_text()
    assert "<strong>Test accuracy against rounds</strong>. Test accuracy of every node" in page


def test_sweep_curve_labels_name_what_differs_between_points():
    points = [
        {"optimizer.lr": 0.05, "protocol.period": 4},
        {"optimizer.lr": 0.5, "protocol.period": 4},
    ]
    runs = {
        (i, 0): fake({"name": "dpsgd"}, [0, 2, 4], [0.1, 0.3 + i / 10, 0.5], [0, 1, 2], [0, 1, 2])
        for i in range(2)
    }
    (plot,) = sweep_curves(points, runs)
    labels = [line.get_label() for line in plot.figure.axes[0].get_lines()]
    assert labels == ["learning rate 0.05 (1 seed)", "learning rate 0.5 (1 seed)"]
    assert "Every point has period (rounds) 4." in plot.caption
    assert "One seed per point: no band." in plot.caption
