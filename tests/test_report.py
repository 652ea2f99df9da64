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


def fake(
    protocol: dict, rounds, accuracy, sent, energy, seed: int = 3, drift=(), **config
) -> Result:
    """A Result made by hand: evaluations after ``rounds`` with the given accuracy and
    cumulative bytes and Joules (every round's record from their differences); its test
    loss is 1 - accuracy. ``config``: more --set overrides (dotted keys)."""
    config = small_config(seed=seed, rounds=int(rounds[-1]), protocol=str(protocol), **config)
    rounds = np.asarray(rounds, dtype=np.int64)
    accuracy, sent, energy = (np.asarray(v, dtype=float) for v in (accuracy, sent, energy))
    metrics = {
        "round": rounds,
        "test_accuracy_mean": accuracy,
        "test_accuracy_min": accuracy - 0.05,
        "test_accuracy_max": accuracy + 0.05,
        "avg_model_accuracy": accuracy + 0.01,
        "test_loss_mean": 1 - accuracy,
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


# ------------------------------------------------------------------ what users asked for


def _band(collection) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A fill_between's x, lower and upper edge (each x's smallest and largest y)."""
    vertices = collection.get_paths()[0].vertices
    xs = np.unique(vertices[:, 0])
    column = [vertices[vertices[:, 0] == x, 1] for x in xs]
    return xs, np.array([c.min() for c in column]), np.array([c.max() for c in column])


def _plots(results) -> dict:
    return {p.stem: p for p in comparison_figures(results)}


def test_consensus_distance_draws_the_recorded_column_and_is_left_out_without_it():
    rounds = [0, 2, 4, 6]
    a = fake({"name": "dpsgd"}, rounds, [0.1, 0.3, 0.5, 0.6], [0, 1, 2, 3], [0, 1, 2, 3])
    b = fake({"name": "nosync"}, rounds, [0.1, 0.2, 0.3, 0.4], [0, 0, 0, 0], [0, 1, 2, 3])
    assert "consensus_distance" not in _plots({"a": a, "b": b})  # not recorded: no plot
    a.metrics["consensus_distance"] = np.array([0.0, 0.5, 0.4, 0.3])
    b.metrics["consensus_distance"] = np.array([0.0, 1.0, 2.0, 3.0])
    plot = _plots({"a": a, "b": b})["consensus_distance"]
    ax = plot.figure.axes[0]
    assert ax.get_yscale() == "linear" and ax.get_xlabel() == "round"
    (line,) = _lines(plot, "b")
    np.testing.assert_array_equal(line.get_xdata(), rounds)
    np.testing.assert_array_equal(line.get_ydata(), [0.0, 1.0, 2.0, 3.0])
    assert "mean_i ||x_i - x_bar||^2" in plot.caption
    # distances over 100-fold apart: a log axis, without the zeros (round 0)
    a.metrics["consensus_distance"] = np.array([0.0, 0.005, 0.004, 0.003])
    plot = _plots({"a": a, "b": b})["consensus_distance"]
    assert plot.figure.axes[0].get_yscale() == "log"
    (line,) = _lines(plot, "a")
    np.testing.assert_array_equal(line.get_xdata(), [2, 4, 6])
    assert "evaluations at distance 0" in plot.caption
    # every node always holds the same model: a note, not a flat line
    for r in (a, b):
        r.metrics["consensus_distance"] = np.zeros(4)
    plot = _plots({"a": a, "b": b})["consensus_distance"]
    assert plot.figure is None and "consensus distance 0" in plot.caption


def test_consensus_distance_of_one_run_is_in_its_report():
    result = fake({"name": "dpsgd"}, [0, 2, 4], [0.1, 0.3, 0.5], [0, 1, 2], [0, 1, 2])
    result.metrics["consensus_distance"] = np.array([0.0, 0.2, 0.1])
    plots = {p.stem: p for p in run_figures(result)}
    (line,) = plots["consensus_distance"].figure.axes[0].get_lines()
    np.testing.assert_array_equal(line.get_ydata(), [0.0, 0.2, 0.1])


def test_per_node_spread_in_comparisons_draws_min_to_max_per_variant():
    rounds = [0, 2, 4]
    results = {
        "D-PSGD": fake({"name": "dpsgd"}, rounds, [0.1, 0.3, 0.5], [0, 1, 2], [0, 1, 2]),
        "nosync": fake({"name": "nosync"}, rounds, [0.1, 0.2, 0.4], [0, 0, 0], [0, 1, 2]),
    }
    results["nosync"].metrics["test_accuracy_min"] = np.array([0.1, 0.0, 0.1])
    plot = _plots(results)["accuracy_spread"]
    panels = plot.figure.axes
    assert [ax.get_title() for ax in panels] == ["D-PSGD", "nosync"]
    for ax, result in zip(panels, results.values(), strict=True):
        m = result.metrics
        (band,) = ax.collections
        x, low, high = _band(band)
        np.testing.assert_array_equal(x, rounds)
        np.testing.assert_allclose(low, m["test_accuracy_min"])
        np.testing.assert_allclose(high, m["test_accuracy_max"])
        (mean,) = [line for line in ax.get_lines() if line.get_label() == "nodes: mean"]
        np.testing.assert_allclose(mean.get_ydata(), m["test_accuracy_mean"])
    assert "worst to the best node" in plot.caption
    # one run: its own accuracy plot has the band; no panel of one
    assert "accuracy_spread" not in {p.stem for p in run_figures(results["D-PSGD"])}
    # every node equal everywhere: a note
    for result in results.values():
        m = result.metrics
        m["test_accuracy_min"] = m["test_accuracy_max"] = m["test_accuracy_mean"]
    plot = _plots(results)["accuracy_spread"]
    assert plot.figure is None and "min = max" in plot.caption


def _churned(name: str, online, lost, messages, **config) -> Result:
    rounds = [0, 2, 4]
    result = fake({"name": name}, rounds, [0.1, 0.3, 0.5], [0, 1, 2], [0, 1, 2], **config)
    result.rounds.update(
        online_nodes=np.array(online), messages_lost=np.array(lost), messages=np.array(messages)
    )
    return result


def test_online_nodes_and_lost_messages_only_under_network_conditions():
    churn = {"network.availability.kind": "bernoulli", "network.availability.online": 0.7}
    loss = {"network.delivery": 0.9}
    results = {
        "D-PSGD": _churned("dpsgd", [4, 5, 6, 3], [3, 2, 0, 4], [8, 10, 12, 6], **churn, **loss),
        "nosync": _churned("nosync", [4, 5, 6, 3], [0, 0, 0, 0], [0, 0, 0, 0], **churn, **loss),
    }
    plot = _plots(results)["network_conditions"]
    online_ax, lost_ax = plot.figure.axes
    curves = [line for line in online_ax.get_lines() if not line.get_label().startswith("_")]
    (online,) = curves  # the same availability for both: one curve
    assert online.get_label() == "every variant"
    np.testing.assert_array_equal(online.get_xdata(), [1, 2, 3, 4])
    np.testing.assert_array_equal(online.get_ydata(), [4, 5, 6, 3])
    (top,) = [line for line in online_ax.get_lines() if line.get_label().startswith("_")]
    assert list(top.get_ydata()) == [6, 6]  # all 6 nodes, dashed
    (lost,) = [line for line in lost_ax.get_lines() if line.get_label() == "D-PSGD"]
    np.testing.assert_array_equal(lost.get_ydata(), [3, 2, 0, 4])
    assert "D-PSGD: 75.00% of the nodes online on average, 9 of 36 messages lost (25.0%)" in (
        plot.caption
    )
    results["nosync"].rounds["online_nodes"] = np.array([6, 6, 6, 6])
    plot = _plots(results)["network_conditions"]
    labels = [line.get_label() for line in plot.figure.axes[0].get_lines()]
    assert "D-PSGD" in labels and "nosync" in labels  # different availability: one each
    ideal = _churned("dpsgd", [6, 6, 6, 6], [0, 0, 0, 0], [8, 8, 8, 8])
    assert "network_conditions" not in _plots({"a": ideal, "b": ideal})
    assert "network_conditions" not in {p.stem for p in run_figures(ideal)}
    assert "network_conditions" in {p.stem for p in run_figures(results["D-PSGD"])}


def test_loss_against_bytes_periodic_curve_and_dynamic_points():
    rounds = [0, 10]

    def variant(protocol, sent, accuracy):
        return fake(protocol, rounds, [0.1, accuracy], [0, sent], [0, 1])

    results = {
        "periodic b=1": variant({"name": "periodic", "period": 1}, 8e6, 0.9),
        "periodic b=10": variant({"name": "periodic", "period": 10}, 1e6, 0.7),
        "periodic b=5": variant({"name": "periodic", "period": 5}, 2e6, 0.8),
        "dynamic delta=0.1": variant({"name": "dynamic", "delta": 0.1}, 3e6, 0.88),
        "dynamic delta=1": variant({"name": "dynamic", "delta": 1.0}, 1.5e6, 0.82),
        "nosync": variant({"name": "nosync"}, 0, 0.5),
    }
    plot = _plots(results)["loss_vs_bytes_tradeoff"]
    ax = plot.figure.axes[0]
    (curve,) = _lines(plot, "periodic averaging")
    np.testing.assert_allclose(curve.get_xdata(), [1, 2, 8])  # MB, sorted by bytes
    np.testing.assert_allclose(curve.get_ydata(), [0.3, 0.2, 0.1])  # final test loss
    (points,) = _lines(plot, "dynamic averaging")
    assert points.get_linestyle() == "None"
    np.testing.assert_allclose(points.get_xdata(), [3, 1.5])
    np.testing.assert_allclose(points.get_ydata(), [0.12, 0.18])
    (silent,) = _lines(plot, "nosync (sends nothing)")
    np.testing.assert_allclose(silent.get_ydata(), [0.5, 0.5])
    assert ax.get_xlabel() == "total bytes sent (MB)"
    assert ax.get_ylabel() == "final test loss (mean over nodes)"
    assert {t.get_text() for t in ax.texts} == {"b=1", "b=10", "b=5", "delta=0.1", "delta=1"}
    # with streams: the cumulative prequential loss, as the paper
    for result in results.values():
        result.metrics["cumulative_prequential_loss"] = result.metrics["test_loss_mean"] * 100
    plot = _plots(results)["loss_vs_bytes_tradeoff"]
    (curve,) = _lines(plot, "periodic averaging")
    np.testing.assert_allclose(curve.get_ydata(), [30, 20, 10])
    assert "cumulative prequential loss" in plot.figure.axes[0].get_ylabel()
    # periodic without dynamic, or dynamic without periodic: no trade-off to draw
    only_periodic = {n: r for n, r in results.items() if not n.startswith("dynamic")}
    assert "loss_vs_bytes_tradeoff" not in _plots(only_periodic)
    only_dynamic = {n: r for n, r in results.items() if not n.startswith("periodic")}
    assert "loss_vs_bytes_tradeoff" not in _plots(only_dynamic)
    # an unfinished variant is not a point
    results["periodic b=5"].summary = {"finished": False}
    plot = _plots(results)["loss_vs_bytes_tradeoff"]
    (curve,) = _lines(plot, "periodic averaging")
    np.testing.assert_allclose(curve.get_xdata(), [1, 8])
    assert "Unfinished, not drawn: periodic b=5." in plot.caption


def _sampled(result: Result, nodes, tests, half) -> Result:
    result.metrics.update(
        evaluated_nodes=np.array(nodes),
        evaluated_test_samples=np.array(tests),
        test_accuracy_mean_ci95=np.array(half),
    )
    return result


def test_sampled_evaluations_are_said_and_their_interval_drawn():
    rounds = [0, 2, 4]

    def run(nodes, tests, half):
        result = fake({"name": "dpsgd"}, rounds, [0.1, 0.3, 0.5], [0, 1e6, 2e6], [0, 1, 2])
        return _sampled(result, nodes, tests, half)

    sampled = run([2, 2, 6], [60, 60, 60], [0.04, 0.05, 0.0])  # 2 of the 6 nodes, then all
    plot = {p.stem: p for p in run_figures(sampled)}["accuracy"]
    assert "2 of 6 nodes (a new sample each time)" in plot.caption
    assert "95% interval" in plot.caption and "test samples" not in plot.caption.split(".")[0]
    ax = plot.figure.axes[0]
    (interval,) = [c for c in ax.collections if c.get_label() == "mean: 95% interval"]
    x, low, high = _band(interval)
    np.testing.assert_array_equal(x, rounds)
    np.testing.assert_allclose(low, [0.06, 0.25, 0.5])
    np.testing.assert_allclose(high, [0.14, 0.35, 0.5])
    both = run([2, 2, 6], [20, 20, 60], [0.04, 0.05, 0.0])  # and 20 of 60 test samples
    plot = next(p for p in comparison_figures({"a": both}) if p.stem == "accuracy_vs_bytes")
    assert "2 of 6 nodes (a new sample each time) on 20 test samples" in plot.caption
    (band,) = plot.figure.axes[0].collections
    x, low, high = _band(band)
    np.testing.assert_allclose(x, [0, 1, 2])  # MB
    np.testing.assert_allclose(high - low, [0.08, 0.1, 0.0])
    full = run([6, 6, 6], [60, 60, 60], [0.0, 0.0, 0.0])  # measured everything
    for plot in run_figures(full):
        assert "Sampled evaluation" not in plot.caption, plot.stem
        if plot.figure is not None:
            for ax in plot.figure.axes:
                assert not [c for c in ax.collections if "interval" in c.get_label()]
    spread = _plots({"sampled": sampled, "full": full})["accuracy_spread"]
    assert "sampled: 2 of 6 nodes" in spread.caption and "full:" not in spread.caption


def test_a_real_run_under_churn_reports_the_new_plots(tmp_path):
    out = tmp_path / "churn"
    result = gossamer.run(
        small_config(
            **{
                "network.availability.kind": "bernoulli",
                "network.availability.online": 0.7,
                "network.delivery": 0.8,
                "eval.nodes": 3,
            }
        ),
        out=out,
    )
    write_report([out])
    page = (out / "report.html").read_text()
    for title in (
        "Online nodes and lost messages per round",
        "Consensus distance against rounds",
        "Test accuracy against rounds",
    ):
        assert f"<strong>{title}</strong>" in page, title
    assert "3 of 6 nodes (a new sample each time)" in page
    plots = {p.stem: p for p in run_figures(result)}
    online_ax, lost_ax = plots["network_conditions"].figure.axes
    (online,) = [line for line in online_ax.get_lines() if line.get_label() == "churn"]
    np.testing.assert_array_equal(online.get_ydata(), result.rounds["online_nodes"])
    assert result.rounds["online_nodes"].min() < 6  # churn did happen
    (lost,) = lost_ax.get_lines()
    np.testing.assert_array_equal(lost.get_ydata(), result.rounds["messages_lost"])
    assert result.rounds["messages_lost"].sum() > 0
    (distance,) = plots["consensus_distance"].figure.axes[0].get_lines()
    at = np.searchsorted(result.metrics["round"], distance.get_xdata())  # (0 left off a log axis)
    np.testing.assert_array_equal(distance.get_ydata(), result.metrics["consensus_distance"][at])
