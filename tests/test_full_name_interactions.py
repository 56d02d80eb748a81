"""`--experimental_full_name_interactions`: interactions by a namespace's full name, where `-q` goes by its first
character, so that `action|:` crosses the action ids with the context without crossing a context namespace that
shares the letter (`account`) with everything."""

import pytest
import vowpalwabbit

from nextbest import policies
from nextbest.client import action, namespaces

ACTION_SIDE = "--experimental_full_name_interactions action|: --experimental_full_name_interactions channel|:"


def _generated(args: str, example: policies.Example) -> list[int]:
    """VW's own count of each action's features (its own, the constant and the interactions' products)."""
    workspace = vowpalwabbit.Workspace(f"--cb_explore_adf {args} --quiet")
    parsed = workspace.parse(example.vw_lines())
    workspace.predict(parsed)
    counts = [e.get_feature_number() for e in parsed[1:]]
    workspace.finish_example(parsed)
    workspace.finish()
    return counts


def test_the_action_side_is_crossed_with_each_namespace_and_nothing_else():
    context = namespaces({"account": {"tokens": ["t1", "t2", "t3", "t4", "t5"]}, "user": {"tokens": ["u1", "u2"]}})
    example = policies.Example(context, [action("a1"), action("a2", "email")])
    spec = f"vw:--cb_explore_adf {ACTION_SIDE}"
    assert policies.create(spec).pmf(example) is not None
    # a1: id and constant, then id × (account 5, user 2, id); a2: id, channel and constant, then id × (the 7, id,
    # channel) and channel × (the 7, channel): VW keeps one of id × channel and channel × id
    assert _generated(ACTION_SIDE, example) == [2 + 8, 3 + 9 + 8]
    # `-q a:` takes account as `a` too: the 6 features of `a` by pairs (21), and × user (12)
    assert _generated("-q a: -q c:", example)[0] == 2 + 21 + 12


@pytest.mark.parametrize(
    "value", ["action", "a|b|c|d", "action|", "|action", "act:ion|:", "-a|b", "a b|c", "a\\b|c", "über|:"]
)
def test_a_value_that_is_not_two_or_three_names_is_refused_naming_the_option(value):
    with pytest.raises(policies.PolicySpecError, match="VW option --experimental_full_name_interactions: must be"):
        policies.create(f"vw:--cb_explore_adf --experimental_full_name_interactions '{value}'")


def test_a_saved_model_keeps_its_full_name_interactions():
    spec = f"vw:--cb_explore_adf --softmax --lambda 5 {ACTION_SIDE}"
    policy = policies.create(spec)
    example = policies.Example(namespaces({"user": {"segment": "student"}}), [action("a1"), action("a2")])
    for i in range(20):
        policy.learn([policies.LearnEvent(example, i % 2, 0.5, float(i % 2))])
    loaded = policies.load(spec, policy.save())
    assert list(loaded.pmf(example)) == pytest.approx(list(policy.pmf(example)), abs=1e-6)
    assert max(policy.pmf(example)) > 0.6  # it learned: a1's reward
