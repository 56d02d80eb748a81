"""`nextbest train` as a process: the same policy restrictions as `nextbest serve`, and a bounded shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nextbest import policies
from nextbest.client import action
from nextbest.policies.rules import restrict_rules_files
from nextbest.server.learner import learned_position
from nextbest.server.store import open_store
from nextbest.testing import child_commands, nats_server_binary, running_nats, running_server, wait_for

ACTIONS = [action("a", "email"), action("b", "push")]
RULES = "rules:journey.json"
PYTHON = "python:nextbest.policies.examples:SegmentGreedy:segment=user.segment"


def train(store: str, *flags: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "nextbest", "--log-level", "INFO", "train", "--store", store, *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def logged_loops(tmp_path: Path) -> tuple[str, Path]:
    """A store with a loop of each spec that reaches outside itself, each with rewarded decisions to learn from,
    logged by a server allowed to use them (as `serve --rules-dir DIR --policy-module nextbest.policies.examples`)."""
    rules = tmp_path / "rules"
    rules.mkdir()
    journey = {"rules": [{"if": {"user.segment": "x"}, "then": ["a"]}], "fallback": ["b"]}
    (rules / "journey.json").write_text(json.dumps(journey))
    restore = restrict_rules_files(rules)
    previous = policies.allow_python_modules(["nextbest.policies.examples"])
    try:
        with running_server(tmp_path / "store", train=False) as (_, client):
            for name, spec in (("rules", RULES), ("python", PYTHON)):
                client.create_loop(name, policy=spec, reward_wait_seconds=0.05, publish_interval_seconds=0.05)
                for i in range(5):
                    client.reward(client.rank(ACTIONS, loop=name, event_id=f"{name}{i}").event_id, 1.0, loop=name)
    finally:
        restore()
        policies.allow_python_modules(previous)
    return str(tmp_path / "store"), rules


def stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return err


@pytest.mark.slow
def test_train_refuses_the_specs_serve_refuses(logged_loops):
    store, _ = logged_loops
    proc = train(store)
    deadline = time.monotonic() + 30
    lines = []
    while time.monotonic() < deadline and not (
        any("reads no journey files" in line for line in lines)
        and any("python policies must be allowed by the server's configuration" in line for line in lines)
    ):
        lines.append(proc.stderr.readline())
    err = "".join(lines) + stop(proc)
    refused = "loop rules: cannot train it: rules: this server reads no journey files"
    assert err.count(f"{refused} (start it with --rules-dir DIR)") == 1
    python = "loop python: cannot train it: python policies must be allowed by the server's configuration"
    assert err.count(f"{python} (--policy-module nextbest.policies.examples)") == 1
    assert "Traceback" not in err
    with open_store(store) as s:
        assert learned_position(s, "rules") == learned_position(s, "python") == 0


@pytest.mark.slow
def test_train_uses_the_specs_its_flags_allow(logged_loops):
    store, rules = logged_loops
    proc = train(store, "--rules-dir", str(rules), "--policy-module", "nextbest.policies.examples")
    with open_store(store) as s:
        wait_for(lambda: learned_position(s, "rules") == learned_position(s, "python") == 5, timeout=30)
    err = stop(proc)
    assert "journey files" not in err and "must be allowed" not in err


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--rules-dir", "/no/such/dir"], "nextbest train: --rules-dir /no/such/dir: no such directory"),
        (["--policy-module", "not a module"], "nextbest train: --policy-module: not a Python module name"),
    ],
)
def test_train_refuses_unusable_restrictions(tmp_path, flags, message):
    done = subprocess.run(
        [sys.executable, "-m", "nextbest", "train", "--store", str(tmp_path / "store"), *flags],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and message in done.stderr, done.stderr
    assert not (tmp_path / "store").exists()


@pytest.mark.slow
@pytest.mark.skipif(nats_server_binary() is None, reason="no nats-server binary (the test extra installs it)")
def test_train_stops_within_seconds_when_the_store_is_gone(tmp_path):
    with running_nats(tmp_path / "nats") as url:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nextbest", "--log-level", "INFO", "train", "--store", url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert "nextbest training" in proc.stdout.readline()
        while "training loop default" not in proc.stderr.readline():  # it holds a lease to release
            pass
        nats = next(p for p, command in child_commands(os.getpid()).items() if "nats-server" in command)
        os.kill(nats, signal.SIGKILL)
        time.sleep(1)  # the trainer notices
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - started
    print(f"stopped in {took:.1f} s; stderr:\n{err}")
    assert took < 10 and proc.returncode == 0
    assert "Traceback" not in err
