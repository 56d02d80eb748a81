"""Prometheus exposition: RPC counts and latencies by method and code, loop gauges, store size."""

import urllib.request

import grpc
import pytest

from nextbest.client import action
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
