"""The HTTP/JSON API (server/http): nextbest's own JSON API over a real server, its errors, keys, limits."""

import http.client
import json
import math
import os
import re
import signal
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from nextbest.client import action
from nextbest.server.auth import ApiKeys
from nextbest.server.store import Stream
from nextbest.server.tls import ServerTls
from nextbest.testing import child_pids, http_call, make_certificates, running_server
from nextbest.v1 import records_pb2

ACTIONS = [
    {"id": "welcome-email", "channel": "email", "features": {"offer": {"categorical": {"kind": "welcome"}}}},
    {"id": "app-tip", "channel": "push", "features": {"offer": {"numeric": {"value": 2.5}}}},
    {"id": "sms-coupon", "channel": "sms"},
]
CONTEXT = {"user": {"categorical": {"segment": "student"}, "numeric": {"visits": 3}, "tokens": ["sports"]}}


@pytest.fixture
def http_served(tmp_path):
    with running_server(tmp_path / "store", http_port=0) as pair:
        yield pair


def test_rank_over_http_answers_and_logs_the_decision_as_grpc_does(http_served):
    server, client = http_served
    answer = http_call(
        server.http_port, "POST", "/v1/loops/default:rank", {"eventId": "e-1", "context": CONTEXT, "actions": ACTIONS}
    )
    assert answer.status == 200, answer.body
    assert answer.headers["content-type"] == "application/json"
    ranked = answer.json()
    assert ranked["eventId"] == "e-1"
    assert {r["actionId"] for r in ranked["ranking"]} == {a["id"] for a in ACTIONS}
    assert math.isclose(sum(r["probability"] for r in ranked["ranking"]), 1.0, abs_tol=1e-12)
    assert ranked["policy"] == "vw:--cb_explore_adf --epsilon 0.05 -q ::"
    assert ranked["learningMode"] == "LEARNING_MODE_ONLINE" and ranked["holdout"] is False

    record = records_pb2.DecisionRecord.FromString(server.store.log.get(Stream.DECISIONS, "default", "e-1"))
    assert record.actions[record.chosen_index].id == ranked["chosenActionId"]
    assert record.context["user"].categorical["segment"] == "student"
    retried = client.rank([action(a["id"]) for a in ACTIONS], event_id="e-1")  # a retry over gRPC: the same decision
    assert retried.chosen_action_id == ranked["chosenActionId"]


def listening_ports(pid):
    """The TCP ports process `pid` listens on (Linux /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.slow
def test_serve_http_port_serves_http_in_every_worker_and_counts_the_calls(tmp_path):
    args = ["serve", "--store", str(tmp_path / "store"), "--port", "0", "--workers", "2", "--http-port", "0"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "nextbest", "--log-level", "WARNING", *args, "--metrics-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        http_port = int(re.search(r"HTTP on port (\d+)", line).group(1))
        metrics_port = int(re.search(r"metrics on port (\d+)", line).group(1))
        workers = [p for p in child_pids(proc.pid) if "resource_tracker" not in Path(f"/proc/{p}/cmdline").read_text()]
        assert len(workers) == 2 and all(http_port in listening_ports(p) for p in workers)
        for i in range(10):
            ranked = http_call(http_port, "POST", "/v1/loops/default:rank", {"eventId": f"e{i}", "actions": ACTIONS})
            assert ranked.status == 200, ranked.body
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
            text = response.read().decode()
        counted = re.search(r'nextbest_http_requests_total\{route="DecisionService/Rank",status="200"\} (\S+)', text)
        assert counted and float(counted.group(1)) == 10
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, proc.stderr.read()


KEYS = {"decide-key-0123456789": ["decide"], "admin-key-0123456789": ["admin"]}


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    keys = ApiKeys.parse(json.dumps(KEYS), "test keys")
    with running_server(tmp_path_factory.mktemp("store"), api_keys=keys, train=False, http_port=0) as pair:
        yield pair[0]


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "message"),
    [
        ("POST", "/v1/loops/default:rank", {}, 401, "missing API key: send the header 'Authorization: Bearer KEY'"),
        ("POST", "/v1/loops/default:rank", {"Authorization": "Bearer wrong-key-0123456789"}, 401, "unknown API key"),
        ("POST", "/v1/loops/default:rank", {"Authorization": "Basic decide-key-0123456789"}, 401, "missing API key"),
        ("POST", "/v1/loops/default:rank", {"Authorization": "Bearer decide-key-0123456789"}, 200, None),
        ("POST", "/v1/loops/default:rank", {"Ocp-Apim-Subscription-Key": "decide-key-0123456789"}, 200, None),
        (
            "POST",
            "/v1/loops/default:rank",
            {"Ocp-Apim-Subscription-Key": "decide-key-0123456789", "Authorization": "Bearer admin-key-0123456789"},
            401,
            "missing API key",
        ),
        (
            "POST",
            "/v1/loops/default:rank",
            {"Authorization": "Bearer admin-key-0123456789"},
            403,
            "DecisionService/Rank: the API key lacks the scope 'decide'",
        ),
        ("GET", "/v1/loops", {"Ocp-Apim-Subscription-Key": "admin-key-0123456789"}, 200, None),
        (
            "GET",
            "/v1/loops",
            {"Authorization": "Bearer decide-key-0123456789"},
            403,
            "AdminService/ListLoops: the API key lacks the scope 'admin'",
        ),
    ],
)
def test_http_calls_need_a_key_with_the_rpcs_scope(keyed, method, path, headers, status, message):
    body = {"actions": ACTIONS} if method == "POST" else None
    answer = http_call(keyed.http_port, method, path, body, headers=headers)
    assert answer.status == status, answer.body
    if message is not None:
        error = answer.json()
        assert error["code"] == ("UNAUTHENTICATED" if status == 401 else "PERMISSION_DENIED")
        assert error["message"].startswith(message)
        assert b"-key-" not in answer.body  # no key is ever echoed


@pytest.mark.slow
def test_http_serves_the_same_tls_as_grpc_and_mutual_tls_refuses_clients_without_a_certificate(tmp_path):
    certificates = make_certificates(tmp_path / "certs")
    trusting = ssl.create_default_context(cafile=str(certificates.ca))
    tls = ServerTls.load(certificates.server_cert, certificates.server_key)
    with running_server(tmp_path / "a", tls=tls, http_port=0, client_options={"ca_cert": certificates.ca}) as pair:
        answer = http_call(pair[0].http_port, "GET", "/v1/loops", tls=trusting, host="localhost")
        assert answer.status == 200 and answer.json()["loops"][0]["name"] == "default"
        with pytest.raises(ssl.SSLError):  # the server's certificate is not trusted by default
            http_call(pair[0].http_port, "GET", "/v1/loops", tls=ssl.create_default_context(), host="localhost")
        with pytest.raises((ConnectionError, http.client.HTTPException)):  # no plain HTTP on a TLS port
            http_call(pair[0].http_port, "GET", "/v1/loops")

    mutual = ServerTls.load(certificates.server_cert, certificates.server_key, certificates.ca)
    client = {
        "ca_cert": certificates.ca,
        "client_cert": certificates.client_cert,
        "client_key": certificates.client_key,
    }
    with running_server(tmp_path / "b", tls=mutual, http_port=0, client_options=client) as pair:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            http_call(pair[0].http_port, "GET", "/v1/loops", tls=trusting, host="localhost")
        trusting.load_cert_chain(certificates.client_cert, certificates.client_key)
        assert http_call(pair[0].http_port, "GET", "/v1/loops", tls=trusting, host="localhost").status == 200
