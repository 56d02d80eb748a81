"""Helpers for testing code that talks to nextbest: a real server on a free loopback port.

from server.testing import running_server

def test_my_integration(tmp_path):
    with running_server(tmp_path / "store") as (server, client):
        response = client.rank([action("a"), action("b")])

`make_certificates` writes a throwaway CA and certificates for TLS tests.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
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
def running_server(
    store_dir: str | Path,
    *,
    store_options: Mapping[str, Any] | None = None,
    client_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> Iterator[tuple[NextbestServer, Client]]:
    """A started NextbestServer on 127.0.0.1 (free port) over an LMDB store, and a client to it.

    `options` go to NextbestServer (limits=, clock=, train=, api_keys=, tls=, ...), `store_options` to
    `open_store` (map_size=), `client_options` to Client (api_key=, ca_cert=, ...). Stops gracefully on exit.
    """
    server = NextbestServer(open_store(str(store_dir), **(store_options or {})), "127.0.0.1", 0, **options).start()
    client = Client(server.address, **(client_options or {}))
    try:
        client.wait_ready()
        yield server, client
    finally:
        client.close()
        server.stop(grace=2.0)


@dataclass(frozen=True)
class Certificates:
    """PEM files: a CA, a server certificate it signed (for localhost and 127.0.0.1), a client certificate it
    signed, and their keys."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def make_certificates(directory: str | Path) -> Certificates:
    """A fresh CA and certificates (EC P-256, valid one day) in `directory`, made with the `openssl` command."""
    if shutil.which("openssl") is None:
        raise RuntimeError("make_certificates needs the openssl command")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", d / "ca.key", "-out", d / "ca.pem", "-days", "1", "-subj", "/CN=test CA")
    for name, extensions in (
        ("server", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
        ("client", "extendedKeyUsage=clientAuth"),
    ):
        (d / f"{name}.ext").write_text(extensions + "\n")
        _openssl("req", *ec, "-keyout", d / f"{name}.key", "-out", d / f"{name}.csr", "-subj", f"/CN={name}")
        _openssl(
            "x509", "-req", "-in", d / f"{name}.csr", "-CA", d / "ca.pem", "-CAkey", d / "ca.key",
            "-CAcreateserial", "-days", "1", "-extfile", d / f"{name}.ext", "-out", d / f"{name}.pem",
        )  # fmt: skip
    return Certificates(d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key")


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux /proc), e.g. the serving workers of `nextbest serve`."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, ValueError):
            pass
    return out
