"""The container image and the compose files, run with a real dockerd (see the README, "Run in a container").

The image is built once per session by tools/build_image.sh on a Debian base made with debootstrap (no container
registry needed); every test skips, saying why, when there is no dockerd to run it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from subprocess import CompletedProcess

import grpc
import numpy as np
import pytest
from planted import ACTIONS, PERSONALIZING, planted_round

from nextbest import Client
from nextbest.server.workers import free_port
from nextbest.testing import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "nextbest-test"
BASE = "nextbest-base:bookworm"
KEY = "container-test-key-0123"
KEYS = json.dumps({KEY: ["decide", "admin"]})
MAX_IMAGE_BYTES = 400_000_000


def _run(*args: str, check: bool = True, timeout: float = 600, env: dict | None = None) -> CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def _docker_problem() -> str | None:
    """Why no container can run here, or None."""
    if shutil.which("docker") is None:
        return "no docker client (Debian: apt-get install docker.io; .ci/run does it as root)"
    info = _run("docker", "info", "--format", "{{.ServerVersion}}", check=False, timeout=30)
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["docker info failed"])[-1]
        return f"no dockerd to talk to ({reason}); start one as root: dockerd &"
    if shutil.which("debootstrap") is None and _run("docker", "image", "inspect", BASE, check=False).returncode:
        return f"no base image {BASE} and no debootstrap to make it (apt-get install debootstrap)"
    return None


@pytest.fixture(scope="session")
def image() -> str:
    """The image built from this checkout (once per session; the base and unchanged layers are reused)."""
    problem = _docker_problem()
    if problem:
        pytest.skip(problem)
    env = {**os.environ, "PYTHON": sys.executable}
    built = _run("tools/build_image.sh", "--debootstrap-base", "--tag", IMAGE, check=False, timeout=1200, env=env)
    if built.returncode and "debootstrap failed" in built.stderr:  # e.g. no route to Debian's mirror
        pytest.skip(f"cannot make the base image {BASE}: {built.stderr.strip().splitlines()[-1]}")
    assert built.returncode == 0, f"tools/build_image.sh exited {built.returncode}:\n{built.stdout}\n{built.stderr}"
    return f"{IMAGE}:latest"


@pytest.fixture
def compose() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("no docker-compose (Debian: apt-get install docker-compose; .ci/run does it as root)")
    return binary


def _published_port(container: str) -> int:
    """The host port docker published for the container's gRPC port (on 127.0.0.1)."""
    mapping = _run("docker", "port", container, "50051/tcp").stdout.split()[0]
    return int(mapping.rsplit(":", 1)[1])


@contextmanager
def _client(port: int, api_key: str | None = KEY) -> Iterator[Client]:
    with Client(f"127.0.0.1:{port}", api_key=api_key) as client:
        client.wait_ready(timeout=90)
        yield client


@contextmanager
def _container(image: str, *args: str, volume: str | None = None, keys: bool = True) -> Iterator[str]:
    """A detached container of the image publishing its gRPC port on a free loopback port; removed on exit."""
    options = ["-p", "127.0.0.1::50051"]
    options += ["-v", f"{volume}:/data"] if volume else []
    options += ["-e", f"NEXTBEST_API_KEYS={KEYS}"] if keys else []
    container = _run("docker", "run", "-d", *options, image, *args).stdout.strip()
    try:
        yield container
    finally:
        _run("docker", "rm", "-f", "-v", container, check=False)  # -v: its anonymous volume, if any


@pytest.fixture
def volume() -> Iterator[str]:
    name = f"nextbest-test-{uuid.uuid4().hex[:12]}"
    yield name
    _run("docker", "volume", "rm", "-f", name, check=False)


def _inspect(container: str, template: str) -> str:
    return _run("docker", "inspect", "--format", template, container).stdout.strip()


def test_the_image_serves_stops_gracefully_and_keeps_its_decisions_in_the_volume(image: str, volume: str) -> None:
    rng = np.random.default_rng(3)
    with _container(image, volume=volume) as first:
        with _client(_published_port(first)) as client:
            context = {"user": {"segment": "student"}}
            ranked = {f"e{i}": client.rank(ACTIONS, context, event_id=f"e{i}") for i in range(20)}
            for event_id in ranked:
                assert not client.reward(event_id, float(rng.random() < 0.5))  # not a duplicate
            # keys are required: the port is published to the host
            with _client(_published_port(first), api_key=None) as anonymous, pytest.raises(grpc.RpcError) as e:
                anonymous.rank(ACTIONS)
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        wait_for(lambda: _inspect(first, "{{.State.Health.Status}}") == "healthy", timeout=60, interval=1)

        _run("docker", "stop", "-t", "30", first, timeout=60)
        output = _run("docker", "logs", first)
        logs = output.stdout + output.stderr
        assert _inspect(first, "{{.State.ExitCode}}") == "0", logs
        assert "received SIGTERM; shutting down" in logs and "nextbest stopped" in logs, logs

    # a new container on the same volume: every decision is still there, and answered again on a retry
    with _container(image, volume=volume) as second, _client(_published_port(second)) as client:
        stats = client.stats("default")
        assert stats.decisions == 20 and stats.rewards == 20
        for event_id, before in ranked.items():
            again = client.rank(ACTIONS, context, event_id=event_id)
            assert (again.chosen_action_id, again.model_version) == (before.chosen_action_id, before.model_version)
        assert client.stats("default").decisions == 20


def test_the_image_refuses_to_serve_without_keys_unless_told_insecure(image: str) -> None:
    refused = _run("docker", "run", "--rm", image, check=False, timeout=120)
    assert refused.returncode != 0
    assert "no API keys configured: refusing to serve 0.0.0.0 without authentication" in refused.stderr

    with _container(image, "--insecure", keys=False) as container, _client(_published_port(container), None) as c:
        assert c.rank(ACTIONS).chosen_action_id
        assert "--insecure and no API keys" in _run("docker", "logs", container).stdout


def test_the_image_runs_as_a_user_and_is_under_400_mb(image: str) -> None:
    assert _inspect(image, "{{.Config.User}}") == "10001:10001"
    ids = _run("docker", "run", "--rm", "--entrypoint", "sh", image, "-c", "id -u; stat -c %u /data").stdout.split()
    assert ids == ["10001", "10001"]
    size = int(_inspect(image, "{{.Size}}"))
    print(f"{image}: {size / 1e6:.0f} MB")
    assert size < MAX_IMAGE_BYTES


@contextmanager
def _compose_up(compose: str, image: str, file: str, **ports: int) -> Iterator[Callable[..., CompletedProcess]]:
    """`docker-compose up -d` of deploy/`file` as a project of its own; yields a function running more
    docker-compose commands on it; `down -v` (containers, network, volumes) on exit."""
    project = f"nbtest{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "NEXTBEST_IMAGE": image, "NEXTBEST_API_KEYS": KEYS, **{k: str(v) for k, v in ports.items()}}
    command = [compose, "-p", project, "-f", str(ROOT / "deploy" / file)]

    def run(*args: str) -> CompletedProcess:
        return _run(*command, *args, env=env, timeout=300)

    try:
        run("up", "-d")
        yield run
    finally:
        run("down", "-v", "-t", "30")


def test_the_single_node_compose_file_keeps_the_store_across_down_and_up(image: str, compose: str) -> None:
    port = free_port("127.0.0.1")
    with _compose_up(compose, image, "compose.single.yaml", NEXTBEST_PORT=port) as run:
        with _client(port) as client:
            event = client.rank(ACTIONS, event_id="kept")
            client.reward("kept", 1.0)
        run("down")  # containers and network go, the named volume stays
        run("up", "-d")
        with _client(port) as client:
            stats = client.stats("default")
            assert (stats.decisions, stats.rewards) == (1, 1)
            assert client.rank(ACTIONS, event_id="kept").chosen_action_id == event.chosen_action_id


def test_the_cluster_compose_file_serves_through_both_replicas_and_learns(image: str, compose: str) -> None:
    ports = {"NEXTBEST_PORT_1": free_port("127.0.0.1"), "NEXTBEST_PORT_2": free_port("127.0.0.1")}
    with (
        _compose_up(compose, image, "compose.cluster.yaml", **ports) as run,
        _client(ports["NEXTBEST_PORT_1"]) as a,
        _client(ports["NEXTBEST_PORT_2"]) as b,
    ):
        a.create_loop("p", policy=PERSONALIZING, reward_wait_seconds=0.5, publish_interval_seconds=0.2)
        wait_for(lambda: any(c.name == "p" for c in b.list_loops()), timeout=10)  # configs reach every replica
        rng = np.random.default_rng(11)
        rounds = 600
        hits = np.array([planted_round((a, b)[i % 2], "p", f"e{i}", rng) for i in range(rounds)])
        first, last = hits[:100].mean(), hits[-200:].mean()
        print(f"best-action rate through the two replicas: first 100 {first:.3f}, last 200 {last:.3f} (chance 0.25)")
        assert last > 0.7, (first, last)
        # the joiner's counters are saved a moment after the events it joined are learned
        stats = wait_for(lambda: (s := a.stats("p")).learned == s.joined == rounds and s, timeout=60, interval=0.2)
        assert stats.decisions == stats.rewards == stats.joined == rounds
        version = int(stats.model_version)
        for replica in (a, b):  # both replicas serve what the trainer published
            wait_for(lambda r=replica: int(r.rank(ACTIONS, loop="p").model_version) >= version, timeout=10)
        # every part passes its health check: 3 NATS nodes, 2 trainers, 2 replicas
        wait_for(lambda: run("ps").stdout.count("(healthy)") == 7, timeout=60, interval=2)
