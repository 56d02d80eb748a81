"""Seeded sampling: any decision can be reproduced from its log record.

The uniform draw is the first 8 bytes of SHA-256(loop + "\\0" + event_id) read
as a big-endian integer over 2**64 (for slot i of a multi-slot decision, of
loop + "\\0" + event_id + "\\0" + i). The chosen action is the first, in the
order the policy saw the actions, whose cumulative probability exceeds it.

A subject's place in its loop's holdout is read the same way from
SHA-256("holdout" + "\\0" + loop + "\\0" + subject_id) (the prefix keeps it
independent of the draw of an event whose id is the subject id): its first
8 bytes give the uniform compared with the holdout fraction, the next 8 the
key that samples subjects for the lift (independent of the group).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def seeded_uniform(loop: str, event_id: str) -> float:
    """A number in [0, 1) determined by (loop, event_id)."""
    digest = hashlib.sha256(f"{loop}\x00{event_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def slot_uniform(loop: str, event_id: str, slot: int) -> float:
    """A number in [0, 1) determined by (loop, event_id, slot index): the draw of a multi-slot decision's slot."""
    digest = hashlib.sha256(f"{loop}\x00{event_id}\x00{slot}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _subject_digest(loop: str, subject_id: str) -> bytes:
    return hashlib.sha256(f"holdout\x00{loop}\x00{subject_id}".encode()).digest()


def in_holdout(loop: str, subject_id: str, fraction: float) -> bool:
    """Whether the subject belongs to the loop's holdout of `fraction` (no subject id: never)."""
    if fraction <= 0 or not subject_id:
        return False
    return int.from_bytes(_subject_digest(loop, subject_id)[:8], "big") / 2.0**64 < fraction


def subject_key(loop: str, subject_id: str) -> int:
    """A 64-bit key of the subject, uniform and independent of its holdout group (see `lift`)."""
    return int.from_bytes(_subject_digest(loop, subject_id)[8:16], "big")


def sample_index(pmf: Sequence[float], u: float) -> int:
    """Index drawn from `pmf` with the uniform number `u`; never one with probability 0."""
    cumulative = 0.0
    last_positive = -1
    for i, p in enumerate(pmf):
        if p > 0:
            cumulative += p
            last_positive = i
            if u < cumulative:
                return i
    if last_positive < 0:
        raise ValueError("pmf has no positive probability")
    return last_positive  # u fell in the rounding gap above the cumulative sum
