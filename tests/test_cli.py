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
