"""ImportModel against a real server: refused from its first message when it cannot succeed, bounded in size,
and streamed to a temporary file rather than held in memory."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import pytest

from nextbest.client import Client
from nextbest.server.auth import ApiKeys
from nextbest.server.config import Limits
from nextbest.testing import running_server
from nextbest.v1 import admin_pb2

CHUNK = b"\0" * (1 << 20)
CHUNKS = 256  # 256 MB if all were sent
PERSONALIZING = "vw:--cb_explore_adf --epsilon 0.05 -q ::"


class Counted:
    """The requests of an import of `CHUNKS` chunks of junk, counting how many the client took to send."""

    def __init__(self, loop: str, spec: str = PERSONALIZING) -> None:
        self.loop, self.spec, self.sent = loop, spec, 0

    def __iter__(self) -> Iterator[admin_pb2.ImportModelRequest]:
        self.sent = 1
        yield admin_pb2.ImportModelRequest(loop=self.loop, spec=self.spec, data=CHUNK)
        for _ in range(CHUNKS - 1):
            self.sent += 1
            yield admin_pb2.ImportModelRequest(data=CHUNK)


def refusal(client: Client, requests: Counted) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        client.admin.ImportModel(iter(requests), timeout=120)
    return err.value.code(), err.value.details()


def test_an_import_for_an_unknown_loop_is_refused_after_its_first_message(served):
    _, client = served
    requests = Counted("nope")
    assert refusal(client, requests) == (grpc.StatusCode.NOT_FOUND, "loop: no loop named 'nope'")
    assert requests.sent < CHUNKS // 4  # gRPC's flow control lets a few more through, never the 256 MB


def test_an_import_without_a_spec_is_refused_after_its_first_message(served):
    _, client = served
    requests = Counted("default", spec=" ")
    assert refusal(client, requests) == (grpc.StatusCode.INVALID_ARGUMENT, "spec: must not be empty")
    assert requests.sent < CHUNKS // 4


def test_an_import_over_the_cap_is_refused_when_it_passes_the_cap(tmp_path):
    limits = Limits(max_model_bytes=8 << 20)
    with running_server(tmp_path / "store", limits=limits, train=False) as (_, client):
        requests = Counted("default")
        code, details = refusal(client, requests)
        assert (code, details) == (grpc.StatusCode.RESOURCE_EXHAUSTED, f"data: model larger than {8 << 20} bytes")
        assert requests.sent < 8 + CHUNKS // 4
        assert not client.admin.ListModels(admin_pb2.ListModelsRequest(loop="default")).models


def test_the_default_cap_is_64_mib():
    assert Limits().max_model_bytes == 64 << 20


def test_a_caller_without_the_admin_scope_is_refused_before_sending_the_model(tmp_path):
    keys = ApiKeys.parse(json.dumps({"decide-only-0123456789": ["decide"]}), "test")
    with (
        running_server(tmp_path / "store", api_keys=keys, train=False) as (server, _),
        Client(server.address, api_key="decide-only-0123456789") as client,
    ):
        requests = Counted("default")
        code, _ = refusal(client, requests)
        assert code == grpc.StatusCode.PERMISSION_DENIED and requests.sent < CHUNKS // 4
