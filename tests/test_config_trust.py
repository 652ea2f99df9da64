"""The config does what it says: overrides compose in any order, numbers are numbers,
a run that can do no work or cannot fit is refused before anything is built, and
summary.json is strict JSON (issue 22)."""

from __future__ import annotations

import json
import math
import time
import warnings

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

import gossamer
from conftest import SMALL, small_config
from gossamer.cli.app import app
from gossamer.config import ConfigError, dump_config, load_config, merge_config
from gossamer.config.loading import apply_overrides
from gossamer.config.work import train_samples
from gossamer.results.files import atomic_write, json_text, strict_json
from gossamer.sim import Simulation, memory, simulation
from gossamer.sim.conditions import Trace
from gossamer.sim.data import load_dataset

runner = CliRunner()

# ---------------------------------------------------------------- overrides compose


@pytest.mark.parametrize(
    ("overrides", "section", "expected"),
    [
        (["optimizer.lr=0.5", "optimizer=sgd"], "optimizer", {"name": "sgd", "lr": 0.5}),
        (["optimizer=sgd", "optimizer.lr=0.5"], "optimizer", {"name": "sgd", "lr": 0.5}),
        (["protocol.period=5", "protocol=periodic"], "protocol", {"name": "periodic", "period": 5}),
        (["protocol=periodic", "protocol.period=5"], "protocol", {"name": "periodic", "period": 5}),
        (["model.hidden=[3]", "model=mlp"], "model", {"name": "mlp", "hidden": [3]}),
        (["optimizer.lr=0.5", "optimizer=adam"], "optimizer", {"name": "adam", "lr": 0.5}),
        (  # a mapping for a section selected by name sets each of its keys
            ["protocol.period=5", "protocol={name: periodic}"],
            "protocol",
            {"name": "periodic", "period": 5},
        ),
    ],
)
def test_overrides_that_switch_a_section_keep_every_key_they_set(overrides, section, expected):
    dumped = load_config(None, overrides).model_dump(mode="json")[section]
    assert {key: dumped[key] for key in expected} == expected


def test_a_nested_section_keeps_its_keys_through_both_switches():
    orders = [
        ["protocol.compression.ratio=0.1", "protocol.compression=top_k", "protocol=choco"],
        ["protocol=choco", "protocol.compression=top_k", "protocol.compression.ratio=0.1"],
        ["protocol.compression=top_k", "protocol=choco", "protocol.compression.ratio=0.1"],
    ]
    configs = [load_config(None, order) for order in orders]
    assert configs[0] == configs[1] == configs[2]
    compression = configs[0].protocol.compression
    assert (configs[0].protocol.name, compression.name, compression.ratio) == (
        "choco",
        "top_k",
        0.1,
    )


def test_the_base_keeps_its_keys_under_the_same_name_and_drops_them_under_another():
    base = {"protocol": {"name": "periodic", "period": 4}, "optimizer": {"name": "sgd", "lr": 0.3}}
    same = load_config(base, ["protocol=periodic", "optimizer=sgd"])
    assert same.protocol.period == 4 and same.optimizer.lr == 0.3  # the name did not change
    other = load_config(base, ["protocol=dynamic", "optimizer=adam"])  # another component:
    assert other.protocol.period == 1 and other.optimizer.lr == 0.001  # its own defaults
    assert base == {  # the caller's mapping is untouched
        "protocol": {"name": "periodic", "period": 4},
        "optimizer": {"name": "sgd", "lr": 0.3},
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["protocol.perod=5", "protocol=periodic"],
            r"protocol 'periodic':\n  protocol.perod: unknown key \(allowed: name, compression, "
            r"aggregator, period\)",
        ),
        (["protocol=periodic", "protocol.perod=5"], r"protocol.perod: unknown key"),
        (
            ["optimizer.momentum=0.9", "optimizer=adam"],
            r"optimizer 'adam':\n  optimizer.momentum: unknown key \(allowed: name, lr",
        ),
        (["protocol.delta=0.1", "protocol=periodic"], r"protocol.delta: unknown key"),
        (
            ["protocol.compression.ratio=0.1", "protocol.compression=sign"],
            r"protocol.compression.ratio: unknown key",
        ),
    ],
)
def test_a_key_the_new_component_lacks_is_refused_in_any_order(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_the_command_line_refuses_a_typo_before_the_switch():
    result = runner.invoke(
        app, ["config", "--set", "protocol.perod=5", "--set", "protocol=periodic"]
    )
    assert result.exit_code == 2
    assert "protocol.perod: unknown key (allowed: name, compression, aggregator, period)" in (
        result.stderr
    )


def test_a_comparison_variant_naming_another_protocol_starts_from_its_own_keys():
    """merge_config's rule is the overrides' rule: the base's keys of the old protocol
    are dropped (they mean nothing to the new one), the variant's are all validated."""
    base = {"protocol": {"name": "dynamic", "delta": 0.5}}
    merged = merge_config(base, {"protocol": {"name": "periodic", "period": 2}})
    assert merged["protocol"] == {"name": "periodic", "period": 2}
    assert merge_config(base, {"protocol": {"delta": 0.1}})["protocol"] == {
        "name": "dynamic",
        "delta": 0.1,
    }
    with pytest.raises(ConfigError, match="protocol.perod: unknown key"):
        load_config(merge_config(base, {"protocol": {"name": "periodic", "perod": 2}}))


def test_overrides_applied_as_one_list_compose_like_the_command_line():
    raw = {"protocol": {"name": "dynamic", "delta": 0.5}}
    apply_overrides(raw, ["protocol.period=3", "protocol=periodic"], "variants.v")
    assert raw == {"protocol": {"name": "periodic", "period": 3}}
    with pytest.raises(ConfigError, match=r"variants.v seed.x: 'seed' is a value, not a section"):
        apply_overrides({"seed": 1}, ["seed.x=2"], "variants.v")


# ---------------------------------------------------------------- --set takes key=value


def test_a_set_without_equals_sign_says_set_expects_key_value():
    result = runner.invoke(app, ["run", "--set", "rounds", "50"])
    assert result.exit_code == 2
    assert "expected KEY=VALUE in one word (e.g. --set rounds=50" in result.output
    assert "got 'rounds'" in result.output and "not found" not in result.output
    with pytest.raises(ConfigError, match=r"overrides: expected key=value .*; got 'rounds'"):
        load_config("50", ["rounds"])  # the override is checked before the file is read


# ---------------------------------------------------------------- numbers are numbers

DECIMAL = r"expected a number in decimal notation \(hexadecimal, octal, leading zeros"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("rounds=true", r"  rounds: expected an integer, not a boolean; got True"),
        ("seed=true", r"  seed: expected an integer, not a boolean; got True"),
        ("checkpoint_every=false", r"checkpoint_every: expected an integer, not a boolean"),
        ("optimizer.lr=true", r"optimizer.lr: expected a number, not a boolean; got True"),
        ("data.synthetic.shape=[4, true]", r"shape: item 1: expected an integer, not a boolean"),
        ("energy.fractions={a: true}", r"energy.fractions: 'a': expected a number, not a boolean"),
        ("data.batch_size=0x10", rf"data.batch_size: {DECIMAL}.*; got '0x10'"),
        ("data.batch_size=010", rf"data.batch_size: {DECIMAL}.*; got '010'"),
        ("data.batch_size=0o10", rf"{DECIMAL}.*; got '0o10'"),
        ("rounds=1:30", rf"rounds: {DECIMAL}.*; got '1:30'"),
        ("rounds=1_000", rf"rounds: {DECIMAL}.*; got '1_000'"),
        ("protocol.period=1e30", r"protocol.period: expected an integer of at most 9,223,372,036"),
        ("seed=100000000000000000000", r"seed: expected an integer of at most 9,223,372,036,85"),
    ],
)
def test_booleans_and_yaml_1_1_notations_are_not_numbers(override, message):
    overrides = ["protocol=periodic", override] if "period" in override else [override]
    with pytest.raises(ConfigError, match=message):
        load_config(
            {"energy": {"assignment": "fractions"}} if "fractions" in override else {}, overrides
        )


def test_numbers_from_files_and_mappings_are_checked_alike(tmp_path):
    (tmp_path / "hex.yaml").write_text("data:\n  batch_size: 0x10\n")
    with pytest.raises(ConfigError, match=rf"hex.yaml:\n  data.batch_size: {DECIMAL}"):
        load_config(tmp_path / "hex.yaml")
    (tmp_path / "bool.toml").write_text("rounds = true\n")
    with pytest.raises(ConfigError, match="rounds: expected an integer, not a boolean"):
        load_config(tmp_path / "bool.toml")
    with pytest.raises(ConfigError, match="nodes: expected an integer, not a boolean"):
        load_config({"nodes": True})
    with pytest.raises(ConfigError, match="betas: item 1: expected a number, not a boolean"):
        load_config({"optimizer": {"name": "adam", "betas": [0.9, True]}})


def test_decimal_numbers_booleans_and_text_still_read_as_before(tmp_path):
    config = load_config(
        None,
        [
            "optimizer.lr=1e-3",  # YAML 1.2: a float (YAML 1.1 read text)
            "rounds=1e3",  # an integral float is an integer
            "seed=+7",
            "protocol.compression={name: top_k, error_feedback: true}",
            "logging.wandb.tags=[0x10, '1e3']",  # text where text is expected
            "checkpoint_every=auto",
        ],
    )
    assert (config.optimizer.lr, config.rounds, config.seed) == (0.001, 1000, 7)
    assert config.protocol.compression.error_feedback is True
    assert config.logging.wandb.tags == ["0x10", "1e3"]
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(config))
    assert load_config(path) == config  # text that reads as a number is written quoted
    assert yaml.safe_load(path.read_text())["logging"]["wandb"]["tags"] == ["0x10", "1e3"]


def test_an_optimizer_number_beyond_float32_is_refused():
    with pytest.raises(
        ConfigError, match=r"optimizer.lr: expected at most 3.403e\+38 in magnitude"
    ):
        load_config(None, ["optimizer.lr=1e300"])
    with pytest.raises(ConfigError, match=r"optimizer.weight_decay: expected at most 3.403e\+38"):
        load_config(None, ["optimizer.weight_decay=1e300"])
    with pytest.raises(ConfigError, match="optimizer.eps: expected at most"):
        load_config(None, ["optimizer=adam", "optimizer.eps=1e300"])


# ---------------------------------------------------------------- runs that can do no work


def test_more_nodes_than_training_samples_is_refused_at_once():
    start = time.perf_counter()
    with pytest.raises(
        ConfigError,
        match=r"nodes: expected at most the 3,200 training samples \(data.synthetic.samples "
        r"4,000 less test_fraction 0.2\), as every node needs one; got 1,000,000",
    ):
        load_config(None, ["data.dataset=synthetic", "nodes=1000000"])
    with pytest.raises(ConfigError, match="at most the 4,000 training samples .*mnist1d"):
        load_config(None, ["data.dataset=mnist1d", "nodes=4001"])
    with pytest.raises(
        ConfigError,
        match=r"data.shards_per_node: nodes x shards_per_node \(4,000\) exceeds the 3,200",
    ):
        load_config(None, ["data.dataset=synthetic", "data.partition=shards", "nodes=2000"])
    assert time.perf_counter() - start < 5  # before any graph or data is built
    load_config(None, ["data.dataset=synthetic", "nodes=3200", "data.partition=iid"])


def test_the_digits_dataset_tells_its_training_samples():
    with pytest.raises(ConfigError, match=r"at most the 1,437 training samples \(of 'digits'\)"):
        load_config(None, ["nodes=1000000"])  # digits is the default dataset
    with pytest.raises(ConfigError, match="at most the 1,617 training samples"):
        load_config(None, ["data.test_fraction=0.1", "nodes=1618"])
    for fraction in (0.1, 0.2, 0.33):  # the number is the split's, not an estimate
        data = load_config(None, [f"data.test_fraction={fraction}"]).data
        assert train_samples(data)[0] == len(load_dataset(data, seed=0).y_train)
    load_config(None, ["nodes=1437", "data.partition=iid"])


def test_the_command_line_refuses_a_million_nodes_within_seconds(tmp_path):
    start = time.perf_counter()
    result = runner.invoke(app, ["run", "--set", "nodes=1000000", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    assert "error: invalid configuration: nodes: expected at most the 1,437" in result.stderr
    npz = tmp_path / "small.npz"  # a dataset whose size only its file tells
    rng = np.random.default_rng(0)
    x, y = rng.random((300, 1, 8, 8), dtype=np.float32), np.arange(300) % 10
    np.savez(npz, x_train=x, y_train=y, x_test=x[:50], y_test=y[:50])
    overrides = ["data.dataset=npz", f"data.root={npz}", "nodes=1000000"]
    result = runner.invoke(app, ["run", *(a for o in overrides for a in ("--set", o)), "-q"])
    assert result.exit_code == 2, result.output
    assert (
        "error: nodes: expected at most the 300 training samples of data.dataset 'npz', as "
        "every node needs one; got 1,000,000" in result.stderr
    )
    assert time.perf_counter() - start < 20  # no graph of a million nodes is built


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["network.availability.kind=bernoulli", "network.availability.online=1e-9"],
            r"network.availability: under kind 'bernoulli' the 32 nodes are expected online "
            r"for 6.4e-06 node-rounds in the run's 200 rounds \(fewer than one\), so most "
            r"likely no node is ever online and the run does no work; raise online; got "
            r"online 1e-09",
        ),
        (
            [  # the one round of the run falls at the trough of a day with none online
                "network.availability={kind: daily, low: 0, peak: 0.5}",
                "rounds=1",
                "eval_every=1",
            ],
            r"expected online for 0 node-rounds .* raise low or high; got low 0.0, high 0.9",
        ),
        (
            ["network.availability={kind: markov, mean_offline: 1e12}"],
            r"under kind 'markov' .* raise mean_online",
        ),
    ],
)
def test_availability_under_which_no_node_is_online_is_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_availability_that_leaves_some_node_online_is_accepted():
    load_config(None, ["network.availability.kind=bernoulli", "network.availability.online=0.01"])
    daily = "network.availability={kind: daily, low: 0, peak: 0.5, period: 2}"
    load_config(None, [daily, "rounds=2", "eval_every=1"])  # the second round is at the peak


@pytest.mark.parametrize(
    ("trace", "seconds_per_round", "given"),
    [
        ("node,start,end\n0,1000,2000\n3,4,9\n", 1, "2 online intervals from time 4 to 2000"),
        ("node,start,end\n0,0,0\n", 1, "1 online interval from time 0 to 0"),  # [0, 0)
        ("node,start,end\n", 1, "no online interval"),
        ("node,start,end\n1,3.5,3.9\n", 1, "1 online interval from time 3.5 to 3.9"),
        ("node,start,end\n1,30,40\n", 7.5, "1 online interval from time 30 to 40"),  # 4: 30
    ],
)
def test_a_trace_under_which_no_node_is_online_is_refused(
    tmp_path, trace, seconds_per_round, given
):
    path = tmp_path / "trace.csv"
    path.write_text(trace)
    availability = {"kind": "trace", "path": str(path), "seconds_per_round": seconds_per_round}
    config = load_config({**SMALL, "network": {"availability": availability}})
    with pytest.raises(
        ConfigError,
        match=rf"^network.availability.path '{path}': expected some node online in the run's "
        rf"4 rounds \(trace times 0 to {3 * seconds_per_round:g} at seconds_per_round "
        rf"{seconds_per_round:g}\), or the run does no work; got {given} for its 6 nodes",
    ):
        Simulation.build(config)
    (tmp_path / "run.yaml").write_text(dump_config(config))
    result = runner.invoke(app, ["run", str(tmp_path / "run.yaml"), "-q"])
    assert result.exit_code == 2 and "error: network.availability.path" in result.stderr


def test_a_trace_with_a_node_online_in_some_round_is_accepted(tmp_path):
    path = tmp_path / "trace.json"  # FedScale's form: online in [active, inactive], cyclic
    clients = {str(i): {"active": [5], "inactive": [6], "finish_time": 10} for i in range(6)}
    path.write_text(json.dumps(clients))
    availability = {"kind": "trace", "path": str(path), "seconds_per_round": 4}
    config = load_config({**SMALL, "network": {"availability": availability}})
    with pytest.raises(ConfigError, match=r"from time 5 to 6 for its 6 nodes"):
        Simulation.build(config)  # times 0, 4, 8, 12 (2 within the cycle): none in [5, 6]
    config = load_config(config, ["rounds=8", "eval_every=4"])  # time 16: 6 within the cycle
    sim = Simulation.build(config)
    assert sim.network.availability._trace.first_online_round(8, 4) == 4


def test_the_first_online_round_of_a_trace_matches_a_loop_over_rounds():
    rng = np.random.default_rng(0)
    for closed in (False, True):
        for _ in range(20):
            k = int(rng.integers(1, 6))
            start = rng.uniform(0, 60, k).round(1)
            end = start + rng.uniform(0, 3, k).round(1)
            period = np.where(rng.random(k) < 0.5, np.inf, rng.uniform(10, 50, k).round())
            trace = Trace(rng.integers(0, 4, k), start, end, period, 4, closed)
            spr = float(rng.choice([0.5, 1.0, 2.5, 7.0]))
            online = [t for t in range(30) if trace.online(t * spr).any()]
            assert trace.first_online_round(30, spr) == (online[0] if online else None)


def test_a_skiptrain_cycle_longer_than_the_run_warns():
    with pytest.warns(
        UserWarning,
        match=r"a cycle of protocol 'skiptrain' takes 6 rounds \(cycle_rounds\), more than the "
        r"run's 4: the run ends within its first cycle",
    ):
        small_config(protocol="{name: skiptrain, train_rounds: 3, sync_rounds: 3}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        small_config(protocol="{name: skiptrain, train_rounds: 1, sync_rounds: 3}")  # 4: fits


# ---------------------------------------------------------------- sizes before allocating


def test_a_synthetic_task_larger_than_this_machine_is_refused_before_generating():
    for override in (
        "data.synthetic.samples=100000000000",
        "data.synthetic.shape=[100000, 100000]",
        "data.synthetic.clusters_per_class=1000000000",
    ):
        with pytest.raises(
            ConfigError,
            match=r"data.synthetic: generating 'synthetic' takes about [\d,.]+ GB, more than "
            r"this machine's memory .*engine.check_memory: false skips this check\); got "
            r"samples",
        ):
            load_config(None, ["data.dataset=synthetic", override])
    load_config(  # asked not to check: the config is valid, it only cannot run here
        None,
        [
            "data.dataset=synthetic",
            "data.synthetic.samples=100000000000",
            "engine.check_memory=false",
        ],
    )


def test_a_model_too_large_is_refused_by_its_plan_without_being_built():
    config = load_config(None, ["model.hidden=[10000000000]"])
    with pytest.raises(
        ConfigError, match=r"the largest part is parameters \(96,000.00 GB\). Use fewer nodes"
    ):
        memory.check_model_fits(config, torch.device("cpu"))
    memory.check_model_fits(load_config(None, []), torch.device("cpu"))  # the quickstart fits
    outline = memory.outline_for_config(config)
    assert outline.terms["parameters"] == 32 * (64 * 10**10 + 10**10 + 10**11 + 10) * 4


def test_a_run_with_a_model_too_large_is_refused_before_the_model_is_built(monkeypatch):
    built = []
    real = simulation.build_model
    monkeypatch.setattr(simulation, "build_model", lambda *a: built.append(a) or real(*a))
    with pytest.raises(ConfigError, match=r"^memory: this run needs about [\d,.]+ GB .* the "):
        Simulation.build(load_config(None, ["model.hidden=[100000000]"]))
    assert built == []  # refused by the plan, not by the allocator
    result = runner.invoke(app, ["run", "--set", "model.hidden=[100000000]", "-q"])
    assert result.exit_code == 2, result.output
    assert "error: memory: this run needs about" in result.stderr
    assert "largest part is parameters" in result.stderr and "allocate memory" not in result.output
    sim = Simulation.build(small_config())  # a run that fits is built as before
    assert len(built) == 1 and sim.node_data.num_nodes == SMALL["nodes"]


def test_plan_exits_non_zero_when_the_run_does_not_fit():
    huge = ["--set", "model.hidden=[10000000000]"]
    table = runner.invoke(app, ["plan", *huge])
    assert table.exit_code == 1, table.output
    assert "no: parameters; use fewer nodes, a smaller model" in table.stdout
    shown = runner.invoke(app, ["plan", *huge, "--json"])
    assert shown.exit_code == 1 and json.loads(shown.stdout)["fits"] is False
    fits = runner.invoke(app, ["plan", "--set", "rounds=20", "--no-probe"])
    assert fits.exit_code == 0, fits.output


# ---------------------------------------------------------------- strict JSON


def _strict(text: str):
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_summary_json_is_strict_json_when_no_node_trained(tmp_path):
    trace = tmp_path / "first.csv"  # node 0 is online in round 0 only: none in the last
    trace.write_text("node,start,end\n0,0,1\n")
    config = {
        **SMALL,
        "network": {"availability": {"kind": "trace", "path": str(trace)}},
    }
    result = gossamer.run(config, out=tmp_path / "run")
    assert math.isnan(result.summary["final"]["train_loss"])  # nobody trained last
    summary = _strict((tmp_path / "run" / "summary.json").read_text())
    assert summary["final"]["train_loss"] is None
    assert summary["final"]["test_accuracy_mean"] == pytest.approx(
        result.summary["final"]["test_accuracy_mean"]
    )


def test_json_files_are_written_strict(tmp_path):
    value = {"a": math.nan, "b": [math.inf, -math.inf, 1.5], "c": np.float32("nan"), "d": 2}
    assert _strict(json_text(value)) == {"a": None, "b": [None, None, 1.5], "c": None, "d": 2}
    loose = json.dumps({"loss": math.nan, "n": 3}, indent=2) + "\n"
    assert _strict(strict_json(loose)) == {"loss": None, "n": 3}
    assert strict_json('{"n": 3}') == '{"n": 3}'  # strict already: unchanged
    atomic_write(tmp_path / "x.json", loose)
    assert _strict((tmp_path / "x.json").read_text()) == {"loss": None, "n": 3}
    atomic_write(tmp_path / "x.txt", "NaN")  # only .json files are JSON
    assert (tmp_path / "x.txt").read_text() == "NaN"
