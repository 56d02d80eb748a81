"""Storage for nextbest: the interfaces of `base` and `open_store`, which picks a backend."""

from typing import Any

from .base import (
    Appended,
    ConfigStore,
    Entry,
    EventLog,
    ModelStore,
    PublishConflictError,
    Store,
    StoredModel,
    StoreFullError,
    Stream,
)
from .lmdb import open_lmdb

__all__ = [
    "Appended",
    "ConfigStore",
    "Entry",
    "EventLog",
    "ModelStore",
    "PublishConflictError",
    "Store",
    "StoreFullError",
    "StoredModel",
    "Stream",
    "open_store",
]


def open_store(location: str, **options: Any) -> Store:
    """Open the store at `location`: a directory path opens LMDB there (see `open_lmdb` for options).

    Raises ValueError for a URL (`scheme://...`): no other backend exists yet.
    """
    scheme, sep, _ = location.partition("://")
    if sep:
        raise ValueError(f"unsupported store location {location!r}: no backend for {scheme}:// URLs yet")
    return open_lmdb(location, **options)
