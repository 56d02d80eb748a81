"""Hostile and broken input: generated requests for every RPC against a live server.

Every call ends in a clean status (never UNKNOWN or INTERNAL), the server keeps serving and learning, and the
decisions it acknowledged before and during the run are exactly those in its store. Requests are generated
from the services' descriptors (so a new RPC is covered at once), with field values drawn from hostile pools:
odd strings, extreme numbers, unknown enum values, policy specs that touch files or import code, corrupt model
bytes, and raw bytes that are no protobuf message at all. Hypothesis runs derandomized, with bounded examples.
"""

import json
import random
from collections import Counter

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nextbest import policies
from nextbest.client import action
from nextbest.policies.rules import restrict_rules_files
from nextbest.server.config import Limits
from nextbest.server.store import Stream
from nextbest.testing import running_server, wait_for
from nextbest.v1 import admin_pb2, decision_pb2, records_pb2, types_pb2

pytestmark = pytest.mark.slow  # one server for the module; the last test checks what the others did

F = FieldDescriptor
TRACKED = "tracked-loop-1"  # with `default`: no generated request can delete or retain-away their decisions
SCRATCH = [f"scratch-{i}" for i in range(5)]
LIMITS = Limits(
    max_actions=8,
    max_namespaces=4,
    max_features_per_namespace=16,
    max_string_length=64,
    max_message_bytes=64 * 1024,
    max_loops=6,
    max_model_bytes=32 * 1024,
)
UNCLEAN = {
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.DATA_LOSS,
}
SERVICES = [
    decision_pb2.DESCRIPTOR.services_by_name["DecisionService"],
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"],
]
METHODS = {m.name: m for service in SERVICES for m in service.methods}
WRITES_LOOPS = {"CreateLoop", "UpdateLoop", "DeleteLoop"}  # only ever on scratch loops
GENERATED: Counter = Counter()  # inputs sent, by RPC
ACKED: dict[str, set[str]] = {"default": set(), TRACKED: set()}  # event ids of acknowledged decisions
VW_SPEC = "vw:--cb_explore_adf --epsilon 0.1 -q ::"
VW_MODEL = policies.export_state(VW_SPEC, policies.create(VW_SPEC).save())
SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

# --- value pools ---------------------------------------------------------------------------------


def mostly(common: st.SearchStrategy, rare: st.SearchStrategy) -> st.SearchStrategy:
    """`common` three times in four, else `rare`: hostile values, yet enough valid ones to reach deep."""
    return st.integers(0, 3).flatmap(lambda i: rare if i == 3 else common)


ODD_STRINGS = ["", " ", "a\x00b", "x" * 65, "é" * 64, "🙂" * 65, "../../etc/passwd", "%s%n", "\u202e", "\ufeff"]
texts = st.one_of(st.text(max_size=24), st.sampled_from(ODD_STRINGS), st.text(min_size=60, max_size=400))
loops = mostly(st.sampled_from(["", "default", TRACKED, "nope", *SCRATCH]), texts)
scratch_loops = mostly(st.sampled_from(SCRATCH), texts)
action_ids = mostly(st.sampled_from(["a", "b", "c", "d", "e"]), texts)
event_ids = st.one_of(st.just(""), st.uuids().map(lambda u: u.hex), st.sampled_from(["e1", "e2"]), texts)
floats = st.one_of(
    st.floats(-1e3, 1e3),
    st.sampled_from([0.0, -0.0, 5e-324, 3.4e38, 3.5e38, -1e300, float("inf"), float("-inf"), float("nan")]),
    st.floats(),
)
SPECS = [
    "vw:--cb_explore_adf --epsilon 0.2",
    VW_SPEC,
    "vw:--cb_explore_adf --squarecb",
    "vw:--cb_explore_adf -d /etc/passwd",
    "vw:--cb_explore_adf --initial_regressor=/etc/passwd",
    "vw:--cb_explore_adf --no_such_option",
    "vw:--cb 2",
    "vw:",
    "random",
    "baseline",
    'fixed:{"a": 1, "b": 2}',
    "fixed:{",
    "linucb:alpha=0.5 dim=16",
    "linucb:dim=100000",
    "lints:samples=0",
    'rules:{"rules": [{"if": {"u.k": "v"}, "then": "b"}], "epsilon": 0.1}',
    "rules:journey.json",  # in the rules directory
    "rules:../outside.json",  # exists, outside it
    "rules:/etc/hostname.json",
    "python:nextbest.policies.examples:SegmentGreedy",  # not allowed on this server
    "python:os:system",
]
specs = mostly(st.sampled_from(SPECS), texts)


def model_bytes(draw_bytes: bytes, how: int) -> bytes:
    """Raw VW model bytes, corrupted or not, or sealed ones, or garbage."""
    rng = random.Random(draw_bytes)
    data = bytearray(VW_MODEL)
    if how == 0:
        return bytes(VW_MODEL)
    if how == 1:
        for _ in range(rng.randrange(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if how == 2:
        return bytes(data[: rng.randrange(len(data))])
    if how == 3:
        return policies.create(VW_SPEC).save()
    return draw_bytes


model_data = st.builds(model_bytes, st.binary(max_size=64), st.integers(0, 4))

# Field values by field name, for the fields where a random value would rarely reach past validation.
HINTS = {
    "loop": loops,
    "name": loops,
    "event_id": event_ids,
    "id": action_ids,
    "excluded_action_ids": action_ids,
    "channel": st.sampled_from(["", "email", "push", "sms"]),
    "reward_id": st.one_of(st.sampled_from(["", "r"]), texts),
    "policy": specs,
    "spec": specs,
    "specs": specs,
    "shadow": specs,
    "shadow_policies": specs,
    "data": model_data,
    "value": mostly(st.floats(-10, 10), floats),
    "default_reward": mostly(st.floats(-1, 1), floats),
    "reward_wait_seconds": mostly(st.sampled_from([0.0, 0.05, 60.0]), floats),
    "publish_interval_seconds": mostly(st.sampled_from([0.0, 0.05, 10.0]), floats),
    "retention_days": mostly(st.sampled_from([0.0, 30.0]), floats),
    "since": mostly(st.just(0.0), floats),
    "until": mostly(st.just(0.0), floats),
}
WRITE_HINTS = {**HINTS, "loop": scratch_loops, "name": scratch_loops}


def scalar(field: FieldDescriptor) -> st.SearchStrategy:
    if field.type == F.TYPE_ENUM:
        values = [v.number for v in field.enum_type.values]
        return mostly(st.sampled_from(values), st.integers(-(2**31), 2**31 - 1))
    if field.type == F.TYPE_FLOAT:
        return st.one_of(st.floats(width=32), st.sampled_from([0.0, float("nan"), float("inf")]))
    if field.type == F.TYPE_DOUBLE:
        return floats
    if field.type == F.TYPE_BOOL:
        return st.booleans()
    if field.type == F.TYPE_STRING:
        return texts
    if field.type == F.TYPE_BYTES:
        return st.binary(max_size=64)
    if field.type in (F.TYPE_UINT32, F.TYPE_FIXED32):
        return st.integers(0, 2**32 - 1)
    if field.type in (F.TYPE_UINT64, F.TYPE_FIXED64):
        return st.integers(0, 2**64 - 1)
    if field.type in (F.TYPE_INT32, F.TYPE_SINT32, F.TYPE_SFIXED32):
        return st.one_of(st.integers(-3, 12), st.integers(-(2**31), 2**31 - 1))
    return st.one_of(st.integers(-3, 12), st.integers(-(2**63), 2**63 - 1))


def messages(descriptor, hints: dict, depth: int = 0) -> st.SearchStrategy:
    """Random messages of `descriptor`: any subset of its fields set, nested up to 3 levels."""
    cls = message_factory.GetMessageClass(descriptor)
    fields, hinted = {}, {}
    for field in descriptor.fields:
        if field.name in hints:  # always set, to a value of its pool
            hinted[field.name] = st.lists(hints[field.name], max_size=4) if field.is_repeated else hints[field.name]
            continue
        if field.type == F.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
            key, value = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
            values = messages(value.message_type, hints, depth + 1) if value.message_type else scalar(value)
            fields[field.name] = st.dictionaries(scalar(key), values, max_size=5 if depth else 6)
        elif field.type == F.TYPE_MESSAGE:
            if depth >= 3:
                continue
            inner = messages(field.message_type, hints, depth + 1)
            fields[field.name] = st.lists(inner, max_size=10) if field.is_repeated else inner
        else:
            fields[field.name] = st.lists(scalar(field), max_size=10) if field.is_repeated else scalar(field)
    return st.fixed_dictionaries(hinted, optional=fields).map(lambda values: cls(**values))


# Rank requests that pass validation often, so that decisions are logged under way: any names but NUL
# (VW's separators included), finite values, unique action ids.
names = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1, max_size=12)
features = st.builds(
    types_pb2.Features,
    numeric=st.dictionaries(names, st.floats(-1e30, 1e30), max_size=4),
    categorical=st.dictionaries(names, names, max_size=4),
    tokens=st.lists(names, max_size=4),
)
namespaces = st.dictionaries(names, features, max_size=3)
plausible_ranks = st.builds(
    decision_pb2.RankRequest,
    loop=st.sampled_from(["", "default", TRACKED]),
    event_id=st.one_of(st.just(""), st.uuids().map(lambda u: u.hex)),
    context=namespaces,
    actions=st.lists(
        st.builds(types_pb2.Action, id=names, channel=st.sampled_from(["", "email", "push"]), features=namespaces),
        min_size=1,
        max_size=6,
        unique_by=lambda a: a.id,
    ),
    deferred=st.booleans(),
)


def requests_of(method) -> st.SearchStrategy:
    """What a client sends to `method`: one message, or a list of them for a client stream."""
    one = messages(method.input_type, WRITE_HINTS if method.name in WRITES_LOOPS else HINTS)
    if method.name == "Rank":
        one = st.one_of(one, plausible_ranks)
    return st.lists(one, max_size=8) if method.client_streaming else one


# --- calling the server --------------------------------------------------------------------------


def invoke(channel: grpc.Channel, method, request, *, raw: bool = False) -> tuple[grpc.StatusCode, object]:
    """Send `request` (messages, or bytes when `raw`) to `method`; its status code and response."""
    output = message_factory.GetMessageClass(method.output_type)
    path = f"/{method.containing_service.full_name}/{method.name}"
    serialize = None if raw else (lambda m: m.SerializeToString())
    if method.client_streaming:
        stub = channel.stream_unary(path, request_serializer=serialize, response_deserializer=output.FromString)
    elif method.server_streaming:
        stub = channel.unary_stream(path, request_serializer=serialize, response_deserializer=output.FromString)
    else:
        stub = channel.unary_unary(path, request_serializer=serialize, response_deserializer=output.FromString)
    GENERATED[method.name] += 1
    try:
        if method.client_streaming:
            return grpc.StatusCode.OK, stub(iter(request), timeout=60)
        if method.server_streaming:
            return grpc.StatusCode.OK, list(stub(request, timeout=60))
        return grpc.StatusCode.OK, stub(request, timeout=60)
    except grpc.RpcError as e:
        assert e.details(), f"{method.name}: {e.code()} without a message"
        return e.code(), e.details()


def check(channel: grpc.Channel, method, request, *, raw: bool = False) -> None:
    code, response = invoke(channel, method, request, raw=raw)
    assert code not in UNCLEAN, f"{method.name}({str(request)[:2000]!r}) -> {code}: {response}"
    if code == grpc.StatusCode.OK and method.name == "Rank":
        loop = request.loop or "default"
        if loop in ACKED:
            ACKED[loop].add(response.event_id)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    rules = tmp_path_factory.mktemp("rules")
    (rules / "journey.json").write_text(json.dumps({"rules": [{"then": "a"}], "epsilon": 0.2}))
    (rules.parent / "outside.json").write_text(json.dumps({"rules": [{"then": "b"}]}))
    restore = restrict_rules_files(rules)
    try:
        with running_server(tmp_path_factory.mktemp("store"), limits=LIMITS) as (server, client):
            client.create_loop(TRACKED, policy=VW_SPEC, reward_wait_seconds=0.05, publish_interval_seconds=0.05)
            for loop in SCRATCH[:2]:
                client.create_loop(loop, reward_wait_seconds=0.05, publish_interval_seconds=0.05)
            for i in range(30):  # acknowledged before the run
                for loop in ACKED:
                    r = client.rank([action("a"), action("b")], {"u": {"k": f"v{i % 3}"}}, loop=loop)
                    ACKED[loop].add(r.event_id)
                    client.reward(r.event_id, 1.0, loop=loop)
            yield server, client
    finally:
        restore()


def test_every_rpc_is_generated():
    assert set(METHODS) >= {"Rank", "Reward", "Activate", "RewardStream", "CreateLoop", "ImportModel", "Evaluate"}


DECISION_EXAMPLES = {"Rank": 160, "Reward": 30, "Activate": 20, "RewardStream": 30}


@pytest.mark.parametrize("name", sorted(DECISION_EXAMPLES))
def test_decision_rpcs_answer_generated_requests_cleanly(served, name):
    method = METHODS[name]

    @settings(SETTINGS, max_examples=DECISION_EXAMPLES[name])
    @given(requests_of(method))
    def run(request):
        check(served[1].channel, method, request)

    run()


ADMIN = sorted((m.name for m in SERVICES[1].methods), key=lambda name: name == "DeleteLoop")  # deletes last


@pytest.mark.parametrize("name", ADMIN)
def test_admin_rpcs_answer_generated_requests_cleanly(served, name):
    method = METHODS[name]

    @settings(SETTINGS, max_examples=25)
    @given(requests_of(method))
    def run(request):
        check(served[1].channel, method, request)

    run()


def test_interleaved_rpcs_answer_generated_requests_cleanly(served):
    calls = st.one_of([st.tuples(st.just(m), requests_of(m)) for m in METHODS.values()])

    @settings(SETTINGS, max_examples=150)
    @given(calls)
    def run(method_and_request):
        check(served[1].channel, *method_and_request)

    run()


@pytest.mark.parametrize("name", sorted(METHODS))
def test_bytes_that_are_no_message_answer_cleanly(served, name):
    method = METHODS[name]
    garbage = st.binary(min_size=1, max_size=200)

    @settings(SETTINGS, max_examples=6)
    @given(st.lists(garbage, min_size=1, max_size=3) if method.client_streaming else garbage)
    def run(request):
        check(served[1].channel, method, request, raw=True)

    run()


def test_the_server_kept_serving_learning_and_every_acknowledged_decision(served):
    server, client = served
    health = health_pb2_grpc.HealthStub(client.channel)
    assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING
    for loop in ACKED:
        logged = server.store.log.read(Stream.DECISIONS, loop, 0, 100_000)
        assert {records_pb2.DecisionRecord.FromString(data).event_id for _, data in logged} == ACKED[loop], loop
    decisions = len(ACKED[TRACKED])
    wait_for(lambda: (s := client.stats(TRACKED)).joined == decisions and s.learned == decisions)
    total = sum(GENERATED.values())
    print(f"\n{total} generated inputs: {dict(sorted(GENERATED.items()))}; {sum(map(len, ACKED.values()))} decisions")
    assert total >= 300


# --- limits and what requests may never choose ---------------------------------------------------


def error_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code(), err.value.details()


def test_a_malformed_stream_item_answers_invalid_argument_and_the_server_still_stops(tmp_path):
    with running_server(tmp_path / "store", train=False) as (_, client):  # exiting stops it: it must not hang
        stream = client.channel.stream_unary("/nextbest.v1.DecisionService/RewardStream")
        valid = decision_pb2.RewardRequest(event_id="e", value=1.0).SerializeToString()
        code, details = error_of(lambda: stream(iter([valid, b"\xff\xff"]), timeout=30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("request message 1: not a valid message")


def test_limits_on_loops_models_and_stream_items(tmp_path):
    limits = Limits(max_loops=2, max_model_bytes=1024, max_message_bytes=4096)
    with running_server(tmp_path / "store", limits=limits, train=False) as (_, client):
        client.create_loop("second")
        assert error_of(lambda: client.create_loop("third")) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "loops: at most 2 loops (limit max_loops)",
        )
        chunks = [admin_pb2.ImportModelRequest(loop="second", spec=VW_SPEC, data=b"x" * 1000)]
        chunks.append(admin_pb2.ImportModelRequest(data=b"x" * 1000))
        code, message = error_of(lambda: client.admin.ImportModel(iter(chunks)))
        assert (code, message) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "data: model larger than 1024 bytes")
        items = [decision_pb2.RewardRequest(event_id="e", value=1.0, reward_id="r" * 5000)]
        assert error_of(lambda: client.reward_stream(items))[0] == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize(
    "spec,message",
    [
        ("rules:journey.json", None),
        ("rules:sub/../journey.json", None),
        ("rules:../outside.json", "rules: '../outside.json' is outside the server's rules directory"),
        ("rules:{outside}", "is outside the server's rules directory"),
        ("rules:link.json", "rules: 'link.json' is outside the server's rules directory"),
        ("python:nextbest.policies.examples:SegmentGreedy", "must be allowed by the server's configuration"),
    ],
)
def test_specs_read_only_the_rules_directory_and_import_only_allowed_modules(tmp_path, spec, message):
    rules = tmp_path / "rules"
    (rules / "sub").mkdir(parents=True)
    (rules / "journey.json").write_text(json.dumps({"rules": [{"then": "b"}]}))
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"rules": [{"then": "a"}]}))
    (rules / "link.json").symlink_to(outside)
    restore = restrict_rules_files(rules)
    try:
        with running_server(tmp_path / "store", train=False) as (_, client):
            create = lambda: client.create_loop("x", policy=spec.format(outside=outside))  # noqa: E731
            if message is None:
                create()
                assert client.rank([action("a"), action("b")], loop="x").chosen_action_id == "b"
            else:
                code, details = error_of(create)
                assert code == grpc.StatusCode.INVALID_ARGUMENT and message in details, details
                assert '"then"' not in details  # the file's content is never shown
    finally:
        restore()


def test_a_server_without_a_rules_directory_reads_no_journey_file(tmp_path):
    path = tmp_path / "journey.json"
    path.write_text(json.dumps({"rules": [{"then": "b"}]}))
    restore = restrict_rules_files(None)
    try:
        with pytest.raises(policies.PolicySpecError, match="this server reads no journey files"):
            policies.create(f"rules:{path}")
        policies.create('rules:{"rules": [{"then": "b"}]}')  # inline journeys still work
    finally:
        restore()
