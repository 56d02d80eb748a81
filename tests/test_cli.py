"""`nextbest serve` as a user runs it: prints its address, serves, stops gracefully on SIGTERM."""

import re
import signal
import subprocess
import sys

import pytest

from nextbest.client import Client, action
from nextbest.server.store import Stream, open_store


def test_help_documents_every_command():
    out = subprocess.run([sys.executable, "-m", "nextbest", "--help"], capture_output=True, text=True, check=True)
    assert "serve" in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "nextbest", "serve", "--help"], capture_output=True, text=True, check=True
    )
    for flag in ("--store", "--host", "--port"):
        assert flag in out.stdout


@pytest.mark.slow
def test_serve_answers_and_shuts_down_gracefully_on_sigterm(tmp_path):
    store = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "nextbest", "--log-level", "WARNING", "serve", "--store", str(store), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        address = re.search(r"serving on (\S+)", line).group(1)
        assert "default" in line
        with Client(address) as client:
            client.wait_ready()
            for i in range(20):
                client.rank([action("a", "email"), action("b", "push")], event_id=f"cli-{i}")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
        assert "stopped" in proc.stdout.read()
    finally:
        proc.kill()
    with open_store(str(store)) as s:
        assert s.log.last_seq(Stream.DECISIONS, "default") == 20


def test_every_request_limit_is_a_serve_flag_and_counts_below_one_are_refused():
    import dataclasses

    from nextbest.cli import build_parser
    from nextbest.server.commands.serve import limits
    from nextbest.server.config import Limits

    flags = {
        "--max-actions": "11", "--max-namespaces": "12", "--max-features": "13", "--max-string-length": "14",
        "--max-message-bytes": "15", "--max-batch-requests": "16", "--max-loops": "17", "--max-model-bytes": "18",
        "--max-generated-features": "19",
    }  # fmt: skip
    args = build_parser().parse_args(["serve", *(x for flag_value in flags.items() for x in flag_value)])
    assert sorted(dataclasses.astuple(limits(args))) == list(range(11, 20))  # every field from its own flag
    assert len(dataclasses.fields(Limits)) == len(flags)
    with pytest.raises(SystemExit, match="--max-batch-requests must be at least 1"):
        limits(build_parser().parse_args(["serve", "--max-batch-requests", "0"]))
