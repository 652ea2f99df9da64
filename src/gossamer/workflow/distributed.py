"""Running one experiment on several ranks with torch.distributed.

Two ways to start R ranks, with the same config, unchanged:

- ``torchrun --nproc-per-node R -m gossamer run CONFIG --out DIR`` (and ``--nnodes M
  --rdzv-backend c10d --rdzv-endpoint HOST:PORT`` on each of M machines): torchrun
  sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` and every rank joins the process
  group in :func:`process_group`;
- ``gossamer run CONFIG --ranks R`` (``gossamer.run(..., ranks=R)``) starts R worker
  processes on this machine itself, with torch's elastic launcher (what torchrun
  runs), and returns rank 0's result.

The backend is gloo on CPU and nccl on CUDA, where each rank takes the device
``cuda:LOCAL_RANK``. Every rank checks at start that it runs the same config (a
hash); rank 0 writes the run directory, every rank its rows of each checkpoint. A
rank that fails stops the others: those waiting on it in a collective fail after
``GOSSAMER_DIST_TIMEOUT`` seconds at the latest (default 300), and the launcher
names the rank that failed first; ``gossamer resume DIR`` continues from the last
checkpoint, on any number of ranks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from gossamer.config import Config, ConfigError, GossamerError, config_hash
from gossamer.sim.shard import Shard

TIMEOUT_ENV = "GOSSAMER_DIST_TIMEOUT"


class RankFailedError(GossamerError):
    """A rank of a multi-rank run failed; the others were stopped."""


def world_size() -> int:
    """The number of ranks torchrun (or our launcher) started; 1 otherwise."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def timeout_seconds() -> float:
    value = os.environ.get(TIMEOUT_ENV, "300")
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ConfigError(f"{TIMEOUT_ENV}: expected a positive number of seconds; got {value!r}")
    return seconds


@contextlib.contextmanager
def process_group(config: Config) -> Iterator[None]:
    """Join the process group of a multi-rank launch (``env://``), and leave it after.

    Nothing to do on one process, or when the caller has already joined one (tests use
    a ``FileStore``). On CUDA each rank takes ``cuda:LOCAL_RANK``.
    """
    if world_size() <= 1 or (dist.is_available() and dist.is_initialized()):
        yield
        return
    cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(
        "nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_seconds())
    )
    try:
        yield
    finally:
        dist.destroy_process_group()


def world(config: Config) -> Shard:
    """The ranks of this run, for agreeing before the simulation is built."""
    return Shard.current(config.nodes)


def agree(shard: Shard, work: Callable[[], Any]) -> Any:
    """Run ``work`` on every rank; if it raised on any, raise on all (the failing rank
    its own error, the others one naming the lowest failing rank), so no rank waits in
    a collective for ranks that gave up."""
    error: Exception | None = None
    value = None
    try:
        value = work()
    except Exception as raised:  # noqa: BLE001 - told to every rank, then raised again
        if not shard.distributed:
            raise
        error = raised
    said = None if error is None else f"{type(error).__name__}: {error}"
    failures = shard.all_objects(said)
    first = next(((r, f) for r, f in enumerate(failures) if f is not None), None)
    if first is None:
        return value
    if error is not None:
        raise error
    raise RankFailedError(f"rank {first[0]} failed ({first[1]}); this rank stopped too")


def check_same_config(shard: Shard, config: Config) -> None:
    """Refuse to start unless every rank runs the same config."""
    try:
        shard.check_same("config (hash of the resolved config)", config_hash(config))
    except ValueError as error:
        raise ConfigError(str(error)) from None


def any_rank(shard: Shard, flag: bool) -> bool:
    """Whether ``flag`` is set on any rank (a Ctrl-C seen by one stops all together)."""
    if not shard.distributed:
        return flag
    return shard.total(float(flag)) > 0


def check_ranks(ranks: Any, nodes: int) -> None:
    """A usable number of ranks for ``nodes`` nodes: each rank owns at least one."""
    if isinstance(ranks, bool) or not isinstance(ranks, int) or ranks < 1:
        raise ConfigError(f"ranks: expected a positive integer; got {ranks!r}")
    if ranks > nodes:
        raise ConfigError(
            f"ranks: {ranks} ranks for {nodes} nodes would leave a rank without nodes; "
            f"use at most {nodes}"
        )
    if ranks > 1 and world_size() > 1:
        raise ConfigError(
            f"ranks: {ranks} asked for inside a run torchrun started ({world_size()} ranks); "
            "torchrun starts the ranks: leave ranks at 1"
        )


def check_devices(ranks: int, config: Config) -> None:
    """On CUDA each rank takes one device: no more ranks than devices."""
    cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
    if cuda and ranks > torch.cuda.device_count():
        raise ConfigError(
            f"ranks: {ranks} ranks on CUDA need one device each; this machine has "
            f"{torch.cuda.device_count()} (set device: cpu, or fewer ranks)"
        )


def launch(ranks: int, entry: Callable[..., Any], *args: Any) -> Any:
    """Run ``entry(*args)`` on ``ranks`` worker processes of this machine (gloo or
    nccl over 127.0.0.1) and return rank 0's value; RankFailedError names a failed rank."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    _quiet_launcher()
    # as torchrun does, but sized to the machine: the ranks share its cores
    threads = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = threads or str(max(1, (os.cpu_count() or 1) // ranks))
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=ranks,
        run_id=uuid.uuid4().hex,
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",
        max_restarts=0,
        monitor_interval=0.1,
        start_method="spawn",
    )
    try:
        values = elastic_launch(config, _recorded)(entry, *args)
    except ChildFailedError as failed:
        raise RankFailedError(failure_message(failed)) from None
    except SignalException as signalled:  # Ctrl-C or a kill: the workers are stopped
        raise KeyboardInterrupt(str(signalled)) from None
    finally:
        if threads is None:
            os.environ.pop("OMP_NUM_THREADS", None)
    return values[0]


def _quiet_launcher() -> None:
    """The launcher's own log lines (rendezvous, tracebacks of failed workers) stay
    out of the user's output: a failure is reported as one RankFailedError."""
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    logging.getLogger("torch.distributed").setLevel(logging.CRITICAL + 1)


def failure_message(failed: Any) -> str:
    """One line naming the failed ranks and what each said: first those that died
    without a Python error (killed, or exited), which the others then failed on."""

    def said(failure: Any) -> str:
        message = failure.message
        if isinstance(message, dict):
            message = message.get("message", message)
        lines = str(message).strip().splitlines()
        if not lines or lines[-1].startswith("To enable traceback") or "Signal" in lines[-1]:
            return f"exit code {failure.exitcode}"
        return lines[-1]

    failures = sorted(
        failed.failures.items(),
        key=lambda item: (os.path.isfile(item[1].error_file), item[0]),
    )
    parts = [f"rank {rank_} failed ({said(failure)})" for rank_, failure in failures]
    return "; ".join(parts) + "; the other ranks were stopped"


def _recorded(entry: Callable[..., Any], *args: Any) -> Any:
    """A worker: run ``entry`` with its error recorded for the launcher."""
    from torch.distributed.elastic.multiprocessing.errors import record

    return record(entry)(*args)
