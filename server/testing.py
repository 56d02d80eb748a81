"""Helpers for testing code that talks to nextbest: a real server on a free loopback port.

from server.testing import running_server

def test_my_integration(tmp_path):
    with running_server(tmp_path / "store") as (server, client):
        response = client.rank([action("a"), action("b")])
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from server.app import NextbestServer
from server.client import Client
from server.store import open_store


class FakeClock:
    """A clock that moves only when told to; pass it as `clock=` to control reward windows."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._now += seconds
            return self._now


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.01) -> Any:
    """Poll `predicate` until it returns a truthy value (returned); AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


@contextmanager
def running_server(store_dir: str | Path, **options: Any) -> Iterator[tuple[NextbestServer, Client]]:
    """A started NextbestServer on 127.0.0.1 (free port) over an LMDB store, and a client to it.

    `options` go to NextbestServer (limits=, clock=, train=, ...). Stops gracefully on exit.
    """
    server = NextbestServer(open_store(str(store_dir)), "127.0.0.1", 0, **options).start()
    client = Client(server.address)
    try:
        client.wait_ready()
        yield server, client
    finally:
        client.close()
        server.stop(grace=2.0)
