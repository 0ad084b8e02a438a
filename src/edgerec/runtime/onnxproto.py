"""Just enough of the ONNX protobuf wire format to vet a bundle's graphs and build tiny ones.

The runtime may not import ``onnx``, yet it must (a) refuse a graph whose tensors point at
external data files -- onnxruntime would open them, and a hostile bundle could aim them at
any file on the machine -- and (b) build the small scoring graphs it runs itself (top-k on
the device, int8 scoring). Both need only a few message types, so this module walks and
writes the wire format directly. Field numbers follow ``onnx.proto`` (IR version 8+).
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

# --- reading --------------------------------------------------------------------------

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_MAX_DEPTH = 48  # nested subgraphs (If/Loop bodies); deeper than any real model


class ProtoError(ValueError):
    """Bytes that are not a well-formed ONNX model."""


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
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
    """Yield (field number, wire type, value or payload start, payload end)."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtoError("field number 0")
        if wire == _VARINT:
            value, pos = _varint(buf, pos, end)
            yield number, wire, value, pos
        elif wire == _I64:
            if pos + 8 > end:
                raise ProtoError("truncated fixed64")
            yield number, wire, pos, pos + 8
            pos += 8
        elif wire == _I32:
            if pos + 4 > end:
                raise ProtoError("truncated fixed32")
            yield number, wire, pos, pos + 4
            pos += 4
        elif wire == _LEN:
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise ProtoError("length-delimited field runs past its message")
            yield number, wire, pos, pos + length
            pos += length
        else:
            raise ProtoError(f"unsupported wire type {wire}")


@dataclass(frozen=True)
class TensorInfo:
    """A graph input or output: ONNX element type and dims (int, a symbolic name, or None)."""

    elem_type: int | None
    shape: tuple[int | str | None, ...] | None


@dataclass
class OnnxSummary:
    ir_version: int | None = None
    opsets: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    external_tensors: list[str] = field(default_factory=list)
    n_initializers: int = 0
    # the main graph's interface, so every variant of a bundle can be checked without
    # building an onnxruntime session for it (initializers listed as inputs left out)
    inputs: dict[str, TensorInfo] = field(default_factory=dict)
    outputs: dict[str, TensorInfo] = field(default_factory=dict)
    initializer_names: set[str] = field(default_factory=set)


def _string(buf: memoryview, a: int, b: int) -> str:
    return bytes(buf[a:b]).decode("utf-8", errors="replace")


def _entry(buf: memoryview, a: int, b: int) -> tuple[str, str]:
    key = value = ""
    for num, wire, x, y in _fields(buf, a, b):
        if wire == _LEN and num == 1:
            key = _string(buf, x, y)
        elif wire == _LEN and num == 2:
            value = _string(buf, x, y)
    return key, value


def _value_info(buf: memoryview, a: int, b: int) -> tuple[str, TensorInfo]:
    """ValueInfoProto: name (1), TypeProto (2) -> tensor_type (1) -> elem_type (1), shape (2)."""
    name, elem, shape = "", None, None
    for num, wire, x, y in _fields(buf, a, b):
        if num == 1 and wire == _LEN:
            name = _string(buf, x, y)
        elif num == 2 and wire == _LEN:
            for n2, w2, x2, y2 in _fields(buf, x, y):
                if n2 != 1 or w2 != _LEN:
                    continue
                for n3, w3, x3, y3 in _fields(buf, x2, y2):
                    if n3 == 1 and w3 == _VARINT:
                        elem = x3
                    elif n3 == 2 and w3 == _LEN:
                        dims: list[int | str | None] = []
                        for n4, w4, x4, y4 in _fields(buf, x3, y3):
                            if n4 != 1 or w4 != _LEN:
                                continue
                            dim: int | str | None = None
                            for n5, w5, x5, y5 in _fields(buf, x4, y4):
                                if n5 == 1 and w5 == _VARINT:
                                    dim = x5
                                elif n5 == 2 and w5 == _LEN:
                                    dim = _string(buf, x5, y5)
                            dims.append(dim)
                        shape = tuple(dims)
    return name, TensorInfo(elem, shape)


def _tensor(buf: memoryview, a: int, b: int, out: OnnxSummary, top: bool = False) -> None:
    name = "?"
    external = False
    for num, wire, x, y in _fields(buf, a, b):
        if num == 8 and wire == _LEN:
            name = _string(buf, x, y)
        elif num == 13 and wire == _LEN:  # external_data entries (location, offset, ...)
            external = True
        elif num == 14 and wire == _VARINT and x == 1:  # data_location = EXTERNAL
            external = True
    if external:
        out.external_tensors.append(name)
    if top:
        out.initializer_names.add(name)


def _sparse(buf: memoryview, a: int, b: int, out: OnnxSummary) -> None:
    for num, wire, x, y in _fields(buf, a, b):
        if num in (1, 2) and wire == _LEN:
            _tensor(buf, x, y, out)


def _attribute(buf: memoryview, a: int, b: int, out: OnnxSummary, depth: int) -> None:
    for num, wire, x, y in _fields(buf, a, b):
        if wire != _LEN:
            continue
        if num in (5, 10):  # t, tensors
            _tensor(buf, x, y, out)
        elif num in (6, 11):  # g, graphs
            _graph(buf, x, y, out, depth + 1)
        elif num in (22, 23):  # sparse_tensor(s)
            _sparse(buf, x, y, out)


def _node(buf: memoryview, a: int, b: int, out: OnnxSummary, depth: int) -> None:
    for num, wire, x, y in _fields(buf, a, b):
        if num == 5 and wire == _LEN:
            _attribute(buf, x, y, out, depth)


def _graph(buf: memoryview, a: int, b: int, out: OnnxSummary, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise ProtoError("subgraphs nested too deeply")
    for num, wire, x, y in _fields(buf, a, b):
        if wire != _LEN:
            continue
        if num == 1:
            _node(buf, x, y, out, depth)
        elif num == 5:
            out.n_initializers += 1
            _tensor(buf, x, y, out, top=depth == 0)
        elif num == 15:
            _sparse(buf, x, y, out)
        elif depth == 0 and num in (11, 12):
            name, info = _value_info(buf, x, y)
            (out.inputs if num == 11 else out.outputs)[name] = info


def scan_model(data: bytes | memoryview) -> OnnxSummary:
    """Walk a serialized ModelProto: versions, metadata and every tensor stored externally.

    Raises ``ProtoError`` for bytes that do not parse as a protobuf message or hold no graph.
    """
    buf = memoryview(data)
    out = OnnxSummary()
    has_graph = False
    for num, wire, x, y in _fields(buf, 0, len(buf)):
        if num == 1 and wire == _VARINT:
            out.ir_version = x
        elif num == 7 and wire == _LEN:
            has_graph = True
            _graph(buf, x, y, out, 0)
        elif num == 8 and wire == _LEN:
            domain, version = "", 0
            for n2, w2, x2, y2 in _fields(buf, x, y):
                if n2 == 1 and w2 == _LEN:
                    domain = _string(buf, x2, y2)
                elif n2 == 2 and w2 == _VARINT:
                    version = x2
            out.opsets[domain] = version
        elif num == 14 and wire == _LEN:
            key, value = _entry(buf, x, y)
            out.metadata[key] = value
        elif num == 20 and wire == _LEN:  # training_info: initialization / algorithm graphs
            for n2, w2, x2, y2 in _fields(buf, x, y):
                if n2 in (1, 2) and w2 == _LEN:
                    _graph(buf, x2, y2, out, 1)
        elif num == 25 and wire == _LEN:  # functions: their nodes may carry tensors
            for n2, w2, x2, y2 in _fields(buf, x, y):
                if n2 == 7 and w2 == _LEN:
                    _node(buf, x2, y2, out, 1)
    if not has_graph:
        raise ProtoError("no graph in the model")
    for name in out.initializer_names:  # IR < 4 lists initializers among the inputs
        out.inputs.pop(name, None)
    return out


# --- writing --------------------------------------------------------------------------

FLOAT, UINT8, INT8, INT32, INT64, FLOAT16 = 1, 2, 3, 6, 7, 10
_NP_TO_ONNX = {
    np.dtype(np.float32): FLOAT,
    np.dtype(np.uint8): UINT8,
    np.dtype(np.int8): INT8,
    np.dtype(np.int32): INT32,
    np.dtype(np.int64): INT64,
    np.dtype(np.float16): FLOAT16,
}


def _vbytes(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 as two's complement, as protobuf does
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _vbytes(number << 3 | wire)


def _int(number: int, value: int) -> bytes:
    return _key(number, _VARINT) + _vbytes(int(value))


def _len(number: int, payload: bytes) -> bytes:
    return _key(number, _LEN) + _vbytes(len(payload)) + payload


def _str(number: int, text: str) -> bytes:
    return _len(number, text.encode("utf-8"))


def attribute(name: str, value: int | float) -> bytes:
    """An INT or FLOAT attribute (all the scoring graphs need)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"attribute {name}: int or float, got {type(value).__name__}")
    if isinstance(value, int):
        return _str(1, name) + _int(3, value) + _int(20, 2)
    return _str(1, name) + _key(2, _I32) + struct.pack("<f", value) + _int(20, 1)


def node(
    op: str, inputs: Sequence[str], outputs: Sequence[str], *, domain: str = "", **attrs
) -> bytes:
    msg = b"".join(_str(1, i) for i in inputs) + b"".join(_str(2, o) for o in outputs)
    msg += _str(3, f"{op}_{outputs[0]}") + _str(4, op)
    msg += b"".join(_len(5, attribute(k, v)) for k, v in attrs.items())
    if domain:
        msg += _str(7, domain)
    return msg


def value_info(name: str, elem_type: int, shape: Sequence[int | str | None] | None) -> bytes:
    tensor = _int(1, elem_type)
    if shape is not None:
        dims = b""
        for d in shape:
            if d is None:
                dims += _len(1, b"")
            elif isinstance(d, str):
                dims += _len(1, _str(2, d))
            else:
                dims += _len(1, _int(1, d))
        tensor += _len(2, dims)
    return _str(1, name) + _len(2, _len(1, tensor))


def tensor(name: str, array: np.ndarray) -> bytes:
    """A TensorProto with its data inline (raw little-endian bytes)."""
    arr = np.ascontiguousarray(array)
    elem = _NP_TO_ONNX.get(arr.dtype)
    if elem is None:
        raise TypeError(f"tensor {name}: unsupported dtype {arr.dtype}")
    msg = b"".join(_int(1, d) for d in arr.shape) + _int(2, elem) + _str(8, name)
    return msg + _len(9, arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())


def model(
    nodes: Sequence[bytes],
    inputs: Sequence[bytes],
    outputs: Sequence[bytes],
    *,
    initializers: Sequence[bytes] = (),
    opsets: dict[str, int] | None = None,
    ir_version: int = 8,
    name: str = "edgerec_runtime",
) -> bytes:
    """Serialize a ModelProto; ``ir_version`` 8 keeps older GPU builds of onnxruntime happy."""
    graph = b"".join(_len(1, n) for n in nodes) + _str(2, name)
    graph += b"".join(_len(5, t) for t in initializers)
    graph += b"".join(_len(11, i) for i in inputs) + b"".join(_len(12, o) for o in outputs)
    opsets = {"": 17} if opsets is None else opsets
    out = _int(1, ir_version) + _str(2, "edgerec")
    out += b"".join(_len(8, (_str(1, d) if d else b"") + _int(2, v)) for d, v in opsets.items())
    return out + _len(7, graph)


def extend_graph(
    model_bytes: bytes,
    nodes: Sequence[bytes],
    inputs: Sequence[bytes],
    outputs: Sequence[bytes],
    *,
    initializers: Sequence[bytes] = (),
) -> bytes:
    """``model_bytes`` with nodes, inputs, outputs and initializers added to its graph.

    Protobuf parsers merge a repeated occurrence of a singular message field into the
    first (the wire format's documented rule, which ONNX and onnxruntime parse by), so a
    second ``graph`` field that holds only the additions extends the graph without
    decoding or re-encoding the model: the bundle's verified bytes stay as they are.
    """
    graph = b"".join(_len(1, n) for n in nodes)
    graph += b"".join(_len(5, t) for t in initializers)
    graph += b"".join(_len(11, i) for i in inputs) + b"".join(_len(12, o) for o in outputs)
    return bytes(model_bytes) + _len(7, graph)


def without_inputs(model_bytes: bytes, names: Collection[str]) -> bytes:
    """``model_bytes`` with the graph inputs called ``names`` no longer declared.

    For a graph whose nodes are to compute those values themselves (``extend_graph``
    then adds the nodes): every other field, the graph's nodes and initializers
    included, is copied byte for byte; only the graph field is re-framed.
    """
    return edit_graph(model_bytes, names, {})


def edit_graph(
    model_bytes: bytes, drop_inputs: Collection[str], nodes: dict[int, Sequence[bytes]]
) -> bytes:
    """``model_bytes`` with the graph inputs ``drop_inputs`` no longer declared and the
    graph's nodes at the indices in ``nodes`` (their order in ``graph_nodes``) replaced by
    the nodes given there (none: the node is dropped). Every other field is copied byte
    for byte; only the graph field is re-framed."""
    buf = memoryview(model_bytes)
    out, at = [], 0
    index = -1  # counted over every graph field, as graph_nodes counts (parsers merge them)
    for num, wire, x, y in _fields(buf, 0, len(buf)):
        if num == 7 and wire == _LEN:
            kept, g_at = [], x
            for n2, w2, x2, y2 in _fields(buf, x, y):
                if n2 == 1 and w2 == _LEN:
                    index += 1
                    if index in nodes:
                        kept.extend(_len(1, n) for n in nodes[index])
                        g_at = y2
                        continue
                if not (n2 == 11 and w2 == _LEN and _value_info(buf, x2, y2)[0] in drop_inputs):
                    kept.append(buf[g_at:y2])
                g_at = y2
            out.append(_len(7, b"".join(kept)))
        else:
            out.append(buf[at:y])
        at = y
    return b"".join(out)


# --- reading a graph's nodes -------------------------------------------------------------


@dataclass(frozen=True)
class NodeView:
    """What graph rewrites read of a node: its op, wiring and integer attributes."""

    op_type: str
    domain: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    ints: dict[str, tuple[int, ...]]  # INT and INTS attributes (an INT as a 1-tuple)
    attributes: frozenset[str]  # every attribute's name


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _packed_varints(buf: memoryview, a: int, b: int) -> Iterator[int]:
    pos = a
    while pos < b:
        value, pos = _varint(buf, pos, b)
        yield value


def _graph_entries(buf: memoryview, number: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each length-delimited field ``number`` (1 nodes, 5 initializers)
    of the main graph, over every graph field in order, as parsers merge them."""
    for num, wire, x, y in _fields(buf, 0, len(buf)):
        if num == 7 and wire == _LEN:
            for n2, w2, x2, y2 in _fields(buf, x, y):
                if n2 == number and w2 == _LEN:
                    yield x2, y2


def _attribute_ints(buf: memoryview, a: int, b: int) -> tuple[str, tuple[int, ...] | None]:
    name, values, kind = "", [], None
    for num, wire, x, y in _fields(buf, a, b):
        if num == 1 and wire == _LEN:
            name = _string(buf, x, y)
        elif num == 20 and wire == _VARINT:
            kind = x
        elif num == 3 and wire == _VARINT:
            values = [_signed(x)]
        elif num == 8 and wire == _VARINT:
            values.append(_signed(x))
        elif num == 8 and wire == _LEN:  # packed
            values.extend(map(_signed, _packed_varints(buf, x, y)))
    return name, (tuple(values) if kind in (2, 7) else None)  # INT, INTS


def graph_nodes(model_bytes: bytes) -> list[NodeView]:
    """The main graph's nodes in order (the index ``edit_graph`` takes)."""
    buf = memoryview(model_bytes)
    found: list[NodeView] = []
    for x2, y2 in _graph_entries(buf, 1):
        ins, outs, op, domain, ints, names = [], [], "", "", {}, set()
        for n3, w3, x3, y3 in _fields(buf, x2, y2):
            if w3 != _LEN:
                continue
            if n3 == 1:
                ins.append(_string(buf, x3, y3))
            elif n3 == 2:
                outs.append(_string(buf, x3, y3))
            elif n3 == 4:
                op = _string(buf, x3, y3)
            elif n3 == 7:
                domain = _string(buf, x3, y3)
            elif n3 == 5:
                name, values = _attribute_ints(buf, x3, y3)
                names.add(name)
                if values is not None:
                    ints[name] = values
        found.append(NodeView(op, domain, tuple(ins), tuple(outs), ints, frozenset(names)))
    return found


_ONNX_TO_NP = {INT64: np.dtype("<i8"), INT32: np.dtype("<i4"), FLOAT: np.dtype("<f4")}


def graph_initializers(model_bytes: bytes, names: Collection[str]) -> dict[str, np.ndarray]:
    """The main graph's initializers called ``names`` whose data is inline as raw bytes
    (how exporters write them) in float32, int32 or int64; others are left out."""
    buf = memoryview(model_bytes)
    found: dict[str, np.ndarray] = {}
    for x2, y2 in _graph_entries(buf, 5):
        dims, elem, name, raw = [], None, "", None  # raw: (start, end) of the data
        for n3, w3, x3, y3 in _fields(buf, x2, y2):
            if n3 == 1 and w3 == _VARINT:
                dims.append(x3)
            elif n3 == 1 and w3 == _LEN:  # packed dims
                dims.extend(_packed_varints(buf, x3, y3))
            elif n3 == 2 and w3 == _VARINT:
                elem = x3
            elif n3 == 8 and w3 == _LEN:
                name = _string(buf, x3, y3)
            elif n3 == 9 and w3 == _LEN:
                raw = (x3, y3)
        dtype = _ONNX_TO_NP.get(elem)
        if name not in names or raw is None or dtype is None:
            continue
        size = 1
        for d in dims:
            size *= d
        if raw[1] - raw[0] != dtype.itemsize * size:
            continue
        data = np.frombuffer(bytes(buf[raw[0] : raw[1]]), dtype).reshape(dims)
        found[name] = data.astype(dtype.newbyteorder("="))
    return found
