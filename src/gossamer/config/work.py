"""Checks that a config can do work, from the config alone, before anything is built.

A generated dataset larger than this machine's memory, a node without a training
sample, or no node ever online is refused; a run shorter than the protocol's first
cycle is warned of. :meth:`gossamer.config.Config.check_consistency` calls
:func:`check_work` last.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any

from gossamer.config.errors import ConfigError
from gossamer.config.registry import DATASETS

Config = DataConfig = Any  # gossamer.config.schema's, which imports this module


def check_work(config: Config) -> None:
    """Refuse a run that can do no work, from the config alone and before anything is
    built: a generated dataset larger than this machine's memory, a node without a
    training sample, no node ever online. Warn when the run ends within the
    protocol's first cycle (``cycle_rounds``: it still trains, but never completes
    what a cycle does)."""
    data = config.data
    source = DATASETS.implementation(data.dataset)
    options = getattr(source, "options", None)  # the data sub-section it reads, if any
    section = getattr(data, options) if options else None
    size, memory = getattr(section, "generated_bytes", None), physical_memory()
    if config.engine.check_memory and size is not None and memory is not None and size > memory:
        given = ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in section)
        raise ConfigError(
            f"data.{options}: generating {data.dataset!r} takes about {size / 1e9:,.2f} GB, "
            f"more than this machine's memory ({memory / 1e9:,.2f} GB); use fewer samples "
            f"or smaller inputs (engine.check_memory: false skips this check); got {given}"
        )
    known = train_samples(data)
    if known is not None:
        train, how = known
        if config.nodes > train:
            raise ConfigError(
                f"nodes: expected at most the {train:,} training samples ({how}), as every "
                f"node needs one; got {config.nodes:,}"
            )
        shards = config.nodes * data.shards_per_node
        if data.partition == "shards" and shards > train:
            raise ConfigError(
                f"data.shards_per_node: nodes x shards_per_node ({shards:,}) exceeds the "
                f"{train:,} training samples ({how}); got {data.shards_per_node}"
            )
    _check_online(config)
    cycle = getattr(config.protocol, "cycle_rounds", 1)
    if cycle > config.rounds:
        warnings.warn(
            f"protocol: a cycle of protocol {config.protocol.name!r} takes {cycle:,} rounds "
            f"(cycle_rounds), more than the run's {config.rounds:,}: the run ends within its "
            "first cycle; use more rounds or a shorter cycle",
            UserWarning,
            stacklevel=2,
        )


def train_samples(data: DataConfig) -> tuple[int, str] | None:
    """The training samples the config implies, and where the number comes from; None
    when only the dataset's files tell. A dataset says so with a ``train_samples(data)``
    trait; a generated one configured by a sub-section with ``samples`` (``synthetic``,
    ``mnist1d``) holds those less the test set (``ceil(test_fraction x samples)``, as
    the stratified split)."""
    source = DATASETS.implementation(data.dataset)
    told = getattr(source, "train_samples", None)
    if callable(told):
        count = told(data)
        return None if count is None else (int(count), f"of {data.dataset!r}")
    options = getattr(source, "options", None)
    total = getattr(getattr(data, options), "samples", None) if options else None
    if not isinstance(total, int):
        return None
    train = total - math.ceil(total * data.test_fraction)
    return train, f"data.{options}.samples {total:,} less test_fraction {data.test_fraction}"


def _check_online(config: Config) -> None:
    """Refuse availability under which fewer than one node-round is expected online over
    the whole run: most likely no node is ever online, and the run does nothing."""
    availability, rounds = config.network.availability, config.rounds
    kind = availability.kind
    if kind == "bernoulli":
        share = availability.online
    elif kind == "markov":  # the chain's stationary share, which round 0 is drawn from
        share = availability.mean_online / (availability.mean_online + availability.mean_offline)
    elif kind == "daily":  # gossamer.sim.conditions' share, averaged over the first rounds
        low, high = availability.low, availability.high
        phases = [
            2 * math.pi * (t / availability.period - availability.peak)
            for t in range(min(rounds, 10_000))
        ]
        share = sum(low + (high - low) * (1 + math.cos(p)) / 2 for p in phases) / len(phases)
    else:  # always; trace: the file tells (gossamer.sim.conditions checks it when read)
        return
    expected = config.nodes * rounds * share
    if expected < 1:
        knob, given = {
            "bernoulli": ("online", f"online {availability.online}"),
            "markov": (
                "mean_online",
                f"mean_online {availability.mean_online}, mean_offline {availability.mean_offline}",
            ),
            "daily": ("low or high", f"low {availability.low}, high {availability.high}"),
        }[kind]
        raise ConfigError(
            f"network.availability: under kind {kind!r} the {config.nodes:,} nodes are "
            f"expected online for {expected:.3g} node-rounds in the run's {rounds:,} rounds "
            f"(fewer than one), so most likely no node is ever online and the run does no "
            f"work; raise {knob}; got {given}"
        )


def physical_memory() -> int | None:
    """This machine's memory in bytes (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
