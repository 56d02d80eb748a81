"""The dashboard: a page at `/` (overview, a loop, the decision explorer, evaluate) and the read endpoints it needs
that no RPC gives, under `/dashboard/api`.

The pages are one static document (`static/index.html`, its script and style, shipped in the package) that reads
the location and fetches its data: the endpoints here with a `decide` key (read-only: whoever may decide may look),
and the JSON API under /v1 for admin actions (rollback, set policy, edit the config, evaluate), whose own `admin`
scope check refuses them to any other key. The document itself carries no data, so it is served to anyone.

Every read is bounded so that a refresh costs the same at 10 or 10,000 decisions a second: the newest records of a
stream are read from its last seq backwards, at most `_SCAN_LIMIT` of them, and a response says when it stopped
there (`truncated`); the overview finds where a time window starts by a binary search of the stream and estimates
a window's mean reward from a sample of it.
"""

from __future__ import annotations

import math
import mimetypes
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from importlib import resources
from typing import Any

import grpc
from google.protobuf.message import Message
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from nextbest.server.auth import ADMIN, DECIDE
from nextbest.server.http.api import HttpCall, Services, request_key
from nextbest.server.http.calls import HttpError, call
from nextbest.server.http.jsonapi import error_response, to_json
from nextbest.server.store import Store
from nextbest.server.store.base import Stream
from nextbest.v1 import admin_pb2, records_pb2

API = "/dashboard/api"
ASSETS = "/dashboard/assets"
PAGES = ("/", "/loops/{loop:name}", "/loops/{loop:name}/decisions", "/loops/{loop:name}/decisions/{event_id}")
PAGES += ("/loops/{loop:name}/evaluate",)
_SCAN_LIMIT = 5000  # the most records one read scans
_CHUNK = 500  # records read at a time when scanning backwards
_MAX_PAGE = 200  # the most decisions a browse answers
_MAX_MINUTES = 24 * 60
_SAMPLE = 100  # joined events the overview's mean rewards are estimated from, per loop and window
_SAMPLE_SECONDS = 30.0  # how long such an estimate is reused
_Z95 = 1.96


def _assets() -> dict[str, tuple[bytes, str]]:
    """The page's files by name, with their media type (read once: they are part of the installed package)."""
    folder = resources.files("nextbest.server.http").joinpath("static")
    out = {}
    for item in folder.iterdir():
        if item.is_file():
            media = mimetypes.guess_type(item.name)[0] or "application/octet-stream"
            out[item.name] = (item.read_bytes(), media + ("; charset=utf-8" if media.startswith("text/") else ""))
    return out


def routes(services: Services) -> list[BaseRoute]:
    """The pages, their assets and the dashboard's read endpoints (each behind the server's interceptors)."""
    assets = _assets()
    api = services.api(error_response)
    reads = _Reads(services)
    page, style = assets["index.html"]

    async def index(request: Request) -> Response:
        return Response(page, media_type=style, headers={"Cache-Control": "no-cache"})

    async def asset(request: Request) -> Response:
        found = assets.get(request.path_params["name"])
        if found is None:
            raise HttpError(grpc.StatusCode.NOT_FOUND, f"no such asset: {request.path_params['name']}")
        return Response(found[0], media_type=found[1], headers={"Cache-Control": "no-cache"})

    def read(path: str, method: Callable[[HttpCall], Any], name: str) -> Route:
        async def handle(http_call: HttpCall) -> Response:
            return JSONResponse(await run_in_threadpool(method, http_call))

        return api.route(API + path, handle, methods=["GET"], name=f"Dashboard/{name}", scope=DECIDE)

    async def session(http_call: HttpCall) -> Response:
        return JSONResponse({"admin": reads.is_admin(http_call.request)})

    out: list[BaseRoute] = [Route(path, index, methods=["GET"]) for path in PAGES]
    out.append(api.route(ASSETS + "/{name}", lambda c: asset(c.request), methods=["GET"], name="Asset", scope=None))
    out.append(api.route(API + "/session", session, methods=["GET"], name="Dashboard/Session", scope=DECIDE))
    out.append(read("/loops", reads.overview, "Overview"))
    out.append(read("/loops/{loop:name}", reads.loop, "Loop"))
    out.append(read("/loops/{loop:name}/series", reads.series, "Series"))
    out.append(read("/loops/{loop:name}/decisions", reads.decisions, "Decisions"))
    out.append(read("/loops/{loop:name}/decisions/{event_id}", reads.decision, "Decision"))
    return out


def _query_int(call: HttpCall, name: str, default: int, low: int, high: int) -> int:
    text = call.request.query_params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise HttpError(grpc.StatusCode.INVALID_ARGUMENT, f"query parameter {name!r}: not an integer") from None
    if not low <= value <= high:
        raise HttpError(grpc.StatusCode.INVALID_ARGUMENT, f"query parameter {name!r}: must be in [{low}, {high}]")
    return value


def newest(store: Store, stream: Stream, loop: str, before: int = 0, limit: int = _SCAN_LIMIT) -> Iterator[tuple]:
    """(seq, raw) of the newest entries of a stream with seq < `before` (0: all), newest first, at most `limit`."""
    end = store.log.last_seq(stream, loop) + 1 if before <= 0 else before
    scanned = 0
    while end > 1 and scanned < limit:
        start = max(1, end - min(_CHUNK, limit - scanned))
        chunk = [entry for entry in store.log.read(stream, loop, start - 1, end - start) if entry[0] < end]
        if not chunk:
            return  # trimmed: nothing older is left
        yield from reversed(chunk)
        scanned += end - start
        end = start


_TIME_OF: dict[Stream, Callable[[bytes], float]] = {
    Stream.DECISIONS: lambda raw: records_pb2.DecisionRecord.FromString(raw).timestamp,
    Stream.REWARDS: lambda raw: records_pb2.RewardRecord.FromString(raw).timestamp,
    Stream.JOINED: lambda raw: records_pb2.JoinedEvent.FromString(raw).joined_at,
}


def _entry(store: Store, stream: Stream, loop: str, seq: int) -> tuple[int, bytes] | None:
    """The entry at `seq`, or the first after it when it was trimmed (None: none)."""
    found = store.log.read(stream, loop, seq - 1, 1)
    return found[0] if found else None


def first_since(store: Store, stream: Stream, loop: str, since: float) -> int:
    """The seq of the first entry stamped at or after `since` (the last seq + 1 when none): a binary search, as
    entries are appended in time order (within a clock's precision across processes)."""
    high = store.log.last_seq(stream, loop) + 1
    oldest = _entry(store, stream, loop, 1)  # entries before it were trimmed
    low = oldest[0] if oldest else high
    time_of = _TIME_OF[stream]
    while low < high:
        middle = (low + high) // 2
        entry = _entry(store, stream, loop, middle)
        if entry is None or time_of(entry[1]) >= since:
            high = middle
        else:
            low = max(middle, entry[0]) + 1
    return low


def _sampled_mean(store: Store, loop: str, first: int) -> dict[str, float] | None:
    """The mean reward (with its interval) of the joined events from seq `first` on, from at most `_SAMPLE` of
    them evenly spread; `events`: how many there are."""
    last = store.log.last_seq(Stream.JOINED, loop)
    events = last + 1 - first
    if events <= 0:
        return None
    step = max(1.0, events / _SAMPLE)
    seqs = sorted({first + int(i * step) for i in range(min(events, _SAMPLE))})
    rewards = []
    for seq in seqs:
        entry = _entry(store, Stream.JOINED, loop, seq)
        if entry is not None:
            rewards.append(records_pb2.JoinedEvent.FromString(entry[1]).reward)
    summary = _mean_interval(rewards)
    return summary | {"events": events} if summary else None


def _window(store: Store, stream: Stream, loop: str, since: float, record: type) -> tuple[list[Any], bool]:
    """The newest records of a stream decoded, newest first, back to the first stamped before `since` (a joined
    event: its decision's time) or `_SCAN_LIMIT` of them; and whether that limit cut the window short."""
    out = []
    for _, raw in newest(store, stream, loop):
        decoded = record.FromString(raw)
        stamped = decoded.decision.timestamp if stream is Stream.JOINED else decoded.timestamp
        if stamped < since:
            return out, False
        out.append(decoded)
    return out, len(out) >= _SCAN_LIMIT


def _mean_interval(values: list[float]) -> dict[str, float] | None:
    """Mean and a 95% normal interval of `values` (None when empty)."""
    if not values:
        return None
    n = len(values)
    mean = sum(values) / n
    spread = _Z95 * math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n) if n > 1 else 0.0
    return {"n": n, "mean": mean, "low": mean - spread, "high": mean + spread}


class _Reads:
    """The dashboard's reads of the store and servicers (each runs in a worker thread, as a servicer does)."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._means: dict[str, tuple[float, dict[str, Any]]] = {}  # by loop: (until when, the windows' means)
        if services.store is None:
            raise ValueError("the dashboard needs the server's store")
        self._store: Store = services.store

    def is_admin(self, request: Request) -> bool:
        keys = self._services.api_keys
        if keys is None:
            return True
        key = request_key(request)
        scopes = keys.scopes(key) if key else None
        return bool(scopes and ADMIN in scopes)

    def _admin(self, method: str, request: Message) -> Any:
        """An AdminService RPC called in this worker thread (its errors: HttpError)."""
        return call(getattr(self._services.admin, method), request)

    def overview(self, call: HttpCall) -> dict[str, Any]:
        loops = self._admin("ListLoops", admin_pb2.ListLoopsRequest()).loops
        now = self._services.clock()
        out = []
        for config in loops:
            stats = self._admin("GetStats", admin_pb2.GetStatsRequest(loop=config.name))
            live = self._store.models.live(config.name)
            out.append(
                {
                    "config": to_json(config),
                    "stats": to_json(stats),
                    "model_age_seconds": now - live.created_at if live else None,
                    "recent": self._recent(config.name, now),
                }
            )
        used = self._store.used_bytes()
        capacity = self._store.options.get("map_size")
        return {"now": now, "loops": out, "store": {"used_bytes": used, "capacity_bytes": capacity}}

    def _recent(self, loop: str, now: float) -> dict[str, Any]:
        """Decisions and rewards in the last minute (counted exactly: a binary search of the stream by time) and
        the mean reward of the events joined in the last hour and day (from a sample of `_SAMPLE` of them evenly
        spread over the window, cached for `_SAMPLE_SECONDS`)."""
        decisions, rewards = (
            self._store.log.last_seq(Stream.DECISIONS, loop),
            self._store.log.last_seq(Stream.REWARDS, loop),
        )
        cached = self._means.get(loop)
        if cached is None or cached[0] < time.monotonic():
            means = {
                f"reward_last_{name}": _sampled_mean(
                    self._store, loop, first_since(self._store, Stream.JOINED, loop, now - span)
                )
                for name, span in (("hour", 3600), ("day", 86400))
            }
            cached = self._means[loop] = (time.monotonic() + _SAMPLE_SECONDS, means)
        return {
            "decisions_last_minute": decisions + 1 - first_since(self._store, Stream.DECISIONS, loop, now - 60),
            "rewards_last_minute": rewards + 1 - first_since(self._store, Stream.REWARDS, loop, now - 60),
        } | cached[1]

    def loop(self, call: HttpCall) -> dict[str, Any]:
        name = call.path_params["loop"]
        config = self._admin("GetLoop", admin_pb2.GetLoopRequest(loop=name))
        stats = self._admin("GetStats", admin_pb2.GetStatsRequest(loop=name))
        models = self._admin("ListModels", admin_pb2.ListModelsRequest(loop=name))
        return {"now": self._services.clock(), "config": to_json(config), "stats": to_json(stats)} | to_json(models)

    def series(self, call: HttpCall) -> dict[str, Any]:
        """Per minute over the last `minutes`: decisions by channel and action, and the mean reward (with its
        interval) of joined decisions by group (treatment, holdout)."""
        loop = call.path_params["loop"]
        self._admin("GetLoop", admin_pb2.GetLoopRequest(loop=loop))
        minutes = _query_int(call, "minutes", 60, 1, _MAX_MINUTES)
        now = self._services.clock()
        first = math.floor(now / 60) * 60 - (minutes - 1) * 60
        channels: dict[float, Counter] = defaultdict(Counter)
        actions: dict[float, Counter] = defaultdict(Counter)
        decisions, cut_decisions = _window(self._store, Stream.DECISIONS, loop, first, records_pb2.DecisionRecord)
        for decision in decisions:
            minute = math.floor(decision.timestamp / 60) * 60
            chosen = decision.actions[decision.chosen_index] if decision.actions else None
            channels[minute][chosen.channel if chosen else ""] += 1
            actions[minute][chosen.id if chosen else ""] += 1
        rewards: dict[str, dict[float, list[float]]] = {"treatment": defaultdict(list), "holdout": defaultdict(list)}
        joins, cut_joins = _window(self._store, Stream.JOINED, loop, first, records_pb2.JoinedEvent)
        for joined in joins:
            minute = math.floor(joined.decision.timestamp / 60) * 60
            rewards["holdout" if joined.decision.holdout else "treatment"][minute].append(joined.reward)
        return {
            "now": now,
            "minutes": [first + 60 * i for i in range(minutes)],
            "channels": {str(m): dict(c) for m, c in channels.items()},
            "actions": {str(m): dict(c) for m, c in actions.items()},
            "reward": {
                group: {str(m): _mean_interval(values) for m, values in by_minute.items()}
                for group, by_minute in rewards.items()
            },
            "truncated": cut_decisions or cut_joins,
        }

    def decisions(self, call: HttpCall) -> dict[str, Any]:
        """The newest decisions (before seq `before`) that match the filters: subject, action, channel, and
        `reward`: joined (rewarded or defaulted), rewarded, defaulted or pending."""
        loop = call.path_params["loop"]
        self._admin("GetLoop", admin_pb2.GetLoopRequest(loop=loop))
        query = call.request.query_params
        limit = _query_int(call, "limit", 50, 1, _MAX_PAGE)
        before = _query_int(call, "before", 0, 0, 2**62)
        subject, action, channel = query.get("subject", ""), query.get("action", ""), query.get("channel", "")
        reward = query.get("reward", "")
        if reward not in ("", "joined", "rewarded", "defaulted", "pending"):
            raise HttpError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "query parameter 'reward': one of joined, rewarded, defaulted, pending",
            )
        found: list[dict[str, Any]] = []
        last_seq = before
        for seq, raw in newest(self._store, Stream.DECISIONS, loop, before):
            last_seq = seq
            decision = records_pb2.DecisionRecord.FromString(raw)
            chosen = decision.actions[decision.chosen_index] if decision.actions else None
            if subject and decision.subject_id != subject:
                continue
            if action and (chosen is None or chosen.id != action):
                continue
            if channel and (chosen is None or chosen.channel != channel):
                continue
            joined = self._joined(loop, decision.event_id)
            if reward and _reward_state(joined) != reward and not (reward == "joined" and joined is not None):
                continue
            found.append(_summary(seq, decision, joined))
            if len(found) == limit:
                break
        return {"decisions": found, "next_before": last_seq if last_seq > 1 else 0}

    def _joined(self, loop: str, event_id: str) -> records_pb2.JoinedEvent | None:
        raw = self._store.log.get(Stream.JOINED, loop, event_id)
        return records_pb2.JoinedEvent.FromString(raw) if raw is not None else None

    def decision(self, call: HttpCall) -> dict[str, Any]:
        """One decision, whole: its record, its join outcome and the rewards for it among the newest rewards."""
        loop, event_id = call.path_params["loop"], call.path_params["event_id"]
        self._admin("GetLoop", admin_pb2.GetLoopRequest(loop=loop))
        raw = self._store.log.get(Stream.DECISIONS, loop, event_id)
        if raw is None:
            raise HttpError(grpc.StatusCode.NOT_FOUND, f"event_id: no decision {event_id!r} in loop {loop!r}")
        decision = records_pb2.DecisionRecord.FromString(raw)
        joined = self._joined(loop, event_id)
        rewards = []
        for _, reward_raw in newest(self._store, Stream.REWARDS, loop):
            reward = records_pb2.RewardRecord.FromString(reward_raw)
            if reward.event_id == event_id:
                rewards.append(to_json(reward))
            if reward.timestamp < decision.timestamp:
                break
        return {
            "decision": to_json(decision),
            "state": _reward_state(joined),
            "joined": to_json(joined) | {"decision": None} if joined is not None else None,
            "rewards": rewards,
        }


def _reward_state(joined: records_pb2.JoinedEvent | None) -> str:
    if joined is None:
        return "pending"
    return "defaulted" if joined.defaulted else "rewarded"


def _summary(seq: int, decision: records_pb2.DecisionRecord, joined: records_pb2.JoinedEvent | None) -> dict:
    chosen = decision.actions[decision.chosen_index] if decision.actions else None
    return {
        "seq": seq,
        "event_id": decision.event_id,
        "timestamp": decision.timestamp,
        "subject_id": decision.subject_id,
        "action": chosen.id if chosen else None,
        "channel": chosen.channel if chosen else None,
        "probability": decision.pmf[decision.chosen_index] if decision.pmf else None,
        "holdout": decision.holdout,
        "state": _reward_state(joined),
        "reward": joined.reward if joined is not None else None,
    }
