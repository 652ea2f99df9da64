"""Checkpoints that cannot be trusted are refused; the run state round-trips in memory.

A checkpoint damaged on disk (a flipped byte, a truncation, an edited header or
state) fails its checksum before any work. One whose checksum is right but whose
contents are not this run's (written by other code: another shape or dtype, a round
outside the run, a per-rank file outside the run directory, a huge or deeply nested
state) is refused too. Each refusal is a CheckpointError naming the file and what is
wrong, and leaves the run directory as it was.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import struct
import tracemalloc
from pathlib import Path

import pytest
import torch

import gossamer
from conftest import small_config, stop_at
from gossamer.config import CheckpointError
from gossamer.sim import Simulation
from gossamer.workflow import RunInterrupted, checkpoint, integrity

CONFIG = small_config(
    nodes=8, rounds=12, eval_every=3, checkpoint_every=4, **{"optimizer.momentum": 0.9}
)
PARAMS = "simulation.population.params.0"


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> Path:
    """A folder with 'whole' (an uninterrupted run) and 'cut' (stopped after round 6)."""
    base = tmp_path_factory.mktemp("runs")
    gossamer.run(CONFIG, out=base / "whole")
    with pytest.raises(RunInterrupted):
        gossamer.run(CONFIG, out=base / "cut", progress=stop_at(6))
    return base


@pytest.fixture
def run_dir(stopped, tmp_path) -> Path:
    """A copy of the stopped run to damage."""
    return Path(shutil.copytree(stopped / "cut", tmp_path / "run"))


def _split(raw: bytes) -> tuple[dict, bytes]:
    (length,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + length]), raw[8 + length :]


def _join(header: dict, body: bytes) -> bytes:
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    return struct.pack("<Q", len(encoded)) + encoded + body


def _refused(run_dir: Path, said: str) -> None:
    """Resuming ``run_dir`` raises CheckpointError starting with ``said`` (a regex, after
    the file's name), and changes nothing in the directory."""
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    path = run_dir / checkpoint.CHECKPOINT
    with pytest.raises(CheckpointError) as raised:
        gossamer.resume(run_dir)
    assert re.match(
        f"resume: '{re.escape(str(path))}' is not a readable checkpoint: {said}", str(raised.value)
    ), str(raised.value)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before


def _rewritten(path: Path, tensors=None, meta=None, state=None) -> None:
    """Rewrite a checkpoint through our writer (its checksum renewed, as other code
    writing a well-formed file would): ``tensors``, ``meta``, ``state`` change them.
    Each call starts from the checkpoint as the run wrote it."""
    pristine = path.with_name(f"{path.name}.pristine")  # beside it, the first time
    if not pristine.exists():
        shutil.copy(path, pristine)
    saved, metadata = checkpoint.read_safetensors(pristine)
    header = json.loads(metadata["gossamer"])
    run_state = json.loads(saved["state.json"].numpy().tobytes())
    (tensors or (lambda t: None))(saved)
    (meta or (lambda m: None))(header)
    (state or (lambda s: None))(run_state)
    saved["state.json"] = torch.frombuffer(
        bytearray(json.dumps(run_state).encode()), dtype=torch.uint8
    )
    metadata["gossamer"] = json.dumps(header)
    with open(path, "wb") as handle:
        checkpoint.write_safetensors(handle, saved, metadata)


# ------------------------------------------------------------------ damaged bytes


def _flip_a_parameter_byte(header, body):
    begin, _ = header[PARAMS]["data_offsets"]
    body = bytearray(body)
    body[begin + 5] ^= 0x40
    return header, bytes(body)


def _transpose_a_shape(header, body):
    header[PARAMS]["shape"] = header[PARAMS]["shape"][::-1]
    return header, body


def _floats_read_as_integers(header, body):
    header[PARAMS]["dtype"] = "I32"
    return header, body


def _edit_the_state(header, body):
    begin, end = header["state.json"]["data_offsets"]
    state = body[begin:end]
    assert b'"next_round": 6' in state
    return header, body[:begin] + state.replace(b'"next_round": 6', b'"next_round": 9') + body[end:]


def _edit_the_metadata(header, body):
    meta = json.loads(header["__metadata__"]["gossamer"])
    header["__metadata__"]["gossamer"] = json.dumps({**meta, "next_round": 9})
    return header, body


CHECKSUM_MISMATCH = (
    r"its bytes do not match its checksum \(recorded sha256:[0-9a-f]{16}\.\.\., computed "
    r"sha256:[0-9a-f]{16}\.\.\.\): they changed after it was written"
)


@pytest.mark.parametrize(
    "damage",
    [
        _flip_a_parameter_byte,
        _transpose_a_shape,
        _floats_read_as_integers,
        _edit_the_state,
        _edit_the_metadata,
    ],
)
def test_a_checkpoint_changed_on_disk_fails_its_checksum(run_dir, damage):
    path = run_dir / checkpoint.CHECKPOINT
    path.write_bytes(_join(*damage(*_split(path.read_bytes()))))
    _refused(run_dir, CHECKSUM_MISMATCH)


def test_a_truncated_or_padded_checkpoint_says_so(run_dir):
    path = run_dir / checkpoint.CHECKPOINT
    whole = path.read_bytes()
    tensors = len(_split(whole)[1])
    path.write_bytes(whole[:-16])
    _refused(
        run_dir,
        f"its header describes {tensors:,} bytes of tensors; it holds {tensors - 16:,} "
        r"\(truncated\)",
    )
    path.write_bytes(whole + b"\0" * 8)
    _refused(
        run_dir,
        f"its header describes {tensors:,} bytes of tensors; it holds {tensors + 8:,} "
        r"\(padded\)",
    )


def test_an_intact_checkpoint_still_resumes_to_the_uninterrupted_run(stopped, run_dir):
    gossamer.resume(run_dir)
    for name in ("metrics.csv", "rounds.csv", "nodes.csv"):
        whole = (stopped / "whole" / name).read_text().splitlines()
        resumed = (run_dir / name).read_text().splitlines()
        if name == "metrics.csv":  # every column but the wall-clock time
            whole, resumed = ([line.rsplit(",", 1)[0] for line in f] for f in (whole, resumed))
        assert whole == resumed, name


# ------------------------------------------------------------------ well-formed, but not this run's


def test_tensors_of_another_shape_or_dtype_are_refused(run_dir):
    path = run_dir / checkpoint.CHECKPOINT
    shape = tuple(checkpoint.read_safetensors(path)[0][PARAMS].shape)  # (8, 84)

    def one_row(tensors):
        tensors[PARAMS] = tensors[PARAMS][:1].clone()

    _rewritten(path, tensors=one_row)
    _refused(
        run_dir,
        re.escape(
            f"its per-node tensor '{PARAMS}' has shape {(1, shape[1])}; it should hold 8 rows"
        ),
    )
    counter = "simulation.ledger.node.bytes_sent"

    def one_counter(tensors):  # numpy would broadcast it to every node
        tensors[counter] = tensors[counter][:1].clone()

    _rewritten(path, tensors=one_counter)
    _refused(
        run_dir,
        re.escape(
            f"its tensor '{counter}' is int64 of shape (1,); this run's state needs int64 of"
        ),
    )

    def transposed(tensors):
        tensors[PARAMS] = tensors[PARAMS].T.contiguous()

    _rewritten(path, tensors=transposed)
    _refused(run_dir, re.escape(f"its per-node tensor '{PARAMS}' has shape {shape[::-1]}; it"))

    def narrower(tensors):  # another model's parameters, by the node
        tensors[PARAMS] = tensors[PARAMS][:, :42].contiguous()

    _rewritten(path, tensors=narrower)
    _refused(
        run_dir,
        re.escape(
            f"its tensor '{PARAMS}' is float32 of shape (8, 42); this run's state needs "
            f"float32 of shape {shape}"
        ),
    )

    momentum = "simulation.population.optimizer.momentum.1"

    def doubled(tensors):
        tensors[momentum] = tensors[momentum].double()

    _rewritten(path, tensors=doubled)
    _refused(run_dir, re.escape(f"its tensor '{momentum}' is float64 of shape"))

    def as_floats(tensors):
        tensors[counter] = tensors[counter].float()

    _rewritten(path, tensors=as_floats)
    _refused(run_dir, re.escape(f"its tensor '{counter}' is float32 of shape (8,); this run's"))


def test_a_tensor_made_when_first_used_is_checked_after_loading(tmp_path):
    """The coordinator's models (periodic averaging with compression) exist only once
    used: checked against the model once loading has made them."""
    config = small_config(
        nodes=8,
        rounds=12,
        checkpoint_every=4,
        protocol="{name: periodic, period: 2, compression: {name: power, error_feedback: true}}",
    )
    with pytest.raises(RunInterrupted):
        gossamer.run(config, out=tmp_path / "run", progress=stop_at(6))
    path = tmp_path / "run" / checkpoint.CHECKPOINT
    base = "simulation.network.base.0"
    shape = tuple(checkpoint.read_safetensors(path)[0][base].shape)

    def one_column(tensors):  # copy_ would broadcast it over the columns
        tensors[base] = tensors[base][:, :1].contiguous()

    _rewritten(path, tensors=one_column)
    _refused(
        tmp_path / "run",
        re.escape(
            f"its tensor '{base}' is float32 of shape {(shape[0], 1)}; this run's state "
            f"needs float32 of shape {shape}"
        ),
    )


def test_a_round_outside_the_run_is_refused(run_dir):
    path = run_dir / checkpoint.CHECKPOINT
    _rewritten(path, meta=lambda meta: meta.update(next_round=10**9))
    _refused(run_dir, re.escape("its next round is 1000000000; a run of 12 rounds stops at 1..11"))
    _rewritten(
        path,
        meta=lambda meta: meta.update(next_round=6),
        state=lambda state: state["simulation"].update(next_round=9),
    )
    _refused(run_dir, r"its state is at round 9 after [0-9.e-]+ s; its header says round 6")


def test_a_huge_state_is_refused_before_it_is_read(run_dir):
    path = run_dir / checkpoint.CHECKPOINT
    padding = "x" * (48 << 20)

    def huge(state):
        state["padding"] = padding

    _rewritten(path, state=huge)
    size = len(checkpoint.read_safetensors(path)[0]["state.json"])
    limit = checkpoint.STATE_BASE + checkpoint.STATE_PER_ROUND * 13
    said = f"its state.json is {size:,} bytes; a run of 12 rounds writes at most {limit:,}"
    _refused(run_dir, re.escape(said))
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=re.escape(said)):
            gossamer.resume(run_dir)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20  # refused before its 48 MiB were read


def test_a_deeply_nested_header_is_refused(run_dir):
    path = run_dir / checkpoint.CHECKPOINT
    deep = b"[" * 100_000 + b"]" * 100_000  # a RecursionError in the JSON parser
    path.write_bytes(struct.pack("<Q", len(deep)) + deep)
    _refused(run_dir, "its JSON is nested more than 32 levels deep")


def test_a_header_longer_than_any_checkpoint_has_is_refused_unread(run_dir):
    path = run_dir / checkpoint.CHECKPOINT
    path.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    _refused(
        run_dir,
        re.escape(
            f"its header would be {1 << 40:,} bytes; a checkpoint's is at most "
            f"{integrity.MAX_HEADER:,}"
        ),
    )


def test_a_deeply_nested_state_is_refused(run_dir):
    path = run_dir / checkpoint.CHECKPOINT
    nested: list = []
    for _ in range(500):  # parsed by json, then refused (not left to recursion)
        nested = [nested]
    _rewritten(path, state=lambda state: state["simulation"].update(history=nested))
    _refused(run_dir, "state.json: its JSON is nested more than 32 levels deep")


# ------------------------------------------------------------------ per-rank files


def _sharded(run_dir: Path) -> Path:
    """Move the per-node tensors of a one-process checkpoint into a per-rank file, as a
    run on one rank of a multi-rank launch writes it; returns that file."""
    path = run_dir / checkpoint.CHECKPOINT
    tensors, metadata = checkpoint.read_safetensors(path)
    state = json.loads(tensors["state.json"].numpy().tobytes())
    rows: list[str] = []

    def find_rows(value):
        if isinstance(value, dict):
            if "__rows__" in value:
                rows.append(value["__rows__"])
            for item in value.values():
                find_rows(item)
        elif isinstance(value, list):
            for item in value:
                find_rows(item)

    find_rows(state)
    meta = json.loads(metadata["gossamer"])
    shard = run_dir / f"checkpoint.round{meta['next_round']}.rank0-of-1.safetensors"
    with open(shard, "wb") as handle:
        digest = checkpoint.write_safetensors(
            handle, {n: tensors.pop(n) for n in rows}, checksum=True
        )
    meta["shards"] = [
        {"file": shard.name, "ranges": meta["shards"][0]["ranges"], "checksum": digest}
    ]
    metadata["gossamer"] = json.dumps(meta)
    with open(path, "wb") as handle:
        checkpoint.write_safetensors(handle, tensors, metadata)
    return shard


def test_per_rank_files_are_checked_too(stopped, run_dir, tmp_path):
    shard = _sharded(run_dir)
    intact = shard.read_bytes()
    copy = Path(shutil.copytree(run_dir, tmp_path / "intact"))
    gossamer.resume(copy)  # a well-formed sharded checkpoint resumes
    assert (copy / "metrics.csv").read_text().count("\n") == (
        (stopped / "whole" / "metrics.csv").read_text().count("\n")
    )

    damaged = bytearray(intact)
    damaged[-3] ^= 0x01
    shard.write_bytes(bytes(damaged))
    with pytest.raises(CheckpointError) as raised:
        gossamer.resume(run_dir)
    assert str(raised.value).startswith(
        f"resume: '{shard}' is not a readable checkpoint: its bytes do not match its checksum"
    )

    shard.write_bytes(intact)
    rows, _ = checkpoint.read_safetensors(shard)
    rows[PARAMS] = torch.zeros_like(rows[PARAMS])
    with open(shard, "wb") as handle:  # another valid per-rank file under this one's name
        checkpoint.write_safetensors(handle, rows, checksum=True)
    with pytest.raises(CheckpointError) as raised:
        gossamer.resume(run_dir)
    assert re.fullmatch(
        f"resume: '{re.escape(str(shard))}' is not a readable checkpoint: it is not the file "
        r"this checkpoint was written with \(sha256:[0-9a-f]{64}\)",
        str(raised.value),
    )


@pytest.mark.parametrize(
    "name",
    [
        "../whole/checkpoint.safetensors",
        "/etc/passwd",
        "checkpoint.round6.rank0-of-1.safetensors/../../whole/x",
        "notes.txt",
    ],
)
def test_a_per_rank_file_outside_the_run_directory_is_refused(run_dir, name):
    shard = _sharded(run_dir)
    digest = json.loads(checkpoint.read_safetensors(run_dir / checkpoint.CHECKPOINT)[1]["gossamer"])
    digest = digest["shards"][0]["checksum"]

    def elsewhere(meta):
        meta["shards"][0].update(file=name, checksum=digest)

    _rewritten(run_dir / checkpoint.CHECKPOINT, meta=elsewhere)
    _refused(
        run_dir,
        re.escape(
            f"it names the per-rank file {name!r}, which is not a file "
            f"checkpoint.round<t>.rank<r>-of-<R>.safetensors of '{run_dir}'"
        ),
    )
    assert shard.exists()


def test_a_per_rank_file_linked_from_elsewhere_is_refused(run_dir, tmp_path):
    shard = _sharded(run_dir)
    outside = tmp_path / "elsewhere.safetensors"
    shard.rename(outside)
    os.symlink(outside, shard)
    _refused(
        run_dir,
        re.escape(f"it names the per-rank file {shard.name!r}, which is not a file"),
    )


# ------------------------------------------------------------------ the run state in memory

ROUND_TRIP = {
    "dpsgd": "dpsgd",
    "dynamic": "{name: dynamic, delta: 0.001}",
    "choco": "{name: choco, compression: {name: top_k, ratio: 0.1, error_feedback: true}}",
    "pushsum": "pushsum",
}


def _tensors(sim: Simulation) -> dict[str, torch.Tensor]:
    return {
        name: tensor.clone()
        for name, tensor in integrity.tensor_specs({"simulation": sim.state_dict()}).items()
    }


def _assert_same(a: Simulation, b: Simulation) -> None:
    ta, tb = _tensors(a), _tensors(b)
    assert ta.keys() == tb.keys()
    for name in ta:
        assert torch.equal(ta[name], tb[name]), name
    assert a.history == b.history and a.ledger.per_round == b.ledger.per_round


@pytest.mark.parametrize("protocol", list(ROUND_TRIP))
def test_state_dict_round_trips_in_one_process(protocol):
    config = small_config(
        nodes=8, rounds=10, eval_every=2, protocol=ROUND_TRIP[protocol], **{"network.delivery": 0.8}
    )
    plain, tripped, fresh = (Simulation.build(config) for _ in range(3))
    for sim in (plain, tripped):
        for t in range(5):
            sim.step(t)
            if sim.due_for_evaluation():
                sim.evaluate(0.0)
    tripped.load_state_dict(tripped.state_dict())  # into itself
    fresh.load_state_dict(copy.deepcopy(tripped.state_dict()))  # into another simulation
    _assert_same(plain, tripped)
    _assert_same(plain, fresh)
    for t in range(5, 10):
        for sim in (plain, tripped, fresh):
            sim.step(t)
            if sim.due_for_evaluation():
                sim.evaluate(0.0)
    _assert_same(plain, tripped)
    _assert_same(plain, fresh)
