"""Evaluate calls in a child process, bounded in events, memory and time.

Off-policy evaluation replays every candidate through every event of the range: CPU and memory that
grow with the range and the specs. So the serving process only waits: a spawned child opens the store
itself, applies the server's policy restrictions, reads at most `max_events` joined events, under an
address-space limit for its own data (RLIMIT_DATA) of `max_memory_bytes`, and is killed after
`timeout_seconds`. Each bound answers its own status naming the limit; nothing of the evaluation runs
on the threads that serve Rank, and it holds no lock of theirs.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from nextbest.server.errors import (
    Aborted,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    ServiceError,
)
from nextbest.server.restrictions import Restrictions
from nextbest.server.store import Store

if TYPE_CHECKING:
    from nextbest.policies.ope.report import EvaluationReport

log = logging.getLogger("nextbest")

_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class EvaluationLimits:
    """Bounds of one Evaluate call (serve --evaluate-max-events, --evaluate-max-memory, --evaluate-timeout)."""

    max_events: int = 100_000
    max_memory_bytes: int = 2 << 30
    timeout_seconds: float = 300.0


def evaluate_in_child(
    store: Store,
    loop: str,
    specs: Sequence[str],
    since: float | None,
    until: float | None,
    limits: EvaluationLimits,
    restrictions: Restrictions,
    active: Callable[[], bool] = lambda: True,
    *,
    importance: bool = False,
) -> EvaluationReport:
    """The report of `policies.ope.report.evaluate` on the loop's joined events in [since, until), computed in a
    child process within `limits`; a ServiceError naming the field or the limit otherwise. `active() == False`
    (the caller went away) ends the child early. `importance` adds the namespace importance of the best spec."""
    if not store.location:
        raise FailedPrecondition("Evaluate: this server's store cannot be opened by another process")
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no copy of the server's threads or locks
    answers, answer = context.Pipe(duplex=False)
    child = context.Process(
        target=_child,
        args=(answer, store.location, store.options, restrictions, limits, loop, list(specs), since, until, importance),
        name=f"nextbest-evaluate {loop}",
        daemon=True,
    )
    child.start()
    answer.close()
    try:
        outcome, detail = _wait(answers, child, limits, active)
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        answers.close()
    return _result(outcome, detail, loop, limits)


def _wait(
    answers: Connection, child: multiprocessing.process.BaseProcess, limits: EvaluationLimits, active: Callable
) -> tuple[str, Any]:
    deadline = time.monotonic() + limits.timeout_seconds
    while not answers.poll(_POLL_SECONDS):
        if time.monotonic() > deadline:
            return "timeout", None
        if not active():
            return "cancelled", None
    try:
        return answers.recv()
    except EOFError:  # ended without an answer: killed at its memory limit (std::bad_alloc aborts), or a crash
        child.join()
        return "died", child.exitcode


def _result(outcome: str, detail: Any, loop: str, limits: EvaluationLimits) -> EvaluationReport:
    if outcome == "ok":
        return detail
    if outcome == "specs":
        raise InvalidArgument(f"specs: {detail}")
    if outcome == "precondition":
        raise FailedPrecondition(f"loop {loop!r}: {detail}")
    if outcome == "events":
        raise ResourceExhausted(
            f"since/until: loop {loop!r} has more than {limits.max_events} joined events in the range (limit "
            "evaluate_max_events, serve --evaluate-max-events); evaluate a shorter range"
        )
    if outcome == "timeout":
        raise DeadlineExceeded(
            f"Evaluate: no result within {limits.timeout_seconds:g} s (limit evaluate_timeout, serve "
            "--evaluate-timeout); evaluate a shorter range or fewer specs"
        )
    if outcome == "cancelled":
        raise Aborted("Evaluate: the caller went away; the evaluation was stopped")
    if outcome == "error":
        log.error("Evaluate of loop %s failed in its process: %s", loop, detail)
        raise ServiceError(f"internal error: the evaluation failed ({detail.partition(':')[0]})")
    what = "ran out of memory" if outcome == "memory" else f"ended without a result (exit code {detail}), most likely"
    raise ResourceExhausted(
        f"Evaluate: the evaluation {what} at its memory limit of {limits.max_memory_bytes} bytes (limit "
        "evaluate_max_memory, serve --evaluate-max-memory); evaluate a shorter range or fewer specs"
    )


def _child(
    answer: Connection,
    location: str,
    options: dict[str, Any],
    restrictions: Restrictions,
    limits: EvaluationLimits,
    loop: str,
    specs: list[str],
    since: float | None,
    until: float | None,
    importance: bool,
) -> None:
    from nextbest.server.workers import die_with_parent

    die_with_parent()
    for threads in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # one core, as Rank needs the rest
        os.environ[threads] = "1"
    import nextbest.policies.ope.report  # noqa: F401  before the limit: a library starved as it loads may hang

    resource.setrlimit(resource.RLIMIT_DATA, (limits.max_memory_bytes, limits.max_memory_bytes))
    try:
        answer.send(
            _evaluate(location, options, restrictions, limits.max_events, loop, specs, since, until, importance)
        )
    except MemoryError:
        answer.send(("memory", None))
    except Exception as e:  # e.g. the store became unavailable; the server logs it
        answer.send(("error", f"{type(e).__name__}: {e}"))


def _evaluate(
    location: str,
    options: dict[str, Any],
    restrictions: Restrictions,
    max_events: int,
    loop: str,
    specs: list[str],
    since: float | None,
    until: float | None,
    importance: bool,
) -> tuple[str, Any]:
    from nextbest import policies
    from nextbest.policies.ope.report import evaluate
    from nextbest.server.export import joined_events, logged_event
    from nextbest.server.store import open_store

    restrictions.apply()
    with open_store(location, **options) as store:
        joined = joined_events(store, loop, since, until)
        events = [logged_event(j) for j in itertools.islice(joined, max_events + 1)]
    if len(events) > max_events:
        return "events", None
    try:
        return "ok", evaluate(events, specs, importance=importance)
    except policies.PolicySpecError as e:
        return "specs", str(e)
    except ValueError as e:  # e.g. too few events
        return "precondition", str(e)
