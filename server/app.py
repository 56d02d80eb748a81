"""The nextbest server: gRPC services, the catalog of live models and the trainer, over one store."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field, fields, replace
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from nextbest.server.admin_service import AdminService
from nextbest.server.auth import ApiKeys, AuthInterceptor, exposure_problem
from nextbest.server.catalog import Catalog
from nextbest.server.config import Limits, default_loop_config
from nextbest.server.decision_service import DecisionService
from nextbest.server.errors import ErrorInterceptor
from nextbest.server.evaluation import EvaluationLimits
from nextbest.server.http.api import Services
from nextbest.server.http.app import HttpServer, build_app
from nextbest.server.learner import DEFAULT_KEEP_MODELS
from nextbest.server.loopfile import Change
from nextbest.server.metrics import Metrics
from nextbest.server.restrictions import Restrictions
from nextbest.server.store import Store, is_remote
from nextbest.server.subjects.contact import PolicyCache
from nextbest.server.subjects.keeper import SubjectKeeper
from nextbest.server.tls import ServerTls, TlsError
from nextbest.server.trainer import STOP_SECONDS, Trainer
from nextbest.v1 import admin_pb2, admin_pb2_grpc, decision_pb2, decision_pb2_grpc

log = logging.getLogger("nextbest")

SERVICE_NAMES = (
    decision_pb2.DESCRIPTOR.services_by_name["DecisionService"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
)


def _public_descriptors() -> descriptor_pool.DescriptorPool:
    """The files reflection may describe: the served services' and their imports, not the store's records."""
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(file: FileDescriptor) -> None:
        if file.name in added:
            return
        for dependency in file.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        pool.Add(proto)
        added.add(file.name)

    for file in (decision_pb2.DESCRIPTOR, admin_pb2.DESCRIPTOR, health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR):
        add(file)
    return pool


def ensure_default_loop(store: Store) -> None:
    """Create the loop `default` on a store that never had a loop."""
    if store.configs.generation() == 0:
        config = default_loop_config()
        config.version = 1
        store.configs.create(config.name, config.SerializeToString())


class NextbestServer:
    """A running nextbest server bound to `host:port` (port 0 picks a free one).

    `start()` creates the loop `default` on a new store, starts the catalog
    refresher, the trainer and the gRPC server. `stop()` finishes in-flight
    calls, then saves the trainer's positions and publishes pending models.

    Access: with `api_keys` every call but health checking and reflection needs
    a key with the method's scope (see `server.auth`); without keys the server
    binds only a loopback address unless `insecure` (ValueError otherwise).
    `tls` serves TLS, mutual TLS when it holds a client CA. `metrics_port` serves
    Prometheus metrics on `metrics_host` (loopback by default, whatever `host`). With
    `serve_without_logging` Rank answers unlogged when the store is full. `restrictions`
    are what the processes of Evaluate calls let policy specs reach (default: no `python:`
    modules, no `rules:` files; this process's own are set by whoever runs it, see
    `server.restrictions`); `evaluation` bounds those calls (see `server.evaluation`).
    `http_port` also serves the HTTP/JSON APIs on `host` (0 picks a free port; see
    `server.http`), with the same keys, TLS, limits and metrics; `http_port` is then the port.
    `http_allow_origins` lets browsers' pages from those origins call it (CORS).
    """

    def __init__(
        self,
        store: Store,
        host: str = "127.0.0.1",
        port: int = 50051,
        *,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.time,
        max_workers: int = 16,
        train: bool = True,
        keep_models: int = DEFAULT_KEEP_MODELS,
        retention_interval_seconds: float = 60.0,
        metrics_port: int | None = None,
        metrics_host: str = "127.0.0.1",
        rpc_metrics: bool | None = None,
        reuse_port: bool = False,
        api_keys: ApiKeys | None = None,
        tls: ServerTls | None = None,
        insecure: bool = False,
        serve_without_logging: bool = False,
        restrictions: Restrictions | None = None,
        evaluation: EvaluationLimits | None = None,
        http_port: int | None = None,
        http_allow_origins: tuple[str, ...] = (),
    ) -> None:
        problem = exposure_problem(host, api_keys, insecure)
        if problem:
            raise ValueError(problem)
        self.store = store
        self.limits = limits or Limits()
        self._host = host
        self._requested_port = port
        self.port = 0
        self._clock = clock
        self._max_workers = max_workers
        self.trainer = (
            Trainer(store, clock, keep_models=keep_models, retention_interval_seconds=retention_interval_seconds)
            if train
            else None
        )
        self._metrics_port = metrics_port
        self._metrics_host = metrics_host
        self._rpc_metrics = metrics_port is not None if rpc_metrics is None else rpc_metrics
        self.metrics_port = 0
        self._reuse_port = reuse_port
        self._api_keys = api_keys
        self._tls = tls
        self._serve_without_logging = serve_without_logging
        self._restrictions = restrictions
        self._evaluation = evaluation
        self._http_port = http_port
        self._http_allow_origins = http_allow_origins
        self.http_port = 0
        self.metrics: Metrics | None = None
        self._grpc: grpc.Server | None = None
        self._http: HttpServer | None = None
        self._health: health.HealthServicer | None = None
        self.catalog: Catalog | None = None

    @property
    def address(self) -> str:
        return f"{self._host}:{self.port}"

    def start(self) -> NextbestServer:
        ensure_default_loop(self.store)
        if self._rpc_metrics or self._metrics_port is not None:
            self.metrics = Metrics(self.store, lambda loop: admin.stats(loop))
        on_load_failure = self.metrics.rpc.model_load_failure if self.metrics else None
        self.catalog = Catalog(self.store, on_load_failure=on_load_failure)
        self.catalog.start()
        if self.trainer:
            self.trainer.start()
        contact_policy = PolicyCache(self.store.subjects)
        admin = AdminService(
            self.store, self.catalog, self.limits, self.trainer, self._evaluation, self._restrictions, contact_policy
        )
        interceptors: list[grpc.ServerInterceptor] = [ErrorInterceptor()]
        if self._api_keys is not None:
            interceptors.insert(0, AuthInterceptor(self._api_keys))
        if self.metrics:
            interceptors.insert(0, self.metrics.interceptor())
        if self._metrics_port is not None:
            self.metrics_port = self.metrics.serve(self._metrics_host, self._metrics_port)
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix="rpc"),
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", self.limits.max_message_bytes),
                ("grpc.so_reuseport", int(self._reuse_port)),
            ],
        )
        decisions = DecisionService(
            self.store.log,
            self.catalog,
            self.limits,
            self._clock,
            serve_without_logging=self._serve_without_logging,
            on_unlogged=self.metrics.rpc.unlogged_decision if self.metrics else None,
            subjects=SubjectKeeper(self.store.subjects, contact_policy),
        )
        decision_pb2_grpc.add_DecisionServiceServicer_to_server(decisions, server)
        admin_pb2_grpc.add_AdminServiceServicer_to_server(admin, server)
        self._health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        for name in (*SERVICE_NAMES, ""):
            self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server, _public_descriptors()
        )
        if self._http_port is not None:  # bound now: a port in use fails the start before gRPC serves
            self._http = self._http_server(decisions, admin)
        address = f"{self._host}:{self._requested_port}"
        if self._tls:
            try:
                self.port = server.add_secure_port(address, self._tls.credentials())
            except RuntimeError as e:  # gRPC logs the reason, e.g. a key that does not match the certificate
                raise TlsError(f"cannot serve TLS on {address}: {e} (does the key match the certificate?)") from None
        else:
            self.port = server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot bind {self._host}:{self._requested_port}")
        server.start()
        self._grpc = server
        if self._http is not None:
            self.http_port = self._http.start().port
        return self

    def _http_server(self, decisions: DecisionService, admin: AdminService) -> HttpServer:
        assert self._http_port is not None
        metrics = self.metrics.rpc if self.metrics else None
        services = Services(decisions, admin, self.limits, self._api_keys, metrics, self.store, self._clock)
        app = build_app(services, self._http_allow_origins)
        return HttpServer(app, self._host, self._http_port, tls=self._tls, reuse_port=self._reuse_port)

    def wait(self) -> None:
        assert self._grpc is not None
        self._grpc.wait_for_termination()

    def stop(self, grace: float = 5.0) -> None:
        """Graceful stop: refuse new calls, finish in-flight ones, checkpoint, close the store."""
        if self._health is not None:
            self._health.enter_graceful_shutdown()
        grpc_stopped = self._grpc.stop(grace) if self._grpc is not None else None  # both finish in-flight calls
        if self._http is not None:
            self._http.stop(grace)
        if grpc_stopped is not None:
            grpc_stopped.wait()
        if self.trainer:
            self.trainer.stop()
        if self.metrics:
            self.metrics.stop()
        if self.catalog:
            self.catalog.stop()
        self.store.close()

    def __enter__(self) -> NextbestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class ServerSettings:
    """What each serving process of `nextbest serve` is built with, from the command's flags (the worker
    processes receive it: picklable). Its fields are keywords of NextbestServer."""

    limits: Limits = field(default_factory=Limits)
    max_workers: int = 16
    api_keys: ApiKeys | None = None
    tls: ServerTls | None = None
    insecure: bool = False
    serve_without_logging: bool = False
    restrictions: Restrictions = field(default_factory=Restrictions)
    evaluation: EvaluationLimits | None = None
    rpc_metrics: bool = False
    http_port: int | None = None  # every worker serves HTTP on it too (SO_REUSEPORT); run_node resolves 0 first
    http_allow_origins: tuple[str, ...] = ()

    def worker_server(self, store: Store, host: str, port: int) -> NextbestServer:
        """A serving process's server: shares the port with the others and trains nothing (the parent does)."""
        settings = {f.name: getattr(self, f.name) for f in fields(self)}  # NextbestServer's keywords
        return NextbestServer(store, host, port, train=False, reuse_port=True, **settings)


@dataclass(frozen=True)
class Node:
    """A `nextbest serve` node: worker processes serving gRPC over one store and, on LMDB, a trainer and the
    metrics endpoint in the parent process, and `trainers` - 1 trainer processes more."""

    store: str
    store_options: dict[str, Any]
    host: str
    port: int
    workers: int
    grace: float
    server: ServerSettings
    keep_models: int = DEFAULT_KEEP_MODELS
    lease_seconds: float = 10.0
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    loops: dict[str, dict[str, Any]] | None = None  # declared loops (`--loops FILE`), applied at start
    trainers: int = 1


@dataclass(frozen=True)
class Started:
    """What a starting node tells its caller once every worker serves."""

    address: str
    loops: list[str]
    metrics_port: int
    http_port: int | None = None


def run_node(
    node: Node,
    store: Store,
    stopping: threading.Event,
    started: Callable[[Started], None] = lambda _: None,
    applied: Callable[[Change], None] | None = None,
) -> None:
    """Run `node` on the opened `store` until `stopping` is set; then stop the workers, the trainer and the
    metrics, and close the store. `applied` hears of each change the declared loops make; ServiceError for the
    first one refused (nothing runs then)."""
    from nextbest.server.workers import TrainerPool, WorkerPool, free_port

    if node.loops is not None:
        apply_declared_loops(store, node.loops, node.server.limits, applied)
    ensure_default_loop(store)
    port = node.port or free_port(node.host)
    settings = node.server
    if settings.http_port == 0:  # every worker must bind the same port: pick it here
        settings = replace(settings, http_port=free_port(node.host))
    pool = WorkerPool(node.workers, node.store, node.store_options, node.host, port, settings, node.grace)
    trainer, trainers = None, None
    if not is_remote(node.store):  # a replica of a shared store leaves training to `nextbest train`
        trainer = Trainer(store, keep_models=node.keep_models, lease_seconds=node.lease_seconds, trainers=node.trainers)
        trainer.start()
        if node.trainers > 1:
            trainers = TrainerPool(
                node.trainers - 1,
                node.store,
                node.store_options,
                settings.restrictions,
                node.keep_models,
                node.lease_seconds,
            )
            trainers.start()
    pool.start()
    metrics, metrics_port = None, 0
    if node.metrics_port is not None:
        metrics = Metrics(store, trainer.stats if trainer else None)
        metrics_port = metrics.serve(node.metrics_host, node.metrics_port)
    started(Started(f"{node.host}:{port}", sorted(store.configs.list()), metrics_port, settings.http_port))
    stopping.wait()
    pool.stop(node.grace)
    if trainers:
        trainers.stop(STOP_SECONDS + 10)
    if trainer:
        trainer.stop()
    if metrics:
        metrics.stop()
    store.close()


def apply_declared_loops(
    store: Store,
    declared: dict[str, dict[str, Any]],
    limits: Limits,
    applied: Callable[[Change], None] | None = None,
) -> None:
    """Make the store's loops match declared ones (a loops file) through the admin service's own calls, creating
    and changing, never deleting; ServiceError for the first change refused."""
    from nextbest.server.loopfile import apply, plan

    admin = AdminService(store, Catalog(store), limits)
    loops = admin.ListLoops(admin_pb2.ListLoopsRequest(), None).loops
    apply(plan(declared, list(loops)), lambda method, request: getattr(admin, method)(request, None), applied)
