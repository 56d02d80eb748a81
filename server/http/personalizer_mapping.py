"""Azure Personalizer's REST API in nextbest's terms: its JSON bodies to and from nextbest's messages.

Functions of JSON and messages (`server/http/personalizer.py` routes requests through them). Field names,
values and error codes are those of Microsoft's OpenAPI description (azure-rest-api-specs,
`specification/cognitiveservices/data-plane/Personalizer/`, stable v1.0 and 2022-09-01-preview).

Features are lists of JSON objects read as VW's JSON parser reads an example (the DSJSON reader's rules, see
`policies.ope.dsjson`): an object is a namespace, a string the one feature key+value, a number numeric, an array of
numbers dense features, `true` the feature key. Keys at the top level of a feature object, which VW puts in its
default namespace, go to the namespace `DEFAULT_NAMESPACE` (nextbest's namespaces have names); those of a slot's
features go to `SLOT_NAMESPACE` (a slot's namespaces must differ from the context's).

Multi-slot (2022-09-01-preview's `/multislot/...`) maps to RankMultiSlot on a loop whose policy is
`vw:--ccb_explore_adf ...`; its per-slot rewards are rewards of one slot each (`RewardRequest.slot_id`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import isodate

from nextbest.policies.ope import dsjson
from nextbest.policies.ope.dsjson import utc_seconds
from nextbest.policies.ope.report import LOGGED, EvaluationReport
from nextbest.server.config import DEFAULT_POLICY
from nextbest.server.http.calls import HttpError
from nextbest.v1 import admin_pb2, decision_pb2, types_pb2

DEFAULT_NAMESPACE = "default"
SLOT_NAMESPACE = "slot"
# VW's exploration when a `--cb_explore_adf` spec names none
VW_DEFAULT_EPSILON = 0.05
_VW = "vw:"
# Personalizer's learning settings name the input format; nextbest's VW reads no files, so it is dropped.
_INPUT_FORMAT_OPTIONS = frozenset({"--dsjson", "--json"})
# Explorations other than epsilon-greedy: explorationPercentage does not describe them.
_OTHER_EXPLORATIONS = frozenset(
    {"--first", "--softmax", "--bag", "--cover", "--squarecb", "--rnd", "--regcb", "--regcbopt", "--synthcover"}
)
_INDEXED = re.compile(r"^(slots|rewards)\[(\d+)\]\.")  # a field of one item of a list
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)$")  # .NET's [d.]hh:mm:ss of v1.0

_AGGREGATIONS = {
    types_pb2.REWARD_AGGREGATION_EARLIEST: "earliest",
    types_pb2.REWARD_AGGREGATION_SUM: "sum",
    types_pb2.REWARD_AGGREGATION_AVERAGE: "average",
    types_pb2.REWARD_AGGREGATION_MIN: "min",
    types_pb2.REWARD_AGGREGATION_MAX: "max",
}
_MODES = {
    types_pb2.LEARNING_MODE_ONLINE: "Online",
    types_pb2.LEARNING_MODE_APPRENTICE: "Apprentice",
    types_pb2.LEARNING_MODE_LOGGING_ONLY: "LoggingOnly",
}

# nextbest's field names in service messages, as Personalizer names them, by operation.
RANK_FIELDS = (("context", "contextFeatures"), ("excluded_action_ids", "excludedActions"), ("event_id", "eventId"))
CONFIG_FIELDS = (
    ("config.reward_wait_seconds", "rewardWaitTime"),
    ("config.default_reward", "defaultReward"),
    ("config.reward_aggregation", "rewardAggregation"),
    ("config.publish_interval_seconds", "modelExportFrequency"),
    ("config.retention_days", "logRetentionDays"),
    ("config.learning_mode", "learningMode"),
    ("config.policy", "explorationPercentage"),
)
EVENT_FIELDS = (("event_id", "eventId"),)
MULTI_SLOT_FIELDS = (
    ("context", "contextFeatures"),
    ("event_id", "eventId"),
    ("baseline_action_id", "baselineAction"),
    ("excluded_action_ids", "excludedActions"),
)
MULTI_SLOT_REWARD_FIELDS = (("rewards", "reward"), ("slot_id", "slotId"), ("event_id", "eventId"))
POLICY_FIELDS = (("config.policy", "arguments"), ("spec", "arguments"))


class PersonalizerError(HttpError):
    """A failure answered as Personalizer does: the HTTP status of `code` (or `status`) and the body
    `{"error": {"code": personalizer_code, "message": message}}`."""

    def __init__(self, code: grpc.StatusCode, message: str, personalizer_code: str, status: int | None = None) -> None:
        super().__init__(code, message, status)
        self.personalizer_code = personalizer_code


def bad_request(message: str, personalizer_code: str = "BadRequest") -> PersonalizerError:
    return PersonalizerError(grpc.StatusCode.INVALID_ARGUMENT, message, personalizer_code)


def renamed(message: str, fields: tuple[tuple[str, str], ...]) -> str:
    """`message` with the nextbest field it starts with named as Personalizer names it (also within an item of a
    list: `slots[0].baseline_action_id` is `slots[0].baselineAction`)."""
    indexed = _INDEXED.match(message)
    if indexed:
        outer = dict(fields).get(indexed.group(1), indexed.group(1))
        return f"{outer}[{indexed.group(2)}]." + renamed(message[indexed.end() :], fields)
    for ours, theirs in fields:
        if message.startswith(ours) and message[len(ours) : len(ours) + 1] in ("", "[", ".", ":", " "):
            return theirs + message[len(ours) :]
    return message


def personalizer_code(status: int, invalid: str = "BadRequest", not_found: str = "ResourceNotFound") -> str:
    """Personalizer's error code for an HTTP status; `invalid` and `not_found` are the operation's own."""
    if status == 400:
        return invalid
    if status == 404:
        return not_found
    if status == 413:
        return "PayloadSizeExceeded"
    if status in (401, 403):
        return str(status)  # as Azure's API gateway answers a missing or wrong key
    if status in (409, 429):
        return "OperationNotAllowed"
    if status == 504:
        return "RequestTimeout"
    return "BadRequest" if status < 500 else "InternalServerError"


def error_of(
    code: grpc.StatusCode,
    message: str,
    *,
    invalid: str = "BadRequest",
    not_found: str = "ResourceNotFound",
    fields: tuple[tuple[str, str], ...] = (),
) -> PersonalizerError:
    """The Personalizer error of a service's status, its field named as Personalizer names it."""
    error = PersonalizerError(code, renamed(message, fields), "")
    error.personalizer_code = personalizer_code(error.status, invalid, not_found)
    return error


def _object(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise bad_request(f"{field}: must be a JSON object, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _string(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise bad_request(f"{field}: must be a string, got {_kind(value)}")
    return value


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_request(f"{field}: must be a number, got {_kind(value)}")
    try:
        return float(value)
    except OverflowError:
        raise bad_request(f"{field}: {value} is too large") from None


def features(value: Any, field: str, default: str = DEFAULT_NAMESPACE) -> dict[str, types_pb2.Features]:
    """A Personalizer feature list (JSON objects) as nextbest's namespaces, read as VW's JSON parser reads them
    (top-level keys in the namespace `default`: DEFAULT_NAMESPACE, or SLOT_NAMESPACE for a slot's features)."""
    if value is None:
        return {}
    if not isinstance(value, list):
        raise bad_request(f"{field}: must be an array of JSON objects, got {_kind(value)}")
    for i, item in enumerate(value):
        _object(item, f"{field}[{i}]")
    try:
        read = dsjson.namespaces(value, default)
    except (ValueError, OverflowError) as e:
        raise bad_request(f"{field}: {e}") from None
    except RecursionError:
        raise bad_request(f"{field}: nested too deeply") from None
    return {
        ns: types_pb2.Features(numeric=f.numeric, categorical=f.categorical, tokens=f.tokens) for ns, f in read.items()
    }


def _ids(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad_request(f"{field}: must be an array of action ids, got {_kind(value)}")
    return [_string(x, f"{field}[{i}]") for i, x in enumerate(value)]


def _decision(obj: Mapping[str, Any], request: decision_pb2.RankRequest | decision_pb2.RankMultiSlotRequest) -> None:
    """Fill what a rank and a multi-slot rank request share: context, actions (in their order), eventId (absent: the
    service generates one) and deferActivation."""
    actions = obj.get("actions")
    if actions is None:
        raise bad_request("actions: at least one action is required")
    if not isinstance(actions, list):
        raise bad_request(f"actions: must be an array, got {_kind(actions)}")
    for ns, namespace in features(obj.get("contextFeatures"), "contextFeatures").items():
        request.context[ns].CopyFrom(namespace)
    for i, item in enumerate(actions):
        action = _object(item, f"actions[{i}]")
        if "features" not in action:
            raise bad_request(f"actions[{i}].features: is required (an array of JSON objects, may be empty)")
        added = request.actions.add(id=_string(action.get("id"), f"actions[{i}].id"))
        for ns, namespace in features(action["features"], f"actions[{i}].features").items():
            added.features[ns].CopyFrom(namespace)
    if obj.get("eventId") is not None:
        request.event_id = _string(obj["eventId"], "eventId")
    defer = obj.get("deferActivation")
    if defer is not None:
        if not isinstance(defer, bool):
            raise bad_request(f"deferActivation: must be true or false, got {_kind(defer)}")
        request.deferred = defer


def rank_request(body: Any, loop: str) -> decision_pb2.RankRequest:
    """A Personalizer RankRequest as nextbest's: the actions in their order, so the first non-excluded one is the
    baseline; an absent `eventId` lets the service generate one."""
    try:
        obj = _object(body, "request body")
        request = decision_pb2.RankRequest(loop=loop)
        _decision(obj, request)
        request.excluded_action_ids.extend(_ids(obj.get("excludedActions"), "excludedActions"))
    except PersonalizerError as e:
        raise bad_request(e.message, "InvalidRankRequest") from None
    return request


def multi_slot_rank_request(body: Any, loop: str) -> decision_pb2.RankMultiSlotRequest:
    """A Personalizer MultiSlotRankRequest as nextbest's RankMultiSlotRequest: the slots in their order, each with
    its features (top-level keys in the namespace `SLOT_NAMESPACE`), excludedActions and baselineAction."""
    try:
        obj = _object(body, "request body")
        request = decision_pb2.RankMultiSlotRequest(loop=loop)
        _decision(obj, request)
        slots = obj.get("slots")
        if not isinstance(slots, list):
            raise bad_request(f"slots: must be an array of slots, got {_kind(slots)}")
        for i, item in enumerate(slots):
            slot = _object(item, f"slots[{i}]")
            added = request.slots.add(id=_string(slot.get("id"), f"slots[{i}].id"))
            for ns, namespace in features(slot.get("features"), f"slots[{i}].features", SLOT_NAMESPACE).items():
                added.features[ns].CopyFrom(namespace)
            added.excluded_action_ids.extend(_ids(slot.get("excludedActions"), f"slots[{i}].excludedActions"))
            if slot.get("baselineAction") is not None:
                added.baseline_action_id = _string(slot["baselineAction"], f"slots[{i}].baselineAction")
    except PersonalizerError as e:
        raise bad_request(e.message, "InvalidRankRequest") from None
    return request


def multi_slot_rank_response(response: decision_pb2.RankMultiSlotResponse) -> dict[str, Any]:
    """Personalizer's MultiSlotRankResponse: each slot's chosen action, in request order."""
    slots = [{"id": s.slot_id, "rewardActionId": s.chosen_action_id} for s in response.slots]
    return {"slots": slots, "eventId": response.event_id}


def multi_slot_reward_requests(event_id: str, body: Any, loop: str) -> list[decision_pb2.RewardRequest]:
    """A Personalizer MultiSlotRewardRequest as one reward per slot."""
    try:
        rewards = _object(body, "request body").get("reward")
        if not isinstance(rewards, list):
            raise bad_request(f"reward: must be an array of {{slotId, value}}, got {_kind(rewards)}")
        if not rewards:
            raise bad_request("reward: at least one slot's reward is required")
        requests = []
        for i, item in enumerate(rewards):
            reward = _object(item, f"reward[{i}]")
            if "value" not in reward:
                raise bad_request(f"reward[{i}].value: is required")
            slot_id = _string(reward.get("slotId"), f"reward[{i}].slotId")
            value = _number(reward["value"], f"reward[{i}].value")
            requests.append(decision_pb2.RewardRequest(loop=loop, event_id=event_id, value=value, slot_id=slot_id))
    except PersonalizerError as e:
        raise bad_request(e.message, "InvalidRewardRequest") from None
    return requests


def multi_slot(spec: str) -> bool:
    """Whether a loop's policy decides multi-slot: a `vw:` spec with VW's conditional contextual bandits."""
    return "--ccb_explore_adf" in (_vw_arguments(spec) or [])


def rank_response(response: decision_pb2.RankResponse, request: decision_pb2.RankRequest) -> dict[str, Any]:
    """Personalizer's RankResponse: nextbest's ranking (highest probability first), then the excluded actions
    with probability 0, as Personalizer lists them."""
    ranking = [{"id": a.action_id, "probability": a.probability} for a in response.ranking]
    ranked = {a.action_id for a in response.ranking}
    ranking += [{"id": a.id, "probability": 0.0} for a in request.actions if a.id not in ranked]
    return {"ranking": ranking, "eventId": response.event_id, "rewardActionId": response.chosen_action_id}


def reward_request(event_id: str, body: Any, loop: str) -> decision_pb2.RewardRequest:
    try:
        obj = _object(body, "request body")
        if "value" not in obj:
            raise bad_request("value: is required")
        value = _number(obj["value"], "value")
    except PersonalizerError as e:
        raise bad_request(e.message, "InvalidRewardRequest") from None
    return decision_pb2.RewardRequest(loop=loop, event_id=event_id, value=value)


def parse_duration(value: Any, field: str) -> float:
    """Seconds of an ISO 8601 duration (`PT5M`, `P1D`), or of .NET's `[d.]hh:mm:ss` that v1.0 answered with."""
    if not isinstance(value, str):
        raise bad_request(f"{field}: must be an ISO 8601 duration such as PT5M, got {_kind(value)}")
    match = _TIMESPAN.match(value)
    if match:
        days, hours, minutes, seconds = match.groups()
        return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    try:
        duration = isodate.parse_duration(value)
    except (isodate.ISO8601Error, ValueError, OverflowError):
        raise bad_request(f"{field}: {value!r} is not an ISO 8601 duration such as PT5M or P1D") from None
    if isinstance(duration, isodate.Duration):
        if duration.years or duration.months:
            raise bad_request(f"{field}: {value!r}: years and months have no fixed length; give days")
        duration = duration.tdelta
    seconds = duration.total_seconds()
    if seconds < 0:
        raise bad_request(f"{field}: {value!r} is negative")
    return seconds


def format_duration(seconds: float) -> str:
    return isodate.duration_isoformat(timedelta(seconds=seconds))


def _vw_arguments(spec: str) -> list[str] | None:
    return spec[len(_VW) :].split() if spec.startswith(_VW) else None


def exploration(spec: str) -> float:
    """explorationPercentage: the `--epsilon` of a `vw:` spec (VW's default when it names no exploration),
    0 for other explorations and policies."""
    arguments = _vw_arguments(spec)
    if arguments is None:
        return 0.0
    for i, token in enumerate(arguments):
        if token == "--epsilon" and i + 1 < len(arguments):
            return float(arguments[i + 1])
        if token.startswith("--epsilon="):
            return float(token.partition("=")[2])
    return 0.0 if _OTHER_EXPLORATIONS.intersection(arguments) else VW_DEFAULT_EPSILON


def with_exploration(spec: str, value: float) -> str:
    """`spec` exploring with epsilon `value`; refused for policies whose exploration is not epsilon-greedy, but
    for the default policy (nobody chose its SquareCB): it becomes epsilon-greedy, its interactions kept, as a
    Personalizer client setting a percentage on a new loop expects."""
    if value == exploration(spec):
        return spec
    arguments = _vw_arguments(spec)
    if spec == DEFAULT_POLICY and arguments is not None:
        arguments = [t for t in arguments if t != "--squarecb"]
    if arguments is None or _OTHER_EXPLORATIONS.intersection(arguments):
        raise bad_request(
            f"explorationPercentage: the loop's policy {spec!r} does not explore epsilon-greedily; "
            "change its learning settings (PUT configurations/policy) instead",
            "InvalidServiceConfiguration",
        )
    kept = [t for t in arguments if not t.startswith("--epsilon=")]
    if "--epsilon" in kept:
        kept[kept.index("--epsilon") + 1] = format(value, ".15g")
    else:
        kept += ["--epsilon", format(value, ".15g")]
    return _VW + " ".join(kept)


def service_configuration(config: types_pb2.LoopConfig) -> dict[str, Any]:
    """Personalizer's ServiceConfiguration of a loop. Settings for what nextbest does not have (log mirroring,
    automatic optimization, retraining from history) answer their 'off' value."""
    return {
        "rewardWaitTime": format_duration(config.reward_wait_seconds),
        "defaultReward": config.default_reward,
        "rewardAggregation": _AGGREGATIONS.get(config.reward_aggregation, "earliest"),
        "explorationPercentage": exploration(config.policy),
        "modelExportFrequency": format_duration(config.publish_interval_seconds),
        "logRetentionDays": -1 if config.retention_days == 0 else math.ceil(config.retention_days),
        "learningMode": _MODES.get(config.learning_mode, "Online"),
        "modelRetrainDays": 0,
        "logMirrorEnabled": False,
        "isAutoOptimizationEnabled": False,
    }


def _choice(value: Any, field: str, names: Mapping[int, str]) -> int:
    text = _string(value, field)
    for number, name in names.items():
        if text.lower() == name.lower():
            return number
    raise bad_request(f"{field}: {text!r} is not one of {', '.join(names.values())}")


def _retention_days(value: Any) -> float:
    days = _number(value, "logRetentionDays")
    if days == -1:
        return 0.0
    if days < 1 or days != int(days):
        raise bad_request(f"logRetentionDays: -1 keeps logs forever, else a whole number of days ≥ 1, got {value}")
    return days


def _off(obj: Mapping[str, Any], field: str, off: Any, why: str) -> None:
    if field in obj and obj[field] not in (None, off):
        raise bad_request(f"{field}: nextbest has no {why}; only {off!r} is accepted")


def configured(config: types_pb2.LoopConfig, body: Any) -> types_pb2.LoopConfig:
    """`config` changed as a Personalizer ServiceConfiguration says; fields it leaves out are kept.

    Raises PersonalizerError (InvalidServiceConfiguration) naming the field; ranges are the loop's (UpdateLoop checks
    them). explorationPercentage changes the `--epsilon` of a `vw:` policy, which starts a new model.
    """
    try:
        return _configured(config, _object(body, "request body"))
    except PersonalizerError as e:
        raise bad_request(e.message, "InvalidServiceConfiguration") from None


def _configured(config: types_pb2.LoopConfig, obj: Mapping[str, Any]) -> types_pb2.LoopConfig:
    out = types_pb2.LoopConfig()
    out.CopyFrom(config)
    if obj.get("rewardWaitTime") is not None:
        out.reward_wait_seconds = parse_duration(obj["rewardWaitTime"], "rewardWaitTime")
    if obj.get("defaultReward") is not None:
        out.default_reward = _number(obj["defaultReward"], "defaultReward")
    if obj.get("rewardAggregation") is not None:
        out.reward_aggregation = _choice(obj["rewardAggregation"], "rewardAggregation", _AGGREGATIONS)
    if obj.get("explorationPercentage") is not None:
        value = _number(obj["explorationPercentage"], "explorationPercentage")
        if not 0.0 <= value <= 1.0:
            raise bad_request(f"explorationPercentage: must be in [0, 1], got {value:g}")
        out.policy = with_exploration(config.policy, value)
    if obj.get("modelExportFrequency") is not None:
        out.publish_interval_seconds = parse_duration(obj["modelExportFrequency"], "modelExportFrequency")
    if obj.get("logRetentionDays") is not None:
        out.retention_days = _retention_days(obj["logRetentionDays"])
    if obj.get("learningMode") is not None:
        out.learning_mode = _choice(obj["learningMode"], "learningMode", _MODES)
    _off(obj, "modelRetrainDays", 0, "retraining from past logs")
    _off(obj, "logMirrorEnabled", False, "log mirroring (the log is on your machines: `nextbest export`)")
    _off(obj, "isAutoOptimizationEnabled", False, "automatic optimization (run an evaluation, then set the policy)")
    return out


def policy_contract(config: types_pb2.LoopConfig) -> dict[str, str]:
    """Personalizer's PolicyContract of a loop: the VW arguments of a `vw:` policy, else the whole spec."""
    return {"name": config.name, "arguments": arguments_of(config.policy)}


def policy_spec(body: Any, field: str = "") -> str:
    """The spec of a PolicyContract: its arguments as a `vw:` spec (without Personalizer's `--dsjson`), or, when
    they do not start with an option, a nextbest spec of any family (`random`, `linucb:...`)."""
    obj = _object(body, field or "request body")
    try:
        arguments = _string(obj.get("arguments"), f"{field}arguments").strip()
    except PersonalizerError as e:
        raise bad_request(e.message, "InvalidPolicyContract") from None
    if arguments and not arguments.startswith("-"):
        return arguments
    return _VW + " ".join(t for t in arguments.split() if t not in _INPUT_FORMAT_OPTIONS)


def arguments_of(spec: str) -> str:
    """What a PolicyContract's `arguments` say for a spec: the VW arguments of a `vw:` spec, else the spec."""
    arguments = _vw_arguments(spec)
    return spec if arguments is None else " ".join(arguments)


@dataclass(frozen=True)
class EvaluationContract:
    """An evaluation to run: its name, the decision times [start, end) and the learning settings' specs by name."""

    name: str
    start: float
    end: float
    specs: dict[str, str]  # spec -> the name its learning settings were given (the first, when given twice)


def policy_reference(body: Any) -> tuple[str, str]:
    """The (evaluationId, policyName) of Personalizer's PolicyReferenceContract."""
    obj = _object(body, "request body")
    return _string(obj.get("evaluationId"), "evaluationId"), _string(obj.get("policyName"), "policyName")


def _date_time(value: Any, field: str) -> float:
    try:
        return utc_seconds(_string(value, field))
    except ValueError:
        raise bad_request(f"{field}: {value!r} is not an ISO 8601 date and time") from None


def evaluation_contract(body: Any, code: str = "InvalidEvaluationContract") -> EvaluationContract:
    """Personalizer's EvaluationContract, or a FeatureImportanceContract (no policies); `code` names the field
    otherwise. Policy optimization (`enablePolicyOptimization`, v1.0's `enableOfflineExperimentation`) is not run:
    `nextbest evaluate --search` searches offline."""
    try:
        obj = _object(body, "request body")
        name = _string(obj.get("name"), "name")
        start, end = _date_time(obj.get("startTime"), "startTime"), _date_time(obj.get("endTime"), "endTime")
        if not start < end:
            raise bad_request("endTime: must be after startTime")
        contracts = obj.get("policies") or []
        if not isinstance(contracts, list):
            raise bad_request(f"policies: must be an array of learning settings, got {_kind(contracts)}")
        specs: dict[str, str] = {}
        for i, contract in enumerate(contracts):
            spec = policy_spec(contract, f"policies[{i}].")
            specs.setdefault(spec, _string(_object(contract, f"policies[{i}]").get("name"), f"policies[{i}].name"))
    except PersonalizerError as e:
        raise bad_request(e.message, code) from None
    return EvaluationContract(name, start, end, specs)


def _time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


_SOURCES = {LOGGED: "Online", "baseline": "Baseline", "random": "Random"}
_V1_STATUS = {"Running": "pending", "Succeeded": "completed", "Failed": "failed"}


def _policy_name(spec: str, contract: EvaluationContract, online: str) -> tuple[str, str, str]:
    """(name, arguments, policySource) of a policy of an evaluation report."""
    source = _SOURCES.get(spec, "Custom")
    if source == "Custom":
        return contract.specs.get(spec, spec), arguments_of(spec), source
    return source, arguments_of(online) if source == "Online" else spec, source


def _job(job_id: str, contract: EvaluationContract, created: float, status: str, error: str) -> dict[str, Any]:
    out = {
        "id": job_id,
        "name": contract.name,
        "startTime": _time(contract.start),
        "endTime": _time(contract.end),
        "creationTime": _time(created),
        "status": status,
    }
    if error:
        out["description"] = error
    return out


def evaluation(
    evaluation_id: str,
    contract: EvaluationContract,
    created: float,
    status: str,
    online: str,
    report: EvaluationReport | None = None,
    error: str = "",
) -> dict[str, Any]:
    """Personalizer's Evaluation (2022-09-01-preview): each policy's SNIPS estimate of the average reward with its
    95% interval as `summary` (null where it does not exist); `status` is Running, Succeeded or Failed (the reason in
    `description`); `online` is the loop's policy spec when the evaluation was submitted."""
    out = {**_job(evaluation_id, contract, created, status, error), "evaluationType": "Manual"}
    if report is not None:
        values = []
        for policy in report.policies:
            name, arguments, source = _policy_name(policy.spec, contract, online)
            snips = policy.estimates["snips"]
            values.append(
                {
                    "name": name,
                    "arguments": arguments,
                    "policySource": source,
                    "summary": {"expectedReward": snips.value, "confidenceInterval": list(snips.ci)},
                    "timeseries": {"data": []},
                }
            )
        out["content"] = {"startTime": out["startTime"], "endTime": out["endTime"], "value": values}
    return out


def evaluation_v1(
    evaluation_id: str,
    contract: EvaluationContract,
    status: str,
    online: str,
    report: EvaluationReport | None = None,
) -> dict[str, Any]:
    """Personalizer's v1.0 Evaluation: per policy, over the whole range (`totalSummary`), the IPS numerator and
    denominator (the sum of importance-weighted rewards, the number of events), the SNIPS denominator (the sum of the
    weights) and the half-width of the IPS interval."""
    results = []
    for policy in report.policies if report is not None else ():
        name, arguments, _ = _policy_name(policy.spec, contract, online)
        ips, snips = policy.estimates["ips"].value, policy.estimates["snips"].value
        low, high = policy.estimates["ips"].ci
        total = {
            "timeStamp": _time(contract.end),
            "ipsEstimatorNumerator": None if ips is None else ips * report.events,
            "ipsEstimatorDenominator": report.events,
            "confidenceInterval": None if low is None or high is None else (high - low) / 2,
        }
        if ips is not None and snips:
            total["snipsEstimatorDenominator"] = ips * report.events / snips
        results.append({"name": name, "arguments": arguments, "summary": [], "totalSummary": total})
    return {
        "id": evaluation_id,
        "name": contract.name,
        "startTime": _time(contract.start),
        "endTime": _time(contract.end),
        "status": _V1_STATUS[status],
        "policyResults": results,
        "featureImportance": [],
    }


def feature_importance(
    importance_id: str,
    contract: EvaluationContract,
    created: float,
    status: str,
    report: EvaluationReport | None = None,
    error: str = "",
) -> dict[str, Any]:
    """Personalizer's FeatureImportance: nextbest's namespace importance (the live policy replayed with each
    namespace left out, see `nextbest evaluate --importance`). Each score is the namespace's drop in the DR estimate,
    divided by the largest drop (so the most important scores 1; about 0: unused), largest first; `featureName` is
    null, the importance being of whole namespaces, and `side` says whether the namespace is the context's or the
    actions'."""
    out = _job(importance_id, contract, created, status, error)
    if report is not None and report.importance is not None:
        namespaces = report.importance.namespaces
        largest = max((abs(n.drop) for n in namespaces if n.drop is not None), default=0.0)
        out["featureScores"] = [
            {
                "namespace": n.namespace,
                "featureName": None,
                "side": n.side,
                "score": None if n.drop is None else (n.drop / largest if largest else 0.0),
            }
            for n in namespaces
        ]
    return out


def model_properties(models: Sequence[admin_pb2.ModelInfo]) -> dict[str, str]:
    """Personalizer's ModelProperties: when the oldest kept model and the live one were published (nothing before
    the first)."""
    if not models:
        return {}
    live = next((m for m in models if m.live), max(models, key=lambda m: m.version))
    return {"creationTime": _time(min(m.created_at for m in models)), "lastModifiedTime": _time(live.created_at)}


def log_properties(times: tuple[float, float] | None) -> dict[str, Any]:
    """Personalizer's LogsProperties: the decision times the log spans (nothing before the first decision)."""
    return {} if times is None else {"dateRange": {"from": _time(times[0]), "to": _time(times[1])}}
