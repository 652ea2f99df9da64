"""Every command in README.md and docs/*.md runs, so that the docs cannot drift.

The commands are read from the fenced ``bash`` and ``console`` blocks (``$ `` lines in
a console block) and run in order in a tmp directory (``examples/`` linked into it),
in this process through typer's runner; a command shown twice runs once.

- Runs are shortened: two rounds, 8 nodes, small synthetic data, no report; a
  comparison file's variants cut to two (tests/test_docs.py runs every variant of every
  example); a sweep's grid cut to two points and one seed (every point of the full grid
  validated).
- A paper setting whose files are absent (CIFAR-10, FEMNIST, MNIST) has its config
  validated, every variant, but does not run: on fixture files each takes half a
  minute, and tests/test_docs.py runs every example on them.
- A console command shown with ``^C`` under it is interrupted after its first round.
- An ``error:`` shown under a console command is the error the command prints
  (``...`` and numbers stand for anything).
- What cannot run here is listed in :data:`SKIPPED` with the reason; the list is
  checked against the docs.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from typer.testing import CliRunner

from gossamer.cli import app
from gossamer.config import ConfigError, comparison_base, load_config, read_config_file
from gossamer.sim import Simulation
from gossamer.workflow import load_variants, parse_grid, plan
from test_docs import FIXTURES

ROOT = Path(__file__).parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
GOSSAMER = ("gossamer", ".venv/bin/gossamer")

SEVERAL_PROCESSES = "several processes (tests/test_distributed.py runs --ranks and torchrun)"
#: Commands that do not run here, and why (each must still be in the docs).
SKIPPED = {
    "make demo": "the set-up: creates .venv and installs packages",
    "make test": "the set-up, then this test suite",
    "make lint": "the set-up, then ruff",
    ".venv/bin/python benchmarks/engine.py": "minutes (tests/test_benchmarks.py runs it small)",
    "gossamer run examples/quickstart.yaml --ranks 2 --out runs/two-ranks": SEVERAL_PROCESSES,
    "gossamer resume runs/two-ranks --ranks 4": SEVERAL_PROCESSES,
    ".venv/bin/torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint "
    "HOST:29400 --rdzv-id my-run -m gossamer run CONFIG --out /shared/run": SEVERAL_PROCESSES,
    ".venv/bin/torchrun --nproc-per-node 4 -m gossamer run CONFIG --out runs/four-ranks": (
        SEVERAL_PROCESSES
    ),
    ".venv/bin/torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint "
    "gpu1:29400 --rdzv-id cifar-256 -m gossamer run skiptrain_cifar10.yaml --out "
    "/shared/runs/cifar-256": SEVERAL_PROCESSES,
    "cd /shared/experiment": "a directory on the reader's cluster",
    "gossamer run --set nodes=40000 --set model.hidden=[200] ...": (
        "elided; whether it fails depends on this machine's memory (tests/test_memory.py)"
    ),
}
#: Commands that run experiments, and are shortened.
RUNS = ("run", "compare", "sweep", "delta", "plan")


@dataclass
class Command:
    where: str  # file:line
    text: str  # the command as written, continuation lines joined
    comment: str = ""
    shown: list[str] = field(default_factory=list)  # the output a console block shows
    interrupted: bool = False  # a console block shows ^C (Ctrl-C) under it

    @property
    def environment(self) -> dict[str, str]:
        """The ``NAME=value`` assignments before the program (``WANDB_MODE=offline``)."""
        words = shlex.split(self.text)
        names = {}
        for word in words:
            if not re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", word):
                break
            name, value = word.split("=", 1)
            names[name] = value
        return names

    @property
    def argv(self) -> list[str]:
        """The program and its arguments, ``$PWD`` and the like expanded as a shell does."""
        words = shlex.split(self.text)[len(self.environment) :]
        return [os.path.expandvars(word) for word in words]

    @property
    def normalized(self) -> str:
        """The command with ``.venv/bin/gossamer`` as ``gossamer``: the key of SKIPPED."""
        argv = self.argv
        if argv[0] in GOSSAMER:
            argv = ["gossamer", *argv[1:]]
        return " ".join(argv)


def commands(path: Path, root: Path = ROOT) -> list[Command]:
    """The commands of a Markdown file's bash and console blocks, in order."""
    text = path.read_text(encoding="utf-8")
    found = []
    for block in re.finditer(r"^```(bash|console)\n(.*?)^```", text, re.S | re.M):
        first_line = text[: block.start(2)].count("\n") + 1
        lines = block.group(2).splitlines()
        i = 0
        while i < len(lines):
            line, start = lines[i], i
            while line.endswith("\\"):  # a continued command
                i += 1
                line = line[:-1] + lines[i].strip()
            i += 1
            if block.group(1) == "console":
                if not line.startswith("$ "):
                    if found and line == "^C":
                        found[-1].interrupted = True
                    elif found:
                        found[-1].shown.append(line)
                    continue
                line = line[2:]
            code, _, comment = _split_comment(line)
            if code.strip():
                where = f"{path.relative_to(root)}:{first_line + start}"
                found.append(Command(where, code.strip(), comment.strip()))
    return found


def _split_comment(line: str) -> tuple[str, str, str]:
    """A shell line's command and its ``# comment`` (a # outside quotes, after a space)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1] == " "):
            return line[:i], "#", line[i + 1 :]
    return line, "", ""


def shortened(argv: list[str]) -> list[str] | None:
    """``argv`` (without the program) with a short run's overrides appended; None for
    a paper setting whose files are absent, after validating its config."""
    if argv[0] not in RUNS:
        return argv
    config_file = next((a for a in argv[1:] if a.endswith((".yaml", ".toml"))), None)
    sets = [argv[i + 1] for i, a in enumerate(argv) if a in ("--set", "-s")]
    try:
        config = load_config(comparison_base(config_file) if config_file else None, sets)
    except ConfigError:  # the command fails as it is: run it so
        return argv
    if config.data.dataset in FIXTURES:  # CIFAR-10, FEMNIST, MNIST files: validate only
        protocols = [argv[i + 1] for i, a in enumerate(argv) if a in ("--protocol", "-p")]
        assert load_variants(config_file, sets, protocols) if argv[0] == "compare" else config
        return None
    extra = ["rounds=2", "eval_every=2", "eval.initial=false", "local_steps=1", "device=cpu"]
    if config.data.dataset == "synthetic":
        extra.append("data.synthetic.samples=2000")
    if config.data.drift.at_rounds:
        extra.append("data.drift.at_rounds=[1]")
    if config.optimizer.schedule.warmup_rounds > 1:
        extra.append("optimizer.schedule.warmup_rounds=1")
    if config.nodes > 8:
        extra.append("nodes=8")
        if config.topology.kind == "file":  # the 256-node graph
            extra += ["topology.kind=regular", "topology.path=null"]
    flags = {"run": ["--no-report"], "compare": ["--no-report"], "delta": ["--periods", "1"]}
    if argv[0] == "compare" and config_file:
        argv = [_two_variants(a) if a == config_file else a for a in argv]
    if argv[0] == "sweep":
        argv = _fewer_points(argv, config)
        flags["sweep"] = ["--no-report", "--seeds", "1"]
    return [*argv, *(x for e in extra for x in ("--set", e)), *flags.get(argv[0], [])]


def _two_variants(config_file: str) -> str:
    """A copy of a comparison file (in the current directory) with its first two
    variants (tests/test_docs.py runs every variant of every example)."""
    raw = read_config_file(Path(config_file))
    raw["variants"] = dict(list(raw["variants"].items())[:2])
    short = Path(f"two-variants-{Path(config_file).name}")
    short.write_text(yaml.safe_dump(raw))
    return str(short)


def _fewer_points(argv: list[str], base) -> list[str]:
    """A sweep's grids cut to two values of the first and one of the others (every
    point of the full grid validated first)."""
    where = [i + 1 for i, a in enumerate(argv) if a in ("--grid", "-g")]
    grids = [parse_grid([argv[i]]) for i in where]
    assert plan(base, {k: v for grid in grids for k, v in grid.items()}, 1)
    argv = list(argv)
    for n, (i, grid) in enumerate(zip(where, grids, strict=True)):
        ((key, values),) = grid.items()
        argv[i] = f"{key}=" + ",".join(json.dumps(v) for v in values[: 2 if n == 0 else 1])
    return argv


def _interrupt_after_the_first_round(monkeypatch) -> None:
    """Ctrl-C (SIGINT) during the first round, as a reader would press it."""
    step = Simulation.step

    def step_then_interrupt(self, t):
        step(self, t)
        if t == 0:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(Simulation, "step", step_then_interrupt)


def shown_error(command: Command) -> re.Pattern | None:
    """The error a console block shows under a command, as a pattern over the output
    (``...`` and numbers stand for anything), or None."""
    if not command.shown or not command.shown[0].startswith("error:"):
        return None
    shown = " ".join(" ".join(command.shown).split())
    parts = re.split(r"(\.\.\.|\d+(?:[.,]\d+)*)", shown)
    pattern = "".join(
        ".*?" if p == "..." else r"[\d.,]+" if p[:1].isdigit() else re.escape(p) for p in parts
    )
    return re.compile(pattern)


def test_the_commands_in_the_docs_run(tmp_path, monkeypatch):
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PWD", str(tmp_path))  # $PWD in a command: the directory it runs in
    made = iter(range(1000))  # two runs in one second would get the same default --out
    default_out = lambda what: Path("runs") / f"{next(made)}-{what}"  # noqa: E731
    monkeypatch.setattr("gossamer.cli.run.default_out", default_out)
    monkeypatch.setattr("gossamer.cli.compare.default_out", default_out)
    done = set()  # a command shown twice runs once
    for command in (command for path in DOCS for command in commands(path)):
        argv = command.argv
        if command.normalized in SKIPPED or command.normalized in done:
            continue
        done.add(command.normalized)
        assert argv[0] in GOSSAMER, f"{command.where}: {command.text!r} neither runs nor is skipped"
        with monkeypatch.context() as patch:
            for name, value in command.environment.items():
                patch.setenv(name, value)
            if command.interrupted:
                _interrupt_after_the_first_round(patch)
            short = shortened(argv[1:])
            if short is None:
                continue
            result = CliRunner().invoke(app, short)
        output = " ".join(result.output.split())
        expected = shown_error(command)
        if expected is None and not command.interrupted:
            assert result.exit_code == 0, f"{command.where}: {command.text}\n{result.output}"
            continue
        assert result.exit_code != 0, f"{command.where}: {command.text} did not fail"
        if expected is not None:
            assert expected.search(output), f"{command.where}: shows {expected.pattern!r}\n{output}"


def test_every_skipped_command_is_in_the_docs():
    written = {command.normalized for path in DOCS for command in commands(path)}
    assert not set(SKIPPED) - written, f"stale: {set(SKIPPED) - written}"


def test_commands_are_read_from_bash_and_console_blocks(tmp_path):
    """The reader's own reference: a file with both kinds of block."""
    page = tmp_path / "page.md"
    page.write_text(
        "text\n```bash\n.venv/bin/gossamer run --set a=1 \\\n    --set b=2   # short\n"
        "# a comment line\n```\n```console\n$ gossamer run --set 'c=#1'\n^C\n"
        "error: bad c\n  more\n```\n```python\ngossamer.run()\n```\n"
    )
    found = [(c.text, c.comment, c.shown, c.interrupted) for c in commands(page, tmp_path)]
    assert found == [
        (".venv/bin/gossamer run --set a=1 --set b=2", "short", [], False),
        ("gossamer run --set 'c=#1'", "", ["error: bad c", "  more"], True),
    ]
    assert shown_error(commands(page, tmp_path)[1]).fullmatch("error: bad c more")


def test_quickstart_comments_list_every_choice():
    """examples/quickstart.yaml names, above each key, every value it can take: the
    built-ins (``config/builtins.py``, which tests/test_registry.py checks against what
    gossamer.sim registers; other tests register plugins of their own)."""
    from gossamer.config import TOPOLOGY_KINDS
    from gossamer.config.builtins import BUILTINS
    from gossamer.config.schema import Config, DataConfig, TopologyConfig

    def registered_names(kind: str) -> list[str]:
        return list(BUILTINS[kind])

    text = (ROOT / "examples" / "quickstart.yaml").read_text()
    listed = {}
    for match in re.finditer(r"^ *# ([a-z_.]+): (.*(?:\n *#   .*)*)", text, re.M):
        choices = match.group(2).replace("#", " ").split("|")
        listed[match.group(1)] = {choice.split()[0] for choice in choices}
    expected = {
        "device": set(Config.model_fields["device"].annotation.__args__),
        "data.dataset": set(registered_names("dataset")),
        "data.partition": set(DataConfig.model_fields["partition"].annotation.__args__),
        "model.name": set(registered_names("model")),
        "optimizer.name": set(registered_names("optimizer")),
        "topology.kind": set(TOPOLOGY_KINDS),
        "topology.weights": set(TopologyConfig.model_fields["weights"].annotation.__args__),
        "protocol.name": {*registered_names("protocol"), "custom"},
        "protocol.compression.name": {*registered_names("compression"), "custom"},
    }
    assert listed == expected
    assert load_config(yaml.safe_load(text)) == load_config()  # the quickstart, spelled out
