"""A fast path from JSON to the RankRequest of a Rank call.

protobuf's json_format walks a message field by field in Python: on the bench's payload (60 context features, 10
actions) it takes 1.2 ms, more than Rank's own work. Most requests only use the plain shapes (strings, numbers,
the documented objects): `rank_request` builds those with the generated constructors (0.3 ms) and returns None for
anything else (a null, a number as a string, an unknown or duplicated field, a wrong type...), which json_format
then parses as before, with its exact semantics and its messages naming what is wrong. So the fast path decides
nothing: for the inputs it accepts it gives what json_format gives (tests/test_http.py checks it).
"""

from __future__ import annotations

from typing import Any

from nextbest.v1 import decision_pb2, types_pb2

_EXACT_INTEGER = 2**53  # beyond it a JSON integer is not exactly a double: json_format's rounding decides
# the request's JSON names (and proto names) -> its fields
_FIELDS = {
    "loop": "loop",
    "eventId": "event_id",
    "event_id": "event_id",
    "context": "context",
    "actions": "actions",
    "excludedActionIds": "excluded_action_ids",
    "excluded_action_ids": "excluded_action_ids",
    "deferred": "deferred",
    "subjectId": "subject_id",
    "subject_id": "subject_id",
}
_STRINGS = frozenset({"loop", "event_id", "subject_id"})


class _Unusual(Exception):
    """The JSON has a shape the fast path leaves to json_format."""


def rank_request(data: Any) -> decision_pb2.RankRequest | None:
    """The RankRequest of `data` (parsed JSON) when it only has plain shapes, else None."""
    try:
        return decision_pb2.RankRequest(**_fields(data))
    except (_Unusual, ValueError, TypeError):  # the constructors refuse, e.g. a string with a lone surrogate
        return None


def _fields(data: Any) -> dict[str, Any]:
    if type(data) is not dict:
        raise _Unusual
    fields: dict[str, Any] = {}
    for name, value in data.items():
        field = _FIELDS.get(name)
        if field is None or field in fields:
            raise _Unusual
        if field in _STRINGS:
            fields[field] = _string(value)
        elif field == "deferred":
            if type(value) is not bool:
                raise _Unusual
            fields[field] = value
        elif field == "excluded_action_ids":
            fields[field] = _strings(value)
        elif field == "context":
            fields[field] = _namespaces(value)
        else:
            fields[field] = [_action(action) for action in _list(value)]
    return fields


def _action(data: Any) -> types_pb2.Action:
    if type(data) is not dict:
        raise _Unusual
    fields: dict[str, Any] = {}
    for name, value in data.items():
        if name in ("id", "channel"):
            fields[name] = _string(value)
        elif name == "features":
            fields[name] = _namespaces(value)
        else:
            raise _Unusual
    return types_pb2.Action(**fields)


def _namespaces(data: Any) -> dict[str, types_pb2.Features]:
    if type(data) is not dict:
        raise _Unusual
    return {name: _features(value) for name, value in data.items()}


def _features(data: Any) -> types_pb2.Features:
    if type(data) is not dict:
        raise _Unusual
    fields: dict[str, Any] = {}
    for name, value in data.items():
        if name == "numeric":
            fields[name] = _numbers(value)
        elif name == "categorical":
            if type(value) is not dict:
                raise _Unusual
            fields[name] = {key: _string(v) for key, v in value.items()}
        elif name == "tokens":
            fields[name] = _strings(value)
        else:
            raise _Unusual
    return types_pb2.Features(**fields)


def _numbers(data: Any) -> dict[str, float]:
    if type(data) is not dict:
        raise _Unusual
    for value in data.values():
        kind = type(value)
        if not (kind is float or (kind is int and -_EXACT_INTEGER <= value <= _EXACT_INTEGER)):
            raise _Unusual
    return data


def _string(value: Any) -> str:
    if type(value) is not str:
        raise _Unusual
    return value


def _list(value: Any) -> list:
    if type(value) is not list:
        raise _Unusual
    return value


def _strings(value: Any) -> list[str]:
    for item in _list(value):
        _string(item)
    return value
