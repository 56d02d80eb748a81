"""Compare policies on a pinball world through a real nextbest service.

Both run the same world code and the same featurization; the oracle runs
alongside as the reference. Rewards are summed over a window of one world
day (`REWARD_WAIT_SECONDS`): clicks and most purchases arrive within it, late
purchases never reach the learner, and a decision without any reward counts 0.

A loop either gets the history features from the caller or sends subject ids
and lets the service keep the history (`Loop.subjects`). A contact policy is
the whole store's, so loops with different ones (`Loop.contact_policy`) run on
separate servers that share the world clock.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from nextbest.sim.arms import Arm, OracleArm, ServiceArm
from nextbest.sim.config import WorldConfig
from nextbest.sim.journey import CONTACT_POLICY, KEPT_JOURNEY_SPEC, SCRIPT_SPEC
from nextbest.sim.population import Population
from nextbest.sim.simulate import DAY, EPOCH, Progress, Run, simulate
from nextbest.testing import FakeClock, running_server
from nextbest.v1 import admin_pb2

REWARD_WAIT_SECONDS = DAY
PUBLISH_INTERVAL_SECONDS = 0.25  # wall-clock: the learner publishes on real time, the world runs faster
DEMO_DAYS = 28.0
# occasions per wall-clock second that the demo's four loops get through on a 2-core laptop
DEMO_OCCASIONS_PER_SECOND = 58.0


@dataclass(frozen=True)
class Loop:
    """A loop to compare: its policy spec (empty: the server's default), whether it sends subject ids and leaves
    the history to the service, the store's contact policy it runs under (JSON; empty: none), and more LoopConfig
    fields (e.g. `holdout_fraction`)."""

    spec: str
    subjects: bool = False
    contact_policy: str = ""
    config: tuple[tuple[str, object], ...] = ()


# `nextbest demo`: every customer by subject id; the journey under its weekly cap as the store's contact rule (on a
# server of its own); the default policy keeps a tenth of its customers on the journey (its holdout, capping on the
# service's count) to measure its lift
DEMO_HOLDOUT_FRACTION = 0.1
DEMO_LOOPS = {
    "journey": Loop(SCRIPT_SPEC, subjects=True, contact_policy=CONTACT_POLICY),
    "random": Loop("random", subjects=True),
    "vw-default": Loop(  # the server's default policy
        "",
        subjects=True,
        config=(("holdout_fraction", DEMO_HOLDOUT_FRACTION), ("holdout_policy", KEPT_JOURNEY_SPEC)),
    ),
    "vw-squarecb": Loop("vw:--cb_explore_adf --squarecb -q ::", subjects=True),
}


def demo_config(seconds: float) -> WorldConfig:
    """The world of `nextbest demo`: four weeks, with as many customers as `seconds` of running allow."""
    customers = max(10, round(seconds * DEMO_OCCASIONS_PER_SECOND / DEMO_DAYS))
    return WorldConfig(customers=customers, days=DEMO_DAYS)


def memory_dir() -> str | None:
    """/dev/shm when there is one, for temporary stores: the store fsyncs every write, which costs nothing in memory."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def through_service(
    population: Population,
    loops: Mapping[str, str | Loop],
    store: str | Path | None = None,
    *,
    extra: Sequence[Arm] = (),
    progress: Progress | None = None,
) -> tuple[Run, dict[str, admin_pb2.LoopStats]]:
    """Run `loops` (loop name → spec, or `Loop`) as loops of nextbest servers started on `store`, and the oracle.

    The servers run in-process on free loopback ports with a FakeClock that
    follows the world clock, one per contact policy (in a subdirectory of
    `store` each). Without `store`, they run on a temporary store (in
    `memory_dir()`), removed afterwards. `extra` arms (e.g. in-process twins of a loop)
    run alongside. Returns the run and each loop's GetStats at the end.
    """
    if store is None:
        with tempfile.TemporaryDirectory(prefix="nextbest-pinball-", dir=memory_dir()) as temporary:
            return through_service(population, loops, temporary, extra=extra, progress=progress)
    plans = {name: Loop(loop) if isinstance(loop, str) else loop for name, loop in loops.items()}
    policies = sorted({plan.contact_policy for plan in plans.values()})
    clock = FakeClock(EPOCH)
    with contextlib.ExitStack() as servers:
        clients = {}
        for i, policy in enumerate(policies):
            _, clients[policy] = servers.enter_context(running_server(Path(store) / f"server-{i}", clock=clock))
            if policy:
                clients[policy].set_contact_policy(policy)
        arms: list[Arm] = [
            ServiceArm.create(
                clients[plan.contact_policy],
                name,
                plan.spec,
                REWARD_WAIT_SECONDS,
                PUBLISH_INTERVAL_SECONDS,
                subjects=plan.subjects,
                **dict(plan.config),
            )
            for name, plan in plans.items()
        ]
        run = simulate(population, [*arms, *extra, OracleArm()], clock=clock, progress=progress)
        return run, {name: clients[plan.contact_policy].stats(name) for name, plan in plans.items()}
