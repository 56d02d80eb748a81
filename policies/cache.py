"""A bounded cache for the serving path: lookups take no lock, so memory stays flat and hits stay cheap."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """At most `maxsize` entries; putting one more forgets the oldest one.

    Thread-safe: a lookup is one dict read (atomic in CPython); puts, rare once the cache is warm,
    take a lock. Entries that stay in use are put again after they are forgotten.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        self.maxsize = maxsize
        self._data: dict[K, V] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: K) -> V | None:
        return self._data.get(key)

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._data[key] = value
            while len(self._data) > self.maxsize:
                del self._data[next(iter(self._data))]
