"""A small Python client for nextbest, for users and tests.

    from nextbest.client import Client, action

    with Client("127.0.0.1:50051") as nb:
        r = nb.rank(
            context={"user": {"segment": "student", "visits": 3}},
            actions=[action("welcome-email", "email"), action("app-tip", "push", {"offer": {"kind": "tip"}})],
        )
        nb.reward(r.event_id, 1.0)

Plain dicts become Features: numbers are numeric features, strings are
categorical (`name=value`), and a list of strings under "tokens" is a bag of words.

A server with API keys wants `Client(target, api_key="...")`; one serving TLS
wants `tls=True` (the system's CA certificates) or `ca_cert=` (PEM bytes or a
file), and for mutual TLS also `client_cert=` and `client_key=`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import grpc

from nextbest.v1 import admin_pb2, admin_pb2_grpc, decision_pb2, decision_pb2_grpc, types_pb2

LoopConfig = types_pb2.LoopConfig
LearningMode = types_pb2.LearningMode
RewardAggregation = types_pb2.RewardAggregation
FeaturesInput = types_pb2.Features | Mapping[str, Any]


def features(values: FeaturesInput) -> types_pb2.Features:
    """Features from a dict: numbers → numeric, strings → categorical, "tokens": [str] → tokens."""
    if isinstance(values, types_pb2.Features):
        return values
    out = types_pb2.Features()
    for name, value in values.items():
        if name == "tokens" and not isinstance(value, str):
            out.tokens.extend(value)
        elif isinstance(value, bool | str):
            out.categorical[name] = str(value)
        elif isinstance(value, int | float):
            out.numeric[name] = float(value)
        else:
            raise TypeError(f"feature {name!r}: expected a number, a string or a token list, got {type(value)}")
    return out


def namespaces(values: Mapping[str, FeaturesInput] | None) -> dict[str, types_pb2.Features]:
    """A namespace → Features map from dicts."""
    return {ns: features(v) for ns, v in (values or {}).items()}


def action(action_id: str, channel: str = "", features: Mapping[str, FeaturesInput] | None = None) -> types_pb2.Action:
    """An Action with its channel and features by namespace."""
    return types_pb2.Action(id=action_id, channel=channel, features=namespaces(features))


Pem = bytes | str | os.PathLike[str]


def slot(
    slot_id: str,
    features: Mapping[str, FeaturesInput] | None = None,
    *,
    baseline: str = "",
    excluded: Iterable[str] = (),
) -> decision_pb2.Slot:
    """A slot of a multi-slot decision: its id, features, baseline action id and the actions it must not take."""
    return decision_pb2.Slot(
        id=slot_id, features=namespaces(features), baseline_action_id=baseline, excluded_action_ids=list(excluded)
    )


def _pem(value: Pem | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    with open(value, "rb") as f:
        return f.read()


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


class _BearerKey(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds `authorization: Bearer <key>` to the metadata of every call."""

    def __init__(self, key: str) -> None:
        self._header = ("authorization", f"Bearer {key}")

    def _with_key(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = (*(details.metadata or ()), self._header)
        return _CallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            details.wait_for_ready,
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._with_key(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._with_key(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return continuation(self._with_key(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(self._with_key(client_call_details), request_iterator)


def open_channel(
    target: str,
    *,
    api_key: str | None = None,
    tls: bool = False,
    ca_cert: Pem | None = None,
    client_cert: Pem | None = None,
    client_key: Pem | None = None,
) -> grpc.Channel:
    """A channel to a nextbest server: TLS when `tls` or any certificate is given (`ca_cert`: the CA that
    signed the server's certificate, else the system's; `client_cert` and `client_key` for mutual TLS),
    sending `api_key` with every call. PEM values are bytes or file paths."""
    if tls or ca_cert is not None or client_cert is not None:
        credentials = grpc.ssl_channel_credentials(_pem(ca_cert), _pem(client_key), _pem(client_cert))
        channel = grpc.secure_channel(target, credentials)
    else:
        channel = grpc.insecure_channel(target)
    return grpc.intercept_channel(channel, _BearerKey(api_key)) if api_key else channel


class Client:
    """Blocking client of DecisionService and AdminService. Errors raise grpc.RpcError.

    `api_key`, `tls`, `ca_cert`, `client_cert` and `client_key` go to `open_channel`, unless a `channel` is given.
    """

    def __init__(
        self,
        target: str = "127.0.0.1:50051",
        *,
        channel: grpc.Channel | None = None,
        timeout: float | None = 30.0,
        **access: Any,
    ) -> None:
        self.channel = channel or open_channel(target, **access)
        self.decisions = decision_pb2_grpc.DecisionServiceStub(self.channel)
        self.admin = admin_pb2_grpc.AdminServiceStub(self.channel)
        self.timeout = timeout

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the server accepts connections."""
        grpc.channel_ready_future(self.channel).result(timeout=timeout)

    # decisions

    def rank(
        self,
        actions: Iterable[types_pb2.Action],
        context: Mapping[str, FeaturesInput] | None = None,
        *,
        loop: str = "",
        event_id: str = "",
        excluded: Iterable[str] = (),
        deferred: bool = False,
        subject_id: str = "",
    ) -> decision_pb2.RankResponse:
        request = decision_pb2.RankRequest(
            loop=loop,
            event_id=event_id,
            context=namespaces(context),
            actions=list(actions),
            excluded_action_ids=list(excluded),
            deferred=deferred,
            subject_id=subject_id,
        )
        return self.decisions.Rank(request, timeout=self.timeout)

    def rank_multi_slot(
        self,
        actions: Iterable[types_pb2.Action],
        slots: Iterable[decision_pb2.Slot],
        context: Mapping[str, FeaturesInput] | None = None,
        *,
        loop: str = "",
        event_id: str = "",
        deferred: bool = False,
        subject_id: str = "",
    ) -> decision_pb2.RankMultiSlotResponse:
        """Fill every slot (see `slot`) in one decision: answers each slot's action, no action in two slots."""
        request = decision_pb2.RankMultiSlotRequest(
            loop=loop,
            event_id=event_id,
            subject_id=subject_id,
            context=namespaces(context),
            actions=list(actions),
            slots=list(slots),
            deferred=deferred,
        )
        return self.decisions.RankMultiSlot(request, timeout=self.timeout)

    def rank_batch(self, requests: Iterable[decision_pb2.RankRequest]) -> list[decision_pb2.RankBatchItem]:
        """Rank many requests in one call (at most 1,000); one item per request, in order: its `response`, or
        its `error` (code, message naming requests[i]) when that request alone failed. Give each request an
        event_id to make a retry of the batch safe."""
        request = decision_pb2.RankBatchRequest(requests=list(requests))
        return list(self.decisions.RankBatch(request, timeout=self.timeout).items)

    def reward(self, event_id: str, value: float, *, loop: str = "", reward_id: str = "", slot_id: str = "") -> bool:
        """Report a reward (for one slot of a multi-slot decision with `slot_id`); returns True when this reward_id
        was already accepted."""
        request = decision_pb2.RewardRequest(
            loop=loop, event_id=event_id, value=value, reward_id=reward_id, slot_id=slot_id
        )
        return self.decisions.Reward(request, timeout=self.timeout).duplicate

    def activate(self, event_id: str, *, loop: str = "", slot_id: str = "") -> bool:
        """Activate a deferred decision (one slot of a multi-slot one with `slot_id`); returns True when it was
        already activated."""
        request = decision_pb2.ActivateRequest(loop=loop, event_id=event_id, slot_id=slot_id)
        return self.decisions.Activate(request, timeout=self.timeout).duplicate

    def reward_stream(self, rewards: Iterable[decision_pb2.RewardRequest]) -> decision_pb2.RewardStreamSummary:
        return self.decisions.RewardStream(iter(rewards), timeout=self.timeout)

    # administration

    def create_loop(self, name: str, **config: Any) -> types_pb2.LoopConfig:
        """Create a loop; keyword arguments are LoopConfig fields (unset ones take the defaults)."""
        request = admin_pb2.CreateLoopRequest(config=LoopConfig(name=name, **config))
        return self.admin.CreateLoop(request, timeout=self.timeout)

    def get_loop(self, name: str) -> types_pb2.LoopConfig:
        return self.admin.GetLoop(admin_pb2.GetLoopRequest(loop=name), timeout=self.timeout)

    def list_loops(self) -> list[types_pb2.LoopConfig]:
        return list(self.admin.ListLoops(admin_pb2.ListLoopsRequest(), timeout=self.timeout).loops)

    def update_loop(self, name: str, **changes: Any) -> types_pb2.LoopConfig:
        """Change some fields of a loop's config, keeping the others (fails if it changed meanwhile)."""
        config = self.get_loop(name)
        for field, value in changes.items():
            setattr(config, field, value)
        return self.admin.UpdateLoop(admin_pb2.UpdateLoopRequest(config=config), timeout=self.timeout)

    def delete_loop(self, name: str) -> None:
        self.admin.DeleteLoop(admin_pb2.DeleteLoopRequest(loop=name), timeout=self.timeout)

    def stats(self, loop: str = "default") -> admin_pb2.LoopStats:
        return self.admin.GetStats(admin_pb2.GetStatsRequest(loop=loop), timeout=self.timeout)

    # policies and models

    def set_policy(self, loop: str, spec: str, *, shadow: bool = False) -> types_pb2.LoopConfig:
        """Make `spec` the loop's live policy (a shadowed spec is promoted warm), or with `shadow=True` let it
        learn in the live policy's shadow."""
        mode = admin_pb2.POLICY_MODE_SHADOW if shadow else admin_pb2.POLICY_MODE_REPLACE
        request = admin_pb2.SetPolicyRequest(loop=loop, spec=spec, mode=mode)
        return self.admin.SetPolicy(request, timeout=self.timeout)

    def promote(self, loop: str, shadow: str) -> types_pb2.LoopConfig:
        """Make a shadow policy live, with what it has learned."""
        request = admin_pb2.PromotePolicyRequest(loop=loop, shadow=shadow)
        return self.admin.PromotePolicy(request, timeout=self.timeout)

    def list_models(self, loop: str) -> list[admin_pb2.ModelInfo]:
        """The kept model versions, oldest first."""
        return list(self.admin.ListModels(admin_pb2.ListModelsRequest(loop=loop), timeout=self.timeout).models)

    def rollback(self, loop: str, version: int) -> admin_pb2.ModelInfo:
        """Publish a kept version's model again as the newest version."""
        request = admin_pb2.RollbackRequest(loop=loop, version=version)
        return self.admin.Rollback(request, timeout=self.timeout)

    def export_model(self, loop: str, *, version: int = 0) -> ExportedModel:
        """The live model (or a kept `version`) with its spec."""
        chunks = self.admin.ExportModel(admin_pb2.ExportModelRequest(loop=loop, version=version), timeout=self.timeout)
        spec, number, data = "", 0, bytearray()
        for chunk in chunks:
            if chunk.spec:
                spec, number = chunk.spec, chunk.version
            data += chunk.data
        return ExportedModel(spec, number, bytes(data))

    def import_model(self, loop: str, spec: str, data: bytes, *, chunk_size: int = 1 << 20) -> admin_pb2.ModelInfo:
        """Warm-start the loop from a model trained elsewhere (`spec` is the policy spec it was trained with)."""

        def requests() -> Iterator[admin_pb2.ImportModelRequest]:
            yield admin_pb2.ImportModelRequest(loop=loop, spec=spec, data=data[:chunk_size])
            for start in range(chunk_size, len(data), chunk_size):
                yield admin_pb2.ImportModelRequest(data=data[start : start + chunk_size])

        return self.admin.ImportModel(requests(), timeout=self.timeout)

    def evaluate(
        self, loop: str, specs: Iterable[str] = (), *, since: float = 0.0, until: float = 0.0
    ) -> admin_pb2.EvaluateResponse:
        """Off-policy evaluation of candidate specs on the loop's joined events (0: unbounded times)."""
        request = admin_pb2.EvaluateRequest(loop=loop, specs=list(specs), since=since, until=until)
        return self.admin.Evaluate(request, timeout=self.timeout)

    def set_contact_policy(self, spec: str) -> admin_pb2.ContactPolicy:
        """Replace the store's contact policy (JSON or TOML; empty: no rules)."""
        return self.admin.SetContactPolicy(admin_pb2.SetContactPolicyRequest(spec=spec), timeout=self.timeout)

    def get_contact_policy(self) -> admin_pb2.ContactPolicy:
        return self.admin.GetContactPolicy(admin_pb2.GetContactPolicyRequest(), timeout=self.timeout)


class ExportedModel(NamedTuple):
    """A model's bytes with the policy spec that reads them."""

    spec: str
    version: int
    data: bytes
