"""RankBatch through a real server on LMDB: each request is decided, logged and answered exactly as Rank would
(the same record bytes, the same contacts), a bad request fails alone naming requests[i], a retried batch decides
nothing twice, every acknowledged decision survives SIGKILL; `nextbest rank-file` and the HTTP route on top."""

import hashlib
import json
import random
import signal
import threading

import grpc
import pytest
from test_crash import Server

from nextbest.cli import main
from nextbest.client import Client, action, namespaces
from nextbest.server.config import Limits
from nextbest.server.store import Stream, open_store
from nextbest.testing import FakeClock, http_call, running_server, wait_for
from nextbest.v1 import decision_pb2

SMS, EMAIL, NOTHING = action("sms-a", "sms"), action("email-a", "email"), action("nothing")
ACTIONS = [SMS, EMAIL, NOTHING, action("push-a", "push", {"offer": {"kind": "tip", "value": 2}})]
INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT.value[0], grpc.StatusCode.NOT_FOUND.value[0]


def requests(seed: int = 0, count: int = 12, prefix: str = "e") -> list[decision_pb2.RankRequest]:
    """Varied requests: two loops, subjects (each its own), exclusions, deferred decisions, some without event id
    only when `prefix` is empty."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        out.append(
            decision_pb2.RankRequest(
                loop=["", "other"][i % 2],
                event_id=f"{prefix}-{i}" if prefix else "",
                context=namespaces({"user": {"segment": rng.choice(["a", "b", "c"]), "visits": rng.randint(0, 9)}}),
                actions=ACTIONS,
                excluded_action_ids=["email-a"] if i % 3 == 0 else [],
                deferred=i % 4 == 1,
                subject_id=f"subject-{i}" if i % 3 != 2 else "",
            )
        )
    return out


def decisions(server, loop: str) -> list[bytes]:
    return [data for _, data in server.store.log.read(Stream.DECISIONS, loop, 0, 100_000)]


@pytest.fixture
def two_servers(tmp_path):
    """Two servers on their own stores, on one fake clock, each with the loop 'other'."""
    clock = FakeClock()
    with (
        running_server(tmp_path / "a", clock=clock) as (a, client_a),
        running_server(tmp_path / "b", clock=clock) as (b, client_b),
    ):
        for client in (client_a, client_b):
            client.create_loop("other")
        yield (a, client_a), (b, client_b)


def test_a_batch_logs_and_answers_each_decision_as_rank_does(two_servers):
    (single, one_by_one), (batched, batch) = two_servers
    ranked = [one_by_one.decisions.Rank(r) for r in requests()]
    items = batch.rank_batch(requests())
    assert [item.WhichOneof("result") for item in items] == ["response"] * len(ranked)
    assert [item.response for item in items] == ranked
    for loop in ("default", "other"):
        assert decisions(batched, loop) == decisions(single, loop)  # byte for byte
    for i in range(12):
        subject = f"subject-{i}"
        assert batched.store.subjects.get(subject) == single.store.subjects.get(subject), subject


def test_a_bad_request_fails_alone_naming_its_field(served):
    server, client = served
    client.create_loop("other")
    good = requests(count=3)
    duplicate = decision_pb2.RankRequest(event_id="dup", actions=[SMS, SMS])
    unknown_loop = decision_pb2.RankRequest(loop="nowhere", event_id="lost", actions=[SMS])
    items = client.rank_batch([good[0], duplicate, good[1], unknown_loop, good[2]])
    assert [item.WhichOneof("result") for item in items] == ["response", "error", "response", "error", "response"]
    assert items[1].error.code == INVALID
    assert items[1].error.message.startswith("requests[1].actions[1].id: duplicate action id")
    assert items[3].error.code == NOT_FOUND
    assert items[3].error.message.startswith("requests[3].loop: ")
    logged = {e for e in ("e-0", "e-2") if server.store.log.get(Stream.DECISIONS, "default", e)}
    assert logged == {"e-0", "e-2"} and server.store.log.get(Stream.DECISIONS, "other", "e-1")
    assert server.store.log.get(Stream.DECISIONS, "default", "dup") is None


def test_a_batch_is_refused_whole_when_empty_or_too_long(tmp_path):
    with running_server(tmp_path / "store", limits=Limits(max_batch_requests=3)) as (_, client):
        for batch, message in (
            ([], "requests: at least one"),
            (requests(count=4), "requests: 4 requests, more than 3"),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                client.rank_batch(batch)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert refused.value.details().startswith(message)


def test_a_retried_batch_answers_the_logged_decisions_and_logs_nothing_new(served):
    server, client = served
    client.create_loop("other")
    first = client.rank_batch(requests())
    logged = {loop: decisions(server, loop) for loop in ("default", "other")}
    client.set_policy("default", "vw:--cb_explore_adf --epsilon 0.9")  # new decisions would differ
    again = client.rank_batch(requests())
    assert again == first
    assert {loop: decisions(server, loop) for loop in ("default", "other")} == logged


def test_a_retried_decision_in_a_batch_records_no_other_contact(served):
    """A batch mixing a retry with new decisions changes the retried subject's history only as logged first:
    the retry names another subject now, who is not contacted."""
    server, client = served
    first = decision_pb2.RankRequest(event_id="once", actions=[SMS], subject_id="ann")
    client.rank_batch([first])
    history = server.store.subjects.get("ann")
    retry = decision_pb2.RankRequest(event_id="once", actions=[EMAIL], subject_id="bob")
    new = decision_pb2.RankRequest(event_id="new", actions=[SMS], subject_id="cy")
    items = client.rank_batch([retry, new])
    assert items[0].response.chosen_action_id == "sms-a"  # the logged decision
    assert server.store.subjects.get("bob") is None
    assert server.store.subjects.get("cy") is not None
    assert server.store.subjects.get("ann") == history


@pytest.mark.slow
def test_every_acknowledged_decision_of_a_batch_survives_sigkill(tmp_path):
    acknowledged: list[str] = []
    with (tmp_path / "server.log").open("w") as log:
        server = Server(tmp_path / "store", log)

        def send() -> None:
            with Client(server.address, timeout=30) as client:
                try:
                    for b in range(100_000):
                        batch = requests(seed=b, count=50, prefix=f"b{b}")
                        for request in batch:
                            request.loop = ""
                        client.rank_batch(batch)
                        acknowledged.extend(r.event_id for r in batch)
                except grpc.RpcError:  # the server went away
                    return

        sender = threading.Thread(target=send)
        sender.start()
        wait_for(lambda: len(acknowledged) >= 500, timeout=120, interval=0.001)
        server.stop(signal.SIGKILL)
        sender.join(timeout=60)
    with open_store(str(tmp_path / "store")) as store:
        missing = [e for e in acknowledged if store.log.get(Stream.DECISIONS, "default", e) is None]
    assert len(acknowledged) >= 500 and not missing


def test_the_http_route_ranks_a_batch(tmp_path):
    with running_server(tmp_path / "store", http_port=0) as (server, _):
        body = {
            "requests": [
                {"eventId": "h-0", "actions": [{"id": "a"}, {"id": "b"}]},
                {"eventId": "h-1", "actions": []},
            ]
        }
        answer = http_call(server.http_port, "POST", "/v1/rank:batch", body)
    assert answer.status == 200, answer.body
    first, second = answer.json()["items"]
    assert first["response"]["eventId"] == "h-0" and first["response"]["chosenActionId"] in ("a", "b")
    assert second["error"] == {"code": INVALID, "message": "requests[1].actions: at least one action is required"}


def write_lines(path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def test_rank_file_ranks_each_line_and_a_rerun_decides_nothing_twice(served, tmp_path, capsys):
    server, client = served
    client.create_loop("other")
    from google.protobuf import json_format

    lines = [json.dumps(json_format.MessageToDict(r)) for r in requests(count=7, prefix="")]
    lines.insert(3, "{not json")
    lines.insert(5, json.dumps({"eventId": "bad", "actions": [{"id": "x"}, {"id": "x"}]}))
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_lines(source, lines)
    target = ["--target", server.address]
    assert main(["rank-file", str(source), str(out), "--batch", "3", *target]) == 0
    printed = capsys.readouterr()
    assert "7 decisions, 2 errors, 0 lines already" in printed.out
    assert "rank-file: 3/9 lines, 0 errors" in printed.err  # progress after the first batch
    answers = [json.loads(line) for line in out.read_text().splitlines()]
    assert [a["line"] for a in answers] == list(range(1, 10))
    assert answers[3]["error"]["message"].startswith("not JSON")
    assert answers[5]["error"] == {"code": "INVALID_ARGUMENT", "message": "actions[1].id: duplicate action id 'x'"}
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    ranked = [a for a in answers if "response" in a]
    assert [a["response"]["eventId"] for a in ranked] == [f"{digest}-{a['line']}" for a in ranked]
    logged = {loop: decisions(server, loop) for loop in ("default", "other")}
    assert sum(map(len, logged.values())) == 7

    kept = out.read_text().splitlines(keepends=True)
    out.write_text("".join(kept[:4]) + kept[4][:10])  # a run that stopped mid-line
    assert main(["rank-file", str(source), str(out), *target]) == 0
    assert "4 lines already" in capsys.readouterr().out
    assert out.read_text().splitlines(keepends=True) == kept
    out.unlink()  # ranked again from the start: the same decisions, none logged twice
    assert main(["rank-file", str(source), str(out), "--batch", "100", *target]) == 0
    assert out.read_text().splitlines(keepends=True) == kept
    assert {loop: decisions(server, loop) for loop in ("default", "other")} == logged


def test_rank_file_sets_the_loop_of_requests_that_name_none(served, tmp_path, capsys):
    server, client = served
    client.create_loop("other")
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_lines(source, [json.dumps({"eventId": "x", "actions": [{"id": "a"}]})])
    assert main(["rank-file", str(source), str(out), "--loop", "other", "--target", server.address]) == 0
    assert server.store.log.get(Stream.DECISIONS, "other", "x") is not None
    assert main(["rank-file", str(source), str(out), "--batch", "0", "--target", server.address]) == 2


def test_a_full_store_refuses_a_batchs_new_decisions_in_their_items_and_answers_its_retries(tmp_path):
    bulky = {"u": {"tokens": [f"{i:03d}" + random.Random(i).randbytes(100).hex() for i in range(100)]}}
    options = {"store_options": {"map_size": 1 << 20}, "train": False}
    with running_server(tmp_path / "store", **options) as (server, client):
        acked = []
        for b in range(100):
            batch = [
                decision_pb2.RankRequest(event_id=f"b{b}-{i}", context=namespaces(bulky), actions=[SMS, EMAIL])
                for i in range(5)
            ]
            items = client.rank_batch(batch)
            if any(item.HasField("error") for item in items):
                break
            acked += [r.event_id for r in batch]
        else:
            raise AssertionError("the store took every batch")
        assert {item.error.code for item in items} == {grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]}
        assert items[0].error.message.startswith("requests[0].store full: ")
        retry = [decision_pb2.RankRequest(event_id=acked[0], actions=[SMS]), batch[0]]
        answered = client.rank_batch(retry)
        assert answered[0].response.event_id == acked[0] and answered[1].HasField("error")
        assert all(server.store.log.get(Stream.DECISIONS, "default", e) for e in acked)
