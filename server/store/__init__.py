"""Storage for nextbest: the interfaces of `base` and `open_store`, which picks a backend."""

from typing import Any

from .base import (
    Appended,
    ConfigStore,
    Entry,
    EventLog,
    Leases,
    ModelStore,
    PublishConflictError,
    Store,
    StoredModel,
    StoreFullError,
    StoreUnavailableError,
    Stream,
    SubjectChanges,
    SubjectStore,
    cursor_name,
    process_holder,
)

__all__ = [
    "Appended",
    "ConfigStore",
    "Entry",
    "EventLog",
    "Leases",
    "ModelStore",
    "PublishConflictError",
    "Store",
    "StoreFullError",
    "StoreUnavailableError",
    "StoredModel",
    "Stream",
    "SubjectChanges",
    "SubjectStore",
    "cursor_name",
    "is_remote",
    "open_store",
    "process_holder",
]


def is_remote(location: str) -> bool:
    """Whether `location` names a server (a `scheme://` URL) rather than an LMDB directory."""
    return "://" in location


def open_store(location: str, **options: Any) -> Store:
    """Open the store at `location`: a directory path opens LMDB there (see `open_lmdb` for options);
    `nats://host:port[,host:port...]` connects to NATS JetStream (see `server.store.nats.open_nats`).

    Raises ValueError for a URL of another scheme.
    """
    scheme, sep, _ = location.partition("://")
    if sep and scheme == "nats":
        from .nats import open_nats  # nats-py is imported only by those who use it

        store = open_nats(location, **options)
    elif sep:
        raise ValueError(f"unsupported store location {location!r}: no backend for {scheme}:// URLs")
    else:
        from .lmdb import open_lmdb

        store = open_lmdb(location, **options)
    store.location, store.options = location, options
    return store
