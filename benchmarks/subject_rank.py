"""What a subject id adds to the Rank handler: `DecisionService.Rank` called in-process (no gRPC, no learning) on a
real LMDB store, with the bench's payload and contact policy (`nextbest bench --subjects`), with and without
subject ids from a pool.

    python -m benchmarks.subject_rank [--subjects 1000] [--contacts 17] [--blocks 10] [--block 400] [--instructions]

First `subjects × contacts` Ranks with subject ids fill the histories (every Rank is a contact unless a rule
suppresses it). Then blocks of Ranks without and with subject ids in turn, on one thread: the CPU time per Rank of
each block, and the median of each side. This machine's CPU time moves by ±10% or more from block to block, so
`--instructions` also counts instructions per Rank with callgrind (valgrind must be installed): two runs of each
side over a copy of the filled store, measured as the difference between `--block` and three times as many Ranks,
which the machine's noise does not move (callgrind counts every thread: the LMDB writer's work is included).

Prints a summary; `--json PATH` writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from nextbest.server.bench.load import BENCH_CONTACT_POLICY, Workload
from nextbest.server.config import DEFAULT_POLICY
from nextbest.server.decision_service import DecisionService
from nextbest.server.subjects.contact import PolicyCache
from nextbest.server.subjects.keeper import SubjectKeeper
from nextbest.testing import running_server
from nextbest.v1 import decision_pb2

LOOP = "bench"
SEED = 1
_COLLECTED = re.compile(r"Collected : (\d+)")


class _Ranker:
    """A DecisionService over a running server's store, fed the bench's calls (`Workload`), with and without
    subject ids; every _Ranker's event ids are its own (the same id again would be a retry)."""

    def __init__(self, server: Any, subjects: int) -> None:
        store = server.store
        keeper = SubjectKeeper(store.subjects, PolicyCache(store.subjects))
        self.service = DecisionService(store.log, server.catalog, server.limits, subjects=keeper)
        self.workloads = {False: Workload(LOOP, 0.0, SEED), True: Workload(LOOP, 0.0, SEED, subjects)}
        self.count = 0

    def rank(self, n: int, with_subjects: bool) -> None:
        workload = self.workloads[with_subjects]
        for _ in range(n):
            self.service.Rank(decision_pb2.RankRequest.FromString(workload.rank(self.count)), None)
            self.count += 1


def _fill(store: Path, subjects: int, contacts: int) -> None:
    with running_server(store, train=False) as (server, client):
        client.create_loop(LOOP, policy=DEFAULT_POLICY)
        client.set_contact_policy(json.dumps(BENCH_CONTACT_POLICY))
        _Ranker(server, subjects).rank(subjects * contacts, True)


def cpu_blocks(store: Path, subjects: int, blocks: int, block: int) -> dict[str, Any]:
    """CPU µs per Rank of `blocks` blocks of each side, in turn."""
    out: dict[str, list[float]] = {"without": [], "with": []}
    with running_server(store, train=False) as (server, _):
        ranker = _Ranker(server, subjects)
        ranker.rank(block, False)  # the caches of the side without subject ids, warm
        for b in range(blocks):
            for side in ("without", "with"):
                start = time.process_time()
                ranker.rank(block, side == "with")
                out[side].append((time.process_time() - start) / block * 1e6)
            print(f"block {b + 1}/{blocks}: {out['without'][-1]:.0f} vs {out['with'][-1]:.0f} us", file=sys.stderr)
    medians = {side: statistics.median(values) for side, values in out.items()}
    return {"us_per_rank": out, "median_us": medians, "ratio": medians["with"] / medians["without"]}


def _instructions(store: Path, subjects: int, with_subjects: bool, n: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "store"
        shutil.copytree(store, copy)
        command = [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/callgrind.out",
            sys.executable, "-m", "benchmarks.subject_rank", "--run", str(copy),
            "--subjects", str(subjects), "--ranks", str(n), *(["--with-subjects"] if with_subjects else []),
        ]  # fmt: skip
        env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same dict layouts run to run: counts that repeat
        done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
        found = _COLLECTED.search(done.stderr)
        if found is None:
            raise RuntimeError(f"callgrind printed no count: {done.stderr[-2000:]}")
        return int(found.group(1))


def instructions(store: Path, subjects: int, block: int) -> dict[str, Any]:
    """Instructions per Rank of each side: (count over 3 × block Ranks − count over block Ranks) / (2 × block)."""
    out: dict[str, float] = {}
    for side in ("without", "with"):
        counts = [_instructions(store, subjects, side == "with", n) for n in (block, 3 * block)]
        out[side] = (counts[1] - counts[0]) / (2 * block)
        print(f"callgrind {side}: {out[side]:,.0f} instructions per Rank", file=sys.stderr)
    return {"per_rank": out, "ratio": out["with"] / out["without"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.subject_rank", description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=1000, help="the pool of subject ids")
    parser.add_argument("--contacts", type=int, default=17, help="Ranks per subject before measuring")
    parser.add_argument("--blocks", type=int, default=10, help="blocks of each side")
    parser.add_argument("--block", type=int, default=400, help="Ranks per block")
    parser.add_argument("--instructions", action="store_true", help="also count instructions with callgrind")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--run", type=Path, help=argparse.SUPPRESS)  # one callgrind side: the store to rank on
    parser.add_argument("--ranks", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--with-subjects", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run is not None:
        with running_server(args.run, train=False) as (server, _):
            _Ranker(server, args.subjects).rank(args.ranks, args.with_subjects)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        print(f"filling {args.subjects:,} histories with {args.contacts} Ranks each", file=sys.stderr)
        _fill(store, args.subjects, args.contacts)
        report: dict[str, Any] = {"subjects": args.subjects, "contacts": args.contacts, "policy": DEFAULT_POLICY}
        report["instructions"] = instructions(store, args.subjects, args.block) if args.instructions else None
        report["cpu"] = cpu_blocks(store, args.subjects, args.blocks, args.block)
    cpu, medians = report["cpu"], report["cpu"]["median_us"]
    print(
        f"Rank handler, {args.subjects:,} subjects after {args.contacts} Ranks each: CPU {medians['with']:.0f} "
        f"us per Rank with a subject id vs {medians['without']:.0f} without, ratio {cpu['ratio']:.2f} "
        f"(medians of {args.blocks} blocks of {args.block})"
    )
    if report["instructions"] is not None:
        counted = report["instructions"]
        print(
            f"instructions per Rank (callgrind): {counted['per_rank']['with']:,.0f} with vs "
            f"{counted['per_rank']['without']:,.0f} without, ratio {counted['ratio']:.2f}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
