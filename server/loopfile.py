"""Loops as code: a TOML or JSON file declares loops; a plan makes a server's loops match it.

    [loops.checkout]
    policy = "vw:--cb_explore_adf --squarecb -q ::"
    reward_wait_seconds = 600
    reward_aggregation = "SUM"
    shadow_policies = ["vw:--cb_explore_adf --softmax --lambda 10 -q ::"]

Each table under `loops` is a loop; its keys are LoopConfig fields (enums by name, `SUM` or
`REWARD_AGGREGATION_SUM`). A loop missing on the server is created; a declared field that differs is changed
(the others are kept); a loop on the server that the file does not declare is kept unless `prune`. Changing
`policy` to a shadowed spec promotes the shadow, as SetPolicy does. The plan is carried out with the same
AdminService calls a client makes (CreateLoop, UpdateLoop with the version it planned from, DeleteLoop), so
the server validates every change and a concurrent change makes UpdateLoop fail instead of being overwritten.

Import-light (protobuf only): `nextbest apply` runs with the client install.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nextbest.v1 import admin_pb2, types_pb2

_SERVER_SET = ("name", "version")


class LoopFileError(ValueError):
    """The file cannot be read or declares something invalid; the message names the key."""


@dataclass(frozen=True)
class Change:
    """One step of a plan: `action` is create, update, delete, keep (on the server, not declared) or unchanged."""

    action: str
    loop: str
    config: types_pb2.LoopConfig | None = None
    differences: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.action == "create":
            return f"+ create {self.loop}" + (f": {'; '.join(self.differences)}" if self.differences else "")
        if self.action == "update":
            return f"~ update {self.loop}: {'; '.join(self.differences)}"
        if self.action == "delete":
            return f"- delete {self.loop} (with its decisions, rewards and models)"
        if self.action == "keep":
            return f"  keep {self.loop} (not in the file; --prune deletes it)"
        return f"= {self.loop} unchanged"


def read(path: str) -> dict[str, dict[str, Any]]:
    """The declared loops of a TOML (`.toml`) or JSON file: name → {LoopConfig field: proto value}."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise LoopFileError(f"{path}: {e.strerror}") from None
    try:
        if os.path.splitext(path)[1].lower() == ".json":
            document = json.loads(raw)
        else:
            document = tomllib.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise LoopFileError(f"{path}: not valid {'JSON' if path.endswith('.json') else 'TOML'}: {e}") from None
    return parse(document)


def parse(document: Any) -> dict[str, dict[str, Any]]:
    """Check a loaded document and turn its values into proto values (enums by number)."""
    if not isinstance(document, Mapping):
        raise LoopFileError("the file must hold a table with a `loops` table")
    unknown = set(document) - {"loops"}
    if unknown:
        raise LoopFileError(f"{sorted(unknown)[0]}: unknown key (the file has one key, `loops`)")
    loops = document.get("loops", {})
    if not isinstance(loops, Mapping):
        raise LoopFileError("loops: must be a table of loops by name")
    return {str(name): _fields(str(name), values) for name, values in loops.items()}


def _fields(loop: str, values: Any) -> dict[str, Any]:
    if not isinstance(values, Mapping):
        raise LoopFileError(f"loops.{loop}: must be a table of LoopConfig fields")
    fields = types_pb2.LoopConfig.DESCRIPTOR.fields_by_name
    out: dict[str, Any] = {}
    for key, value in values.items():
        where = f"loops.{loop}.{key}"
        descriptor = fields.get(key)
        if descriptor is None or key in _SERVER_SET:
            settable = ", ".join(f for f in fields if f not in _SERVER_SET)
            raise LoopFileError(f"{where}: unknown field (fields: {settable})")
        out[key] = _value(where, descriptor, value)
    return out


def _value(where: str, descriptor: Any, value: Any) -> Any:
    if descriptor.is_repeated:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise LoopFileError(f"{where}: must be a list of strings")
        return list(value)
    if descriptor.enum_type is not None:
        if not isinstance(value, str):
            raise LoopFileError(f"{where}: must be a name, e.g. {descriptor.enum_type.values[1].name!r}")
        try:
            return enum_number(descriptor, value)
        except ValueError as e:
            raise LoopFileError(f"{where}: {e}") from None
    if descriptor.type == descriptor.TYPE_STRING:
        if not isinstance(value, str):
            raise LoopFileError(f"{where}: must be a string")
        return value
    if descriptor.type == descriptor.TYPE_BOOL:
        if not isinstance(value, bool):
            raise LoopFileError(f"{where}: must be true or false")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LoopFileError(f"{where}: must be a number")
    if descriptor.type in (descriptor.TYPE_DOUBLE, descriptor.TYPE_FLOAT):
        return float(value)
    if not isinstance(value, int):
        raise LoopFileError(f"{where}: must be a whole number")
    return value


def enum_number(descriptor: Any, text: str) -> int:
    """An enum field's value from its short (`SUM`) or full (`REWARD_AGGREGATION_SUM`) name, any case."""
    enum = descriptor.enum_type
    prefix = enum.values[0].name.removesuffix("UNSPECIFIED")
    wanted = text.strip().upper()
    for value in enum.values[1:]:
        if wanted in (value.name, value.name.removeprefix(prefix)):
            return value.number
    names = ", ".join(enum_label(descriptor, v.number) for v in enum.values[1:])
    raise ValueError(f"unknown value {text!r} (one of {names})")


def enum_label(descriptor: Any, number: int) -> str:
    """An enum field's value by its short name (`REWARD_AGGREGATION_SUM` → `SUM`)."""
    enum = descriptor.enum_type
    return enum.values_by_number[number].name.removeprefix(enum.values[0].name.removesuffix("UNSPECIFIED"))


def _shown(descriptor: Any, value: Any) -> str:
    if descriptor.enum_type is not None:
        return enum_label(descriptor, value)
    if descriptor.is_repeated:
        return "[" + ", ".join(repr(v) for v in value) + "]"
    return repr(value)


def _desired(current: types_pb2.LoopConfig, declared: Mapping[str, Any]) -> types_pb2.LoopConfig:
    """The current config with the declared fields set; a promoted shadow leaves the shadow list."""
    config = types_pb2.LoopConfig()
    config.CopyFrom(current)
    for name, value in declared.items():
        if name == "shadow_policies":
            del config.shadow_policies[:]
            config.shadow_policies.extend(value)
        else:
            setattr(config, name, value)
    if "shadow_policies" not in declared and config.policy in config.shadow_policies:
        shadows = [s for s in config.shadow_policies if s != config.policy]
        del config.shadow_policies[:]
        config.shadow_policies.extend(shadows)
    return config


def plan(
    declared: Mapping[str, Mapping[str, Any]], current: list[types_pb2.LoopConfig], *, prune: bool = False
) -> list[Change]:
    """What makes `current` match `declared`, in a stable order: the declared loops, then the others."""
    fields = types_pb2.LoopConfig.DESCRIPTOR.fields_by_name
    existing = {c.name: c for c in current}
    changes = []
    for name in sorted(declared):
        values = declared[name]
        if name not in existing:
            config = _desired(types_pb2.LoopConfig(name=name), values)
            shown = [f"{k} {_shown(fields[k], v)}" for k, v in sorted(values.items())]
            changes.append(Change("create", name, config, shown))
            continue
        before = existing[name]
        after = _desired(before, values)
        differences = [
            f"{f.name} {_shown(f, getattr(before, f.name))} -> {_shown(f, getattr(after, f.name))}"
            for f in types_pb2.LoopConfig.DESCRIPTOR.fields
            if f.name not in _SERVER_SET and list_or_value(before, f.name) != list_or_value(after, f.name)
        ]
        changes.append(Change("update", name, after, differences) if differences else Change("unchanged", name))
    for name in sorted(set(existing) - set(declared)):
        changes.append(Change("delete" if prune else "keep", name))
    return changes


def list_or_value(config: types_pb2.LoopConfig, name: str) -> Any:
    value = getattr(config, name)
    return list(value) if name == "shadow_policies" else value


Call = Callable[[str, Any], Any]
"""Calls an AdminService method by name with a request (a gRPC stub's or the servicer's own)."""


def apply(changes: list[Change], call: Call, report: Callable[[Change], None] | None = None) -> int:
    """Carry out the plan in order; returns how many changes were made. Stops at the first refused call (its
    error propagates; the changes before it stay)."""
    made = 0
    for change in changes:
        if change.action == "create":
            call("CreateLoop", admin_pb2.CreateLoopRequest(config=change.config))
        elif change.action == "update":
            call("UpdateLoop", admin_pb2.UpdateLoopRequest(config=change.config))
        elif change.action == "delete":
            call("DeleteLoop", admin_pb2.DeleteLoopRequest(loop=change.loop))
        else:
            continue
        made += 1
        if report is not None:
            report(change)
    return made
