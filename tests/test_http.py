"""The HTTP/JSON API (server/http): nextbest's own JSON API over a real server, its errors, keys, limits."""

import asyncio
import http.client
import json
import math
import os
import random
import re
import signal
import socket
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path
from urllib.parse import quote, unquote, urlencode

import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from nextbest.cli import main
from nextbest.client import action
from nextbest.server.app import NextbestServer
from nextbest.server.auth import ApiKeys
from nextbest.server.bench.load import rank_request
from nextbest.server.config import DEFAULT_POLICY, Limits
from nextbest.server.evaluation import EvaluationLimits
from nextbest.server.http import fastjson, personalizer
from nextbest.server.http.api import Services
from nextbest.server.http.app import PERSONALIZER_MOUNTS, HttpServer, build_app, listening_socket
from nextbest.server.http.jsonapi import ADMIN_SERVICE, DECISION_SERVICE, RPCS
from nextbest.server.restrictions import Restrictions
from nextbest.server.store import Stream, open_store
from nextbest.server.tls import ServerTls
from nextbest.testing import FakeClock, child_commands, http_call, make_certificates, running_server, wait_for
from nextbest.v1 import decision_pb2, records_pb2

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
    assert ranked["policy"] == DEFAULT_POLICY
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
        workers = [p for p, command in child_commands(proc.pid).items() if "resource_tracker" not in command]
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


def call_ok(port, method, path, body=None, **options):
    answer = http_call(port, method, path, body, **options)
    assert answer.status == 200, (method, path, answer.status, answer.body)
    return answer


SPEC = "vw:--cb_explore_adf --epsilon 0.2 -q ::"


@pytest.mark.slow
def test_every_admin_rpc_over_http_matches_grpc(http_served, tmp_path):
    server, client = http_served
    port = server.http_port
    config = {"name": "source", "policy": SPEC, "rewardWaitSeconds": 0.05, "publishIntervalSeconds": 0.05}
    created = call_ok(port, "POST", "/v1/loops", config).json()
    assert created["name"] == "source" and created["version"] == "1"  # int64: a string in the JSON mapping
    assert created == json_format.MessageToDict(client.get_loop("source"), always_print_fields_with_no_presence=True)
    assert call_ok(port, "GET", "/v1/loops/source").json() == created
    assert [c["name"] for c in call_ok(port, "GET", "/v1/loops").json()["loops"]] == ["default", "source"]

    for i in range(20):
        ranked = call_ok(port, "POST", "/v1/loops/source:rank", {"eventId": f"s{i}", "actions": ACTIONS}).json()
        reward = {"value": 1.0 if ranked["chosenActionId"] == "app-tip" else 0.0, "rewardId": "r"}
        assert call_ok(port, "POST", f"/v1/loops/source/events/s{i}:reward", reward).json() == {"duplicate": False}
    assert call_ok(port, "POST", "/v1/loops/source/events/s0:reward", {"value": 1, "rewardId": "r"}).json() == {
        "duplicate": True
    }
    assert call_ok(port, "POST", "/v1/loops/source/events/s0:activate").json() == {"duplicate": False}
    models = wait_for(
        lambda: [m for m in call_ok(port, "GET", "/v1/loops/source/models").json()["models"] if int(m["learnedSeq"])]
    )
    stats = call_ok(port, "GET", "/v1/loops/source/stats").json()
    assert stats["decisions"] == "20" and stats["loop"] == "source"

    exported = call_ok(port, "GET", "/v1/loops/source/model:export")
    assert exported.headers["content-type"] == "application/octet-stream"
    grpc_export = client.export_model("source", version=int(exported.headers["nextbest-model-version"]))
    assert exported.body == grpc_export.data and unquote(exported.headers["nextbest-model-spec"]) == SPEC
    version = models[0]["version"]
    assert call_ok(port, "GET", f"/v1/loops/source/model:export?version={version}").body == (
        client.export_model("source", version=int(version)).data
    )

    call_ok(port, "POST", "/v1/loops", {"name": "target"})
    imported = call_ok(port, "POST", f"/v1/loops/target/model:import?spec={quote(SPEC)}", exported.body).json()
    assert imported["live"] is True and imported["spec"] == SPEC and imported["loop"] == "target"
    assert client.export_model("target").data == exported.body
    rolled = call_ok(port, "POST", f"/v1/loops/target/models/{imported['version']}:rollback").json()
    assert int(rolled["version"]) > int(imported["version"])

    shadow = "vw:--cb_explore_adf --squarecb -q ::"
    changed = call_ok(port, "POST", "/v1/loops/source:setPolicy", {"spec": shadow, "mode": "POLICY_MODE_SHADOW"})
    assert changed.json()["shadowPolicies"] == [shadow]
    promoted = call_ok(port, "POST", "/v1/loops/source:promotePolicy", {"shadow": shadow}).json()
    assert promoted["policy"] == shadow and promoted["shadowPolicies"] == []

    updated = dict(created, policy="random", rewardWaitSeconds=1, version=promoted["version"])
    assert call_ok(port, "PUT", "/v1/loops/source", updated).json()["policy"] == "random"
    assert call_ok(port, "DELETE", "/v1/loops/target").json() == {}
    assert http_call(port, "GET", "/v1/loops/target").status == 404

    rules = json.dumps({"rules": [{"name": "weekly", "max": 3, "per_seconds": 604800}]})
    policy = call_ok(port, "PUT", "/v1/contactPolicy", {"spec": rules}).json()
    assert policy == json_format.MessageToDict(client.get_contact_policy()) and policy["version"] == "1"
    assert call_ok(port, "GET", "/v1/contactPolicy").json() == policy


@pytest.mark.slow
def test_evaluate_and_reward_stream_over_http(http_served):
    server, client = http_served
    port = server.http_port
    call_ok(port, "POST", "/v1/loops", {"name": "ev", "rewardWaitSeconds": 0.05, "publishIntervalSeconds": 0.05})
    for i in range(30):
        call_ok(port, "POST", "/v1/loops/ev:rank", {"eventId": f"e{i}", "actions": ACTIONS})
    rewards = [{"eventId": f"e{i}", "value": 1.0, "rewardId": "x"} for i in range(20)]
    summary = call_ok(port, "POST", "/v1/loops/ev/rewards:stream", rewards).json()
    assert summary == {"accepted": "20", "duplicates": "0"}
    ndjson = "\n".join(json.dumps(r) for r in [*rewards[:5], {"eventId": "e25", "value": 0.5}]).encode()
    assert call_ok(port, "POST", "/v1/loops/ev/rewards:stream", ndjson).json() == {"accepted": "1", "duplicates": "5"}
    wait_for(lambda: client.stats("ev").rewards == 21)  # counted as the joiner reads them

    wait_for(lambda: client.stats("ev").joined == 30)
    report = call_ok(port, "POST", "/v1/loops/ev:evaluate", {"specs": [SPEC]}).json()
    assert report["events"] == "30" and {p["spec"] for p in report["policies"]} >= {"logged", SPEC}


NUMERIC = b'{"actions": [{"id": "a"}], "context": {"u": {"numeric": {"x": %s}}}}'
BAD_INPUTS = [
    # (method, path, body, status, code, words the message has)
    ("POST", "/v1/loops/default:rank", b"{not json", 400, "INVALID_ARGUMENT", ["not valid JSON", "line 1, column 2"]),
    ("POST", "/v1/loops/default:rank", b"\xff\xfe", 400, "INVALID_ARGUMENT", ["not UTF-8"]),
    ("POST", "/v1/loops/default:rank", [1, 2], 400, "INVALID_ARGUMENT", ["request body", "JSON object"]),
    ("POST", "/v1/loops/default:rank", {"actions": "a"}, 400, "INVALID_ARGUMENT", ["actions"]),
    ("POST", "/v1/loops/default:rank", {"actions": ACTIONS, "bogus": 1}, 400, "INVALID_ARGUMENT", ["bogus"]),
    ("POST", "/v1/loops/default:rank", {"actions": [{"id": 5}]}, 400, "INVALID_ARGUMENT", ["id"]),
    ("POST", "/v1/loops/default:rank", {"actions": []}, 400, "INVALID_ARGUMENT", ["actions"]),
    ("POST", "/v1/loops/default:rank", {}, 400, "INVALID_ARGUMENT", ["actions"]),
    ("POST", "/v1/loops/default:rank", {"deferred": "yes"}, 400, "INVALID_ARGUMENT", ["deferred"]),
    ("POST", "/v1/loops/default:rank", b"[" * 100_000, 400, "INVALID_ARGUMENT", ["request body"]),
    ("POST", "/v1/loops/nope:rank", {"actions": ACTIONS}, 404, "NOT_FOUND", ["nope"]),
    ("POST", "/v1/loops/bad%20name:rank", {"actions": ACTIONS}, 404, "NOT_FOUND", ["loop", "bad name"]),
    ("POST", "/v1/loops/other:rank", {"loop": "default", "actions": ACTIONS}, 400, "INVALID_ARGUMENT", ["loop"]),
    ("POST", "/v1/loops/default:rank?x=1", {"actions": ACTIONS}, 400, "INVALID_ARGUMENT", ["query parameter 'x'"]),
    ("POST", "/v1/loops/default/events/e1:reward", {"value": "high"}, 400, "INVALID_ARGUMENT", ["value"]),
    ("POST", "/v1/loops/default/events/e1:reward", {"value": 1e300}, 400, "INVALID_ARGUMENT", ["value"]),
    ("POST", "/v1/loops/default/rewards:stream", [{"eventId": "e"}, 3], 400, "INVALID_ARGUMENT", ["rewards[1]"]),
    ("POST", "/v1/loops/default/rewards:stream", b'{"eventId": "e"}\n{', 400, "INVALID_ARGUMENT", ["body line 2"]),
    ("POST", "/v1/loops/default/rewards:stream", [{"loop": "x", "eventId": "e"}], 400, "INVALID_ARGUMENT", ["loop"]),
    ("GET", "/v1/loops/default/model:export?version=abc", None, 400, "INVALID_ARGUMENT", ["version", "integer"]),
    ("GET", "/v1/loops/default/model:export?versions=1", None, 400, "INVALID_ARGUMENT", ["versions"]),
    ("GET", "/v1/loops/default/model:export?version=7", None, 404, "NOT_FOUND", ["version"]),
    ("POST", "/v1/loops/default/models/x:rollback", None, 400, "INVALID_ARGUMENT", ["version", "integer"]),
    ("POST", "/v1/loops/default/model:import", b"junk", 400, "INVALID_ARGUMENT", ["spec"]),
    ("POST", "/v1/loops/default/model:import?spec=random&data=x", b"", 400, "INVALID_ARGUMENT", ["data"]),
    ("POST", "/v1/loops", {"config": {"name": "x"}}, 400, "INVALID_ARGUMENT", ["config"]),
    ("POST", "/v1/loops", {"name": "default"}, 409, "ALREADY_EXISTS", ["default"]),
    ("PUT", "/v1/loops/default", {"name": "other"}, 400, "INVALID_ARGUMENT", ["config.name"]),
    ("PUT", "/v1/loops/default", {"learningMode": "SOMETIMES"}, 400, "INVALID_ARGUMENT", ["learningMode"]),
    ("POST", "/v1/loops/default:setPolicy", {"spec": "vw:--nonsense-flag"}, 400, "INVALID_ARGUMENT", ["policy"]),
    ("PUT", "/v1/contactPolicy", {"spec": '{"rules": [{"name": "w", "max": -1}]}'}, 400, "INVALID_ARGUMENT", ["w"]),
    ("PUT", "/v1/contactPolicy", {"rules": []}, 400, "INVALID_ARGUMENT", ["rules"]),
    ("POST", "/v1/loops/default:evaluate", {}, 400, "FAILED_PRECONDITION", ["at least 2 events"]),
    ("POST", "/v1/loops/default:rank", NUMERIC % (b"1" + b"0" * 400), 400, "INVALID_ARGUMENT", ["context.u.numeric.x"]),
    ("POST", "/v1/loops/default:rank", NUMERIC % b"1e400", 400, "INVALID_ARGUMENT", ["numeric['x']", "finite"]),
    ("PUT", "/v1/loops/default", b'{"version": 1%s}' % (b"0" * 5000), 400, "INVALID_ARGUMENT", ["request body"]),
    ("GET", "/v1/loops/default/model:export?version=1" + "0" * 30, None, 400, "INVALID_ARGUMENT", ["version"]),
    ("POST", "/v1/loops/default/models/99999999999999999999999:rollback", None, 400, "INVALID_ARGUMENT", ["version"]),
    ("GET", "/nope", None, 404, "NOT_FOUND", ["no such path", "/nope"]),
    ("GET", "/v1/loops/default:rank", None, 405, "UNIMPLEMENTED", ["allowed: POST"]),
    ("PATCH", "/v1/loops", None, 405, "UNIMPLEMENTED", ["GET", "POST"]),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "code", "words"), BAD_INPUTS)
def test_bad_input_over_http_is_a_4xx_naming_the_field_never_a_500(
    http_served, method, path, body, status, code, words
):
    server, _ = http_served
    answer = http_call(server.http_port, method, path, body)
    assert answer.status == status, answer.body
    assert answer.headers["content-type"] == "application/json"
    error = answer.json()
    assert error["code"] == code and all(word in error["message"] for word in words), error
    assert http_call(server.http_port, "GET", "/v1/loops/default").status == 200  # still serving


def test_a_body_over_the_limit_is_413_before_it_is_read_and_whatever_its_framing(tmp_path):
    with running_server(tmp_path / "store", http_port=0, limits=Limits(max_message_bytes=1000)) as (server, _):
        big = {"actions": [{"id": f"a{i}"} for i in range(200)]}
        answer = http_call(server.http_port, "POST", "/v1/loops/default:rank", big)
        assert answer.status == 413 and answer.json() == {
            "code": "RESOURCE_EXHAUSTED",
            "message": "request body: larger than the limit of 1000 bytes",
        }
        connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)  # chunked: no length
        connection.request("POST", "/v1/loops/default:rank", body=iter([b"x" * 600, b"x" * 600]))
        assert connection.getresponse().status == 413
        connection.close()
        assert http_call(server.http_port, "POST", "/v1/loops/default:rank", {"actions": ACTIONS}).status == 200


class Servicer:
    """Methods of any name: enough to build the routes and list them."""

    def __getattr__(self, name):
        return lambda request, context: None


def test_openapi_describes_every_route_and_every_rpc_has_one(http_served):
    server, _ = http_served
    document = call_ok(server.http_port, "GET", "/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    described = {(path, verb.upper()) for path, operations in document["paths"].items() for verb in operations}
    served = {
        (route.path.replace("{loop:name}", "{loop}"), method)
        for route in build_app(Services(Servicer(), Servicer(), Limits())).routes
        if isinstance(route, Route) and route.path != "/openapi.json"
        for method in route.methods - {"HEAD"}
    }
    assert served == described
    rpcs = {f"{s.name}/{m.name}" for s in (DECISION_SERVICE, ADMIN_SERVICE) for m in s.methods}
    assert {rpc.name for rpc in RPCS} == rpcs and len(RPCS) == len(rpcs)
    assert {op["operationId"] for ops in document["paths"].values() for op in ops.values()} == {
        name.split("/")[1] for name in rpcs
    }
    refs = re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(document))
    assert refs and set(refs) <= set(document["components"]["schemas"])
    rank = document["paths"]["/v1/loops/{loop}:rank"]["post"]
    assert rank["parameters"] == [{"name": "loop", "in": "path", "required": True, "schema": {"type": "string"}}]
    request = document["components"]["schemas"]["nextbest.v1.RankRequest"]["properties"]
    assert request["eventId"] == {"type": "string"} and request["excludedActionIds"]["type"] == "array"
    assert request["context"]["additionalProperties"] == {"$ref": "#/components/schemas/nextbest.v1.Features"}


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([2**64, -(10**400)])
    | st.floats()
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
FIELD_NAMES = st.sampled_from(["eventId", "event_id", "actions", "context", "value", "loop", "config", "spec", "mode"])
BODIES = JSON | st.dictionaries(FIELD_NAMES, JSON, max_size=4) | st.binary(max_size=64)
WRITES = [(rpc.verb, rpc.path) for rpc in RPCS if rpc.verb in ("POST", "PUT") and rpc.kind != "import"]
READS = [(rpc.verb, rpc.path) for rpc in RPCS if rpc.verb in ("GET", "DELETE")]
SEGMENTS = st.text(max_size=30) | st.sampled_from(["default", "1", "-1", "99999999999999999999999", "1e3"])


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("fuzz"), http_port=0, train=False) as (server, _):
        yield server


@pytest.mark.slow
@settings(derandomize=True, database=None, max_examples=300, deadline=None)
@given(route=st.sampled_from(WRITES), body=BODIES, loop=st.sampled_from(["default", "nope", "x" * 70]))
def test_generated_json_bodies_never_get_a_5xx(fuzzed, route, body, loop):
    verb, path = route
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    answer = http_call(fuzzed.http_port, verb, path.format(loop=loop, event_id="e1", version=1), raw)
    assert answer.status < 500, answer.body
    assert set(answer.json()) == {"code", "message"} if answer.status >= 400 else answer.status == 200


@pytest.mark.slow
@settings(derandomize=True, database=None, max_examples=200, deadline=None)
@given(
    route=st.sampled_from(READS + WRITES),
    segments=st.lists(SEGMENTS, min_size=3, max_size=3),
    query=st.dictionaries(st.sampled_from(["version", "loop", "spec", "x", ""]), SEGMENTS, max_size=2),
)
def test_generated_paths_and_query_strings_never_get_a_5xx(fuzzed, route, segments, query):
    verb, path = route
    loop, event_id, version = (quote(segment, safe="") for segment in segments)
    target = path.format(loop=loop, event_id=event_id, version=version) + "?" + urlencode(query)
    answer = http_call(fuzzed.http_port, verb, target, b"{}" if verb in ("POST", "PUT") else None)
    assert answer.status < 500, answer.body
    assert set(answer.json()) == {"code", "message"} if answer.status >= 400 else answer.status == 200


def test_connections_accepted_on_the_http_socket_send_without_delay():
    """asyncio sets TCP_NODELAY only on TCP sockets it knows as such: without it, each response (head, then body)
    waits for the client's delayed ACK, 40 ms a call."""

    async def accepted_nodelay() -> int:
        loop = asyncio.get_running_loop()
        found: asyncio.Future = loop.create_future()

        class Recorder(asyncio.Protocol):
            def connection_made(self, transport):
                found.set_result(transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await loop.create_server(Recorder, sock=listening_socket("127.0.0.1", 0, reuse_port=False))
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return await asyncio.wait_for(found, 10)
        finally:
            writer.close()
            server.close()

    assert asyncio.run(accepted_nodelay()) == 1


ODD = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5) | st.lists(st.integers(), max_size=2)
)
NAMES = st.text(max_size=6)
NUMBERS = st.integers(-1000, 1000) | st.floats() | st.integers(-(2**60), 2**60)


def rank_json(odd):
    """Rank requests as JSON; each value, at every level, is sometimes drawn from `odd` instead."""

    def sometimes(strategy):
        return st.one_of(*[strategy] * 9, odd)

    features = sometimes(
        st.fixed_dictionaries(
            {},
            optional={
                "numeric": sometimes(st.dictionaries(NAMES, NUMBERS, max_size=3)),
                "categorical": sometimes(st.dictionaries(NAMES, st.text(max_size=5), max_size=3)),
                "tokens": sometimes(st.lists(st.text(max_size=5), max_size=3)),
            },
        )
    )
    namespaces = sometimes(st.dictionaries(NAMES, features, max_size=3))
    action = sometimes(
        st.fixed_dictionaries(
            {}, optional={"id": sometimes(st.text(max_size=5)), "channel": sometimes(NAMES), "features": namespaces}
        )
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "loop": sometimes(NAMES),
            "eventId": sometimes(NAMES),
            "context": namespaces,
            "actions": sometimes(st.lists(action, max_size=3)),
            "excludedActionIds": sometimes(st.lists(NAMES, max_size=2)),
            "deferred": sometimes(st.booleans()),
            "subjectId": sometimes(NAMES),
        },
    )


def big_integers(data):
    """Whether `data` holds an integer beyond the doubles' exact range (json_format's rounding decides those)."""
    if isinstance(data, dict):
        return any(big_integers(value) for value in data.values())
    if isinstance(data, list):
        return any(big_integers(value) for value in data)
    return type(data) is int and abs(data) > 2**53


@settings(derandomize=True, database=None, max_examples=300, deadline=None)
@given(rank_json(odd=st.nothing()))
def test_the_fast_path_of_rank_json_gives_what_json_format_gives(data):
    fast = fastjson.rank_request(data)
    assert fast is not None or big_integers(data)
    if fast is not None:
        assert fast == json_format.ParseDict(data, decision_pb2.RankRequest())


@settings(derandomize=True, database=None, max_examples=300, deadline=None)
@given(rank_json(odd=ODD | st.just({"unknown": 1})), st.sampled_from(["", "event_id", "bogus"]))
def test_the_fast_path_leaves_every_other_shape_to_json_format(data, extra):
    if extra:
        data = {**data, extra: "e"}  # an unknown field, or eventId's proto name again
    fast = fastjson.rank_request(data)
    if fast is not None:
        assert fast == json_format.ParseDict(data, decision_pb2.RankRequest())


def test_the_fast_path_takes_plain_rank_requests():
    request = rank_request(random.Random(1), "bench")
    assert fastjson.rank_request(json_format.MessageToDict(request)) == request
    assert fastjson.rank_request({"actions": ACTIONS, "context": CONTEXT, "deferred": True}) is not None


def test_an_http_port_in_use_fails_the_start_before_grpc_serves(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = NextbestServer(open_store(str(tmp_path / "store")), "127.0.0.1", 0, http_port=port, train=False)
        with pytest.raises(OSError):
            server.start()
        assert server.port == 0  # gRPC never bound
        server.stop()


HOSTILE = Restrictions(policy_modules=("hostile_policies",))  # tests/hostile_policies.py: Sleeper
LONG = EvaluationLimits(timeout_seconds=600.0)


def joined_events(store):
    """A store whose loop `t` has 10 joined events."""
    clock = FakeClock()
    with running_server(store, clock=clock) as (_, client):
        client.create_loop("t", policy="random", reward_wait_seconds=1.0, publish_interval_seconds=0.05)
        for i in range(10):
            client.reward(client.rank([action("a"), action("b")], loop="t", event_id=f"e{i}").event_id, 1.0, loop="t")
        clock.advance(10.0)
        wait_for(lambda: client.stats("t").joined == 10)


def evaluations_running():
    return [p for p, command in child_commands(os.getpid()).items() if "spawn_main" in command]


@pytest.mark.slow
def test_an_evaluation_whose_http_client_went_away_is_stopped(tmp_path):
    joined_events(tmp_path / "store")
    with running_server(tmp_path / "store", train=False, http_port=0, restrictions=HOSTILE, evaluation=LONG) as (
        server,
        client,
    ):
        connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
        connection.request(
            "POST", "/v1/loops/t:evaluate", body=json.dumps({"specs": ["python:hostile_policies:Sleeper"]})
        )
        wait_for(evaluations_running)  # it sleeps an hour a decision
        connection.close()
        wait_for(lambda: not evaluations_running(), timeout=30)  # stopped, long before its 600 s
        # the server takes the next one once the stopped call has returned, just after its process ended
        answer = wait_for(
            lambda: (
                (a := http_call(server.http_port, "POST", "/v1/loops/t:evaluate", {"specs": ["baseline"]})).status
                == 200
                and a
            ),
            timeout=30,
        )
        assert answer.json()["events"] == "10"


@pytest.mark.slow
def test_stopping_the_server_stops_an_http_evaluation_in_flight(tmp_path):
    joined_events(tmp_path / "store")
    server = NextbestServer(
        open_store(str(tmp_path / "store")), "127.0.0.1", 0, train=False, http_port=0, restrictions=HOSTILE,
        evaluation=LONG,
    ).start()  # fmt: skip
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
    connection.request("POST", "/v1/loops/t:evaluate", body=json.dumps({"specs": ["python:hostile_policies:Sleeper"]}))
    wait_for(evaluations_running)  # it sleeps an hour a decision
    server.stop(grace=1.0)
    wait_for(lambda: not evaluations_running(), timeout=30)  # stopped, long before its 600 s
    connection.close()


@pytest.mark.parametrize("path", ["/personalizer/v1.0/nope", "/loops/other/personalizer/v1.0/nope"])
def test_unknown_paths_under_the_personalizer_mounts_answer_with_personalizers_error_body(http_served, path):
    server, _ = http_served
    answer = http_call(server.http_port, "GET", path)
    assert answer.status == 404
    error = answer.json()["error"]
    assert path in error["message"] and error["code"]


ORIGIN = "https://shop.example.com"


def test_browsers_pages_from_allowed_origins_may_call_the_api_and_others_may_not(tmp_path):
    keys = ApiKeys.parse(json.dumps(KEYS), "test keys")
    with running_server(tmp_path / "a", http_port=0, http_allow_origins=(ORIGIN,), api_keys=keys) as (server, _):
        preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
        preflight["Access-Control-Request-Headers"] = "authorization, content-type"
        answer = http_call(server.http_port, "OPTIONS", "/v1/loops/default:rank", headers=preflight)
        assert answer.status == 200 and answer.headers["access-control-allow-origin"] == ORIGIN
        assert "POST" in answer.headers["access-control-allow-methods"]
        headers = {"Origin": ORIGIN, "Authorization": "Bearer decide-key-0123456789"}
        ranked = http_call(server.http_port, "POST", "/v1/loops/default:rank", {"actions": ACTIONS}, headers=headers)
        assert ranked.status == 200 and ranked.headers["access-control-allow-origin"] == ORIGIN
        other = {**preflight, "Origin": "https://elsewhere.example.com"}
        refused = http_call(server.http_port, "OPTIONS", "/v1/loops/default:rank", headers=other)
        assert refused.status == 400 and "access-control-allow-origin" not in refused.headers
    with running_server(tmp_path / "b", http_port=0) as (server, _):  # no origin allowed: no CORS at all
        answer = http_call(server.http_port, "OPTIONS", "/v1/loops/default:rank", headers=preflight)
        assert answer.status == 405 and "access-control-allow-origin" not in answer.headers


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--http-allow-origin", ORIGIN], "--http-allow-origin needs --http-port"),
        (["--http-port", "70000"], "--http-port must be between 0 and 65535"),
    ],
)
def test_serve_refuses_http_flags_that_cannot_work(tmp_path, flags, message):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--store", str(tmp_path / "store"), *flags])
    assert str(exit_.value) == f"nextbest serve: {message}"


def test_a_route_made_with_the_api_sees_its_mounts_path_parameters_and_its_scope_is_enforced(tmp_path):
    """The contract of `personalizer.routes(services)`: routes made with `services.api(...)` mounted at
    /loops/{loop}/personalizer see `loop`, their errors use the API's body, their scope is checked."""

    async def echo(call):
        return JSONResponse({"loop": call.path_params.get("loop", "default"), "body": await call.json(empty={})})

    keys = ApiKeys.parse(json.dumps(KEYS), "test keys")
    api = Services(Servicer(), Servicer(), Limits(), api_keys=keys).api(personalizer.error_response)
    route = api.route("/echo", echo, methods=["POST"], name="personalizer/Echo", scope="decide")
    app = Starlette(routes=[Mount(mount, routes=[route]) for mount in PERSONALIZER_MOUNTS])
    server = HttpServer(app, "127.0.0.1", 0).start()
    try:
        key = {"Ocp-Apim-Subscription-Key": "decide-key-0123456789"}
        answer = http_call(server.port, "POST", "/loops/shop/personalizer/echo", {"a": 1}, headers=key)
        assert answer.status == 200 and answer.json() == {"loop": "shop", "body": {"a": 1}}
        assert http_call(server.port, "POST", "/personalizer/echo", headers=key).json()["loop"] == "default"
        refused = http_call(server.port, "POST", "/personalizer/echo", b"{")
        assert refused.status == 401 and refused.json()["error"]["code"] == "401"  # as Azure's gateway answered
        malformed = http_call(server.port, "POST", "/personalizer/echo", b"{", headers=key)
        assert malformed.status == 400 and "not valid JSON" in malformed.json()["error"]["message"]
    finally:
        server.stop(grace=1.0)
