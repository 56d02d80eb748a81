"""The HTTP side of `nextbest bench --http`: keep-alive HTTP/1.1 connections on asyncio streams, sending the
bench's Rank and Reward calls to the JSON API the way its gRPC side sends them (the same callable shape)."""

from __future__ import annotations

import asyncio
import json
import time

import grpc
from google.protobuf import json_format

from nextbest.v1 import decision_pb2


class HttpCallError(Exception):
    """A call that failed, with the gRPC status code its error body names (like grpc.aio.AioRpcError.code())."""

    def __init__(self, code: grpc.StatusCode) -> None:
        super().__init__(code.name)
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


def _code_of(status: int, body: bytes) -> grpc.StatusCode:
    try:
        return grpc.StatusCode[json.loads(body)["code"]]
    except (ValueError, KeyError, TypeError):
        return grpc.StatusCode.UNKNOWN if status < 500 else grpc.StatusCode.INTERNAL


class Connections:
    """Keep-alive connections to `host:port`, one per call in flight (HTTP/1.1 does not multiplex): a call takes
    the idle one used last or opens one, and gives it back when the answer has been read. A connection idle for
    `IDLE_SECONDS` is closed rather than reused: the server may be closing it (uvicorn: after 5 s)."""

    IDLE_SECONDS = 4.0

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []

    async def _take(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        now = time.monotonic()
        while self._idle:
            reader, writer, since = self._idle.pop()
            if now - since < self.IDLE_SECONDS:
                return reader, writer
            writer.close()
        return await asyncio.open_connection(self._host, self._port)

    async def post(self, path: str, body: bytes, timeout: float) -> None:
        """POST `body` (JSON) to `path`; HttpCallError unless the answer is 200."""
        head = f"POST {path} HTTP/1.1\r\nHost: {self._host}\r\nContent-Type: application/json\r\n"
        writer = None
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await self._take()
                writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
                status = int((await reader.readline()).split()[1])
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                answer = await reader.readexactly(length)
        except (TimeoutError, OSError, ValueError, IndexError, asyncio.IncompleteReadError) as e:
            if writer is not None:
                writer.close()
            timed_out = isinstance(e, TimeoutError)
            raise HttpCallError(
                grpc.StatusCode.DEADLINE_EXCEEDED if timed_out else grpc.StatusCode.UNAVAILABLE
            ) from None
        self._idle.append((reader, writer, time.monotonic()))
        if status != 200:
            raise HttpCallError(_code_of(status, answer))

    def close(self) -> None:
        for _, writer, _ in self._idle:
            writer.close()
        self._idle.clear()


class Call:
    """A Rank or Reward of the bench over HTTP: `await call((path, body), timeout=...)`, as a gRPC callable."""

    def __init__(self, connections: Connections) -> None:
        self._connections = connections

    async def __call__(self, payload: tuple[str, bytes], timeout: float) -> None:
        await self._connections.post(*payload, timeout=timeout)


def rank_json(serialized: bytes) -> bytes:
    """The JSON body of a serialized RankRequest, its event id left for `with_event_id`."""
    request = decision_pb2.RankRequest.FromString(serialized)
    request.ClearField("event_id")
    return json.dumps(json_format.MessageToDict(request), separators=(",", ":")).encode()


def with_event_id(body: bytes, event_id: str) -> bytes:
    """A JSON object's bytes with an `eventId` member first (the event ids of the bench need no escaping)."""
    return b'{"eventId":"' + event_id.encode() + (b'",' + body[1:] if body != b"{}" else b'"}')
