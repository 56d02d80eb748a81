"""`--log-format json`: one JSON object per line from every process role, with the loop where known."""

from __future__ import annotations

import json
import logging
import re
import signal
import subprocess
import sys

import pytest

from nextbest.client import Client, action
from nextbest.server.logs import JsonFormatter
from nextbest.testing import wait_for


def test_a_json_line_has_the_documented_fields():
    formatter = JsonFormatter("trainer")
    record = logging.LogRecord("nextbest", logging.WARNING, __file__, 1, "loop %s: %s", ("home", "é"), None)
    record.loop, record.event_id = "home", "e-1"
    entry = json.loads(formatter.format(record))
    assert entry.pop("time").endswith("+00:00")
    assert entry == {
        "level": "WARNING",
        "logger": "nextbest",
        "message": "loop home: é",
        "process": "trainer",
        "loop": "home",
        "event_id": "e-1",
    }
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("nextbest", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    entry = json.loads(formatter.format(record))
    assert "loop" not in entry and "ValueError: boom" in entry["exception"]


@pytest.mark.slow
def test_serve_with_workers_logs_json_lines_naming_the_loop(tmp_path):
    argv = [sys.executable, "-m", "nextbest", "--log-format", "json", "serve", "--store", str(tmp_path / "data")]
    proc = subprocess.Popen(
        [*argv, "--port", "0", "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        address = re.search(r"serving on (\S+)", proc.stdout.readline()).group(1)
        with Client(address) as client:
            client.wait_ready()
            client.update_loop("default", reward_wait_seconds=0.2, publish_interval_seconds=0.2)
            for i in range(10):
                r = client.rank([action("a", "email"), action("b", "push")], event_id=f"e{i}")
                client.reward(r.event_id, 1.0)
            wait_for(lambda: client.stats("default").learned >= 10, timeout=30)
            # the worker this connection reaches serves the published model: it has logged the swap
            probe = [action("a", "email"), action("b", "push")]
            wait_for(
                lambda: client.rank(probe, deferred=True).model_version == client.stats("default").model_version,
                timeout=30,
            )
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    entries = [json.loads(line) for line in err.splitlines()]  # every line is one JSON object
    assert all({"time", "level", "logger", "message", "process"} <= e.keys() for e in entries)
    roles = {e["process"].split()[0] for e in entries}
    assert roles == {"main", "worker"}, roles
    assert any(e.get("loop") == "default" and e["process"].startswith("worker") for e in entries)
    assert any(e.get("loop") == "default" and e["process"].startswith("main") for e in entries)
