"""DSJSON out: `nextbest export` of a real server's log, read back by VW (`--dsjson`) and by `read`."""

import argparse
import io
import json
import os
import re
import shlex
import stat
import subprocess
import sys
from datetime import UTC, datetime
from types import SimpleNamespace

import grpc
import numpy as np
import pytest
import vowpalwabbit
from planted import PERSONALIZING
from test_dsjson import vw_parsed

from nextbest import policies
from nextbest.cli import main
from nextbest.client import LearningMode, action, namespaces
from nextbest.policies.ope.dsjson import read, to_dsjson
from nextbest.policies.ope.logged import LoggedEvent
from nextbest.server.commands.export import moment
from nextbest.server.export import export, logged_event
from nextbest.server.store import Entry, Stream, open_store
from nextbest.testing import FakeClock, running_server, wait_for
from nextbest.v1 import records_pb2

T0 = 1_700_000_000.0
WAIT = 10.0
DECISIONS = 40
SEGMENTS = ["student", "parent", "retiree"]


def actions(i):
    return [
        action("welcome email", "email", {"offer": {"kind": "welcome", "value": i % 3}}),
        action("app-tip", "push", {"offer": {"kind": "tip", "value": 1.5}}),
        action("sms:coupon", "sms", {"offer": {"kind": "coupon", "value": 5, "tokens": ["_new"]}}),
        action("call", "", {"script": {"tokens": ["short", "friendly"]}}),
    ]


def deferred(i):
    return i % 4 == 0


def activated(i):
    return i % 8 == 0


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    """A log of DECISIONS decisions (one a second from T0) of loop `shop` and 3 of the LOGGING_ONLY loop `quiet`.

    Every 4th decision is deferred, every 8th activated; `exported` is what `nextbest export` printed
    from another process while the server ran.
    """
    store = tmp_path_factory.mktemp("export") / "store"
    clock = FakeClock(T0)
    with running_server(store, clock=clock) as (server, client):
        client.create_loop("shop", policy=PERSONALIZING, reward_wait_seconds=WAIT, publish_interval_seconds=0.05)
        client.create_loop("quiet", learning_mode=LearningMode.LEARNING_MODE_LOGGING_ONLY, reward_wait_seconds=WAIT)
        rng = np.random.default_rng(5)
        for i in range(DECISIONS):
            context = {
                "user": {"segment": SEGMENTS[i % 3], "visits": i % 5, "tokens": ["music", "_promo"]},
                "time": {"hour": 8.25 + i % 12},
            }
            client.rank(actions(i), context, loop="shop", event_id=f"e{i}", deferred=deferred(i))
            if activated(i):
                client.activate(f"e{i}", loop="shop")
            if rng.random() < 0.5:
                client.reward(f"e{i}", float(rng.integers(1, 4)), loop="shop")
            clock.advance(1)
        for i in range(3):
            client.rank(actions(i), loop="quiet", event_id=f"q{i}")
        clock.advance(WAIT + 1)
        wait_for(lambda: client.stats("shop").joined == DECISIONS and client.stats("quiet").joined == 3)
        wait_for(lambda: client.stats("shop").learned == DECISIONS)  # consumed; deferred ones never shown skipped
        exported = subprocess.run(
            [sys.executable, "-m", "nextbest", "export", "--store", str(store), "--loop", "shop"],
            capture_output=True,
            text=True,
            check=True,
        )
    learned = DECISIONS - sum(deferred(i) and not activated(i) for i in range(DECISIONS))
    return SimpleNamespace(store=str(store), learned=learned, exported=exported)


def exported(log, loop="shop", **window):
    with open_store(log.store) as store:
        out = io.StringIO()
        export(store, loop, out, **window)
        joined = [records_pb2.JoinedEvent.FromString(d) for _, d in store.log.read(Stream.JOINED, loop, 0, 10**6)]
    return out.getvalue().splitlines(), joined


def vw_replay(lines, spec, directory):
    """VW itself (`vw --dsjson -d`) learning the DSJSON `lines` in order with the spec's arguments, as a policy."""
    data, model = directory / "replay.json", directory / "replay.vw"
    data.write_text("".join(line + "\n" for line in lines))
    args = [*shlex.split(spec.removeprefix("vw:")), "--dsjson", "-d", str(data), "-f", str(model), "--quiet"]
    ws = vowpalwabbit.Workspace(arg_list=args)
    ws.run_parser()
    ws.finish()
    return policies.load(spec, policies.import_state(spec, model.read_bytes()))


def max_pmf_gap(policy, other, probes):
    """The largest difference between the two policies' probabilities over the probe examples."""
    return max(float(np.max(np.abs(policy.pmf(e) - other.pmf(e)))) for e in probes)


@pytest.mark.slow
def test_vw_learns_from_every_exported_line_the_learner_learned_from(log, tmp_path):
    lines, _ = exported(log)
    path = tmp_path / "shop.json"
    path.write_text("\n".join(lines) + "\n")
    ws = vowpalwabbit.Workspace(f"--cb_explore_adf --dsjson -q :: -d {path} --quiet")
    ws.run_parser()
    assert ws.get_weighted_examples() == log.learned == sum("_skipLearn" not in json.loads(t) for t in lines)
    ws.finish()


def test_vw_hashes_the_export_as_it_hashes_the_featurizers_text(log):
    """Same hashes; values equal to float precision (VW's text parser reads "0.125" as 0.12499999)."""
    lines, joined = exported(log)
    text = vowpalwabbit.Workspace("--cb_explore_adf -q :: --quiet")
    dsjson = vowpalwabbit.Workspace("--cb_explore_adf -q :: --dsjson --quiet")
    for line, j in zip(lines, joined, strict=True):
        e = logged_event(j)
        from_text = vw_parsed(text, "\n".join(e.example.vw_labeled_lines(e.chosen_index, -e.reward, e.probability)))
        from_json = vw_parsed(dsjson, line.replace('"_skipLearn":true,', ""))  # VW would not parse it
        for a, b in zip(from_text, from_json, strict=True):
            assert [h for h, _ in a] == [h for h, _ in b]
            np.testing.assert_allclose([v for _, v in a], [v for _, v in b], rtol=1e-6)
    for workspace in (text, dsjson):
        workspace.finish()


def test_the_export_says_what_the_log_says(log):
    lines, joined = exported(log)
    assert len(lines) == DECISIONS
    for line, j in zip(lines, joined, strict=True):
        d, obj = j.decision, json.loads(line)
        ranking = [i - 1 for i in obj["a"]]
        assert [a["_tag"] for a in obj["c"]["_multi"]] == [a.id for a in d.actions]
        assert ranking[0] == obj["_labelIndex"] == obj["_label_Action"] - 1 == d.chosen_index
        assert sorted(ranking[1:], key=lambda i: -d.pmf[i]) == ranking[1:]
        assert obj["p"] == [d.pmf[i] for i in ranking]
        assert (obj["_label_probability"], obj["_label_cost"]) == (d.pmf[d.chosen_index], -j.reward)
        assert obj["EventId"] == d.event_id
        assert datetime.fromisoformat(obj["Timestamp"]).timestamp() == pytest.approx(d.timestamp, abs=1e-6)
        assert obj["o"] == [{"v": j.reward, "EventId": d.event_id, "ActionTaken": j.activated}]
        assert obj["VWState"] == {"m": d.model_version}
        (back,) = read([line])
        expected = logged_event(j)
        assert back.example.vw_lines() == expected.example.vw_lines()
        assert (back.chosen_index, back.probability, back.pmf, back.reward, back.skip_learn) == (
            expected.chosen_index,
            expected.probability,
            expected.pmf,
            expected.reward,
            expected.skip_learn,
        )


def test_deferred_decisions_never_activated_and_logging_only_ones_are_marked_skip_learn(log):
    lines, _ = exported(log)
    skipped = {obj["EventId"] for obj in map(json.loads, lines) if obj.get("_skipLearn")}
    assert skipped == {f"e{i}" for i in range(DECISIONS) if deferred(i) and not activated(i)}
    quiet, _ = exported(log, "quiet")
    assert [json.loads(t).get("_skipLearn") for t in quiet] == [True, True, True]


def test_since_and_until_select_decisions_by_their_time(log):
    lines, _ = exported(log, since=T0 + 10, until=T0 + 20)
    assert [json.loads(t)["EventId"] for t in lines] == [f"e{i}" for i in range(10, 20)]


def test_the_command_writes_to_stdout_while_the_server_runs_and_to_a_file(log, tmp_path, capsys):
    lines, _ = exported(log)
    assert log.exported.stdout.splitlines() == lines
    assert f"{DECISIONS} events of loop 'shop' written to standard output" in log.exported.stderr
    assert f"is {PERSONALIZING} learning the lines with 0 < Seq <= {DECISIONS}" in log.exported.stderr
    out = tmp_path / "window.json"
    since = datetime.fromtimestamp(T0 + 10, UTC).isoformat()
    assert main(["export", "--store", log.store, "--loop", "shop", "--since", since, "--until", str(T0 + 20),
                 "--output", str(out)]) == 0  # fmt: skip
    assert len(out.read_text().splitlines()) == 10
    captured = capsys.readouterr()
    assert captured.out == "" and f"10 events of loop 'shop' written to {out}" in captured.err


def test_the_exported_file_is_private_to_its_owner(log, tmp_path):
    out = tmp_path / "private.json"
    previous = os.umask(0o022)
    try:
        assert main(["export", "--store", log.store, "--loop", "shop", "--output", str(out)]) == 0
    finally:
        os.umask(previous)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and out.read_text()


@pytest.mark.parametrize(
    "store, loop, message",
    [("missing", "shop", "no store in"), ("", "nope", r"no loop 'nope' in .* \(loops: default, quiet, shop\)")],
)
def test_the_command_refuses_a_missing_store_or_loop(log, tmp_path, capsys, store, loop, message):
    assert main(["export", "--store", str(tmp_path / store) if store else log.store, "--loop", loop]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_the_command_skips_each_event_vws_json_cannot_hold_exports_the_rest_and_exits_1(tmp_path, capsys):
    """Logged before Rank refused such names: one event never fails nor truncates the whole export."""
    contexts = {"ok1": {"u": {"x": 2}}, "odd1": {"_private": {"x": 2}}, "ok2": {}, "odd2": {" x": {"n": 1}}}
    with open_store(str(tmp_path / "store")) as store:
        store.configs.create("odd", b"")
        for event_id, context in contexts.items():
            decision = records_pb2.DecisionRecord(
                event_id=event_id, context=namespaces(context), actions=actions(0), pmf=[1, 0, 0, 0]
            )
            data = records_pb2.JoinedEvent(decision=decision).SerializeToString()
            store.log.append(Stream.JOINED, "odd", [Entry(event_id, data)])
    assert main(["export", "--store", str(tmp_path / "store"), "--loop", "odd"]) == 1
    out, err = capsys.readouterr()
    assert [json.loads(line)["EventId"] for line in out.splitlines()] == ["ok1", "ok2"]
    assert "skipped event 'odd1': VW's JSON cannot hold namespace '_private'" in err
    assert "skipped event 'odd2': VW's JSON cannot hold namespace '_x'" in err
    assert "2 events of loop 'odd' written to standard output" in err and "2 events skipped" in err


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("1700000000", T0),
        ("1700000000.5", T0 + 0.5),
        ("2023-11-14T22:13:20Z", T0),
        ("2023-11-14T22:13:20", T0),
        ("2023-11-14T23:13:20+01:00", T0),
        ("2023-11-14", T0 - 80000),
    ],
)
def test_times_are_iso_8601_utc_by_default_or_epoch_seconds(text, seconds):
    assert moment(text) == seconds


@pytest.mark.parametrize("text", ["yesterday", "2023-13-01", ""])
def test_other_times_are_refused(text):
    with pytest.raises(argparse.ArgumentTypeError, match="expected ISO 8601 or epoch seconds"):
        moment(text)


REPLAY_SPEC = "vw:--cb_explore_adf --softmax --lambda 5 -q ::"  # a pmf that moves with every weight
# Feature shapes Rank accepts, each in the context and in an action; VW's text keeps every feature of each.
SHAPES = {
    "numeric and categorical": {"visits": 3, "segment": "student", "score": 0.125},
    "repeated tokens": {"tokens": ["music", "music", "news", "music"]},
    "a token named as a numeric feature": {"x": 2.5, "tokens": ["x", "x"]},
    "a token named as a categorical feature": {"color": "red", "tokens": ["color=red"]},
    "names equal once sanitized": {"first visit": "y", "first_visit": "y", "tokens": ["a b", "a_b", "a|b", "a:b"]},
    "a numeric 1 and a token of its name": {"x": 1.0, "tokens": ["x"]},
    "names starting with _": {"_segment": "a", "n": 2, "tokens": ["_promo", "_promo", "promo", " lead", "|x"]},
    "unicode": {"größe": 1.5, "farbe": "grün", "tokens": ["😀", "😀", "naïve café"]},
    "empty": {},
    "a zero": {"z": 0.0, "tokens": ["t"]},
}


def shaped_events(shape, n=60, seed=3):
    """`n` logged events whose context and first action have the feature shape, with varied choices and rewards."""
    rng = np.random.default_rng(seed)
    events = []
    for i in range(n):
        varied = shape if i % 2 else {"tokens": ["a_b", "x"]}  # repeats count only when they vary
        context = namespaces({"user ü": varied, "time": {"hour": i % 5, "tokens": [f"d{i % 3}"]}})
        candidates = [
            action("offer a", "_web", {"offer": shape}),
            action("offer b", "push", {"offer": {"tokens": ["b"]}}),
            action("call", "", {"empty": {}}),
        ]
        example = policies.Example(context, candidates)
        pmf = (1 / 3, 1 / 3, 1 / 3)
        events.append(LoggedEvent(f"e{i}", example, int(rng.integers(3)), 1 / 3, float(rng.integers(2)), pmf))
    return events


def assert_the_export_learns_as_the_text(spec, events, directory):
    learned = policies.create(spec)  # as the learner learns: the featurizer's VW text
    for e in events:
        learned.learn([policies.LearnEvent(e.example, e.chosen_index, e.probability, e.reward)])
    lines = [to_dsjson(e) for e in events]
    probes = [e.example for e in events[:12]]
    assert max_pmf_gap(learned, vw_replay(lines, spec, directory), probes) <= 1e-4
    reread = policies.create(spec)  # `nextbest evaluate` reads the export back and replays it so
    for e in read(lines):
        reread.learn([policies.LearnEvent(e.example, e.chosen_index, e.probability, e.reward)])
    assert max_pmf_gap(learned, reread, probes) <= 1e-4


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_vw_learning_the_export_is_the_model_learning_the_featurizers_text(shape, tmp_path):
    assert_the_export_learns_as_the_text(REPLAY_SPEC, shaped_events(shape), tmp_path)


FULL_NAMES = "--experimental_full_name_interactions"


@pytest.mark.parametrize("shape", ["numeric and categorical", "unicode"])
def test_full_name_interactions_learn_the_same_from_the_export(shape, tmp_path):
    """VW's JSON parser tells namespaces apart by their full names as its text parser does."""
    spec = f"vw:--cb_explore_adf --softmax --lambda 5 {FULL_NAMES} action|: {FULL_NAMES} offer|time"
    assert_the_export_learns_as_the_text(spec, shaped_events(SHAPES[shape]), tmp_path)


REFUSED = [  # (context, actions' features, the field and reason the error names)
    ({"_n": {"x": 1}}, {}, "context['_n'] (namespace name): starts with '_'"),
    ({" x": {"x": 1}}, {}, "context[' x'] (namespace name): starts with '_' once white space"),
    ({"|x": {"x": 1}}, {}, "context['|x'] (namespace name): starts with '_'"),
    ({":x": {"x": 1}}, {}, "context[':x'] (namespace name): starts with '_'"),
    ({"über": {"x": 1}}, {}, "context['über'] (namespace name): starts with a non-ASCII character"),
    ({"a b": {"x": 1}, "a_b": {"y": 1}}, {}, "context['a_b'] (namespace name): the same namespace as 'a b'"),
    ({"u": {"_n": 2.0}}, {}, "context['u'].numeric['_n']: starts with '_'"),
    ({"u": {"first visit": 1.0, "first_visit": 2.0}}, {}, "numeric['first_visit']: the same feature as 'first visit'"),
    ({}, {"action": {"x": 2.0}}, "actions[0].features['action'] (namespace name): 'action' is reserved"),
    ({}, {"channel": {"tokens": ["web"]}}, "actions[0].features['channel'] (namespace name): 'channel' is reserved"),
    ({}, {"_o": {"tokens": ["web"]}}, "actions[0].features['_o'] (namespace name): starts with '_'"),
]


def test_rank_refuses_names_the_export_could_not_write_as_the_model_sees_them(served):
    _, client = served
    for context, features, message in REFUSED:
        with pytest.raises(grpc.RpcError) as err:
            client.rank([action("a", "email", features), action("b")], context)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, message
        assert message in err.value.details()
    client.rank([action("a", "email", {"offer": SHAPES["names starting with _"]})], {"u": SHAPES["unicode"]})
