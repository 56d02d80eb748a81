"""The image's health check: exit 0 when the gRPC health service of `nextbest serve` answers SERVING.

It asks 127.0.0.1:50051 (the image's port), or the address in $NEXTBEST_HEALTH_ADDRESS, over plaintext; health
checking needs no API key. A server that serves TLS needs a health check of its own (e.g. grpc_health_probe).
"""

from __future__ import annotations

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main() -> int:
    address = os.environ.get("NEXTBEST_HEALTH_ADDRESS", "127.0.0.1:50051")
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
        except grpc.RpcError as e:
            print(f"{address}: {e.code().name}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"{address}: {status}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
