"""Graceful stop for the long-running commands."""

from __future__ import annotations

import logging
import signal
import threading


def stop_on_signals(doing: str) -> threading.Event:
    """An event set by SIGTERM or SIGINT (logged as "received SIGTERM; `doing`"), for the command to wait on."""
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        logging.getLogger("nextbest").info("received %s; %s", signal.Signals(signum).name, doing)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stopping
