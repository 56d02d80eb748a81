"""AdminService: loops are created, read, listed, changed and deleted; models swap without pausing Rank."""

import grpc
import pytest

from nextbest.client import LearningMode, RewardAggregation, action
from nextbest.server.config import DEFAULT_POLICY
from nextbest.v1 import admin_pb2

ACTIONS = [action("a", "email"), action("b", "push")]


def test_first_start_creates_the_default_loop_with_defaults(served):
    _, client = served
    (default,) = client.list_loops()
    assert default.name == "default" and default.policy == DEFAULT_POLICY
    assert default.reward_aggregation == RewardAggregation.REWARD_AGGREGATION_EARLIEST
    assert default.learning_mode == LearningMode.LEARNING_MODE_ONLINE
    assert default.reward_wait_seconds > 0 and default.publish_interval_seconds > 0 and default.version == 1


def test_create_get_update_delete(served):
    _, client = served
    created = client.create_loop("promo", policy="vw:--cb_explore_adf --squarecb", default_reward=-1.0)
    assert created.version == 1 and created.default_reward == -1.0
    assert client.get_loop("promo") == created
    with pytest.raises(grpc.RpcError) as err:
        client.create_loop("promo")
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    updated = client.update_loop("promo", reward_wait_seconds=5.0)
    assert updated.version == 2 and updated.reward_wait_seconds == 5.0 and updated.default_reward == -1.0
    stale = client.get_loop("promo")
    stale.version = 1
    with pytest.raises(grpc.RpcError) as err:
        client.admin.UpdateLoop(admin_pb2.UpdateLoopRequest(config=stale))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert client.rank(ACTIONS, loop="promo").policy == "vw:--cb_explore_adf --squarecb"
    client.delete_loop("promo")
    assert [c.name for c in client.list_loops()] == ["default"]
    for call in (
        lambda: client.get_loop("promo"),
        lambda: client.delete_loop("promo"),
        lambda: client.stats("promo"),
        lambda: client.rank(ACTIONS, loop="promo"),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_stats_of_a_fresh_loop(served):
    _, client = served
    stats = client.stats("default")
    assert (stats.loop, stats.decisions, stats.joined, stats.model_version) == ("default", 0, 0, "0")


def test_health_and_reflection_are_registered(served):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    _, client = served
    health = health_pb2_grpc.HealthStub(client.channel)
    for service in ("", "nextbest.v1.DecisionService", "nextbest.v1.AdminService"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(client.channel)
    (answer,) = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for s in answer.list_services_response.service}
    assert {"nextbest.v1.DecisionService", "nextbest.v1.AdminService", "grpc.health.v1.Health"} <= names


def test_reflection_describes_the_public_services_only(served):
    from google.protobuf.descriptor_pool import DescriptorPool
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    _, client = served
    database = ProtoReflectionDescriptorDatabase(client.channel)
    pool = DescriptorPool(database)
    assert set(database.get_services()) >= {"nextbest.v1.DecisionService", "nextbest.v1.AdminService"}
    rank = pool.FindServiceByName("nextbest.v1.DecisionService").methods_by_name["Rank"]
    assert rank.input_type.full_name == "nextbest.v1.RankRequest"
    assert pool.FindMessageTypeByName("nextbest.v1.LoopConfig").file.name == "nextbest/v1/types.proto"
    assert pool.FindServiceByName("grpc.health.v1.Health").methods_by_name["Check"]
    for internal in ("nextbest.v1.DecisionRecord", "nextbest.v1.JoinedEvent", "nextbest.v1.LearnerState"):
        with pytest.raises(KeyError):
            pool.FindMessageTypeByName(internal)
    with pytest.raises(KeyError):
        pool.FindFileByName("nextbest/v1/records.proto")
