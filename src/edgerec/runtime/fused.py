"""One onnxruntime run per request: the user encoder with scoring and top-k appended to it.

Why: on a CPU, a single-history ``recommend()`` was a user-encoder run followed by numpy
scoring, masking of seen and removed rows and a top-k: a dozen numpy calls of a few
microseconds each, plus their Python, for a 1,682-row catalog that one GEMV scores in
a few microseconds. Appending the scoring graph to the user encoder does the same work
in five more nodes of the run the request makes anyway. The bundle's verified bytes are
not re-encoded: ``onnxproto.extend_graph`` adds a second ``graph`` field, which protobuf
parsers merge into the first.

Answers equal the numpy scorer's: float32 scores of the same rows, the caller's seen
rows and the catalog's inactive rows (padding row 0, removed items) at -inf, rows best
first with ties by the lower row (TopK's specified order; re-sorted on the host
whenever tied scores come back, as every scorer does), never an ineligible row.
Used for catalogs of at most ``MAX_ROWS`` rows; above that the numpy scorer's block
top-k is faster than onnxruntime's TopK (1M scores: 0.55 vs 1.10 ms,
``benchmarks/runtime_latency.py``).
"""

from __future__ import annotations

import numpy as np

from edgerec.runtime import onnxproto as P
from edgerec.runtime.inputs import int_feed
from edgerec.runtime.scoring import _best_first, masked_topk_nodes

PREFIX = "edgerec_topk/"
BIAS = PREFIX + "bias"  # (n_rows,) float32: 0, or -inf where a row may not be returned
EXCLUDED = PREFIX + "excluded"  # (1, n) int64 rows to mask (row 0 when there are none)
K = PREFIX + "k"  # (1,) int64, at most n_rows
VALUES = PREFIX + "values"
INDICES = PREFIX + "indices"
OUTPUTS = [VALUES, INDICES, "user", "gate"]
MAX_ROWS = 1 << 16
NO_EXCLUSIONS = np.zeros((1, 1), np.int64)  # row 0: already -inf through the bias
_NEG_INF = float("-inf")


def fused_graph(user_graph: bytes) -> bytes | None:
    """The user encoder (item table as an input) plus scoring and TopK of its user vector.

    None when the graph already uses the names the additions need (then the caller keeps
    separate scoring): if ``PREFIX`` occurs nowhere in the bytes, no name can hold it.
    """
    if PREFIX.encode() in bytes(user_graph):
        return None
    nodes = masked_topk_nodes("user", "item_table", BIAS, EXCLUDED, K, VALUES, INDICES, PREFIX)
    return P.extend_graph(
        user_graph,
        nodes,
        [
            P.value_info(BIAS, P.FLOAT, ["n_rows"]),
            P.value_info(EXCLUDED, P.INT64, [1, "n_excluded"]),
            P.value_info(K, P.INT64, [1]),
        ],
        [
            P.value_info(VALUES, P.FLOAT, [1, "k_out"]),
            P.value_info(INDICES, P.INT64, [1, "k_out"]),
        ],
        initializers=[P.tensor(PREFIX + "neg_inf", np.full((1, 1), -np.inf, np.float32))],
    )


def add_topk_feeds(feeds: dict, bias: np.ndarray, excluded: np.ndarray, k: int) -> None:
    """The scoring inputs of one history: ``excluded`` rows (may repeat), top ``k``."""
    feeds[BIAS] = bias
    feeds[EXCLUDED] = excluded[None, :] if excluded.size else NO_EXCLUSIONS
    feeds[K] = int_feed(min(k, bias.shape[0]))


def ranked(values: np.ndarray, indices: np.ndarray) -> tuple[list[int], list[float]]:
    """(rows, scores) of one history from TopK's outputs, as lists: best first, ties by
    row, no ineligible (-inf) rows. Lists, because the caller builds one result per
    item from them, and the checks on k Python floats cost less than numpy's calls."""
    v, r = values[0].tolist(), indices[0].tolist()
    if len(set(v)) < len(v):  # tied scores: make their order the lower row first
        rows, vals = _best_first(np.array(r, np.int64), np.array(v, np.float64))
        r, v = rows.tolist(), vals.tolist()
    if v and v[-1] == _NEG_INF:  # k reached rows that may not be returned
        keep = [i for i, x in enumerate(v) if x > _NEG_INF]
        r, v = [r[i] for i in keep], [v[i] for i in keep]
    return r, v
