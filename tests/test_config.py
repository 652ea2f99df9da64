"""Config loading, overrides and error messages."""

from __future__ import annotations

import pytest

from gossamer.config import ConfigError, dump_config, load_config


def test_defaults_are_the_documented_quickstart():
    c = load_config()
    assert (c.seed, c.nodes, c.rounds, c.eval_every, c.local_steps, c.device) == (
        0,
        32,
        200,
        10,
        1,
        "auto",
    )
    d = c.data
    assert (d.dataset, d.partition, d.alpha, d.shards_per_node, d.batch_size, d.test_fraction) == (
        "digits",
        "dirichlet",
        0.5,
        2,
        16,
        0.2,
    )
    assert c.model.name == "mlp" and c.model.hidden == [64]
    assert (c.optimizer.lr, c.optimizer.momentum, c.optimizer.weight_decay) == (0.1, 0.0, 0.0)
    assert (c.topology.kind, c.topology.degree, c.topology.weights) == (
        "regular",
        4,
        "metropolis_hastings",
    )
    assert c.protocol.name == "dpsgd"


def test_yaml_and_toml_describe_the_same_config(tmp_path):
    (tmp_path / "a.yaml").write_text(
        "nodes: 10\nprotocol: {name: periodic, period: 4}\nmodel:\n  name: mlp\n  hidden: [8, 8]\n"
    )
    (tmp_path / "a.toml").write_text(
        'nodes = 10\n[protocol]\nname = "periodic"\nperiod = 4\n'
        '[model]\nname = "mlp"\nhidden = [8, 8]\n'
    )
    a, b = load_config(tmp_path / "a.yaml"), load_config(tmp_path / "a.toml")
    assert a == b and a.protocol.period == 4 and a.model.hidden == [8, 8]


def test_overrides_parse_values_as_yaml_and_switch_sections():
    c = load_config(
        None,
        [
            "model.hidden=[32,16]",
            "protocol.name=periodic",
            "protocol.period=7",
            "optimizer.lr=0.05",
            "topology.kind=ring",
            "data.synthetic.shape=[4]",
        ],
    )
    assert c.model.hidden == [32, 16] and c.protocol.period == 7 and c.optimizer.lr == 0.05
    assert c.topology.kind == "ring" and c.data.synthetic.shape == [4]


def test_protocol_shorthand_and_override_on_top_of_it():
    c = load_config({"protocol": "periodic"}, ["protocol.period=3"])
    assert c.protocol.name == "periodic" and c.protocol.period == 3


@pytest.mark.parametrize(
    ("raw", "overrides", "message"),
    [
        ({"nodes": 0}, [], r"nodes: input should be greater than or equal to 1; got 0"),
        ({"optimizer": {"lr": -1}}, [], r"optimizer.lr: input should be greater than 0; got -1"),
        (
            {"data": {"partition": "random"}},
            [],
            r"data.partition: input should be 'iid', 'dirichlet', 'shards' or 'natural'; "
            r"got 'random'",
        ),
        ({"data": {"bogus": 1}}, [], r"data.bogus: unknown key \(allowed: dataset, root, download"),
        (
            {"protocol": {"name": "periodic", "period": 0}},
            [],
            r"protocol.period: input should be greater than or equal to 1; got 0",
        ),
        (
            {"protocol": {"name": "gossip"}},
            [],
            r"protocol.name: expected one of .*dpsgd.*; got 'gossip'",
        ),
        (
            {"model": {"name": "cnn", "kernel_size": 4}},
            [],
            r"model.kernel_size: value error, must be odd",
        ),
        ({}, ["rounds=5", "eval_every=10"], r"eval_every: expected at most rounds \(5\); got 10"),
        ({}, ["nodes"], r"overrides: expected key=value"),
        ({"seed": 3}, ["seed.x=1"], r"overrides seed.x: 'seed' is a value, not a section"),
        ({}, ["seed.x=1"], r"seed: input should be a valid integer; got {'x': 1}"),
    ],
)
def test_bad_input_names_the_key_what_was_expected_and_what_was_given(raw, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(raw, overrides)


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="config file '.*missing.yaml': not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("nodes: [1,\n")
    with pytest.raises(ConfigError, match="bad.yaml': cannot parse"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "c.json").write_text("{}")
    with pytest.raises(ConfigError, match="expected a .yaml, .yml or .toml file"):
        load_config(tmp_path / "c.json")
    (tmp_path / "typo.yaml").write_text("nodez: 3\n")
    with pytest.raises(
        ConfigError, match=r"invalid configuration in .*typo.yaml:\n  nodez: unknown key"
    ):
        load_config(tmp_path / "typo.yaml")


def test_resolved_config_round_trips_through_yaml(tmp_path):
    c = load_config(None, ["protocol.name=periodic", "model.hidden=[5]", "topology.kind=torus"])
    path = tmp_path / "resolved.yaml"
    path.write_text(dump_config(c))
    assert load_config(path) == c


def test_errors_name_arguments_as_the_api_and_the_command_line_spell_them(tmp_path):
    import gossamer
    from conftest import small_config
    from gossamer.config import GossamerError, RunDirectoryError, arg

    gossamer.run(small_config(), out=tmp_path / "run")
    with pytest.raises(RunDirectoryError) as caught:
        gossamer.run(small_config(), out=tmp_path / "run")
    error = caught.value
    assert isinstance(error, ConfigError) and isinstance(error, GossamerError)
    assert str(error) == (
        f"out: '{tmp_path / 'run'}' holds a finished run (summary.json exists); "
        "choose another directory or pass force=True"
    )
    assert error.cli_message() == (
        f"--out: '{tmp_path / 'run'}' holds a finished run (summary.json exists); "
        "choose another directory or pass --force"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(None, ["nodes"])
    assert str(caught.value).startswith("overrides: expected key=value")
    assert caught.value.cli_message().startswith("--set: expected key=value")
    with pytest.raises(KeyError, match="unknown argument 'outt'"):
        arg("outt")


def test_config_only_checks_come_before_any_data_is_read(tmp_path):
    """A budgeted protocol without energy, augmentation of vectors: rejected by the config
    alone (the dataset's files do not exist, so reading them would fail differently)."""
    files = {"data.dataset": "mnist", "data.root": str(tmp_path / "nowhere")}
    with pytest.raises(ConfigError, match="'greedy' needs energy budgets"):
        load_config({"protocol": "greedy", "energy": {"enabled": False}}, [])
    with pytest.raises(ConfigError, match="data.augment: crop and flip need image inputs"):
        load_config({"data": {"dataset": "mnist1d", "augment": {"flip": True}}})
    config = load_config(None, [f"{k}={v}" for k, v in files.items()])  # image data: fine
    assert config.data.dataset == "mnist"
