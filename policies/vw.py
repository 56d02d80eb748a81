"""`vw:<args>`: Vowpal Wabbit contextual bandits with action-dependent features (`--cb_explore_adf`).

`<args>` are VW command-line arguments and must include `--cb_explore_adf`.
Every exploration of VW 9 works: `--epsilon E` (the default, E = 0.05),
`--first N`, `--softmax --lambda L`, `--bag N`, `--cover N`, `--squarecb`,
`--rnd N`, `--regcb`, `--regcbopt`, `--synthcover` and `--large_action_space`
(with `--max_actions N`, default 20), with `-q`/`--interactions` (add `-q ::` to
personalize), `--cb_type` (`mtr` by default; `ips`, `dr`, `dm`, `sm` where VW
accepts them) and learning options. The cost VW learns is −reward.

Notes on some explorations:

- `--regcb` and `--regcbopt` assume costs in `[--cb_min_cost, --cb_max_cost]`,
  `[0, 1]` by default: for rewards in [0, 1] add `--cb_min_cost -1 --cb_max_cost 0`,
  or they never narrow their choice.
- `--squarecb --elim` is refused: VW 9.11 returns negative probabilities with it
  until it has learned enough. `--graph_feedback` is refused: it needs a feedback
  graph in every example, which nextbest does not send.
- Options that touch files, ports or VW's own output (`-d`, `-i`, `-f`,
  `--cache`, `--daemon`, `--quiet`, …) are refused.

Whether every candidate always gets a positive probability (`explores`)
depends on the exploration: yes for `--epsilon` > 0, `--cover` (unless
`--nounif` or `--epsilon 0`) and `--squarecb`; for `--softmax`, `--bag`,
`--rnd` and `--synthcover` only with an explicit `--epsilon` > 0 (without one,
softmax can underflow to 0 and the others give 0 to actions they rule out);
never for `--first` (greedy after N decisions), `--regcb`/`--regcbopt` (they
eliminate actions) and `--large_action_space` (actions outside the spanning set
get 0).
"""

from __future__ import annotations

import os
import shlex
import tempfile
from collections.abc import Sequence

import vowpalwabbit

from nextbest.policies.base import LearnEvent, Policy, PolicySpecError
from nextbest.policies.featurize import Example
from nextbest.policies.registry import register

# Options that read or write files, open ports or change I/O: never taken from a spec.
_FORBIDDEN = {
    "-d",
    "--data",
    "-i",
    "--initial_regressor",
    "-f",
    "--final_regressor",
    "--readable_model",
    "--invert_hash",
    "-c",
    "--cache",
    "--cache_file",
    "-p",
    "--predictions",
    "-r",
    "--raw_predictions",
    "--daemon",
    "--port",
    "--pid_file",
    "--port_file",
    "--audit_regressor",
    "--feature_mask",
    "--save_per_pass",
    "--output_feature_regularizer_binary",
    "--output_feature_regularizer_text",
    "--input_feature_regularizer",
    "--extra_metrics",
    "--dsjson",
    "--json",
    "--passes",
    "--save_resume",
    "--predict_only_model",
    "--id",
    "--quiet",
    "--audit",
    "-a",
    "--progress",
    "-P",
    "--preserve_performance_counters",
    "--driver_output",
    "--log_output",
    "--log_level",
    "--flatbuffer",
    "--stdin",
    "--no_stdin",
}

# Options VW accepts that do not work as a nextbest policy, and why.
_REFUSED = {
    "--elim": "VW 9.11 returns negative probabilities with --squarecb --elim until it has learned enough",
    "--graph_feedback": "it needs a feedback graph in every example, which nextbest does not send",
}

# Explorations that need an explicit --epsilon > 0 to give every action a positive probability.
_EXPLORE_WITH_EPSILON = {
    "cb_explore_adf_softmax",
    "cb_explore_adf_bag",
    "cb_explore_adf_rnd",
    "cb_explore_adf_synthcover",
}


def _tmpdir() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def _check_args(params: str) -> list[str]:
    try:
        args = shlex.split(params)
    except ValueError as e:
        raise PolicySpecError(f"cannot parse VW arguments {params!r}: {e}") from e
    for arg in args:
        name = arg.split("=", 1)[0]
        if name in _FORBIDDEN:
            raise PolicySpecError(f"VW option {name} is not allowed in a policy spec")
        if name in _REFUSED:
            raise PolicySpecError(f"VW option {name} is refused: {_REFUSED[name]}")
    if "--cb_explore_adf" not in args:
        raise PolicySpecError("VW arguments must include --cb_explore_adf")
    return args


def _option(args: list[str], name: str) -> str | None:
    """The value of the last `name value` or `name=value` in args, if any."""
    value = None
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(name + "="):
            value = arg[len(name) + 1 :]
    return value


def _explores(args: list[str], learners: list[str]) -> bool:
    """Whether VW gives every action a positive probability with these arguments (see the module doc)."""
    epsilon = _option(args, "--epsilon")
    if "cb_explore_adf_large_action_space" in learners:
        return False
    if "cb_explore_adf_greedy" in learners:
        return float(epsilon or 0.05) > 0
    if "cb_explore_adf_cover" in learners:
        return "--nounif" not in args and float(epsilon or 0.05) > 0
    if "cb_explore_adf_squarecb" in learners:
        return True
    if _EXPLORE_WITH_EPSILON.intersection(learners):
        return epsilon is not None and float(epsilon) > 0
    return False


def _workspace(args: list[str]) -> vowpalwabbit.Workspace:
    try:
        return vowpalwabbit.Workspace(arg_list=[*args, "--quiet"])
    except RuntimeError as e:
        raise PolicySpecError(f"VW rejected the arguments: {e}") from e


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
        "vw:--cb_explore_adf --bag 5 -q ua",
        "vw:--cb_explore_adf --bag 5 --epsilon 0.05 --cb_type dr -q ua",
        "vw:--cb_explore_adf --cover 3 --cb_type dr -q ua",
        "vw:--cb_explore_adf --squarecb -q ua",
        "vw:--cb_explore_adf --rnd 3 --epsilon 0.05 -q ua",
        "vw:--cb_explore_adf --regcb --cb_min_cost -1 --cb_max_cost 0 -q ua",
        "vw:--cb_explore_adf --regcbopt --cb_min_cost -1 --cb_max_cost 0 --cb_type dr -q ua",
        "vw:--cb_explore_adf --synthcover --epsilon 0.05 -q ua --cb_type ips",
        "vw:--cb_explore_adf --large_action_space --max_actions 3 -q ua",
    )

    def __init__(self, spec: str, workspace: vowpalwabbit.Workspace, args: list[str]) -> None:
        super().__init__(spec)
        self._ws = workspace
        self.explores = _explores(args, workspace.get_enabled_learners())

    @classmethod
    def _create(cls, spec: str, params: str) -> VWPolicy:
        args = _check_args(params)
        return cls(spec, _workspace(args), args)

    @classmethod
    def _load(cls, spec: str, params: str, data: bytes) -> VWPolicy:
        args = _check_args(params)
        with tempfile.NamedTemporaryFile(dir=_tmpdir(), suffix=".vw") as f:
            f.write(data)
            f.flush()
            try:
                ws = vowpalwabbit.Workspace(arg_list=["-i", f.name, "--quiet"])
            except RuntimeError as e:
                raise ValueError(f"not a loadable VW model: {e}") from e
        if not any(r.startswith("cb_explore_adf") for r in ws.get_enabled_learners()):
            ws.finish()
            raise ValueError("the VW model is not a --cb_explore_adf model")
        return cls(spec, ws, args)

    def _pmf(self, example: Example, event_id: str) -> Sequence[float]:
        return self._ws.predict(example.vw_lines())

    def _learn(self, events: Sequence[LearnEvent]) -> None:
        for e in events:
            self._ws.learn(e.example.vw_labeled_lines(e.chosen_index, -e.reward, e.probability))

    def _save(self) -> bytes:
        with tempfile.TemporaryDirectory(dir=_tmpdir()) as d:
            path = os.path.join(d, "model.vw")
            self._ws.save(path)
            with open(path, "rb") as f:
                return f.read()
