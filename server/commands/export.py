"""`nextbest export`: a loop's joined events as DSJSON, for `vw --dsjson` and offline evaluation."""

from __future__ import annotations

import argparse
import os
import sys

from nextbest.server.commands.storage import add_store_arguments, open_store_or_exit
from nextbest.server.store import is_remote


def moment(text: str) -> float:
    """Seconds since the epoch from epoch seconds or an ISO 8601 time (UTC unless it says otherwise)."""
    from nextbest.policies.ope.dsjson import utc_seconds

    try:
        return float(text)
    except ValueError:
        pass
    try:
        return utc_seconds(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ISO 8601 or epoch seconds, got {text!r}") from None


def add(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export",
        help="write a loop's joined events as DSJSON (one JSON object per line)",
        description="Write a loop's joined events (decisions with their rewards) as DSJSON, the format "
        "`vw --dsjson` and Azure Personalizer use, in join order. Deferred decisions never activated and "
        "LOGGING_ONLY decisions are marked _skipLearn, as the learner skips them. Reads the store only, so it "
        "can run while `nextbest serve` uses it. Prints how many events it wrote on stderr. An event VW's JSON "
        "cannot hold is skipped with a warning, and the command then exits with status 1.",
    )
    add_store_arguments(export, sizing=False)
    export.add_argument("--loop", required=True, help="the loop to export")
    export.add_argument(
        "--since",
        type=moment,
        metavar="T",
        help="only decisions made at T or later (ISO 8601, UTC by default, or epoch seconds)",
    )
    export.add_argument("--until", type=moment, metavar="T", help="only decisions made before T")
    export.add_argument("--output", metavar="FILE", help="write to FILE (default: standard output)")
    export.set_defaults(run=run)


# Skipped events reported one by one on stderr; the rest only counted.
SKIPS_SHOWN = 10


def run(args: argparse.Namespace) -> int:
    from nextbest.server.export import export, live_replay

    if not is_remote(args.store) and not os.path.isfile(os.path.join(args.store, "data.mdb")):
        print(f"nextbest export: no store in {args.store}", file=sys.stderr)
        return 2
    skips: list[str] = []

    def skip(reason: str) -> None:
        if len(skips) < SKIPS_SHOWN:
            print(f"nextbest export: skipped {reason}", file=sys.stderr)
        skips.append(reason)

    with open_store_or_exit("export", args) as store:
        if store.configs.get(args.loop) is None:
            loops = ", ".join(sorted(store.configs.list())) or "none"
            print(f"nextbest export: no loop {args.loop!r} in {args.store} (loops: {loops})", file=sys.stderr)
            return 2
        try:
            if args.output is None:
                written, skipped = export(store, args.loop, sys.stdout, args.since, args.until, skip)
                sys.stdout.flush()
            else:
                private = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # as the store
                with open(private, "w", encoding="ascii") as out:
                    written, skipped = export(store, args.loop, out, args.since, args.until, skip)
        except BrokenPipeError:  # the reader went away (`| head`): stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        replay = live_replay(store, args.loop)
    where = args.output or "standard output"
    print(f"nextbest export: {written} events of loop {args.loop!r} written to {where}", file=sys.stderr)
    if replay is not None:
        print(f"nextbest export: {replay}", file=sys.stderr)
    if skipped:
        print(
            f"nextbest export: {skipped} events skipped: VW's JSON cannot hold their names (logged before "
            "Rank refused such names)",
            file=sys.stderr,
        )
        return 1
    return 0
