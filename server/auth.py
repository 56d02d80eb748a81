"""API keys with scopes, checked on every call by a server interceptor.

Callers send `authorization: Bearer <key>` metadata (over HTTP, server/http: the header `Authorization: Bearer
<key>` or `Ocp-Apim-Subscription-Key: <key>`, checked with `refusal` as here). The scope `decide` allows
DecisionService (Rank, RankMultiSlot, RankBatch, Reward, Activate, RewardStream); `admin` allows
AdminService (and any other service but these). Health checking and
reflection stay open. A missing or unknown key answers UNAUTHENTICATED; a
known key without the method's scope answers PERMISSION_DENIED.

Keys come from a JSON object mapping each key to its scopes, e.g.
`{"frontend-7f3a9c1e": ["decide"], "ops-91c2d4b8e0f7": ["decide", "admin"]}`,
in a file (`nextbest serve --api-keys FILE`) or in the environment variable
NEXTBEST_API_KEYS. A key has at least 16 characters and appears once (JSON
would otherwise silently keep its last scopes); a key file that its group or
others may read is warned about. Only the keys' SHA-256 digests are kept,
compared in constant time; no message or log line ever contains a key.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import grpc

from nextbest.v1 import decision_pb2

ENV_VAR = "NEXTBEST_API_KEYS"
DECIDE = "decide"
ADMIN = "admin"
SCOPES = (DECIDE, ADMIN)
MIN_KEY_LENGTH = 16
_DECISION_SERVICE = decision_pb2.DESCRIPTOR.services_by_name["DecisionService"].full_name
_OPEN_SERVICES = frozenset(
    {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection"}
)

log = logging.getLogger("nextbest")


class _Pairs(list):
    """A JSON object as the list of its (name, value) pairs, duplicates included."""


class ApiKeyError(ValueError):
    """API keys that cannot be used; the message locates the problem without quoting any key."""


@dataclass(frozen=True, repr=False)
class ApiKeys:
    """A set of API keys and their scopes, held as SHA-256 digests."""

    _digests: tuple[tuple[bytes, frozenset[str]], ...]

    @classmethod
    def parse(cls, text: str, source: str) -> ApiKeys:
        """Keys from their JSON text; ApiKeyError naming `source` and the key's position when invalid."""
        try:
            raw = json.loads(text, object_pairs_hook=_Pairs)  # not a dict: a duplicated key must be seen
        except json.JSONDecodeError as e:
            raise ApiKeyError(f"{source}: not valid JSON (line {e.lineno}, column {e.colno})") from None
        if not isinstance(raw, _Pairs) or not raw:
            raise ApiKeyError(f'{source}: expected a JSON object of keys and their scopes, e.g. {{"KEY": ["decide"]}}')
        digests = []
        first_at: dict[str, int] = {}
        for i, (key, scopes) in enumerate(raw, 1):
            where = f"{source}: key #{i}"
            if not all("!" <= c <= "~" for c in key) or len(key) < MIN_KEY_LENGTH:
                raise ApiKeyError(
                    f"{where}: a key must be printable ASCII without spaces, at least {MIN_KEY_LENGTH} characters"
                )
            if key in first_at:
                raise ApiKeyError(f"{where}: the same key as key #{first_at[key]}; give each key once")
            first_at[key] = i
            if not (isinstance(scopes, list) and scopes and all(isinstance(s, str) for s in scopes)):
                raise ApiKeyError(f"{where}: scopes must be a non-empty list of {' and '.join(map(repr, SCOPES))}")
            unknown = sorted(set(scopes) - set(SCOPES))
            if unknown:
                raise ApiKeyError(f"{where}: unknown scope {unknown[0]!r}; known: {', '.join(SCOPES)}")
            digests.append((_digest(key), frozenset(scopes)))
        return cls(tuple(digests))

    @classmethod
    def load(cls, path: str | None, environ: Mapping[str, str] = os.environ) -> ApiKeys | None:
        """Keys from the file `path`, else from NEXTBEST_API_KEYS, else None (no keys configured)."""
        if path is not None:
            try:
                with open(path, encoding="utf-8") as f:
                    _warn_if_readable_by_others(path, os.fstat(f.fileno()).st_mode)
                    return cls.parse(f.read(), path)
            except (OSError, UnicodeDecodeError) as e:
                raise ApiKeyError(f"{path}: cannot read the API keys: {getattr(e, 'strerror', None) or e}") from None
        text = environ.get(ENV_VAR)
        return None if text is None else cls.parse(text, ENV_VAR)

    def scopes(self, key: str) -> frozenset[str] | None:
        """The scopes of `key`, or None when it is not one of these keys; takes the same time either way."""
        digest = _digest(key)
        found = None
        for known, scopes in self._digests:
            if hmac.compare_digest(digest, known):
                found = scopes
        return found

    def __len__(self) -> int:
        return len(self._digests)

    def __repr__(self) -> str:
        return f"<ApiKeys: {len(self)} keys>"


def _warn_if_readable_by_others(path: str, mode: int) -> None:
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "%s: the API key file is accessible to its group or others (mode %03o); chmod 600 it",
            path,
            stat.S_IMODE(mode),
        )


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def required_scope(method: str) -> str | None:
    """The scope a method (`/package.Service/Method`) needs, None for the open services."""
    service = method.lstrip("/").rpartition("/")[0]
    if service in _OPEN_SERVICES:
        return None
    return DECIDE if service == _DECISION_SERVICE else ADMIN


def is_loopback(host: str) -> bool:
    """Whether binding `host` serves this machine only."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_problem(host: str, keys: ApiKeys | None, insecure: bool) -> str | None:
    """Why the server must not bind `host` as configured, or None when it may."""
    if keys is None and not insecure and not is_loopback(host):
        return (
            f"no API keys configured: refusing to serve {host} without authentication; give --api-keys FILE "
            f"(or {ENV_VAR}), bind a loopback address, or pass --insecure to serve everyone anyway"
        )
    return None


def bearer_key(authorization: str) -> str | None:
    """The key of an `authorization` value `Bearer KEY`, None for any other."""
    scheme, _, key = authorization.partition(" ")
    return key.strip() if scheme.lower() == "bearer" else None


def _metadata_key(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    values = [value for key, value in metadata or () if key == "authorization"]
    if len(values) != 1 or not isinstance(values[0], str):
        return None
    return bearer_key(values[0])


def refusal(keys: ApiKeys, key: str | None, scope: str, method: str, how: str) -> tuple[grpc.StatusCode, str] | None:
    """Why a call of `method` (its name) that needs `scope` is refused with `key` (None: the caller sent none, and
    `how` says how to send one), or None when it may go on."""
    if key is None:
        return grpc.StatusCode.UNAUTHENTICATED, f"missing API key: send {how}"
    scopes = keys.scopes(key)
    if scopes is None:
        return grpc.StatusCode.UNAUTHENTICATED, "unknown API key"
    if scope not in scopes:
        return grpc.StatusCode.PERMISSION_DENIED, f"{method}: the API key lacks the scope {scope!r}"
    return None


def _refusal(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, details: str) -> grpc.RpcMethodHandler:
    """A handler of the same kind that answers `code` without reading (or parsing) the request."""

    def refuse(request: object, context: grpc.ServicerContext) -> None:
        context.abort(code, details)

    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(refuse)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(refuse)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(refuse)
    return grpc.stream_stream_rpc_method_handler(refuse)


class AuthInterceptor(grpc.ServerInterceptor):
    """Lets a call through only with a key that has the method's scope (see the module doc)."""

    def __init__(self, keys: ApiKeys) -> None:
        self._keys = keys

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        scope = required_scope(handler_call_details.method)
        if handler is None or scope is None:
            return handler
        key = _metadata_key(handler_call_details.invocation_metadata)
        method = handler_call_details.method.rsplit(".", 1)[-1]
        refused = refusal(self._keys, key, scope, method, "metadata 'authorization: Bearer KEY'")
        return handler if refused is None else _refusal(handler, *refused)
