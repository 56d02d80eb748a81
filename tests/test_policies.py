"""Family-specific behaviour: invalid specs, rules semantics, fixed weights, the python allowlist, linear models."""

from __future__ import annotations

import io
import json
import shlex
import tempfile

import numpy as np
import pytest
import vowpalwabbit

from nextbest import policies
from nextbest.policies.base import Policy
from nextbest.policies.envelope import seal, unseal
from nextbest.policies.featurize import Slot
from nextbest.policies.vw import ccb_labeled_lines, learn_lines, predict_lines
from nextbest.server.config import DEFAULT_POLICY
from nextbest.v1 import decision_pb2, types_pb2

Features = types_pb2.Features
Action = types_pb2.Action

ACTIONS = [
    Action(id="email-offer", channel="email"),
    Action(id="push-tip", channel="push"),
    Action(id="app-banner", channel="push"),
    Action(id="sms-coupon", channel="sms"),
]


def example(actions=ACTIONS, **namespaces: Features) -> policies.Example:
    return policies.Example(dict(namespaces), actions)


def student(visits: float = 3, tokens: tuple[str, ...] = ()) -> policies.Example:
    return example(user=Features(categorical={"segment": "student"}, numeric={"visits": visits}, tokens=list(tokens)))


def chosen(policy: Policy, ex: policies.Example) -> str:
    p = policy.pmf(ex, "e")
    assert p.max() == 1.0, p
    return ex.action_ids[int(p.argmax())]


@pytest.fixture
def allow():
    """An empty python allowlist for one test, and the function that replaces it."""
    previous = policies.allow_python_modules([])
    yield policies.allow_python_modules
    policies.allow_python_modules(previous)


# --- invalid specs, family by family -------------------------------------------------------------

INVALID = [
    ("nope", "unknown policy family 'nope'"),
    ("vw:--epsilon 0.1", "must include --cb_explore_adf"),
    ("vw:--cb_explore_adf -f model.vw", "option -f is not allowed"),
    ("vw:--cb_explore_adf --cache_file=x", "option --cache_file is not allowed"),
    ("vw:--cb_explore_adf --squarecb --elim", "--elim is refused: .*negative probabilities"),
    ("vw:--cb_explore_adf --graph_feedback", "--graph_feedback is refused: .*feedback graph"),
    ("vw:--cb_explore_adf --squarecb --cb_type sm", "VW rejected the arguments"),
    ("vw:--cb_explore_adf --nope", "option --nope is not allowed"),
    ("vw:--cb_explore_adf 'unclosed", "cannot parse VW arguments"),
    ("random:1", "random takes no parameters"),
    ("baseline:first", "baseline takes no parameters"),
    ("fixed:", "fixed: the weights are not valid JSON"),
    ('fixed:{"a": 1', "fixed: the weights are not valid JSON"),
    ("fixed:[1, 2]", "must be a JSON object"),
    ('fixed:{"a": -1}', "weight of 'a' must be a finite number >= 0, got -1"),
    ('fixed:{"a": NaN}', "weight of 'a' must be a finite number"),
    ('fixed:{"a": 1e999}', "weight of 'a' must be a finite number"),
    ('fixed:{"a": 1' + "0" * 400 + "}", "weight of 'a' must be a finite number"),
    ('fixed:{"a": "1"}', "weight of 'a' must be a finite number"),
    ('fixed:{"a": true}', "weight of 'a' must be a finite number"),
    ('fixed:{"a": 0, "b": 0}', "at least one action must have a positive weight"),
    ("fixed:{}", "at least one action must have a positive weight"),
    ("linucb:alpha=-1", r"linucb: alpha must be a number in \[0, 1e\+06\], got '-1'"),
    ("linucb:alpha=nan", "alpha must be a number in"),
    ("linucb:alpha=inf", "alpha must be a number in"),
    ("linucb:dim=1", r"dim must be an integer in \[2, 2048\], got '1'"),
    ("linucb:dim=4096", r"dim must be an integer in \[2, 2048\]"),
    ("linucb:dim=2.5", "dim must be an integer"),
    ("linucb:lambda=0", r"lambda must be a number in \[1e-06, 1e\+06\]"),
    ("linucb:lambda=1e-320", "lambda must be a number in"),
    ("linucb:epsilon=1.5", r"epsilon must be a number in \[0, 1\]"),
    ("linucb:beta=1", "linucb: unknown parameter 'beta'; known: alpha, dim, lambda, epsilon"),
    ("linucb:alpha", "linucb: expected key=value, got 'alpha'"),
    ("linucb:alpha=", "expected key=value"),
    ("linucb:alpha=1 alpha=2", "parameter 'alpha' given twice"),
    ("lints:v=0", r"lints: v must be a number in \(0, 1e\+06\]"),
    ("lints:samples=0", r"samples must be an integer in \[1, 10000\]"),
    ("lints:alpha=1", "lints: unknown parameter 'alpha'; known: v, samples, dim, lambda, epsilon"),
    ("python:nextbest.policies.examples", r"expected python:<module>:<Class>\[:<params>\]"),
    (
        "python:nextbest.policies.examples:SegmentGreedy",
        r"must be allowed by the server's configuration \(--policy-module",
    ),
]


@pytest.mark.parametrize(("spec", "message"), INVALID)
def test_invalid_spec_is_refused_with_the_reason(allow, spec, message):
    with pytest.raises(policies.PolicySpecError, match=message):
        policies.create(spec)


def test_spec_errors_are_value_errors_and_load_checks_the_spec_too():
    assert issubclass(policies.PolicySpecError, ValueError) and issubclass(policies.PolicyInputError, ValueError)
    with pytest.raises(policies.PolicySpecError, match="unknown parameter"):
        policies.load("linucb:beta=1", policies.create("linucb").save())


# --- the saved-state envelope --------------------------------------------------------------------


def test_saved_state_names_its_family_and_is_checksummed():
    data = policies.create("random").save()
    assert unseal("random", data) == b"stateless"
    with pytest.raises(ValueError, match="of family 'random', not 'baseline'"):
        policies.load("baseline", data)
    with pytest.raises(ValueError, match="checksum mismatch"):
        unseal("random", data[:-1] + b"x")
    with pytest.raises(ValueError, match="truncated"):
        unseal("random", data[:20])
    with pytest.raises(ValueError, match="not a saved nextbest policy"):
        unseal("random", b"stateless")


# --- vw ------------------------------------------------------------------------------------------

EXPLORES = [
    ("", True),  # --epsilon 0.05 by default
    ("--epsilon=0.2", True),
    ("--epsilon 0", False),
    ("--first 3", False),
    ("--softmax --lambda 1", False),
    ("--softmax --lambda 1 --epsilon 0.1", True),
    ("--squarecb", True),
    ("--regcb", False),
    ("--regcbopt", False),
    ("--synthcover", False),
    ("--synthcover --epsilon 0.1", True),
    ("--large_action_space", False),
]


@pytest.mark.parametrize(("args", "explores"), EXPLORES)
def test_vw_declares_whether_it_explores_from_its_arguments(args, explores):
    spec = f"vw:--cb_explore_adf {args}"
    policy = policies.create(spec)
    assert policy.explores is explores
    assert policies.load(spec, policy.save()).explores is explores


def test_vw_regcbopt_scores_are_normalized():
    p = policies.create("vw:--cb_explore_adf --regcbopt").pmf(student(), "e")
    np.testing.assert_allclose(p, 0.25)


# --- random, baseline, fixed ---------------------------------------------------------------------


def test_random_is_uniform_and_baseline_picks_the_first_candidate():
    np.testing.assert_array_equal(policies.create("random").pmf(student()), [0.25] * 4)
    np.testing.assert_array_equal(policies.create("baseline").pmf(student()), [1, 0, 0, 0])
    np.testing.assert_array_equal(policies.create("baseline").pmf(example(ACTIONS[2:])), [1, 0])


def test_fixed_is_proportional_to_the_weights_of_the_candidates():
    policy = policies.create('fixed:{"push-tip": 3, "sms-coupon": 1, "app-banner": 0, "elsewhere": 100}')
    np.testing.assert_allclose(policy.pmf(student()), [0, 0.75, 0, 0.25])
    np.testing.assert_allclose(policy.pmf(example([ACTIONS[3], ACTIONS[0]])), [1, 0])
    assert not policy.explores and not policy.learns


def test_fixed_refuses_a_request_without_a_positively_weighted_candidate():
    policy = policies.create('fixed:{"push-tip": 3, "app-banner": 0}')
    with pytest.raises(policies.PolicyInputError, match="none of the 2 candidate actions has a positive weight"):
        policy.pmf(example([ACTIONS[0], ACTIONS[2]]))


# --- rules ---------------------------------------------------------------------------------------

JOURNEY = {
    "epsilon": 0,
    "rules": [
        {"if": {"user.segment": "student", "user.visits": {">=": 3}}, "then": ["push-tip", "app-banner"]},
        {"if": {"user.segment": "student"}, "then": "channel:sms"},
        {"if": {"user": {"has": ["sports", "music"]}}, "then": ["app-banner"]},
    ],
    "fallback": ["nowhere", "sms-coupon"],
}


def rules(journey: dict) -> Policy:
    return policies.create("rules:" + json.dumps(journey))


def test_rules_take_the_first_rule_that_holds_in_order():
    policy = rules(JOURNEY)
    assert chosen(policy, student(visits=5)) == "push-tip"
    assert chosen(policy, student(visits=5, tokens=("sports", "music"))) == "push-tip"  # rule 1 before rule 3
    assert chosen(policy, student(visits=1)) == "sms-coupon"  # rule 2: the first candidate on channel sms
    assert chosen(policy, example(user=Features(tokens=["music", "sports", "x"]))) == "app-banner"


def test_rules_skip_unavailable_targets_then_rules_then_use_the_fallback_then_the_first_candidate():
    policy = rules(JOURNEY)
    no_push_tip = [ACTIONS[0], ACTIONS[3], ACTIONS[2]]
    assert chosen(policy, policies.Example(student(5).context, no_push_tip)) == "app-banner"
    assert chosen(policy, policies.Example(student(5).context, ACTIONS[:1] + ACTIONS[3:])) == "sms-coupon"  # rule 2
    assert chosen(policy, example(user=Features(tokens=["sports"]))) == "sms-coupon"  # fallback, 2nd target
    assert chosen(policy, example(ACTIONS[1:3], user=Features(tokens=["sports"]))) == "push-tip"  # first candidate
    assert chosen(rules({"rules": [{"then": "nowhere"}]}), example(ACTIONS[2:])) == "app-banner"


def test_rules_mix_in_epsilon_uniformly():
    p = rules({**JOURNEY, "epsilon": 0.2}).pmf(student(visits=5))
    np.testing.assert_allclose(p, [0.05, 0.85, 0.05, 0.05])
    assert rules({**JOURNEY, "epsilon": 0.2}).explores and not rules(JOURNEY).explores


CONDITIONS = [
    ({"user.segment": "student"}, True),
    ({"user.segment": "parent"}, False),
    ({"user.visits": 3}, True),
    ({"user.visits": {"<": 3}}, False),
    ({"user.visits": {"<=": 3, ">": 2.5}}, True),
    ({"user.visits": {">": 3}}, False),
    ({"user.visits": {"==": 3}}, True),
    ({"user.visits": {"!=": 3}}, False),
    ({"user.segment": {"!=": "parent"}}, True),
    ({"user.segment": {"==": "student"}}, True),
    ({"user.segment": {"in": ["parent", "student"]}}, True),
    ({"user.visits": {"in": [1, 2]}}, False),
    ({"user.missing": {"!=": "x"}}, False),  # a missing feature fails every condition
    ({"user.segment": {"<": 3}}, False),  # numeric comparison on a categorical feature: missing
    ({"other.segment": "student"}, False),
    ({"user": {"has": "sports"}}, True),
    ({"user": {"has": ["sports", "chess"]}}, False),
    ({"other": {"has": "sports"}}, False),
    ({}, True),
]


@pytest.mark.parametrize(("conditions", "holds"), CONDITIONS)
def test_rules_conditions(conditions, holds):
    policy = rules({"rules": [{"if": conditions, "then": "sms-coupon"}], "fallback": "email-offer"})
    assert chosen(policy, student(visits=3, tokens=("sports", "music"))) == ("sms-coupon" if holds else "email-offer")


def test_rules_target_prefixes():
    odd = [Action(id="channel:push", channel="email"), Action(id="b", channel="push")]
    assert chosen(rules({"rules": [{"then": "id:channel:push"}]}), example(odd)) == "channel:push"
    assert chosen(rules({"rules": [{"then": "channel:push"}]}), example(odd)) == "b"


def test_rules_never_add_namespaces_or_features_to_a_protobuf_context():
    request = decision_pb2.RankRequest(context={"user": Features(categorical={"segment": "student"})})
    policy = rules({"rules": [{"if": {"other.x": 1, "user.visits": {">": 1}, "user.kind": "a"}, "then": "x"}]})
    policy.pmf(policies.Example(request.context, ACTIONS))
    assert list(request.context) == ["user"]
    assert dict(request.context["user"].categorical) == {"segment": "student"}
    assert dict(request.context["user"].numeric) == {}


TOML = """
epsilon = 0.1
fallback = "email-offer"

[[rules]]
if = { "user.segment" = "student", "user.visits" = { ">=" = 3 } }
then = ["push-tip", "app-banner"]
"""


def test_rules_accept_inline_toml_and_json_and_toml_files(tmp_path):
    (tmp_path / "journey.toml").write_text(TOML)
    (tmp_path / "journey.json").write_text(json.dumps({**JOURNEY, "epsilon": 0.1}))
    for spec in ("rules:" + TOML, f"rules:{tmp_path / 'journey.toml'}", f"rules:{tmp_path / 'journey.json'}"):
        policy = policies.create(spec)
        np.testing.assert_allclose(policy.pmf(student(visits=4)), [0.025, 0.925, 0.025, 0.025])


def test_a_saved_rules_policy_keeps_its_journey_when_the_file_changes(tmp_path):
    path = tmp_path / "journey.json"
    path.write_text(json.dumps(JOURNEY))
    spec = f"rules:{path}"
    data = policies.create(spec).save()
    path.write_text(json.dumps({"rules": [{"then": "email-offer"}]}))
    assert chosen(policies.load(spec, data), student(visits=5)) == "push-tip"
    assert chosen(policies.create(spec), student(visits=5)) == "email-offer"
    path.unlink()
    assert chosen(policies.load(spec, data), student(visits=5)) == "push-tip"


INVALID_JOURNEYS = [
    ("rules = [", r"not inline JSON \(it does not start with \{\), not TOML \(Invalid value .*\), nor the path"),
    ("[1]", "unknown key '1'"),  # a TOML table named 1
    ("{", "rules: invalid JSON"),
    ("{}", r"rules: rules: must be a non-empty list of rules"),
    ('{"rules": []}', "rules: must be a non-empty list"),
    ('{"rules": [{"then": "a"}], "title": "x"}', "unknown key 'title'; known: rules, fallback, epsilon"),
    ('{"rules": [{"then": "a"}], "epsilon": 2}', r"epsilon: must be a number in \[0, 1\], got 2"),
    ('{"rules": [{"then": "a"}], "epsilon": true}', r"epsilon: must be a number in \[0, 1\]"),
    ('{"rules": [{"then": "a"}], "fallback": []}', "fallback: must be an action id"),
    ('{"rules": ["a"]}', r"rules\[0\]: must be an object with `then`"),
    ('{"rules": [{"if": {}}]}', r"rules\[0\]: has no `then`"),
    ('{"rules": [{"then": "a", "else": "b"}]}', r"rules\[0\]: unknown key 'else'; known: if, then"),
    ('{"rules": [{"then": []}]}', r"rules\[0\].then: must be an action id"),
    ('{"rules": [{"then": [1]}]}', r"rules\[0\].then: must be an action id"),
    ('{"rules": [{"then": "channel:"}]}', r"rules\[0\].then: `channel:` needs a name"),
    ('{"rules": [{"if": [], "then": "a"}]}', r"rules\[0\].if: must be an object of conditions"),
    ('{"rules": [{"if": {".x": 1}, "then": "a"}]}', r"rules\[0\].if\['.x'\]: a condition's key must be"),
    ('{"rules": [{"if": {"user.": 1}, "then": "a"}]}', "a condition's key must be `namespace.feature`"),
    ('{"rules": [{"if": {"user": "x"}, "then": "a"}]}', r"a condition on a namespace must be \{\"has\""),
    ('{"rules": [{"if": {"user": {"has": []}}, "then": "a"}]}', "`has` needs a token or a non-empty list"),
    ('{"rules": [{"if": {"user.x": true}, "then": "a"}]}', "must be a string, a number or an object of operators"),
    ('{"rules": [{"if": {"user.x": {}}, "then": "a"}]}', "must be a string, a number or an object of operators"),
    ('{"rules": [{"if": {"user.x": {"=>": 1}}, "then": "a"}]}', "unknown operator '=>'; use <, <="),
    ('{"rules": [{"if": {"user.x": {"<": "a"}}, "then": "a"}]}', "< needs a number, got 'a'"),
    ('{"rules": [{"if": {"user.x": {"==": null}}, "then": "a"}]}', "== needs a number or a string, got None"),
    ('{"rules": [{"if": {"user.x": {"in": [1, "a"]}}, "then": "a"}]}', "`in` needs a non-empty list of strings or"),
    ('{"rules": [{"if": {"user.x": {"has": "a"}}, "then": "a"}]}', "unknown operator 'has'"),
    ("epsilon = 0.1", "rules: rules: must be a non-empty list"),
    ("journey.yaml", "not inline JSON .*not TOML .*nor the path of a .json or .toml file"),
    ("/no/such/journey.toml", "rules: no file '/no/such/journey.toml'"),
    ("", "rules: needs a journey"),
]


@pytest.mark.parametrize(("journey", "message"), INVALID_JOURNEYS)
def test_invalid_journey_is_refused_with_the_reason(journey, message):
    with pytest.raises(policies.PolicySpecError, match=message):
        policies.create("rules:" + journey)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("j.json", '{"rules": [{"then": "a"}], "password": "hunter2"}', "unknown key .not shown: from a file."),
        ("j.json", '{"rules": [{"if": {"hunter2.x": {"=>": 1}}, "then": "a"}]}', r"rules\[0\].if\[0\]: unknown op"),
        ("j.json", '{"password": hunter2}', "is not valid JSON: Expecting value: line 1 column 14"),
        ("j.toml", "password = hunter2", r"is not valid TOML: .*\(at line 1, column 12\)"),
        ("j.toml", b"password = '\xffhunter2'", "is not UTF-8 text"),
        ("j.json", " " * (1 << 20) + "{}", "is larger than 1048576 bytes"),
    ],
)
def test_rules_file_errors_never_quote_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(policies.PolicySpecError, match=message) as e:
        policies.create(f"rules:{path}")
    assert "hunter2" not in str(e.value) and "password" not in str(e.value)
    assert str(e.value).startswith("rules")


# --- python --------------------------------------------------------------------------------------

SEGMENT_GREEDY = "python:nextbest.policies.examples:SegmentGreedy:epsilon=0.2, segment=user.segment"


def test_python_policies_need_their_module_allowed(allow):
    with pytest.raises(policies.PolicySpecError, match=r"--policy-module nextbest.policies.examples\)"):
        policies.create(SEGMENT_GREEDY)
    assert allow(["nextbest.policies.examples"]) == frozenset()
    policy = policies.create(SEGMENT_GREEDY)
    assert type(policy).__name__ == "SegmentGreedy" and policy.spec == SEGMENT_GREEDY and policy.explores
    data = policy.save()
    # a package does not allow its modules
    assert allow(["nextbest.policies"]) == frozenset({"nextbest.policies.examples"})
    with pytest.raises(policies.PolicySpecError, match="must be allowed"):
        policies.load(SEGMENT_GREEDY, data)
    with pytest.raises(ValueError, match="not a Python module name: 'bad name'"):
        allow(["nextbest.policies.examples", "bad name"])


class ForgetfulPolicy(Policy):
    """Builds itself with a spec other than the one it was given."""

    def _pmf(self, example, event_id):
        return [1.0] * len(example)

    def _learn(self, events):
        pass

    def _save(self):
        return b""

    @classmethod
    def _create(cls, spec, params):
        return cls("random")

    @classmethod
    def _load(cls, spec, params, data):
        return cls("random")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "python:nextbest.policies.examples:Nope",
            "nextbest.policies.examples.Nope is not a concrete nextbest.policies.Policy subclass",
        ),
        ("python:nextbest.policies.examples:Sequence", "is not a concrete nextbest.policies.Policy subclass"),
        (
            "python:nextbest.policies.base:Policy",
            "nextbest.policies.base.Policy is not a concrete nextbest.policies.Policy subclass",
        ),
        ("python:no_such_module_xyz:P", "python: cannot import 'no_such_module_xyz': ModuleNotFoundError"),
        (f"python:{__name__}:ForgetfulPolicy", "ForgetfulPolicy must return a policy built with the spec it was given"),
        (
            "python:nextbest.policies.examples:SegmentGreedy:epsilon=2",
            r"SegmentGreedy: epsilon must be a number in \[0, 1\]",
        ),
        (
            "python:nextbest.policies.examples:SegmentGreedy:segment=plan",
            "segment must be namespace.feature, got 'plan'",
        ),
    ],
)
def test_python_policy_errors(allow, spec, message):
    allow(["nextbest.policies.examples", "nextbest.policies.base", "no_such_module_xyz", __name__])
    with pytest.raises(policies.PolicySpecError, match=message):
        policies.create(spec)


def test_segment_greedy_learns_per_segment(allow):
    allow(["nextbest.policies.examples"])
    policy = policies.create("python:nextbest.policies.examples:SegmentGreedy:epsilon=0")
    parent = example(user=Features(categorical={"segment": "parent"}))
    events = [policies.LearnEvent(student(), i, 0.25, float(i == 3)) for i in range(4)]
    events += [policies.LearnEvent(parent, i, 0.25, float(i == 0)) for i in range(4)]
    policy.learn(events)
    assert chosen(policy, student()) == "sms-coupon" and chosen(policy, parent) == "email-offer"
    np.testing.assert_allclose(policy.pmf(example()), [0.25] * 4)  # segment "": nothing tried, all tie
    assert not policy.explores


# --- linucb and lints ----------------------------------------------------------------------------


def planted_events(n: int, seed: int = 0) -> list[policies.LearnEvent]:
    """Students like push-tip, parents email-offer (reward 1, else 0), logged uniformly."""
    rng = np.random.default_rng(seed)
    best = {"student": 1, "parent": 0}
    out = []
    for _ in range(n):
        segment = ["student", "parent"][rng.integers(2)]
        i = int(rng.integers(4))
        ex = example(user=Features(categorical={"segment": segment}))
        out.append(policies.LearnEvent(ex, i, 0.25, float(i == best[segment])))
    return out


def test_hashed_features_are_stable_unit_rows_with_crosses():
    ex = example([Action(id="x", channel="web")], user=Features(categorical={"segment": "s0"}))
    x = ex.hashed(1 << 20)
    # (1, user^segment=s0) × (1, action^id=x, channel^web); stable, never Python's hash()
    expected = {47378: -1, 525447: -1, 542792: 1, 692652: 1, 758158: 1, 989612: 1}
    assert {int(i): int(np.sign(x[0, i])) for i in np.flatnonzero(x[0])} == expected
    assert np.allclose(np.abs(x[0, list(expected)]), 1 / np.sqrt(6))
    assert ex.hashed(1 << 20) is x and not x.flags.writeable
    rows = student().hashed(64)
    assert rows.shape == (4, 64) and np.allclose(np.linalg.norm(rows, axis=1), 1)
    other = policies.Example({"user": Features(categorical={"segment": "parent"})}, ACTIONS).hashed(64)
    assert not np.allclose(rows - rows[0], other - other[0])  # the context changes how actions differ


@pytest.mark.parametrize("family", ["linucb", "lints"])
def test_linear_policies_learn_the_planted_segments_greedily_with_epsilon_zero(family):
    policy = policies.create(f"{family}:epsilon=0, dim=64")
    assert not policy.explores
    student, parent = (example(user=Features(categorical={"segment": s})) for s in ("student", "parent"))
    untrained = policy.pmf(student, "e")
    policy.learn(planted_events(400))
    assert policy.pmf(student, "e").argmax() == 1 and policy.pmf(parent, "e").argmax() == 0
    assert policy.pmf(student, "e")[1] > untrained[1]


def test_linucb_is_uniform_untrained_and_splits_ties():
    np.testing.assert_allclose(policies.create("linucb").pmf(student()), [0.25] * 4)
    twins = example([ACTIONS[0], ACTIONS[0], ACTIONS[1]])
    policy = policies.create("linucb:epsilon=0 alpha=0")
    policy.learn([policies.LearnEvent(twins, 0, 1 / 3, 1.0)])
    np.testing.assert_allclose(policy.pmf(twins), [0.5, 0.5, 0])


def test_linucb_separators_are_commas_or_spaces():
    events = planted_events(50)
    pmfs = []
    for spec in ("linucb:alpha=0.5,dim=64", "linucb:alpha=0.5 dim=64", "linucb: alpha=0.5 ,  dim=64 "):
        policy = policies.create(spec)
        policy.learn(events)
        pmfs.append(policy.pmf(student()))
    np.testing.assert_array_equal(pmfs[0], pmfs[1])
    np.testing.assert_array_equal(pmfs[0], pmfs[2])


def test_linear_model_is_the_ridge_regression_kept_by_sherman_morrison():
    policy = policies.create("linucb:dim=32 lambda=2")
    events = planted_events(60)
    policy.learn(events[:25])
    policy.learn(events[25:])
    with np.load(io.BytesIO(unseal("linucb", policy.save()))) as z:
        a_inv, b = z["a_inv"], z["b"]
    x = np.array([e.example.hashed(32)[e.chosen_index] for e in events])
    r = np.array([e.reward for e in events])
    np.testing.assert_allclose(a_inv, np.linalg.inv(2 * np.eye(32) + x.T @ x), atol=1e-10)
    np.testing.assert_allclose(b, x.T @ r, atol=1e-12)


def test_lints_draws_are_seeded_by_the_event_id():
    policy = policies.create("lints:samples=16 dim=64")
    policy.learn(planted_events(20))
    by_event = {e: policy.pmf(student(), e) for e in ("a", "b", "c")}
    np.testing.assert_array_equal(by_event["a"], policy.pmf(student(), "a"))
    assert any(not np.array_equal(by_event["a"], p) for p in by_event.values())
    assert np.all(by_event["a"] >= 0.01 / 4)


@pytest.mark.parametrize("family", ["linucb", "lints"])
def test_linear_load_checks_the_saved_arrays(family):
    data = policies.create(f"{family}:dim=16").save()
    with pytest.raises(ValueError, match="does not have dim=32 float64 arrays"):
        policies.load(f"{family}:dim=32", data)
    for arrays in ({"a_inv": np.eye(16)}, {"a_inv": np.eye(16), "b": np.full(16, np.nan)}):
        out = io.BytesIO()
        np.savez(out, **arrays)
        with pytest.raises(ValueError, match=f"saved {family} policy|not a saved {family} policy"):
            policies.load(f"{family}:dim=16", seal(family, out.getvalue()))
    with pytest.raises(ValueError, match=f"not a saved {family} policy"):
        policies.load(f"{family}:dim=16", seal(family, b"PK\x03\x04 not a zip"))


@pytest.mark.parametrize(
    "spec",
    [
        "vw:--cb_explore_adf --epsilon 0.05 -q ::",
        "vw:--cb_explore_adf --squarecb --experimental_full_name_interactions action|: "
        "--experimental_full_name_interactions channel|:",
        "vw:--ccb_explore_adf --epsilon 0.1 -q ua",
    ],
)
def test_a_vw_policy_learns_what_vws_own_workspace_learn_learns_from_the_same_lines(spec: str) -> None:
    """The policy hands VW its example text through pylibvw (not pyvw's Workspace.learn, whose Python wrapping of each
    line cost more than VW's parse): the model is byte for byte the one pyvw's learn makes of the same lines."""
    rng = np.random.default_rng(7)
    policy = policies.create(spec)
    workspace = vowpalwabbit.Workspace(arg_list=[*shlex.split(spec.partition(":")[2]), "--quiet"])
    for i in range(200):
        ex = student(visits=float(rng.integers(0, 10)), tokens=("t" + str(i % 3),))
        chosen_index = int(rng.integers(0, len(ex)))
        reward = float(rng.random() < 0.5)
        event = policies.LearnEvent(ex, chosen_index, 0.25, reward)
        policy.learn([event])
        labeled = ex.vw_labeled_lines(chosen_index, -reward, 0.25)
        workspace.learn(ccb_labeled_lines(event) if policy.multi_slot else labeled)
    assert unseal("vw", policy.save()) == _saved(workspace)


@pytest.mark.parametrize(
    "spec",
    [
        "vw:--cb_explore_adf --epsilon 0.1 -q ::",
        DEFAULT_POLICY,
        "vw:--ccb_explore_adf --squarecb -q ua",
    ],
)
def test_a_vw_policys_prediction_is_what_vws_own_workspace_predict_gives_for_the_same_lines(spec: str) -> None:
    """Rank's prediction goes through pylibvw as learning does (pyvw's Workspace.predict wraps each parsed line in a
    Python object): the same prediction, float for float, after the same learning."""
    rng = np.random.default_rng(11)
    args = [*shlex.split(spec.partition(":")[2]), "--quiet"]
    ours, theirs = vowpalwabbit.Workspace(arg_list=args), vowpalwabbit.Workspace(arg_list=args)
    multi_slot = spec.startswith("vw:--ccb")
    for i in range(60):
        ex = student(visits=float(rng.integers(0, 10)), tokens=("t" + str(i % 3),))
        event = policies.LearnEvent(ex, int(rng.integers(0, len(ex))), 0.25, float(rng.random() < 0.5))
        lines = ex.ccb_lines([Slot({}, tuple(range(len(ex))))]) if multi_slot else ex.vw_lines()
        assert predict_lines(ours, lines, multi_slot) == theirs.predict(lines)
        learned = (
            ccb_labeled_lines(event) if multi_slot else ex.vw_labeled_lines(event.chosen_index, -event.reward, 0.25)
        )
        learn_lines(ours, learned)
        theirs.learn(learned)
    ours.finish()
    theirs.finish()


def _saved(workspace: vowpalwabbit.Workspace) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        workspace.save(f"{d}/m.vw")
        workspace.finish()
        with open(f"{d}/m.vw", "rb") as f:
            return f.read()
