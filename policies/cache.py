"""A bounded cache for the serving path: lookups take no lock, so memory stays flat and hits stay cheap."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """At most `maxsize` entries; putting one more forgets the oldest one.

    Thread-safe: a lookup is one dict read (atomic in CPython); puts, rare once the cache is warm,
    take a lock. Entries that stay in use are put again after they are forgotten. An OrderedDict forgets its
    oldest entry in constant time (a dict's first key is found by scanning past the slots its deleted keys
    left, up to thousands per put between two resizes).
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        self.maxsize = maxsize
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()
        # the value of a key, or None: the dict's own lookup, called without a Python frame (a lookup in a method of
        # this class costs about as much again as the lookup)
        self.get: Callable[[K], V | None] = self._data.get

    def __len__(self) -> int:
        return len(self._data)

    def get_or_make(self, key: K, make: Callable[[], V], keep: bool = True) -> V:
        """The value of `key`; when there is none, `make()`'s, put unless `keep` is false."""
        value = self.get(key)
        if value is None:
            value = make()
            if keep:
                self.put(key, value)
        return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._data[key] = value
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)
