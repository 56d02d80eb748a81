"""A loop's lift (GetStats): per-subject sums of its joined decisions, kept by the trainer.

The `LiftCounter` reads the loop's joined stream in order, as the learner does, and adds each decision made
for a subject (a RankRequest with a subject_id) while the loop had a holdout (the config logged with it: the
groups are compared over the same time) to that subject's reward sum and decision count in its group (the
record's `holdout` flag). A deferred decision never activated reached nobody and is not counted.
`policies.ope.lift` turns the sums into the lift with its subject-clustered interval.

Memory is bounded: at most MAX_SUBJECTS subjects are kept. Beyond that the counter keeps a uniform sample of
subjects, chosen by a 64-bit key from the subject's hash (`sampling.subject_key`, independent of its group):
those whose key is below 2**(64 − shift); each time the sample outgrows the bound, `shift` grows by one and
the subjects above the new threshold are forgotten. A kept subject was below every earlier threshold, so all
its decisions are counted: the averages and interval are those of a random sample of subjects, and the
subject counts are the sample's scaled by 2**shift.

The sums and the position in the joined stream are saved together in the cursor `<loop>/lift` (at most every
SAVE_SECONDS, and on stop), so a restart reads again exactly the events after the saved position.
"""

from __future__ import annotations

import struct
import threading
import time

import numpy as np

from nextbest.policies.ope.lift import lift
from nextbest.server.sampling import subject_key
from nextbest.server.store import EventLog, Stream, cursor_name
from nextbest.v1 import admin_pb2, records_pb2

# Subjects kept per loop: 21 bytes each in the saved cursor (about 0.5 MB, under NATS's default message size).
MAX_SUBJECTS = 25_000
SAVE_SECONDS = 10.0
_BATCH = 1000
_HEADER = struct.Struct(">qBI")  # position in the joined stream, shift, subjects


def _cursor(loop: str) -> str:
    return cursor_name(loop, "lift")


class LiftState:
    """Per-subject sums by (key, holdout group), the sampling shift, and the joined seq they count through."""

    def __init__(
        self,
        seq: int = 0,
        shift: int = 0,
        sums: dict[tuple[int, bool], list[float]] | None = None,
        max_subjects: int = MAX_SUBJECTS,
    ) -> None:
        self.seq = seq
        self.shift = shift
        self._sums = sums or {}  # (subject key, holdout) -> [reward sum, decisions]
        self._max = max_subjects
        self._lock = threading.Lock()  # GetStats reads while the trainer adds

    def add(self, key: int, holdout: bool, reward: float) -> None:
        """Count one decision of the subject with `key` in its group (unless the subject is not sampled)."""
        with self._lock:
            if key >> (64 - self.shift):
                return
            sums = self._sums.setdefault((key, holdout), [0.0, 0.0])
            sums[0] += reward
            sums[1] += 1
            while len(self._sums) > self._max:
                self.shift += 1
                self._sums = {k: v for k, v in self._sums.items() if not k[0] >> (64 - self.shift)}

    def lift(self) -> admin_pb2.Lift | None:
        """The lift (None until a holdout subject is counted); subject counts are estimates once sampling."""
        with self._lock:
            rows, scale = list(self._sums.items()), 1 << self.shift
        held = np.array([holdout for (_, holdout), _ in rows], dtype=bool)
        if not held.any():
            return None
        sums = np.array([s for _, s in rows])
        e = lift(sums[:, 0], sums[:, 1], held)
        return admin_pb2.Lift(
            treatment=e.treatment,
            holdout=e.holdout,
            difference=e.difference,
            ci_low=e.ci[0],
            ci_high=e.ci[1],
            treatment_subjects=e.treatment_subjects * scale,
            holdout_subjects=e.holdout_subjects * scale,
        )

    def encode(self) -> bytes:
        with self._lock:
            rows = list(self._sums.items())
        keys = np.array([k for (k, _), _ in rows], dtype=">u8")
        held = np.array([h for (_, h), _ in rows], dtype=">u1")
        sums = np.array([s for _, s in rows], dtype=">f8").reshape(len(rows), 2)
        return b"".join(
            [
                _HEADER.pack(self.seq, self.shift, len(rows)),
                keys.tobytes(),
                held.tobytes(),
                sums[:, 0].tobytes(),
                sums[:, 1].astype(">u4").tobytes(),
            ]
        )

    @classmethod
    def decode(cls, raw: bytes) -> LiftState:
        seq, shift, n = _HEADER.unpack_from(raw)
        offset = _HEADER.size
        arrays = []
        for dtype in (">u8", ">u1", ">f8", ">u4"):
            array = np.frombuffer(raw, dtype=dtype, count=n, offset=offset)
            offset += array.nbytes
            arrays.append(array.tolist())
        keys, held, rewards, decisions = arrays
        sums = {(k, bool(h)): [r, float(d)] for k, h, r, d in zip(keys, held, rewards, decisions, strict=True)}
        return cls(seq, shift, sums)

    @classmethod
    def saved(cls, log: EventLog, loop: str) -> LiftState:
        """The state the loop's counter last saved (an empty one when none)."""
        raw = log.get_cursor(_cursor(loop))
        return cls.decode(raw) if raw else cls()


class LiftCounter:
    """Counts one loop's joined events into its `LiftState`; `step()` reads what is new."""

    def __init__(self, log: EventLog, loop: str) -> None:
        self._log = log
        self._loop = loop
        self.state = LiftState.saved(log, loop)
        self._saved_seq = self.state.seq
        self._last_save = time.monotonic()

    @property
    def saved_seq(self) -> int:
        """The joined seq the saved state counts through: retention keeps the joined events after it."""
        return self._saved_seq

    def step(self) -> int:
        """Count the joined events after the state's position (a batch); save when due. Returns events read."""
        batch = self._log.read(Stream.JOINED, self._loop, self.state.seq, _BATCH)
        for seq, data in batch:
            joined = records_pb2.JoinedEvent.FromString(data)
            d = joined.decision
            if d.subject_id and d.config.holdout_fraction > 0 and not (d.deferred and not joined.activated):
                self.state.add(subject_key(self._loop, d.subject_id), d.holdout, joined.reward)
            self.state.seq = seq
        if self.state.seq != self._saved_seq and time.monotonic() - self._last_save >= SAVE_SECONDS:
            self.save()
        return len(batch)

    def save(self) -> None:
        """Save the sums with their position now, if they changed."""
        if self.state.seq != self._saved_seq:
            self._log.set_cursor(_cursor(self._loop), self.state.encode())
            self._saved_seq = self.state.seq
        self._last_save = time.monotonic()
