"""Subject histories and the contact policy through a real server on LMDB, driven by a fake clock: each rule
kind suppresses exactly when it should, suppressed actions are reported and never ranked, contacts count across
loops, history survives restarts and SIGKILL, and bad input is refused naming the field."""

import io
import json
import random
import signal

import grpc
import pytest
from test_crash import Server

from nextbest.client import Client, action
from nextbest.commands.admin import stats_lines
from nextbest.policies.featurize import Example, _sizes, action_line
from nextbest.server.auth import ApiKeys
from nextbest.server.export import export
from nextbest.server.store import Entry, Stream, open_store
from nextbest.server.subjects import features as features_module
from nextbest.server.subjects import history as history_module
from nextbest.server.subjects.contact import parse
from nextbest.server.subjects.features import featured
from nextbest.server.subjects.history import (
    Contact,
    Summary,
    by_channel,
    candidates_of,
    contacts,
    read,
    set_outcome,
    with_contact,
    with_outcome,
)
from nextbest.testing import FakeClock, nats_server_binary, running_nats, running_server, wait_for
from nextbest.v1 import admin_pb2, records_pb2, types_pb2

DAY = 86400.0
WAIT = 60.0  # the loops' reward window
SMS, EMAIL, PUSH = action("sms-a", "sms"), action("email-a", "email"), action("push-a", "push")
PROMO, UPGRADE, NOTHING = action("promo", "email"), action("upgrade-offer", "web"), action("nothing")


def policy(*rules) -> str:
    return json.dumps({"rules": list(rules)})


@pytest.fixture
def served(tmp_path, clock):
    with running_server(tmp_path / "store", clock=clock) as (server, client):
        client.update_loop("default", reward_wait_seconds=WAIT)
        yield server, client


def contact(client: Client, subject: str, chosen, loop: str = "", **kwargs) -> None:
    """A decision for `subject` whose only candidate is `chosen`: it is contacted on its channel."""
    response = client.rank([chosen], subject_id=subject, loop=loop, **kwargs)
    assert response.chosen_action_id == chosen.id and not response.suppressed


def suppressed(client: Client, subject: str, actions, loop: str = "", context=None) -> dict[str, str]:
    """The suppressed candidates (action -> rule) of a decision among `actions` plus the no-contact action; checks
    that none of them is ranked. The decision is deferred: it is no contact."""
    response = client.rank([*actions, NOTHING], context, subject_id=subject, loop=loop, deferred=True)
    removed = {s.action_id: s.rule for s in response.suppressed}
    ranked = {r.action_id for r in response.ranking if r.probability > 0}
    assert ranked.isdisjoint(removed) and response.chosen_action_id not in removed
    assert {r.action_id for r in response.ranking} | set(removed) == {a.id for a in [*actions, NOTHING]}
    assert sum(r.probability for r in response.ranking) == pytest.approx(1.0)
    return removed


def joined(server, subject: str, count: int) -> None:
    """Wait until `count` contacts of `subject` have their outcome."""
    wait_for(lambda: sum(c.joined for c in contacts(server.store.subjects.get(subject), 0.0)) >= count)


def test_a_channel_cap_suppresses_that_channel_for_its_window(served, clock):
    server, client = served
    client.set_contact_policy(policy({"name": "one-sms", "channels": ["sms"], "max": 1, "per_seconds": 7 * DAY}))
    assert suppressed(client, "ann", [SMS, EMAIL]) in ({}, {})
    contact(client, "ann", SMS)
    clock.advance(7 * DAY - 1)
    assert suppressed(client, "ann", [SMS, EMAIL]) == {"sms-a": "one-sms"}
    assert suppressed(client, "bob", [SMS, EMAIL]) == {}  # another subject
    clock.advance(1)
    assert suppressed(client, "ann", [SMS, EMAIL]) == {}


def test_an_action_cap_counts_that_action_only(served, clock):
    server, client = served
    client.set_contact_policy(policy({"name": "promo-twice", "actions": ["promo"], "max": 2, "per_seconds": DAY}))
    contact(client, "ann", PROMO)
    contact(client, "ann", EMAIL)  # the same channel, another action
    assert suppressed(client, "ann", [PROMO, EMAIL]) == {}
    contact(client, "ann", PROMO)
    assert suppressed(client, "ann", [PROMO, EMAIL]) == {"promo": "promo-twice"}
    clock.advance(DAY)
    assert suppressed(client, "ann", [PROMO, EMAIL]) == {}


def test_caps_count_contacts_of_every_loop(served, clock):
    server, client = served
    client.create_loop("other")
    client.set_contact_policy(policy({"name": "weekly", "max": 2, "per_seconds": 7 * DAY}))
    contact(client, "ann", SMS)
    contact(client, "ann", EMAIL, loop="other")
    assert suppressed(client, "ann", [SMS, EMAIL, PUSH], loop="other") == {
        "sms-a": "weekly",
        "email-a": "weekly",
        "push-a": "weekly",
    }
    assert suppressed(client, "ann", [PUSH]) == {"push-a": "weekly"}


def test_a_minimum_gap_holds_every_channel_after_a_contact(served, clock):
    server, client = served
    client.set_contact_policy(policy({"name": "gap", "min_gap_seconds": 4 * 3600}))
    contact(client, "ann", PUSH)
    clock.advance(4 * 3600 - 1)
    response = client.rank([SMS, EMAIL, NOTHING], subject_id="ann")
    assert response.chosen_action_id == "nothing" and [(r.action_id, r.probability) for r in response.ranking] == [
        ("nothing", 1.0)
    ]
    assert [(s.action_id, s.rule) for s in response.suppressed] == [("sms-a", "gap"), ("email-a", "gap")]
    clock.advance(1)
    assert suppressed(client, "ann", [SMS, EMAIL]) == {}


def test_quiet_hours_follow_the_subjects_utc_offset_and_are_skipped_without_it(served, clock):
    server, client = served
    night = {"name": "night", "channels": ["push", "sms"], "quiet_hours": [21, 8], "utc_offset_feature": "user.tz"}
    client.set_contact_policy(policy(night))
    hour = (clock() / 3600) % 24  # 22.2 UTC
    assert 21 < hour < 23
    assert suppressed(client, "ann", [PUSH, SMS, EMAIL], context={"user": {"tz": 0}}) == {
        "push-a": "night",
        "sms-a": "night",
    }
    assert suppressed(client, "ann", [PUSH, EMAIL], context={"user": {"tz": 12}}) == {}  # 10:13 there
    assert suppressed(client, "ann", [PUSH, EMAIL], context={"user": {"tz": -13.5}}) == {}  # 8:43 there
    assert suppressed(client, "ann", [PUSH, EMAIL], context={"user": {"tz": -15}}) == {"push-a": "night"}  # 7:13
    response = client.rank([PUSH], {"user": {"segment": "x"}}, subject_id="ann", event_id="no-offset")
    assert not response.suppressed
    record = records_pb2.DecisionRecord.FromString(server.store.log.get(Stream.DECISIONS, "default", "no-offset"))
    assert list(record.skipped_rules) == ["night"] and record.subject_id == "ann"
    clock.advance(WAIT + 5)
    stats = wait_for(lambda: (s := client.stats("default")).suppressed and s.suppressed[0].skipped and s)
    assert [(r.rule, r.suppressed, r.skipped) for r in stats.suppressed] == [("night", 3, 1)]
    assert stats_lines(stats)[-2:] == ["CONTACT RULE  SUPPRESSED  SKIPPED", "night         3           1"]


def test_fatigue_pauses_a_channel_after_ignored_contacts(served, clock):
    server, client = served
    rule = {"name": "fatigue", "channels": ["email"], "after_ignored": 2, "pause_seconds": 30 * DAY}
    client.set_contact_policy(policy(rule))
    for _ in range(2):
        contact(client, "ann", EMAIL)
        clock.advance(WAIT + 5)
        joined(server, "ann", 1)
    joined(server, "ann", 2)
    assert suppressed(client, "ann", [EMAIL, SMS]) == {"email-a": "fatigue"}
    clicked = client.rank([SMS], subject_id="bob")  # a click ends the run
    contact(client, "bob", EMAIL)
    clock.advance(WAIT + 5)
    contact(client, "bob", EMAIL)
    client.reward(client.rank([EMAIL], subject_id="bob").event_id, 1.0)
    clock.advance(WAIT + 5)
    joined(server, "bob", 4)
    assert clicked.chosen_action_id == "sms-a"
    assert suppressed(client, "bob", [EMAIL]) == {}
    clock.advance(30 * DAY)
    assert suppressed(client, "ann", [EMAIL, SMS]) == {}


def test_a_purchase_pauses_the_offer(served, clock):
    server, client = served
    rule = {"name": "bought", "actions": ["upgrade-offer"], "after_reward_at_least": 1.0, "pause_seconds": 90 * DAY}
    client.set_contact_policy(policy(rule))
    client.reward(client.rank([UPGRADE], subject_id="ann").event_id, 0.5)
    client.reward(client.rank([UPGRADE], subject_id="bob").event_id, 1.0)
    clock.advance(WAIT + 5)
    joined(server, "ann", 1)
    joined(server, "bob", 1)
    assert suppressed(client, "ann", [UPGRADE, EMAIL]) == {}
    assert suppressed(client, "bob", [UPGRADE, EMAIL]) == {"upgrade-offer": "bought"}
    clock.advance(90 * DAY - 10)
    assert suppressed(client, "bob", [UPGRADE]) == {"upgrade-offer": "bought"}
    clock.advance(10)
    assert suppressed(client, "bob", [UPGRADE]) == {}


def test_with_every_candidate_suppressed_rank_fails_naming_the_rules(served, clock):
    server, client = served
    client.set_contact_policy(policy({"name": "never", "max": 0, "per_seconds": DAY}))
    with pytest.raises(grpc.RpcError) as e:
        client.rank([SMS, EMAIL], subject_id="ann", event_id="e-1")
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "never" in e.value.details()
    assert server.store.log.get(Stream.DECISIONS, "default", "e-1") is None
    assert client.rank([SMS, EMAIL]).chosen_action_id  # without a subject no rule applies


def test_deferred_decisions_are_contacts_once_activated(served, clock):
    server, client = served
    client.set_contact_policy(policy({"name": "gap", "min_gap_seconds": 3600}))
    response = client.rank([SMS], subject_id="ann", deferred=True)
    assert suppressed(client, "ann", [EMAIL]) == {}
    client.activate(response.event_id)
    assert suppressed(client, "ann", [EMAIL]) == {"email-a": "gap"}


def test_a_retried_rank_counts_one_contact(served, clock):
    server, client = served
    client.set_contact_policy(policy({"name": "two", "max": 2, "per_seconds": DAY}))
    for _ in range(3):
        contact(client, "ann", SMS, event_id="same")
    assert len(contacts(server.store.subjects.get("ann"), clock())) == 1
    assert suppressed(client, "ann", [SMS]) == {}


def test_the_contact_policy_is_versioned_and_accepts_toml(served):
    server, client = served
    assert client.get_contact_policy() == admin_pb2.ContactPolicy()
    first = client.set_contact_policy(policy({"name": "gap", "min_gap_seconds": 60}))
    assert first.version == 1 and json.loads(first.spec) == {"rules": [{"name": "gap", "min_gap_seconds": 60}]}
    toml = '[[rules]]\nname = "weekly"\nmax = 3\nper_seconds = 604800\n'
    second = client.set_contact_policy(toml)
    assert second.version == 2 and json.loads(second.spec)["rules"][0]["name"] == "weekly"
    assert client.get_contact_policy() == second
    assert client.set_contact_policy("").version == 3 and client.get_contact_policy().spec == ""


BAD_SPECS = [
    ({"rules": [{"name": "a", "max": 1, "per_seconds": 1, "colour": "red"}]}, "rules[0] ('a').colour: unknown field"),
    ({"rules": [{"name": "a", "max": 1, "per_seconds": -5}]}, "rules[0] ('a').per_seconds: must be above 0"),
    ({"rules": [{"name": "a", "min_gap_seconds": -1}]}, "rules[0] ('a').min_gap_seconds"),
    ({"rules": [{"name": "a", "max": -1, "per_seconds": 5}]}, "rules[0] ('a').max"),
    ({"rules": [{"name": "a", "after_ignored": 2, "pause_seconds": -1}]}, "rules[0] ('a').pause_seconds"),
    (
        {"rules": [{"name": "n", "quiet_hours": [[21, 8], [7, 9]], "utc_offset_feature": "u.tz"}]},
        "rules[0] ('n').quiet_hours: [7, 9] overlaps [21, 8]",
    ),
    ({"rules": [{"name": "n", "quiet_hours": [8, 8], "utc_offset_feature": "u.tz"}]}, "rules[0] ('n').quiet_hours"),
    ({"rules": [{"name": "n", "quiet_hours": [21, 30], "utc_offset_feature": "u.tz"}]}, "rules[0] ('n').quiet_hours"),
    ({"rules": [{"name": "n", "quiet_hours": [21, 8], "utc_offset_feature": "tz"}]}, "('n').utc_offset_feature"),
    ({"rules": [{"name": "a", "per_seconds": 5}]}, "rules[0] ('a'): unknown rule kind"),
    ({"rules": [{"name": "a", "max": 1, "per_seconds": 5, "min_gap_seconds": 5}]}, "rules[0] ('a'): unknown rule kind"),
    (
        {"rules": [{"name": "a", "min_gap_seconds": 5}, {"name": "a", "min_gap_seconds": 9}]},
        "rules[1] ('a').name: duplicate rule name",
    ),
    ({"rules": [{"min_gap_seconds": 5}]}, "rules[0].name"),
    ({"rules": [{"name": "a", "channels": "sms", "min_gap_seconds": 5}]}, "rules[0] ('a').channels"),
    ({"rulez": []}, "spec: must be an object"),
    ({"rules": [{"name": "x" * 257, "min_gap_seconds": 5}]}, "rules[0] ('" + "x" * 257 + "').name: at most 256"),
]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        *((json.dumps(spec), message) for spec, message in BAD_SPECS),
        ("[" * 100_000, "spec: longer than 65536 characters"),
        ("[" * 5000 + "]" * 5000, "spec: neither JSON"),
        ("rules = 1", "spec.rules: must be a list"),
    ],
    ids=[m[:40] for _, m in BAD_SPECS] + ["long", "deep", "toml"],
)
def test_an_invalid_contact_policy_is_refused_naming_the_rule_and_field(served, spec, message):
    server, client = served
    kept = client.set_contact_policy(policy({"name": "gap", "min_gap_seconds": 60}))
    with pytest.raises(grpc.RpcError) as e:
        client.set_contact_policy(spec)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in e.value.details()
    assert client.get_contact_policy() == kept


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"subject_id": "x" * 257}, "subject_id: longer than 256"),
        ({"subject_id": "a\x00b"}, "subject_id: contains a NUL"),
        ({"context": {"nb_subject": {"n": 1}}}, "context['nb_subject'] (namespace name): reserved"),
        ({"actions": [action("a", "sms", {"nb_history": {"n": 1}})]}, "actions[0].features['nb_history']"),
    ],
    ids=["long", "nul", "context", "action"],
)
def test_bad_rank_input_is_refused_naming_the_field(served, kwargs, message):
    server, client = served
    request = {"actions": [SMS], "subject_id": "ann", **kwargs}
    with pytest.raises(grpc.RpcError) as e:
        client.rank(request.pop("actions"), request.pop("context", None), **request)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in e.value.details()


def test_history_features_are_logged_with_the_decision(served, clock):
    server, client = served
    contact(client, "ann", SMS)
    clock.advance(2 * DAY)
    client.rank([SMS, EMAIL], {"user": {"age": 30}}, subject_id="ann", event_id="e-2")
    record = records_pb2.DecisionRecord.FromString(server.store.log.get(Stream.DECISIONS, "default", "e-2"))
    assert dict(record.context["nb_subject"].numeric) == {"contacts_7d": 1.0, "days_since_contact": 2.0}
    assert dict(record.context["user"].numeric) == {"age": 30.0}
    sms, email = record.actions
    assert dict(sms.features["nb_history"].categorical) == {"channel_days_since": "1-3"}
    assert dict(sms.features["nb_history"].numeric) == {"shown_7d": 1.0, "channel_contacts_7d": 1.0}  # no 0 counts
    assert dict(email.features["nb_history"].categorical) == {"channel_days_since": "never"}
    assert not email.features["nb_history"].numeric
    client.update_loop("default", subject_features=2)  # OFF
    client.rank([SMS, EMAIL], subject_id="ann", event_id="e-3")
    record = records_pb2.DecisionRecord.FromString(server.store.log.get(Stream.DECISIONS, "default", "e-3"))
    assert "nb_subject" not in record.context and all("nb_history" not in a.features for a in record.actions)
    assert record.subject_id == "ann"


@pytest.mark.parametrize("policy", ["linucb:alpha=1 dim=64", "random"])
def test_a_policy_that_reads_action_features_decides_from_the_logged_history_features(served, clock, policy):
    """Rank hands the policy featured actions whose message is made only when read: a policy that reads features
    decides through a real server, and gives the logged probabilities from what is logged."""
    server, client = served
    client.create_loop("lin", policy=policy)
    contact(client, "ann", SMS)  # in another loop: "lin" learns nothing, so its model stays the one that decided
    clock.advance(DAY / 2)
    client.rank([SMS, EMAIL, PROMO], {"user": {"age": 30}}, subject_id="ann", loop="lin", event_id="e-2")
    record = records_pb2.DecisionRecord.FromString(server.store.log.get(Stream.DECISIONS, "lin", "e-2"))
    assert all("nb_history" in a.features for a in record.actions)
    example = Example(record.context, list(record.actions))
    assert server.catalog.get("lin").model.pmf(example, "e-2").tolist() == pytest.approx(list(record.pmf))


def test_history_survives_a_restart(tmp_path):
    clock = FakeClock()
    rules = policy({"name": "gap", "min_gap_seconds": DAY})
    with running_server(tmp_path / "store", clock=clock) as (_, client):
        client.set_contact_policy(rules)
        contact(client, "ann", SMS)
    clock.advance(3600)
    with running_server(tmp_path / "store", clock=clock) as (_, client):
        assert client.get_contact_policy().spec == json.loads(json.dumps(client.get_contact_policy().spec))
        assert suppressed(client, "ann", [EMAIL]) == {"email-a": "gap"}


@pytest.mark.slow
def test_history_survives_sigkill(tmp_path):
    with open(tmp_path / "log", "w") as log:
        server = Server(tmp_path / "store", log)
        with Client(server.address) as client:
            client.wait_ready()
            client.set_contact_policy(policy({"name": "gap", "min_gap_seconds": DAY}))
            contact(client, "ann", SMS)
        server.stop(signal.SIGKILL)
        server = Server(tmp_path / "store", log)
        try:
            with Client(server.address) as client:
                client.wait_ready()
                assert suppressed(client, "ann", [EMAIL, SMS]) == {"email-a": "gap", "sms-a": "gap"}
        finally:
            server.stop(signal.SIGTERM)
    with open_store(str(tmp_path / "store")) as store:
        assert [c.action_id for c in contacts(store.subjects.get("ann"), 0.0)] == ["sms-a"]


@pytest.mark.slow
@pytest.mark.skipif(nats_server_binary() is None, reason="no nats-server binary")
def test_replicas_on_nats_share_contacts_policy_and_outcomes(tmp_path):
    clock = FakeClock()
    with (
        running_nats(tmp_path / "nats") as url,
        running_server(url, clock=clock) as (trained, a),
        running_server(url, clock=clock, train=False) as (_, b),
    ):
        a.update_loop("default", reward_wait_seconds=WAIT)
        gap = {"name": "gap", "channels": ["sms"], "min_gap_seconds": 3600}
        fatigue = {"name": "fatigue", "channels": ["email"], "after_ignored": 1, "pause_seconds": 30 * DAY}
        a.set_contact_policy(policy(gap, fatigue))
        contact(a, "ann", SMS)
        wait_for(lambda: suppressed(b, "ann", [SMS, EMAIL]) == {"sms-a": "gap"})  # b reads the policy within 1 s
        contact(b, "bob", SMS)
        assert suppressed(a, "bob", [SMS]) == {"sms-a": "gap"}  # at once: the history is read from the leader
        contact(b, "bob", EMAIL)
        clock.advance(WAIT + 5)
        joined(trained, "bob", 2)
        assert suppressed(b, "bob", [EMAIL, SMS]) == {"email-a": "fatigue", "sms-a": "gap"}


def test_setting_the_contact_policy_needs_the_admin_scope(tmp_path):
    keys = ApiKeys.parse(json.dumps({"admin-key-0123456789": ["admin"], "decide-key-0123456789": ["decide"]}), "t")
    with running_server(tmp_path / "store", api_keys=keys, train=False) as (server, _):
        with Client(server.address, api_key="decide-key-0123456789") as decide, pytest.raises(grpc.RpcError) as e:
            decide.set_contact_policy(policy({"name": "gap", "min_gap_seconds": 60}))
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with Client(server.address, api_key="admin-key-0123456789") as admin:
            assert admin.set_contact_policy(policy({"name": "gap", "min_gap_seconds": 60})).version == 1


def test_the_export_holds_the_history_features_the_model_saw(served, clock):
    server, client = served
    contact(client, "ann", SMS, event_id="first")
    client.rank([SMS, EMAIL], subject_id="ann", event_id="second")
    clock.advance(WAIT + 5)
    wait_for(lambda: client.stats().joined >= 2)
    out = io.StringIO()
    export(server.store, "default", out)
    line = json.loads(next(t for t in out.getvalue().splitlines() if '"second"' in t))
    assert line["c"]["nb_subject"] == {"contacts_7d": 1.0, "days_since_contact": 0.0}
    sms = next(a for a in line["c"]["_multi"] if a["action"] == {"id=sms-a": 1})
    assert sms["nb_history"]["shown_7d"] == 1.0


def test_contacts_expire_after_the_horizon_or_the_loops_retention(tmp_path, clock):
    with running_server(tmp_path / "store", clock=clock, retention_interval_seconds=0.05) as (server, client):
        client.create_loop("brief", retention_days=1)
        client.set_contact_policy(policy({"name": "gap", "min_gap_seconds": 2 * DAY}))
        contact(client, "ann", SMS)
        contact(client, "bob", SMS, loop="brief")
        clock.advance(DAY)
        assert suppressed(client, "ann", [EMAIL]) == {"email-a": "gap"}
        assert suppressed(client, "bob", [EMAIL]) == {}  # its loop keeps nothing longer than a day
        clock.advance(90 * DAY)
        wait_for(lambda: server.store.subjects.get("ann") is None and server.store.subjects.get("bob") is None)


def test_a_contact_missing_from_the_history_is_recorded_when_its_decision_is_joined(served, clock):
    """As after a crash between logging a decision and recording its contact (possible on NATS)."""
    server, client = served
    config = client.get_loop("default")
    decision = records_pb2.DecisionRecord(
        loop="default", event_id="lost", actions=[SMS], pmf=[1.0], config=config, timestamp=clock(), subject_id="ann"
    )
    server.store.log.append(Stream.DECISIONS, "default", [Entry("lost", decision.SerializeToString())])
    client.reward("lost", 1.0)
    clock.advance(WAIT + 5)
    joined(server, "ann", 1)
    (recorded,) = contacts(server.store.subjects.get("ann"), clock())
    assert (recorded.event_id, recorded.action_id, recorded.channel, recorded.clicked) == ("lost", "sms-a", "sms", True)
    assert recorded.timestamp == decision.timestamp


def test_an_actions_history_features_follow_its_history_and_its_line_is_split_once():
    now = 100 * DAY
    sms = [
        Contact(loop="l", event_id="e1", action_id="sms-a", channel="sms", timestamp=now - DAY / 2, expires=now + DAY)
    ]
    parts = len(features_module._parts)
    once, again = (featured(Summary.of(by_channel(sms), now), candidates_of([SMS]))[0] for _ in range(2))
    assert (once.data, once.line, once.sizes) == (again.data, again.line, again.sizes)
    assert dict(once.action.features["nb_history"].numeric) == {"shown_7d": 1.0, "channel_contacts_7d": 1.0}
    (later,) = featured(Summary.of(by_channel(sms), now + DAY), candidates_of([SMS]))
    assert dict(later.action.features["nb_history"].categorical) == {"channel_days_since": "1-3"}
    assert dict(once.action.features["nb_history"].categorical) == {"channel_days_since": "0-1"}
    assert len(features_module._parts) <= parts + 1  # the action's line was split once (or before)
    assert not SMS.features  # the candidate itself is left as it was


def test_copies_made_together_are_those_made_one_by_one():
    """The copies of a decision's candidates share their channel's values, not the action's own."""
    now = 100 * DAY
    kept = [
        Contact(loop="l", event_id="e1", action_id="sms-a", channel="sms", timestamp=now - DAY, expires=now + DAY),
        Contact(loop="l", event_id="e2", action_id="promo", channel="email", timestamp=now - 2 * DAY,
                expires=now + DAY, joined=True, clicked=True, reward=1.0),
    ]  # fmt: skip
    summary = Summary.of(by_channel(kept), now)
    candidates = candidates_of([SMS, action("sms-b", "sms"), PROMO, EMAIL, NOTHING])
    together = featured(summary, candidates)
    alone = [featured(summary, [c])[0] for c in candidates]
    assert [(f.id, f.data, f.line, f.sizes) for f in together] == [(f.id, f.data, f.line, f.sizes) for f in alone]
    shown = [dict(f.action.features["nb_history"].numeric).get("shown_7d", 0) for f in together]
    assert shown == [1, 0, 1, 0, 0]


@pytest.mark.parametrize("names", [(), ("a",), ("zz",), ("a", "nb", "nb_historyx", "z"), ("Z", "_", "nb_histor")])
def test_a_featured_actions_bytes_and_line_are_those_of_its_message(names):
    """The copy is made from the action's bytes and line: they must be what protobuf and the featurizer make of the
    copy itself, wherever its history namespace falls among the action's own."""
    now = 100 * DAY
    action = types_pb2.Action(
        id="offer 1", channel="sms", features={n: types_pb2.Features(numeric={"x": 2.5}, tokens=["t"]) for n in names}
    )
    history = [
        Contact(
            loop="l",
            event_id=f"e{i}",
            action_id=action.id,
            channel="sms",
            timestamp=now - i * DAY,
            expires=now + DAY,
            joined=True,
            clicked=i == 2,
        )
        for i in range(1, 4)
    ]
    for kept in ([], history[:1], history):
        (out,) = featured(Summary.of(by_channel(kept), now), candidates_of([action]))
        assert types_pb2.Action.FromString(out.data) == out.action
        assert out.line == action_line(out.action)
        assert out.sizes == _sizes(out.line)  # summed from its parts: those parsed from it
        assert (out.id, out.channel, out.features) == (action.id, action.channel, out.action.features)
        # a policy that reads features (linucb, lints, python:) featurizes the copy as it does the message
        assert (Example({}, [out]).hashed(64) == Example({}, [out.action]).hashed(64)).all()
        assert not (Example({}, [out]).hashed(64) == Example({}, [action]).hashed(64)).all()
        assert set(out.action.features) == {*names, "nb_history"}


def test_the_contact_write_reuses_the_history_rank_read_only_while_it_is_unchanged():
    now = 100 * DAY
    first = Contact(loop="l", event_id="e1", action_id="sms-a", channel="sms", timestamp=now - DAY, expires=now + DAY)
    second = Contact(loop="l", event_id="e2", action_id="push-a", channel="push", timestamp=now, expires=now + DAY)
    stored = with_contact(None, first, now - DAY)
    seen = read(stored, now)
    assert with_contact(stored, second, now, seen) == with_contact(stored, second, now)
    assert [c.event_id for c in contacts(with_contact(stored, second, now, seen), now)] == ["e1", "e2"]
    assert seen.kept == [first]  # the read itself is left as it was
    # another write came between the read and this one: its contact is kept
    other = Contact(loop="m", event_id="e3", action_id="sms-a", channel="sms", timestamp=now, expires=now + DAY)
    changed = with_contact(stored, other, now)
    assert [c.event_id for c in contacts(with_contact(changed, second, now, seen), now)] == ["e1", "e3", "e2"]
    assert contacts(with_contact(stored, second, now + 2 * DAY, seen), now + 2 * DAY) == []  # expired by then


def _rebuilt(data: bytes | None, now: float, change) -> bytes | None:
    """A history change made the plain way: decode, keep the unexpired contacts, change, sort, keep the newest."""
    kept = [c for c in (records_pb2.SubjectHistory.FromString(data).contacts if data else []) if c.expires > now]
    kept = change(kept)
    kept = sorted(kept, key=lambda c: c.timestamp)[-history_module.MAX_CONTACTS :]
    return records_pb2.SubjectHistory(contacts=kept).SerializeToString() if kept else None


def _same_history(a: bytes | None, b: bytes | None) -> bool:
    parsed = [records_pb2.SubjectHistory.FromString(x) if x else None for x in (a, b)]
    return parsed[0] == parsed[1]


def test_contact_and_outcome_writes_equal_the_history_rebuilt_from_scratch(monkeypatch):
    """Writes append to the stored bytes or change the record in place when they can: each must be the history
    decoded, changed, sorted and bounded anew (seeded random contacts: repeats, outcomes, expiries, late ones)."""
    monkeypatch.setattr(history_module, "MAX_CONTACTS", 6)
    rng = random.Random(7)
    for _ in range(300):
        data, now = None, 100 * DAY
        for step in range(12):
            now += rng.choice([0.0, 60.0, DAY])
            c = Contact(
                loop=rng.choice(["l", "m"]),
                event_id=f"e{rng.randrange(8)}",
                action_id="sms-a",
                channel="sms",
                timestamp=now - rng.choice([0.0, 0.0, 3600.0, 2 * DAY]),
                expires=now + rng.choice([-1.0, DAY, 3 * DAY]),
                slot_id=rng.choice(["", "", "s1"]),
            )
            key = (c.loop, c.event_id, c.slot_id)

            def found(kept, key=key):
                return [k for k in kept if (k.loop, k.event_id, k.slot_id) == key]

            if rng.random() < 0.5:
                known = read(data, now) if rng.random() < 0.5 else None
                expected = _rebuilt(data, now, lambda kept, c=c: kept if found(kept) else [*kept, c])
                data_after = with_contact(data, c, now, known)
            else:
                reward = rng.choice([0.0, 1.0])

                def joined(contact, reward=reward, now=now):
                    contact.joined, contact.reward, contact.clicked, contact.joined_at = True, reward, reward > 0, now

                def added(kept, c=c, now=now):
                    if c.expires <= now:
                        return kept
                    joined(c)
                    return [*kept, c]

                stored = list(records_pb2.SubjectHistory.FromString(data).contacts) if data else []
                given = Contact()
                given.CopyFrom(c)  # a write may change the contact it is given
                data_after = with_outcome(data, set_outcome(given, records_pb2.JoinedEvent(reward=reward), now), now)
                if found(stored):  # changed where it is stored, the rest as it was
                    joined(found(stored)[-1])
                    expected = records_pb2.SubjectHistory(contacts=stored).SerializeToString()
                else:
                    expected = _rebuilt(data, now, added)
            assert _same_history(data_after, expected), (step, data_after, expected)
            data = data_after


def test_a_summary_is_what_its_definitions_say_of_every_contact():
    """Seeded histories over 120 days (clicks, ignored and unjoined contacts, several actions a channel): the
    summary, which walks each channel only as far as a feature needs, equals the features counted over every
    contact by their definitions."""
    rng = random.Random(7)
    for _ in range(200):
        now = 200 * DAY
        times = sorted(now - rng.uniform(0, 120) * DAY for _ in range(rng.randrange(1, 40)))
        kept = []
        for i, t in enumerate(times):
            joined = rng.random() < 0.8
            clicked = joined and rng.random() < 0.15
            kept.append(Contact(loop="l", event_id=f"e{i}", action_id=rng.choice("abcd"), channel=rng.choice("xyz"),
                                timestamp=t, expires=now + DAY, joined=joined, clicked=clicked))  # fmt: skip
        summary = Summary.of(by_channel(kept), now)
        week = [c for c in kept if now - c.timestamp < 7 * DAY]
        month_clicks = [c for c in kept if c.clicked and now - c.timestamp < 30 * DAY]
        channels = {}
        for name in {c.channel for c in kept}:
            run = 0
            for c in reversed([c for c in kept if c.channel == name and c.joined]):
                if c.clicked:
                    break
                run += 1
            on = [c for c in kept if c.channel == name]
            channels[name] = (max(c.timestamp for c in on), sum(c in week for c in on), run)
        assert summary.channels == channels
        assert summary.shown_7d == {a: n for a in "abcd" if (n := sum(c.action_id == a for c in week))}
        assert summary.clicked_30d == {a: n for a in "abcd" if (n := sum(c.action_id == a for c in month_clicks))}
        assert (summary.contacts_7d, summary.last) == (len(week), max(times))


def test_the_fatigue_rule_counts_the_ignored_run_as_the_history_feature_does():
    """Contacts of the same moment (the slots of one decision) count back in the history's order, for the rule as
    for the `channel_ignored_run` feature: here the newest one stored was clicked, so there is no ignored run."""
    now = 10 * DAY
    moment = dict(loop="l", channel="email", timestamp=now - DAY, expires=now + DAY, joined=True, joined_at=now - 1)
    history = [
        Contact(event_id="e", slot_id="s1", action_id="a", clicked=False, **moment),
        Contact(event_id="e", slot_id="s2", action_id="b", clicked=True, reward=1.0, **moment),
    ]
    (fatigue,) = parse(policy({"name": "f", "channels": ["email"], "after_ignored": 1, "pause_seconds": DAY}))[0].rules
    assert Summary.of(by_channel(history), now).channels["email"][2] == 0  # (last, contacts_7d, ignored_run)
    assert fatigue.forbids(history, by_channel(history), {}, now) is False
    stored_the_other_way = history[::-1]
    assert Summary.of(by_channel(stored_the_other_way), now).channels["email"][2] == 1
    assert fatigue.forbids(stored_the_other_way, by_channel(stored_the_other_way), {}, now) is True


@pytest.mark.parametrize(
    "scope, forbids",
    [
        ({"channels": ["email"]}, True),
        ({"channels": ["sms"]}, False),
        ({"actions": ["promo"]}, True),
        ({"actions": ["promo"], "channels": ["sms"]}, False),
        ({"actions": ["promo", "sms-a"], "channels": ["email", "sms"]}, True),
        ({}, True),
    ],
)
def test_a_bought_rule_counts_the_rewards_of_its_channels_and_actions(scope, forbids):
    now = 10 * DAY
    history = [
        Contact(loop="l", event_id="e1", action_id="promo", channel="email", timestamp=now - 2 * DAY,
                expires=now + DAY, joined=True, clicked=True, reward=2.0, joined_at=now - DAY),
        Contact(loop="l", event_id="e2", action_id="sms-a", channel="sms", timestamp=now - DAY, expires=now + DAY,
                joined=True, reward=0.5, joined_at=now - DAY / 2),
    ]  # fmt: skip
    spec = {"name": "b", **scope, "after_reward_at_least": 1.0, "pause_seconds": 3 * DAY}
    (bought,) = parse(policy(spec))[0].rules
    assert bought.forbids(history, by_channel(history), {}, now) is forbids
    assert bought.forbids(history, by_channel(history), {}, now + 3 * DAY) is False  # the pause is over


def test_the_rules_covering_a_candidate_are_found_once_per_channel_and_named_action():
    rules = policy(
        {"name": "sms", "channels": ["sms"], "max": 1, "per_seconds": DAY},
        {"name": "promo", "actions": ["promo"], "max": 1, "per_seconds": DAY},
        {"name": "both", "channels": ["email"], "actions": ["promo"], "min_gap_seconds": DAY},
    )
    screening, _ = parse(rules)
    now = 10 * DAY
    history = [
        Contact(loop="l", event_id="e1", action_id="promo", channel="email", timestamp=now - 1.0, expires=now + DAY)
    ]
    other_sms = action("sms-b", "sms")
    for _ in range(2):
        candidates = candidates_of([SMS, PROMO, UPGRADE, other_sms, NOTHING])
        allowed, removed, skipped = screening.screen(history, by_channel(history), candidates, {}, now)
        assert [action_id for _, action_id, _ in allowed] == ["sms-a", "upgrade-offer", "sms-b", "nothing"]
        assert not skipped
        assert [(s.action_id, s.rule) for s in removed] == [("promo", "promo")]
    # the no-contact action is never screened; the actions no rule names share their channel's rules
    assert len(screening._covering) == 3
    assert screening._covering.get(("promo", "email")) == screening.rules[1:]
    assert screening._covering.get(("", "sms")) == screening.rules[:1]
    assert screening._covering.get(("", "web")) == ()
