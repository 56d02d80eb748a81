"""Prometheus metrics: per-RPC and per-HTTP-route counts and latencies (interceptors) and per-loop gauges (a
collector).

Exposed over HTTP by `nextbest serve --metrics-port P` at `/metrics` only (any
other path: 404), on 127.0.0.1 unless `--metrics-host` says otherwise: the
endpoint has no authentication. The loop gauges are computed at most once per
`LOOP_STATS_SECONDS`, however often it is scraped. With several worker
processes the RPC metrics of every worker are aggregated through
prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import grpc
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from nextbest.server.stats import loop_stats
from nextbest.server.store import Store

LOOP_STATS_SECONDS = 5.0
METRICS_PATH = "/metrics"
_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class RpcMetrics:
    """Request counters and latency histograms by method and status code (and of HTTP calls, by route and HTTP
    status), decisions answered unlogged, and live models a serving process could not load."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.requests = Counter(
            "nextbest_rpc_requests", "RPCs handled, by method and status code", ["method", "code"], registry=registry
        )
        self.latency = Histogram(
            "nextbest_rpc_latency_seconds",
            "RPC handling time, by method",
            ["method"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.unlogged = Counter(
            "nextbest_unlogged_decisions",
            "Decisions answered without being logged: the store was full (serve --serve-without-logging)",
            ["loop"],
            registry=registry,
        )

        self.model_load_failures = Counter(
            "nextbest_model_load_failures",
            "Live model versions a serving process could not load (it kept serving the previous model)",
            ["loop"],
            registry=registry,
        )

        self.http_requests = Counter(
            "nextbest_http_requests",
            "HTTP calls handled, by route and HTTP status",
            ["route", "status"],
            registry=registry,
        )
        self.http_latency = Histogram(
            "nextbest_http_latency_seconds",
            "HTTP call handling time, by route",
            ["route"],
            buckets=_BUCKETS,
            registry=registry,
        )

    def observe(self, method: str, code: grpc.StatusCode | None, seconds: float) -> None:
        self.requests.labels(method, (code or grpc.StatusCode.OK).name).inc()
        self.latency.labels(method).observe(seconds)

    def observe_http(self, route: str, status: int, seconds: float) -> None:
        self.http_requests.labels(route, str(status)).inc()
        self.http_latency.labels(route).observe(seconds)

    def unlogged_decision(self, loop: str) -> None:
        self.unlogged.labels(loop).inc()

    def model_load_failure(self, loop: str) -> None:
        self.model_load_failures.labels(loop).inc()


class MetricsInterceptor(grpc.ServerInterceptor):
    """Counts every RPC and times it, whatever its outcome."""

    def __init__(self, metrics: RpcMetrics) -> None:
        self._metrics = metrics

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method.rsplit(".", 1)[-1]  # e.g. DecisionService/Rank
        if handler.unary_unary:
            return handler._replace(unary_unary=self._timed(method, handler.unary_unary))
        if handler.stream_unary:
            return handler._replace(stream_unary=self._timed(method, handler.stream_unary))
        if handler.unary_stream:
            return handler._replace(unary_stream=self._timed_stream(method, handler.unary_stream))
        return handler

    def _timed(self, method: str, fn: Callable) -> Callable:
        def call(request, context):
            start = time.perf_counter()
            try:
                return fn(request, context)
            finally:
                self._metrics.observe(method, _code(context), time.perf_counter() - start)

        return call

    def _timed_stream(self, method: str, fn: Callable) -> Callable:
        def call(request, context) -> Iterator:
            start = time.perf_counter()
            try:
                yield from fn(request, context)
            finally:
                self._metrics.observe(method, _code(context), time.perf_counter() - start)

        return call


def _code(context: grpc.ServicerContext) -> grpc.StatusCode | None:
    code = context.code()
    return code if isinstance(code, grpc.StatusCode) else None


class LoopCollector:
    """Per-loop gauges read from the store at scrape time, at most once per `cache_seconds` (by `clock`):
    they read every loop's log, which a scraper must not be able to make the server do at will."""

    def __init__(
        self,
        store: Store,
        stats: Callable[[str], object] | None = None,
        *,
        cache_seconds: float = LOOP_STATS_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._stats = stats or (lambda loop: loop_stats(store, loop))
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now = self._clock()
            if self._cached is None or now - self._cached[0] >= self._cache_seconds:
                self._cached = (now, list(self._compute()))
            return iter(self._cached[1])

    def _compute(self) -> Iterator[Metric]:
        counters = {
            "decisions": "Decisions logged",
            "rewards": "Rewards received",
            "joined": "Decisions whose reward window closed",
            "default_rewarded": "Joined decisions that took the default reward",
            "orphan_rewards": "Rewards for events never seen",
            "late_rewards": "Rewards after their window",
            "learned": "Joined events consumed by the learner",
            "refused_models": "Models not published because their predictions were not finite",
        }
        families = {
            name: CounterMetricFamily(f"nextbest_{name}", help_, labels=["loop"]) for name, help_ in counters.items()
        }
        gauges = {
            "learner_lag_events": GaugeMetricFamily(
                "nextbest_learner_lag_events", "Joined events not yet learned", labels=["loop"]
            ),
            "learner_lag_seconds": GaugeMetricFamily(
                "nextbest_learner_lag_seconds", "Age of the oldest joined event not yet learned", labels=["loop"]
            ),
            "pending_decisions": GaugeMetricFamily(
                "nextbest_pending_decisions", "Decisions whose window is open", labels=["loop"]
            ),
            "model_version": GaugeMetricFamily("nextbest_model_version", "Live model version", labels=["loop"]),
            "model_age_seconds": GaugeMetricFamily(
                "nextbest_model_age_seconds", "Seconds since the live model was published", labels=["loop"]
            ),
        }
        now = time.time()
        for loop in sorted(self._store.configs.list()):
            stats = self._stats(loop)
            for name, family in families.items():
                family.add_metric([loop], getattr(stats, name))
            for name in ("learner_lag_events", "learner_lag_seconds", "pending_decisions"):
                gauges[name].add_metric([loop], getattr(stats, name))
            gauges["model_version"].add_metric([loop], int(stats.model_version))
            live = self._store.models.live(loop)
            gauges["model_age_seconds"].add_metric([loop], now - live.created_at if live else 0.0)
        store = GaugeMetricFamily("nextbest_store_bytes", "Bytes the store's data takes")
        store.add_metric([], self._store.used_bytes())
        yield from families.values()
        yield from gauges.values()
        yield store


class Metrics:
    """The metrics of one server: RPC metrics for its interceptor, loop gauges, and the HTTP endpoint.

    In multiprocess mode (PROMETHEUS_MULTIPROC_DIR set in every process) the
    RPC metrics of all processes are aggregated by the one that serves HTTP.
    """

    def __init__(self, store: Store, stats: Callable[[str], object] | None = None) -> None:
        self.registry = CollectorRegistry()
        multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.rpc = RpcMetrics(None if multiprocess else self.registry)
        if multiprocess:
            MultiProcessCollector(self.registry)
        self.registry.register(LoopCollector(store, stats))
        self._http = None

    def interceptor(self) -> MetricsInterceptor:
        return MetricsInterceptor(self.rpc)

    def serve(self, host: str, port: int) -> int:
        """Serve /metrics on host:port (0 picks a free port) in a background thread; returns the port."""
        self._http = _MetricsServer(host, port, self.registry)
        threading.Thread(target=self._http.serve_forever, name="metrics-http", daemon=True).start()
        return self._http.server_port

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()


class _MetricsHandler(BaseHTTPRequestHandler):
    """GET /metrics: the server's registry in Prometheus' text format; any other path: 404."""

    server: _MetricsServer

    def do_GET(self) -> None:
        if urlsplit(self.path).path != METRICS_PATH:
            self.send_error(404, f"not found: metrics are at {METRICS_PATH}")
            return
        body = generate_latest(self.server.registry)
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # scrapes are not worth a log line each
        pass


class _MetricsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, registry: CollectorRegistry) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.registry = registry
        super().__init__((host.strip("[]"), port), _MetricsHandler)
