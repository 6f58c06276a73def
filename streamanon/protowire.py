"""The protobuf wire format, read by hand: two model converters need it (Caffe's caffemodel in
`detect.plate_convert`, TensorFlow's GraphDef in `eval.tf_graph`) and neither may depend on the
`protobuf` package's generated classes for formats we do not ship ``.proto`` files of.

Pure functions over ``bytes``/``memoryview``; a malformed message raises ``error`` (the
caller's own exception class, so its one-line message names the file kind).
"""

from __future__ import annotations

from collections.abc import Iterator


class WireError(ValueError):
    """Bytes that are not a protobuf message."""


def varint(
    buf: bytes | memoryview, pos: int, error: type[Exception] = WireError
) -> tuple[int, int]:
    """(value, next position) of the base-128 varint at ``pos``."""
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise error("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def fields(
    buf: bytes | memoryview, error: type[Exception] = WireError
) -> Iterator[tuple[int, int, int | bytes | memoryview]]:
    """(field number, wire type, value) of every field of one message, in order: varints as
    int, fixed64/fixed32/length-delimited payloads as slices of ``buf``."""
    pos, n = 0, len(buf)
    while pos < n:
        key, pos = varint(buf, pos, error)
        num, wire = key >> 3, key & 7
        if wire == 0:
            val, pos = varint(buf, pos, error)
        elif wire == 1:
            val, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            ln, pos = varint(buf, pos, error)
            val, pos = buf[pos : pos + ln], pos + ln
        elif wire == 5:
            val, pos = buf[pos : pos + 4], pos + 4
        else:
            raise error(f"unsupported wire type {wire} (field {num})")
        if pos > n:
            raise error("truncated message")
        yield num, wire, val
