"""`nextbest bench`: load on nextbest's Rank path, measured against a bare gRPC echo in the same run.

What it sends. Call i is a RankRequest of a realistic size (`rank_request`: 3 context namespaces
of 20 features, 10 actions of 5 features on 6 channels; about 2.3 KB) with a unique event id and,
for a seeded `reward_fraction` of the calls, a Reward of 1.0 for that event once Rank answered.
The requests are serialized up front (64 feature variants) and sent as bytes, so the client spends
its time in gRPC, not in protobuf. The echo service (`nextbest.server.bench.echo`) gets the very same bytes,
Rank's and Reward's, through the same client at the same concurrency or rate: the Rank/echo ratio
is what nextbest costs over a bare Python gRPC server on this machine.

How it loads. Closed loop: `concurrency` callers, each sending its next call when the previous one
answered. Open loop: arrivals at `rate` calls/s (Poisson or evenly spaced), each Rank's latency
counted from its *scheduled* time, so that a slow server is not hidden by the load generator waiting
for it ("coordinated omission"). A run is `warmup` seconds unmeasured, then `duration` seconds
whose scheduled calls are measured. For each load the echo runs first, then nextbest; after every
nextbest run the bench waits until its joiner and learner have caught up (at most
`SETTLE_SECONDS`), so one run's learning does not slow the next run down. `sweep`: closed loop at
each of `sweep_concurrency`, then open loop at half of the best Rank throughput.

Learning is on: the bench creates the loop `loop` (kept when it exists) with a reward window of
`REWARD_WAIT_SECONDS` and a publish interval of `PUBLISH_SECONDS`.

Bounds. Every call has a deadline (`timeout`); closed-loop callers stop at the end of the window;
the open-loop scheduler sends at most the arrivals of warmup + duration, at most `max_inflight` at
once, and drops what it could not send by the end of the window + `timeout` (counted as
`unsent`). A run lasts at most warmup + duration + 2 x timeout, the settling after it at most
`SETTLE_SECONDS`; a sweep is 2 x (levels + 1) runs. RewardStream: `reward_stream` rewards in one
stream, then the same bytes to the echo's Drain stream, each with a deadline of `STREAM_DEADLINE`.
Traffic goes only to the services the bench starts on 127.0.0.1, unless `target` names a nextbest.

The report (`bench` returns it; `--json` writes it). Latencies are in ms; throughputs in calls/s;
CPU in cores (client: this process; server: the loaded service's process tree; other: the rest):

    {"version": 1, "machine": {"cpus", "platform", "python", "grpcio"}, "plan": {<Plan fields>},
     "server": {"address", "spawned", "threads", "workers", "connections", "echo_threads"},
     "loop": {"name", "policy", "reward_wait_seconds", "publish_interval_seconds"},
     "payload": {"rank_bytes", "reward_bytes", "context_namespaces", "context_features", "actions",
                 "action_features", "channels"},
     "runs": [{"service": "echo" | "rank", "label", "mode": "closed" | "open", "concurrency", "rate",
               "arrival", "duration", "calls", "throughput", "errors": {"<status code>": n},
               "latency_ms": {"p50", "p90", "p99", "p999", "max", "mean"},
               "reward": {"calls", "throughput", "errors", "latency_ms"},
               "cpu": {"client", "server", "machine", "other"},
               "timeline": [{"t", "calls", "p50_ms", "p99_ms"}],
               "scheduled", "unsent" (open loop),
               "learner": {"decisions", "model_version", "learned", "lag_events_at_end",
                           "caught_up_seconds", "caught_up"} (rank)}],
     "comparisons": [{"mode", "concurrency", "rate", "throughput_ratio", "p50_ratio", "p99_ratio"}],
     "sweep": {"max_throughput", "max_at_concurrency", "throughput_ratio_at_max", "ratio_concurrency",
               "throughput_ratio", "half_max_rate", "open_loop_p99_ms", "open_loop_p999_ms", "targets",
               "met"} (sweep),
     "reward_stream": {"rewards", "seconds", "rewards_per_second", "accepted", "duplicates",
                       "echo_per_second", "ratio", "target", "met"} (reward_stream),
     "subject_runs": [<runs without ("rank") and with ("rank+subj") subject ids, in turn; at the Rank run's own
                      load, that run is the first without and not repeated here>] and
     "subjects": [{"label" (the runs' load), "after" (the Rank run's), "subjects", "rounds": [{"cpu_ms_per_rank",
                   "cpu_ms_per_rank_with_subject", "cpu_ratio"}], "cpu_ms_per_rank", "cpu_ms_per_rank_with_subject",
                   "cpu_ratio", "throughput", "throughput_with_subject" (medians), "target", "met"}] (subjects),
     "batch": {"single": {"concurrency", "throughput", "errors", "latency_ms"},
               "batched": {"batch", "callers", "duration", "batches", "decisions", "decisions_per_second",
                           "item_errors", "errors"}, "ratio", "target", "met",
               "campaign": {"decisions", "item_errors", "errors", "seconds", "decisions_per_second",
                            "memory": [{"decisions", "rss_mb", "anon_mb"}], "anon_growth", "target", "met"}}
               (batch; see `nextbest.server.bench.batch`)}

With `subjects`, each Rank run is followed (once the learner caught up) by runs without and with subject ids
from a pool of `subjects` under `BENCH_CONTACT_POLICY`, in turn, until `subject_rounds` pairs are measured;
their server CPU per Rank (the Rewards after it and its learning included) is compared pair by pair, and the
median ratio is reported. Both sides serve the same calls/s: an open loop at `subject_rate`, or by default at
SUBJECT_RATE_SHARE of the closed-loop Rank run's throughput. The server spends CPU every second whatever the
load (publishing and loading models, the trainer's polling), so a side served at a lower rate carries more of it
per call: in a closed loop the side with subject ids, a little slower, would serve fewer calls and pay for that
too. `subject_rate` 0 keeps the Rank run's own load (a closed loop: each side at its own throughput).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from nextbest.server.bench import batch, echo, httpload
from nextbest.server.commands.bench import SUBJECT_RATE_SHARE, Plan
from nextbest.v1 import admin_pb2, admin_pb2_grpc, decision_pb2, decision_pb2_grpc, types_pb2

RANK_METHOD = "/nextbest.v1.DecisionService/Rank"
REWARD_METHOD = "/nextbest.v1.DecisionService/Reward"
REWARD_STREAM_METHOD = "/nextbest.v1.DecisionService/RewardStream"
REWARD_WAIT_SECONDS = 0.5
PUBLISH_SECONDS = 1.0
SETTLE_SECONDS = 60.0
START_SECONDS = 60.0
STREAM_DEADLINE = 600.0
BUSY_MACHINE = 0.25  # cores used by other processes during a run above which the summary warns
VARIANTS = 64
TARGETS = {
    "p99_ms_at_half_max": 10.0,
    "p999_ms_at_half_max": 25.0,
    "throughput_ratio": 0.45,  # Rank/echo at RATIO_CONCURRENCY callers
    "reward_stream_per_second": 10_000.0,
}
RATIO_CONCURRENCY = 16  # the callers at which single-call Rank is compared with the echo (the best run's otherwise)

clock = time.perf_counter

# The contact policy of the runs with subject ids: rules of every kind, none on every channel (the bench's actions
# all have one, so a rule on all of them would leave some decisions no candidate). `user.utc_offset` is not in the
# payload: the quiet hours are skipped, as for callers that do not send it.
BENCH_CONTACT_POLICY = {
    "rules": [
        {"name": "one-sms", "channels": ["sms"], "max": 1, "per_seconds": 604800},
        {"name": "call-gap", "channels": ["call"], "min_gap_seconds": 86400},
        {"name": "night", "channels": ["push", "sms"], "quiet_hours": [21, 8], "utc_offset_feature": "user.utc_offset"},
        {"name": "fatigue", "channels": ["email"], "after_ignored": 3, "pause_seconds": 2592000},
        {"name": "bought", "actions": ["inapp-upsell"], "after_reward_at_least": 1.0, "pause_seconds": 7776000},
    ]
}
SUBJECT_CPU_TARGET = 1.2  # server CPU per Rank with a subject id over without, at most

# The payload: context namespaces as (numeric features, categorical features with their values, token
# vocabulary); 8 numeric + 6 categorical + 6 tokens = 20 features each.
_CONTEXT: dict[str, tuple[tuple[str, ...], dict[str, tuple[str, ...]], tuple[str, ...]]] = {
    "user": (
        ("age", "tenure_days", "visits_30d", "orders_90d", "avg_order_value", "days_since_visit",
         "email_open_rate", "push_open_rate"),
        {"segment": ("student", "family", "pro", "senior", "new"), "country": ("fr", "de", "us", "br", "jp"),
         "plan": ("free", "plus", "premium"), "device": ("ios", "android", "desktop"),
         "language": ("en", "fr", "de", "pt", "ja"), "acquisition": ("seo", "ads", "referral", "social")},
        ("sports", "music", "travel", "cooking", "gaming", "fashion", "books", "garden", "movies", "tech"),
    ),
    "session": (
        ("hour", "pages_viewed", "seconds_on_site", "cart_items", "cart_value", "scroll_depth",
         "searches", "discount_seen"),
        {"weekday": ("mon", "tue", "wed", "thu", "fri", "sat", "sun"),
         "referrer": ("google", "newsletter", "direct", "facebook"), "landing": ("home", "product", "sale", "blog"),
         "os": ("ios", "android", "windows", "macos"), "browser": ("safari", "chrome", "firefox"),
         "campaign": ("spring", "summer", "none")},
        ("shoes", "running", "red", "sale", "jacket", "kids", "gift", "cheap", "wool", "waterproof"),
    ),
    "history": (
        ("emails_7d", "email_clicks_7d", "pushes_7d", "push_clicks_7d", "sms_7d", "banner_views_7d",
         "purchases_30d", "refunds_90d"),
        {"last_channel": ("email", "push", "sms", "web", "in-app", "call"),
         "last_action": ("welcome", "discount", "tip", "reminder", "survey"),
         "last_category": ("shoes", "outdoor", "kids", "home"), "tier": ("bronze", "silver", "gold"),
         "payment": ("card", "paypal", "invoice"), "consent": ("all", "email-only", "none")},
        ("shoes", "outdoor", "kids", "home", "beauty", "toys", "sports", "garden", "books", "music"),
    ),
}  # fmt: skip
_TOKENS_PER_NAMESPACE = 6

# The candidate actions: (id, channel, kind, category, topic); each gets 2 numeric features too.
_ACTIONS = (
    ("email-welcome", "email", "welcome", "all", "brand"),
    ("email-discount", "email", "discount", "shoes", "sale"),
    ("push-tip", "push", "tip", "outdoor", "howto"),
    ("push-reminder", "push", "reminder", "cart", "cart"),
    ("sms-coupon", "sms", "coupon", "all", "sale"),
    ("web-banner-sale", "web", "banner", "shoes", "sale"),
    ("web-banner-new", "web", "banner", "kids", "new"),
    ("inapp-survey", "in-app", "survey", "all", "feedback"),
    ("inapp-upsell", "in-app", "upsell", "premium", "plan"),
    ("call-retention", "call", "retention", "premium", "churn"),
)


def rank_request(rng: random.Random, loop: str = "") -> decision_pb2.RankRequest:
    """A realistic RankRequest with features drawn from `rng` (no event id).

    Context: namespaces `user`, `session` and `history` of 20 features each (8 numeric,
    6 categorical, 6 tokens). Actions: the 10 of `_ACTIONS` on 6 channels (email, push, sms,
    web, in-app, call), each with namespace `offer` of 5 features (`discount`, `margin`,
    `kind`, `category`, a topic token). About 2.4 KB serialized.
    """
    request = decision_pb2.RankRequest(loop=loop)
    for name, (numeric, categorical, vocabulary) in _CONTEXT.items():
        features = request.context[name]
        for feature in numeric:
            features.numeric[feature] = round(rng.uniform(0, 100), 2)
        for feature, values in categorical.items():
            features.categorical[feature] = rng.choice(values)
        features.tokens.extend(rng.sample(vocabulary, _TOKENS_PER_NAMESPACE))
    for action_id, channel, kind, category, topic in _ACTIONS:
        offer = types_pb2.Features(
            numeric={"discount": rng.choice((0.0, 5.0, 10.0, 20.0)), "margin": round(rng.uniform(0, 1), 3)},
            categorical={"kind": kind, "category": category},
            tokens=[topic],
        )
        request.actions.add(id=action_id, channel=channel, features={"offer": offer})
    return request


def _count(features: types_pb2.Features) -> int:
    return len(features.numeric) + len(features.categorical) + len(features.tokens)


def payload_shape(request: decision_pb2.RankRequest) -> dict[str, int]:
    """Namespaces and features of a RankRequest's context, its actions, their features and channels."""
    return {
        "context_namespaces": len(request.context),
        "context_features": sum(_count(f) for f in request.context.values()),
        "actions": len(request.actions),
        "action_features": sum(_count(f) for a in request.actions for f in a.features.values()),
        "channels": len({a.channel for a in request.actions}),
    }


class Workload:
    """What the callers send: call i is Rank(variant i mod 64, event id `<tag>-i`, with `subjects` the subject id
    `subject-<i mod subjects>`) as bytes, then for a seeded `reward_fraction` of the calls a Reward of 1.0 for
    that event. Every run gets a fresh tag."""

    def __init__(self, loop: str, reward_fraction: float, seed: int, subjects: int = 0) -> None:
        rng = random.Random(seed)
        self.loop = loop
        self.subjects = subjects
        self.reward_fraction = reward_fraction
        self.seed = seed
        self._variants = [rank_request(rng, loop).SerializeToString() for _ in range(VARIANTS)]
        self._json_variants = [httpload.rank_json(variant) for variant in self._variants]
        self.tag = ""
        self.new_run()
        self.rank_bytes = len(self.call(0)[0])
        self.reward_bytes = len(self._reward(self._event_id(0)))

    def new_run(self) -> None:
        self.tag = uuid.uuid4().hex[:12]
        self._rewarded = random.Random(f"{self.seed}-{self.tag}")

    def _event_id(self, i: int) -> str:
        return f"{self.tag}-{i:010d}"

    def _reward(self, event_id: str) -> bytes:
        return decision_pb2.RewardRequest(loop=self.loop, event_id=event_id, value=1.0).SerializeToString()

    def rank(self, i: int) -> bytes:
        """The serialized RankRequest of call i."""
        # Serialized messages concatenate as a merge: the variant's bytes plus the event id field.
        tail = decision_pb2.RankRequest(
            event_id=self._event_id(i), subject_id=f"subject-{i % self.subjects}" if self.subjects else ""
        )
        return self._variants[i % VARIANTS] + tail.SerializeToString()

    def call(self, i: int) -> tuple[bytes, bytes | None]:
        """The serialized RankRequest of call i and its RewardRequest (None when not rewarded)."""
        rewarded = self._rewarded.random() < self.reward_fraction
        return self.rank(i), self._reward(self._event_id(i)) if rewarded else None

    def http_call(self, i: int) -> tuple[tuple[str, bytes], tuple[str, bytes] | None]:
        """Call i over the JSON API: the (path, JSON body) of its Rank and of its Reward (None: not rewarded)."""
        event_id = self._event_id(i)
        rank = (f"/v1/loops/{self.loop}:rank", httpload.with_event_id(self._json_variants[i % VARIANTS], event_id))
        rewarded = self._rewarded.random() < self.reward_fraction
        return rank, (f"/v1/loops/{self.loop}/events/{event_id}:reward", b'{"value":1.0}') if rewarded else None


@dataclass(frozen=True)
class Service:
    """A service under load: where it listens, the methods that take Rank's and Reward's bytes, its pid, and
    whether it is called over gRPC or HTTP (the JSON API: the methods are then unused)."""

    name: str
    address: str
    rank_method: str
    reward_method: str
    pid: int | None = None
    transport: str = "grpc"


@dataclass(frozen=True)
class Load:
    """Closed loop at `concurrency` callers, or open loop at `rate` calls/s when rate > 0."""

    concurrency: int = 16
    rate: float = 0.0
    arrival: str = "poisson"

    @property
    def mode(self) -> str:
        return "open" if self.rate > 0 else "closed"

    @property
    def label(self) -> str:
        return f"open {self.rate:,.0f}/s" if self.rate > 0 else f"closed c={self.concurrency}"


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99, p999, max and mean of latencies given in seconds, in milliseconds (0 when empty)."""
    if not len(seconds):
        return dict.fromkeys(("p50", "p90", "p99", "p999", "max", "mean"), 0.0)
    ms = np.asarray(seconds) * 1e3
    p50, p90, p99, p999 = np.percentile(ms, [50, 90, 99, 99.9])
    values = {"p50": p50, "p90": p90, "p99": p99, "p999": p999, "max": ms.max(), "mean": ms.mean()}
    return {name: float(value) for name, value in values.items()}


class _Sink:
    """Completed calls of one kind: latencies and ends of those scheduled in [t0, t1), errors by code."""

    def __init__(self, t0: float, t1: float) -> None:
        self.t0, self.t1 = t0, t1
        self.total = 0  # every completion, warm-up included (for the progress line)
        self.latencies: list[float] = []
        self.ends: list[float] = []
        self.errors: collections.Counter[str] = collections.Counter()

    def add(self, start: float, end: float, code: grpc.StatusCode) -> None:
        self.total += 1
        if not self.t0 <= start < self.t1:
            return
        if code == grpc.StatusCode.OK:
            self.latencies.append(end - start)
            self.ends.append(end)
        else:
            self.errors[code.name] += 1

    def summary(self) -> dict[str, Any]:
        duration = self.t1 - self.t0
        return {
            "calls": len(self.latencies),
            "throughput": len(self.latencies) / duration,
            "errors": dict(self.errors),
            "latency_ms": latency_summary(self.latencies),
        }

    def timeline(self) -> list[dict[str, float]]:
        """Calls and p50/p99 latency per second of the window, by completion time."""
        seconds = np.floor(np.asarray(self.ends) - self.t0).astype(int)
        latencies = np.asarray(self.latencies)
        out = []
        for t in range(int(np.ceil(self.t1 - self.t0))):
            bucket = latencies[seconds == t]
            summary = latency_summary(bucket)
            out.append({"t": t, "calls": len(bucket), "p50_ms": summary["p50"], "p99_ms": summary["p99"]})
        return out


def _processes() -> dict[int, tuple[int, int]]:
    """Every process's parent and CPU ticks used so far (Linux /proc)."""
    out: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()  # fields from 3 (state): ppid is 4, utime 14, stime 15
        out[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    return out


def _tree(root: int, processes: dict[int, tuple[int, int]]) -> set[int]:
    tree, frontier = set(), {root}
    while frontier:
        tree |= frontier
        frontier = {pid for pid, (ppid, _) in processes.items() if ppid in frontier} - tree
    return tree


def process_tree(root: int) -> set[int]:
    """Process `root` and its descendants (Linux /proc)."""
    return _tree(root, _processes())


def _tree_cpu_seconds(root: int | None) -> float | None:
    """CPU seconds used so far by process `root` and its descendants (Linux /proc; None elsewhere)."""
    if root is None or not os.path.isdir("/proc"):
        return None
    processes = _processes()
    return sum(processes[pid][1] for pid in _tree(root, processes) if pid in processes) / os.sysconf("SC_CLK_TCK")


def _machine_cpu_seconds() -> float | None:
    """CPU seconds all CPUs have been busy so far (Linux /proc/stat; None elsewhere); steal time excluded."""
    try:
        with open("/proc/stat") as f:
            user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in f.readline().split()[1:9])
    except OSError:
        return None
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _cpu_now(server_pid: int | None) -> tuple[float, float | None, float | None]:
    return time.process_time(), _tree_cpu_seconds(server_pid), _machine_cpu_seconds()


def _cpu_used(before: tuple, after: tuple, seconds: float) -> dict[str, float | None]:
    """CPU used between two `_cpu_now` snapshots, in cores: the bench, the server, the machine, the rest."""
    client, server, machine = (None if a is None else (b - a) / seconds for a, b in zip(before, after, strict=True))
    other = None if server is None or machine is None else max(0.0, machine - client - server)
    return {"client": client, "server": server, "machine": machine, "other": other}


async def _sleep_until(t: float) -> None:
    await asyncio.sleep(max(0.0, t - clock()))


async def _timed(call: Callable, payload: Any, start: float, sink: _Sink, timeout: float) -> float:
    """Send one call; record it in `sink` with its latency from `start`; return when it ended."""
    code = grpc.StatusCode.OK
    try:
        await call(payload, timeout=timeout)
    except (grpc.aio.AioRpcError, httpload.HttpCallError) as e:
        code = e.code()
    end = clock()
    sink.add(start, end, code)
    return end


async def measure(
    service: Service,
    workload: Workload,
    load: Load,
    *,
    warmup: float,
    duration: float,
    timeout: float = 5.0,
    max_inflight: int = 1000,
    connections: int = 1,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """One run of `load` on `service`: `warmup` seconds, then `duration` seconds measured.

    Returns the run's entry of the JSON report (see the module doc). `progress` gets a line a second.
    """
    workload.new_run()
    if service.transport == "http":
        host, port = service.address.rsplit(":", 1)
        pool = httpload.Connections(host, int(port))
        channels: list[grpc.aio.Channel] = []
        rank_calls = reward_calls = [httpload.Call(pool)] * connections
        payloads: Callable[[int], tuple[Any, Any]] = workload.http_call
    else:
        pool = None
        options = [("grpc.use_local_subchannel_pool", 1)]  # one TCP connection per channel
        channels = [grpc.aio.insecure_channel(service.address, options=options) for _ in range(connections)]
        rank_calls = [ch.unary_unary(service.rank_method) for ch in channels]
        reward_calls = [ch.unary_unary(service.reward_method) for ch in channels]
        payloads = workload.call
    begin = clock() + 0.05
    t0 = begin + warmup
    t1 = t0 + duration
    ranks, rewards = _Sink(t0, t1), _Sink(t0, t1)

    async def one(i: int, scheduled: float) -> None:
        rank, reward = payloads(i)
        end = await _timed(rank_calls[i % connections], rank, scheduled, ranks, timeout)
        if reward is not None:
            await _timed(reward_calls[i % connections], reward, end, rewards, timeout)

    async def caller(k: int) -> None:
        i = k
        while (start := clock()) < t1:
            await one(i, start)
            i += load.concurrency

    scheduled = unsent = 0

    async def scheduler() -> None:
        nonlocal scheduled, unsent
        rng = random.Random(workload.tag)
        gate = asyncio.Semaphore(max_inflight)
        inflight: set[asyncio.Task] = set()

        def done(task: asyncio.Task) -> None:
            inflight.discard(task)
            gate.release()

        t, i = begin, 0
        while t < t1:
            await _sleep_until(t)
            await gate.acquire()
            if clock() > t1 + timeout:  # hopelessly behind: what is left of the window is not sent
                gate.release()
                while t < t1:
                    unsent += t >= t0
                    t += _interarrival(load, rng)
                break
            task = asyncio.create_task(one(i, t))
            inflight.add(task)
            task.add_done_callback(done)
            scheduled += t >= t0
            i += 1
            t += _interarrival(load, rng)
        await asyncio.gather(*inflight)

    async def report_progress() -> None:
        last = 0
        for second in range(1, int(t1 - begin) + 1):
            await _sleep_until(begin + second)
            phase = " (warm-up)" if clock() <= t0 else ""
            if progress:
                rate = ranks.total - last
                progress(f"{service.name} {load.label}: {second} s{phase}, {ranks.total:,} calls, {rate:,}/s")
            last = ranks.total

    async def cpu_window() -> dict[str, float | None]:
        await _sleep_until(t0)
        before = _cpu_now(service.pid)
        await _sleep_until(t1)
        return _cpu_used(before, _cpu_now(service.pid), duration)

    reporter = asyncio.create_task(report_progress())
    cpu = asyncio.create_task(cpu_window())
    try:
        drivers = [scheduler()] if load.rate > 0 else [caller(k) for k in range(load.concurrency)]
        await asyncio.gather(*drivers)
        cpu_used = await cpu
    finally:
        reporter.cancel()
        cpu.cancel()
        for channel in channels:
            await channel.close()
        if pool:
            pool.close()
    run: dict[str, Any] = {
        "service": service.name,
        "label": load.label,
        "mode": load.mode,
        "concurrency": load.concurrency if load.mode == "closed" else None,
        "rate": load.rate if load.mode == "open" else None,
        "arrival": load.arrival if load.mode == "open" else None,
        "duration": duration,
        **ranks.summary(),
        "reward": rewards.summary(),
        "cpu": cpu_used,
        "timeline": ranks.timeline(),
    }
    if load.mode == "open":
        run |= {"scheduled": scheduled, "unsent": unsent}
    return run


def _interarrival(load: Load, rng: random.Random) -> float:
    return rng.expovariate(load.rate) if load.arrival == "poisson" else 1.0 / load.rate


async def _stream(address: str, method: str, requests: Iterator[bytes]) -> tuple[bytes, float]:
    """Send `requests` through one client stream; the answer's bytes and the seconds it took."""
    async with grpc.aio.insecure_channel(address) as channel:
        start = clock()
        answer = await channel.stream_unary(method)(requests, timeout=STREAM_DEADLINE)
        return answer, clock() - start


async def reward_stream(address: str, echo_address: str, loop: str, count: int) -> dict[str, Any]:
    """`count` rewards through one RewardStream (fresh event ids: they join nothing), then the same bytes
    through the echo's Drain stream, the ceiling of one Python gRPC stream here: rewards/s of both."""
    tag = uuid.uuid4().hex[:12]
    rewards = [
        decision_pb2.RewardRequest(loop=loop, event_id=f"{tag}-{i:010d}", value=1.0).SerializeToString()
        for i in range(count)
    ]
    answer, seconds = await _stream(address, REWARD_STREAM_METHOD, iter(rewards))
    summary = decision_pb2.RewardStreamSummary.FromString(answer)
    _, ceiling_seconds = await _stream(echo_address, echo.STREAM_METHOD, iter(rewards))
    rate, ceiling = count / seconds, count / ceiling_seconds
    return {
        "rewards": count,
        "seconds": seconds,
        "rewards_per_second": rate,
        "accepted": summary.accepted,
        "duplicates": summary.duplicates,
        "echo_per_second": ceiling,
        "ratio": rate / ceiling,
        "target": TARGETS["reward_stream_per_second"],
        "met": rate >= TARGETS["reward_stream_per_second"],
    }


@dataclass
class _Child:
    """A service the bench started: `python -m MODULE ... --port P`, its output in a log file."""

    address: str
    proc: subprocess.Popen
    log: Path
    http_address: str | None = None

    async def ready(self) -> None:
        """Wait until it accepts connections; RuntimeError with its log when it exits or times out."""
        deadline = clock() + START_SECONDS
        async with grpc.aio.insecure_channel(self.address) as channel:
            while self.proc.poll() is None and clock() < deadline:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(channel.channel_ready(), 0.5)
                    return
        tail = self.log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(self.proc.args)} did not start (exit code {self.proc.poll()}):\n{tail}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _spawned(name: str, module: str, args: list[str], directory: Path, http: bool = False) -> Iterator[_Child]:
    """Run `python -m module args --port P` on a free loopback port (and `--http-port H` with `http`); SIGTERM
    (kill after 30 s) on exit."""
    port = _free_port()
    http_port = _free_port() if http else None
    log = directory / f"{name}.log"
    with open(log, "wb") as out:
        argv = [sys.executable, "-m", module, *args, "--port", str(port)]
        argv += ["--http-port", str(http_port)] if http_port else []
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield _Child(f"127.0.0.1:{port}", proc, log, f"127.0.0.1:{http_port}" if http_port else None)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _serve_accepts(flag: str) -> bool:
    """Whether `nextbest serve` has `flag` (taking one value)."""
    import argparse

    from nextbest.server.commands import serve

    parser = argparse.ArgumentParser()
    serve.add(parser.add_subparsers())
    return not parser.parse_known_args(["serve", flag, "1"])[1]


async def _prepare_loop(channel: grpc.aio.Channel, plan: Plan) -> types_pb2.LoopConfig:
    """Create the bench loop (or keep the existing one) and check that Rank answers on it."""
    admin = admin_pb2_grpc.AdminServiceStub(channel)
    config = types_pb2.LoopConfig(
        name=plan.loop,
        policy=plan.policy,
        reward_wait_seconds=REWARD_WAIT_SECONDS,
        publish_interval_seconds=PUBLISH_SECONDS,
    )
    try:
        await admin.CreateLoop(admin_pb2.CreateLoopRequest(config=config), timeout=30)
    except grpc.aio.AioRpcError as e:
        if e.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
    request = rank_request(random.Random(plan.seed), plan.loop)
    decisions = decision_pb2_grpc.DecisionServiceStub(channel)
    deadline = clock() + 10.0
    while True:  # every server process sees a new loop within its catalog's poll interval
        try:
            response = await decisions.Rank(request, timeout=plan.timeout)
            break
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND or clock() > deadline:
                raise
            await asyncio.sleep(0.1)
    if response.chosen_action_id not in {a.id for a in request.actions}:
        raise RuntimeError(f"Rank chose {response.chosen_action_id!r}, not one of the actions")
    return await admin.GetLoop(admin_pb2.GetLoopRequest(loop=plan.loop), timeout=30)


async def _settle(admin: admin_pb2_grpc.AdminServiceStub, loop: str) -> tuple[admin_pb2.LoopStats, float, bool]:
    """Wait (at most SETTLE_SECONDS) until every decision is joined and learned: (stats, seconds, settled)."""
    start = clock()
    while True:
        stats = await admin.GetStats(admin_pb2.GetStatsRequest(loop=loop), timeout=30)
        settled = stats.pending_decisions == 0 and stats.learner_lag_events == 0
        if settled or clock() - start > SETTLE_SECONDS:
            return stats, clock() - start, settled
        await asyncio.sleep(0.2)


@dataclass
class _HttpSide:
    """`--http`: a second nextbest, serving HTTP too. For each load, gRPC Rank on it (against the first, which
    serves no HTTP: does serving HTTP slow gRPC down?) then HTTP Rank on it (against its gRPC Rank)."""

    grpc: Service
    http: Service
    admin: admin_pb2_grpc.AdminServiceStub
    loop: str

    @classmethod
    @contextlib.asynccontextmanager
    async def of(cls, child: _Child, plan: Plan) -> AsyncIterator[_HttpSide]:
        assert child.http_address is not None
        pid = child.proc.pid
        async with grpc.aio.insecure_channel(child.address) as channel:
            await _prepare_loop(channel, plan)
            admin = admin_pb2_grpc.AdminServiceStub(channel)
            await _settle(admin, plan.loop)
            yield cls(
                Service("rank+http", child.address, RANK_METHOD, REWARD_METHOD, pid),
                Service("http", child.http_address, "", "", pid, transport="http"),
                admin,
                plan.loop,
            )

    async def measure(
        self, run: Callable[[Service, Load], Awaitable[dict[str, Any]]], load: Load, alone: dict, report: dict
    ) -> None:
        """Run gRPC then HTTP Rank at `load`; `alone` is the run of gRPC Rank on the server without HTTP."""
        runs = [await run(self.grpc, load), await run(self.http, load)]
        await _settle(self.admin, self.loop)
        report.setdefault("http_runs", []).extend(runs)
        report.setdefault("http_comparisons", []).append(
            {"grpc_with_http_over_without": _compare(alone, runs[0]), "http_over_grpc": _compare(*runs)}
        )


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def _compare(echo_run: dict[str, Any], rank_run: dict[str, Any]) -> dict[str, Any]:
    e, r = echo_run["latency_ms"], rank_run["latency_ms"]
    return {
        "mode": rank_run["mode"],
        "concurrency": rank_run["concurrency"],
        "rate": rank_run["rate"],
        "throughput_ratio": _ratio(rank_run["throughput"], echo_run["throughput"]),
        "p50_ratio": _ratio(r["p50"], e["p50"]),
        "p99_ratio": _ratio(r["p99"], e["p99"]),
    }


def _cpu_ms_per_call(run: dict[str, Any]) -> float | None:
    """Server CPU per Rank (with the Rewards that followed it, and the learning of it), in ms."""
    server = run["cpu"]["server"]
    return server * run["duration"] / run["calls"] * 1000 if server is not None and run["calls"] else None


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _subject_load(plan: Plan, load: Load, ranked: dict[str, Any]) -> Load:
    """The load of the runs without and with subject ids after the Rank run `ranked` at `load`: an open loop at
    `plan.subject_rate`, or at SUBJECT_RATE_SHARE of a closed loop's throughput; the Rank run's own load when
    `plan.subject_rate` is 0 or the Rank run is an open loop already."""
    if plan.subject_rate == 0 or load.mode == "open":
        return load
    rate = plan.subject_rate if plan.subject_rate is not None else SUBJECT_RATE_SHARE * ranked["throughput"]
    return Load(rate=max(rate, 1.0), arrival=plan.arrival)


def _subject_compare(
    rounds: list[tuple[dict[str, Any], dict[str, Any]]], subjects: int, rank_label: str
) -> dict[str, Any]:
    """Server CPU per Rank with subject ids against without, over rounds of (run without, run with) in turn: the
    medians, and the median of the rounds' ratios (each ratio compares runs a few seconds apart, so a machine
    that slows down or speeds up for a while moves both sides); the calls/s each side served."""
    pairs = [(_cpu_ms_per_call(without), _cpu_ms_per_call(with_subjects)) for without, with_subjects in rounds]
    measured = [(plain, subject) for plain, subject in pairs if plain is not None and subject is not None]
    ratios = [_ratio(subject, plain) for plain, subject in measured]
    ratio = _median([r for r in ratios if r is not None])
    return {
        "label": rounds[0][0]["label"],
        "after": rank_label,
        "subjects": subjects,
        "rounds": [
            {"cpu_ms_per_rank": p, "cpu_ms_per_rank_with_subject": s, "cpu_ratio": r}
            for (p, s), r in zip(measured, ratios, strict=True)
        ],
        "throughput": _median([without["throughput"] for without, _ in rounds]),
        "throughput_with_subject": _median([with_subjects["throughput"] for _, with_subjects in rounds]),
        "cpu_ms_per_rank": _median([p for p, _ in measured]),
        "cpu_ms_per_rank_with_subject": _median([s for _, s in measured]),
        "cpu_ratio": ratio,
        "target": SUBJECT_CPU_TARGET,
        "met": ratio is not None and ratio <= SUBJECT_CPU_TARGET,
    }


def _sweep_summary(
    best: dict[str, Any], comparisons: list[dict[str, Any]], opened: dict[str, Any] | None
) -> dict[str, Any]:
    """The sweep's findings against the issue's targets: the best closed-loop Rank run and its Rank/echo ratio, the
    ratio at RATIO_CONCURRENCY callers (at the best run's when the sweep has no such load), and Rank's p99 and p999
    in the open-loop run at half the best throughput."""
    ratios = {c["concurrency"]: c["throughput_ratio"] for c in comparisons}
    at = RATIO_CONCURRENCY if RATIO_CONCURRENCY in ratios else best["concurrency"]
    ratio = ratios[at]
    p99 = opened["latency_ms"]["p99"] if opened else None
    p999 = opened["latency_ms"]["p999"] if opened else None
    return {
        "max_throughput": best["throughput"],
        "max_at_concurrency": best["concurrency"],
        "throughput_ratio_at_max": ratios[best["concurrency"]],
        "ratio_concurrency": at,
        "throughput_ratio": ratio,
        "half_max_rate": best["throughput"] / 2,
        "open_loop_p99_ms": p99,
        "open_loop_p999_ms": p999,
        "targets": {k: TARGETS[k] for k in ("p99_ms_at_half_max", "p999_ms_at_half_max", "throughput_ratio")},
        "met": {
            "p99_ms_at_half_max": p99 is not None and p99 <= TARGETS["p99_ms_at_half_max"],
            "p999_ms_at_half_max": p999 is not None and p999 <= TARGETS["p999_ms_at_half_max"],
            "throughput_ratio": ratio is not None and ratio >= TARGETS["throughput_ratio"],
        },
    }


async def _session(
    plan: Plan,
    echo_child: _Child,
    nextbest_child: _Child | None,
    progress: Callable[[str], None],
    http_child: _Child | None = None,
) -> dict[str, Any]:
    """Every run of the plan, in order: for each load echo then Rank (then, with `http_child`, gRPC and HTTP Rank
    on it); the sweep's open loop; RewardStream."""
    for child in (echo_child, nextbest_child, http_child):
        if child:
            await child.ready()
    address = nextbest_child.address if nextbest_child else plan.target
    nextbest = Service("rank", address, RANK_METHOD, REWARD_METHOD, nextbest_child and nextbest_child.proc.pid)
    bare = Service("echo", echo_child.address, echo.METHOD, echo.METHOD, echo_child.proc.pid)
    workload = Workload(plan.loop, plan.reward_fraction, plan.seed)
    subject_workload = Workload(plan.loop, plan.reward_fraction, plan.seed, plan.subjects)
    report: dict[str, Any] = {"runs": [], "comparisons": []}
    if plan.subjects:
        report |= {"subject_runs": [], "subjects": []}
    async with grpc.aio.insecure_channel(address) as channel, contextlib.AsyncExitStack() as stack:
        config = await _prepare_loop(channel, plan)
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        if plan.subjects:
            spec = json.dumps(BENCH_CONTACT_POLICY)
            await admin.SetContactPolicy(admin_pb2.SetContactPolicyRequest(spec=spec), timeout=30)
        await _settle(admin, plan.loop)
        http_side = await stack.enter_async_context(_HttpSide.of(http_child, plan)) if http_child else None

        async def run(service: Service, load: Load, work: Workload = workload) -> dict[str, Any]:
            return await measure(
                service,
                work,
                load,
                warmup=plan.warmup,
                duration=plan.duration,
                timeout=plan.timeout,
                max_inflight=plan.max_inflight,
                connections=plan.client_connections(),
                progress=progress,
            )

        async def with_subjects(load: Load, ranked: dict[str, Any]) -> None:
            """Rank without and with subject ids, in turn, each run once the learner caught up with the one before,
            until `plan.subject_rounds` pairs are measured; at the load `_subject_load` finds for the Rank run
            `ranked` (when that is its own load, `ranked` is the first run without)."""
            service = dataclasses.replace(nextbest, name="rank+subj")
            compared = _subject_load(plan, load, ranked)
            rounds = []
            for i in range(plan.subject_rounds):
                if i or compared != load:
                    without = await run(nextbest, compared, workload)
                    await _settle(admin, plan.loop)
                    report["subject_runs"].append(without)
                else:
                    without = ranked
                rounds.append((without, await run(service, compared, subject_workload)))
                await _settle(admin, plan.loop)
                report["subject_runs"].append(rounds[-1][1])
            report["subjects"].append(_subject_compare(rounds, plan.subjects, load.label))

        async def pair(load: Load) -> dict[str, Any]:
            runs = [await run(service, load, workload) for service in (bare, nextbest)]
            stats_at_end = await admin.GetStats(admin_pb2.GetStatsRequest(loop=plan.loop), timeout=30)
            stats, seconds, settled = await _settle(admin, plan.loop)
            runs[1]["learner"] = {
                "decisions": stats.decisions,
                "model_version": stats.model_version,
                "learned": stats.learned,
                "lag_events_at_end": stats_at_end.learner_lag_events + stats_at_end.pending_decisions,
                "caught_up_seconds": seconds,
                "caught_up": settled,
            }
            report["runs"] += runs
            report["comparisons"].append(_compare(*runs))
            if plan.subjects:
                await with_subjects(load, runs[1])
            if http_side:
                await http_side.measure(run, load, runs[1], report)
            return runs[1]

        ranked = [await pair(Load(concurrency=c)) for c in plan.closed_loop_levels()]
        if plan.sweep:
            best = max(ranked, key=lambda run: run["throughput"])
            half = best["throughput"] / 2
            opened = await pair(Load(rate=half, arrival=plan.arrival)) if half >= 1 else None
            report["sweep"] = _sweep_summary(best, report["comparisons"], opened)
        elif plan.rate > 0:
            await pair(Load(rate=plan.rate, arrival=plan.arrival))
        if plan.batch:
            report["batch"] = await _batches(plan, nextbest, run, admin, progress)
        if plan.reward_stream:
            progress(f"RewardStream: {plan.reward_stream:,} rewards in one stream")
            report["reward_stream"] = await reward_stream(address, bare.address, plan.loop, plan.reward_stream)
    report["loop"] = {
        "name": config.name,
        "policy": config.policy,
        "reward_wait_seconds": config.reward_wait_seconds,
        "publish_interval_seconds": config.publish_interval_seconds,
    }
    report["payload"] = {
        "rank_bytes": workload.rank_bytes,
        "reward_bytes": workload.reward_bytes,
        **payload_shape(rank_request(random.Random(plan.seed))),
    }
    return report


async def _batches(
    plan: Plan,
    nextbest: Service,
    run: Callable[..., Awaitable[dict[str, Any]]],
    admin: admin_pb2_grpc.AdminServiceStub,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Single-call Rank without rewards, then RankBatch of `plan.batch` (see server.bench.batch), then the campaign;
    the learner catches up after each."""
    plain = Workload(plan.loop, 0.0, plan.seed)
    single = await run(dataclasses.replace(nextbest, name="rank"), Load(concurrency=plan.concurrency), plain)
    await _settle(admin, plan.loop)
    plain.new_run()
    timing = {"timeout": plan.timeout, "connections": plan.client_connections(), "now": clock, "progress": progress}
    batched = await batch.batch_run(
        nextbest.address, plain.rank, plan.batch, warmup=plan.warmup, duration=plan.duration, **timing
    )
    await _settle(admin, plan.loop)
    ratio = batched["decisions_per_second"] / single["throughput"] if single["throughput"] else None
    out = {
        "single": {k: single[k] for k in ("concurrency", "throughput", "errors", "latency_ms")},
        "batched": batched,
        "ratio": ratio,
        "target": batch.BATCH_TARGET,
        "met": ratio is not None and ratio >= batch.BATCH_TARGET,
    }
    if plan.campaign:
        plain.new_run()
        memory = functools.partial(batch.memory, nextbest.pid, process_tree)
        out["campaign"] = await batch.campaign(
            nextbest.address, plain.rank, plan.batch, plan.campaign, server_memory=memory, **timing
        )
        await _settle(admin, plan.loop)
    return out


def bench(plan: Plan, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the plan: start the echo service (and nextbest unless `plan.target`), load them, stop them.

    Returns the report (see the module doc), also written to `plan.json` and drawn to `plan.plot`
    when set. `progress` gets a line a second (default: stderr).
    """
    progress = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    server = {
        "address": plan.target,
        "spawned": not plan.target,
        "threads": plan.threads,
        "workers": None,
        "connections": plan.client_connections(),
    }
    with tempfile.TemporaryDirectory(prefix="nextbest-bench-") as tmp, contextlib.ExitStack() as stack:
        directory = Path(tmp)
        nextbest_child = http_child = None
        if not plan.target:
            args = ["--log-level", "WARNING", "serve", "--threads", str(plan.threads)]
            if plan.workers and _serve_accepts("--workers"):
                args += ["--workers", str(plan.workers)]
                server["workers"] = plan.workers
            elif plan.workers:
                progress("note: `nextbest serve` has no --workers yet; the server runs in one process")
            store = ["--store", str(directory / "store")]
            nextbest_child = stack.enter_context(_spawned("nextbest", "nextbest", [*args, *store], directory))
            server["address"] = nextbest_child.address
        if plan.http:  # the same server on a store of its own, serving HTTP too
            store = ["--store", str(directory / "http-store")]
            http_child = stack.enter_context(_spawned("nextbest-http", "nextbest", [*args, *store], directory, True))
            server["http_address"] = http_child.http_address
        echo_args = ["--threads", str(plan.threads)]
        echo_child = stack.enter_context(_spawned("echo", "nextbest.server.bench.echo", echo_args, directory))
        report = asyncio.run(_session(plan, echo_child, nextbest_child, progress, http_child))
    report = {
        "version": 1,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "grpcio": grpc.__version__,
        },
        "plan": dataclasses.asdict(plan),
        "server": server | {"echo_threads": plan.threads},
        **report,
    }
    if plan.json:
        Path(plan.json).write_text(json.dumps(report, indent=2) + "\n")
    if plan.plot:
        plot(report, plan.plot)
    return report


def _cpu(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _num(value: float | None, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.2f}{suffix}"


CPU_COLUMNS = (("client", 11), ("server", 8), ("other", 8))
RATIO_COLUMNS = (("throughput_ratio", ""), ("p50_ratio", "x"), ("p99_ratio", "x"))


def _http_rows(runs: list[dict[str, Any]], comparisons: dict[str, Any], row: Callable[..., str]) -> list[str]:
    """The rows of `--http` at one load: gRPC Rank on the server serving HTTP, HTTP Rank, and their ratios."""
    lines = [row("", "rank+http", runs[0]), row("", "http", runs[1])]
    for label, key in (("+http/rank", "grpc_with_http_over_without"), ("http/grpc", "http_over_grpc")):
        t, p50, p99 = (_num(comparisons[key][k], x) for k, x in RATIO_COLUMNS)
        lines.append(f"{'':<16}{label:<11}{t:>9}{p50:>9}{p99:>9}")
    return lines


def summary(report: dict[str, Any]) -> str:
    """The report as a text table: a row per service and run, a ratio row per pair, then the targets."""
    s, p, loop, payload = report["server"], report["plan"], report["loop"], report["payload"]
    where = "spawned" if s["spawned"] else "existing"
    workers = f", {s['workers']} workers" if s["workers"] else ""
    lines = [
        f"nextbest bench: nextbest {s['address']} ({where}, {s['threads']} threads{workers}) vs bare gRPC echo "
        f"({s['echo_threads']} threads); {report['machine']['cpus']} CPUs, client and servers on this machine",
        f"payload: Rank {payload['rank_bytes']:,} B ({payload['context_namespaces']} namespaces, "
        f"{payload['context_features']} context features, {payload['actions']} actions on {payload['channels']} "
        f"channels with {payload['action_features']} features), Reward {payload['reward_bytes']} B after "
        f"{p['reward_fraction']:.0%} of Ranks",
        f"loop {loop['name']}: {loop['policy']} (reward window {loop['reward_wait_seconds']:g} s, publish every "
        f"{loop['publish_interval_seconds']:g} s); each run {p['warmup']:g} s warm-up + {p['duration']:g} s measured",
        "cpu in % of one core: client = this bench, server = the service loaded, other = the rest of the machine",
        "",
        f"{'run':<16}{'service':<11}{'calls/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'p999 ms':>9}{'max ms':>9}"
        f"{'errors':>8}{'cpu client':>11}{'server':>8}{'other':>8}",
    ]

    def row(label: str, name: str, r: dict[str, Any]) -> str:
        lat = r["latency_ms"]
        cpu = "".join(f"{_cpu(r['cpu'][k]):>{w}}" for k, w in CPU_COLUMNS) if "cpu" in r else ""
        return (
            f"{label:<16}{name:<11}{r['throughput']:>9,.0f}{lat['p50']:>9.2f}{lat['p99']:>9.2f}{lat['p999']:>9.2f}"
            f"{lat['max']:>9.1f}{sum(r['errors'].values()):>8}{cpu}"
        )

    runs = report["runs"]
    if "http_runs" in report:
        lines.insert(
            4,
            "rank+http: gRPC Rank on a second nextbest serving HTTP too (+http/rank: against the first, without "
            "HTTP); http: Rank over that server's JSON API (http/grpc: against its gRPC Rank)",
        )
    for i, (echo_run, rank_run, comparison) in enumerate(
        zip(runs[::2], runs[1::2], report["comparisons"], strict=True)
    ):
        lines.append(row(rank_run["label"], "echo", echo_run))
        lines.append(row("", "rank", rank_run))
        if rank_run["reward"]["calls"] or rank_run["reward"]["errors"]:
            lines.append(row("", "reward", rank_run["reward"]))
        if "http_runs" in report:
            lines += _http_rows(report["http_runs"][2 * i : 2 * i + 2], report["http_comparisons"][i], row)
        t, p50, p99 = (_num(comparison[k], x) for k, x in RATIO_COLUMNS)
        lag = rank_run["learner"]
        lines.append(
            f"{'':<16}{'rank/echo':<11}{t:>9}{p50:>9}{p99:>9}   learner: model v{lag['model_version']}, "
            f"{lag['learned']:,} learned, caught up {lag['caught_up_seconds']:.1f} s after the run"
        )
        errors = {**rank_run["errors"], **{f"reward {k}": v for k, v in rank_run["reward"]["errors"].items()}}
        if errors or echo_run["errors"]:
            lines.append(f"{'':<16}errors: echo {echo_run['errors'] or '{}'}, nextbest {errors}")
        if rank_run.get("unsent"):
            lines.append(f"{'':<16}open loop fell behind: {rank_run['unsent']:,} scheduled Ranks not sent")
    lines.append("")
    others = [run["cpu"]["other"] for run in runs if run["cpu"]["other"] is not None]
    if others and max(others) > BUSY_MACHINE:
        lines.append(
            f"warning: other processes used up to {max(others):.0%} of a core during the runs; with client and "
            "servers sharing this machine, the figures understate what it can do"
        )
    if sweep := report.get("sweep"):
        met = sweep["met"]
        targets = sweep["targets"]
        lines.append(
            f"max Rank throughput {sweep['max_throughput']:,.0f} calls/s at c={sweep['max_at_concurrency']} "
            f"(Rank/echo {_num(sweep['throughput_ratio_at_max'])}); Rank/echo at c={sweep['ratio_concurrency']} "
            f"{_num(sweep['throughput_ratio'])} (target >= {targets['throughput_ratio']:.2f}: "
            f"{'met' if met['throughput_ratio'] else 'NOT met'})"
        )
        lines.append(
            f"open loop at half of it ({sweep['half_max_rate']:,.0f}/s), a model published every "
            f"{PUBLISH_SECONDS:g} s: Rank p99 {_num(sweep['open_loop_p99_ms'])} ms "
            f"(target <= {targets['p99_ms_at_half_max']:g} ms: {'met' if met['p99_ms_at_half_max'] else 'NOT met'}), "
            f"p999 {_num(sweep['open_loop_p999_ms'])} ms (target <= {targets['p999_ms_at_half_max']:g} ms: "
            f"{'met' if met['p999_ms_at_half_max'] else 'NOT met'})"
        )
    for c in report.get("subjects", []):
        each = ", ".join(_num(r["cpu_ratio"]) for r in c["rounds"])
        lines.append(
            f"Rank with subject ids ({c['subjects']:,} subjects, {len(BENCH_CONTACT_POLICY['rules'])} contact rules), "
            f"{c['label']}{'' if c['label'] == c['after'] else ' after ' + c['after']} "
            f"({c['throughput_with_subject']:,.0f} vs {c['throughput']:,.0f} calls/s), {len(c['rounds'])} rounds "
            f"(medians): server CPU {_num(c['cpu_ms_per_rank_with_subject'])} ms per Rank vs "
            f"{_num(c['cpu_ms_per_rank'])} ms without, ratio {_num(c['cpu_ratio'])} (rounds: {each}) "
            f"(target <= {c['target']:g}: {'met' if c['met'] else 'NOT met'})"
        )
    if batched := report.get("batch"):
        lines += _batch_lines(batched)
    if stream := report.get("reward_stream"):
        lines.append(
            f"RewardStream: {stream['rewards']:,} rewards in {stream['seconds']:.2f} s = "
            f"{stream['rewards_per_second']:,.0f} rewards/s, {stream['accepted']:,} accepted; bare gRPC stream "
            f"{stream['echo_per_second']:,.0f}/s (ratio {stream['ratio']:.2f}); "
            f"target >= {stream['target']:,.0f}/s: {'met' if stream['met'] else 'NOT met'}"
        )
    return "\n".join(lines).rstrip() + "\n"


def _batch_lines(report: dict[str, Any]) -> list[str]:
    single, batched = report["single"], report["batched"]
    lines = [
        f"RankBatch x{batched['batch']} ({batched['callers']} callers): {batched['decisions_per_second']:,.0f} "
        f"decisions/s vs single-call Rank {single['throughput']:,.0f}/s (c={single['concurrency']}, no rewards): "
        f"ratio {_num(report['ratio'])} (target >= {report['target']:g}: {'met' if report['met'] else 'NOT met'})"
    ]
    if batched["item_errors"] or batched["errors"]:
        lines.append(f"{'':<16}errors: {batched['item_errors']} items, calls {batched['errors']}")
    if c := report.get("campaign"):
        start, end = c["memory"][0], c["memory"][-1]
        memory = (
            f"server RSS {start['rss_mb']:,.0f} -> {end['rss_mb']:,.0f} MB, anonymous {start['anon_mb']:,.0f} -> "
            f"{end['anon_mb']:,.0f} MB (end / first tenth {_num(c['anon_growth'])}, target <= {c['target']:g}: "
            f"{'met' if c['met'] else 'NOT met'})"
            if "rss_mb" in start
            else "server memory not measured"
        )
        lines.append(
            f"campaign: {c['decisions']:,} decisions in {c['seconds']:.1f} s ({c['decisions_per_second']:,.0f}/s, "
            f"{c['item_errors']} item errors, calls {c['errors'] or '{}'}); {memory}"
        )
    return lines


def plot(report: dict[str, Any], path: str) -> None:
    """A PNG: throughput and latency percentiles per run, echo vs Rank, and Rank's latency over time
    in the last run (the sweep's open loop at half of the maximum)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    runs = report["runs"]
    echo_runs, rank_runs = runs[::2], runs[1::2]
    labels = [run["label"] for run in rank_runs]
    x = np.arange(len(labels))
    colors = {"echo": "tab:gray", "rank": "tab:blue"}
    fig, (tp, lat, over_time) = plt.subplots(1, 3, figsize=(17, 5))
    for offset, (name, group) in zip((-0.2, 0.2), (("echo", echo_runs), ("rank", rank_runs)), strict=True):
        bars = tp.bar(x + offset, [r["throughput"] for r in group], 0.4, label=name, color=colors[name])
        tp.bar_label(bars, fmt="{:,.0f}", fontsize=8)
        for percentile, marker in (("p50", "o"), ("p99", "s"), ("p999", "^")):
            values = [r["latency_ms"][percentile] for r in group]
            lat.plot(x + offset, values, marker, color=colors[name], label=f"{name} {percentile}")
    tp.set(title="throughput (calls/s)", xticks=x, xticklabels=labels)
    lat.set(title="latency (ms, log scale)", xticks=x, xticklabels=labels, yscale="log")
    for name, run in (("echo", echo_runs[-1]), ("rank", rank_runs[-1])):
        t = [b["t"] + 0.5 for b in run["timeline"]]
        over_time.plot(t, [b["p50_ms"] for b in run["timeline"]], "-", color=colors[name], label=f"{name} p50")
        over_time.plot(t, [b["p99_ms"] for b in run["timeline"]], "--", color=colors[name], label=f"{name} p99")
    over_time.set(title=f"latency over time, {rank_runs[-1]['label']} (ms)", xlabel="s", yscale="log")
    for axes in (tp, lat, over_time):
        axes.legend(fontsize=8)
        axes.grid(alpha=0.3)
        axes.tick_params(axis="x", labelsize=8)
    p = report["payload"]
    fig.suptitle(
        f"nextbest Rank vs bare gRPC echo: {p['rank_bytes']:,} B requests, {report['machine']['cpus']} CPUs, "
        f"{report['loop']['policy']}"
    )
    for axes in (lat, over_time):
        axes.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        axes.yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
        axes.yaxis.set_minor_formatter(ticker.NullFormatter())
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
