"""Policies swapped at runtime over gRPC: replace under traffic, shadow with live estimates, promote,
list and roll back models, export and import."""

import threading

import grpc
import pytest
import vowpalwabbit
from planted import ACTIONS, PERSONALIZING, run

from nextbest import policies
from nextbest.server.catalog import Catalog
from nextbest.server.config import DEFAULT_POLICY, default_loop_config
from nextbest.server.store import open_store
from nextbest.testing import wait_for
from nextbest.v1 import admin_pb2

SHADOW = "vw:--cb_explore_adf --squarecb -q ::"


def set_policy(client, loop, spec, mode=admin_pb2.POLICY_MODE_REPLACE):
    return client.admin.SetPolicy(admin_pb2.SetPolicyRequest(loop=loop, spec=spec, mode=mode))


def test_replace_under_traffic_fails_no_call(served):
    _, client = served
    client.create_loop("swap", reward_wait_seconds=0.05, publish_interval_seconds=0.05)
    failures, seen, stop = [], [], threading.Event()

    def traffic():
        i = 0
        while not stop.is_set():
            try:
                r = client.rank(ACTIONS, {"user": {"segment": "student"}}, loop="swap", event_id=f"t{i}")
                seen.append(r.policy)
                client.reward(r.event_id, 1.0, loop="swap")
            except grpc.RpcError as e:  # pragma: no cover - reported by the assertion below
                failures.append(e)
            i += 1

    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        wait_for(lambda: len(seen) > 50)
        config = set_policy(client, "swap", "vw:--cb_explore_adf --softmax --lambda 5")
        assert config.policy == "vw:--cb_explore_adf --softmax --lambda 5" and config.version == 2
        wait_for(lambda: seen[-1] == config.policy)
        n = len(seen)
        wait_for(lambda: len(seen) > n + 20)
    finally:
        stop.set()
        thread.join()
    assert not failures
    switch = seen.index(config.policy)
    assert all(p == config.policy for p in seen[switch:])  # once swapped, every answer uses the new policy


def test_a_stale_learner_publish_never_takes_a_swapped_loop_back(tmp_path):
    """The learner reads the config at the start of its pass: a model of the old policy may be published
    after a swap. A loop that serves its configured policy keeps serving it until a model of it comes."""
    store = open_store(str(tmp_path / "store"))
    try:
        old, new = "vw:--cb_explore_adf --epsilon 0.05", "vw:--cb_explore_adf --softmax --lambda 5"
        config = default_loop_config()
        config.name, config.policy, config.version = "swap", old, 1
        store.configs.create("swap", config.SerializeToString())
        catalog = Catalog(store)
        assert catalog.get("swap").model.spec == old  # nothing published yet: an untrained model of the spec
        config.policy, config.version = new, 2
        store.configs.put("swap", config.SerializeToString())
        catalog.refresh()
        assert catalog.get("swap").model.spec == new
        store.models.publish("swap", old, policies.create(old).save(), 10)  # the stale learner's model
        catalog.refresh()
        assert catalog.get("swap").model.spec == new
        store.models.publish("swap", new, policies.create(new).save(), 12)
        catalog.refresh()
        assert (catalog.get("swap").model.spec, catalog.get("swap").model.version) == (new, 2)
    finally:
        store.close()


@pytest.mark.slow
def test_shadow_estimate_promote_rollback(served):
    server, client = served
    client.create_loop("sh", policy="random", reward_wait_seconds=0.05, publish_interval_seconds=0.05)
    config = set_policy(client, "sh", PERSONALIZING, admin_pb2.POLICY_MODE_SHADOW)
    assert list(config.shadow_policies) == [PERSONALIZING] and config.policy == "random"
    run(client, "sh", 1500, seed=11)
    stats = wait_for(lambda: (s := client.stats("sh")).learned == 1500 and s)
    live, shadow = stats.policies
    assert (live.spec, live.live, shadow.spec, shadow.live) == ("random", True, PERSONALIZING, False)
    assert live.events == shadow.events == 1500
    # random earns (0.8 + 3 * 0.1) / 4 = 0.275; the shadow learns the planted best (~0.8 greedy, 0.1 explore)
    assert live.ci_low < 0.275 < live.ci_high
    assert shadow.ci_low > live.ci_high
    print(
        f"shadow estimate {shadow.value:.3f} [{shadow.ci_low:.3f}, {shadow.ci_high:.3f}] "
        f"ess {shadow.effective_sample_size:.0f}; random {live.value:.3f}"
    )

    promoted = client.admin.PromotePolicy(admin_pb2.PromotePolicyRequest(loop="sh", shadow=PERSONALIZING))
    assert promoted.policy == PERSONALIZING and not promoted.shadow_policies
    wait_for(lambda: client.rank(ACTIONS, loop="sh", deferred=True).policy == PERSONALIZING)  # probes never learned
    hits, rewards = run(client, "sh", 600, seed=12)
    print(f"after promotion: best-action rate {hits.mean():.3f}, average reward {rewards.mean():.3f}")
    assert hits.mean() > 0.65  # promoted warm: it acts on what it learned in the shadow (chance: 0.25)
    assert shadow.ci_low - 0.1 < rewards.mean() < shadow.ci_high + 0.1

    models = client.admin.ListModels(admin_pb2.ListModelsRequest(loop="sh")).models
    assert [m.live for m in models].count(True) == 1
    assert len(models) <= 10 + 1  # older versions are pruned (right after each publish: one more for a moment)
    first_vw = next(m for m in models if m.spec == PERSONALIZING)
    first_data = server.store.models.get("sh", first_vw.version).data  # read now: later publishes prune it
    rolled = client.admin.Rollback(admin_pb2.RollbackRequest(loop="sh", version=first_vw.version))
    assert rolled.version > max(m.version for m in models) and rolled.live and rolled.spec == PERSONALIZING
    wait_for(lambda: int(client.rank(ACTIONS, loop="sh").model_version) >= rolled.version)
    data = server.store.models.get("sh", rolled.version).data
    assert data == first_data


@pytest.mark.slow
def test_export_then_import_warm_starts_another_loop(served, tmp_path):
    server, client = served
    client.create_loop("src", policy=PERSONALIZING, reward_wait_seconds=0.05, publish_interval_seconds=0.05)
    run(client, "src", 800, seed=5)
    wait_for(lambda: client.stats("src").learned == 800)
    chunks = list(client.admin.ExportModel(admin_pb2.ExportModelRequest(loop="src")))
    data = b"".join(c.data for c in chunks)
    assert chunks[0].spec == PERSONALIZING
    assert data == policies.export_state(PERSONALIZING, server.store.models.live("src").data)
    exported = tmp_path / "exported.vw"
    exported.write_bytes(data)  # VW's own model format: `vw -i` reads it
    assert "cb_explore_adf" in " ".join(vowpalwabbit.Workspace(f"-i {exported} --quiet").get_enabled_learners())

    client.create_loop("dst", policy="random", reward_wait_seconds=0.05, publish_interval_seconds=0.05)
    before = client.get_loop("dst")
    with pytest.raises(grpc.RpcError) as err:
        client.admin.ImportModel(iter([admin_pb2.ImportModelRequest(loop="dst", spec=PERSONALIZING, data=b"junk")]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "data: cannot load" in err.value.details()
    assert client.get_loop("dst") == before and client.stats("dst").model_version == "0"

    half = len(data) // 2
    info = client.admin.ImportModel(
        iter(
            [
                admin_pb2.ImportModelRequest(loop="dst", spec=PERSONALIZING, data=data[:half]),
                admin_pb2.ImportModelRequest(data=data[half:]),
            ]
        )
    )
    assert info.live and info.spec == PERSONALIZING
    assert client.get_loop("dst").policy == PERSONALIZING
    # deferred probes: never activated, so never learned (undeferred ones would teach the warm model that any
    # action earns the default reward, more of them the longer the swap takes)
    wait_for(lambda: client.rank(ACTIONS, loop="dst", deferred=True).model_version == str(info.version))
    hits, _ = run(client, "dst", 300, seed=6)
    assert hits.mean() > 0.6  # warm from the first request on (chance: 0.25)


@pytest.mark.parametrize(
    "request_,code,match",
    [
        (
            admin_pb2.SetPolicyRequest(loop="default", spec="vw:--cb_explore_adf --nope"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "VW option --nope is not allowed",
        ),
        (admin_pb2.SetPolicyRequest(loop="default", spec=""), grpc.StatusCode.INVALID_ARGUMENT, "spec: must not"),
        (admin_pb2.SetPolicyRequest(loop="nope", spec="random"), grpc.StatusCode.NOT_FOUND, "loop"),
        (
            admin_pb2.SetPolicyRequest(loop="default", spec=DEFAULT_POLICY, mode=admin_pb2.POLICY_MODE_SHADOW),
            grpc.StatusCode.INVALID_ARGUMENT,
            "is the live policy",
        ),
    ],
)
def test_bad_set_policy(served, request_, code, match):
    _, client = served
    with pytest.raises(grpc.RpcError) as err:
        client.admin.SetPolicy(request_)
    assert err.value.code() == code and match in err.value.details()


def test_promote_unknown_shadow_and_rollback_unknown_version_are_not_found(served):
    _, client = served
    for call in (
        lambda: client.admin.PromotePolicy(admin_pb2.PromotePolicyRequest(loop="default", shadow="random")),
        lambda: client.admin.Rollback(admin_pb2.RollbackRequest(loop="default", version=42)),
        lambda: list(client.admin.ExportModel(admin_pb2.ExportModelRequest(loop="default", version=42))),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_policies_registry_knows_vw():
    assert "vw" in policies.families()


def test_import_a_model_trained_by_vw_itself(served, tmp_path):
    _, client = served
    ws = vowpalwabbit.Workspace(arg_list=[*PERSONALIZING[3:].split(), "--quiet"])
    example = policies.Example({"user": policies_features("student")}, ACTIONS)
    for _ in range(200):
        ws.learn(example.vw_labeled_lines(1, -1.0, 0.25))  # push-tip pays for students
    path = tmp_path / "model.vw"
    ws.save(str(path))
    info = client.admin.ImportModel(
        iter([admin_pb2.ImportModelRequest(loop="default", spec=PERSONALIZING, data=path.read_bytes())])
    )
    wait_for(lambda: client.rank(ACTIONS, loop="default").model_version == str(info.version))
    r = client.rank(ACTIONS, {"user": {"segment": "student"}}, loop="default")
    assert r.ranking[0].action_id == "push-tip" and r.ranking[0].probability > 0.9


def policies_features(segment):
    from nextbest.client import features

    return features({"segment": segment})
