"""Whether a checkpoint can be trusted: checksums, bounded headers, shallow JSON, and
the loaded tensors against the run's own.

A file's checksum (its metadata's ``checksum`` entry) is ``sha256:<hex>``, the
SHA-256 of its header without that entry, as canonical JSON (sorted keys, no spaces),
followed by the SHA-256 of each 16 MiB piece of its tensor bytes (a hash list: the
pieces are hashed in parallel). A flipped byte, a truncation or an edit anywhere
changes it. Headers are read only when at most :data:`MAX_HEADER` bytes, JSON only
when nested at most :data:`MAX_DEPTH` levels. Every refusal is a CheckpointError naming the file.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import struct
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from gossamer.config import CheckpointError
from gossamer.sim.shard import NodeRows

CHECKSUM = "checksum"  # the metadata entry holding a file's checksum
MAX_HEADER = 16 << 20  # bytes: the header names tensors and ranks (~200 bytes each)
MAX_DEPTH = 32  # nesting of the JSON in a checkpoint (the run state's is about 6)
PIECE = 16 << 20  # bytes: the pieces of the tensor bytes that a checksum hashes apart


def checksum_of(header: dict[str, Any], body: Sequence) -> str:
    """The checksum of a file with this ``header`` and these tensor bytes (buffers, in
    order): see the module's docstring."""
    canonical = {k: v for k, v in header.items() if k != "__metadata__"}
    if isinstance(header.get("__metadata__"), dict):
        meta = header["__metadata__"]
        canonical["__metadata__"] = {k: v for k, v in meta.items() if k != CHECKSUM}
    hasher = hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode())
    pieces, piece, room = [], [], PIECE  # each piece: views of its parts of the buffers
    for buffer in body:
        view = memoryview(buffer).cast("B")
        while len(view):
            part, view = view[:room], view[room:]
            piece.append(part)
            room -= len(part)
            if not room:
                pieces.append(piece)
                piece, room = [], PIECE
    pieces += [piece] if piece else []
    workers = min(8, os.cpu_count() or 1, len(pieces))
    with ThreadPoolExecutor(max(workers, 1)) as pool:  # hashlib lets go of the GIL
        for digest in pool.map(_sha256, pieces):
            hasher.update(digest)
    return f"sha256:{hasher.hexdigest()}"


def _sha256(parts: list[memoryview]) -> bytes:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part)
    return hasher.digest()


def damaged(path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"resume: '{path}' is not a readable checkpoint: {what}")


def read_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file, read only if small and shallow enough."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > MAX_HEADER:
                raise ValueError(
                    f"its header would be {length:,} bytes; a checkpoint's is at most "
                    f"{MAX_HEADER:,}"
                )
            if 8 + length > size:
                raise ValueError(f"header length {length} runs past the end of the file")
            header = loads(handle.read(length))
        if not isinstance(header, dict):
            raise ValueError("its header is not a JSON object")
    except (OSError, ValueError, struct.error) as error:
        raise CheckpointError(f"resume: '{path}' is not a readable checkpoint: {error}") from None
    return header


def loads(data: bytes) -> Any:
    """JSON, refused (ValueError) if nested deeper than MAX_DEPTH."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise ValueError(f"its JSON is nested more than {MAX_DEPTH} levels deep") from None
    level, depth = [value], 0
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            raise ValueError(f"its JSON is nested more than {MAX_DEPTH} levels deep")
        level = [
            item
            for value in level
            if isinstance(value, (dict, list))
            for item in (value.values() if isinstance(value, dict) else value)
        ]
    return value


def verify(path: Path, header: dict[str, Any], expected: str | None = None) -> None:
    """Refuse a file whose bytes do not match its checksum (or ``expected``)."""
    try:
        offsets = [entry["data_offsets"] for k, entry in header.items() if k != "__metadata__"]
        end = max((int(b) for _, b in offsets), default=0)
    except (TypeError, ValueError, KeyError) as error:
        raise damaged(path, f"a tensor's entry in its header is malformed ({error})") from None
    metadata = header.get("__metadata__")
    stored = metadata.get(CHECKSUM) if isinstance(metadata, dict) else None
    if not isinstance(stored, str):
        raise damaged(path, "it has no checksum")
    if expected is not None and stored != expected:
        raise damaged(path, f"it is not the file this checkpoint was written with ({stored})")
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            body = os.fstat(handle.fileno()).st_size - 8 - length
            if body != end:
                raise damaged(
                    path,
                    f"its header describes {end:,} bytes of tensors; it holds {body:,} "
                    f"({'truncated' if body < end else 'padded'})",
                )
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                view = memoryview(mapped)
                try:  # the pages are read by the hashing threads, not copied
                    digest = checksum_of(header, [view[8 + length :]])
                finally:
                    view.release()
    except OSError as error:
        raise CheckpointError(f"resume: '{path}' is not a readable checkpoint: {error}") from None
    if digest != stored:
        raise damaged(
            path,
            f"its bytes do not match its checksum (recorded {stored[:23]}..., computed "
            f"{digest[:23]}...): they changed after it was written",
        )


def check_state(path: Path, loaded: Any, expected: Any, strict: bool = True) -> None:
    """Refuse a state loaded from ``path`` whose tensors differ in dtype or shape from
    those of ``expected`` (the state dict of the run it is loaded into; per-node rows
    are compared as this rank's rows); with ``strict``, also one that lacks a tensor of
    ``expected`` or holds one it has not."""
    saved, wanted = tensor_specs(loaded), tensor_specs(expected)
    for name, tensor in wanted.items():
        found = saved.get(name)
        if found is None:
            if strict:
                raise damaged(path, f"it lacks the tensor '{name}' of this run's state")
            continue
        if found.dtype != tensor.dtype or found.shape != tensor.shape:
            raise damaged(
                path,
                f"its tensor '{name}' is {_spec(found)}; this run's state needs {_spec(tensor)}",
            )
    extra = [name for name in saved if name not in wanted]
    if strict and extra:
        raise damaged(path, f"it holds the tensor '{extra[0]}', which this run's state has not")


def _spec(tensor: torch.Tensor) -> str:
    return f"{str(tensor.dtype).removeprefix('torch.')} of shape {tuple(tensor.shape)}"


def tensor_specs(value: Any, name: str = "", out: dict | None = None) -> dict[str, torch.Tensor]:
    """Every tensor in a nested state, by the name a checkpoint gives it."""
    out = {} if out is None else out
    if isinstance(value, NodeRows):
        value = value.tensor
    if isinstance(value, torch.Tensor):
        out[name] = value
    elif isinstance(value, dict):
        for key, item in value.items():
            tensor_specs(item, f"{name}.{key}" if name else str(key), out)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            tensor_specs(item, f"{name}.{i}", out)
    return out
