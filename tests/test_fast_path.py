"""The serving fast path: cached action lines and validations, plain contexts, the record built from the
request's bytes. Each shortcut must give exactly what the slow path gives."""

import random

import pytest

from nextbest import policies
from nextbest.policies import featurize
from nextbest.policies.cache import BoundedCache
from nextbest.policies.featurize import action_line, plain
from nextbest.server import validation
from nextbest.server.bench.load import rank_request
from nextbest.server.config import Limits
from nextbest.server.decision_service import record_data
from nextbest.server.errors import InvalidArgument
from nextbest.v1 import decision_pb2, records_pb2, types_pb2


def request(seed: int = 0, **fields) -> decision_pb2.RankRequest:
    r = rank_request(random.Random(seed), "bench")
    for name, value in fields.items():
        if name == "excluded_action_ids":
            r.excluded_action_ids.extend(value)
        else:
            setattr(r, name, value)
    return r


class Plain:
    """An action that is no protobuf message: its line is never cached."""

    def __init__(self, action: types_pb2.Action) -> None:
        self.id, self.channel, self.features = action.id, action.channel, action.features


def test_cached_action_lines_are_the_computed_ones():
    r = request()
    for action in r.actions:
        assert action_line(action) == action_line(Plain(action))  # computed, then from the cache
        assert action_line(action) == action_line(Plain(action))


def test_an_action_new_in_one_namespace_reuses_the_texts_of_the_others_and_gets_the_computed_line():
    original = request(7).actions[0]
    action_line(original)
    for shown in (1.0, 2.0):  # as Rank adds history features: a new line, the `offer` namespace seen before
        featured = types_pb2.Action()
        featured.CopyFrom(original)
        featured.features["history"].numeric["shown"] = shown
        assert action_line(featured) == action_line(Plain(featured))
    text = featurize._action_namespace_texts.get(("offer", original.features["offer"].SerializeToString()))
    assert text is not None and text.startswith("|offer ") and action_line(original).endswith(f" {text}")


def test_a_plain_context_gives_the_same_example_as_the_protobuf_one():
    r = request()
    served = policies.Example(plain(r.context), list(r.actions))
    proto = policies.Example(r.context, [Plain(a) for a in r.actions])
    assert served.vw_lines() == proto.vw_lines()
    assert served.vw_labeled_lines(3, -1.0, 0.25) == proto.vw_labeled_lines(3, -1.0, 0.25)
    assert (served.hashed(64) == proto.hashed(64)).all()


def decision(loop: str = "bench", event_id: str = "e-1") -> records_pb2.DecisionRecord:
    return records_pb2.DecisionRecord(loop=loop, event_id=event_id, pmf=[0.1] * 10, chosen_index=4, model_version="3")


def copied(
    r: decision_pb2.RankRequest, candidates, record: records_pb2.DecisionRecord, context=None
) -> records_pb2.DecisionRecord:
    out = records_pb2.DecisionRecord()
    out.CopyFrom(record)
    for name, features in (r.context if context is None else context).items():
        out.context[name].CopyFrom(features)
    out.actions.extend(candidates)
    return out


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"loop": "", "event_id": ""},
        {"deferred": True},
        {"excluded_action_ids": ["push-tip", "sms-coupon"]},
        {"subject_id": "ann"},
        {"subject_id": "ann", "excluded_action_ids": ["push-tip"]},
    ],
    ids=["plain", "defaults", "deferred", "excluded", "subject", "subject-excluded"],
)
def test_the_record_is_the_one_built_by_copying(fields):
    r = request(**{"event_id": "client-id", **fields})
    candidates = validation.rank_request(r, Limits()).candidates
    record = decision(loop="default" if fields.get("loop") == "" else "bench")
    record.deferred = r.deferred
    record.subject_id = r.subject_id
    record.excluded_action_ids.extend(r.excluded_action_ids)
    expected = copied(r, candidates, record)
    assert records_pb2.DecisionRecord.FromString(record_data(r, candidates, record)) == expected


@pytest.mark.parametrize(
    "fields",
    [{}, {"deferred": True}, {"excluded_action_ids": ["push-tip"]}],
    ids=["from-bytes", "deferred", "excluded"],
)
def test_a_record_with_history_features_or_suppressed_actions_is_the_one_built_by_copying(fields):
    """The features Rank adds and the candidates a contact rule removed are not in the request's bytes: the record
    has the added namespaces and the candidates instead of the request's actions, and the request is left as it
    was."""
    r = request(event_id="client-id", subject_id="ann", **fields)
    candidates = validation.rank_request(r, Limits()).candidates
    featured = []
    for a in candidates[1:]:  # the first one suppressed
        featured.append(types_pb2.Action())
        featured[-1].CopyFrom(a)
        featured[-1].features["nb_history"].numeric["shown_7d"] = 2.0
    featured[0].features["long"].tokens.extend(f"t{i}" for i in range(3000))  # a length of three varint bytes
    added = {"nb_subject": types_pb2.Features(numeric={"contacts_7d": 3.0})}
    context = {**r.context, **added}

    def record() -> records_pb2.DecisionRecord:
        out = decision()
        out.subject_id, out.deferred = "ann", r.deferred
        out.excluded_action_ids.extend(r.excluded_action_ids)
        return out

    expected = copied(r, featured, record(), context)
    data = [a.SerializeToString() for a in featured]
    before = r.SerializeToString()
    for given in (None, data):  # the candidates' bytes given, or made from the messages
        logged = records_pb2.DecisionRecord.FromString(record_data(r, featured, record(), added, given))
        assert logged == expected
    expected = copied(r, candidates[1:], record())  # suppressed, no history features (the loop turned them off)
    assert records_pb2.DecisionRecord.FromString(record_data(r, candidates[1:], record())) == expected
    assert r.SerializeToString() == before


def test_the_request_fields_that_reach_the_record_are_the_known_ones():
    """record_data relies on RankRequest's field numbers: a new request field must be checked against the record's
    field of the same number before this test is updated."""
    request_fields = {f.number: f.name for f in decision_pb2.RankRequest.DESCRIPTOR.fields}
    record_fields = {f.number: f.name for f in records_pb2.DecisionRecord.DESCRIPTOR.fields}
    assert request_fields == {
        1: "loop",
        2: "event_id",
        3: "context",
        4: "actions",
        5: "excluded_action_ids",
        6: "deferred",
        14: "subject_id",
    }
    assert [record_fields[n] for n in (1, 2, 3, 4, 14)] == ["loop", "event_id", "context", "actions", "subject_id"]


def test_unknown_request_fields_never_reach_the_record():
    config = types_pb2.LoopConfig(name="forged", policy="forged").SerializeToString()
    forged = b"\x4a" + bytes([len(config)]) + config  # field 9: a record's config
    r = decision_pb2.RankRequest.FromString(request().SerializeToString() + forged)
    record = decision()
    logged = records_pb2.DecisionRecord.FromString(record_data(r, list(r.actions), record))
    assert not logged.HasField("config") and logged.loop == "bench" and len(logged.actions) == 10


def test_an_action_valid_under_loose_limits_is_checked_again_under_strict_ones():
    r = request()
    r.ClearField("context")
    validation.rank_request(r, Limits())
    with pytest.raises(InvalidArgument, match=r"actions\[0\]\.features\['offer'\]: 5 features, more than 4"):
        validation.rank_request(r, Limits(max_features_per_namespace=4))


@pytest.mark.parametrize(
    "features,match",
    [
        (types_pb2.Features(numeric={"x": float("-inf")}), r"numeric\['x'\]: must be a finite 32-bit float"),
        (types_pb2.Features(numeric={"x": -1e39}), r"numeric\['x'\]: must be a finite 32-bit float"),
        (types_pb2.Features(categorical={"k": ""}), r"categorical\['k'\]: must not be empty"),
        (types_pb2.Features(categorical={"k": "a\x00"}), r"categorical\['k'\]: contains a NUL"),
        (types_pb2.Features(categorical={"k" * 300: "v"}), r"categorical \(feature name\): longer than 256"),
        (types_pb2.Features(tokens=["ok", "t" * 257]), r"tokens\[1\]: longer than 256"),
    ],
)
def test_the_fast_context_check_falls_back_to_the_message_naming_the_field(features, match):
    r = request()
    r.context["user"].CopyFrom(features)
    with pytest.raises(InvalidArgument, match=r"context\[.user.\]\." + match):
        validation.rank_request(r, Limits())


def test_bounded_cache_forgets_the_oldest_entries():
    cache: BoundedCache[int, str] = BoundedCache(3)
    for i in range(5):
        cache.put(i, str(i))
    assert len(cache) == 3 and cache.get(0) is None and cache.get(1) is None and cache.get(4) == "4"


def test_bounded_cache_makes_a_missing_value_once_and_keeps_it_only_when_asked():
    cache: BoundedCache[int, str] = BoundedCache(3)
    made: list[int] = []

    def make(i: int) -> str:
        made.append(i)
        return str(i)

    assert [cache.get_or_make(1, lambda: make(1)) for _ in range(2)] == ["1", "1"] and made == [1]
    assert [cache.get_or_make(2, lambda: make(2), keep=False) for _ in range(2)] == ["2", "2"] and made == [1, 2, 2]
    assert cache.get(2) is None and len(cache) == 1
