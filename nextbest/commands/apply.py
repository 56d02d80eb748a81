"""`nextbest apply FILE`: make a running server's loops match a TOML or JSON file (loops as code)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from nextbest.commands.admin import add_connection_arguments, calling


def add(commands: argparse._SubParsersAction) -> None:
    apply = commands.add_parser(
        "apply",
        help="make a running server's loops match a TOML or JSON file (loops as code)",
        description="Read loops declared in FILE (TOML, or JSON when it ends in .json: a `loops` table of "
        "LoopConfig fields by loop name) and make the running server match: create the loops it lacks, change "
        "the declared fields that differ, keep the rest. Prints the plan first, then carries it out. Loops the "
        "file does not declare are deleted only with --prune. `nextbest serve --loops FILE` applies the same "
        "file at start.",
    )
    apply.add_argument("file", help="the loops file (.toml or .json)")
    apply.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    apply.add_argument("--prune", action="store_true", help="delete the loops the file does not declare")
    add_connection_arguments(apply)
    apply.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from nextbest.server.loopfile import LoopFileError, read

    try:
        declared = read(args.file)
    except LoopFileError as e:
        print(f"nextbest apply: {e}", file=sys.stderr)
        return 2
    return calling("apply", lambda client, a: _apply(client, a, declared))(args)


def _apply(client: Any, args: argparse.Namespace, declared: dict[str, dict[str, Any]]) -> int:
    from nextbest.server.loopfile import apply, plan

    changes = plan(declared, client.list_loops(), prune=args.prune)
    pending = [c for c in changes if c.action in ("create", "update", "delete")]
    if args.json:
        steps = [{"action": c.action, "loop": c.loop, "changes": c.differences} for c in changes]
        print(json.dumps({"plan": steps, "dry_run": args.dry_run}, indent=2))
    else:
        for change in changes:
            print(change.describe())
    if args.dry_run or not pending:
        if not args.json:
            print("dry run: nothing changed" if args.dry_run and pending else "nothing to change")
        return 0

    def call(method: str, request: Any) -> Any:
        return getattr(client.admin, method)(request, timeout=client.timeout)

    made = apply(changes, call, report=None if args.json else lambda c: print(f"done: {c.action} {c.loop}"))
    if not args.json:
        print(f"applied {made} change{'s' if made != 1 else ''}")
    return 0
