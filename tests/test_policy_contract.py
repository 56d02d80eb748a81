"""The contract every policy family keeps, checked over each registered family's declared `contract_specs`.

A small seeded planted problem: three customer segments, four actions on four
channels, one best action per segment (reward 0.8 against 0.2 on average),
logged by a uniform policy.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from nextbest import policies
from nextbest.v1 import types_pb2

Features = types_pb2.Features

ACTIONS = [
    types_pb2.Action(id="a0", channel="email", features={"offer": Features(categorical={"kind": "welcome"})}),
    types_pb2.Action(id="a1", channel="push", features={"offer": Features(categorical={"kind": "tip"})}),
    types_pb2.Action(
        id="a2", channel="sms", features={"offer": Features(categorical={"kind": "coupon"}, numeric={"value": 5})}
    ),
    types_pb2.Action(id="a3", channel="web", features={"offer": Features(categorical={"kind": "banner"})}),
]
SEGMENTS = ["s0", "s1", "s2"]
BEST = {"s0": 1, "s1": 2, "s2": 3}  # index in ACTIONS of each segment's planted best action
LEARN_EVENTS = 1000
SPECS = [(name, spec) for name in policies.families() for spec in policies.family(name).contract_specs]


def context(segment: str, visits: int = 2, tokens: tuple[str, ...] = ("sports",)) -> dict[str, Features]:
    return {"user": Features(categorical={"segment": segment}, numeric={"visits": visits}, tokens=list(tokens))}


def probes() -> list[policies.Example]:
    """Examples to compare pmfs on: each segment with all actions, a reordered subset, and one action."""
    out = [policies.Example(context(s), ACTIONS) for s in SEGMENTS]
    out.append(policies.Example(context("s1", 5, ()), [ACTIONS[3], ACTIONS[0], ACTIONS[2]]))
    out.append(policies.Example(context("s2"), [ACTIONS[2]]))
    return out


def events(n: int, seed: int) -> list[policies.LearnEvent]:
    """`n` joined events logged by the uniform policy (probability 0.25 each)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        segment = SEGMENTS[rng.integers(len(SEGMENTS))]
        example = policies.Example(
            context(segment, int(rng.integers(1, 7)), ("sports",) * int(rng.integers(2))), ACTIONS
        )
        chosen = int(rng.integers(len(ACTIONS)))
        reward = float(rng.random() < (0.8 if chosen == BEST[segment] else 0.2))
        out.append(policies.LearnEvent(example, chosen, 0.25, reward))
    return out


def pmfs(policy: policies.Policy, event_id: str = "probe") -> list[np.ndarray]:
    return [policy.pmf(example, event_id) for example in probes()]


@functools.cache
def trained(spec: str) -> bytes:
    """The spec's policy after LEARN_EVENTS events, saved."""
    policy = policies.create(spec)
    policy.learn(events(LEARN_EVENTS, seed=1))
    return policy.save()


@pytest.fixture(autouse=True, scope="module")
def allow_example_module():
    """The python family's contract spec uses the shipped example module."""
    previous = policies.allow_python_modules(["nextbest.policies.examples"])
    yield
    policies.allow_python_modules(previous)


@pytest.mark.parametrize("name", policies.families())
def test_every_family_declares_contract_specs(name):
    assert policies.family(name).contract_specs, f"family {name!r} declares no contract_specs"


@pytest.mark.parametrize(("name", "spec"), SPECS)
def test_spec_builds_a_policy_of_its_family(name, spec):
    policy = policies.create(spec)
    assert (policy.spec, policy.family) == (spec, name)


@pytest.mark.parametrize(("name", "spec"), SPECS)
def test_pmf_is_a_distribution_over_the_candidates(name, spec):
    for policy in (policies.create(spec), policies.load(spec, trained(spec))):
        for example, p in zip(probes(), pmfs(policy), strict=True):
            assert p.shape == (len(example),)
            assert np.all(p >= 0) and abs(p.sum() - 1) < 1e-6
            if policy.explores:
                assert np.all(p > 0), f"{spec} declares explores but gives 0: {p}"


@pytest.mark.parametrize(("name", "spec"), SPECS)
def test_pmf_is_deterministic(name, spec):
    policy = policies.create(spec)
    for a, b in zip(pmfs(policy, "e1"), pmfs(policy, "e1"), strict=True):
        np.testing.assert_array_equal(a, b)
    twins = [policies.create(spec), policies.create(spec)]
    for twin in twins:
        twin.learn(events(300, seed=2))
    for a, b in zip(pmfs(twins[0], "e2"), pmfs(twins[1], "e2"), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("name", "spec"), SPECS)
def test_save_then_load_gives_the_same_policy(name, spec):
    original = policies.load(spec, trained(spec))
    restored = policies.load(spec, original.save())
    assert restored.spec == spec
    for a, b in zip(pmfs(original), pmfs(restored), strict=True):
        np.testing.assert_array_equal(a, b)
    more = events(200, seed=3)
    original.learn(more)
    restored.learn(more)
    for a, b in zip(pmfs(original), pmfs(restored), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("name", "spec"), SPECS)
def test_learning_raises_the_planted_best_action(name, spec):
    before = pmfs(policies.create(spec))
    after = pmfs(policies.load(spec, trained(spec)))
    if not policies.create(spec).learns:
        for a, b in zip(before, after, strict=True):
            np.testing.assert_array_equal(a, b)
        return
    for i, segment in enumerate(SEGMENTS):
        best = BEST[segment]
        assert after[i][best] > before[i][best], f"{segment}: {before[i]} -> {after[i]}"


@pytest.mark.parametrize(("name", "spec"), SPECS)
def test_load_refuses_corrupt_bytes(name, spec):
    data = trained(spec)
    flipped = bytearray(data)
    flipped[-1] ^= 0xFF
    for bad in (b"", b"garbage\x00" * 8, data[: len(data) // 2], data[:-1], bytes(flipped)):
        with pytest.raises(ValueError):
            policies.load(spec, bad)
