"""Ids are limited in UTF-8 bytes as well as characters: a multi-byte id answers INVALID_ARGUMENT, and every
id the limits accept fits the store's keys."""

import grpc
import pytest

from nextbest.client import action
from nextbest.v1 import decision_pb2

ACTIONS = [action("a", "email"), action("b", "push")]
WIDE = {"é": "é" * 256, "emoji": "\U0001f600" * 200}  # within 256 characters, over 256 bytes


def refused(call, request, field):
    with pytest.raises(grpc.RpcError) as err:
        call(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert err.value.details().startswith(f"{field}: ") and "bytes" in err.value.details()


@pytest.mark.parametrize("wide", WIDE.values(), ids=WIDE.keys())
def test_multi_byte_ids_are_refused_naming_the_field(served, wide):
    _, client = served
    refused(client.decisions.Rank, decision_pb2.RankRequest(event_id=wide, actions=ACTIONS), "event_id")
    refused(client.decisions.Reward, decision_pb2.RewardRequest(event_id=wide, value=1.0), "event_id")
    refused(client.decisions.Reward, decision_pb2.RewardRequest(event_id="e", reward_id=wide), "reward_id")
    refused(client.decisions.Activate, decision_pb2.ActivateRequest(event_id=wide), "event_id")
    assert client.rank(ACTIONS).chosen_action_id in {"a", "b"}


def test_the_longest_ids_accepted_are_stored_and_stay_idempotent(served):
    _, client = served
    event_id, reward_id = "e" * 256, "r" * 256  # a reward's key holds both
    assert client.rank(ACTIONS, event_id=event_id).event_id == event_id
    assert client.reward(event_id, 1.0, reward_id=reward_id) is False
    assert client.reward(event_id, 1.0, reward_id=reward_id) is True
    assert client.activate(event_id) is False


def test_a_multi_byte_id_in_a_stream_keeps_every_reward_before_it(served):
    _, client = served
    items = [decision_pb2.RewardRequest(event_id=f"s{i}", value=1.0, reward_id="r") for i in range(3)]
    items.append(decision_pb2.RewardRequest(event_id=WIDE["emoji"], value=1.0, reward_id="r"))
    with pytest.raises(grpc.RpcError) as err:
        client.reward_stream(items)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "rewards[3].event_id" in err.value.details()
    summary = client.reward_stream(items[:3])
    assert (summary.accepted, summary.duplicates) == (0, 3)
