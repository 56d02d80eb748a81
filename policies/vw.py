"""`vw:<args>`: Vowpal Wabbit contextual bandits with action-dependent features (`--cb_explore_adf`)."""

from __future__ import annotations

import os
import shlex
import tempfile
from collections.abc import Sequence

import vowpalwabbit

from policies.base import LearnEvent, Policy, PolicySpecError
from policies.featurize import Example
from policies.registry import register

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
    if "--cb_explore_adf" not in args:
        raise PolicySpecError("VW arguments must include --cb_explore_adf")
    return args


def _workspace(args: list[str]) -> vowpalwabbit.Workspace:
    try:
        return vowpalwabbit.Workspace(arg_list=[*args, "--quiet"])
    except RuntimeError as e:
        raise PolicySpecError(f"VW rejected the arguments: {e}") from e


@register("vw")
class VWPolicy(Policy):
    """A VW `--cb_explore_adf` workspace; its pmf is VW's exploration distribution."""

    def __init__(self, spec: str, workspace: vowpalwabbit.Workspace) -> None:
        super().__init__(spec)
        self._ws = workspace

    @classmethod
    def _create(cls, spec: str, params: str) -> VWPolicy:
        return cls(spec, _workspace(_check_args(params)))

    @classmethod
    def _load(cls, spec: str, params: str, data: bytes) -> VWPolicy:
        _check_args(params)
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
        return cls(spec, ws)

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
