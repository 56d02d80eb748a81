"""`nextbest bench --batch N`: decisions through RankBatch, next to single-call Rank in the same session.

The batch run: `BATCH_CALLERS` callers in a closed loop, each sending its next RankBatch of N of the workload's
requests (the single-call runs' payload, fresh event ids, no rewards) when the previous one answered; its
decisions/s are compared with those of a single-call Rank run without rewards at the bench's concurrency, just
before it. The campaign: `campaign` decisions in batches of N by the same callers, with the resident memory of the
server's process tree (all of it, and its anonymous part, which excludes the store's mapped file) sampled at the
start, every tenth of the way and at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from nextbest.server import wire
from nextbest.v1 import decision_pb2

RANK_BATCH_METHOD = "/nextbest.v1.DecisionService/RankBatch"
BATCH_CALLERS = 4  # caller k sends on connection k mod connections
BATCH_TARGET = 5.0  # RankBatch decisions/s over single-call Rank's, at least
MEMORY_GROWTH_TARGET = 1.2  # the campaign's anonymous memory at its end over at its first tenth, at most


def batch_bytes(rank: Callable[[int], bytes], first: int, size: int) -> bytes:
    """The serialized RankBatchRequest of requests first..first+size-1: each is field 1, length-delimited."""
    return b"".join(wire.field(1, rank(i)) for i in range(first, first + size))


def memory(root: int | None, tree: Callable[[int], set[int]]) -> dict[str, float] | None:
    """Resident and anonymous resident MB of process `root` and its descendants (Linux /proc; None elsewhere)."""
    if root is None or not os.path.isdir("/proc"):
        return None
    rss = anon = 0
    for pid in tree(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        rss += int(fields.get("VmRSS", "0 kB").split()[0])
        anon += int(fields.get("RssAnon", "0 kB").split()[0])
    return {"rss_mb": rss / 1024, "anon_mb": anon / 1024}


class _Count:
    def __init__(self) -> None:
        self.decisions = self.batches = self.item_errors = 0
        self.errors: dict[str, int] = {}

    def add(self, answer: bytes | None, code: grpc.StatusCode, size: int) -> None:
        if answer is None:
            self.errors[code.name] = self.errors.get(code.name, 0) + 1
            return
        self.batches += 1
        items = decision_pb2.RankBatchResponse.FromString(answer).items
        failed = sum(item.HasField("error") for item in items)
        self.item_errors += failed
        self.decisions += size - failed


@contextlib.asynccontextmanager
async def _calls(address: str, connections: int) -> AsyncIterator[list[Any]]:
    """RankBatch over `connections` TCP connections (with `serve --workers`, spread over the serving processes)."""
    options = [("grpc.use_local_subchannel_pool", 1)]  # one TCP connection per channel
    channels = [grpc.aio.insecure_channel(address, options=options) for _ in range(connections)]
    try:
        yield [channel.unary_unary(RANK_BATCH_METHOD) for channel in channels]
    finally:
        for channel in channels:
            await channel.close()


async def _send(call: Any, payload: bytes, timeout: float) -> tuple[bytes | None, grpc.StatusCode]:
    try:
        return await call(payload, timeout=timeout), grpc.StatusCode.OK
    except grpc.aio.AioRpcError as e:
        return None, e.code()


async def batch_run(
    address: str,
    rank: Callable[[int], bytes],
    size: int,
    *,
    warmup: float,
    duration: float,
    timeout: float,
    connections: int,
    now: Callable[[], float],
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """RankBatch in a closed loop for warm-up + duration; the decisions answered in the measured window per second."""
    begin = now()
    t0, t1 = begin + warmup, begin + warmup + duration
    measured = _Count()
    async with _calls(address, connections) as calls:

        async def caller(k: int) -> None:
            call = calls[k % connections]
            first = k * size
            while now() < t1:
                answer, code = await _send(call, batch_bytes(rank, first, size), timeout)
                if t0 <= now() <= t1:
                    measured.add(answer, code, size)
                first += BATCH_CALLERS * size

        async def report() -> None:
            while now() < t1:
                await asyncio.sleep(1.0)
                progress(f"rank-batch x{size}: {measured.decisions:,} decisions measured")

        reporter = asyncio.create_task(report())
        try:
            await asyncio.gather(*(caller(k) for k in range(BATCH_CALLERS)))
        finally:
            reporter.cancel()
    return {
        "batch": size,
        "callers": BATCH_CALLERS,
        "duration": duration,
        "batches": measured.batches,
        "decisions": measured.decisions,
        "decisions_per_second": measured.decisions / duration,
        "item_errors": measured.item_errors,
        "errors": measured.errors,
    }


async def campaign(
    address: str,
    rank: Callable[[int], bytes],
    size: int,
    total: int,
    *,
    timeout: float,
    connections: int,
    now: Callable[[], float],
    server_memory: Callable[[], dict[str, float] | None],
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """`total` decisions in batches of `size`, the server's memory sampled every tenth of the way."""
    count = _Count()
    batches = -(-total // size)
    samples = [{"decisions": 0, **(server_memory() or {})}]
    tenth = max(1, batches // 10)
    start = now()
    async with _calls(address, connections) as calls:

        async def caller(k: int) -> None:
            call = calls[k % connections]
            for b in range(k, batches, BATCH_CALLERS):
                n = min(size, total - b * size)
                answer, code = await _send(call, batch_bytes(rank, b * size, n), timeout)
                count.add(answer, code, n)
                if (b + 1) % tenth == 0:
                    samples.append({"decisions": count.decisions, **(server_memory() or {})})
                    progress(f"campaign: {count.decisions:,}/{total:,} decisions")

        await asyncio.gather(*(caller(k) for k in range(BATCH_CALLERS)))
    seconds = now() - start
    samples.append({"decisions": count.decisions, **(server_memory() or {})})
    growth = None
    if "anon_mb" in samples[0] and len(samples) > 2:
        growth = samples[-1]["anon_mb"] / samples[1]["anon_mb"]
    return {
        "decisions": count.decisions,
        "item_errors": count.item_errors,
        "errors": count.errors,
        "seconds": seconds,
        "decisions_per_second": count.decisions / seconds,
        "memory": samples,
        "anon_growth": growth,
        "target": MEMORY_GROWTH_TARGET,
        "met": growth is not None and growth <= MEMORY_GROWTH_TARGET,
    }
