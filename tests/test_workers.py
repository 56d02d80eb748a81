"""`nextbest serve --workers 2`: two processes share the port and the store, one trainer learns, both swap
models, metrics aggregate across workers, and a clean shutdown keeps every acknowledged decision."""

import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from planted import ACTIONS, PERSONALIZING

from nextbest.client import Client
from nextbest.server.store import Stream, open_store
from nextbest.testing import child_commands, wait_for

CHANNELS = 16  # separate connections, spread over the workers by the kernel


def cpu_ticks(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


@pytest.mark.slow
def test_two_workers_share_port_store_and_models(tmp_path):
    store = tmp_path / "store"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nextbest",
            "--log-level",
            "WARNING",
            "serve",
            "--store",
            str(store),
            "--port",
            "0",
            "--workers",
            "2",
            "--metrics-port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    clients = []
    try:
        line = proc.stdout.readline()
        address = re.search(r"serving on (\S+)", line).group(1)
        metrics_port = int(re.search(r"metrics on port (\d+)", line).group(1))
        workers = [p for p, command in child_commands(proc.pid).items() if "resource_tracker" not in command]
        assert len(workers) == 2, workers
        before = {p: cpu_ticks(p) for p in workers}

        clients = [Client(address) for _ in range(CHANNELS)]
        admin = clients[0]
        admin.create_loop("w", policy=PERSONALIZING, reward_wait_seconds=0.05, publish_interval_seconds=0.05)
        wait_for(lambda: all(any(cfg.name == "w" for cfg in c.list_loops()) for c in clients))
        ranked = 0
        for _ in range(40):
            for c in clients:
                r = c.rank(ACTIONS, {"user": {"segment": "student"}}, loop="w", event_id=f"e{ranked}")
                c.reward(r.event_id, 1.0 if r.chosen_action_id == "push-tip" else 0.0, loop="w")
                ranked += 1
        stats = wait_for(lambda: (s := admin.stats("w")).learned == ranked and s)
        version = int(stats.model_version)
        assert version >= 1
        # every worker serves the newest model
        wait_for(lambda: all(int(c.rank(ACTIONS, loop="w").model_version) >= version for c in clients))
        assert all(cpu_ticks(p) - before[p] > 10 for p in workers), "both workers served calls"

        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
            text = response.read().decode()
        counted = re.search(r'nextbest_rpc_requests_total\{code="OK",method="DecisionService/Rank"\} (\S+)', text)
        assert float(counted.group(1)) >= ranked
        assert 'nextbest_decisions_total{loop="w"} ' in text
    finally:
        for c in clients:
            c.close()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0, proc.stderr.read()
    with open_store(str(store)) as s:  # every acknowledged decision is in the store
        assert all(s.log.get(Stream.DECISIONS, "w", f"e{i}") is not None for i in range(ranked))


@pytest.mark.slow
def test_two_trainer_processes_learn_different_loops(tmp_path):
    """`nextbest serve --trainers 2`: the parent's trainer and a trainer process each take their share of the loops
    (the `default` one and two created), so that loops are learned by two different processes; every loop learns."""
    log_file = tmp_path / "serve.log"
    with open(log_file, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nextbest", "--log-level", "INFO", "serve", "--store", str(tmp_path / "store")]
            + ["--port", "0", "--trainers", "2"],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    client = None
    try:
        address = re.search(r"serving on (\S+)", proc.stdout.readline()).group(1)
        client = Client(address)
        loops = ["a", "b"]
        for loop in loops:
            client.create_loop(loop, policy=PERSONALIZING, reward_wait_seconds=0.05, publish_interval_seconds=0.05)
        for i in range(20):
            for loop in loops:
                r = client.rank(ACTIONS, {"user": {"segment": "student"}}, loop=loop, event_id=f"{loop}{i}")
                client.reward(r.event_id, 1.0, loop=loop)
        for loop in loops:
            wait_for(lambda loop=loop: client.stats(loop).learned == 20)
        training = re.findall(r"trainer \S+?:(\d+):\S+: training loop (\S+)", log_file.read_text())
    finally:
        if client:
            client.close()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0, log_file.read_text()[-3000:]
    by_loop = {loop: pid for pid, loop in training}
    assert sorted(by_loop) == ["a", "b", "default"] and len(training) == 3, training  # each loop taken once
    pids = {int(pid) for pid in by_loop.values()}
    assert len(pids) == 2 and proc.pid in pids, (proc.pid, by_loop)  # the parent and a trainer process learn


@pytest.mark.parametrize(
    ("store", "trainers", "why"),
    [("{tmp}/store", "0", "--trainers must be at least 1"), ("nats://127.0.0.1:1", "2", "--trainers needs an LMDB")],
)
def test_serve_refuses_trainers_it_cannot_run(tmp_path, store, trainers, why):
    argv = ["serve", "--store", store.format(tmp=tmp_path), "--port", "0", "--trainers", trainers]
    out = subprocess.run([sys.executable, "-m", "nextbest", *argv], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and why in out.stderr
