"""`nextbest serve --workers N`: N server processes sharing one port and one store, one trainer.

The parent process opens the store, creates the loop `default` if needed,
runs the trainer (joiner, learner, retention) and the metrics endpoint, and
spawns the workers. Each worker opens the store itself, binds the port with
SO_REUSEPORT (the kernel spreads connections over them) and serves gRPC
without training; it picks up every model the trainer publishes through the
store. A worker that dies is started again. SIGTERM or SIGINT stops the
workers gracefully, then the trainer.
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
from typing import TYPE_CHECKING, Any

from nextbest.server.logs import configure, current_format

if TYPE_CHECKING:
    from nextbest.server.app import ServerSettings

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
    configure(log_level, log_format, f"worker {os.getpid()}")
    from nextbest.server.store import open_store

    die_with_parent()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides
    settings.restrictions.apply()  # as the parent did: the same for every process that creates policies
    server = settings.worker_server(open_store(store_path, **store_options), host, port).start()
    ready.put(os.getpid())
    stopping.wait()
    server.stop(grace=grace)


class WorkerPool:
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
        self._args = (store_path, store_options, host, port, settings, grace)
        self._count = count
        self._context = multiprocessing.get_context("spawn")  # workers open the store themselves
        self._ready = self._context.Queue()
        self._procs: list[multiprocessing.Process] = []
        self._stopping = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, name="workers", daemon=True)
        self._metrics_dir: tempfile.TemporaryDirectory | None = None

    def start(self) -> None:
        """Start every worker and wait until each serves."""
        if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:  # aggregate the workers' RPC metrics
            self._metrics_dir = tempfile.TemporaryDirectory(prefix="nextbest-metrics-")
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = self._metrics_dir.name
        for _ in range(self._count):
            self._procs.append(self._spawn())
        for _ in range(self._count):
            self._ready.get(timeout=_READY_TIMEOUT)
        self._supervisor.start()

    def _spawn(self) -> multiprocessing.Process:
        level = logging.getLevelName(logging.getLogger().level)
        args = (*self._args, self._ready, level, current_format())
        proc = self._context.Process(target=_worker, args=args, daemon=False)
        proc.start()
        return proc

    def _supervise(self) -> None:
        while not self._stopping.wait(0.5):
            for i, proc in enumerate(self._procs):
                if not proc.is_alive() and not self._stopping.is_set():
                    log.error("worker %s exited with %s; starting another", proc.pid, proc.exitcode)
                    self._procs[i] = self._spawn()

    def stop(self, grace: float) -> None:
        """SIGTERM every worker (each finishes its in-flight calls), then wait for them."""
        self._stopping.set()
        for proc in self._procs:
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self._procs:
            proc.join(grace + 10)
            if proc.is_alive():
                log.error("worker %s did not stop in time; killing it", proc.pid)
                proc.kill()
                proc.join()
        if self._metrics_dir is not None:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
            self._metrics_dir.cleanup()
