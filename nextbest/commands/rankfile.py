"""`nextbest rank-file IN OUT`: rank a JSON-lines file of requests into a JSON-lines file of decisions, in batches
(RankBatch).

Each line of IN is a RankRequest in protobuf's canonical JSON. Line N of OUT answers line N of IN:
`{"line": N, "response": {...RankResponse...}}`, or `{"line": N, "error": {"code": "INVALID_ARGUMENT", "message":
"actions: ..."}}` when that request alone was refused (the others are still ranked).

A request without an event_id gets `<the first 16 hex digits of IN's SHA-256>-<N>`, so that ranking the same file
again decides nothing twice: the server answers the decisions it logged. A run that stopped (a refused batch, a
crash) resumes after the last complete line of OUT.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from nextbest.commands.admin import add_connection_arguments, calling

MAX_BATCH = 1000  # the server's limit on a RankBatch's requests (Limits.max_batch_requests)
_PROGRESS_SECONDS = 1.0


def add(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "rank-file",
        help="rank a JSON-lines file of RankRequests into a JSON-lines file of decisions (RankBatch)",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", metavar="IN", help="the requests, one RankRequest (canonical JSON) a line")
    parser.add_argument("output", metavar="OUT", help="the decisions, one a line (appended to when resuming)")
    parser.add_argument("--loop", default="", help="the loop of the requests that name none (default: 'default')")
    parser.add_argument(
        "--batch", type=int, default=100, help=f"requests per RankBatch call, 1 to {MAX_BATCH} (default: 100)"
    )
    add_connection_arguments(parser)
    parser.set_defaults(run=run)


@dataclass
class _Tally:
    lines: int  # in IN
    skipped: int  # already answered in OUT
    decisions: int = 0
    errors: int = 0

    @property
    def done(self) -> int:
        return self.skipped + self.decisions + self.errors


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.batch <= MAX_BATCH:
        print(f"nextbest rank-file: --batch: {args.batch} is not between 1 and {MAX_BATCH}", file=sys.stderr)
        return 2
    try:
        digest, lines = _digest(args.input)
        answered = _answered_lines(args.output)
    except OSError as e:
        print(f"nextbest rank-file: {e}", file=sys.stderr)
        return 2
    if answered > lines:
        print(f"nextbest rank-file: {args.output} has {answered} lines, {args.input} {lines}", file=sys.stderr)
        return 2
    tally = _Tally(lines, answered)
    return calling("rank-file", lambda client, a: _rank_file(client, a, digest, tally))(args)


def _digest(path: str) -> tuple[str, int]:
    """The first 16 hex digits of the file's SHA-256 and its number of lines."""
    sha, lines, last = hashlib.sha256(), 0, b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return sha.hexdigest()[:16], lines + (last != b"\n")


def _answered_lines(path: str) -> int:
    """The complete lines of OUT (a partial last line, from a crash, is cut off to be written again)."""
    if not os.path.exists(path):
        return 0
    lines = complete = offset = 0
    with open(path, "rb+") as f:
        while chunk := f.read(1 << 20):
            if (last := chunk.rfind(b"\n")) >= 0:
                lines += chunk.count(b"\n")
                complete = offset + last + 1
            offset += len(chunk)
        f.truncate(complete)
    return lines


def _rank_file(client: Any, args: argparse.Namespace, digest: str, tally: _Tally) -> int:
    started, reported = time.monotonic(), 0.0
    with open(args.input, encoding="utf-8") as src, open(args.output, "a", encoding="utf-8") as out:
        for chunk in _chunks(_numbered(src, tally.skipped), args.batch):
            _rank_chunk(client, chunk, digest, args.loop, out, tally)
            now = time.monotonic()
            if now - reported >= _PROGRESS_SECONDS:
                reported = now
                _report(tally, now - started, sys.stderr)
    seconds = round(time.monotonic() - started, 1)
    if args.json:
        summary = {"decisions": tally.decisions, "errors": tally.errors, "skipped": tally.skipped, "seconds": seconds}
        print(json.dumps(summary))
    else:
        print(
            f"rank-file: {tally.decisions} decisions, {tally.errors} errors, {tally.skipped} lines already in "
            f"{args.output}; {seconds} s"
        )
    return 0


def _report(tally: _Tally, seconds: float, to: IO[str]) -> None:
    rate = (tally.decisions + tally.errors) / seconds if seconds > 0 else 0.0
    print(f"rank-file: {tally.done}/{tally.lines} lines, {tally.errors} errors, {rate:.0f} lines/s", file=to)


def _numbered(lines: IO[str], skip: int) -> Iterator[tuple[int, str]]:
    for n, line in enumerate(lines, 1):
        if n > skip:
            yield n, line


def _chunks(items: Iterator[tuple[int, str]], size: int) -> Iterator[list[tuple[int, str]]]:
    chunk: list[tuple[int, str]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _rank_chunk(client: Any, chunk: list[tuple[int, str]], digest: str, loop: str, out: IO[str], tally: _Tally) -> None:
    """Rank the chunk's requests in one call and write a line for each of its lines (flushed: a rerun resumes
    after it)."""
    from nextbest.v1 import decision_pb2

    parsed = [(n, _request(text, f"{digest}-{n}", loop)) for n, text in chunk]
    requests = [r for _, r in parsed if isinstance(r, decision_pb2.RankRequest)]
    items = iter(enumerate(client.rank_batch(requests) if requests else []))
    for n, request in parsed:
        if isinstance(request, decision_pb2.RankRequest):
            answer = _answer(*next(items))
        else:
            answer = {"error": {"code": "INVALID_ARGUMENT", "message": request}}
        tally.errors += "error" in answer
        tally.decisions += "response" in answer
        out.write(json.dumps({"line": n, **answer}, separators=(",", ":")) + "\n")
    out.flush()


def _request(text: str, default_event_id: str, loop: str) -> Any:
    """The line's RankRequest, or why it is none."""
    from google.protobuf import json_format

    from nextbest.v1 import decision_pb2

    request = decision_pb2.RankRequest()
    try:
        data = json.loads(text)
    except ValueError as e:
        return f"not JSON: {e}"
    if not isinstance(data, dict):
        return f"not a JSON object: {type(data).__name__}"
    try:
        json_format.ParseDict(data, request)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as e:
        return f"not a RankRequest: {str(e)[:300]}"
    request.event_id = request.event_id or default_event_id
    request.loop = request.loop or loop
    return request


def _answer(index: int, item: Any) -> dict[str, Any]:
    """The line of OUT for an item of the batch (an error's message without the batch's requests[i] prefix)."""
    import grpc
    from google.protobuf import json_format

    if item.HasField("error"):
        message = item.error.message.removeprefix(f"requests[{index}].")
        code = next((c.name for c in grpc.StatusCode if c.value[0] == item.error.code), str(item.error.code))
        return {"error": {"code": code, "message": message}}
    return {"response": json_format.MessageToDict(item.response, always_print_fields_with_no_presence=True)}
