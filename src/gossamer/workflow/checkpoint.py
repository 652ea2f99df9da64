"""Checkpoints: a nested state dict in a file that cannot execute code on load.

This module serializes a nested dict of tensors and plain values (the run state of
``Simulation.state_dict()`` and the loop's own) and knows nothing about the objects it
came from. One ``checkpoint.safetensors`` in the run directory, in the safetensors
format (https://huggingface.co/docs/safetensors: an 8-byte header length, a JSON
header naming each tensor's dtype, shape and byte range, then the raw bytes), holds

- every tensor of the state, named by its path (``simulation.population.params.0``,
  ``simulation.ledger.node.bytes_sent``, ...);
- the rest of the state (numbers, strings, lists such as the metrics rows so far) as
  UTF-8 JSON bytes in a ``state.json`` tensor, with each tensor's place marked by
  ``{"__tensor__": name}`` (it grows with the run, so it stays out of the header);
- in the header's ``__metadata__`` (string values, as the format allows), a small JSON
  document: the format version, a hash of the resolved config and the next round.

**Per-node state** (``NodeRows`` in the state: parameters, optimizer state, cursors,
per-edge copies) is stored by global row, with its row space (``nodes`` or
``edges``) marked in the JSON. On one process it is in the file itself. On R ranks
each rank writes its rows to ``checkpoint.round<t>.rank<r>-of-<R>.safetensors``;
when all are on disk, rank 0 writes ``checkpoint.safetensors`` with the rest of the
state and the list of those files and the rows each holds (the commit point), then
removes older shard files. A loading rank reads just its rows from whichever files
hold them (memory-mapped slices), so a run saved on R ranks resumes on any number.

**Integrity** (:mod:`gossamer.workflow.integrity`). Every file carries a checksum
over its header and bytes; the main file also records each per-rank file's. Resuming
checks, before any work: the checksums, that the header is small and shallow, that
``state.json`` is no larger than the run's rounds can make it, and that per-rank files
are named in the run directory; after loading, that every tensor has the dtype and
shape of the run's own state. Each refusal is a CheckpointError naming the file and
what is wrong.

Loading parses JSON and copies bytes, so it never executes code (unlike pickle).
Files are written by the codec here (:func:`write_safetensors`, straight from the
tensors, no copy) and loaded with the ``safetensors`` package, slice by slice from
memory-mapped files; :func:`read_safetensors` reads a whole file (for inspection).

Nothing else is needed to continue: every random draw in gossamer is a hash of
(seed, node, round, ...) rather than generator state, so a resumed run computes
exactly what an uninterrupted one would. The file is written to a temporary name
in the same directory, flushed and renamed into place: a crash leaves either the
previous checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import json
import math
import re
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from gossamer.config import CheckpointError, Config, config_hash
from gossamer.results import CHECKPOINT, atomic_open, json_default
from gossamer.sim.shard import NodeRows, Shard
from gossamer.workflow.integrity import (
    CHECKSUM,
    checksum_of,
    damaged,
    loads,
    read_header,
    verify,
)

FORMAT_VERSION = 6  # 6: checksums
_STATE = "state.json"  # the tensor holding the state's non-tensor values
_TENSOR = "__tensor__"  # marks a tensor's place in that JSON
_ROWS = "__rows__"  # marks a per-node (per-edge) tensor's place: stored by global row
#: state.json holds the metrics rows and the per-round records (about 0.6 KiB each
#: today): a fixed part and this much per round of the run, at the most.
STATE_BASE, STATE_PER_ROUND = 1 << 20, 32 << 10

_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
_TORCH_DTYPES = {name: dtype for dtype, name in _DTYPES.items()}


def write_safetensors(
    handle,
    tensors: dict[str, torch.Tensor],
    metadata: dict[str, str] | None = None,
    checksum: bool = False,
) -> str | None:
    """Write ``tensors`` (and string ``metadata``) to a binary file in safetensors format.

    With ``checksum`` (or when ``metadata`` has a ``checksum`` entry, which is then
    renewed) the metadata's ``checksum`` is set to the file's (see the module's
    docstring), and returned."""
    metadata = dict(metadata) if metadata else {}
    checksum = checksum or CHECKSUM in metadata
    metadata.pop(CHECKSUM, None)
    header: dict[str, Any] = {"__metadata__": metadata} if metadata or checksum else {}
    chunks, offset = [], 0
    for name, tensor in tensors.items():
        if tensor.dtype not in _DTYPES:
            raise TypeError(f"checkpoint: tensor '{name}' has unsupported dtype {tensor.dtype}")
        data = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
        header[name] = {
            "dtype": _DTYPES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + data.nbytes],
        }
        chunks.append(data)
        offset += data.nbytes
    digest = None
    if checksum:
        digest = metadata[CHECKSUM] = checksum_of(header, chunks)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the format pads the header to 8 bytes
    handle.write(struct.pack("<Q", len(encoded)))
    handle.write(encoded)
    for data in chunks:
        handle.write(memoryview(data))  # no copy
    return digest


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file: (tensors on the CPU, metadata). Raises ValueError if malformed."""
    raw = path.read_bytes()
    if len(raw) < 8:
        raise ValueError("file is shorter than the 8-byte header length")
    (length,) = struct.unpack("<Q", raw[:8])
    if 8 + length > len(raw):
        raise ValueError(f"header length {length} runs past the end of the file")
    header = loads(raw[8 : 8 + length])
    if not isinstance(header, dict):
        raise ValueError("its header is not a JSON object")
    body = memoryview(raw)[8 + length :]
    stored = (header.get("__metadata__") or {}).get(CHECKSUM)
    if stored is not None and stored != checksum_of(header, [body]):
        raise ValueError(f"its checksum does not match its bytes (recorded {stored})")
    metadata = header.pop("__metadata__", None) or {}
    tensors = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        dtype = _TORCH_DTYPES.get(entry["dtype"])
        if dtype is None or not 0 <= begin <= end <= len(body):
            raise ValueError(f"tensor '{name}' has a bad dtype or byte range: {entry}")
        shape = entry["shape"]
        if end - begin != math.prod(shape) * dtype.itemsize:
            raise ValueError(f"tensor '{name}': {end - begin} bytes do not hold shape {shape}")
        if begin == end:
            tensors[name] = torch.empty(shape, dtype=dtype)
            continue
        flat = torch.frombuffer(bytearray(body[begin:end]), dtype=torch.uint8)
        tensors[name] = flat.view(dtype).reshape(shape)
    return tensors, metadata


def save(
    path: Path, state: dict[str, Any], header: dict[str, Any], shard: Shard | None = None
) -> None:
    """Write a nested state dict to ``path`` atomically; ``header`` (small JSON values)
    goes in the file's metadata, readable without the body (see :func:`check`).

    On several ranks (``shard``) every rank calls this with its own state: each writes
    its rows, then rank 0 the file that commits them."""
    tensors: dict[str, torch.Tensor] = {}
    rows: dict[str, torch.Tensor] = {}
    ranges: dict[str, list[int]] = {}
    skeleton = _flatten(state, "", tensors, rows, ranges)
    if shard is not None and shard.distributed:
        name = f"{path.stem}.round{header.get('next_round', 0)}.rank{shard.rank}-of-{shard.world}"
        name += path.suffix
        error = digest = None
        try:
            with atomic_open(path.parent / name, binary=True) as handle:
                digest = write_safetensors(handle, rows, checksum=True)
        except OSError as raised:
            error = f"rank {shard.rank}: {raised}"
        part = {"file": name, "ranges": ranges, "error": error, CHECKSUM: digest}
        everyone = shard.all_objects(part)
        failed = [part["error"] for part in everyone if part["error"]]
        if shard.rank == 0 and not failed:  # every part on disk: commit
            try:
                _write_main(path, skeleton, tensors, header, everyone)
                remove_shards(path, keep={part["file"] for part in everyone})
            except OSError as raised:
                failed.append(f"rank 0: {raised}")
        failed = shard.all_objects(failed if shard.rank == 0 else None)[0]  # rank 0's word
        if failed:  # on every rank: the previous checkpoint stays the committed one
            raise CheckpointError(f"checkpoint: could not be written ({failed[0]})")
        return
    tensors.update(rows)
    _write_main(path, skeleton, tensors, header, [{"file": None, "ranges": ranges}])
    remove_shards(path)  # of a checkpoint taken on several ranks before


def remove_shards(path: Path, keep: set[str] = frozenset()) -> None:
    """Remove the per-rank files of checkpoints other than ``keep``."""
    for old in path.parent.glob(f"{path.stem}.round*.rank*{path.suffix}"):
        if old.name not in keep:
            old.unlink(missing_ok=True)


def discard(path: Path) -> None:
    """A finished run needs no checkpoint: remove it and its per-rank files."""
    path.unlink(missing_ok=True)
    remove_shards(path)


def _write_main(path, skeleton, tensors, header, shards) -> None:
    tensors[_STATE] = torch.frombuffer(
        bytearray(json.dumps(skeleton, default=json_default).encode()), dtype=torch.uint8
    )
    shards = [{k: v for k, v in part.items() if k != "error"} for part in shards]
    meta = {"format": FORMAT_VERSION, **header, "shards": shards}
    metadata = {"gossamer": json.dumps(meta, default=json_default)}
    with atomic_open(path, binary=True) as handle:
        write_safetensors(handle, tensors, metadata, checksum=True)


def _flatten(value: Any, name: str, tensors, rows, ranges) -> Any:
    """The value with each tensor moved to ``tensors[path]`` (or ``rows[path]``, for
    per-node rows, whose range goes in ``ranges``) and replaced by a marker."""
    if isinstance(value, NodeRows):
        rows[name] = value.tensor
        ranges[value.space] = [value.lo, value.lo + len(value.tensor)]
        return {_ROWS: name, "space": value.space, "total": value.total}
    if isinstance(value, torch.Tensor):
        tensors[name] = value
        return {_TENSOR: name}
    if isinstance(value, dict):
        return {
            str(k): _flatten(v, f"{name}.{k}" if name else str(k), tensors, rows, ranges)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_flatten(v, f"{name}.{i}", tensors, rows, ranges) for i, v in enumerate(value)]
    return value


class _Tensors:
    """The tensors of an open safetensors file, by name, read when asked for."""

    def __init__(self, handle):
        self.handle, self.names = handle, set(handle.keys())

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.handle.get_tensor(self.check(name))

    def slice(self, name: str):
        return self.handle.get_slice(self.check(name))

    def check(self, name: str) -> str:
        if name not in self.names:
            raise KeyError(name)
        return name


def _unflatten(value: Any, tensors: _Tensors, read_rows) -> Any:
    if isinstance(value, dict):
        if set(value) == {_TENSOR}:
            return tensors[value[_TENSOR]]
        if _ROWS in value:
            return read_rows(value[_ROWS], value["space"], int(value["total"]))
        return {k: _unflatten(v, tensors, read_rows) for k, v in value.items()}
    if isinstance(value, list):
        return [_unflatten(v, tensors, read_rows) for v in value]
    return value


def check(path: Path, config: Config) -> dict[str, Any]:
    """Check, before any work, that ``path`` is an intact checkpoint of ``config`` this
    version reads: its header, its checksum and those of its per-rank files, the size
    of its state and where its per-rank files are. Returns its metadata."""
    run_dir = path.parent
    if not path.is_file():
        raise CheckpointError(
            f"resume: '{run_dir}' has no {CHECKPOINT}: the run stopped before its first "
            f"checkpoint; start it again with: gossamer run {run_dir}/config.yaml --out {run_dir}"
        )
    header = read_header(path)
    try:
        meta = json.loads(header["__metadata__"]["gossamer"])
        if not isinstance(meta, dict):
            raise ValueError("its gossamer metadata is not a JSON object")
    except (ValueError, KeyError, TypeError, RecursionError) as error:
        raise CheckpointError(f"resume: '{path}' is not a readable checkpoint: {error}") from None
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"resume: '{path}' has checkpoint format {meta.get('format')}; "
            f"this gossamer reads {FORMAT_VERSION}"
        )
    if meta.get("config_hash") != config_hash(config):
        verify(path, header)  # the file's own hash damaged, or the config edited
        raise CheckpointError(
            f"resume: '{run_dir}/config.yaml' differs from the config the "
            "checkpoint was written with; restore it or start a new run"
        )
    _check_contents(path, header, meta, config)  # sizes first: before reading it all
    verify(path, header)
    for part in meta["shards"]:
        if part["file"] is not None:
            verify(run_dir / part["file"], read_header(run_dir / part["file"]), part[CHECKSUM])
    return meta


def _check_contents(path: Path, header: dict[str, Any], meta: dict[str, Any], config) -> None:
    """What a checkpoint of ``config`` holds: a round within the run, a state no larger
    than its rounds make it, per-rank files named in the run directory."""
    next_round = meta.get("next_round")
    if not isinstance(next_round, int) or not 0 < next_round < config.rounds:
        raise damaged(
            path,
            f"its next round is {next_round!r}; a run of {config.rounds} rounds stops at "
            f"1..{config.rounds - 1}",
        )
    entry = header.get(_STATE)
    try:
        size = int(entry["data_offsets"][1]) - int(entry["data_offsets"][0])
    except (TypeError, KeyError, IndexError, ValueError):
        raise damaged(path, f"it has no {_STATE}") from None
    limit = STATE_BASE + STATE_PER_ROUND * (config.rounds + 1)
    if size > limit:
        raise damaged(
            path,
            f"its {_STATE} is {size:,} bytes; a run of {config.rounds:,} rounds writes at "
            f"most {limit:,}",
        )
    shards = meta.get("shards")
    pattern = re.compile(
        rf"{re.escape(path.stem)}\.round\d+\.rank\d+-of-\d+{re.escape(path.suffix)}"
    )
    if not isinstance(shards, list) or not shards:
        raise damaged(path, f"its list of per-rank files is {shards!r}")
    for part in shards:
        ranges = part.get("ranges") if isinstance(part, dict) else None
        if not isinstance(ranges, dict) or not all(
            isinstance(r, list)
            and len(r) == 2
            and all(isinstance(v, int) for v in r)
            and 0 <= r[0] <= r[1]
            for r in ranges.values()
        ):
            raise damaged(path, f"a per-rank entry is malformed: {part!r}")
        name = part.get("file")
        if name is None:
            continue
        inside = isinstance(name, str) and pattern.fullmatch(name) is not None
        if inside:
            inside = (path.parent / name).resolve().parent == path.parent.resolve()
        if not inside or not isinstance(part.get(CHECKSUM), str):
            raise damaged(
                path,
                f"it names the per-rank file {name!r}, which is not a file "
                f"{path.stem}.round<t>.rank<r>-of-<R>{path.suffix} of '{path.parent}'",
            )


def load(
    path: Path,
    config: Config,
    ranges: dict[str, tuple[int, int]] | None = None,
    checked: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The nested state dict saved at ``path`` (tensors on the CPU) and its metadata,
    after :func:`check` (``checked``: the metadata a check of the unchanged file returned;
    checked here when None). Per-node tensors hold the rows ``ranges[space]`` (this
    rank's nodes and edges; all rows when None), read from whichever files hold them.
    A file that lacks a tensor or holds a malformed state raises CheckpointError naming
    what is missing."""
    meta = checked if checked is not None else check(path, config)
    try:
        with safe_open(path, framework="pt") as handle:  # memory-mapped: reads what is asked
            main = _Tensors(handle)
            try:  # its size was checked: bounded
                skeleton = loads(main[_STATE].numpy().tobytes())
            except ValueError as error:
                raise damaged(path, f"{_STATE}: {error}") from None
            shards = meta["shards"]

            def read_rows(name: str, space: str, total: int) -> torch.Tensor:
                lo, hi = (ranges or {}).get(space, (0, total))
                parts = []
                for part in shards:
                    a, b = part["ranges"][space]
                    if b <= lo or a >= hi:
                        continue
                    rows = slice(max(lo, a) - a, min(hi, b) - a)
                    if part["file"] is None:  # in the main file
                        parts.append(_rows(path, main, name, b - a)[rows])
                        continue
                    held = path.parent / part["file"]
                    with safe_open(held, framework="pt") as other:
                        parts.append(_rows(held, _Tensors(other), name, b - a)[rows])
                found = torch.cat(parts) if parts else torch.empty(0)
                if len(found) != hi - lo:
                    raise KeyError(f"rows {lo}..{hi - 1} of '{name}' ({len(found)} found)")
                return found

            return _unflatten(skeleton, main, read_rows), meta
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as error:
        raise CheckpointError(
            f"resume: '{path}' is not a readable checkpoint: {type(error).__name__}: {error}"
        ) from None


def _rows(path: Path, tensors: _Tensors, name: str, count: int):
    """The slice of a per-node (per-edge) tensor that must hold ``count`` rows."""
    rows = tensors.slice(name)
    shape = rows.get_shape()
    if not shape or shape[0] != count:
        raise damaged(
            path,
            f"its per-node tensor '{name}' has shape {tuple(shape)}; it should hold {count} rows",
        )
    return rows
