"""Find the tensors of a serialized ONNX model that live in external files.

A bundle must embed every tensor: onnxruntime opens whatever file an external tensor
names (it refuses paths that escape the model's folder, but a model loaded from bytes
resolves them against the process's working directory). The runtime does not import
``onnx``, so this walks the protobuf wire format itself, read only, through the few
message types that can hold a tensor. Field numbers follow ``onnx.proto``.
"""

from __future__ import annotations

from collections.abc import Iterator

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_MAX_DEPTH = 48  # nested subgraphs (If/Loop bodies); deeper than any real model


class ProtoError(ValueError):
    """Bytes that are not a well-formed protobuf message."""


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise ProtoError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ProtoError("varint too long")


def _fields(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, value or payload start, payload end) of one message."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtoError("field number 0")
        if wire == _VARINT:
            value, pos = _varint(buf, pos, end)
            yield number, wire, value, pos
            continue
        if wire == _LEN:
            size, pos = _varint(buf, pos, end)
        elif wire in (_I64, _I32):
            size = 8 if wire == _I64 else 4
        else:
            raise ProtoError(f"unsupported wire type {wire}")
        if pos + size > end:
            raise ProtoError("field runs past its message")
        yield number, wire, pos, pos + size
        pos += size


def _tensor(buf: memoryview, a: int, b: int, found: list[str]) -> None:
    """TensorProto: name (8), external_data (13), data_location (14) = 1 for EXTERNAL."""
    name, external = "?", False
    for num, wire, x, y in _fields(buf, a, b):
        if num == 8 and wire == _LEN:
            name = bytes(buf[x:y]).decode("utf-8", errors="replace")
        elif (num == 13 and wire == _LEN) or (num == 14 and wire == _VARINT and x == 1):
            external = True
    if external:
        found.append(name)


def _message(buf: memoryview, a: int, b: int, kind: str, found: list[str], depth: int) -> None:
    """Walk a message of ``kind`` to every tensor it can hold."""
    if depth > _MAX_DEPTH:
        raise ProtoError("subgraphs nested too deeply")
    for num, wire, x, y in _fields(buf, a, b):
        if wire != _LEN:
            continue
        child = _CHILDREN[kind].get(num)
        if child == "tensor":
            _tensor(buf, x, y, found)
        elif child is not None:
            _message(buf, x, y, child, found, depth + (child == "graph"))


# message kind -> {field number: kind of the message in it}
_CHILDREN: dict[str, dict[int, str]] = {
    "model": {7: "graph", 25: "function"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "function": {7: "node"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 10: "tensor", 6: "graph", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
}


def external_tensors(data: bytes) -> list[str]:
    """Names of the tensors stored outside ``data`` (a serialized ModelProto); raises
    ``ProtoError`` for bytes that do not parse."""
    buf = memoryview(data)
    if not any(num == 7 and wire == _LEN for num, wire, _, _ in _fields(buf, 0, len(buf))):
        raise ProtoError("no graph")
    found: list[str] = []
    _message(buf, 0, len(buf), "model", found, 0)
    return found
