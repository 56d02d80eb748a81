"""A published model a server cannot load: one log entry for the version, counted in the metrics, and Rank keeps
serving the previous model."""

import logging
import time

import pytest
from test_metrics import sample, scrape

from nextbest import policies
from nextbest.client import action
from nextbest.server.store import Entry, Stream
from nextbest.testing import running_server, wait_for

ACTIONS = [action("a", "email"), action("b", "push")]
SPEC = "vw:--cb_explore_adf --epsilon 0.05"


@pytest.mark.slow
def test_an_unloadable_model_is_logged_once_counted_and_the_previous_model_serves(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="nextbest")
    with running_server(tmp_path / "s", train=False, metrics_port=0) as (server, client):
        client.create_loop("l", policy=SPEC)
        server.store.models.publish("l", SPEC, policies.create(SPEC).save(), learned_seq=0)
        wait_for(lambda: client.rank(ACTIONS, loop="l").model_version == "1")
        server.store.models.publish("l", SPEC, b"not a vw model", learned_seq=0)  # version 2
        deadline = time.monotonic() + 3.0  # 150 catalog polls
        while time.monotonic() < deadline:
            assert client.rank(ACTIONS, loop="l").model_version == "1"
            time.sleep(0.05)
        failures = [r for r in caplog.records if "version 2" in r.getMessage() and r.levelno >= logging.WARNING]
        assert len(failures) == 1, [r.getMessage() for r in failures]
        assert "loop l" in failures[0].getMessage() and failures[0].exc_info is None
        text = scrape(server.metrics_port)
        assert sample(text, "nextbest_model_load_failures_total", loop="l") == 1
        server.store.models.publish("l", SPEC, policies.create(SPEC).save(), learned_seq=0)  # version 3 loads
        wait_for(lambda: client.rank(ACTIONS, loop="l").model_version == "3")


@pytest.mark.slow
def test_a_loop_whose_trainer_pass_keeps_failing_is_logged_once_and_the_others_learn(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="nextbest")
    with running_server(tmp_path / "s") as (server, client):
        client.create_loop("bad", reward_wait_seconds=0.05)
        client.create_loop("good", reward_wait_seconds=0.05, publish_interval_seconds=0.05)
        server.store.log.append(Stream.DECISIONS, "bad", [Entry("junk", b"\xff not a decision record")])
        deadline = time.monotonic() + 2.0  # 40 trainer passes
        while time.monotonic() < deadline:
            client.reward(client.rank(ACTIONS, loop="good").event_id, 1.0, loop="good")
            time.sleep(0.05)
        wait_for(lambda: client.stats("good").learned == client.stats("good").decisions)
    failures = [r for r in caplog.records if r.getMessage().startswith("loop bad: trainer step")]
    assert len(failures) == 1 and failures[0].exc_info is not None
