"""What a multi-slot decision costs per slot: RankMultiSlot against Rank through a real server (the README's figure).

    python -m benchmarks.slots                 # 8 actions, 1 to 4 slots, 300 calls each (about 10 s)
    python -m benchmarks.slots --calls 1000 --actions 16

The policy's own time to decide the slots in-process, then one caller's sequential calls on loopback over a
fresh LMDB store; the median of each shape is reported (with its cost per slot for the calls). The multi-slot
policy asks VW one slot at a time with the slots before it, so the policy's share grows with the square of the
slots while the rest (validation, logging, gRPC) is paid once.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

from nextbest import policies
from nextbest.client import Client, action, namespaces, slot
from nextbest.testing import running_server
from nextbest.v1 import decision_pb2, types_pb2

SPEC = "vw:--ccb_explore_adf --epsilon 0.05 -q ua -q sa"


def _context(i: int) -> dict[str, dict[str, object]]:
    return {"u": {"segment": f"s{i % 5}", "visits": i % 7, "tokens": ["music", "news"]}}


def _median_ms(call: Callable[[int], object], calls: int) -> float:
    times = []
    for i in range(calls):
        started = time.perf_counter()
        call(i)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def _policy_ms(actions: list[types_pb2.Action], n: int, calls: int) -> float:
    """The policy's own time to decide `n` slots in-process (each slot asked with the slots before it)."""
    policy = policies.create(SPEC)
    slots = [policies.Slot(namespaces({"s": {"pos": f"p{k}"}}), tuple(range(len(actions)))) for k in range(n)]

    def decide(i: int) -> None:
        example = policies.Example(namespaces(_context(i)), actions)
        for k in range(n):
            policy.slot_pmf(example, slots[: k + 1], list(range(k)))

    return _median_ms(decide, calls)


def run(calls: int, n_actions: int, max_slots: int) -> list[str]:
    actions = [action(f"a{i}", "", {"o": {"kind": f"k{i % 3}"}}) for i in range(n_actions)]
    lines = [
        f"policy alone (in-process), {n} slot{'s' if n > 1 else ''}: {_policy_ms(actions, n, calls):.3f} ms"
        for n in range(1, max_slots + 1)
    ]
    with tempfile.TemporaryDirectory() as d, running_server(d) as (_, client):
        client.create_loop("page", policy=SPEC)
        rank = _median_ms(lambda i: client.rank(actions, _context(i), loop="page"), calls)
        lines.append(f"Rank on the CCB loop: {rank:.2f} ms")
        for n in range(1, max_slots + 1):
            slots = [slot(f"s{k}", {"s": {"pos": f"p{k}"}}) for k in range(n)]
            ms = _median_ms(lambda i, s=slots: _multi(client, actions, s, i), calls)
            lines.append(f"RankMultiSlot, {n} slot{'s' if n > 1 else ''}: {ms:.2f} ms ({ms / n:.2f} ms per slot)")
    return lines


def _multi(client: Client, actions: list[types_pb2.Action], slots: list[decision_pb2.Slot], i: int) -> None:
    client.rank_multi_slot(actions, slots, _context(i), loop="page")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--actions", type=int, default=8)
    parser.add_argument("--slots", type=int, default=4)
    args = parser.parse_args(argv)
    print(f"{SPEC}, {args.actions} actions, {args.calls} sequential calls per shape (median)")
    for line in run(args.calls, args.actions, args.slots):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
