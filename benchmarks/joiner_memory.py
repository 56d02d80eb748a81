"""The joiner's memory per open decision and per unmatched (orphan) reward.

    python -m benchmarks.joiner_memory --decisions 20000 --orphans 100000 --rewards-per-decision 5

Appends `--decisions` decisions (the payload of `nextbest bench`, `benchmarks.load.Workload`) with a one-day reward
window to a temporary LMDB store; then `--orphans` rewards for events that were never decided, with 248-character
event ids; then the decisions again with `--rewards-per-decision` rewards each. Each phase has its own store,
written by a child process. This process's RssAnon (/proc/self/status) is
read before and after a joiner's first step (every window open). Prints JSON: the growth per open decision and per
orphan reward sent, and how many of each the joiner holds (orphans beyond its cap are dropped and counted; open
decisions and folds beyond `MAX_HELD` stay in the store, so the growth per decision falls as there are more).
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import sys
import tempfile
import time

from nextbest.server.bench.load import Workload
from nextbest.server.config import normalized
from nextbest.server.joiner import Joiner
from nextbest.server.store import Entry, Stream, open_store
from nextbest.v1 import records_pb2, types_pb2

LOOP = "memory"
DAY = 86400.0
_BATCH = 1000


def _rss_anon() -> int:
    gc.collect()
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status")


def _decisions(n: int, now: float) -> list[Entry]:
    workload = Workload(LOOP, 0.0, seed=1)
    workload.new_run()
    config = normalized(types_pb2.LoopConfig(name=LOOP, reward_wait_seconds=DAY))
    entries = []
    for i in range(n):
        rank = workload.call(i)[0]
        event_id = f"{workload.tag}-{i:010d}"
        record = records_pb2.DecisionRecord(
            loop=LOOP, event_id=event_id, pmf=[1.0], chosen_index=0, config=config, timestamp=now
        )
        entries.append(Entry(event_id, rank + record.SerializeToString()))
    return entries


def _reward(event_id: str, kind: int, now: float) -> bytes:
    record = records_pb2.RewardRecord(loop=LOOP, event_id=event_id, kind=kind, value=1.0, timestamp=now)
    return record.SerializeToString()


def _rewards(event_ids: list[str], now: float) -> list[Entry]:
    kind = records_pb2.RewardRecord.KIND_REWARD
    return [Entry(None, _reward(e, kind, now)) for e in event_ids]


def _append(store, stream: Stream, entries: list[Entry]) -> None:
    for i in range(0, len(entries), _BATCH):
        store.log.append(stream, LOOP, entries[i : i + _BATCH])


def _populate(path: str, decisions: int, orphans: int, per_decision: int, now: float) -> None:
    with open_store(path) as store:
        entries = _decisions(decisions, now)
        _append(store, Stream.DECISIONS, entries)
        rewarded = [e.key for e in entries for _ in range(per_decision)]
        _append(store, Stream.REWARDS, _rewards([f"{i:0248d}" for i in range(orphans)] + rewarded, now))


def run(decisions: int, orphans: int, per_decision: int = 0) -> dict[str, float | int]:
    """One measurement; the store is written by a child process, so that this one's heap holds only the joiner."""
    now = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        args = (tmp, decisions, orphans, per_decision, now)
        child = multiprocessing.get_context("spawn").Process(target=_populate, args=args)
        child.start()
        child.join()
        with open_store(tmp) as store:
            joiner = Joiner(store.log, LOOP, lambda: now)
            before = _rss_anon()
            joiner.step(DAY)
            after = _rss_anon()
            return {
                "decisions": decisions,
                "orphans": orphans,
                "rewards_per_decision": per_decision,
                "pending_decisions": joiner.pending,
                "orphans_counted": joiner.state.orphans,
                "rewards_unmatched": joiner.unmatched_rewards,
                "held": joiner.held,
                "folds_spilled": joiner.state.folds_spilled,
                "rss_anon_mb": round((after - before) / 2**20, 1),
            }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--orphans", type=int, default=100_000)
    parser.add_argument("--rewards-per-decision", type=int, default=5)
    args = parser.parse_args(argv)
    decisions, orphans = run(args.decisions, 0), run(0, args.orphans)
    rewarded = run(args.decisions, 0, args.rewards_per_decision)
    report = {
        "decisions_only": decisions,
        "orphans_only": orphans,
        "rewarded_decisions": rewarded,
        "bytes_per_open_decision": round(decisions["rss_anon_mb"] * 2**20 / max(args.decisions, 1)),
        "bytes_per_orphan_reward": round(orphans["rss_anon_mb"] * 2**20 / max(args.orphans, 1)),
        "bytes_per_rewarded_open_decision": round(rewarded["rss_anon_mb"] * 2**20 / max(args.decisions, 1)),
    }
    json.dump(report, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
