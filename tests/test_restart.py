"""A restart on the same store keeps loops, decisions, the learner's position and its model."""

import pytest

from nextbest.client import action
from nextbest.server.store import Stream
from nextbest.testing import running_server, wait_for
from nextbest.v1 import records_pb2

ACTIONS = [action("a", "email"), action("b", "push"), action("c", "sms")]
POLICY = "vw:--cb_explore_adf --epsilon 0.1 -q ::"


@pytest.mark.slow
def test_restart_keeps_everything_and_relearns_nothing(tmp_path):
    store = tmp_path / "store"
    with running_server(store) as (server, client):
        client.create_loop("r", policy=POLICY, reward_wait_seconds=0.05, publish_interval_seconds=0.05)
        first = {}
        for i in range(200):
            r = client.rank(ACTIONS, {"u": {"k": f"v{i % 3}"}}, loop="r", event_id=f"e{i}")
            first[r.event_id] = r
            client.reward(r.event_id, 1.0 if r.chosen_action_id == "a" else 0.0, loop="r")
        stats = wait_for(lambda: (s := client.stats("r")).learned == 200 and s.joined == 200 and s)
        live = server.store.models.live("r")
        joiner_stats = (stats.decisions, stats.rewards, stats.joined, stats.default_rewarded)

    with running_server(store) as (server, client):
        assert {c.name for c in client.list_loops()} == {"default", "r"}
        assert client.get_loop("r").policy == POLICY
        again = client.stats("r")
        assert (again.decisions, again.rewards, again.joined, again.default_rewarded) == joiner_stats
        assert again.learned == 200 and again.model_version == str(live.version)
        restored = server.store.models.live("r")
        assert (restored.version, restored.data, restored.learned_seq) == (live.version, live.data, 200)
        for event_id, response in first.items():  # retries answer from the log, whatever the model now
            assert client.rank(ACTIONS, loop="r", event_id=event_id) == response
        assert server.store.log.last_seq(Stream.DECISIONS, "r") == 200
        # the learner resumes after event 200: new traffic is learned once
        for i in range(200, 220):
            client.reward(client.rank(ACTIONS, loop="r", event_id=f"e{i}").event_id, 1.0, loop="r")
        wait_for(lambda: client.stats("r").learned == 220)
        joined = [records_pb2.JoinedEvent.FromString(d) for _, d in server.store.log.read(Stream.JOINED, "r", 0, 1000)]
        assert [j.decision.event_id for j in joined] == [f"e{i}" for i in range(220)]
