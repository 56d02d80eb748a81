"""A VW policy's learning resumes from its model: saved and loaded (every restart, every published model), it
learns on exactly as the workspace that saved it, so the served model stays VW learning the exported log.

Checked for every exploration × `--cb_type` the allowlist accepts (and every allowed option), on seeded events
shaped like the service's (every feature shape of `test_export.SHAPES`, exclusions, rewards beyond [0, 1]) with
several split points. What VW 9.11 does not resume (`--bag`, `--cover`, `--rnd`, `--cb_type dr`) is refused,
in specs and in the headers of models VW loads.
"""

from __future__ import annotations

import contextlib
import functools
import itertools

import grpc
import numpy as np
import pytest
import vowpalwabbit
from test_export import SHAPES

from nextbest import policies
from nextbest.client import action, namespaces
from nextbest.policies.base import SlotOutcome
from nextbest.policies.envelope import seal, unseal
from nextbest.policies.featurize import Slot
from nextbest.policies.vw_options import ALLOWED, model_options, parse_args
from nextbest.server.config import DEFAULT_POLICY
from nextbest.sim.slots import CCB_POLICY
from nextbest.v1 import admin_pb2

pytestmark = pytest.mark.slow

EXPLORATIONS = (
    "--epsilon 0.05",
    "--first 5",
    "--softmax --lambda 2",
    "--squarecb --gamma_scale 5 --gamma_exponent 0.4",
    "--regcb --cb_min_cost -1 --cb_max_cost 0",
    "--regcbopt --cb_min_cost -1 --cb_max_cost 0",
    "--synthcover --epsilon 0.05 --synthcoverpsi 0.2 --synthcoversize 50",
    "--large_action_space --max_actions 3 --spanner_c 1.5",
)
CB_TYPES = ("", "--cb_type ips", "--cb_type dr", "--cb_type dm", "--cb_type mtr", "--cb_type sm")
OTHER_OPTIONS = (  # on a softmax, whose pmf moves with every weight
    "--clip_p 0.1 --cb_type ips --cubic ua: --interactions :: --ignore e --ignore_linear s --keep uvacos",
    "--noconstant -b 12 --learning_rate 0.3 --power_t 0.4 --initial_t 1 --decay_learning_rate 0.9 --l1 1e-6 --l2 1e-6",
    "--loss_function quantile --quantile_tau 0.3 --sgd --random_seed 7",
    "--adaptive --normalized --invariant",
    "--experimental_full_name_interactions action|: --experimental_full_name_interactions channel|:",
)
SPECS = [f"vw:--cb_explore_adf {e} {c} -q ::".replace("  ", " ") for e, c in itertools.product(EXPLORATIONS, CB_TYPES)]
SPECS += [f"vw:--cb_explore_adf --softmax --lambda 2 {o}" for o in OTHER_OPTIONS]
SPECS += [DEFAULT_POLICY]
NOT_RESUMABLE = ("--bag 3 --epsilon 0.05", "--cover 2", "--rnd 2 --epsilon 0.05", "--epsilon 0.05 --cb_type dr")
EVENTS = 150
SPLITS = (20, 45, 70, 100)
WHY = "VW's model file does not hold all of its learning state"


def example(i: int) -> policies.Example:
    """The i-th decision: a feature shape, four actions (one or none excluded)."""
    shape = list(SHAPES.values())[i % len(SHAPES)]
    context = namespaces({"user ü": shape, "visit": {"n": i % 7, "tokens": [f"p{i % 3}"] * (1 + i % 2)}})
    actions = [
        action("email-offer", "email", {"offer": shape}),
        action("push-tip", "push"),
        action("call-back", "", {"script": {"tokens": ["short", "short", "friendly"]}}),
        action("sms", "sms", {"empty": {}}),
    ]
    excluded = "push-tip" if i % 6 == 2 else "sms" if i % 4 == 1 else ""
    return policies.Example(context, [a for a in actions if a.id != excluded])


@functools.cache
def events() -> tuple[policies.LearnEvent, ...]:
    """Logged at varied probabilities; the reward is the best of 0-2 normal draws, 0 without one."""
    rng = np.random.default_rng(1)
    out = []
    for i in range(EVENTS):
        ex = example(i)
        rewards = rng.normal(size=i % 3)
        reward = float(rewards.max()) if len(rewards) else 0.0
        out.append(policies.LearnEvent(ex, int(rng.integers(len(ex))), float(rng.uniform(0.1, 0.9)), reward))
    return tuple(out)


PROBES = [example(i) for i in range(0, EVENTS, 7)]


def resume_gap(create, learn, save_load, pmf) -> float:
    """The largest |Δpmf| on the probes between learning all events and learning them with a save and load at
    each split point."""
    worst = 0.0
    for split in SPLITS:
        whole = create()
        learn(whole, events()[:split])
        resumed = save_load(whole)
        learn(whole, events()[split:])
        learn(resumed, events()[split:])
        worst = max(worst, *(float(np.max(np.abs(pmf(whole, x) - pmf(resumed, x)))) for x in PROBES))
    return worst


@pytest.mark.parametrize("spec", SPECS)
def test_learning_resumes_from_the_saved_model(spec):
    try:
        policies.create(spec)
    except policies.PolicySpecError as e:  # not allowed: by VW, or for not resuming
        assert "VW rejected the arguments" in str(e) or "--cb_type dr is refused" in str(e), e
        return
    gap = resume_gap(
        lambda: policies.create(spec),
        lambda p, evs: p.learn(evs),
        lambda p: policies.load(spec, p.save()),
        lambda p, x: p.pmf(x),
    )
    assert gap <= 1e-6, f"{spec}: learning after save and load differs by {gap}"


CCB_SPECS = [
    f"vw:--ccb_explore_adf {e} {c} -q ::".replace("  ", " ")
    for e, c in itertools.product(("--epsilon 0.05", "--softmax --lambda 2", "--squarecb"), CB_TYPES)
]
CCB_SPECS += [
    "vw:--ccb_explore_adf --softmax --lambda 2 --all_slots_loss -q ::",
    "vw:--ccb_explore_adf --softmax --lambda 2 --ccb_no_slot_index -q ::",
    "vw:--ccb_explore_adf --softmax --lambda 2 --cb_sample -q ::",
    DEFAULT_POLICY.replace("--cb_explore_adf", "--ccb_explore_adf"),  # the default's options, multi-slot
    CCB_POLICY,  # the multi-slot world's default (full-name interactions)
]


def _slots(i: int, ex: policies.Example, first: int) -> tuple[Slot, Slot]:
    """Two slots of decision i: any candidate for the first, the others for the second."""
    rest = tuple(k for k in range(len(ex)) if k != first)
    features = [namespaces({"slot": {"tokens": [f"s{k}", f"d{i % 3}"]}}) for k in range(2)]
    return Slot(features[0], tuple(range(len(ex)))), Slot(features[1], rest)


@functools.cache
def slot_events() -> tuple[policies.LearnEvent, ...]:
    """Two-slot decisions logged at varied probabilities, with a reward per slot."""
    rng = np.random.default_rng(2)
    out = []
    for i in range(EVENTS):
        ex = example(i)
        first = int(rng.integers(len(ex)))
        slots = _slots(i, ex, first)
        second = int(rng.integers(len(slots[1].candidates)))
        outcomes = tuple(
            SlotOutcome(slot, chosen, float(rng.uniform(0.1, 0.9)), float(rng.normal()))
            for slot, chosen in zip(slots, (first, second), strict=True)
        )
        out.append(policies.LearnEvent(ex, first, outcomes[0].probability, outcomes[0].reward, outcomes))
    return tuple(out)


@pytest.mark.parametrize("spec", CCB_SPECS)
def test_multi_slot_learning_resumes_from_the_saved_model(spec):
    try:
        policies.create(spec)
    except policies.PolicySpecError as e:
        assert "VW rejected the arguments" in str(e) or "--cb_type dr is refused" in str(e), e
        return
    worst = 0.0
    for split in SPLITS:
        whole = policies.create(spec)
        whole.learn(slot_events()[:split])
        resumed = policies.load(spec, whole.save())
        whole.learn(slot_events()[split:])
        resumed.learn(slot_events()[split:])
        for i in range(0, EVENTS, 7):
            ex = example(i)
            slots = _slots(i, ex, 0)
            for chosen in ([], [0]):
                gap = np.abs(whole.slot_pmf(ex, slots, chosen) - resumed.slot_pmf(ex, slots, chosen))
                worst = max(worst, float(np.max(gap)))
    assert worst <= 1e-6, f"{spec}: learning after save and load differs by {worst}"


def test_every_allowed_option_is_checked_for_resuming():
    """A new option on the allowlist needs a case above (and to resume, or to be refused)."""
    covered = set()
    for spec in SPECS + CCB_SPECS:
        with contextlib.suppress(policies.PolicySpecError):  # --cb_type dr
            covered.update(a[2:] for a in parse_args(spec[3:]) if a.startswith("--"))
    covered |= {a[2:] for a in model_options(unseal("vw", policies.create(SPECS[0]).save())) if a.startswith("--")}
    assert set(ALLOWED) - covered == set()


def _vw(args: str) -> vowpalwabbit.Workspace:
    return vowpalwabbit.Workspace(arg_list=[*args.split(), "-q", "::", "--quiet"])


def _vw_save_load(workspace: vowpalwabbit.Workspace, tmp_path) -> vowpalwabbit.Workspace:
    path = tmp_path / "model.vw"
    workspace.save(str(path))
    return vowpalwabbit.Workspace(arg_list=["-i", str(path), "--quiet"])


def _vw_learn(workspace: vowpalwabbit.Workspace, evs) -> None:
    for e in evs:
        workspace.learn(e.example.vw_labeled_lines(e.chosen_index, -e.reward, e.probability))


@pytest.mark.parametrize("args", NOT_RESUMABLE)
def test_what_vw_does_not_resume_is_refused(args, tmp_path):
    """VW itself learns differently after a save and load with these (if a VW upgrade fixes it, allow them)."""
    gap = resume_gap(
        lambda: _vw(f"--cb_explore_adf {args}"),
        _vw_learn,
        lambda w: _vw_save_load(w, tmp_path),
        lambda w, x: np.asarray(w.predict(x.vw_lines())),
    )
    assert gap > 1e-3
    option = next(a for a in args.split() if a in ("--bag", "--cover", "--rnd", "--cb_type"))
    with pytest.raises(policies.PolicySpecError, match=f"VW option {option}.* is refused: {WHY}"):
        policies.create(f"vw:--cb_explore_adf {args}")


@pytest.mark.parametrize("args", NOT_RESUMABLE)
def test_a_model_that_does_not_resume_is_refused_on_import(served, tmp_path, args):
    """A model VW saved with them (an import, or a model published before they were refused) is refused too."""
    _, client = served
    spec = "vw:--cb_explore_adf --epsilon 0.1 -q ::"
    client.create_loop("loop", policy=spec)
    workspace = _vw(f"--cb_explore_adf {args}")
    _vw_learn(workspace, events()[:10])
    path = tmp_path / "model.vw"
    workspace.save(str(path))
    data = seal("vw", path.read_bytes())
    with pytest.raises(policies.PolicySpecError, match=WHY):
        policies.load(spec, data)
    with pytest.raises(grpc.RpcError) as e:
        client.admin.ImportModel(iter([admin_pb2.ImportModelRequest(loop="loop", spec=spec, data=data)]))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert WHY in e.value.details()


@pytest.mark.parametrize("mode", [admin_pb2.POLICY_MODE_SHADOW, admin_pb2.POLICY_MODE_REPLACE])
def test_a_spec_that_does_not_resume_is_refused_as_a_shadow_or_replacement(served, mode):
    _, client = served
    client.create_loop("loop", policy="vw:--cb_explore_adf --epsilon 0.1 -q ::")
    with pytest.raises(grpc.RpcError) as e:
        request = admin_pb2.SetPolicyRequest(loop="loop", spec="vw:--cb_explore_adf --cover 2 -q ::", mode=mode)
        client.admin.SetPolicy(request)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "--cover" in e.value.details() and WHY in e.value.details()
