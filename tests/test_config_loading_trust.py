"""A config file is read safely: text that is not UTF-8 and YAML whose aliases expand
beyond any config's size are clear errors naming the file, and no error message echoes
a given value at unbounded length (issue 22)."""

from __future__ import annotations

import itertools
import time

import pytest
import yaml
from typer.testing import CliRunner

from gossamer.cli.app import app
from gossamer.config import ConfigError, load_config
from gossamer.config.errors import shown
from gossamer.config.loading import ConfigLoader

runner = CliRunner()


# ---------------------------------------------------------------- encodings


def test_a_config_that_is_not_utf8_names_the_file_and_the_byte(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"rounds: \xff\xfe\n")
    with pytest.raises(
        ConfigError,
        match=r"config file '.*bad.yaml': expected UTF-8 text; got byte b'\\xff' at byte "
        r"offset 8, which is not UTF-8",
    ):
        load_config(path)
    toml = tmp_path / "bad.toml"
    toml.write_bytes("rounds = 3\nseed = 'é'\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"bad.toml': expected UTF-8 text; .* offset 19"):
        load_config(toml)


def test_the_command_line_reports_a_config_that_is_not_utf8_without_a_traceback(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"rounds: \xff\xfe\n")
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "error: config file" in result.stderr and "bad.yaml" in result.stderr
    assert "not UTF-8" in result.stderr and "Traceback" not in result.output


def test_utf8_text_still_reads(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("rounds: 17  # résumé, 節点\n", encoding="utf-8")
    assert load_config(path).rounds == 17


# ---------------------------------------------------------------- aliases


def _alias_bomb(levels: int = 9) -> str:
    """The "billion laughs": each level lists the previous one 9 times (9**levels values)."""
    names = "abcdefghijklmnop"[:levels]
    lines = [f"{names[0]}: &{names[0]} [x,x,x,x,x,x,x,x,x]"]
    lines += [f"{b}: &{b} [{','.join([f'*{a}'] * 9)}]" for a, b in itertools.pairwise(names)]
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_while_loading_naming_the_file(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(_alias_bomb())
    assert path.stat().st_size < 310  # 9**9 (387 million) values once expanded
    start = time.perf_counter()
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert time.perf_counter() - start < 2
    message = str(caught.value)
    assert message == (
        f"config file '{path}': line 5: expected aliases (*name) that expand to at most "
        "10,000 values in all; got 15,670 by *d (nested aliases that multiply, an alias "
        "bomb); write the values out or use fewer aliases"
    )
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 2 and "laughs.yaml': line 5: expected aliases" in result.stderr
    assert len(result.output) < 500


def test_an_alias_bomb_in_an_override_names_the_override():
    bomb = "{" + _alias_bomb(6).strip().replace("\n", ", ") + "}"  # 9**6 values
    with pytest.raises(ConfigError, match=r"^overrides model.hidden: line 1: expected aliases"):
        load_config(None, [f"model.hidden={bomb}"])


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("model:\n  name: mlp\n  hidden: &h [4, *h]\n")
    with pytest.raises(
        ConfigError,
        match=r"loop.yaml': line 3: expected an alias to a finished anchor; got \*h inside &h",
    ):
        load_config(path)


def test_aliases_a_config_uses_still_load(tmp_path):
    path = tmp_path / "anchors.yaml"
    path.write_text(
        "optimizer: &opt {name: sgd, lr: 0.2}\n"
        "model: {name: mlp, hidden: &width [16, 16]}\n"
        "protocol: {<<: {name: periodic}, period: 3}\n"
        "logging: {wandb: {tags: [&tag a, *tag, b]}}\n"
    )
    config = load_config(path)
    assert (config.optimizer.lr, config.model.hidden, config.protocol.period) == (0.2, [16, 16], 3)
    assert config.logging.wandb.tags == ["a", "a", "b"]
    wide = "x: &x [" + ", ".join(["1"] * 99) + "]\n" + "y: [" + ", ".join(["*x"] * 100) + "]\n"
    assert len(yaml.load(wide, Loader=ConfigLoader)["y"]) == 100  # 10,000 values: the bound


def test_an_integer_too_long_to_read_is_a_config_error(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"^overrides rounds: line 1: expected an integer of at most 4,300 digits; got "
        r"one of 5,000 digits$",
    ):
        load_config(None, ["rounds=" + "1" * 5000])
    path = tmp_path / "hex.yaml"
    path.write_text("rounds: !!int 0x10\n")
    with pytest.raises(ConfigError, match=r"hex.yaml': line 1: expected a decimal integer; got"):
        load_config(path)


# ---------------------------------------------------------------- bounded messages


def test_a_long_value_is_shown_cut_in_a_message():
    with pytest.raises(ConfigError) as caught:
        load_config(None, ["model.hidden=" + "x" * 100_000])
    line = str(caught.value).splitlines()[1]
    assert line.startswith("  model.hidden: input should be a valid list; got 'xxx")
    assert len(line) < 300 and "..." in line


def test_a_value_with_many_problems_lists_the_first_and_counts_the_rest():
    with pytest.raises(ConfigError) as caught:
        load_config(None, ["model.hidden=[" + ", ".join(["x"] * 5000) + "]"])
    lines = str(caught.value).splitlines()
    assert lines[1].startswith("  model.hidden.0: input should be a valid integer")
    assert lines[-1] == "  ... and 4,980 more problems" and len(lines) == 22


def test_shown_bounds_any_value_and_leaves_short_ones_as_repr():
    assert shown("periodic") == "'periodic'" and shown([128, 64]) == "[128, 64]"
    assert shown({"kind": "ring"}) == "{'kind': 'ring'}" and shown(1e300) == "1e+300"
    huge = [list(range(1000))] * 1000
    assert len(shown(huge)) <= 200 and shown(huge).startswith("[[0, 1, 2")
    assert len(shown("é" * 10**6)) <= 200 and len(shown(10**5000)) <= 200


def test_every_message_is_bounded_line_by_line():
    error = ConfigError("key: expected a name; got " + "y" * 5000 + "\nsecond line")
    first, second = str(error).splitlines()
    assert first.endswith("... (4,026 more characters)") and len(first) < 1100
    assert second == "second line" and error.cli_message() == str(error)
