"""The storage interfaces on NATS JetStream, for several serving and training processes over one cluster.

Names (`<p>` is the `prefix` option; `<l>` the loop name's UTF-8 bytes in hex; `<kind>` a Stream's value):

    stream <p>_<kind>_<l>   subjects <p>.<kind>.<l>.k.<sha256 of key>, <p>.<kind>.<l>.u (unkeyed)
    KV     <p>_cursors      "c" + hex(cursor name) -> data
    KV     <p>_live         <l> -> live version, highest version ever published (>QQ)
    KV     <p>_loops        "c" + hex(loop name) -> LoopConfig bytes
    KV     <p>_leases       "c" + hex(lease name) -> {"holder", "expires"} (JSON)
    KV     <p>_subjects     "c" + hex(subject id) -> SubjectHistory; "policy" -> ContactPolicy
    object <p>_models       <l>/<version> -> model header + spec + state + model bytes

One module a layer: `_conn` the connection, its retries and errors; `events` the event log; `kv` the KV
buckets (key encoding, local copies, loop configs, leases); `models` the model store and live pointer.

Every method runs its requests on the Store's one asyncio loop (a daemon thread) and blocks until
they are done, retrying transient failures (timeouts, no responders, leader elections) until
`timeout` seconds have passed.
"""

from __future__ import annotations

import re

from nats.aio.client import Client as NatsClient
from nats.js import api

from ..base import Store
from ._conn import CLOSE_SECONDS, REQUEST_TIMEOUT, Conn, Runner, connect, log, server_urls, used_bytes
from .events import NatsEventLog, Publisher, stream_name
from .kv import Mirror, NatsConfigStore, NatsLeases, NatsSubjectStore, open_bucket
from .models import NatsModelStore, open_object_store

__all__ = [
    "DEFAULT_TIMEOUT",
    "NatsConfigStore",
    "NatsEventLog",
    "NatsLeases",
    "NatsModelStore",
    "NatsSubjectStore",
    "open_nats",
    "stream_name",
]

DEFAULT_TIMEOUT = 10.0
_PREFIX = re.compile(r"[A-Za-z0-9-]+")


def open_nats(
    location: str,
    *,
    replicas: int = 1,
    prefix: str = "nextbest",
    timeout: float = DEFAULT_TIMEOUT,
    stream_max_bytes: int = -1,
) -> Store:
    """Connect to the JetStream servers of `location` (`nats://host:port[,host:port...]`) and open the store.

    `replicas`: the replication factor of the streams and buckets this store creates (existing ones
    keep theirs); `prefix` ([A-Za-z0-9-]+) names them all, so deployments can share servers; `timeout`:
    how long an operation keeps retrying transient failures (also the connect timeout);
    `stream_max_bytes`: the most each event log stream may hold (-1: no limit but the servers'), beyond
    which appends raise StoreFullError. The client reconnects to any of the servers (and those the
    cluster announces) for as long as the store is open.
    """
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(f"invalid NATS store prefix {prefix!r}: letters, digits and '-' only")
    runner = Runner(f"nats-store {prefix}")
    try:
        return runner.run(
            _open(runner, server_urls(location), replicas, prefix, timeout, stream_max_bytes), timeout * 3
        )
    except BaseException:
        runner.stop()
        raise


async def _open(
    runner: Runner, servers: list[str], replicas: int, prefix: str, timeout: float, stream_max_bytes: int
) -> Store:
    nc = await connect(servers, timeout)
    try:
        return await _open_on(runner, nc, replicas, prefix, timeout, stream_max_bytes)
    except BaseException:
        await nc.close()
        raise


async def _open_on(
    runner: Runner, nc: NatsClient, replicas: int, prefix: str, timeout: float, stream_max_bytes: int
) -> Store:
    js = nc.jetstream(timeout=REQUEST_TIMEOUT)
    conn = Conn(runner, nc, js, prefix, replicas, timeout, stream_max_bytes)
    cursors, live, loops, leases, subjects = [
        await conn.retrying(lambda n=n: open_bucket(conn, n))
        for n in ("cursors", "live", "loops", "leases", "subjects")
    ]
    config = api.ObjectStoreConfig(bucket=f"{prefix}_models", storage=api.StorageType.FILE, replicas=replicas)
    objects = await conn.retrying(lambda: open_object_store(js, config))
    publisher = Publisher(nc)
    await publisher.start()
    mirrors = Mirror(nc, live), Mirror(nc, loops)
    for mirror in mirrors:
        await mirror.start()

    async def shutdown() -> None:
        for mirror in mirrors:
            await mirror.stop()
        await nc.close()

    def close() -> None:
        if runner.closed:
            return
        try:
            runner.run(shutdown(), CLOSE_SECONDS)
        except Exception as e:  # every write was acknowledged before; only the goodbye is lost
            log.warning("NATS store: could not close the connection cleanly (%s: %s); dropped it", type(e).__name__, e)
        finally:
            runner.stop()

    subject_store = NatsSubjectStore(conn, subjects)
    return Store(
        NatsEventLog(conn, publisher, cursors, subject_store),
        NatsModelStore(conn, objects, live, mirrors[0]),
        NatsConfigStore(conn, loops, mirrors[1]),
        NatsLeases(conn, leases),
        close,
        lambda: conn.call(lambda: used_bytes(conn)),
        subject_store,
    )
