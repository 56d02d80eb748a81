"""Access: API keys with scopes (exact status codes), TLS and mutual TLS, safe defaults of `nextbest serve`."""

import json
import re
import signal
import subprocess
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from nextbest.client import Client, action
from nextbest.server.auth import ApiKeyError, ApiKeys, exposure_problem, required_scope
from nextbest.server.tls import ServerTls, TlsError
from nextbest.testing import make_certificates, running_server
from nextbest.v1 import admin_pb2, decision_pb2

OK = grpc.StatusCode.OK
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED
KEYS = {
    "decide-key-0123456789": ["decide"],
    "admin-key-0123456789": ["admin"],
    "both-key-0123456789": ["decide", "admin"],
}
ACTIONS = [action("a", "email"), action("b", "push")]


def call(client: Client, method: str) -> grpc.StatusCode:
    """Call one RPC of each kind (unary, client stream, server stream); its status code."""
    calls = {
        "Rank": lambda: client.rank(ACTIONS),
        "Reward": lambda: client.reward("e1", 1.0),
        "Activate": lambda: client.activate("e1"),
        "RewardStream": lambda: client.reward_stream([decision_pb2.RewardRequest(event_id="e1", value=1.0)]),
        "ListLoops": client.list_loops,
        "GetStats": lambda: client.stats("default"),
        "CreateLoop": lambda: client.create_loop("x" + str(id(client))),
        "ExportModel": lambda: list(client.admin.ExportModel(admin_pb2.ExportModelRequest(loop="nope"))),
        "ImportModel": lambda: client.admin.ImportModel(iter([admin_pb2.ImportModelRequest(loop="nope", spec="x")])),
    }
    try:
        calls[method]()
    except grpc.RpcError as e:
        assert "-key" not in (e.details() or "")  # no key is ever echoed
        return e.code()
    return OK


DECIDE_METHODS = ["Rank", "Reward", "Activate", "RewardStream"]
ADMIN_METHODS = ["ListLoops", "GetStats", "CreateLoop", "ExportModel", "ImportModel"]


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    keys = ApiKeys.parse(json.dumps(KEYS), "test keys")
    with running_server(tmp_path_factory.mktemp("store"), api_keys=keys, train=False) as pair:
        yield pair


def expected(key: str | None, method: str) -> set[grpc.StatusCode]:
    if key not in KEYS:
        return {UNAUTHENTICATED}
    scope = "decide" if method in DECIDE_METHODS else "admin"
    if scope not in KEYS[key]:
        return {DENIED}
    return {OK, grpc.StatusCode.NOT_FOUND}  # let through: the call itself answers (nope is no loop)


@pytest.mark.parametrize("method", DECIDE_METHODS + ADMIN_METHODS)
@pytest.mark.parametrize(
    "key", [None, "wrong-key-0123456789", "decide-key-0123456789", "admin-key-0123456789", "both-key-0123456789"]
)
def test_keys_and_scopes_matrix(keyed, key, method):
    server, _ = keyed
    with Client(server.address, api_key=key) as client:
        assert call(client, method) in expected(key, method)


def test_refusals_say_why_without_the_key(keyed):
    server, _ = keyed
    cases = [
        ({}, UNAUTHENTICATED, "missing API key: send metadata 'authorization: Bearer KEY'"),
        ({"api_key": "wrong-key-0123456789"}, UNAUTHENTICATED, "unknown API key"),
        ({"api_key": "decide-key-0123456789"}, DENIED, "AdminService/ListLoops: the API key lacks the scope 'admin'"),
    ]
    for options, code, message in cases:
        with Client(server.address, **options) as client, pytest.raises(grpc.RpcError) as err:
            client.list_loops()
        assert (err.value.code(), err.value.details()) == (code, message)


@pytest.mark.parametrize(
    "header",
    [
        ("authorization", "Basic both-key-0123456789"),
        ("authorization", "both-key-0123456789"),
        ("authorization", "Bearer "),
    ],
)
def test_a_malformed_authorization_header_is_unauthenticated(keyed, header):
    _, client = keyed
    with pytest.raises(grpc.RpcError) as err:
        client.admin.ListLoops(admin_pb2.ListLoopsRequest(), metadata=[header])
    assert err.value.code() == UNAUTHENTICATED


def test_the_bearer_scheme_is_case_insensitive(keyed):
    _, client = keyed
    client.admin.ListLoops(admin_pb2.ListLoopsRequest(), metadata=[("authorization", "bearer admin-key-0123456789")])


def test_health_and_reflection_stay_open(keyed):
    server, client = keyed
    health = health_pb2_grpc.HealthStub(client.channel)
    assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING
    assert required_scope("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo") is None
    assert required_scope("/nextbest.v1.DecisionService/Rank") == "decide"
    assert required_scope("/nextbest.v1.AdminService/Evaluate") == "admin"
    assert required_scope("/some.Other/Method") == "admin"  # anything new is admin until said otherwise


INVALID_KEYS = [
    ("{", r"test: not valid JSON \(line 1, column 2\)"),
    ("[]", "test: expected a JSON object of keys and their scopes"),
    ("{}", "test: expected a JSON object"),
    ('["secret-0123456789"]', "test: expected a JSON object"),
    (
        '{"secret with space 0123": ["decide"]}',
        "test: key #1: a key must be printable ASCII without spaces, at least 16",
    ),
    ('{"secret-0123456": ["decide"]}', "test: key #1: a key must be printable ASCII without spaces, at least 16"),
    ('{"": ["decide"]}', "test: key #1: a key must be printable ASCII"),
    (
        '{"k1-0123456789abcdef": ["decide"], "secret-0123456789": "admin"}',
        "test: key #2: scopes must be a non-empty list of 'decide' and 'admin'",
    ),
    ('{"secret-0123456789": []}', "test: key #1: scopes must be a non-empty list"),
    ('{"secret-0123456789": ["decide", "root"]}', "test: key #1: unknown scope 'root'; known: decide, admin"),
    (
        '{"secret-0123456789": ["decide"], "k2-0123456789abcdef": ["decide"], "secret-0123456789": ["admin"]}',
        "test: key #3: the same key as key #1; give each key once",
    ),
]


@pytest.mark.parametrize("text,message", INVALID_KEYS)
def test_invalid_keys_are_refused_without_quoting_them(text, message):
    with pytest.raises(ApiKeyError, match=message) as err:
        ApiKeys.parse(text, "test")
    assert "secret" not in str(err.value)


def test_keys_come_from_the_file_else_the_environment(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"file-key-0123456789": ["admin"]}))
    environ = {"NEXTBEST_API_KEYS": json.dumps({"env-key-0123456789": ["decide"]})}
    from_file = ApiKeys.load(str(path), environ)
    assert from_file.scopes("file-key-0123456789") == {"admin"} and from_file.scopes("env-key-0123456789") is None
    assert ApiKeys.load(None, environ).scopes("env-key-0123456789") == {"decide"}
    assert ApiKeys.load(None, {}) is None
    assert "key" not in repr(from_file).replace("keys", "")
    with pytest.raises(ApiKeyError, match="cannot read the API keys"):
        ApiKeys.load(str(tmp_path / "missing.json"))


def test_a_key_file_others_may_read_is_warned_about(tmp_path, caplog):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(KEYS))
    for mode, warned in ((0o600, False), (0o640, True), (0o604, True), (0o400, False)):
        path.chmod(mode)
        caplog.clear()
        with caplog.at_level("WARNING", logger="nextbest"):
            assert len(ApiKeys.load(str(path))) == 3
        assert (f"accessible to its group or others (mode {mode:03o}); chmod 600 it" in caplog.text) == warned
        assert not any(key in caplog.text for key in KEYS)


def test_without_keys_only_loopback_is_served_unless_insecure():
    keys = ApiKeys.parse('{"k-0123456789abcdef": ["decide"]}', "test")
    for host in ("127.0.0.1", "localhost", "::1", "[::1]", "127.8.0.1"):
        assert exposure_problem(host, None, insecure=False) is None
    for host in ("0.0.0.0", "::", "10.1.2.3", "example.org"):
        assert "no API keys configured: refusing to serve" in exposure_problem(host, None, insecure=False)
        assert exposure_problem(host, None, insecure=True) is None
        assert exposure_problem(host, keys, insecure=False) is None


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def stranger(tmp_path_factory):
    """Certificates of another CA, which the server does not trust."""
    return make_certificates(tmp_path_factory.mktemp("other"))


def test_tls_serves_clients_that_trust_the_ca(tmp_path, certificates):
    tls = ServerTls.load(str(certificates.server_cert), str(certificates.server_key))
    with running_server(tmp_path, tls=tls, client_options={"ca_cert": certificates.ca}) as (server, client):
        assert client.rank(ACTIONS).chosen_action_id in {"a", "b"}
        with Client(server.address, timeout=5) as plaintext, pytest.raises(grpc.RpcError) as err:
            plaintext.rank(ACTIONS)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_rejects_clients_without_a_trusted_certificate(tmp_path, certificates, stranger):
    c = certificates
    tls = ServerTls.load(str(c.server_cert), str(c.server_key), str(c.ca))
    keys = ApiKeys.parse(json.dumps(KEYS), "test")
    mine = {"ca_cert": c.ca, "client_cert": c.client_cert, "client_key": c.client_key}
    with running_server(
        tmp_path, tls=tls, api_keys=keys, client_options={**mine, "api_key": "both-key-0123456789"}
    ) as pair:
        server, client = pair
        assert client.rank(ACTIONS).chosen_action_id in {"a", "b"}
        strangers = [
            {"ca_cert": c.ca},
            {"ca_cert": c.ca, "client_cert": stranger.client_cert, "client_key": stranger.client_key},
        ]
        for options in strangers:
            with Client(server.address, timeout=5, api_key="both-key-0123456789", **options) as other:
                with pytest.raises(grpc.RpcError) as err:
                    other.rank(ACTIONS)
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        with Client(server.address, **mine) as keyless, pytest.raises(grpc.RpcError) as err:
            keyless.rank(ACTIONS)  # a certificate is no key
        assert err.value.code() == UNAUTHENTICATED


def test_tls_files_are_checked(tmp_path, certificates):
    with pytest.raises(TlsError, match="cannot read the certificate"):
        ServerTls.load(str(tmp_path / "missing.pem"), str(certificates.server_key))
    with pytest.raises(TlsError, match="not a PEM private key"):
        ServerTls.load(str(certificates.server_cert), str(certificates.ca))
    assert "PRIVATE" not in repr(ServerTls.load(str(certificates.server_cert), str(certificates.server_key)))


def serve(*flags: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "nextbest", "--log-level", "INFO", "serve", "--port", "0", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--host", "0.0.0.0"], "no API keys configured: refusing to serve 0.0.0.0 without authentication"),
        (["--tls-cert", "cert.pem"], "--tls-cert and --tls-key go together"),
        (["--rules-dir", "/no/such/dir"], "--rules-dir /no/such/dir: no such directory"),
    ],
)
def test_serve_refuses_unsafe_or_broken_access_configuration(tmp_path, flags, message):
    proc = serve("--store", str(tmp_path / "store"), *flags)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and message in err, err
    assert not (tmp_path / "store").exists()


@pytest.mark.slow
def test_serve_with_workers_keys_and_mutual_tls(tmp_path, certificates):
    c = certificates
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps(KEYS))
    proc = serve(
        "--store", str(tmp_path / "store"), "--workers", "2", "--api-keys", str(keys),
        "--tls-cert", str(c.server_cert), "--tls-key", str(c.server_key), "--tls-client-ca", str(c.ca),
    )  # fmt: skip
    mine = {"ca_cert": c.ca, "client_cert": c.client_cert, "client_key": c.client_key}
    try:
        line = proc.stdout.readline()
        assert "3 API keys; mutual TLS" in line, line
        address = re.search(r"serving on (\S+)", line).group(1)
        for i in range(8):  # new connections each time: the kernel spreads them over both workers
            with Client(address, api_key="decide-key-0123456789", **mine) as client, Client(address, **mine) as keyless:
                assert client.rank(ACTIONS, event_id=f"w{i}").event_id == f"w{i}"
                assert (call(client, "ListLoops"), call(keyless, "Rank")) == (DENIED, UNAUTHENTICATED)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert not any(key in out + err for key in KEYS)  # keys are never logged


@pytest.mark.slow
def test_serve_without_keys_says_it_serves_loopback_only(tmp_path):
    proc = serve("--store", str(tmp_path / "store"))
    try:
        assert "serving on 127.0.0.1:" in proc.stdout.readline()
        assert "no API keys configured, so serving loopback only" in proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
