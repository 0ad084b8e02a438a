"""Which scoring path is faster for a catalog: numpy ``items @ u`` + argpartition, or an
ONNX MatMul + TopK graph. Measured at export for the bundle's own matrix and recorded in
the manifest (``scoring``); ``benchmarks/export_scoring.py`` runs the same measurement
for 100k and 1M items. Medians of repeated single-user calls, 1 onnxruntime thread.
"""

from __future__ import annotations

import time

import numpy as np


def topk_graph(dim: int, k: int, opset: int = 18, ir_version: int = 9):
    """scores = items @ user; (values, indices) = TopK(scores, k). Items are an input."""
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("MatMul", ["items", "user_col"], ["scores_col"]),
        helper.make_node("Reshape", ["scores_col", "flat"], ["scores"]),
        helper.make_node("TopK", ["scores", "k"], ["values", "indices"], largest=1, sorted=1),
    ]
    graph = helper.make_graph(
        nodes,
        "score_topk",
        [
            helper.make_tensor_value_info("items", TensorProto.FLOAT, ["n_rows", dim]),
            helper.make_tensor_value_info("user_col", TensorProto.FLOAT, [dim, 1]),
        ],
        [
            helper.make_tensor_value_info("values", TensorProto.FLOAT, [k]),
            helper.make_tensor_value_info("indices", TensorProto.INT64, [k]),
        ],
        initializer=[
            helper.make_tensor("flat", TensorProto.INT64, [1], [-1]),
            helper.make_tensor("k", TensorProto.INT64, [1], [k]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    return model


def numpy_topk(items: np.ndarray, user: np.ndarray, k: int) -> np.ndarray:
    scores = items @ user
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def measure_scoring(
    items: np.ndarray, *, k: int = 10, repeats: int = 30, threads: int = 1, seed: int = 0
) -> dict:
    """Median ms per single-user scoring + top-k with each method, and the faster one."""
    import onnxruntime as ort

    items = np.ascontiguousarray(items, dtype=np.float32)
    n, dim = items.shape
    k = min(k, n)
    user = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(
        topk_graph(dim, k).SerializeToString(), opts, providers=["CPUExecutionProvider"]
    )
    feed = {"items": items, "user_col": user[:, None]}
    onnx_ids = sess.run(["indices"], feed)[0]
    np_ids = numpy_topk(items, user, k)
    numpy_ms = _median_ms(lambda: numpy_topk(items, user, k), repeats)
    onnx_ms = _median_ms(lambda: sess.run(["indices"], feed), repeats)
    return {
        "n_rows": int(n),
        "dim": int(dim),
        "k": int(k),
        "numpy_ms": round(numpy_ms, 4),
        "onnx_ms": round(onnx_ms, 4),
        "same_top_k": bool(np.array_equal(np.sort(onnx_ids), np.sort(np_ids))),
        "method": "numpy" if numpy_ms <= onnx_ms else "onnx",
        "ort_threads": threads,
        "repeats": repeats,
    }
