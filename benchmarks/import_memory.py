"""Peak memory of a serving worker receiving a large ImportModel of junk.

    python -m benchmarks.import_memory --megabytes 256 [-- SERVE FLAGS, e.g. --max-model-bytes 1G]

Starts `nextbest serve` on a temporary store, streams `--megabytes` chunks of 1 MiB of junk to ImportModel
for the loop `default`, and prints the outcome and the worker's peak resident memory (VmHWM) before and
after the call.
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc

from nextbest.client import Client
from nextbest.server.config import DEFAULT_POLICY
from nextbest.testing import child_commands
from nextbest.v1 import admin_pb2

CHUNK = b"\x07" * (1 << 20)


def peak_mb(pid: int) -> int:
    return int(re.search(r"VmHWM:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1)) // 1024


def requests(megabytes: int) -> Iterator[admin_pb2.ImportModelRequest]:
    yield admin_pb2.ImportModelRequest(loop="default", spec=DEFAULT_POLICY, data=CHUNK)
    for _ in range(megabytes - 1):
        yield admin_pb2.ImportModelRequest(data=CHUNK)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=int, default=256, help="MiB of junk to send (default: 256)")
    parser.add_argument("serve_flags", nargs="*", help="more flags of `nextbest serve`, after --")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as store:
        command = [sys.executable, "-m", "nextbest", "--log-level", "WARNING", "serve", "--store", store, "--port", "0"]
        server = subprocess.Popen([*command, *args.serve_flags], stdout=subprocess.PIPE, text=True)
        try:
            address = re.search(r"serving on (\S+)", server.stdout.readline()).group(1)
            (worker,) = [p for p, command in child_commands(server.pid).items() if "spawn_main" in command]
            with Client(address) as client:
                client.list_loops()
                before, started = peak_mb(worker), time.monotonic()
                try:
                    client.admin.ImportModel(requests(args.megabytes), timeout=300)
                    outcome = "OK"
                except grpc.RpcError as e:
                    outcome = f"{e.code().name}: {e.details()[:90]}"
                seconds, after = time.monotonic() - started, peak_mb(worker)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)
    growth = after - before
    print(f"{args.megabytes} MiB: {outcome} ({seconds:.1f} s); worker peak RSS {before} -> {after} MB (+{growth})")


if __name__ == "__main__":
    main()
