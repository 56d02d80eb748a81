"""Bad input answers a clear status naming the field, and the server keeps serving."""

import re

import grpc
import pytest

from nextbest.client import action
from nextbest.server.config import Limits
from nextbest.testing import running_server
from nextbest.v1 import admin_pb2, decision_pb2, types_pb2

OK_ACTIONS = [action("a", "email"), action("b", "push")]


def rank(**fields):
    fields.setdefault("actions", OK_ACTIONS)
    return decision_pb2.RankRequest(**fields)


def features(**numeric):
    return {"user": types_pb2.Features(numeric=numeric)}


INVALID = [
    ("unknown loop", rank(loop="nope"), grpc.StatusCode.NOT_FOUND, "loop: no loop named 'nope'"),
    ("no actions", rank(actions=[]), grpc.StatusCode.INVALID_ARGUMENT, "actions: at least one"),
    (
        "duplicate ids",
        rank(actions=[action("a"), action("a")]),
        grpc.StatusCode.INVALID_ARGUMENT,
        r"actions\[1\].id: duplicate",
    ),
    (
        "empty id",
        rank(actions=[action("a"), action("")]),
        grpc.StatusCode.INVALID_ARGUMENT,
        r"actions\[1\].id: must not be empty",
    ),
    (
        "all excluded",
        rank(excluded_action_ids=["a", "b"]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "excluded_action_ids: every action is excluded",
    ),
    (
        "unknown excluded",
        rank(excluded_action_ids=["zz"]),
        grpc.StatusCode.INVALID_ARGUMENT,
        r"excluded_action_ids\[0\]: 'zz' is not among",
    ),
    (
        "nan context",
        rank(context=features(age=float("nan"))),
        grpc.StatusCode.INVALID_ARGUMENT,
        r"context\['user'\].numeric\['age'\]: must be a finite",
    ),
    (
        "inf action feature",
        rank(actions=[types_pb2.Action(id="a", features=features(x=float("inf")))]),
        grpc.StatusCode.INVALID_ARGUMENT,
        r"actions\[0\].features\['user'\].numeric\['x'\]",
    ),
    (
        "float32 overflow",
        rank(context=features(big=1e300)),
        grpc.StatusCode.INVALID_ARGUMENT,
        r"numeric\['big'\]: must be a finite 32-bit float",
    ),
    (
        "too many actions",
        rank(actions=[action(f"a{i}") for i in range(9)]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "actions: 9 actions, more than 8",
    ),
    (
        "too many features",
        rank(context=features(**{f"f{i}": 1.0 for i in range(17)})),
        grpc.StatusCode.INVALID_ARGUMENT,
        r"context\['user'\]: 17 features, more than 16",
    ),
    (
        "too many namespaces",
        rank(context={f"n{i}": types_pb2.Features() for i in range(5)}),
        grpc.StatusCode.INVALID_ARGUMENT,
        "context: 5 namespaces, more than 4",
    ),
    ("long event id", rank(event_id="x" * 65), grpc.StatusCode.INVALID_ARGUMENT, "event_id: longer than 64"),
    (
        "long token",
        rank(context={"u": types_pb2.Features(tokens=["t" * 65])}),
        grpc.StatusCode.INVALID_ARGUMENT,
        r"context\['u'\].tokens\[0\]: longer than 64",
    ),
    ("empty namespace", rank(context={"": types_pb2.Features()}), grpc.StatusCode.INVALID_ARGUMENT, "namespace name"),
    ("nul in event id", rank(event_id="a\x00b"), grpc.StatusCode.INVALID_ARGUMENT, "event_id: contains a NUL"),
]

LIMITS = Limits(
    max_actions=8, max_namespaces=4, max_features_per_namespace=16, max_string_length=64, max_message_bytes=64 * 1024
)


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("store"), limits=LIMITS) as pair:
        yield pair


@pytest.mark.parametrize("name,request_,code,match", INVALID, ids=[c[0] for c in INVALID])
def test_bad_rank_request(limited, name, request_, code, match):
    _, client = limited
    with pytest.raises(grpc.RpcError) as err:
        client.decisions.Rank(request_)
    assert err.value.code() == code
    assert re.search(match, err.value.details()), err.value.details()


BAD_REWARDS = [
    (
        "nan value",
        decision_pb2.RewardRequest(event_id="e", value=float("nan")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "value: must be finite",
    ),
    (
        "no event id",
        decision_pb2.RewardRequest(value=1.0),
        grpc.StatusCode.INVALID_ARGUMENT,
        "event_id: must not be empty",
    ),
    ("unknown loop", decision_pb2.RewardRequest(loop="nope", event_id="e"), grpc.StatusCode.NOT_FOUND, "loop"),
]


@pytest.mark.parametrize("name,request_,code,match", BAD_REWARDS, ids=[c[0] for c in BAD_REWARDS])
def test_bad_reward_request(limited, name, request_, code, match):
    _, client = limited
    with pytest.raises(grpc.RpcError) as err:
        client.decisions.Reward(request_)
    assert err.value.code() == code and match in err.value.details()


def test_bad_activate_request(limited):
    _, client = limited
    with pytest.raises(grpc.RpcError) as err:
        client.decisions.Activate(decision_pb2.ActivateRequest(event_id=""))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "event_id" in err.value.details()


def test_oversized_message_is_refused(limited):
    _, client = limited
    huge = rank(context={"u": types_pb2.Features(tokens=["x" * 60] * 2000)})
    with pytest.raises(grpc.RpcError) as err:
        client.decisions.Rank(huge)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_bad_stream_item_fails_naming_it_and_keeps_the_earlier_rewards(limited):
    server, client = limited
    items = [decision_pb2.RewardRequest(event_id=f"s{i}", value=1.0, reward_id="r") for i in range(3)]
    items.append(decision_pb2.RewardRequest(event_id="s3", value=float("inf")))
    with pytest.raises(grpc.RpcError) as err:
        client.reward_stream(items)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "rewards[3].value" in err.value.details()
    # the first three were accepted: sending them again finds them as duplicates
    summary = client.reward_stream(items[:3])
    assert (summary.accepted, summary.duplicates) == (0, 3)


BAD_CONFIGS = [
    (
        "bad vw option",
        types_pb2.LoopConfig(name="x", policy="vw:--cb_explore_adf --no_such_option"),
        "config.policy: VW rejected the arguments: unrecognised option '--no_such_option'",
    ),
    ("not adf", types_pb2.LoopConfig(name="x", policy="vw:--cb 3"), "must include --cb_explore_adf"),
    (
        "file option",
        types_pb2.LoopConfig(name="x", policy="vw:--cb_explore_adf -f /tmp/model"),
        "option -f is not allowed",
    ),
    ("unknown family", types_pb2.LoopConfig(name="x", policy="magic"), "unknown policy family 'magic'"),
    ("bad name", types_pb2.LoopConfig(name="has space"), "config.name"),
    ("negative wait", types_pb2.LoopConfig(name="x", reward_wait_seconds=-1), "config.reward_wait_seconds"),
    (
        "tiny publish interval",
        types_pb2.LoopConfig(name="x", publish_interval_seconds=0.001),
        "config.publish_interval_seconds: must be at least 0.05",
    ),
    ("nan default reward", types_pb2.LoopConfig(name="x", default_reward=float("nan")), "config.default_reward"),
]


@pytest.mark.parametrize("name,config,match", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_loop_config(limited, name, config, match):
    _, client = limited
    with pytest.raises(grpc.RpcError) as err:
        client.admin.CreateLoop(admin_pb2.CreateLoopRequest(config=config))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert match in err.value.details()


def test_bad_update_keeps_the_previous_config(limited):
    _, client = limited
    client.create_loop("keep", policy="vw:--cb_explore_adf --epsilon 0.2")
    with pytest.raises(grpc.RpcError) as err:
        client.update_loop("keep", policy="vw:--cb_explore_adf --epsilon_typo 0.3")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "epsilon_typo" in err.value.details()
    assert client.get_loop("keep").policy == "vw:--cb_explore_adf --epsilon 0.2"
    assert client.rank(OK_ACTIONS, loop="keep").policy == "vw:--cb_explore_adf --epsilon 0.2"


def test_server_keeps_serving_after_bad_input(limited):
    _, client = limited
    for _, request_, _, _ in INVALID:
        with pytest.raises(grpc.RpcError):
            client.decisions.Rank(request_)
    assert client.rank(OK_ACTIONS).chosen_action_id in {"a", "b"}
