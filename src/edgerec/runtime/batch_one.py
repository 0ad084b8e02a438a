"""The user encoder's LSTM section rewritten for runs of one history (the fused graphs).

Why: onnxruntime's LSTM takes its input time-major, so the bundle's graph transposes the
(B, L, d) event vectors to (L, B, d) before it and its (L, directions, B, h) outputs to
(B, L, directions * h) after it, which the attention then reads as a 3-D MatMul (for
which onnxruntime's MatMul + Add fusion adds two Reshapes around a Gemm). With B = 1,
as in every fused graph (``REQUEST`` holds one history), both transposes only move a
dimension of size 1: Reshapes do the same, and the LSTM outputs can go to the attention
as the 2-D (L, directions * h) matrix itself. The fused fixed-width graph of the
MovieLens model then runs three nodes fewer (onnxruntime's own optimisations included),
with bit-identical outputs: recommend() of 50-event MovieLens requests took 6.1 us less
on the int8 bundle and 3.3 us less on the distilled one (medians of 40 paired rounds of
200 calls, toggled on one recommender, a slow state of the 2-core VM); bare runs of the
fixed-width graph 3.6 us less in a fast state, 6.4 us in a slow one.

The rewrite is for the graph ``edgerec.export.onnx_user_graph`` builds: it applies only
where the nodes around the bundle's one LSTM are exactly that pattern, and leaves any
other graph as it is. Every consumer of the LSTM outputs must either take them as the
right operand of a MatMul (whose batch-1 left operand broadcasts over the 2-D matrix as
over the 3-D one) or start a row-wise chain -- MatMul by a 2-D weight, Add/Mul/Sub of a
vector, Tanh/Sigmoid/Relu -- that ends in a Reshape to (B, -1), which becomes one to
(1, -1). The recommender checks each fused session against separate scoring at load
(``_smoke_test``) and drops one that answers differently.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from edgerec.runtime import onnxproto as P

PREFIX = "edgerec_batch_one/"
_ROW_WISE = {"Tanh", "Sigmoid", "Relu"}
_VECTOR_OPS = {"Add", "Mul", "Sub"}
_NONE: tuple[dict[int, list[bytes]], list[bytes]] = ({}, [])
_DEFAULT_DOMAINS = ("", "ai.onnx")  # the ONNX operator set, by either name


def batch_one_edits(
    model_bytes: bytes, graph_outputs: Collection[str]
) -> tuple[dict[int, list[bytes]], list[bytes]]:
    """(node edits for ``onnxproto.edit_graph``, initializers they need) that run the
    graph's LSTM section for a batch of one as described above; empty when the graph is
    not the pattern. ``graph_outputs``: the graph's output names (no rewritten value may
    be one)."""
    nodes = P.graph_nodes(model_bytes)
    producer = {out: i for i, n in enumerate(nodes) for out in n.outputs if out}
    consumers: dict[str, list[int]] = {}
    for i, n in enumerate(nodes):
        for name in dict.fromkeys(n.inputs):
            if name:
                consumers.setdefault(name, []).append(i)

    def sole_consumer(name: str) -> int | None:
        found = consumers.get(name, [])
        return found[0] if len(found) == 1 and name not in graph_outputs else None

    lstms = [i for i, n in enumerate(nodes) if n.op_type == "LSTM" and n.domain in _DEFAULT_DOMAINS]
    if len(lstms) != 1:
        return _NONE
    lstm = nodes[lstms[0]]
    if lstm.ints.get("layout", (0,)) != (0,) or len(lstm.inputs) < 2 or not lstm.outputs:
        return _NONE
    before = producer.get(lstm.inputs[0])
    if (
        not _is(nodes, before, "Transpose", 1)
        or nodes[before].ints.get("perm") != (1, 0, 2)
        or sole_consumer(lstm.inputs[0]) != lstms[0]
    ):
        return _NONE
    after = sole_consumer(lstm.outputs[0])
    if not _is(nodes, after, "Transpose", 1) or nodes[after].ints.get("perm") != (2, 0, 1, 3):
        return _NONE
    flat = sole_consumer(nodes[after].outputs[0])
    if not _is(nodes, flat, "Reshape", 2) or nodes[flat].inputs[0] != nodes[after].outputs[0]:
        return _NONE
    pooled = nodes[flat].outputs[0]  # (1, L, directions * h), to become (L, directions * h)
    if pooled in graph_outputs or nodes[flat].ints.get("allowzero", (0,)) != (0,):
        return _NONE

    # the initializers the checks read: shapes, the LSTM's W, the chains' weights
    read = {lstm.inputs[1]}
    for n in nodes:
        if n.op_type in ("Reshape", "MatMul", *_VECTOR_OPS) and len(n.inputs) == 2:
            read.update(n.inputs if n.op_type in _VECTOR_OPS else n.inputs[1:])
    weights = P.graph_initializers(model_bytes, read)
    w = weights.get(lstm.inputs[1])
    if w is None or w.ndim != 3 or w.shape[1] % 4:
        return _NONE
    directions, input_size, hidden = w.shape[0], w.shape[2], w.shape[1] // 4
    if _values(weights, nodes[flat].inputs[1]) != [0, 0, -1]:
        return _NONE

    row_reshapes = []
    for start in consumers.get(pooled, []):
        node = nodes[start]
        if _is(nodes, start, "MatMul", 2) and node.inputs[1] == pooled != node.inputs[0]:
            continue  # the right operand: a (1, m, L) left one broadcasts over (L, n) alike
        end = _row_wise_chain(nodes, start, pooled, weights, sole_consumer)
        if end is None:
            return _NONE
        row_reshapes.append(end)
    if not row_reshapes:
        return _NONE

    steps_shape, outputs_shape, row_shape = (PREFIX + s for s in ("steps", "outputs", "row"))
    edits: dict[int, list[bytes]] = {
        before: [P.node("Reshape", [nodes[before].inputs[0], steps_shape], nodes[before].outputs)],
        after: [],
        flat: [P.node("Reshape", [lstm.outputs[0], outputs_shape], [pooled])],
    }
    for i in row_reshapes:
        edits[i] = [P.node("Reshape", [nodes[i].inputs[0], row_shape], nodes[i].outputs)]
    initializers = [
        P.tensor(steps_shape, np.array([-1, 1, input_size], np.int64)),
        P.tensor(outputs_shape, np.array([-1, directions * hidden], np.int64)),
        P.tensor(row_shape, np.array([1, -1], np.int64)),
    ]
    return edits, initializers


def _is(nodes: list[P.NodeView], index: int | None, op: str, n_inputs: int) -> bool:
    """Whether node ``index`` is a default-domain ``op`` of ``n_inputs`` inputs and one
    output (a malformed graph is left alone, not indexed past its lists)."""
    if index is None:
        return False
    node = nodes[index]
    return (
        node.op_type == op
        and node.domain in _DEFAULT_DOMAINS
        and len(node.inputs) == n_inputs
        and len(node.outputs) == 1
    )


def _values(weights: dict[str, np.ndarray], name: str) -> list | None:
    found = weights.get(name)
    return None if found is None else found.tolist()


def _row_wise_chain(nodes, start: int, value: str, weights, sole_consumer) -> int | None:
    """The index of the Reshape to (B, -1) that ends a row-wise chain from ``start``
    (which reads ``value``), or None if the nodes from there are anything else."""
    at = start
    for _ in nodes:  # a chain visits each node at most once (a cyclic graph is malformed)
        node = nodes[at]
        if node.domain not in _DEFAULT_DOMAINS:
            return None
        others = [x for x in node.inputs if x != value]
        if _is(nodes, at, "Reshape", 2) and node.inputs[0] == value:
            keeps_batch = _values(weights, node.inputs[1]) == [0, -1]
            return at if keeps_batch and node.ints.get("allowzero", (0,)) == (0,) else None
        if _is(nodes, at, "MatMul", 2) and node.inputs[0] == value and len(others) == 1:
            if others[0] not in weights or weights[others[0]].ndim != 2:
                return None
        elif node.op_type in _VECTOR_OPS and len(others) == 1 and len(node.inputs) == 2:
            if others[0] not in weights or weights[others[0]].ndim > 1:
                return None
        elif node.op_type not in _ROW_WISE or len(node.inputs) != 1:
            return None
        if len(node.outputs) != 1:
            return None
        value = node.outputs[0]
        following = sole_consumer(value)
        if following is None:
            return None
        at = following
    return None
