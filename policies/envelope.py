"""The envelope around saved policy state: which family it belongs to and a checksum.

`Policy.save()` seals what a family's `_save` returns; `policies.load` opens it
before the family's `_load` sees it, so truncated or altered bytes are refused
with ValueError whatever the family (VW, for one, reads a truncated model
without complaint). Layout::

    nextbest-policy/1 <family>\\n<SHA-256 of the state, 64 hex digits>\\n<state>
"""

from __future__ import annotations

import hashlib

_MAGIC = b"nextbest-policy/1 "


def seal(family: str, state: bytes) -> bytes:
    """`state` of a policy of `family` in its envelope."""
    return b"%s%s\n%s\n%s" % (_MAGIC, family.encode(), hashlib.sha256(state).hexdigest().encode(), state)


def is_sealed(data: bytes) -> bool:
    """Whether `data` starts like an envelope."""
    return data.startswith(_MAGIC)


def unseal(family: str, data: bytes) -> bytes:
    """The state inside `data`; ValueError unless it is intact and belongs to `family`."""
    if not data.startswith(_MAGIC):
        raise ValueError("not a saved nextbest policy")
    head, sep, rest = data[len(_MAGIC) :].partition(b"\n")
    digest, sep2, state = rest.partition(b"\n")
    if not (sep and sep2):
        raise ValueError("saved policy is truncated")
    if head != family.encode():
        raise ValueError(f"saved policy is of family {head.decode(errors='replace')!r}, not {family!r}")
    if hashlib.sha256(state).hexdigest().encode() != digest:
        raise ValueError("saved policy is corrupt (checksum mismatch)")
    return state
