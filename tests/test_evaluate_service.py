"""Service → log → evaluate: off-policy estimates on a live loop's log, where the better policy is known."""

import json

import grpc
import pytest
from planted import BEST, PERSONALIZING, run

from nextbest.testing import wait_for
from nextbest.v1 import admin_pb2

JOURNEY = json.dumps(
    {"rules": [{"if": {"user.segment": s}, "then": [a]} for s, a in BEST.items()], "fallback": ["email-offer"]}
)
ORACLE = f"rules:{JOURNEY}"  # knows the planted best action of every segment: worth 0.8
WRONG = 'fixed:{"sms-coupon": 1}'  # never the best: worth 0.1


@pytest.fixture(scope="module")
def logged_loop(tmp_path_factory):
    from nextbest.testing import running_server

    with running_server(tmp_path_factory.mktemp("store")) as (server, client):
        client.create_loop("ope", policy="random", reward_wait_seconds=0.05, publish_interval_seconds=0.05)
        run(client, "ope", 1200, seed=21)
        wait_for(lambda: client.stats("ope").joined == 1200)
        yield server, client


def test_the_better_policy_is_estimated_above_the_worse(logged_loop):
    _, client = logged_loop
    response = client.admin.Evaluate(admin_pb2.EvaluateRequest(loop="ope", specs=[ORACLE, WRONG, PERSONALIZING]))
    assert response.events == 1200
    by_spec = {p.spec: p for p in response.policies}
    assert {"logged", "baseline", "random", ORACLE, WRONG, PERSONALIZING} <= set(by_spec)
    oracle, wrong, logged = by_spec[ORACLE].estimates, by_spec[WRONG].estimates, by_spec["logged"].estimates
    for name in ("ips", "snips", "dr"):
        assert oracle[name].ci_low > by_spec["random"].estimates[name].ci_high > wrong[name].ci_high
        assert oracle[name].ci_low < 0.8 < oracle[name].ci_high or abs(oracle[name].value - 0.8) < 0.05
    assert logged["ips"].ci_low < 0.275 < logged["ips"].ci_high  # uniform logging earns (0.8 + 3 * 0.1) / 4
    learner = by_spec[PERSONALIZING].estimates["snips"]
    assert learner.ci_low > by_spec["random"].estimates["snips"].ci_high  # it learns as it is replayed
    assert response.best == ORACLE
    report = json.loads(response.report_json)
    assert report["events"] == 1200 and {p["spec"] for p in report["policies"]} == set(by_spec)
    print(
        {s: round(p.estimates["dr"].value, 3) for s, p in by_spec.items() if s != ORACLE},
        "oracle",
        round(oracle["dr"].value, 3),
    )


def test_time_bounds_and_bad_requests(logged_loop):
    _, client = logged_loop
    future = admin_pb2.EvaluateRequest(loop="ope", specs=["random"], since=4e9)
    with pytest.raises(grpc.RpcError) as err:
        client.admin.Evaluate(future)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "at least 2 events" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        client.admin.Evaluate(admin_pb2.EvaluateRequest(loop="ope", specs=["vw:--cb_explore_adf --nope"]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and err.value.details().startswith("specs:")
    with pytest.raises(grpc.RpcError) as err:
        client.admin.Evaluate(admin_pb2.EvaluateRequest(loop="nope", specs=["random"]))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
