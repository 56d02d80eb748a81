"""Rewards are bounded to the loop's reward range: a value that would poison a model is refused naming the field,
and the loop keeps answering."""

import grpc
import pytest

from nextbest.client import action
from nextbest.testing import wait_for
from nextbest.v1 import admin_pb2, decision_pb2, types_pb2

ACTIONS = [action("a", "email"), action("b", "push"), action("c", "sms")]
CONTEXT = {"user": types_pb2.Features(numeric={"age": 30.0})}
POISON = 1e308


def invalid(call, request):
    with pytest.raises(grpc.RpcError) as err:
        call(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    return err.value.details()


@pytest.mark.slow
@pytest.mark.parametrize("exploration", ["--softmax --lambda 10", "--squarecb"])
def test_a_huge_reward_is_refused_and_the_loop_keeps_answering(served, exploration):
    _, client = served
    client.create_loop("p", policy=f"vw:--cb_explore_adf {exploration} -q ::", reward_wait_seconds=0.05)
    first = client.rank(ACTIONS, CONTEXT, loop="p")
    poison = decision_pb2.RewardRequest(loop="p", event_id=first.event_id, value=POISON)
    details = invalid(client.decisions.Reward, poison)
    assert details.startswith("value: ") and "[-1000000, 1000000]" in details
    stream = [decision_pb2.RewardRequest(loop="p", event_id=first.event_id, value=1.0, reward_id="ok")]
    stream.append(decision_pb2.RewardRequest(loop="p", event_id=first.event_id, value=-POISON))
    assert invalid(client.reward_stream, stream).startswith("rewards[1].value: ")
    for i in range(20):  # the model learns from what was accepted and publishes; every Rank still answers
        client.reward(client.rank(ACTIONS, CONTEXT, loop="p").event_id, 1e6 if i % 2 else -1e6, loop="p")
    wait_for(lambda: client.stats("p").learned >= 20 and int(client.stats("p").model_version) > 0)
    assert client.rank(ACTIONS, CONTEXT, loop="p").chosen_action_id in {"a", "b", "c"}
    assert client.stats("p").rewards == 21


def test_the_range_is_per_loop(served):
    _, client = served
    config = client.create_loop("unit", reward_min=0.0, reward_max=1.0)
    assert (config.reward_min, config.reward_max) == (0.0, 1.0)
    assert (client.get_loop("default").reward_min, client.get_loop("default").reward_max) == (-1e6, 1e6)
    event = client.rank(ACTIONS, loop="unit").event_id
    assert client.reward(event, 1.0, loop="unit") is False
    details = invalid(client.decisions.Reward, decision_pb2.RewardRequest(loop="unit", event_id=event, value=1.5))
    assert details == "value: 1.5 is outside the loop's reward range [0, 1] (reward_min, reward_max)"


BAD = [
    (types_pb2.LoopConfig(name="x", default_reward=POISON), "config.default_reward: "),
    (types_pb2.LoopConfig(name="x", reward_min=0.0, reward_max=1.0, default_reward=-1.0), "config.default_reward: "),
    (types_pb2.LoopConfig(name="x", reward_min=1.0, reward_max=0.5), "config.reward_min: "),
    (types_pb2.LoopConfig(name="x", reward_min=float("-inf"), reward_max=1.0), "config.reward_min: "),
    (types_pb2.LoopConfig(name="x", reward_min=-1.0, reward_max=1e300), "config.reward_max: "),
]


@pytest.mark.parametrize("config,prefix", BAD, ids=[b[1] + str(i) for i, b in enumerate(BAD)])
def test_a_default_reward_or_range_that_could_poison_a_model_is_refused(served, config, prefix):
    _, client = served
    details = invalid(client.admin.CreateLoop, admin_pb2.CreateLoopRequest(config=config))
    assert details.startswith(prefix)
    update = types_pb2.LoopConfig()
    update.CopyFrom(config)
    update.name = "default"
    assert invalid(client.admin.UpdateLoop, admin_pb2.UpdateLoopRequest(config=update)).startswith(prefix)
