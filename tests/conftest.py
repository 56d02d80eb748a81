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
