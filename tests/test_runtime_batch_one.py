"""Fused graphs run the built user encoder's LSTM section for a batch of one: fewer nodes,
bit-identical outputs, and any graph that is not the builder's pattern left as it is."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from test_export_user_graph import MAX_LEN, VARIANTS, trained_looking_model  # noqa: E402

from edgerec.export.onnx_user_graph import build_user_encoder  # noqa: E402
from edgerec.runtime import batch_one  # noqa: E402
from edgerec.runtime import fused as F  # noqa: E402
from edgerec.runtime import onnxproto as P  # noqa: E402

WIDTHS = [None, F.UP_TO_WINDOW, *F.full_window_widths(MAX_LEN)[:2]]


def graphs_with_and_without(blob: bytes, monkeypatch) -> tuple[dict, dict]:
    rewritten = F.fused_graphs(blob, MAX_LEN, WIDTHS)
    with monkeypatch.context() as m:
        m.setattr(F, "batch_one_edits", lambda *a: ({}, []))
        plain = F.fused_graphs(blob, MAX_LEN, WIDTHS)
    return rewritten, plain


def session(graph: bytes):
    return ort.InferenceSession(graph, providers=["CPUExecutionProvider"])


def width_of(key, rng) -> int:
    if key is None:
        return int(rng.integers(1, 3 * MAX_LEN))
    if key == F.UP_TO_WINDOW:
        return int(rng.integers(1, MAX_LEN + 1))
    return key


@pytest.mark.parametrize("variant", VARIANTS[:7], ids=lambda v: ",".join(f"{k}={v[k]}" for k in v))
def test_batch_one_graphs_answer_bit_for_bit_like_the_bundle_graph(variant, monkeypatch):
    model = trained_looking_model(**variant)
    blob = build_user_encoder(model, opset=18).SerializeToString()
    rewritten, plain = graphs_with_and_without(blob, monkeypatch)
    table = model.items().detach().numpy()
    n_rows = table.shape[0]
    rng = np.random.default_rng(0)
    for key in WIDTHS:
        ops = [n.op_type for n in P.graph_nodes(rewritten[key])]
        assert "Transpose" not in ops and "LSTM" in ops
        assert len(ops) == len(P.graph_nodes(plain[key])) - 1  # one Transpose fewer
        new, old = session(rewritten[key]), session(plain[key])
        for _ in range(12):
            n = width_of(key, rng)
            used = min(n, MAX_LEN)
            rows = rng.integers(1, n_rows, used)
            ts = np.sort(rng.integers(0, 10**7, used))
            request = F.request_array(rows, rng.integers(1, 6, used), ts, rows, MAX_LEN)
            request = F.widened(request, n) if n > used else request
            feeds = {
                F.REQUEST: request,
                "item_table": table,
                F.BIAS: np.zeros(n_rows, np.float32),
                F.K: np.array([7], np.int64),
            }
            if model.cfg.request_time:
                feeds["request_gaps"] = rng.integers(0, 20, 1).astype(np.int64)
            for a, b in zip(new.run(None, feeds), old.run(None, feeds), strict=True):
                np.testing.assert_array_equal(a, b)


def test_recommender_on_a_built_bundle_graph_loads_the_rewritten_sessions(monkeypatch):
    """The MovieLens export's graph is the builder's: its fused graphs lose both
    transposes (one becomes a Reshape) and the two Reshapes onnxruntime's MatMul + Add
    fusion puts around a 3-D attention MatMul."""
    blob = build_user_encoder(trained_looking_model(), opset=18).SerializeToString()
    edits, initializers = batch_one.batch_one_edits(blob, P.scan_model(blob).outputs)
    ops = [n.op_type for n in P.graph_nodes(blob)]
    assert sorted(ops[i] for i in edits) == ["Reshape", "Reshape", "Transpose", "Transpose"]
    assert [len(v) for _, v in sorted(edits.items())].count(0) == 1  # one node dropped
    assert len(initializers) == 3


def lstm_graph(
    consumer: str = "attention", y_is_output: bool = False, perm=(2, 0, 1, 3), flat_inputs=2
):
    """A miniature of the builder's LSTM section, with one thing to vary at a time."""
    d, h, length = 4, 3, 5
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((2, 4 * h, d)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.standard_normal((2, 4 * h, h)).astype(np.float32), "R"),
        numpy_helper.from_array(np.array([0, 0, -1], np.int64), "bl"),
        numpy_helper.from_array(np.array([0, -1], np.int64), "b_"),
        numpy_helper.from_array(rng.standard_normal((2 * h, 1)).astype(np.float32), "aw"),
        numpy_helper.from_array(np.ones((1, 1, length), np.float32), "pool"),
    ]
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
        helper.make_node("LSTM", ["xt", "W", "R"], ["y"], direction="bidirectional", hidden_size=h),
        helper.make_node("Transpose", ["y"], ["yt"], perm=list(perm)),
        helper.make_node("Reshape", ["yt", "bl"][:flat_inputs], ["out"]),
        helper.make_node("MatMul", ["pool", "out"], ["pooled"]),
    ]
    outputs = [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, None)]
    if consumer == "attention":
        nodes += [
            helper.make_node("Tanh", ["out"], ["t"]),
            helper.make_node("MatMul", ["t", "aw"], ["s"]),
            helper.make_node("Reshape", ["s", "b_"], ["logits"]),
        ]
    else:  # the outputs summed over time: not row-wise
        nodes.append(helper.make_node("ReduceSum", ["out"], ["logits"], keepdims=0))
    outputs.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, None))
    if y_is_output:
        outputs.append(helper.make_tensor_value_info("yt", TensorProto.FLOAT, None))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, length, d])],
        outputs,
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    return model.SerializeToString()


def rewritten(blob: bytes) -> bytes | None:
    edits, initializers = batch_one.batch_one_edits(blob, P.scan_model(blob).outputs)
    if not edits:
        return None
    return P.extend_graph(P.edit_graph(blob, (), edits), [], [], [], initializers=initializers)


def test_the_miniature_is_rewritten_and_answers_alike():
    blob = lstm_graph()
    new = rewritten(blob)
    assert new is not None
    x = np.random.default_rng(1).standard_normal((1, 5, 4)).astype(np.float32)
    for a, b in zip(
        session(new).run(None, {"x": x}), session(blob).run(None, {"x": x}), strict=True
    ):
        assert a.shape == b.shape
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "kw",
    [{"consumer": "sum"}, {"y_is_output": True}, {"perm": (0, 2, 1, 3)}, {"flat_inputs": 1}],
    ids=[
        "outputs-read-across-time",
        "outputs-are-a-graph-output",
        "other-transpose",
        "malformed-reshape",
    ],
)
def test_graphs_that_are_not_the_pattern_are_left_as_they_are(kw):
    assert rewritten(lstm_graph(**kw)) is None


def test_graph_nodes_and_initializers_read_what_onnx_wrote():
    blob = lstm_graph()
    nodes = P.graph_nodes(blob)
    assert [n.op_type for n in nodes][:4] == ["Transpose", "LSTM", "Transpose", "Reshape"]
    assert nodes[0].ints["perm"] == (1, 0, 2) and nodes[0].inputs == ("x",)
    assert nodes[1].ints["hidden_size"] == (3,) and "direction" in nodes[1].attributes
    assert "direction" not in nodes[1].ints  # a string attribute
    found = P.graph_initializers(blob, {"bl", "W", "absent"})
    assert found["bl"].tolist() == [0, 0, -1] and found["W"].shape == (2, 12, 4)
    assert "absent" not in found


def test_edit_graph_replaces_and_drops_nodes_and_copies_the_rest():
    blob = lstm_graph()
    assert P.edit_graph(blob, (), {}) == blob
    new = P.edit_graph(blob, (), {2: [], 0: [P.node("Identity", ["x"], ["xt"])]})
    ops = [n.op_type for n in P.graph_nodes(new)]
    assert ops[:2] == ["Identity", "LSTM"] and ops.count("Transpose") == 0
    assert P.graph_initializers(new, {"W"})["W"].shape == (2, 12, 4)


def test_node_indices_count_across_graph_fields_as_parsers_merge_them():
    """A model extended with a second graph field (``extend_graph``) lists its nodes
    after the first field's, and ``edit_graph`` edits by that same index."""
    blob = P.extend_graph(lstm_graph(), [P.node("Identity", ["logits"], ["copy"])], [], [])
    nodes = P.graph_nodes(blob)
    assert nodes[-1].op_type == "Identity"
    new = P.edit_graph(blob, (), {len(nodes) - 1: [P.node("Neg", ["logits"], ["copy"])]})
    assert [n.op_type for n in P.graph_nodes(new)] == [n.op_type for n in nodes][:-1] + ["Neg"]
