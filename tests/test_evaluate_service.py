"""Service → log → evaluate: off-policy estimates on a live loop's log, where the better policy is known."""

import json
import os
import subprocess
import sys

import grpc
import pytest
from planted import BEST, PERSONALIZING, run

from nextbest.client import action
from nextbest.server.evaluation import EvaluationLimits
from nextbest.server.restrictions import Restrictions
from nextbest.testing import FakeClock, child_commands, running_server, wait_for
from nextbest.v1 import admin_pb2

JOURNEY = json.dumps(
    {"rules": [{"if": {"user.segment": s}, "then": [a]} for s, a in BEST.items()], "fallback": ["email-offer"]}
)
ORACLE = f"rules:{JOURNEY}"  # knows the planted best action of every segment: worth 0.8
WRONG = 'fixed:{"sms-coupon": 1}'  # never the best: worth 0.1
ACTIONS = [action("a", "email"), action("b", "push")]
T0 = FakeClock()()


@pytest.fixture(scope="module")
def logged_loop(tmp_path_factory):
    from nextbest.testing import running_server

    with running_server(tmp_path_factory.mktemp("store")) as (server, client):
        client.create_loop("ope", policy="random", reward_wait_seconds=0.05, publish_interval_seconds=0.05)
        run(client, "ope", 1200, seed=21)
        wait_for(lambda: client.stats("ope").joined == 1200)
        yield server, client


@pytest.mark.slow
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


@pytest.mark.slow
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


SLEEPER = "python:hostile_policies:Sleeper"
HOG = "python:hostile_policies:Hog"
HOSTILE = Restrictions(policy_modules=("hostile_policies",))


def evaluations_running() -> list[int]:
    return [p for p, command in child_commands(os.getpid()).items() if "spawn_main" in command]


@pytest.fixture(scope="module")
def timed_events(tmp_path_factory):
    """A store whose loop `t` has 30 joined events, decided one second apart from T0."""
    directory = tmp_path_factory.mktemp("store")
    clock = FakeClock()
    with running_server(directory, clock=clock) as (_, client):
        client.create_loop("t", policy="random", reward_wait_seconds=1.0, publish_interval_seconds=0.05)
        for i in range(30):
            client.reward(client.rank(ACTIONS, loop="t", event_id=f"e{i}").event_id, float(i % 2), loop="t")
            clock.advance(1.0)
        clock.advance(10.0)
        wait_for(lambda: client.stats("t").joined == 30)
    return directory, T0


def bounded(directory, **limits):
    return running_server(directory, train=False, evaluation=EvaluationLimits(**limits), restrictions=HOSTILE)


@pytest.mark.slow
def test_an_evaluation_over_more_events_than_the_cap_is_refused(timed_events):
    directory, t0 = timed_events
    with bounded(directory, max_events=10) as (_, client):
        with pytest.raises(grpc.RpcError) as err:
            client.admin.Evaluate(admin_pb2.EvaluateRequest(loop="t", specs=["baseline"]))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert err.value.details() == (
            "since/until: loop 't' has more than 10 joined events in the range (limit evaluate_max_events, "
            "serve --evaluate-max-events); evaluate a shorter range"
        )
        shorter = admin_pb2.EvaluateRequest(loop="t", specs=["baseline"], since=t0 + 5, until=t0 + 15)
        assert client.admin.Evaluate(shorter).events == 10


@pytest.mark.slow
def test_an_evaluation_past_its_timeout_is_stopped(timed_events):
    directory, _ = timed_events
    with bounded(directory, timeout_seconds=3.0) as (_, client):
        with pytest.raises(grpc.RpcError) as err:
            client.admin.Evaluate(admin_pb2.EvaluateRequest(loop="t", specs=[SLEEPER]), timeout=120)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert err.value.details().startswith(
            "Evaluate: no result within 3 s (limit evaluate_timeout, serve --evaluate-timeout)"
        )
        assert evaluations_running() == []  # the sleeping process was killed
        assert client.rank(ACTIONS, loop="t").chosen_action_id  # the server serves on


@pytest.mark.slow
def test_an_evaluation_runs_where_only_the_installed_package_is_importable(timed_events, tmp_path):
    # -I and another working directory: the repository's folders (policies/, server/) are not on sys.path.
    directory, _ = timed_events
    script = f"""
from nextbest.server.evaluation import EvaluationLimits, evaluate_in_child
from nextbest.server.restrictions import Restrictions
from nextbest.server.store import open_store
with open_store({str(directory)!r}) as store:
    report = evaluate_in_child(store, "t", ["baseline"], None, None, EvaluationLimits(), Restrictions())
print(report.events, report.best, report.policy("baseline").estimates["ips"].value is not None)
"""
    done = subprocess.run([sys.executable, "-I", "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["30", "baseline", "True"]


@pytest.mark.slow
def test_an_evaluation_over_its_memory_limit_is_refused(timed_events):
    directory, _ = timed_events
    with bounded(directory, max_memory_bytes=1 << 30) as (_, client):
        with pytest.raises(grpc.RpcError) as err:
            client.admin.Evaluate(admin_pb2.EvaluateRequest(loop="t", specs=[HOG]), timeout=120)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert err.value.details().startswith(
            f"Evaluate: the evaluation ran out of memory at its memory limit of {1 << 30} bytes (limit "
            "evaluate_max_memory, serve --evaluate-max-memory)"
        )
        assert client.admin.Evaluate(admin_pb2.EvaluateRequest(loop="t", specs=["baseline"])).events == 30


@pytest.mark.slow
def test_evaluations_run_one_at_a_time_and_specs_are_restricted_as_the_server_says(timed_events):
    directory, _ = timed_events
    with bounded(directory, timeout_seconds=5.0) as (_, client):
        slow = client.admin.Evaluate.future(admin_pb2.EvaluateRequest(loop="t", specs=[SLEEPER]), timeout=120)
        wait_for(evaluations_running)
        with pytest.raises(grpc.RpcError) as err:
            client.admin.Evaluate(admin_pb2.EvaluateRequest(loop="t", specs=["baseline"]))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "another evaluation is running" in err.value.details()
        assert slow.exception().code() == grpc.StatusCode.DEADLINE_EXCEEDED
    with running_server(directory, train=False) as (_, client):  # no python: modules allowed by default
        with pytest.raises(grpc.RpcError) as err:
            client.admin.Evaluate(admin_pb2.EvaluateRequest(loop="t", specs=[SLEEPER]))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "python policies must be allowed by the server's configuration" in err.value.details()


@pytest.mark.parametrize(
    ("spec", "reason"),
    [("vw:--nonsense", "must include --cb_explore_adf"), ("nope:x", "unknown policy family 'nope'")],
)
def test_a_bad_spec_is_refused_even_on_a_loop_without_events(tmp_path, spec, reason):
    with running_server(tmp_path / "store", train=False) as (_, client):
        with pytest.raises(grpc.RpcError) as err:
            client.admin.Evaluate(admin_pb2.EvaluateRequest(loop="default", specs=["baseline", spec]))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details().startswith("specs: ") and reason in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            client.admin.Evaluate(admin_pb2.EvaluateRequest(loop="default", specs=["baseline"]))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # good specs, no events
