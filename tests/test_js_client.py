"""The JavaScript client (clients/javascript, plain fetch) ranks and rewards over the JSON API of a real server."""

import json
import shutil
import subprocess
from pathlib import Path

import grpc
import pytest

from nextbest.server.store import Stream
from nextbest.testing import running_server, wait_for
from nextbest.v1 import records_pb2

EXAMPLE = Path(__file__).resolve().parent.parent / "clients" / "javascript" / "example.mjs"
NODE = shutil.which("node")


def node_major() -> int:
    out = subprocess.run([NODE, "--version"], capture_output=True, text=True, check=True).stdout
    return int(out.strip().lstrip("v").split(".")[0])


@pytest.mark.slow
@pytest.mark.skipif(NODE is None, reason="no `node` on PATH: the JavaScript client needs Node 18+ (global fetch)")
def test_the_javascript_client_ranks_and_rewards_over_http(tmp_path):
    if node_major() < 18:
        pytest.skip("the JavaScript client needs Node 18+ (global fetch)")
    with running_server(tmp_path / "store", http_port=0) as (server, client):
        run = subprocess.run(
            [NODE, str(EXAMPLE), f"http://127.0.0.1:{server.http_port}", "30"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        out = json.loads(run.stdout)
        assert len(out["decisions"]) == 30
        for decision in out["decisions"]:
            data = server.store.log.get(Stream.DECISIONS, "default", decision["eventId"])
            record = records_pb2.DecisionRecord.FromString(data)
            assert record.actions[record.chosen_index].id == decision["chosen"]
        # the bad request fails alone
        assert out["batched"] == ["js-batch-0", grpc.StatusCode.INVALID_ARGUMENT.value[0]]
        assert server.store.log.get(Stream.DECISIONS, "default", "js-batch-0") is not None
        wait_for(lambda: client.stats("default").rewards == 30)
        assert out["refused"] == {
            "status": 404,
            "code": "NOT_FOUND",
            "message": "NOT_FOUND: loop: no loop named 'no-such-loop'",
        }


@pytest.mark.slow
@pytest.mark.skipif(NODE is None, reason="no `node` on PATH: the JavaScript client needs Node 18+ (global fetch)")
def test_the_javascript_client_reports_an_answer_that_is_not_nextbests_json(tmp_path):
    if node_major() < 18:
        pytest.skip("the JavaScript client needs Node 18+ (global fetch)")
    script = tmp_path / "other.mjs"
    script.write_text(
        f"import {{ NextbestClient, NextbestError }} from {json.dumps(str(EXAMPLE.parent / 'nextbest.mjs'))};\n"
        "try { await new NextbestClient(process.argv[2]).stats('default'); } catch (error) {\n"
        "  console.log(JSON.stringify({ nextbest: error instanceof NextbestError, status: error.status, "
        "code: error.code }));\n}\n"
    )
    with running_server(tmp_path / "store", metrics_port=0) as (server, _):  # an HTTP server that is not nextbest's
        run = subprocess.run(
            [NODE, str(script), f"http://127.0.0.1:{server.metrics_port}"], capture_output=True, text=True, timeout=60
        )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"nextbest": True, "status": 404, "code": "UNKNOWN"}
