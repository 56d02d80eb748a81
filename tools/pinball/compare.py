"""Compare policies on a pinball world: through a real nextbest service, or in-process for fast sweeps.

Both run the same world code and the same featurization; the oracle runs
alongside as the reference. Rewards are summed over a window of one world
day (`REWARD_WAIT_SECONDS`): clicks and most purchases arrive within it, late
purchases never reach the learner, and a decision without any reward counts 0.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from nextbest.server.config import DEFAULT_POLICY
from nextbest.sim.arms import Arm, LocalArm, OracleArm, ServiceArm
from nextbest.sim.config import WorldConfig
from nextbest.sim.journey import JOURNEY_SPEC
from nextbest.sim.population import Population
from nextbest.sim.simulate import DAY, EPOCH, Progress, Run, simulate
from nextbest.testing import FakeClock, running_server
from nextbest.v1 import admin_pb2

REWARD_WAIT_SECONDS = DAY
PUBLISH_INTERVAL_SECONDS = 0.25  # wall-clock: the learner publishes on real time, the world runs faster
DEMO_DAYS = 28.0
# occasions per wall-clock second that the demo's four loops get through on a 2-core laptop
DEMO_OCCASIONS_PER_SECOND = 58.0

# the policies `nextbest demo` compares, by loop name
DEMO_POLICIES = {
    "journey": JOURNEY_SPEC,
    "random": "random",
    "vw-default": DEFAULT_POLICY,
    "vw-squarecb": "vw:--cb_explore_adf --squarecb -q ::",
}


def demo_config(seconds: float) -> WorldConfig:
    """The world of `nextbest demo`: four weeks, with as many customers as `seconds` of running allow."""
    customers = max(10, round(seconds * DEMO_OCCASIONS_PER_SECOND / DEMO_DAYS))
    return WorldConfig(customers=customers, days=DEMO_DAYS)


def in_process(population: Population, policies: Mapping[str, str], *, progress: Progress | None = None) -> Run:
    """Run `policies` (name → spec) in-process (`LocalArm`), and the oracle, over `population`."""
    arms: list[Arm] = [LocalArm(name, spec, REWARD_WAIT_SECONDS) for name, spec in policies.items()]
    return simulate(population, [*arms, OracleArm()], progress=progress)


def through_service(
    population: Population,
    policies: Mapping[str, str],
    store: str | Path | None = None,
    *,
    extra: Sequence[Arm] = (),
    progress: Progress | None = None,
) -> tuple[Run, dict[str, admin_pb2.LoopStats]]:
    """Run `policies` (loop name → spec) as loops of a nextbest server started on `store`, and the oracle.

    The server runs in-process on a free loopback port with a FakeClock that
    follows the world clock. Without `store`, it runs on a temporary store
    (in /dev/shm when there is one: the store fsyncs every write, which costs
    nothing in memory), removed afterwards. `extra` arms (e.g. in-process
    twins of a loop) run alongside. Returns the run and each loop's GetStats
    at the end.
    """
    if store is None:
        shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        with tempfile.TemporaryDirectory(prefix="nextbest-pinball-", dir=shm) as temporary:
            return through_service(population, policies, temporary, extra=extra, progress=progress)
    clock = FakeClock(EPOCH)
    with running_server(store, clock=clock) as (_, client):
        arms: list[Arm] = [
            ServiceArm.create(client, name, spec, REWARD_WAIT_SECONDS, PUBLISH_INTERVAL_SECONDS)
            for name, spec in policies.items()
        ]
        run = simulate(population, [*arms, *extra, OracleArm()], clock=clock, progress=progress)
        return run, {name: client.stats(name) for name in policies}
