"""Values built once and shared by the runs of one process (datasets, graphs)."""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any


class SharedCache:
    """The last few values built, by key: runs of one process that use the same data
    or graph (the variants of a comparison, the points of a sweep) build them once.

    Small on purpose (a dataset can be hundreds of MB); sweeps run seed by seed so
    that consecutive runs share their keys.
    """

    def __init__(self, size: int):
        self.size, self.hits, self.misses = size, 0, 0
        self.values: collections.OrderedDict[str, Any] = collections.OrderedDict()

    def get(self, key: str, build: Callable[[], Any]) -> Any:
        if key in self.values:
            self.hits += 1
            self.values.move_to_end(key)
            return self.values[key]
        self.misses += 1
        value = build()
        self.values[key] = value
        if len(self.values) > self.size:
            self.values.popitem(last=False)
        return value

    def clear(self) -> None:
        self.values.clear()
        self.hits = self.misses = 0


SHARED_DATASETS = SharedCache(2)
SHARED_TOPOLOGIES = SharedCache(4)
