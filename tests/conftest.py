import logging

import pytest

from nextbest.testing import FakeClock, running_server


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def served(tmp_path):
    """A real server (real clock) on a free loopback port over a fresh LMDB store."""
    with running_server(tmp_path / "store") as pair:
        yield pair


@pytest.fixture
def served_fake_clock(tmp_path, clock):
    """A real server whose decisions, rewards and joins follow `clock`."""
    with running_server(tmp_path / "store", clock=clock) as pair:
        yield pair


@pytest.fixture(autouse=True)
def _root_logging_as_it_was():
    """Tests that run the CLI in-process (`nextbest.cli.main`) configure the root logger with a handler on the
    stderr pytest captured for that test; put the root logger back afterwards, else later tests' log records
    (a server's, an SDK's) go to that closed stream, each printing a "--- Logging error ---" traceback."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
