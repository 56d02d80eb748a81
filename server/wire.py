"""Protobuf's wire format, for building a serialized message from serialized parts: messages concatenate as a
merge, so a length-delimited field appended to a message's bytes adds that field (one more entry of a repeated
field or map)."""

from __future__ import annotations


def varint(n: int) -> bytes:
    """The base-128 varint of `n` >= 0.

    >>> varint(1), varint(300)
    (b'\\x01', b'\\xac\\x02')
    """
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field(number: int, data: bytes) -> bytes:
    """Field `number` holding `data` (a serialized message, string or bytes), length-delimited.

    >>> field(1, b"ab")
    b'\\n\\x02ab'
    """
    return varint(number << 3 | 2) + varint(len(data)) + data
