"""Holdouts: a stable share of subjects decided by the holdout policy, flagged, not learned from, and the lift."""

import io
import json

import grpc
import pytest
import vowpalwabbit

from nextbest.cli import main
from nextbest.client import action
from nextbest.policies import Example
from nextbest.policies.ope.dsjson import read, to_dsjson
from nextbest.policies.ope.logged import LoggedEvent
from nextbest.policies.ope.report import evaluate
from nextbest.policies.rules import restrict_rules_files
from nextbest.server.export import export
from nextbest.server.sampling import in_holdout
from nextbest.server.store import Stream
from nextbest.testing import running_server, wait_for
from nextbest.v1 import records_pb2

CONTEXT = {"user": {"visits": 3}}
ACTIONS = [action(f"a{i}", "email", {"offer": {"kind": f"k{i}"}}) for i in range(4)]


def rank(client, subject_id, *, loop="h", event_id="", deferred=False):
    return client.rank(ACTIONS, CONTEXT, loop=loop, event_id=event_id, deferred=deferred, subject_id=subject_id)


def logged(server, loop, event_id):
    return records_pb2.DecisionRecord.FromString(server.store.log.get(Stream.DECISIONS, loop, event_id))


def refused(call):
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return err.value.details()


def test_the_holdout_config_defaults_to_random_and_bad_values_are_refused_naming_the_field(served):
    _, client = served
    config = client.create_loop("h", holdout_fraction=0.2)
    assert (config.holdout_fraction, config.holdout_policy, config.holdout_learn) == (0.2, "random", False)
    assert client.create_loop("none").holdout_policy == "random"
    for fraction in (-0.1, 0.51, float("nan"), float("inf")):
        assert refused(lambda f=fraction: client.create_loop("bad", holdout_fraction=f)).startswith(
            "config.holdout_fraction:"
        )
    for spec in ("nope", "random:x", "vw:--cb_explore_adf"):
        assert refused(lambda s=spec: client.update_loop("h", holdout_policy=s)).startswith("config.holdout_policy:")
    assert client.update_loop("h", holdout_policy="baseline").holdout_policy == "baseline"


@pytest.mark.slow
def test_a_subject_always_lands_in_the_same_group_and_the_share_is_the_fraction(served):
    server, client = served
    client.create_loop("h", holdout_fraction=0.2)
    first = {f"s{i}": rank(client, f"s{i}").holdout for i in range(2000)}
    share = sum(first.values()) / len(first)
    assert abs(share - 0.2) <= 0.02
    again = {s: rank(client, s).holdout for s in list(first)[:200]}
    assert again == {s: first[s] for s in again}
    assert all(first[s] == in_holdout("h", s, 0.2) for s in first)
    assert not any(rank(client, "").holdout for _ in range(50))  # no subject: never held out


def test_a_holdout_decision_is_the_holdout_policys_flagged_and_logged_exactly(served):
    server, client = served
    client.create_loop("h", holdout_fraction=0.5, holdout_policy="random")
    subjects = [f"s{i}" for i in range(40)]
    held = next(s for s in subjects if in_holdout("h", s, 0.5))
    treated = next(s for s in subjects if not in_holdout("h", s, 0.5))

    r = rank(client, held, event_id="held")
    assert r.holdout and r.policy == "random"
    assert [a.probability for a in r.ranking] == [0.25] * 4
    record = logged(server, "h", "held")
    assert record.holdout and record.subject_id == held and record.policy == "random"
    assert list(record.pmf) == [0.25] * 4
    assert record.actions[record.chosen_index].id == r.chosen_action_id

    t = rank(client, treated, event_id="treated", deferred=True)  # deferred: the record is built field by field
    assert not t.holdout and t.policy.startswith("vw:")
    record = logged(server, "h", "treated")
    assert not record.holdout and record.subject_id == treated

    client.update_loop("h", holdout_fraction=0.0)  # a retry answers what was logged, whatever the config now
    retried = rank(client, held, event_id="held")
    assert retried.holdout and retried.policy == "random" and retried.chosen_action_id == r.chosen_action_id


def test_the_holdout_decides_in_every_learning_mode(served):
    _, client = served
    client.create_loop("h", holdout_fraction=0.5, holdout_policy="random", learning_mode="LEARNING_MODE_LOGGING_ONLY")
    held = next(f"s{i}" for i in range(40) if in_holdout("h", f"s{i}", 0.5))
    treated = next(f"s{i}" for i in range(40) if not in_holdout("h", f"s{i}", 0.5))
    assert rank(client, held).policy == "random"
    assert rank(client, treated).policy == "baseline"


def split(loop, fraction, n=400):
    """Subject ids of the holdout group and of the treatment group of `loop`."""
    subjects = [f"s{i}" for i in range(n)]
    return [s for s in subjects if in_holdout(loop, s, fraction)], [
        s for s in subjects if not in_holdout(loop, s, fraction)
    ]


def test_holdout_decisions_are_learned_by_no_model_unless_holdout_learn(served_fake_clock, clock):
    server, client = served_fake_clock
    client.create_loop("h", holdout_fraction=0.5, reward_wait_seconds=1, publish_interval_seconds=0.05)
    held, _ = split("h", 0.5)
    for s in held[:10]:
        rank(client, s)
    clock.advance(5)
    wait_for(lambda: client.stats("h").learned == 10)
    # learned comes from the cursor (nothing learned) or from a published model: either is visible by now
    assert client.stats("h").model_version == "0"

    client.update_loop("h", holdout_learn=True)
    for s in held[10:20]:
        rank(client, s)
    clock.advance(5)
    stats = wait_for(lambda: (s := client.stats("h")).model_version != "0" and s)
    assert stats.learned == 20
    assert [p.events for p in stats.policies] == [0]  # learned, yet not the live policy's estimate


def test_holdout_decisions_are_left_out_of_the_shadow_and_live_estimates(served_fake_clock, clock):
    server, client = served_fake_clock
    client.create_loop(
        "h",
        holdout_fraction=0.5,
        reward_wait_seconds=1,
        publish_interval_seconds=0.05,
        holdout_learn=True,
        shadow_policies=["baseline"],
    )
    held, treated = split("h", 0.5)
    for s in held[:15] + treated[:25]:
        rank(client, s)
    clock.advance(5)
    wait_for(lambda: client.stats("h").learned == 40)
    stats = wait_for(lambda: (s := client.stats("h")).policies and s)
    assert {p.spec: p.events for p in stats.policies} == {stats.policies[0].spec: 25, "baseline": 25}


def test_the_export_marks_holdout_decisions_and_vw_and_read_take_it(served_fake_clock, clock, tmp_path):
    server, client = served_fake_clock
    client.create_loop("h", holdout_fraction=0.5, reward_wait_seconds=1)
    held, treated = split("h", 0.5)
    for s in held[:6] + treated[:6]:
        rank(client, s, event_id=s)
    clock.advance(5)
    wait_for(lambda: client.stats("h").joined == 12)
    out = io.StringIO()
    assert export(server.store, "h", out).written == 12
    lines = out.getvalue().splitlines()
    marked = {obj["EventId"]: obj.get("_holdout", False) for obj in map(json.loads, lines)}
    assert marked == {s: s in held for s in held[:6] + treated[:6]}
    assert all(json.loads(t).get("_skipLearn") for t in lines if json.loads(t)["EventId"] in held)
    assert {e.event_id: e.holdout for e in read(lines)} == marked
    data = tmp_path / "export.json"
    data.write_text(out.getvalue())
    ws = vowpalwabbit.Workspace(f"--cb_explore_adf --dsjson -d {data} --quiet")
    ws.run_parser()
    assert ws.get_weighted_examples() == 6  # the treatment's lines: the holdout's are `_skipLearn`
    ws.finish()


def counted(lift):
    return lift.treatment_subjects + lift.holdout_subjects


def test_get_stats_reports_the_lift_by_subject_and_keeps_it_across_a_restart(tmp_path, clock, capsys):
    expected = {False: [0.0, 0, set()], True: [0.0, 0, set()]}  # group -> reward sum, decisions, subjects
    with running_server(tmp_path / "store", clock=clock) as (server, client):
        client.create_loop("h", holdout_fraction=0.3, reward_wait_seconds=1, default_reward=0.0)
        for i in range(100):
            subject = f"s{i}"
            for k in range(3):
                r = rank(client, subject)
                value = 1.0 if (i + k) % (3 if r.holdout else 2) == 0 else 0.0  # the treatment earns more
                client.reward(r.event_id, value, loop="h")
                expected[r.holdout][0] += value
                expected[r.holdout][1] += 1
                expected[r.holdout][2].add(subject)
        rank(client, "")  # without a subject: in no group
        clock.advance(5)
        stats = wait_for(
            lambda: (s := client.stats("h")).lift.treatment_subjects + s.lift.holdout_subjects == 100 and s
        )
        assert stats.joined == 301
        lift = stats.lift
        assert (lift.treatment_subjects, lift.holdout_subjects) == (len(expected[False][2]), len(expected[True][2]))
        assert lift.treatment == pytest.approx(expected[False][0] / expected[False][1])
        assert lift.holdout == pytest.approx(expected[True][0] / expected[True][1])
        assert lift.difference == pytest.approx(lift.treatment - lift.holdout) and lift.difference > 0.1
        assert lift.ci_low < lift.difference < lift.ci_high and lift.ci_high - lift.ci_low < 0.5
        code = main(["--log-level", "WARNING", "stats", "h", "--target", server.address])
        out = capsys.readouterr().out
        assert code == 0 and f"lift       {lift.difference:+.4f}" in out and "holdout" in out
    with running_server(tmp_path / "store", train=False) as (_, client):
        assert client.stats("h").lift == lift  # saved on stop, read from the store


def test_a_loop_without_holdout_decisions_reports_no_lift(served):
    _, client = served
    client.create_loop("h")
    rank(client, "s1")
    assert not client.stats("h").HasField("lift")


def test_evaluate_leaves_holdout_events_out_of_the_logged_policys_value():
    example = Example({}, ACTIONS[:2])
    events = [LoggedEvent(f"e{i}", example, i % 2, 0.5, float(i < 10), holdout=i >= 10) for i in range(16)]
    report = evaluate(events, [])
    assert report.policy("logged").estimates["ips"].value == 1.0  # the 6 holdout events earned 0
    assert report.policy("random").estimates["ips"].value == pytest.approx(10 / 16)  # every event counts here
    line = to_dsjson(events[12])
    assert json.loads(line)["_holdout"] is True and next(read([line])).holdout
    with pytest.raises(ValueError, match="_holdout must be true or false"):
        next(read([line.replace('"_holdout":true', '"_holdout":1')]))


def cli(capsys, *argv):
    code = main(["--log-level", "WARNING", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_admin_cli_and_loops_as_code_set_and_show_the_holdout(served, capsys, tmp_path):
    server, client = served
    t = ("--target", server.address)
    code, out, err = cli(capsys, "loops", "create", "h", *t, "--holdout-fraction", "0.1", "--holdout-learn", "true")
    assert code == 0, err
    assert "holdout_fraction          0.1" in out and "holdout_policy            random" in out
    code, _, err = cli(capsys, "loops", "update", "h", *t, "--holdout-policy", "vw:--cb_explore_adf")
    assert code == 1 and "INVALID_ARGUMENT: config.holdout_policy:" in err
    path = tmp_path / "loops.toml"
    path.write_text('[loops.h]\nholdout_fraction = 0.25\nholdout_policy = "baseline"\n')
    code, out, err = cli(capsys, "apply", str(path), *t)
    assert code == 0, err
    assert "holdout_fraction 0.1 -> 0.25" in out and "holdout_policy 'random' -> 'baseline'" in out
    config = client.get_loop("h")
    assert (config.holdout_fraction, config.holdout_policy, config.holdout_learn) == (0.25, "baseline", True)


def test_a_holdout_policy_this_server_cannot_build_refuses_only_the_holdout_subjects(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "journey.json").write_text(json.dumps({"rules": [{"then": "a1"}]}))
    held, treated = split("h", 0.5)
    restore = restrict_rules_files(rules)
    try:
        with running_server(tmp_path / "store", train=False) as (_, client):
            client.create_loop("h", holdout_fraction=0.5, holdout_policy="rules:journey.json")
            assert rank(client, held[0]).chosen_action_id == "a1"
        (rules / "journey.json").unlink()  # a restart without the journey file
        with running_server(tmp_path / "store", train=False) as (_, client):
            with pytest.raises(grpc.RpcError) as err:
                rank(client, held[0])
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert err.value.details().startswith("config.holdout_policy: 'rules:journey.json' cannot be built")
            assert not rank(client, treated[0]).holdout
    finally:
        restore()


def test_holdout_decisions_leave_the_apprentice_match_rate_alone(served_fake_clock, clock):
    _, client = served_fake_clock
    client.create_loop("h", holdout_fraction=0.5, reward_wait_seconds=1, learning_mode="LEARNING_MODE_APPRENTICE")
    held, treated = split("h", 0.5)
    for s in held[:12] + treated[:4]:
        rank(client, s)
    clock.advance(5)
    stats = wait_for(lambda: (s := client.stats("h")).joined == 16 and s)
    assert stats.apprentice_match_rate == 1.0  # the untrained policy's top action is the baseline's, 4 times of 4
