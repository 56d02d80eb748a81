"""nextbest's own JSON API: every RPC of DecisionService and AdminService over HTTP, gRPC-transcoding style.

One table, `RPCS`, maps each RPC to an HTTP method and path (the routes and /openapi.json are both made from it).
Path parameters set the request field of the same name (`bind` renames: UpdateLoop's `{loop}` is `config.name`);
the body sets the rest (`body="*"`: the whole request, a field name: that field; protobuf's canonical JSON mapping,
unknown fields refused) or, for a route without a body, the query string. Responses are the canonical JSON of the
response message, every field present. Errors are `{"code": "NOT_FOUND", "message": "..."}` with the HTTP status of
the gRPC status (see calls.HTTP_STATUS).

Three RPCs stream: RewardStream takes a JSON array or NDJSON of rewards; ExportModel answers the model's bytes
(application/octet-stream; its spec and version in the headers Nextbest-Model-Spec, percent-encoded, and
Nextbest-Model-Version); ImportModel takes them as the body, with the spec in the query string (`?spec=`).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import grpc
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from starlette.convertors import StringConvertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from nextbest.server.auth import ADMIN, DECIDE
from nextbest.server.http import fastjson
from nextbest.server.http.api import HttpCall, Services, parse_json
from nextbest.server.http.calls import HttpError, invoke
from nextbest.v1 import admin_pb2, decision_pb2

DECISION_SERVICE = decision_pb2.DESCRIPTOR.services_by_name["DecisionService"]
ADMIN_SERVICE = admin_pb2.DESCRIPTOR.services_by_name["AdminService"]
MODEL_SPEC_HEADER = "Nextbest-Model-Spec"
MODEL_VERSION_HEADER = "Nextbest-Model-Version"
_INVALID = grpc.StatusCode.INVALID_ARGUMENT


@dataclass(frozen=True)
class Rpc:
    """One RPC over HTTP. `kind`: "unary"; "rewards" (a JSON array or NDJSON of requests, the loop from the path);
    "export" (a binary response); "import" (a binary body, the other fields from the query string)."""

    verb: str
    path: str
    service: str
    method: str
    body: str | None = "*"
    bind: dict[str, str] = field(default_factory=dict)
    kind: str = "unary"
    fast_parse: Callable[[Any], Message | None] | None = None  # the request from the body's JSON, None: ParseDict
    until_gone: bool = False  # cancel the call when the client goes away (HttpCall.invoke_until_gone)

    @property
    def name(self) -> str:
        return f"{self.service}/{self.method}"

    @property
    def descriptor(self):  # the MethodDescriptor
        service = DECISION_SERVICE if self.service == DECISION_SERVICE.name else ADMIN_SERVICE
        return service.methods_by_name[self.method]

    def field_of(self, parameter: str) -> str:
        """The request field (dotted path) a path parameter sets."""
        return self.bind.get(parameter, parameter)


_D, _A = DECISION_SERVICE.name, ADMIN_SERVICE.name
RPCS: tuple[Rpc, ...] = (
    Rpc("POST", "/v1/loops/{loop}:rank", _D, "Rank", fast_parse=fastjson.rank_request),
    Rpc("POST", "/v1/loops/{loop}:rankMultiSlot", _D, "RankMultiSlot"),
    Rpc("POST", "/v1/loops/{loop}/events/{event_id}:reward", _D, "Reward"),
    Rpc("POST", "/v1/loops/{loop}/events/{event_id}:activate", _D, "Activate"),
    Rpc("POST", "/v1/loops/{loop}/rewards:stream", _D, "RewardStream", kind="rewards"),
    Rpc("POST", "/v1/rank:batch", _D, "RankBatch"),  # each request names its loop
    Rpc("GET", "/v1/loops", _A, "ListLoops", None),
    Rpc("POST", "/v1/loops", _A, "CreateLoop", "config"),
    Rpc("GET", "/v1/loops/{loop}", _A, "GetLoop", None),
    Rpc("PUT", "/v1/loops/{loop}", _A, "UpdateLoop", "config", bind={"loop": "config.name"}),
    Rpc("DELETE", "/v1/loops/{loop}", _A, "DeleteLoop", None),
    Rpc("GET", "/v1/loops/{loop}/stats", _A, "GetStats", None),
    Rpc("POST", "/v1/loops/{loop}:setPolicy", _A, "SetPolicy"),
    Rpc("POST", "/v1/loops/{loop}:promotePolicy", _A, "PromotePolicy"),
    Rpc("GET", "/v1/loops/{loop}/models", _A, "ListModels", None),
    Rpc("POST", "/v1/loops/{loop}/models/{version}:rollback", _A, "Rollback"),
    Rpc("GET", "/v1/loops/{loop}/model:export", _A, "ExportModel", None, kind="export"),
    Rpc("POST", "/v1/loops/{loop}/model:import", _A, "ImportModel", None, kind="import"),
    Rpc("POST", "/v1/loops/{loop}:evaluate", _A, "Evaluate", until_gone=True),
    Rpc("PUT", "/v1/contactPolicy", _A, "SetContactPolicy"),
    Rpc("GET", "/v1/contactPolicy", _A, "GetContactPolicy", None),
)


def error_response(error: HttpError) -> Response:
    """nextbest's error body: the gRPC status code's name and the message."""
    return JSONResponse({"code": error.code.name, "message": error.message}, status_code=error.status)


def message_response(message: Message) -> Response:
    return JSONResponse(to_json(message))


def to_json(message: Message) -> dict[str, Any]:
    """The canonical JSON mapping of `message`, with every field (defaults too) so that clients need not know
    proto3's defaults."""
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def _parse(data: Any, message: Message, where: str) -> None:
    """Merge JSON `data` into `message`; HttpError naming the field when it does not fit."""
    if not isinstance(data, dict):
        raise HttpError(_INVALID, f"{where}: expected a JSON object, got {type(data).__name__}")
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=False)
    except OverflowError:
        raise HttpError(_INVALID, f"{where}: {_huge_number(data)}: a number beyond a double's range") from None
    except (json_format.ParseError, ValueError, TypeError, AttributeError, RecursionError) as e:
        raise HttpError(_INVALID, f"{where}: {str(e)[:500]}") from None


def _huge_number(data: Any) -> str:
    """The path of the first integer of `data` that no double holds (json_format's OverflowError names none)."""
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        if type(value) is int and abs(value) > sys.float_info.max:
            return str(key)
        inner = _huge_number(value)
        if inner:
            return f"{key}.{inner}"
    return ""


def _field(descriptor: Descriptor, name: str) -> FieldDescriptor | None:
    found = descriptor.fields_by_name.get(name)
    if found is None:
        found = next((f for f in descriptor.fields if f.json_name == name), None)
    return found


_INTEGERS = {
    FieldDescriptor.CPPTYPE_INT32,
    FieldDescriptor.CPPTYPE_INT64,
    FieldDescriptor.CPPTYPE_UINT32,
    FieldDescriptor.CPPTYPE_UINT64,
}


def _scalar(descriptor: FieldDescriptor, text: str, where: str) -> Any:
    """A path or query parameter's text as the value of its field."""
    kind = descriptor.cpp_type
    try:
        if kind in _INTEGERS:
            return int(text)
        if kind in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT):
            return float(text)
        if kind == FieldDescriptor.CPPTYPE_BOOL:
            return {"true": True, "false": False}[text.lower()]
        if kind == FieldDescriptor.CPPTYPE_ENUM:
            return descriptor.enum_type.values_by_name[text].number
    except (ValueError, KeyError):
        raise HttpError(_INVALID, f"{where}: {text!r} is not a valid {_type_name(descriptor)}") from None
    if kind == FieldDescriptor.CPPTYPE_STRING and descriptor.type == FieldDescriptor.TYPE_STRING:
        return text
    raise HttpError(_INVALID, f"{where}: cannot be given as a parameter")


def _type_name(descriptor: FieldDescriptor) -> str:
    if descriptor.cpp_type == FieldDescriptor.CPPTYPE_ENUM:
        return f"{descriptor.enum_type.name} ({', '.join(descriptor.enum_type.values_by_name)})"
    return {FieldDescriptor.CPPTYPE_BOOL: "boolean (true or false)"}.get(
        descriptor.cpp_type, "integer" if descriptor.cpp_type in _INTEGERS else "number"
    )


def _set(message: Message, path: str, text: str, where: str) -> None:
    """Set the field at dotted `path` of `message` from a parameter's text; HttpError when the body set it to
    something else."""
    *parents, name = path.split(".")
    for parent in parents:
        message = getattr(message, parent)
    descriptor = _field(message.DESCRIPTOR, name)
    if descriptor is None or descriptor.is_repeated:
        raise HttpError(_INVALID, f"{where}: not a parameter of this call")
    value = _scalar(descriptor, text, where)
    current = getattr(message, descriptor.name)
    if current != descriptor.default_value and current != value:
        raise HttpError(_INVALID, f"{path}: the body says {current!r}, the {where} {value!r}")
    try:
        setattr(message, descriptor.name, value)
    except ValueError:
        raise HttpError(_INVALID, f"{where}: {value} is out of the range of a {descriptor.name}") from None


def _bind_path(rpc: Rpc, call: HttpCall, request: Message) -> None:
    for parameter, value in call.path_params.items():
        _set(request, rpc.field_of(parameter), value, f"path parameter {parameter!r}")


def _bind_query(call: HttpCall, request: Message) -> None:
    for name, value in call.request.query_params.multi_items():
        _set(request, name, value, f"query parameter {name!r}")


async def _request(rpc: Rpc, call: HttpCall) -> Message:
    """The request message of a unary or export call."""
    request = rpc.descriptor.input_type._concrete_class()
    if rpc.body is None:
        _bind_query(call, request)
    else:
        if call.request.query_params:
            name = next(iter(call.request.query_params))
            raise HttpError(_INVALID, f"query parameter {name!r}: this call takes its fields in the body")
        data = await call.json(empty={})
        fast = rpc.fast_parse(data) if rpc.fast_parse else None
        if fast is not None:
            request = fast
        else:
            _parse(data, request if rpc.body == "*" else getattr(request, rpc.body), "request body")
    _bind_path(rpc, call, request)
    return request


def _servicer(rpc: Rpc, services: Services) -> Callable:
    servicer = services.decisions if rpc.service == _D else services.admin
    return getattr(servicer, rpc.method)


def _unary(rpc: Rpc, services: Services) -> Callable:
    method = _servicer(rpc, services)

    async def handle(call: HttpCall) -> Response:
        request = await _request(rpc, call)
        return message_response(await (call.invoke_until_gone if rpc.until_gone else invoke)(method, request))

    return handle


def _reward_items(text: str) -> list[Any]:
    """A JSON array of rewards, or NDJSON (one reward object a line)."""
    if text.lstrip().startswith("["):
        items = parse_json(text, "request body")
        if isinstance(items, list):
            return items
    return [parse_json(line, f"request body line {n}") for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _rewards(rpc: Rpc, services: Services) -> Callable:
    method = _servicer(rpc, services)

    async def handle(call: HttpCall) -> Response:
        items = _reward_items(await call.text())
        requests = []
        for i, item in enumerate(items):
            request = decision_pb2.RewardRequest()
            _parse(item, request, f"rewards[{i}]")
            _set(request, "loop", call.path_params["loop"], "path parameter 'loop'")
            requests.append(request)
        return message_response(await invoke(method, iter(requests)))

    return handle


def _export(rpc: Rpc, services: Services) -> Callable:
    method = _servicer(rpc, services)

    async def handle(call: HttpCall) -> Response:
        chunks: list[admin_pb2.ModelChunk] = await invoke(method, await _request(rpc, call))
        headers = {MODEL_SPEC_HEADER: quote(chunks[0].spec, safe=""), MODEL_VERSION_HEADER: str(chunks[0].version)}
        data = b"".join(chunk.data for chunk in chunks)
        return Response(data, media_type="application/octet-stream", headers=headers)

    return handle


def _import(rpc: Rpc, services: Services) -> Callable:
    method = _servicer(rpc, services)

    async def handle(call: HttpCall) -> Response:
        first = admin_pb2.ImportModelRequest()
        _bind_query(call, first)
        _bind_path(rpc, call, first)
        if first.data:
            raise HttpError(_INVALID, "query parameter 'data': the model's bytes are the body")
        first.data = await call.body()
        return message_response(await invoke(method, _once(first)))

    return handle


def _once(message: Message) -> Iterator[Message]:
    yield message


_HANDLERS = {"unary": _unary, "rewards": _rewards, "export": _export, "import": _import}


def routes(services: Services) -> list[BaseRoute]:
    """The routes of RPCS: one per path, its methods dispatched to their RPCs (so that a wrong method answers 405
    with every allowed one)."""
    api = services.api(error_response)
    by_path: dict[str, dict[str, Callable[[Request], Awaitable[Response]]]] = {}
    for rpc in RPCS:
        by_path.setdefault(rpc.path, {})[rpc.verb] = api.endpoint(
            _HANDLERS[rpc.kind](rpc, services),
            name=rpc.name,
            scope=DECIDE if rpc.service == _D else ADMIN,
            max_body=services.limits.max_model_bytes if rpc.kind == "import" else None,
        )
    return [
        Route(path.replace("{loop}", "{loop:name}"), _dispatch(endpoints), methods=list(endpoints))
        for path, endpoints in by_path.items()
    ]


class _NameConvertor(StringConvertor):
    """A loop name: no ':', so that `/v1/loops/{loop}` does not match `/v1/loops/default:rank` (a custom method)."""

    regex = "[^/:]+"


register_url_convertor("name", _NameConvertor())


def _dispatch(endpoints: dict[str, Callable[[Request], Awaitable[Response]]]) -> Callable:
    async def endpoint(request: Request) -> Response:
        return await endpoints["GET" if request.method == "HEAD" else request.method](request)

    return endpoint
