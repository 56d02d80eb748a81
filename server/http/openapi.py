"""The OpenAPI 3.1 document of nextbest's JSON API, made from the route table (jsonapi.RPCS) and the messages'
descriptors: what /openapi.json serves."""

from __future__ import annotations

import re
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from nextbest.server.http.jsonapi import MODEL_SPEC_HEADER, MODEL_VERSION_HEADER, RPCS, Rpc

_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.CPPTYPE_INT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.CPPTYPE_UINT32: {"type": "integer", "format": "uint32"},
    # 64-bit integers are strings in protobuf's JSON mapping (numbers are accepted too)
    FieldDescriptor.CPPTYPE_INT64: {"type": ["string", "integer"], "format": "int64"},
    FieldDescriptor.CPPTYPE_UINT64: {"type": ["string", "integer"], "format": "uint64"},
    FieldDescriptor.CPPTYPE_DOUBLE: {"type": "number", "format": "double"},
    FieldDescriptor.CPPTYPE_FLOAT: {"type": "number", "format": "float"},
    FieldDescriptor.CPPTYPE_BOOL: {"type": "boolean"},
}
ERROR = "Error"
_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "code": {"type": "string", "description": "the gRPC status code's name, e.g. INVALID_ARGUMENT"},
        "message": {"type": "string", "description": "what is wrong, naming the field"},
    },
    "required": ["code", "message"],
}


def _ref(descriptor: Descriptor) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{descriptor.full_name}"}


class _Schemas:
    """The component schemas of the messages referred to so far."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {ERROR: _ERROR_SCHEMA}

    def message(self, descriptor: Descriptor) -> dict[str, Any]:
        """A reference to the schema of `descriptor` (added, with the messages it refers to, on first use)."""
        if descriptor.full_name not in self.schemas:
            self.schemas[descriptor.full_name] = {}  # before its fields: messages may refer to themselves
            properties = {field.json_name: self.field(field) for field in descriptor.fields}
            self.schemas[descriptor.full_name] = {"type": "object", "properties": properties}
        return _ref(descriptor)

    def field(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value = field.message_type.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self.single(value)}
        if field.is_repeated:
            return {"type": "array", "items": self.single(field)}
        return self.single(field)

    def single(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.message_type is not None:
            return self.message(field.message_type)
        if field.enum_type is not None:
            return {"type": "string", "enum": list(field.enum_type.values_by_name)}
        if field.type == FieldDescriptor.TYPE_BYTES:
            return {"type": "string", "contentEncoding": "base64"}
        if field.cpp_type == FieldDescriptor.CPPTYPE_STRING:
            return {"type": "string"}
        return dict(_SCALARS[field.cpp_type])


def _field_at(descriptor: Descriptor, path: str) -> FieldDescriptor:
    *parents, name = path.split(".")
    for parent in parents:
        descriptor = descriptor.fields_by_name[parent].message_type
    return descriptor.fields_by_name[name]


def _parameters(rpc: Rpc, schemas: _Schemas) -> list[dict[str, Any]]:
    request = rpc.descriptor.input_type
    in_path = re.findall(r"{(\w+)}", rpc.path)
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": schemas.single(_field_at(request, rpc.field_of(name)))}
        for name in in_path
    ]
    if rpc.body is None:  # the other scalar fields come from the query string
        bound = {rpc.field_of(name) for name in in_path}
        for field in request.fields:
            scalar = field.message_type is None and not field.is_repeated and field.type != FieldDescriptor.TYPE_BYTES
            if scalar and field.name not in bound:
                parameters.append({"name": field.name, "in": "query", "schema": schemas.single(field)})
    return parameters


def _request_body(rpc: Rpc, schemas: _Schemas) -> dict[str, Any] | None:
    request = rpc.descriptor.input_type
    if rpc.kind == "import":
        return {"required": True, "content": {"application/octet-stream": {"schema": {"type": "string"}}}}
    if rpc.kind == "rewards":
        items = {"type": "array", "items": schemas.message(request)}
        content = {"application/json": {"schema": items}, "application/x-ndjson": {"schema": schemas.message(request)}}
        return {"required": True, "content": content}
    if rpc.body is None:
        return None
    target = request if rpc.body == "*" else request.fields_by_name[rpc.body].message_type
    return {"content": {"application/json": {"schema": schemas.message(target)}}}


def _responses(rpc: Rpc, schemas: _Schemas) -> dict[str, Any]:
    error = {
        "description": "an error",
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR}"}}},
    }
    if rpc.kind == "export":
        ok = {
            "description": "the model's bytes",
            "headers": {
                MODEL_SPEC_HEADER: {"description": "its policy spec, percent-encoded", "schema": {"type": "string"}},
                MODEL_VERSION_HEADER: {"description": "its version", "schema": {"type": "integer"}},
            },
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        }
    else:
        output = schemas.message(rpc.descriptor.output_type)
        ok = {"description": "OK", "content": {"application/json": {"schema": output}}}
    return {"200": ok, "default": error}


def document() -> dict[str, Any]:
    """The OpenAPI document of every route of RPCS."""
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for rpc in RPCS:
        operation: dict[str, Any] = {
            "operationId": rpc.method,
            "tags": [rpc.service],
            "summary": f"gRPC /{rpc.descriptor.containing_service.full_name}/{rpc.method}",
            "parameters": _parameters(rpc, schemas),
            "responses": _responses(rpc, schemas),
        }
        body = _request_body(rpc, schemas)
        if body is not None:
            operation["requestBody"] = body
        paths.setdefault(rpc.path, {})[rpc.verb.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "nextbest JSON API",
            "version": "v1",
            "description": "Every RPC of nextbest.v1.DecisionService and AdminService over HTTP; bodies in "
            "protobuf's canonical JSON mapping. API keys: `Authorization: Bearer KEY` or "
            "`Ocp-Apim-Subscription-Key: KEY` (scope decide for DecisionService, admin for AdminService).",
        },
        "paths": paths,
        "components": {
            "schemas": schemas.schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "subscriptionKey": {"type": "apiKey", "in": "header", "name": "Ocp-Apim-Subscription-Key"},
            },
        },
        "security": [{"bearer": []}, {"subscriptionKey": []}],
    }
