"""DSJSON in: `policies.ope.dsjson.read` against VW's own JSON parser and VW's DSJSON tests.

The VW files and reference outputs under data/vw come from Vowpal Wabbit's test suite.
"""

import json
import re
import shlex
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import vowpalwabbit

from nextbest.policies.featurize import ACTION_NAMESPACE, Example, sanitize
from nextbest.policies.ope.dsjson import DEFAULT_NAMESPACE, Action, Features, read, to_dsjson
from nextbest.policies.ope.logged import LoggedEvent

VW_DATA = Path(__file__).parent / "data" / "vw"
VW_TESTS = json.loads((VW_DATA / "selected_core_vwtests.json").read_text())
VW_FILES = sorted(p.name for p in (VW_DATA / "train-sets").iterdir() if p.suffix in (".json", ".dsjson"))
MASK = (1 << 18) - 1
CONSTANT_NAMESPACE = 128


def line(c, **fields):
    """A labeled DSJSON line (first action chosen, probability 0.5) with context `c`."""
    return json.dumps({"_label_cost": -1.0, "_label_probability": 0.5, "_labelIndex": 0, "a": [1, 2], **fields, "c": c})


def event(c, **fields):
    (e,) = read([line(c, **fields)])
    return e


def raw_features(features):
    """(name, value) pairs of one namespace as read, names unsanitized (as VW hashes them)."""
    return [*features.numeric.items(), *((t, 1.0) for t in features.tokens)]


def hashed(ws, namespaces):
    """The multiset of (hash, value) VW makes of `namespaces` (name -> Features); it drops zero values."""
    out = []
    for ns, features in namespaces.items():
        ns_hash = ws.hash_space(ns)
        out += [
            (ws.hash_feature(name, ns_hash) & MASK, float(np.float32(v))) for name, v in raw_features(features) if v
        ]
    return sorted(out)


def vw_parsed(ws, text):
    """Per example (shared first), the multiset of (hash, value) VW's JSON parser gives, without the constant."""
    examples = ws.parse(text)
    try:
        return [
            sorted(
                (ex.feature(ns, i) & MASK, ex.feature_weight(ns, i))
                for ns in (ex.get_ns(k) for k in range(ex.num_namespaces()))
                if ns.ord_ns != CONSTANT_NAMESPACE
                for i in range(ex.num_features_in(ns))
            )
            for ex in examples
        ]
    finally:
        ws.finish_example(examples)


@pytest.fixture(scope="module")
def vw_json():
    ws = vowpalwabbit.Workspace("--cb_explore_adf --dsjson --quiet")
    yield ws
    ws.finish()


def assert_same_features_as_vw(ws, text):
    (e,) = read([text])
    if e.skip_learn:  # VW drops the line: one empty example
        assert vw_parsed(ws, text) == [[]]
        return
    shared, *actions = vw_parsed(ws, text)
    assert shared == hashed(ws, e.example.context)
    assert actions == [hashed(ws, a.features) for a in e.example.actions]


# ---- VW's semantics, checked against VW's own parser on hand-made lines


SEMANTICS = {
    "numbers": {"u": {"n": 2.5, "i": 3, "neg": -1, "zero": 0}, "_multi": [{"a": {"x": 1}}, {}]},
    "strings: key + value, separators made _": {"u": {"type": "hot", "s": "a b|c:d\te"}, "_multi": [{}, {}]},
    "booleans": {"u": {"yes": True, "no": False, "nothing": None}, "_multi": [{"f": {"b": True}}, {}]},
    "arrays: numbers by position, objects into the namespace": {
        "v": [0.5, None, 2, {"k": "w", "m": 1.5}],
        "_multi": [{"j": [{"type": "cold"}, {"origin": "kenya", "n": {"deep": 4}}]}, {}],
    },
    "_text: words": {"t": {"_text": "red  green\tblue a:b c\nd"}, "_multi": [{"_text": "x y"}, {}]},
    "ignored _keys": {"u": {"_age": 3, "_title": "t", "ok": 1}, "_synthetic": False, "_multi": [{"_x": {"y": 1}}, {}]},
    "default namespace": {"top": "x", "n": 2, "_multi": [{"id": "a", "price": 3.5}, {"id": "b"}]},
    "names with spaces are hashed raw": {"Tags": {"Hip hop music": 0.9, "Twitter Inc.": 1}, "_multi": [{}, {}]},
}


@pytest.mark.parametrize("c", SEMANTICS.values(), ids=SEMANTICS.keys())
def test_read_extracts_the_features_vws_json_parser_does(vw_json, c):
    assert_same_features_as_vw(vw_json, line(c))


@pytest.mark.parametrize("name", VW_FILES)
def test_every_line_of_vws_dsjson_files_has_vws_features(vw_json, name):
    path = VW_DATA / "train-sets" / name
    texts = [t for t in path.read_text().splitlines() if t.strip()]
    assert len(list(read(path))) == len(texts)
    for text in texts:
        assert_same_features_as_vw(vw_json, text)


def test_what_read_makes_of_the_features():
    e = event(
        {
            "top": "x y",
            "u": {"n": 2, "ok": True, "no": False, "_age": 3},
            "v": [1.5, None, 2],
            "_multi": [{"_text": "red a:b", "o": {"kind": "hot"}}, {"j": [{"n": 1.5}, {"n": 2}]}],
        }
    )
    ctx = e.example.context
    assert ctx[DEFAULT_NAMESPACE].tokens == ("topx_y",)
    assert dict(ctx["u"].numeric) == {"n": 2.0} and ctx["u"].tokens == ("ok",)
    assert dict(ctx["v"].numeric) == {"0": 1.5, "1": 2.0}
    first, second = e.example.actions
    assert first.features[DEFAULT_NAMESPACE].tokens == ("red", "a_b") and first.features["o"].tokens == ("kindhot",)
    assert dict(second.features["j"].numeric) == {"n": 3.5}  # repeated: summed (VW keeps both)
    assert e.example.vw_lines()[0] == "shared |_ topx_y |u n:2 ok |v 0:1.5 1:2"


# ---- labels, ids, pmf, pdrop, skipping


def test_actions_without_tag_are_numbered_from_1_and_the_label_is_read():
    e = event({"_multi": [{"_tag": "x"}, {}, {}]}, a=[3, 1, 2], p=[0.5, 0.2, 0.3], _labelIndex=2, _label_cost=-0.25)
    assert e.action_ids == ["x", "2", "3"]
    assert (e.chosen_index, e.probability, e.reward) == (2, 0.5, 0.25)
    assert e.pmf == (0.2, 0.3, 0.5)
    assert (e.event_id, e.timestamp, e.skip_learn) == ("", 0.0, False)


def test_label_action_stands_in_for_a_missing_label_index():
    text = json.dumps(
        {"_label_cost": 0, "_label_probability": 1, "_label_Action": 2, "a": [2], "c": {"_multi": [{}, {}]}}
    )
    (e,) = read([text])
    assert e.chosen_index == 1 and e.pmf is None  # `a` does not name every action


def test_label_keys_are_read_whatever_their_case_as_vw_does():
    text = json.dumps(
        {"_Label_Cost": 2, "_label_PROBABILITY": 0.5, "_LabelIndex": 1, "a": [2], "c": {"_multi": [{}, {}]}}
    )
    (e,) = read([text])
    assert (e.reward, e.probability, e.chosen_index) == (-2.0, 0.5, 1)


def test_event_id_and_timestamp():
    e = event({"_multi": [{}, {}]}, EventId="ev-1", Timestamp="2021-02-04T16:31:29.2460000Z")
    assert e.event_id == "ev-1" and e.timestamp == pytest.approx(1612456289.246)


def test_pdrop_scales_the_probability_and_pdrop_1_is_not_learned():
    assert event({"_multi": [{}, {}]}, pdrop=0.9).probability == pytest.approx(0.05)
    dropped = event({"_multi": [{}, {}]}, pdrop=1)
    assert dropped.skip_learn and dropped.probability == 0.5


@pytest.mark.parametrize("fields", [{"_skipLearn": True}, {"a": []}], ids=["_skipLearn", "no a"])
def test_events_vw_does_not_learn_from_are_marked_skip_learn(fields):
    assert event({"_multi": [{}, {}]}, **fields).skip_learn


def test_the_featurizers_own_namespaces_become_the_action_id_and_channel():
    c = {"_multi": [{"_tag": "a b", "action": {"id=a_b": 1}, "channel": {"email": 1}, "o": {"k=v": 1}}, {"_tag": "z"}]}
    first, second = event(c).example.actions
    assert (first.id, first.channel, list(first.features)) == ("a b", "email", ["o"])
    assert (second.id, second.channel, second.features) == ("z", "", {})


def test_read_takes_a_path_or_lines_and_skips_blank_lines(tmp_path):
    texts = [line({"_multi": [{}, {}]}, EventId=f"e{i}") for i in range(3)]
    path = tmp_path / "log.json"
    path.write_text("\n".join(texts[:2]) + "\n\n" + texts[2] + "\n")
    assert [e.event_id for e in read(path)] == [e.event_id for e in read(str(path))] == ["e0", "e1", "e2"]


BAD = [
    ("not json", "not JSON"),
    ("[1, 2]", "not a JSON object"),
    (json.dumps({"_label_cost": 0}), "no actions"),
    (line({"_multi": []}), "no actions"),
    (line({"_multi": [1]}), r"_multi\[0\]: an action must be an object"),
    (line({"_multi": [{"_tag": 3}]}), "_tag must be a string"),
    (line({"_multi": [{}]}, _label_cost="x"), "_label_cost must be a number"),
    (line({"_multi": [{}]}, _label_probability=0), r"_label_probability must be in \(0, 1\]"),
    (line({"_multi": [{}]}, _label_probability=1.5), r"_label_probability must be in \(0, 1\]"),
    (line({"_multi": [{}]}, _labelIndex=1), "is not one of the 1 actions"),
    (json.dumps({"_label_cost": 0, "_label_probability": 1, "c": {"_multi": [{}]}}), "_labelIndex .* is missing"),
    (line({"_multi": [{}, {}]}, p=["x", 0.5]), "p must be a list of numbers"),
    (line({"_multi": [{}]}, pdrop=1.5), r"pdrop must be in \[0, 1\]"),
    (line({"_multi": [{}]}, _skipLearn="yes"), "_skipLearn must be true or false"),
    (line({"_multi": [{}]}, Timestamp="yesterday"), "Timestamp must be an ISO 8601 time"),
    (line({"_multi": [{}]}, EventId=7), "EventId must be a string"),
    (line({"u": {"_text": 3}, "_multi": [{}]}), "_text must be a string"),
    (line({"v": ["a"], "_multi": [{}]}), "array 'v': only numbers, objects and nulls"),
    (line({"v": [[1]], "_multi": [{}]}), "array 'v': only numbers, objects and nulls"),
    (line({"u": {"x": float("nan")}, "_multi": [{}]}), "NaN is not a number JSON allows"),
    (line({"_slots": [{}], "_multi": [{}]}), "_slots: a multi-slot \\(CCB\\) event"),
]


@pytest.mark.parametrize("text, message", BAD, ids=[m for _, m in BAD])
def test_a_bad_line_raises_naming_its_line_number(text, message):
    with pytest.raises(ValueError, match=message) as caught:
        list(read([line({"_multi": [{}]}), text]))
    assert str(caught.value).startswith("line 2: ")


def test_a_bad_line_of_a_file_names_the_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{}\n")
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}, line 1: no actions"):
        list(read(path))


# ---- DSJSON out and back


def test_to_dsjson_writes_what_read_reads_back():
    e = event(
        {"u": {"segment=student": 1, "visits": 3}, "_multi": [{"_tag": "a", "action": {"id=a": 1}}, {"_tag": "b"}]},
        EventId="x",
        Timestamp="2024-05-01T12:00:00.5Z",
        a=[1, 2],
        p=[0.75, 0.25],
    )
    text = to_dsjson(e, {"o": [{"v": 1.0}]})
    assert json.loads(text)["o"] == [{"v": 1.0}]
    (back,) = read([text])
    assert back.example.vw_lines() == e.example.vw_lines()
    assert (back.event_id, back.timestamp, back.pmf, back.probability) == ("x", e.timestamp, (0.75, 0.25), 0.5)


def test_to_dsjson_puts_names_starting_with_underscore_in_text_or_refuses_them():
    def logged(context):
        return LoggedEvent("e", Example(context, [Action("a", "_web")]), 0, 1.0, 0.0)

    c = json.loads(to_dsjson(logged({"u": Features({"_one": 1.0, "n": 2.0}, {"_k": "v"}, ("_t",))})))["c"]
    assert c["u"] == {"n": 2.0, "_text": "_k=v _one _t"}
    assert c["_multi"][0]["channel"] == {"_text": "_web"}
    with pytest.raises(ValueError, match="VW's JSON cannot hold namespace '_u'"):
        to_dsjson(logged({"_u": Features({"x": 2.0})}))
    with pytest.raises(ValueError, match="VW's JSON cannot hold feature '_n' = 2.0 of namespace 'u'"):
        to_dsjson(logged({"u": Features({"_n": 2.0})}))


# ---- VW's DSJSON tests replayed through read


def vw_arguments(command):
    """A VW test's arguments without its files (-d, -p, --extra_metrics), --dsjson and --audit (which only prints)."""
    out, args = [], iter(shlex.split(command))
    for arg in args:
        if arg in ("-d", "-p", "--extra_metrics"):
            next(args)
        elif arg not in ("--dsjson", "--audit"):
            out.append(arg)
    return out


def vw_view(e):
    """The featurizer's VW text of a foreign event without the `action` namespace it adds (VW's JSON has none)."""
    lines = e.example.vw_labeled_lines(e.chosen_index, -e.reward, e.probability)
    shared = len(lines) - len(e.example)
    for i, action in enumerate(e.example.actions):
        assert not action.channel
        lines[shared + i] = lines[shared + i].replace(f"|{ACTION_NAMESPACE} id={sanitize(action.id)}", "|", 1)
    return lines


@pytest.mark.parametrize("vw_test", VW_TESTS, ids=[f"{t['id']}-{t['input_files'][0]}" for t in VW_TESTS])
def test_replaying_vws_dsjson_tests_through_read_and_the_featurizer_gives_vws_average_loss(vw_test):
    """VW learns from our reading of each file, as the featurizer writes it, what it learns from the file itself.

    The featurizer's names differ from VW's JSON names where they have spaces (`Hip hop music` is
    `Hip_hop_music`) and for the default namespace (`|_`): a consistent renaming, which learns
    the same. VW weights a `pdrop` example by w = 1/(1 - pdrop); our probability p(1 - pdrop)
    makes the same update (mtr) and a loss w times larger, so VW's average, Σ w·loss / Σ w, is
    our sum of losses over Σ w.
    """
    path = VW_DATA / vw_test["input_files"][0]
    raw = [json.loads(t) for t in path.read_text().splitlines() if t.strip()]
    ws = vowpalwabbit.Workspace(arg_list=[*vw_arguments(vw_test["vw_command"]), "--quiet"])
    weight = 0.0
    for e, obj in zip(read(path), raw, strict=True):
        if not e.skip_learn:
            ws.learn(vw_view(e))
            weight += 1.0 / (1.0 - obj.get("pdrop", 0.0))
    learned, loss = ws.get_weighted_examples(), ws.get_sum_loss()
    ws.finish()
    reference = re.search(r"average loss = (\S+)", (VW_DATA / vw_test["diff_files"]["stderr"]).read_text())[1]
    assert learned == sum(1 for e in read(path) if not e.skip_learn)
    if reference == "n.a.":
        assert learned == 0
    else:
        decimals = len(reference.partition(".")[2])
        assert abs(loss / weight - float(reference)) <= 0.5 * 10**-decimals, (loss / weight, reference)


@pytest.mark.parametrize(
    "metrics, source", [("metrics.json", "decisionservice.json"), ("metrics_time.json", "dsjson_cb.json")]
)
def test_read_counts_what_vws_extra_metrics_count(metrics, source):
    expected = json.loads((VW_DATA / "test-sets" / "ref" / metrics).read_text())
    events = list(read(VW_DATA / "train-sets" / source))
    cbea = expected["cb_explore_adf_greedy"]
    assert (events[0].event_id, events[-1].event_id) == (expected["first_event_id"], expected["last_event_id"])
    for e, when in ((events[0], expected["first_event_time"]), (events[-1], expected["last_event_time"])):
        assert e.timestamp == (datetime.fromisoformat(when).timestamp() if when else 0.0)
    assert sum(e.skip_learn for e in events) == expected["number_skipped_events"]
    assert cbea["cbea_labeled_ex"] == len(events)
    assert cbea["cbea_label_first_action"] == sum(e.chosen_index == 0 for e in events)
    assert cbea["cbea_non_zero_cost"] == sum(e.reward != 0 for e in events)
    assert cbea["cbea_sum_cost"] == -sum(e.reward for e in events)
    assert cbea["cbea_sum_cost_baseline"] == -sum(e.reward for e in events if e.chosen_index == 0)
    assert (cbea["cbea_min_actions"], cbea["cbea_max_actions"]) == (
        min(len(e.example) for e in events),
        max(len(e.example) for e in events),
    )
