"""Checkpoints: the whole state of a run, in a file that cannot execute code on load.

One ``checkpoint.safetensors`` in the run directory, in the safetensors format
(https://huggingface.co/docs/safetensors: an 8-byte header length, a JSON header
naming each tensor's dtype, shape and byte range, then the raw bytes), holds

- the stacked parameters (one tensor per parameter block), momentum buffers, each
  node's data cursor and concept;
- the protocol's state (``Protocol.state_dict``), the ledger's per-node counters;
- the metrics rows so far and the ledger's per-round records, as UTF-8 JSON bytes in
  a ``records`` tensor (they grow with the run, so they stay out of the header);
- in the header's ``__metadata__`` (string values, as the format allows), a JSON
  document with the next round, the coordinator's counters, the prequential sums,
  the elapsed time and a hash of the resolved config.

Loading parses JSON and copies bytes, so it never executes code (unlike pickle).
The codec is written here (:func:`write_safetensors`, :func:`read_safetensors`)
rather than taken from the ``safetensors`` package: the format is small, and the
files read with ``safetensors.torch.load_file`` all the same.

Nothing else is needed to continue: every random draw in gossamer is a hash of
(seed, node, round, ...) rather than generator state, so a resumed run computes
exactly what an uninterrupted one would. The file is written to a temporary name
in the same directory, flushed and renamed into place: a crash leaves either the
previous checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gossamer.config import Config, ConfigError, dump_config
from gossamer.results import atomic_open, json_default

CHECKPOINT = "checkpoint.safetensors"
FORMAT_VERSION = 3

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
    handle, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Write ``tensors`` (and string ``metadata``) to a binary file in safetensors format."""
    header: dict[str, Any] = {"__metadata__": metadata} if metadata else {}
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
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the format pads the header to 8 bytes
    handle.write(struct.pack("<Q", len(encoded)))
    handle.write(encoded)
    for data in chunks:
        handle.write(memoryview(data))  # no copy


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file: (tensors on the CPU, metadata). Raises ValueError if malformed."""
    raw = path.read_bytes()
    if len(raw) < 8:
        raise ValueError("file is shorter than the 8-byte header length")
    (length,) = struct.unpack("<Q", raw[:8])
    if 8 + length > len(raw):
        raise ValueError(f"header length {length} runs past the end of the file")
    header = json.loads(raw[8 : 8 + length].decode())
    metadata = header.pop("__metadata__", None) or {}
    body = memoryview(raw)[8 + length :]
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


@dataclass
class LoopState:
    """Where the round loop stands: what a checkpoint must carry besides the tensors."""

    next_round: int = 0  # the 0-based round to run next
    rows: list[dict[str, Any]] = field(default_factory=list)  # metrics rows so far
    elapsed: float = 0.0  # wall seconds spent before this process


def config_hash(config: Config) -> str:
    return hashlib.sha256(dump_config(config).encode()).hexdigest()[:16]


def save(path: Path, sim, loop: LoopState, elapsed: float) -> None:
    """Write the run's state to ``path`` atomically."""
    population, ledger = sim.population, sim.ledger
    arrays: dict[str, torch.Tensor] = {}
    for i, block in enumerate(population.state.params.blocks):
        arrays[f"params.{i}"] = block
    if population.state.momentum is not None:
        for i, block in enumerate(population.state.momentum.blocks):
            arrays[f"momentum.{i}"] = block
    arrays["cursor"] = population.state.cursor
    arrays["concept"] = population.state.concept
    for key, value in sim.protocol.state_dict().items():
        arrays[f"protocol.{key}"] = value
    for key, value in ledger.node.items():
        arrays[f"ledger.{key}"] = torch.from_numpy(np.ascontiguousarray(value))
    # The records grow with the run: they go in the body (as UTF-8 JSON bytes), not in
    # the header, which readers such as the safetensors package cap at 100 MB.
    records = {"rows": loop.rows, "per_round": ledger.per_round}
    arrays["records"] = torch.frombuffer(
        bytearray(json.dumps(records, default=json_default).encode()), dtype=torch.uint8
    )
    meta = {
        "format": FORMAT_VERSION,
        "config_hash": config_hash(sim.config),
        "next_round": loop.next_round,
        "elapsed": elapsed,
        "coordinator": ledger.coordinator,
        "prequential": sim.prequential,
        "train_loss": sim.train_loss,
        "newest_concept": population.newest_concept,
    }
    with atomic_open(path, binary=True) as handle:
        write_safetensors(handle, arrays, {"gossamer": json.dumps(meta, default=json_default)})


def check(path: Path, config: Config) -> dict[str, Any]:
    """Check, before any work, that ``path`` is a checkpoint of ``config`` this version
    reads; returns its metadata. Reads the header only."""
    run_dir = path.parent
    if not path.is_file():
        raise ConfigError(
            f"resume: '{run_dir}' has no {CHECKPOINT}: the run stopped before its first "
            f"checkpoint; start it again with: gossamer run {run_dir}/config.yaml --out {run_dir}"
        )
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if 8 + length > os.fstat(handle.fileno()).st_size:
                raise ValueError(f"header length {length} runs past the end of the file")
            header = json.loads(handle.read(length).decode())
        meta = json.loads(header["__metadata__"]["gossamer"])
        if not isinstance(meta, dict):
            raise ValueError("its gossamer metadata is not a JSON object")
    except (OSError, ValueError, KeyError, TypeError, struct.error) as error:
        raise ConfigError(f"resume: '{path}' is not a readable checkpoint: {error}") from None
    if meta.get("format") != FORMAT_VERSION:
        raise ConfigError(
            f"resume: '{path}' has checkpoint format {meta.get('format')}; "
            f"this gossamer reads {FORMAT_VERSION}"
        )
    if meta.get("config_hash") != config_hash(config):
        raise ConfigError(
            f"resume: '{run_dir}/config.yaml' differs from the config the "
            "checkpoint was written with; restore it or start a new run"
        )
    return meta


def load(path: Path, sim) -> LoopState:
    """Restore a built simulation from ``path``; returns where the loop stands."""
    meta = check(path, sim.config)
    try:
        arrays, _ = read_safetensors(path)
        records = json.loads(arrays.pop("records").numpy().tobytes().decode())
        population, device = sim.population, sim.population.device
        for i, block in enumerate(population.state.params.blocks):
            block.copy_(arrays[f"params.{i}"])
        if population.state.momentum is not None:
            for i, block in enumerate(population.state.momentum.blocks):
                block.copy_(arrays[f"momentum.{i}"])
        population.state.cursor.copy_(arrays["cursor"])
        population.state.concept.copy_(arrays["concept"])
        population.newest_concept = meta["newest_concept"]
        protocol_state = {
            k.removeprefix("protocol."): v.to(device)
            for k, v in arrays.items()
            if k.startswith("protocol.")
        }
        sim.protocol.load_state_dict(protocol_state)
        for key in sim.ledger.node:
            sim.ledger.node[key][:] = arrays[f"ledger.{key}"].numpy()
        sim.ledger.per_round = records["per_round"]
        sim.ledger.coordinator.update(meta["coordinator"])
        sim.prequential[:] = meta["prequential"]
        train_loss = meta["train_loss"]
        sim.train_loss = train_loss if train_loss is not None else float("nan")
        return LoopState(meta["next_round"], records["rows"], meta["elapsed"])
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:
        raise ConfigError(
            f"resume: '{path}' is not a readable checkpoint: {type(error).__name__}: {error}"
        ) from None
