"""Retention deletes events older than retention_days once joined and learned; the store stays bounded."""

from nextbest.client import action
from nextbest.server.store import Stream
from nextbest.testing import running_server, wait_for

ACTIONS = [action("a", "email"), action("b", "push")]
DAY = 86400.0


def kept(server, stream, loop):
    return [seq for seq, _ in server.store.log.read(stream, loop, 0, 10**6)]


def test_old_events_are_deleted_after_they_are_learned(tmp_path, clock):
    with running_server(tmp_path / "s", clock=clock, retention_interval_seconds=0.05) as (server, client):
        client.create_loop("ret", retention_days=1, reward_wait_seconds=10, publish_interval_seconds=0.05)
        for i in range(20):
            client.reward(client.rank(ACTIONS, loop="ret", event_id=f"old{i}").event_id, 1.0, loop="ret")
        clock.advance(DAY / 2)
        for i in range(5):
            client.reward(client.rank(ACTIONS, loop="ret", event_id=f"new{i}").event_id, 1.0, loop="ret")
        # nothing is deleted before it is joined and learned, however old
        wait_for(lambda: client.stats("ret").rewards == 25)
        assert len(kept(server, Stream.DECISIONS, "ret")) == 25
        clock.advance(DAY / 2 + 11)  # the old ones are past one day; every window has closed
        wait_for(lambda: kept(server, Stream.DECISIONS, "ret") == list(range(21, 26)))
        wait_for(lambda: len(kept(server, Stream.JOINED, "ret")) == 5)
        wait_for(lambda: len(kept(server, Stream.REWARDS, "ret")) == 5)
        stats = wait_for(lambda: (s := client.stats("ret")).learned == 25 and s)
        assert (stats.decisions, stats.joined) == (25, 25)  # counts are not lowered


def test_retention_zero_keeps_everything(tmp_path, clock):
    with running_server(tmp_path / "s", clock=clock, retention_interval_seconds=0.05) as (server, client):
        client.create_loop("keep", reward_wait_seconds=1, publish_interval_seconds=0.05)
        for i in range(5):
            client.rank(ACTIONS, loop="keep", event_id=f"e{i}")
        clock.advance(400 * DAY)
        wait_for(lambda: client.stats("keep").learned == 5)
        assert len(kept(server, Stream.DECISIONS, "keep")) == 5
