"""Prometheus exposition: RPC counts and latencies by method and code, loop gauges, store size."""

import socket
import urllib.error
import urllib.request

import grpc
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from nextbest.client import action
from nextbest.server.app import NextbestServer, ensure_default_loop
from nextbest.server.metrics import LOOP_STATS_SECONDS, LoopCollector
from nextbest.server.stats import loop_stats
from nextbest.server.store import open_store
from nextbest.testing import running_server, wait_for

ACTIONS = [action("a", "email"), action("b", "push")]


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def sample(text, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name}{{{want}}}")


def test_metrics_endpoint(tmp_path):
    with running_server(tmp_path / "s", metrics_port=0) as (server, client):
        client.create_loop("m", reward_wait_seconds=0.05, publish_interval_seconds=0.05)
        for i in range(7):
            client.reward(client.rank(ACTIONS, loop="m", event_id=f"e{i}").event_id, 1.0, loop="m")
        with pytest.raises(grpc.RpcError):
            client.rank([], loop="m")
        wait_for(lambda: client.stats("m").learned == 7)
        text = scrape(server.metrics_port)
        assert sample(text, "nextbest_rpc_requests_total", method="DecisionService/Rank", code="OK") == 7
        assert sample(text, "nextbest_rpc_requests_total", method="DecisionService/Rank", code="INVALID_ARGUMENT") == 1
        assert sample(text, "nextbest_rpc_latency_seconds_count", method="DecisionService/Reward") == 7
        assert sample(text, "nextbest_rpc_latency_seconds_bucket", method="DecisionService/Rank", le="+Inf") == 8
        assert sample(text, "nextbest_decisions_total", loop="m") == 7
        assert sample(text, "nextbest_joined_total", loop="m") == 7
        assert sample(text, "nextbest_learned_total", loop="m") == 7
        assert sample(text, "nextbest_model_version", loop="m") >= 1
        assert sample(text, "nextbest_learner_lag_events", loop="m") == 0
        assert sample(text, "nextbest_model_age_seconds", loop="m") >= 0
        assert sample(text, "nextbest_store_bytes") > 0


def reachable(host, port):
    try:
        with socket.create_connection((host, port), timeout=5):
            return True
    except OSError:
        return False


@pytest.mark.slow
def test_metrics_bind_loopback_whatever_the_grpc_host(tmp_path):
    server = NextbestServer(open_store(str(tmp_path / "s")), "0.0.0.0", 0, insecure=True, train=False, metrics_port=0)
    with server:
        assert reachable("127.0.0.2", server.port)  # gRPC listens on every address
        assert reachable("127.0.0.1", server.metrics_port)
        assert not reachable("127.0.0.2", server.metrics_port)
    opened = NextbestServer(open_store(str(tmp_path / "t")), train=False, metrics_port=0, metrics_host="0.0.0.0")
    with opened:
        assert reachable("127.0.0.2", opened.metrics_port)


def test_only_the_metrics_path_is_served(tmp_path):
    with running_server(tmp_path / "s", metrics_port=0, train=False) as (server, _):
        for path in ("/", "/metricsx", "/x/metrics", "/favicon.ico"):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}{path}", timeout=10)
            assert err.value.code == 404
        with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics?x=1", timeout=10) as response:
            assert response.status == 200 and b"nextbest_decisions_total" in response.read()


def test_loop_stats_are_computed_once_per_interval(tmp_path, clock):
    with open_store(str(tmp_path / "s")) as store:
        ensure_default_loop(store)
        computed = []

        def stats(loop):
            computed.append(loop)
            return loop_stats(store, loop)

        registry = CollectorRegistry()
        registry.register(LoopCollector(store, stats, clock=clock))
        for _ in range(5):
            assert b'nextbest_decisions_total{loop="default"} 0.0' in generate_latest(registry)
        assert computed == ["default"]
        clock.advance(LOOP_STATS_SECONDS)
        generate_latest(registry)
        assert computed == ["default", "default"]
