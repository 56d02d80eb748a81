"""Does one loop learn 5,000 joined events/s on one core? The trainer on a backlog, against VW alone.

    python -m benchmarks.learner --events 20000 --json learner.json --plot learner.png

Fill: a temporary LMDB store gets `--events` decisions of `nextbest bench`'s payload
(`nextbest.server.bench.load.Workload`: 3 context namespaces of 20 features, 10 actions of 5 features) through the
real decision path, a `NextbestServer(train=False)` whose catalog serves the loop and a DecisionService
called in this process (no gRPC), from `--callers` threads (a lone caller commits each append on its
own: a few hundred decisions/s), on a FakeClock; a seeded `--reward-fraction` of them get a Reward.
With `--subjects N` each Rank carries a subject id from a pool of N under `nextbest bench`'s contact policy
(`BENCH_CONTACT_POLICY`): its decisions hold the history features, and the trainer records their outcomes.
The loop: `--policy` (default: the service's default policy), ONLINE, a reward window of
`REWARD_WAIT_SECONDS` and a publish interval of `PUBLISH_SECONDS` (wall time, as in production). The
clock then moves past the window, so that every decision can be joined at once.

Trainer: a `Trainer` starts on the store (same clock) and works the backlog off; `Joiner.step`,
`Learner.step`, `Learner.publish`, and the passes' other readers of the joined stream,
`LiftCounter.step` and `SubjectOutcomes.step`, are timed while it runs (wall and thread CPU seconds
spent in each, and when the joiner had joined and the learner had learned every event). Every
`--sample-seconds` the loop's statistics (`trainer.stats`) are sampled: joined, learned (as
published), learner lag in events. Throughputs are events over wall time from the trainer's start:
joined/s, learned/s (in the learner's memory) and published/s (a model that learned every event is
in the store); `learned_per_cpu_second` divides by the trainer thread's CPU time in those steps
instead: what an otherwise idle core would reach, waits for the disk excluded.

Baselines, in the same run on the same events: `vw_direct` creates the policy and calls `learn` with
the LearnEvents of the joined stream, one at a time as the learner does (featurizing included);
`vw_lines` (VW policies) feeds a bare `vowpalwabbit.Workspace` the labeled text lines, prepared
beforehand, through `policies.vw.learn_lines` as the policy does (VW alone: its parse and learn).
`ratio`: the trainer's learned/s over vw_direct's events/s (`cpu_ratio`: the same per CPU second).
`stages_us` (VW policies): where a learned event's time goes, in thread CPU microseconds per event:
`join`, `learn`, `lift` and `outcomes` are the trainer's steps (publishing excluded); the learner's
own steps, `decode` (the joined event from its bytes), `learn_event`, `featurize` (the labeled VW
text) and `vw` (VW's parse, learn and finish), are timed around each step of each event in a pass
of their own over the joined events with a fresh workspace, so that the machine's load falls on
every step alike (their sum is not the trainer's `learn`: another pass, under another load).
The verdict compares the trainer's learned/s with `TARGET_PER_SECOND` (`target_ratio`), and its
learned events per CPU second (what an otherwise idle core reaches) too (`cpu_target_ratio`); the
machine's load average is reported with it, as context (the wall-clock figure is absolute).

The report (`--json`): {"version": 1, "plan": {...}, "calls": "in-process DecisionService (no gRPC)",
"machine": {"cpus", "loadavg_before", "loadavg_after"},
"fill": {"decisions", "rewards", "seconds", "decisions_per_second"},
"trainer": {"joined", "learned", "published", "defaulted", "joined_seconds", "learned_seconds",
"published_seconds", "joined_per_second", "learned_per_second", "published_per_second",
"step_seconds": {"join", "learn", "publish", "lift", "outcomes"}, "step_cpu_seconds": {...}, "publishes",
"learned_per_cpu_second"},
"samples": [{"t", "joined", "learned", "published", "lag_events"}],
"vw_direct": {"events", "seconds", "per_second", "cpu_seconds", "per_cpu_second"}, "vw_lines": {...} | null,
"stages_us": {"join", "learn", "lift", "outcomes", "decode", "learn_event", "featurize", "vw"} | null,
"ratio", "ratio_lines", "cpu_ratio", "target_per_second", "target_ratio", "cpu_target_ratio", "met", "cpu_met"}.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shlex
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import vowpalwabbit

from nextbest import policies
from nextbest.policies.vw import ccb_labeled_lines, learn_lines
from nextbest.server.app import NextbestServer
from nextbest.server.bench.load import BENCH_CONTACT_POLICY, PUBLISH_SECONDS, REWARD_WAIT_SECONDS, Workload
from nextbest.server.config import DEFAULT_POLICY, Mode, normalized
from nextbest.server.decision_service import DecisionService
from nextbest.server.joiner import GRACE_SECONDS, Joiner
from nextbest.server.learner import Learner, learn_event
from nextbest.server.lift import LiftCounter
from nextbest.server.store import Store, Stream, open_store
from nextbest.server.subjects.contact import PolicyCache
from nextbest.server.subjects.keeper import SubjectKeeper
from nextbest.server.subjects.outcomes import SubjectOutcomes
from nextbest.server.trainer import Trainer
from nextbest.testing import FakeClock
from nextbest.v1 import decision_pb2, records_pb2, types_pb2

TARGET_PER_SECOND = 5000.0
LOOP = "learner"
_READ_BATCH = 1000
_VERBS = (("joined", "join"), ("learned", "learn"), ("published", "publish"))  # report name, step name


@dataclass(frozen=True)
class Plan:
    events: int = 20_000
    policy: str = DEFAULT_POLICY
    reward_fraction: float = 0.5
    callers: int = 16  # filling threads: each append of a lone caller is a commit of its own
    sample_seconds: float = 0.25
    timeout_seconds: float = 600.0  # the trainer must have published every event by then
    seed: int = 1
    subjects: int = 0  # Rank with subject ids from a pool of this many, under the bench's contact policy


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _create_loop(store: Store, policy: str) -> None:
    config = normalized(
        types_pb2.LoopConfig(
            name=LOOP,
            policy=policy,
            reward_wait_seconds=REWARD_WAIT_SECONDS,
            publish_interval_seconds=PUBLISH_SECONDS,
            learning_mode=Mode.LEARNING_MODE_ONLINE,
        )
    )
    config.version = 1
    store.configs.create(LOOP, config.SerializeToString())


def _keeper(store: Store) -> SubjectKeeper:
    """The subject histories of `store` under the bench's contact policy."""
    policy = PolicyCache(store.subjects)
    policy.set(json.dumps(BENCH_CONTACT_POLICY))
    return SubjectKeeper(store.subjects, policy)


def fill(service: DecisionService, plan: Plan) -> dict[str, Any]:
    """`plan.events` Rank calls from `plan.callers` threads, each followed by a Reward for a seeded share."""
    workload = Workload(LOOP, plan.reward_fraction, plan.seed, plan.subjects)
    indices, rewards = itertools.count(1), itertools.count()
    every = max(1, plan.events // 10)
    start = time.perf_counter()

    def caller() -> None:
        while (i := next(indices)) <= plan.events:
            rank, reward = workload.call(i)
            service.Rank(decision_pb2.RankRequest.FromString(rank), None)
            if reward is not None:
                service.Reward(decision_pb2.RewardRequest.FromString(reward), None)
                next(rewards)
            if i % every == 0:
                progress(f"fill: {i:>10,}/{plan.events:,} decisions, {i / (time.perf_counter() - start):,.0f}/s")

    threads = [threading.Thread(target=caller, name=f"caller-{k}") for k in range(plan.callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    return {
        "decisions": plan.events,
        "rewards": next(rewards),
        "seconds": seconds,
        "decisions_per_second": plan.events / seconds,
    }


class StepTimer:
    """Seconds spent in the wrapped steps, their position after each call, and when it first reached `target`."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}  # of the calling thread: waits (disk, GIL, other processes) excluded
        self.calls: dict[str, int] = {}
        self.position: dict[str, int] = {}
        self.reached: dict[str, float] = {}  # perf_counter time

    def wrap(self, name: str, method: Callable, position: Callable[[Any], int]) -> Callable:
        self.seconds[name], self.cpu_seconds[name], self.calls[name], self.position[name] = 0.0, 0.0, 0, 0

        def timed(obj: Any, *args: Any) -> Any:
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return method(obj, *args)
            finally:
                end = time.perf_counter()
                self.seconds[name] += end - start
                self.cpu_seconds[name] += time.thread_time() - cpu
                self.calls[name] += 1
                self.position[name] = position(obj)
                if self.position[name] >= self.target:
                    self.reached.setdefault(name, end)

        return timed


_TIMED: tuple[tuple[str, type, str, Callable[[Any], int]], ...] = (
    ("join", Joiner, "step", lambda joiner: joiner.state.joined),  # events joined
    ("learn", Learner, "step", lambda learner: learner.learned_seq),  # events learned, as of the call
    ("publish", Learner, "publish", lambda learner: learner.learned_seq),
    ("lift", LiftCounter, "step", lambda lift: lift.state.seq),  # joined events counted
    ("outcomes", SubjectOutcomes, "step", lambda outcomes: outcomes.state.seq),
)


@contextmanager
def timed_steps(target: int) -> Iterator[StepTimer]:
    """The trainer's steps of `_TIMED` timed while inside."""
    timer = StepTimer(target)
    originals = [(cls, method, getattr(cls, method)) for _, cls, method, _ in _TIMED]
    for name, cls, method, position in _TIMED:
        setattr(cls, method, timer.wrap(name, getattr(cls, method), position))
    try:
        yield timer
    finally:
        for cls, method, original in originals:
            setattr(cls, method, original)


def _sample(trainer: Trainer, t: float, timer: StepTimer) -> dict[str, float]:
    stats = trainer.stats(LOOP)
    return {
        "t": t,
        "joined": stats.joined,
        "learned": timer.position["learn"],
        "published": stats.learned,
        "lag_events": stats.learner_lag_events,
    }


def train(store: Store, clock: FakeClock, plan: Plan) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """Run a Trainer until a model that learned every event is published; its figures and the samples."""
    samples: list[dict[str, float]] = []
    with timed_steps(plan.events) as timer:
        trainer = Trainer(store, clock)
        start = time.perf_counter()
        trainer.start()
        try:
            while not samples or samples[-1]["published"] < plan.events:
                time.sleep(plan.sample_seconds)
                t = time.perf_counter() - start
                if t > plan.timeout_seconds:
                    late = f"the trainer did not catch up within {plan.timeout_seconds:g} s"
                    raise RuntimeError(f"{late}: {samples[-1] if samples else 'no sample'}")
                samples.append(_sample(trainer, t, timer))
                s = samples[-1]
                progress(
                    f"trainer: {t:6.2f} s  joined {s['joined']:>8,}  learned {s['learned']:>8,}  "
                    f"published {s['published']:>8,}  lag {s['lag_events']:>8,} events"
                )
            stats = trainer.stats(LOOP)
        finally:
            trainer.stop()
    times = {name: timer.reached[name] - start for name in ("join", "learn", "publish")}
    figures = {
        "joined": stats.joined,
        "learned": timer.position["learn"],
        "published": stats.learned,
        "defaulted": stats.default_rewarded,
        **{f"{verb}_seconds": times[name] for verb, name in _VERBS},
        **{f"{verb}_per_second": plan.events / times[name] for verb, name in _VERBS},
        "step_seconds": dict(timer.seconds),
        "step_cpu_seconds": dict(timer.cpu_seconds),
        "learned_per_cpu_second": plan.events / _trainer_cpu(timer.cpu_seconds),
        "publishes": timer.calls["publish"],
    }
    return figures, samples


def joined_stream(store: Store) -> list[bytes]:
    """The loop's joined events as stored, in order."""
    joined: list[bytes] = []
    position = 0
    while batch := store.log.read(Stream.JOINED, LOOP, position, _READ_BATCH):
        joined += [data for _, data in batch]
        position = batch[-1][0]
    return joined


def _trainer_cpu(cpu_seconds: dict[str, float]) -> float:
    """The trainer thread's CPU seconds in its steps (publishing is inside the learner's)."""
    return sum(seconds for name, seconds in cpu_seconds.items() if name != "publish")


def learn_events(joined: list[bytes]) -> list[policies.LearnEvent]:
    """The LearnEvents of joined events, in order (as the learner derives them)."""
    events = (learn_event(records_pb2.JoinedEvent.FromString(data)) for data in joined)
    return [event for event in events if event is not None]


def _timed(events: int, run: Callable[[], None]) -> dict[str, float]:
    start, cpu = time.perf_counter(), time.thread_time()
    run()
    seconds, cpu_seconds = time.perf_counter() - start, time.thread_time() - cpu
    return {
        "events": events,
        "seconds": seconds,
        "per_second": events / seconds,
        "cpu_seconds": cpu_seconds,
        "per_cpu_second": events / cpu_seconds,
    }


def vw_direct(spec: str, events: list[policies.LearnEvent]) -> dict[str, float]:
    """A fresh policy of `spec` learning `events` one at a time, as the learner calls it."""
    policy = policies.create(spec)

    def run() -> None:
        for event in events:
            policy.learn([event])

    return _timed(len(events), run)


def _vw_params(spec: str) -> str | None:
    family, _, params = spec.partition(":")
    return params if family == "vw" else None


def _workspace(params: str) -> vowpalwabbit.Workspace:
    return vowpalwabbit.Workspace(arg_list=[*shlex.split(params), "--quiet"])


def _multi_slot(params: str) -> bool:
    return "--ccb_explore_adf" in shlex.split(params)


def _labeled(event: policies.LearnEvent, multi_slot: bool) -> list[str]:
    """The event's labeled VW text, as a VW policy (`multi_slot`: of `--ccb_explore_adf`) learns it."""
    if multi_slot:
        return ccb_labeled_lines(event)
    return event.example.vw_labeled_lines(event.chosen_index, -event.reward, event.probability)


def vw_lines(spec: str, events: list[policies.LearnEvent]) -> dict[str, float] | None:
    """A bare VW workspace of `spec`'s arguments learning the events' labeled lines (None: not a VW spec)."""
    params = _vw_params(spec)
    if params is None:
        return None
    multi_slot = _multi_slot(params)
    lines = [_labeled(e, multi_slot) for e in events]
    workspace = _workspace(params)

    def run() -> None:
        for example in lines:
            learn_lines(workspace, example)

    try:
        return _timed(len(lines), run)
    finally:
        workspace.finish()


_STAGES = ("decode", "learn_event", "featurize", "vw")


def stages(spec: str, joined: list[bytes]) -> dict[str, float] | None:
    """Thread CPU microseconds per learned event of each step of learning `joined` with a fresh workspace of `spec`'s
    arguments, each step timed around each event (None: not a VW spec)."""
    params = _vw_params(spec)
    if params is None:
        return None
    workspace, multi_slot = _workspace(params), _multi_slot(params)
    spent = dict.fromkeys(_STAGES, 0.0)
    learned = 0
    clock = time.thread_time
    try:
        for data in joined:
            t0 = clock()
            decoded = records_pb2.JoinedEvent.FromString(data)
            t1 = clock()
            event = learn_event(decoded)
            t2 = clock()
            if event is None:
                continue
            lines = _labeled(event, multi_slot)
            t3 = clock()
            learn_lines(workspace, lines)
            t4 = clock()
            for stage, start, end in zip(_STAGES, (t0, t1, t2, t3), (t1, t2, t3, t4), strict=True):
                spent[stage] += end - start
            learned += 1
    finally:
        workspace.finish()
    return {stage: seconds / max(learned, 1) * 1e6 for stage, seconds in spent.items()}


def _stages_us(trainer: dict[str, Any], steps: dict[str, float] | None, events: int) -> dict[str, float] | None:
    """The trainer's joiner and learner CPU per event, and the learner's steps measured alone."""
    if steps is None:
        return None
    cpu = {**trainer["step_cpu_seconds"]}
    cpu["learn"] -= cpu.pop("publish")
    return {name: seconds / events * 1e6 for name, seconds in cpu.items()} | steps


def run(plan: Plan) -> dict[str, Any]:
    """The plan on a fresh store in a temporary directory; the report (see the module doc)."""
    loadavg_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="nextbest-learner-") as tmp:
        clock = FakeClock()
        store = open_store(tmp)
        _create_loop(store, plan.policy)
        server = NextbestServer(store, "127.0.0.1", 0, train=False, clock=clock).start()
        try:
            filled = fill(
                DecisionService(store.log, server.catalog, server.limits, clock, subjects=_keeper(store)), plan
            )
            clock.advance(REWARD_WAIT_SECONDS + GRACE_SECONDS + 1.0)
            trainer, samples = train(store, clock, plan)
            joined = joined_stream(store)
        finally:
            server.stop(grace=0)
    steps = stages(plan.policy, joined)  # first: the baselines' events, kept alive, would slow its collections
    events = learn_events(joined)
    progress(f"baselines: learning the {len(events):,} events with VW directly")
    direct, lines = vw_direct(plan.policy, events), vw_lines(plan.policy, events)
    return {
        "version": 1,
        "plan": asdict(plan),
        "calls": "in-process DecisionService (no gRPC)",
        "machine": {"cpus": os.cpu_count(), "loadavg_before": loadavg_before, "loadavg_after": os.getloadavg()},
        "fill": filled,
        "trainer": trainer,
        "samples": samples,
        "vw_direct": direct,
        "vw_lines": lines,
        "stages_us": _stages_us(trainer, steps, len(events)),
        "ratio": trainer["learned_per_second"] / direct["per_second"],
        "ratio_lines": trainer["learned_per_second"] / lines["per_second"] if lines else None,
        "cpu_ratio": trainer["learned_per_cpu_second"] / direct["per_cpu_second"],
        "target_per_second": TARGET_PER_SECOND,
        "target_ratio": trainer["learned_per_second"] / TARGET_PER_SECOND,
        "cpu_target_ratio": trainer["learned_per_cpu_second"] / TARGET_PER_SECOND,
        "met": trainer["learned_per_second"] >= TARGET_PER_SECOND,
        "cpu_met": trainer["learned_per_cpu_second"] >= TARGET_PER_SECOND,
    }


def _share(part: float, whole: float) -> str:
    return f"{part:.2f} s ({part / whole:.0%})"


def summary(report: dict[str, Any]) -> str:
    t, fill_, direct = report["trainer"], report["fill"], report["vw_direct"]
    steps = t["step_seconds"]
    learning = steps["learn"] - steps["publish"]
    lines = [
        f"fill: {fill_['decisions']:,} decisions ({fill_['rewards']:,} rewarded) in {fill_['seconds']:.1f} s = "
        f"{fill_['decisions_per_second']:,.0f}/s, {report['calls']}",
        f"{'':<24}{'seconds':>9}{'events/s':>10}{'per CPU s':>11}",
        f"{'trainer: joined':<24}{t['joined_seconds']:>9.2f}{t['joined_per_second']:>10,.0f}",
        f"{'trainer: learned':<24}{t['learned_seconds']:>9.2f}{t['learned_per_second']:>10,.0f}"
        f"{t['learned_per_cpu_second']:>11,.0f}",
        f"{'trainer: published':<24}{t['published_seconds']:>9.2f}{t['published_per_second']:>10,.0f}",
    ]
    for label, baseline in (("VW direct (policy)", direct), ("VW direct (text lines)", report["vw_lines"])):
        if baseline:
            lines.append(
                f"{label:<24}{baseline['seconds']:>9.2f}{baseline['per_second']:>10,.0f}"
                f"{baseline['per_cpu_second']:>11,.0f}"
            )
    cpu = t["step_cpu_seconds"]
    lines += [
        f"trainer time until learned: joiner {_share(steps['join'], t['learned_seconds'])}, learner "
        f"{_share(learning, t['learned_seconds'])}, publishing {_share(steps['publish'], t['learned_seconds'])} "
        f"in {t['publishes']} publish calls, lift and subject outcomes "
        f"{_share(steps['lift'] + steps['outcomes'], t['learned_seconds'])}; CPU: joiner {cpu['join']:.2f} s, "
        f"learner {cpu['learn'] - cpu['publish']:.2f} s, publishing {cpu['publish']:.2f} s, lift "
        f"{cpu['lift']:.2f} s, subject outcomes {cpu['outcomes']:.2f} s",
        f"trainer learned/s over VW direct: {report['ratio']:.2f} (policy)"
        + (f", {report['ratio_lines']:.2f} (text lines)" if report["ratio_lines"] else "")
        + f"; per CPU second: {report['cpu_ratio']:.2f} (policy)",
        f"machine: {report['machine']['cpus']} cpus, load average before {report['machine']['loadavg_before'][0]:.2f}"
        f", after {report['machine']['loadavg_after'][0]:.2f} (other processes share it)",
    ]
    if stages_us := report["stages_us"]:
        alone = {k: v for k, v in stages_us.items() if k not in ("join", "learn", "lift", "outcomes")}
        lines.append(
            f"CPU us per learned event: joiner {stages_us['join']:.0f}, learner {stages_us['learn']:.0f}, lift "
            f"{stages_us['lift']:.0f}, subject outcomes {stages_us['outcomes']:.0f}; the learner's steps alone: "
            + ", ".join(f"{k} {v:.0f}" for k, v in alone.items())
            + f" (sum {sum(alone.values()):.0f})"
        )
    target = f"{report['target_per_second']:,.0f}"
    lines += [
        f"target >= {target} learned events/s: {'met' if report['met'] else 'NOT met'} "
        f"({t['learned_per_second']:,.0f}/s = {report['target_ratio']:.2f} of it); per CPU second: "
        f"{'met' if report['cpu_met'] else 'NOT met'} ({t['learned_per_cpu_second']:,.0f} = "
        f"{report['cpu_target_ratio']:.2f} of it)",
    ]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: str) -> None:
    """Events joined, learned and published over the trainer's time, with the target's slope."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = report["samples"]
    x = [0.0] + [s["t"] for s in samples]
    fig, ax = plt.subplots(figsize=(10, 5))
    for key, style in (("joined", "-"), ("learned", "--"), ("published", ":")):
        ax.plot(x, [0] + [s[key] for s in samples], style, label=key)
    events = report["plan"]["events"]
    target = report["target_per_second"]
    ax.plot([0, events / target], [0, events], color="gray", lw=0.8, label=f"{target:,.0f} events/s")
    ax.set(xlabel="seconds since the trainer started", ylabel="events", title="nextbest trainer on a backlog")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    t = report["trainer"]
    fig.suptitle(
        f"{events:,} events: learned {t['learned_per_second']:,.0f}/s, "
        f"{report['ratio']:.2f} x VW direct ({report['vw_direct']['per_second']:,.0f}/s)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    d = Plan()
    parser = argparse.ArgumentParser(prog="python -m benchmarks.learner", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=d.events, help="decisions to learn (default: %(default)s)")
    parser.add_argument("--callers", type=int, default=d.callers, help="filling threads (default: %(default)s)")
    parser.add_argument("--policy", default=d.policy, help="policy of the loop (default: %(default)s)")
    parser.add_argument(
        "--reward-fraction", type=float, default=d.reward_fraction, help="share rewarded (default: %(default)s)"
    )
    parser.add_argument(
        "--sample-seconds", type=float, default=d.sample_seconds, help="sampling period (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument(
        "--subjects",
        type=int,
        default=d.subjects,
        help="Rank with subject ids from a pool of this many, under the bench's contact policy (0: none)",
    )
    parser.add_argument("--json", metavar="FILE", default="nextbest-learner.json", help="default: %(default)s")
    parser.add_argument("--plot", metavar="FILE", default="nextbest-learner.png", help="default: %(default)s")
    args = parser.parse_args(argv)
    plan = Plan(
        events=args.events,
        callers=args.callers,
        policy=args.policy,
        reward_fraction=args.reward_fraction,
        sample_seconds=args.sample_seconds,
        seed=args.seed,
        subjects=args.subjects,
    )
    report = run(plan)
    print(summary(report), end="")
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
