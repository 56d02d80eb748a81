"""`nextbest serve --workers N --trainers M`: N server processes sharing one port and one store, M trainers.

The parent process opens the store, creates the loop `default` if needed,
runs a trainer (joiner, learner, retention) and the metrics endpoint, and
spawns the workers and the other M - 1 trainers. Each worker opens the store
itself, binds the port with SO_REUSEPORT (the kernel spreads connections
over them) and serves gRPC without training; it picks up every model the
trainers publish through the store. Each trainer process opens the store
itself and takes its share of the loops' leases (see `Trainer`), so that
several loops learn in parallel. A worker or trainer process that dies is
started again. SIGTERM or SIGINT stops the workers gracefully, then the
trainers.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nextbest.server.logs import configure, current_format

if TYPE_CHECKING:
    from nextbest.server.app import ServerSettings
    from nextbest.server.restrictions import Restrictions

log = logging.getLogger("nextbest")

_READY_TIMEOUT = 60.0


def free_port(host: str) -> int:
    """A port that was free on `host` a moment ago."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def die_with_parent() -> None:
    """Make the kernel kill this worker when the parent dies, however it dies (Linux: PR_SET_PDEATHSIG);
    elsewhere a thread watches the parent and exits when it is gone."""
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) == 0:  # PR_SET_PDEATHSIG
            if os.getppid() != parent:  # the parent died before prctl took effect
                os._exit(1)
            return
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _child(kind: str, log_level: str, log_format: str, restrictions: Restrictions) -> threading.Event:
    """Set up a child process of `serve`: its logging, its end with the parent, SIGTERM setting the returned event
    (SIGINT is the parent's to act on) and the parent's restrictions (every process that creates policies has the
    same)."""
    configure(log_level, log_format, f"{kind} {os.getpid()}")
    die_with_parent()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    restrictions.apply()
    return stopping


def _worker(
    store_path: str,
    store_options: dict[str, Any],
    host: str,
    port: int,
    settings: ServerSettings,
    grace: float,
    ready: Any,
    log_level: str,
    log_format: str,
) -> None:
    stopping = _child("worker", log_level, log_format, settings.restrictions)
    from nextbest.server.store import open_store

    server = settings.worker_server(open_store(store_path, **store_options), host, port).start()
    ready.put(os.getpid())
    stopping.wait()
    server.stop(grace=grace)


def _trainer(
    store_path: str,
    store_options: dict[str, Any],
    restrictions: Restrictions,
    keep_models: int,
    lease_seconds: float,
    trainers: int,
    ready: Any,
    log_level: str,
    log_format: str,
) -> None:
    stopping = _child("trainer", log_level, log_format, restrictions)
    from nextbest.server.store import open_store
    from nextbest.server.trainer import Trainer

    store = open_store(store_path, **store_options)
    trainer = Trainer(store, keep_models=keep_models, lease_seconds=lease_seconds, trainers=trainers)
    trainer.start()
    ready.put(os.getpid())
    stopping.wait()
    trainer.stop()
    store.close()


class ProcessPool:
    """Runs and supervises `count` processes of `target(*args, ready, log_level, log_format)`; each puts its pid in
    `ready` once it works."""

    def __init__(self, kind: str, count: int, target: Callable[..., None], args: tuple) -> None:
        self._kind = kind
        self._target = target
        self._args = args
        self._count = count
        self._context = multiprocessing.get_context("spawn")  # the processes open the store themselves
        self._ready = self._context.Queue()
        self._procs: list[multiprocessing.Process] = []
        self._stopping = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, name=f"{kind}s", daemon=True)

    def start(self) -> None:
        """Start every process and wait until each works."""
        for _ in range(self._count):
            self._procs.append(self._spawn())
        for _ in range(self._count):
            self._ready.get(timeout=_READY_TIMEOUT)
        self._supervisor.start()

    def _spawn(self) -> multiprocessing.Process:
        level = logging.getLevelName(logging.getLogger().level)
        args = (*self._args, self._ready, level, current_format())
        proc = self._context.Process(target=self._target, args=args, daemon=False)
        proc.start()
        return proc

    def _supervise(self) -> None:
        while not self._stopping.wait(0.5):
            for i, proc in enumerate(self._procs):
                if not proc.is_alive() and not self._stopping.is_set():
                    log.error("%s %s exited with %s; starting another", self._kind, proc.pid, proc.exitcode)
                    self._procs[i] = self._spawn()

    def stop(self, timeout: float) -> None:
        """SIGTERM every process (each finishes what it is doing), then wait up to `timeout` s for each."""
        self._stopping.set()
        for proc in self._procs:
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self._procs:
            proc.join(timeout)
            if proc.is_alive():
                log.error("%s %s did not stop in time; killing it", self._kind, proc.pid)
                proc.kill()
                proc.join()


class WorkerPool(ProcessPool):
    """Runs and supervises the worker processes."""

    def __init__(
        self,
        count: int,
        store_path: str,
        store_options: dict[str, Any],
        host: str,
        port: int,
        settings: ServerSettings,
        grace: float,
    ) -> None:
        super().__init__("worker", count, _worker, (store_path, store_options, host, port, settings, grace))
        self._metrics_dir: tempfile.TemporaryDirectory | None = None

    def start(self) -> None:
        """Start every worker and wait until each serves."""
        if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:  # aggregate the workers' RPC metrics
            self._metrics_dir = tempfile.TemporaryDirectory(prefix="nextbest-metrics-")
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = self._metrics_dir.name
        super().start()

    def stop(self, grace: float) -> None:
        """SIGTERM every worker (each finishes its in-flight calls), then wait for them."""
        super().stop(grace + 10)
        if self._metrics_dir is not None:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
            self._metrics_dir.cleanup()


class TrainerPool(ProcessPool):
    """Runs and supervises the trainer processes beyond the parent's trainer (`nextbest serve --trainers`)."""

    def __init__(
        self,
        count: int,
        store_path: str,
        store_options: dict[str, Any],
        restrictions: Restrictions,
        keep_models: int,
        lease_seconds: float,
    ) -> None:
        trainers = count + 1  # with the parent's
        args = (store_path, store_options, restrictions, keep_models, lease_seconds, trainers)
        super().__init__("trainer", count, _trainer, args)
