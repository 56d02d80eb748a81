"""`vw:<args>`: Vowpal Wabbit contextual bandits with action-dependent features (`--cb_explore_adf`).

`<args>` are VW command-line arguments and must include `--cb_explore_adf`.
The explorations of VW 9 whose learning resumes from a saved model work:
`--epsilon E` (the default, E = 0.05), `--first N`, `--softmax --lambda L`,
`--squarecb`, `--regcb`, `--regcbopt`, `--synthcover` and `--large_action_space`
(with `--max_actions N`, default 20), with `-q`/`--interactions` (add `-q ::` to
personalize), `--cb_type` (`mtr` by default; `ips`, `dm`, `sm` where VW
accepts them) and learning options. The cost VW learns is −reward.

Interactions: `-q`/`--interactions` name namespaces by their first character
(VW's namespace index), so `-q a:` crosses the featurizer's `action` ids and
any context namespace starting with `a` (`account`) with everything.
`--experimental_full_name_interactions action|:` (one term per option; names
as the featurizer writes them, sanitized, printable ASCII; `:` is any
namespace) names them in full: it crosses the action ids with every namespace
and nothing else. Context × context products add the same score to every
action of a decision, so they cost VW without changing its choice; crossing
only the action side (`action|:`, `channel|:`, the actions' own namespaces)
with the rest keeps every product that can.

Notes on some explorations:

- `--regcb` and `--regcbopt` assume costs in `[--cb_min_cost, --cb_max_cost]`,
  `[0, 1]` by default: for rewards in [0, 1] add `--cb_min_cost -1 --cb_max_cost 0`,
  or they never narrow their choice.
- `--bag`, `--cover`, `--rnd` and `--cb_type dr` are refused: VW 9.11 keeps part
  of their learning state outside the model file, so a model saved and loaded
  (every restart, every published model) learns on differently from the
  workspace that saved it, and the served model would no longer be VW learning
  the exported log.
- VW does not store `--l1`, `--l2`, `--loss_function` and `--quantile_tau` in its
  model file: a model is loaded with the spec's.
- `--squarecb --elim` is refused: VW 9.11 returns negative probabilities with it
  until it has learned enough. `--graph_feedback` is refused: it needs a feedback
  graph in every example, which nextbest does not send.
- Only the options of `policies.vw_options.ALLOWED` are accepted, each with
  a checked value: options that touch files, ports, hosts, dictionaries or
  VW's own output (`-d`, `-f`, `--sendto`, `--daemon`, …) are refused, and so
  are short options with a value glued to them (`-qua`: write `-q ua`).
  VW is given the arguments as checked, never the spec's own text.
- A model loaded from bytes (an import, a published model, a checkpoint) is
  checked the same way: the options stored in its header, which VW would
  apply, are read and checked before VW sees the model.

`--ccb_explore_adf` instead of `--cb_explore_adf` makes a multi-slot policy
(VW's conditional contextual bandits, with every exploration above): it
decides the slots of a decision in order, each from the candidates no earlier
slot took, with the slot's own features; a single-slot decision is one slot.
VW's CCB samples each slot itself: nextbest asks it for one slot at a time,
with the earlier slots restricted to the actions nextbest sampled for them,
so that each slot's pmf is the one nextbest samples from. `--all_slots_loss`
and `--ccb_no_slot_index` (VW adds a slot index feature to multi-slot
examples unless told not to) are allowed. VW's CCB needs a shared line: without context one with an empty
namespace (`ccb shared |shared`) is sent, which adds no feature.

Whether every candidate always gets a positive probability (`explores`)
depends on the exploration: yes for `--epsilon` > 0 and `--squarecb`; for
`--softmax` and `--synthcover` only with an explicit `--epsilon` > 0 (without
one, softmax can underflow to 0 and synthcover gives 0 to actions it rules out);
never for `--first` (greedy after N decisions), `--regcb`/`--regcbopt` (they
eliminate actions) and `--large_action_space` (actions outside the spanning set
get 0).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence

import pylibvw
import vowpalwabbit

from nextbest.policies.base import LearnEvent, Policy, PolicySpecError
from nextbest.policies.featurize import Example, Slot
from nextbest.policies.registry import register
from nextbest.policies.vw_options import model_options, parse_args
from nextbest.policies.work import WorkCounter, vw_counter

# Allowed options VW 9.11 does not store in a model: a model loaded without them learns on without them.
_UNSTORED = ("--l1", "--l2", "--loss_function", "--quantile_tau")

# Explorations that need an explicit --epsilon > 0 to give every action a positive probability.
_EXPLORE_WITH_EPSILON = {"cb_explore_adf_softmax", "cb_explore_adf_synthcover"}


def _tmpdir() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


_PATH = re.compile(r"(?:[A-Za-z]:)?[\\/][^\s'\",]*")


def _vw_error(e: RuntimeError) -> str:
    """VW's message without any path in it (it may name files of the server)."""
    lines = str(e).strip().splitlines() or [type(e).__name__]
    return _PATH.sub("<path>", lines[0])[:200]


def _option(args: list[str], name: str) -> str | None:
    """The value of `name` in canonical args, if given."""
    return args[args.index(name) + 1] if name in args else None


def _unstored(args: list[str]) -> list[str]:
    """The options of canonical args that VW must be given again when it loads a model (each takes a value)."""
    return [token for name in _UNSTORED if (value := _option(args, name)) is not None for token in (name, value)]


def _explores(args: list[str], learners: list[str]) -> bool:
    """Whether VW gives every action a positive probability with these arguments (see the module doc)."""
    epsilon = _option(args, "--epsilon")
    if "cb_explore_adf_large_action_space" in learners:
        return False
    if "cb_explore_adf_greedy" in learners:
        return float(epsilon or 0.05) > 0
    if "cb_explore_adf_squarecb" in learners:
        return True
    if _EXPLORE_WITH_EPSILON.intersection(learners):
        return epsilon is not None and float(epsilon) > 0
    return False


def _work_counter(options: list[str]) -> WorkCounter:
    """The work counter (see `policies.work`) of a workspace with these canonical options."""
    terms = [options[i + 1] for i, o in enumerate(options) if o in ("--quadratic", "--cubic", "--interactions")]
    full_names = [options[i + 1] for i, o in enumerate(options) if o == "--experimental_full_name_interactions"]
    return vw_counter(terms, full_names)


def _workspace(args: list[str]) -> vowpalwabbit.Workspace:
    try:
        return vowpalwabbit.Workspace(arg_list=[*args, "--quiet"])
    except RuntimeError as e:
        raise PolicySpecError(f"VW rejected the arguments: {_vw_error(e)}") from e


def ccb_labeled_lines(event: LearnEvent) -> list[str]:
    """The VW CCB example of an event, each slot labeled `action:cost:probability` (cost = -reward); a single-slot
    event is one slot with every action a candidate."""
    example = event.example
    if not event.slots:
        slot = Slot({}, tuple(range(len(example))))
        return example.ccb_lines([slot], [f"{event.chosen_index}:{-event.reward:.9g}:{event.probability:.9g}"])
    labels = [f"{s.action_index}:{-s.reward:.9g}:{s.probability:.9g}" for s in event.slots]
    return example.ccb_lines([s.slot for s in event.slots], labels)


def learn_lines(workspace: vowpalwabbit.Workspace, lines: list[str]) -> None:
    """Learn one multi-line example as `workspace.learn(lines)` does (VW parses the same joined text), without pyvw
    wrapping each parsed line in a Python object: that wrapping cost more than VW's parse."""
    examples = pylibvw.vw._parse(workspace, "\n".join(lines).strip())
    try:
        pylibvw.vw.learn_multi(workspace, examples)
    finally:
        pylibvw.vw._finish_example_multi_ex(workspace, examples)


def predict_lines(workspace: vowpalwabbit.Workspace, lines: list[str], multi_slot: bool = False) -> list:
    """VW's prediction of one multi-line example as `workspace.predict(lines)` gives it: the action probabilities of
    `--cb_explore_adf`, or with `multi_slot` the decision scores of `--ccb_explore_adf`; parsed and predicted as
    `learn_lines` learns, without pyvw wrapping each parsed line in a Python object."""
    examples = pylibvw.vw._parse(workspace, "\n".join(lines).strip())
    try:
        pylibvw.vw.predict_multi(workspace, examples)
        return examples[0].get_decision_scores() if multi_slot else examples[0].get_action_scores()
    finally:
        pylibvw.vw._finish_example_multi_ex(workspace, examples)


@register("vw")
class VWPolicy(Policy):
    """A VW `--cb_explore_adf` workspace; its pmf is VW's exploration distribution (normalized:
    `--regcbopt` scores its optimistic actions 1 each)."""

    contract_specs = (
        "vw:--cb_explore_adf --epsilon 0.1 -q ua",
        "vw:--cb_explore_adf --epsilon 0.1 --cb_type ips --interactions ua",
        "vw:--cb_explore_adf --first 20 -q ::",
        "vw:--cb_explore_adf --softmax --lambda 10 -q ua",
        "vw:--cb_explore_adf --softmax --lambda 10 --epsilon 0.05 -q ua",
        "vw:--cb_explore_adf --squarecb -q ua",
        "vw:--cb_explore_adf --regcb --cb_min_cost -1 --cb_max_cost 0 -q ua",
        "vw:--cb_explore_adf --regcbopt --cb_min_cost -1 --cb_max_cost 0 -q ua",
        "vw:--cb_explore_adf --synthcover --epsilon 0.05 -q ua --cb_type ips",
        "vw:--cb_explore_adf --large_action_space --max_actions 3 -q ua",
        "vw:--ccb_explore_adf --epsilon 0.1 -q ua",
        "vw:--ccb_explore_adf --squarecb -q ua",
        "vw:--ccb_explore_adf --softmax --lambda 10 --epsilon 0.05 --cb_type ips -q ua",
    )

    def __init__(self, spec: str, workspace: vowpalwabbit.Workspace, options: list[str]) -> None:
        """`options`: the canonical options the workspace runs with (a loaded model's own, from its header)."""
        super().__init__(spec)
        self._ws = workspace
        learners = workspace.get_enabled_learners()
        self.explores = _explores(options, learners)
        self.multi_slot = "ccb_explore_adf" in learners
        self._work = _work_counter(options)

    @classmethod
    def work_counter(cls, params: str) -> WorkCounter:
        return _work_counter(parse_args(params))

    def work(self, example: Example) -> int:
        return self._work(example)

    @classmethod
    def _create(cls, spec: str, params: str) -> VWPolicy:
        args = parse_args(params)
        return cls(spec, _workspace(args), args)

    @classmethod
    def _load(cls, spec: str, params: str, data: bytes) -> VWPolicy:
        args = parse_args(params)  # the spec must be usable too, and gives what the model does not store
        options = model_options(data)  # VW applies the options stored in the model: only allowed ones may be there
        with tempfile.NamedTemporaryFile(dir=_tmpdir(), suffix=".vw") as f:
            f.write(data)
            f.flush()
            try:
                ws = vowpalwabbit.Workspace(arg_list=["-i", f.name, *_unstored(args), "--quiet"])
            except RuntimeError as e:
                raise ValueError(f"not a loadable VW model: {_vw_error(e)}") from e
        if not any(r.startswith("cb_explore_adf") for r in ws.get_enabled_learners()):
            ws.finish()
            raise ValueError("the VW model is not a --cb_explore_adf model")
        return cls(spec, ws, options)

    def _pmf(self, example: Example, event_id: str) -> Sequence[float]:
        if self.multi_slot:
            return self._slot_pmf(example, [Slot({}, tuple(range(len(example))))], [])
        return predict_lines(self._ws, example.vw_lines())

    def _slot_pmf(self, example: Example, slots: Sequence[Slot], chosen: Sequence[int]) -> Sequence[float]:
        """VW's pmf of the slot after `chosen`: the earlier slots are sent with their chosen action as their only
        candidate, so VW removes exactly those actions (its own samples for them would differ)."""
        i = len(chosen)
        asked = [Slot(slot.features, (a,)) for slot, a in zip(slots, chosen, strict=False)] + [slots[i]]
        scores = dict(predict_lines(self._ws, example.ccb_lines(asked), multi_slot=True)[i])
        return [scores.get(a, 0.0) for a in slots[i].candidates]

    def _learn(self, events: Sequence[LearnEvent]) -> None:
        for e in events:
            if self.multi_slot:
                learn_lines(self._ws, ccb_labeled_lines(e))
            else:
                learn_lines(self._ws, e.example.vw_labeled_lines(e.chosen_index, -e.reward, e.probability))

    def _save(self) -> bytes:
        with tempfile.TemporaryDirectory(dir=_tmpdir()) as d:
            path = os.path.join(d, "model.vw")
            self._ws.save(path)
            with open(path, "rb") as f:
                return f.read()
