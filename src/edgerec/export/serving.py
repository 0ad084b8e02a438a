"""The graphs a runtime runs, built around the exported user encoder (bundle format 2).

A runtime in any language should only map ids to rows, run a graph and map rows back to
ids. So everything between a request and its answer that is not id mapping lives in the
graphs written here (interfaces in ``docs/bundle.md``):

- ``recommend``: request arrays -> top-k rows and scores, the gate and the user vector.
  In front of the encoder: the window (latest ``max_len`` events), the history lengths,
  the realignment of right-aligned requests to the encoder's left-aligned layout, the
  gap buckets and the request-gap bucket. Behind it: scores over the item matrix (an
  input, so the catalog may change at run time) plus the caller's row bias, the
  history's own rows masked, TopK.
- ``user_encoder``: the same front and encoder, giving user vectors, gates and attention
  (large catalogs, GPUs, ``user_vector`` and ``explain``).
- ``shortlist``: int8 scores of a large catalog (``MatMulInteger``), whose placeholder
  matrix the runtime replaces at load with the catalog's (onnxruntime's
  ``SessionOptions.add_initializer``), so the matrix is a constant it can prepack.
- ``topk`` (+ ``topk_fp16``): scores and TopK of user vectors over a matrix bound on a
  device (the CUDA path).

The encoder in the middle is whatever ``onnx_user`` wrote (the graph builder's or
``torch.onnx``'s): it keeps the interface items / behaviours / gaps / lengths /
item_table (/ request_gaps) -> user / gate / attention, and is spliced in unchanged.
"""

from __future__ import annotations

import copy

import numpy as np

from edgerec.features import FIRST_GAP_MARK, GAP_PAD, MARKED_BUCKET_EDGES

# graph inputs and outputs: the contract with docs/bundle.md and every runtime
ROWS, BEHAVIOURS, TIMESTAMPS, NOW = "history_rows", "history_behaviours", "history_times", "now"
ITEM_MATRIX, ROW_BIAS, MASK_SEEN, K = "item_matrix", "row_bias", "mask_seen", "k"
TOP_ROWS, TOP_SCORES = "top_rows", "top_scores"
UNKNOWN_NOW = int(np.iinfo(np.int64).min)  # ``now`` of a request without a known time
RECOMMEND_OUTPUTS = (TOP_ROWS, TOP_SCORES, "user", "gate")
USER_OUTPUTS = ("user", "gate", "attention")
SHORTLIST_INPUT, SHORTLIST_OUTPUT = "user_q", "scores"
SHORTLIST_MATRIX, SHORTLIST_SCALE = "qt", "scale"  # replaced by the runtime at load
SHORTLIST_ZERO = 128  # zero point of the uint8 user codes

_ENCODER_FEEDS = ("items", "behaviours", "gaps", "lengths", "item_table", "request_gaps")
_P = "request/"  # names of the nodes in front of the encoder
_S = "score/"  # names of the scoring nodes


def _front(max_len: int) -> tuple[list, list]:
    """Nodes turning the request inputs into the encoder's inputs.

    Requests are right-aligned (the latest event in the last column, row 0 to the left
    of shorter histories); the encoder reads left-aligned windows with their lengths, so
    each row is rotated left by its padding: column ``t`` of the result is column
    ``(t + W - length) mod W`` of the window.
    """
    from onnx import TensorProto, helper, numpy_helper

    i64 = np.int64
    constants = {
        "window_start": np.array([-max_len], i64),
        "end": np.array([np.iinfo(i64).max], i64),
        "start0": np.array([0], i64),
        "axis0": np.array([0], i64),
        "axis1": np.array([1], i64),
        "minus1": np.array([-1], i64),
        "zero": np.array(0, i64),
        "one": np.array(1, i64),
        "one_1d": np.array([1], i64),
        "first_mark": np.array(FIRST_GAP_MARK, i64),
        "unknown_now": np.array(UNKNOWN_NOW, i64),
        "gap_pad": np.array(GAP_PAD, i64),
        # counting the edges at or below a gap gives its bucket (edgerec.features)
        "edges": MARKED_BUCKET_EDGES.reshape(-1, 1, 1),
        "edges_1d": MARKED_BUCKET_EDGES.reshape(-1, 1),
    }
    inits = [numpy_helper.from_array(v, _P + k) for k, v in constants.items()]
    outside = {ROWS, BEHAVIOURS, TIMESTAMPS, NOW, ITEM_MATRIX, *_ENCODER_FEEDS}

    def name(x: str) -> str:
        return x if x in outside else _P + x

    def op(op_type: str, ins: list[str], out: str, **attrs):
        return helper.make_node(op_type, [name(x) for x in ins], [name(out)], **attrs)

    window = ["window_start", "end", "axis1"]
    nodes = [
        op("Slice", [ROWS, *window], "rows_w"),
        op("Slice", [BEHAVIOURS, *window], "behaviours_w"),
        op("Slice", [TIMESTAMPS, *window], "timestamps_w"),
        # every event has a row >= 1 (the runtime leaves unknown ids out)
        op("Greater", ["rows_w", "zero"], "real"),
        op("Cast", ["real"], "real_i", to=TensorProto.INT64),
        op("ReduceSum", ["real_i", "axis1"], "lengths", keepdims=0),
        op("Shape", ["rows_w"], "width_1d", start=1, end=2),
        op("Squeeze", ["width_1d"], "width"),
        op("Range", ["zero", "width", "one"], "positions"),
        op("Unsqueeze", ["lengths", "axis1"], "lengths_col"),
        op("Sub", ["width_1d", "lengths_col"], "padding"),
        op("Add", ["positions", "padding"], "shifted"),
        op("Mod", ["shifted", "width_1d"], "rotation"),
        op("GatherElements", ["rows_w", "rotation"], "items", axis=1),
        op("GatherElements", ["behaviours_w", "rotation"], "behaviours", axis=1),
        op("GatherElements", ["timestamps_w", "rotation"], "times", axis=1),
        # seconds since the previous event; the first event read carries the mark
        op("Slice", ["times", "start0", "minus1", "axis1"], "before_last"),
        op("Slice", ["times", "start0", "one_1d", "axis1"], "first"),
        op("Concat", ["first", "before_last"], "previous", axis=1),
        op("Sub", ["times", "previous"], "seconds"),
        op("Equal", ["positions", "zero"], "is_first"),
        op("Where", ["is_first", "first_mark", "seconds"], "marked"),
        op("Unsqueeze", ["marked", "axis0"], "marked_3d"),
        op("GreaterOrEqual", ["marked_3d", "edges"], "below"),
        op("Cast", ["below"], "below_i", to=TensorProto.INT64),
        op("ReduceSum", ["below_i", "axis0"], "gaps", keepdims=0),
        # the request gap: from the last event (the window's last column) to ``now``
        op("Slice", ["timestamps_w", "minus1", "end", "axis1"], "last_2d"),
        op("Squeeze", ["last_2d", "axis1"], "last"),
        op("Max", [NOW, "last"], "now_or_last"),
        op("Sub", ["now_or_last", "last"], "request_seconds"),
        op("Unsqueeze", ["request_seconds", "axis0"], "request_2d"),
        op("GreaterOrEqual", ["request_2d", "edges_1d"], "request_below"),
        op("Cast", ["request_below"], "request_below_i", to=TensorProto.INT64),
        op("ReduceSum", ["request_below_i", "axis0"], "request_bucket", keepdims=0),
        op("Equal", [NOW, "unknown_now"], "now_unknown"),
        op("Where", ["now_unknown", "gap_pad", "request_bucket"], "request_gaps"),
    ]
    return nodes, inits


def _scoring() -> tuple[list, list]:
    """``user @ item_matrix.T + row_bias``, -inf at the request's own rows when
    ``mask_seen`` is 1, then TopK (ties: the lower row first, as TopK specifies)."""
    from onnx import TensorProto, helper, numpy_helper

    s = _S
    inits = [numpy_helper.from_array(np.full((1, 1), -np.inf, np.float32), s + "neg_inf")]
    nodes = [
        helper.make_node("Gemm", ["user", ITEM_MATRIX, ROW_BIAS], [s + "scores"], transB=1),
        helper.make_node("Cast", [MASK_SEEN], [s + "mask"], to=TensorProto.INT64),
        helper.make_node("Mul", [ROWS, s + "mask"], [s + "seen"]),
        helper.make_node("Shape", [ROWS], [s + "seen_shape"]),
        helper.make_node("Expand", [s + "neg_inf", s + "seen_shape"], [s + "seen_values"]),
        helper.make_node(
            "ScatterElements",
            [s + "scores", s + "seen", s + "seen_values"],
            [s + "masked"],
            axis=1,
        ),
        helper.make_node("TopK", [s + "masked", K], [TOP_SCORES, TOP_ROWS], axis=-1),
    ]
    return nodes, inits


def serving_graph(encoder, *, max_len: int, dim: int, scoring: bool):
    """The ``recommend`` graph (``scoring``) or the ``user_encoder`` graph around
    ``encoder`` (a ``ModelProto`` with the encoder interface above)."""
    from onnx import TensorProto, helper

    from edgerec.errors import EdgerecError

    graph = encoder.graph
    needed = {i.name for i in graph.input}
    missing = needed - set(_ENCODER_FEEDS)
    if missing:
        raise EdgerecError(f"the user encoder takes inputs the request cannot feed: {missing}")
    nodes, inits = _front(max_len)
    for node in graph.node:  # the encoder reads the item matrix input itself: an Identity
        node = copy.deepcopy(node)  # in between copied a 1M-row matrix on every run
        node.input[:] = [ITEM_MATRIX if x == "item_table" else x for x in node.input]
        nodes.append(node)
    inits += list(graph.initializer)
    int_matrix = ("batch", "events")
    inputs = [
        helper.make_tensor_value_info(ROWS, TensorProto.INT64, int_matrix),
        helper.make_tensor_value_info(BEHAVIOURS, TensorProto.INT64, int_matrix),
        helper.make_tensor_value_info(TIMESTAMPS, TensorProto.INT64, int_matrix),
        helper.make_tensor_value_info(NOW, TensorProto.INT64, ["batch"]),
        helper.make_tensor_value_info(ITEM_MATRIX, TensorProto.FLOAT, ["n_rows", dim]),
    ]
    user = helper.make_tensor_value_info("user", TensorProto.FLOAT, ["batch", dim])
    gate = helper.make_tensor_value_info("gate", TensorProto.FLOAT, ["batch"])
    if scoring:
        more, more_inits = _scoring()
        nodes += more
        inits += more_inits
        inputs += [
            helper.make_tensor_value_info(ROW_BIAS, TensorProto.FLOAT, ["bias_rows", "n_rows"]),
            helper.make_tensor_value_info(MASK_SEEN, TensorProto.BOOL, [1]),
            helper.make_tensor_value_info(K, TensorProto.INT64, [1]),
        ]
        outputs = [
            helper.make_tensor_value_info(TOP_ROWS, TensorProto.INT64, ["batch", "k_out"]),
            helper.make_tensor_value_info(TOP_SCORES, TensorProto.FLOAT, ["batch", "k_out"]),
            user,
            gate,
        ]
        name = "edgerec_recommend"
    else:
        attention = helper.make_tensor_value_info(
            "attention", TensorProto.FLOAT, ["batch", "window"]
        )
        outputs = [user, gate, attention]
        name = "edgerec_user_encoder"
    out = helper.make_graph(nodes, name, inputs, outputs, inits)
    model = helper.make_model(out, opset_imports=list(encoder.opset_import))
    model.ir_version = encoder.ir_version
    return model


def shortlist_graph(dim: int, opset: int):
    """Scores of 8-bit users (``quantize_users`` codes, zero point 128) over the
    catalog's 7-bit rows, times each row's scale: in units of each user's step.

    ``qt`` (dim, rows) int8 and ``scale`` (rows,) float32 are one-row placeholders here;
    the runtime supplies the catalog's at session creation, as constants onnxruntime
    prepacks (as graph inputs they ran 10.5-12.1 ms against 6.7-7.7 ms over 1M rows).
    """
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node(
            "MatMulInteger", [SHORTLIST_INPUT, SHORTLIST_MATRIX, "user_zp", "qt_zp"], ["dots"]
        ),
        helper.make_node("Cast", ["dots"], ["dots_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["dots_f", SHORTLIST_SCALE], [SHORTLIST_OUTPUT]),
    ]
    inits = [
        numpy_helper.from_array(np.zeros((dim, 1), np.int8), SHORTLIST_MATRIX),
        numpy_helper.from_array(np.ones(1, np.float32), SHORTLIST_SCALE),
        numpy_helper.from_array(np.array(SHORTLIST_ZERO, np.uint8), "user_zp"),
        numpy_helper.from_array(np.array(0, np.int8), "qt_zp"),
    ]
    graph = helper.make_graph(
        nodes,
        "edgerec_shortlist",
        [helper.make_tensor_value_info(SHORTLIST_INPUT, TensorProto.UINT8, ["batch", dim])],
        [helper.make_tensor_value_info(SHORTLIST_OUTPUT, TensorProto.FLOAT, ["batch", "n_rows"])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def topk_graph(dim: int, opset: int, fp16: bool):
    """``user @ items.T + bias``, -inf at each user's ``excluded`` rows (padded with row
    0, which the bias masks), then TopK; ``items`` and ``bias`` stay bound on a device."""
    from onnx import TensorProto, helper, numpy_helper

    elem = TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT
    user = "user"
    nodes = []
    if fp16:
        nodes.append(helper.make_node("Cast", ["user"], ["user_h"], to=elem))
        user = "user_h"
    nodes += [
        helper.make_node("Gemm", [user, "items", "bias"], ["scores"], transB=1),
        helper.make_node("Shape", ["excluded"], ["excluded_shape"]),
        helper.make_node("Expand", ["neg_inf", "excluded_shape"], ["excluded_values"]),
        helper.make_node(
            "ScatterElements", ["scores", "excluded", "excluded_values"], ["masked"], axis=1
        ),
        helper.make_node("TopK", ["masked", "k"], ["top", "indices"], axis=-1),
        helper.make_node("Cast", ["top"], ["values"], to=TensorProto.FLOAT),
    ]
    neg_inf = np.full((1, 1), -np.inf, np.float16 if fp16 else np.float32)
    graph = helper.make_graph(
        nodes,
        "edgerec_topk",
        [
            helper.make_tensor_value_info("user", TensorProto.FLOAT, ["batch", dim]),
            helper.make_tensor_value_info("items", elem, ["n_rows", dim]),
            helper.make_tensor_value_info("bias", elem, ["bias_rows", "n_rows"]),
            helper.make_tensor_value_info("excluded", TensorProto.INT64, ["batch", "n_excluded"]),
            helper.make_tensor_value_info("k", TensorProto.INT64, [1]),
        ],
        [
            helper.make_tensor_value_info("values", TensorProto.FLOAT, ["batch", "k_out"]),
            helper.make_tensor_value_info("indices", TensorProto.INT64, ["batch", "k_out"]),
        ],
        [numpy_helper.from_array(neg_inf, "neg_inf")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def write_serving_graphs(
    encoder, folder, *, max_len: int, dim: int, opset: int, ir_version: int, metadata: dict
) -> tuple[dict[str, str], dict[str, str]]:
    """Write the fp32 ``recommend`` and ``user_encoder`` graphs around ``encoder`` and the
    scoring graphs into ``folder``; returns ({role: file}, {scorer: file})."""
    from pathlib import Path

    from edgerec.export.config import RECOMMEND_ROLE, SCORER_FILES, USER_ROLE, graph_file
    from edgerec.export.onnx_graph import check_and_save, set_metadata

    folder = Path(folder)
    files = {}
    for role, scoring in ((RECOMMEND_ROLE, True), (USER_ROLE, False)):
        model = serving_graph(encoder, max_len=max_len, dim=dim, scoring=scoring)
        set_metadata(model, role=role, precision="fp32", ir_version=ir_version, extra=metadata)
        files[role] = graph_file(role, "fp32")
        check_and_save(model, folder / files[role])
    scorers = {
        "shortlist": shortlist_graph(dim, opset),
        "topk": topk_graph(dim, opset, fp16=False),
        "topk_fp16": topk_graph(dim, opset, fp16=True),
    }
    for key, model in scorers.items():
        set_metadata(model, role=key, precision="fp32", ir_version=ir_version, extra=metadata)
        check_and_save(model, folder / SCORER_FILES[key])
    return files, dict(SCORER_FILES)
