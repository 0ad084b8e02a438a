"""One onnxruntime run per request: the user encoder with scoring and top-k appended to it.

Why: on a CPU, a single-history ``recommend()`` was a user-encoder run followed by numpy
scoring, masking of seen and removed rows and a top-k: a dozen numpy calls of a few
microseconds each, plus their Python, for a 1,682-row catalog that one GEMV scores in
a few microseconds. Appending the scoring graph to the user encoder does the same work
in five more nodes of the run the request makes anyway. The bundle's verified nodes and
weights are not re-encoded: ``onnxproto.without_inputs`` copies them byte for byte into
a graph without the four history inputs, and ``onnxproto.extend_graph`` adds a second
``graph`` field, which protobuf parsers merge into the first.

Answers equal the numpy scorer's: float32 scores of the same rows, the caller's seen
rows and the catalog's inactive rows (padding row 0, removed items) at -inf, rows best
first with ties by the lower row (TopK's specified order; re-sorted on the host
whenever tied scores come back, as every scorer does), never an ineligible row.
Used for catalogs of at most ``MAX_ROWS`` rows; above that the numpy scorer's block
top-k is faster than onnxruntime's TopK (1M scores: 0.55 vs 1.10 ms,
``benchmarks/runtime_latency.py``).

The request goes in as one ``REQUEST`` array, (4, n) int64, n the events given (more past
the window the model reads: ``plan_width``): the catalog rows, the behaviour codes, the
seconds since each previous event with ``FIRST_GAP_MARK`` at the first event the model
reads, and the rows to mask (the history's rows, or zeros: row 0 is always masked).
Nodes put in front of the user encoder slice the latest ``max_len`` events, split them
into the graph's ``items`` and ``behaviours``, count the gap buckets
(``features.MARKED_BUCKET_EDGES``) and take ``lengths`` from the shape; those four inputs
are no longer declared. Why:

- onnxruntime caches one memory plan per key of the input shapes, and the key is the XOR
  of all their dims. With a history's length in an even number of inputs (rows,
  behaviours, gaps and excluded rows, the former layout) every length had the same key,
  so the plan of whichever length ran first -- the one-event check at load -- was the
  one every later call found, and missed. One input that holds the length gives each
  length its own plan. A run whose plan fits took 10-14 us less per ``recommend()``
  than one without plans, and a missed plan saved nothing (paired A/Bs, three rounds).
- Against the former layout as loaded (its plan taken by the load check): histories of
  1-50 events, 4.6-7.4 us (2-4%) less per ``recommend()`` (three rounds); 50-event
  histories, -7.6 to +4.8 us over six rounds, no clear change: the eight added nodes cost
  about what the inputs, the host's bucketing and the slices they replace did (paired
  A/B).

Requests that fill the window run on sessions with ``REQUEST``'s width fixed
(``full_window_widths``, ``fused_graph``'s ``width``), where onnxruntime folds away what
the dynamic graph computes from the length. Shorter requests run on a dynamic session
that, like the window's own, reads every column (``UP_TO_WINDOW``); only the dynamic one
of any width and those past the window slice out the latest ``max_len`` events.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgerec.features import FIRST_GAP_MARK, MARKED_BUCKET_EDGES
from edgerec.runtime import onnxproto as P
from edgerec.runtime.batch_one import batch_one_edits
from edgerec.runtime.inputs import int_feed
from edgerec.runtime.scoring import _best_first, masked_topk_nodes

PREFIX = "edgerec_topk/"
REQUEST = PREFIX + "request"  # (4, n) int64: rows, behaviour codes, marked gap seconds, masked
BIAS = PREFIX + "bias"  # (n_rows,) float32: 0, or -inf where a row may not be returned
K = PREFIX + "k"  # (1,) int64, at most n_rows
SPLIT_INPUTS = ("items", "behaviours", "gaps", "lengths")  # computed from REQUEST
VALUES = PREFIX + "values"
INDICES = PREFIX + "indices"
OUTPUTS = [VALUES, INDICES, "user", "gate"]
MAX_ROWS = 1 << 16
MAX_FIXED_WIDTH = 1024  # widest request given a session of its own (full_window_widths)
UP_TO_WINDOW = "up_to_window"  # fused_graphs' key of the dynamic graph for n <= max_len
MIN_OPSET = 15  # Shape's start attribute; Slice, Split, Unsqueeze, ReduceSum take inputs from 13
_NEG_INF = float("-inf")


def fused_graph(user_graph: bytes, max_len: int, width: int | str | None = None) -> bytes | None:
    """The user encoder (item table as an input) fed from ``REQUEST``, plus scoring and
    TopK of its user vector; ``max_len``: the events the model reads.

    ``width``: declare ``REQUEST``'s columns fixed (one of ``full_window_widths``) instead
    of dynamic. With every event dim known, onnxruntime's shape inference makes the
    history length a constant, and constant folding drops the nodes that compute from
    it: the length, the mask rows and their slices, the -inf updates for masking (49 ->
    41 nodes for the MovieLens model). Runs of such a session took 13-17 us less than
    the dynamic one's on the same 50-event requests, with byte-identical outputs (paired
    A/B of bare runs, blocks of 25 alternating, three rounds). ``UP_TO_WINDOW``: a
    dynamic graph for requests of at most ``max_len`` events (it reads every column).

    Graphs whose requests never exceed the window (``max_len`` fixed, ``UP_TO_WINDOW``)
    split ``REQUEST`` into its four rows with one node; the others slice the three rows
    the model reads to the latest ``max_len`` columns and the masked row apart. The one
    Split in place of two Slices and a Split gives byte-identical outputs. Bare runs
    (paired A/B, blocks of 25 alternating, three or four rounds a run): 20 and 30
    dynamic columns -3.2 to -7.2 us over three runs; width 50 -4.9 to -9.6 us over two
    runs and -0.7 to +0.5 us over a third, i.e. this VM's drift decides.

    None (the caller then keeps separate scoring) when the graph already uses the names
    the additions need -- if ``PREFIX`` occurs nowhere in the bytes, no name can hold it --
    when its opset predates ``MIN_OPSET``, or when ``SPLIT_INPUTS`` are not all int64
    inputs of it.
    """
    return fused_graphs(user_graph, max_len, [width]).get(width)


def fused_graphs(
    user_graph: bytes, max_len: int, widths: Sequence[int | str | None]
) -> dict[int | str | None, bytes]:
    """``fused_graph`` for each of ``widths`` (None: the dynamic graph), the bundle's
    graph checked and stripped of its history inputs once for all of them (about 3 ms
    each for the MovieLens model) and its LSTM section rewritten for one history
    (``batch_one``); empty where ``fused_graph`` gives None."""
    if PREFIX.encode() in bytes(user_graph):
        return {}
    summary = P.scan_model(user_graph)
    if summary.opsets.get("", summary.opsets.get("ai.onnx", 0)) < MIN_OPSET or any(
        name not in summary.inputs or summary.inputs[name].elem_type != P.INT64
        for name in SPLIT_INPUTS
    ):
        return {}
    # every fused graph runs one history: its LSTM section as for a batch of one
    edits, batch_one = batch_one_edits(user_graph, summary.outputs)
    stripped = P.edit_graph(user_graph, SPLIT_INPUTS, edits)
    graphs = {}
    for width in widths:
        within = width == UP_TO_WINDOW or (isinstance(width, int) and width <= max_len)
        nodes, initializers = _request_nodes(max_len, within)
        graphs[width] = P.extend_graph(
            stripped,
            nodes,
            [
                P.value_info(
                    REQUEST, P.INT64, [4, width if isinstance(width, int) else "n_events"]
                ),
                P.value_info(BIAS, P.FLOAT, ["n_rows"]),
                P.value_info(K, P.INT64, [1]),
            ],
            [
                P.value_info(VALUES, P.FLOAT, [1, "k_out"]),
                P.value_info(INDICES, P.INT64, [1, "k_out"]),
            ],
            initializers=initializers + batch_one,
        )
    return graphs


def _request_nodes(max_len: int, within_window: bool) -> tuple[list[bytes], list[bytes]]:
    """(nodes, initializers) that turn ``REQUEST`` into the encoder's inputs and append
    the masked top-k; ``within_window``: no request is wider than ``max_len``, so every
    column is read and one Split gives all four rows."""
    p = PREFIX
    i64 = np.int64
    excluded = p + "excluded"
    gap_seconds = p + "gap_seconds"
    if within_window:
        nodes = [
            P.node(
                "Split",
                [REQUEST, p + "ones"],
                ["items", "behaviours", gap_seconds, excluded],
                axis=0,
            )
        ]
        initializers = [P.tensor(p + "ones", np.ones(4, i64))]
    else:
        read = p + "read"
        nodes = [
            # rows 0-2 of the latest max_len events (Slice clamps -max_len to the first)
            P.node("Slice", [REQUEST, p + "read_starts", p + "read_ends", p + "axes01"], [read]),
            P.node("Split", [read, p + "ones"], ["items", "behaviours", gap_seconds], axis=0),
            P.node("Slice", [REQUEST, p + "three", p + "four", p + "axis0"], [excluded]),
        ]
        initializers = [
            P.tensor(p + "read_starts", np.array([0, -int(max_len)], i64)),
            P.tensor(p + "read_ends", np.array([3, np.iinfo(i64).max], i64)),
            P.tensor(p + "axes01", np.array([0, 1], i64)),
            P.tensor(p + "ones", np.ones(3, i64)),
            P.tensor(p + "three", np.array([3], i64)),
            P.tensor(p + "four", np.array([4], i64)),
            P.tensor(p + "axis0", np.array([0], i64)),
        ]
    # each gap's bucket: the edges at or below it, counted over the edges' axis (edges
    # shaped (E, 1, 1) against the (1, n) gaps: no Unsqueeze of the gaps)
    nodes += [
        P.node("GreaterOrEqual", [gap_seconds, p + "gap_edges"], [p + "edges_below"]),
        P.node("Cast", [p + "edges_below"], [p + "edges_counted"], to=P.INT64),
        P.node("ReduceSum", [p + "edges_counted", p + "edge_axis"], ["gaps"], keepdims=0),
        P.node("Shape", ["items"], ["lengths"], start=1),
    ]
    nodes += masked_topk_nodes("user", "item_table", BIAS, excluded, K, VALUES, INDICES, p)
    initializers += [
        P.tensor(p + "neg_inf", np.full((1, 1), -np.inf, np.float32)),
        P.tensor(p + "edge_axis", np.array([0], i64)),
        P.tensor(p + "gap_edges", MARKED_BUCKET_EDGES.reshape(-1, 1, 1)),
    ]
    return nodes, initializers


def plan_width(n: int, max_len: int) -> int:
    """Columns of ``REQUEST`` for ``n`` events: ``n`` up to ``max_len``, else the next
    power of two (the extra columns, zeros on the left, lie outside the window the model
    reads and mask row 0, which the bias masks anyway).

    Why: onnxruntime keeps one memory plan per input shape for the session's life (about
    1.2 KB each: 3,000 distinct lengths grew a process by 3.6 MB). Widths past the window
    in powers of two bound the plans at ``max_len`` plus about 17, where every distinct
    history length would otherwise add one.
    """
    return n if n <= max_len else 1 << (n - 1).bit_length()


def full_window_widths(max_len: int) -> tuple[int, ...]:
    """The ``REQUEST`` widths of histories that fill the window (n >= ``max_len``):
    ``max_len`` and the powers of two ``plan_width`` rounds longer ones to, up to
    ``MAX_FIXED_WIDTH``. A returning user's history usually fills the window, so the
    recommender gives each of these widths a session of its own (``fused_graph``'s
    ``width``); shorter and longer requests run on the dynamic one. Each costs about
    7 ms to create and 0.2-0.3 MB (MovieLens model)."""
    widths = [max_len]
    w = 1 << max_len.bit_length()  # plan_width(max_len + 1)
    while w <= MAX_FIXED_WIDTH:
        widths.append(w)
        w <<= 1
    return tuple(widths)


def widened(request: np.ndarray, width: int) -> np.ndarray:
    """``request`` with zero columns added on the left up to ``width`` columns."""
    n = request.shape[1]
    if n == width:
        return request
    out = np.zeros((request.shape[0], width), np.int64)
    out[:, width - n :] = request
    return out


def request_array(
    rows: np.ndarray,
    behaviours: np.ndarray,
    timestamps: np.ndarray | None,
    excluded: np.ndarray,
    max_len: int,
) -> np.ndarray:
    """``REQUEST`` of one history from its arrays: the ``rows`` the model reads (n >= 1,
    at most ``max_len``), their behaviour codes and timestamps (None: no times given,
    every gap a zero gap, as ``gap_buckets`` of zeros), and the rows to mask (any number).

    Rows to mask beyond the rows read widen the array to the left (to ``plan_width``)
    with columns the graph's slice skips, which needs a full window (``max_len`` rows
    read). A caller holding the history as lists builds the same array itself
    (``inputs.usual_stack``).
    """
    used, n_excluded = len(rows), len(excluded)
    n = plan_width(max(used, n_excluded), max_len)
    if used < n and used != max_len:
        raise ValueError(f"{n_excluded} rows to mask but {used} of at most {max_len} read")
    out = np.zeros((4, n), np.int64)
    lo = n - used
    out[0, lo:] = rows
    out[1, lo:] = behaviours
    if timestamps is not None:
        np.subtract(timestamps[1:], timestamps[:-1], out=out[2, lo + 1 :])
    out[2, lo] = FIRST_GAP_MARK
    out[3, n - n_excluded :] = excluded
    return out


def scoring_feeds(feeds: dict, bias: np.ndarray, k: int) -> dict:
    """``feeds`` with the scoring inputs added: the row bias and the top ``k``."""
    feeds[BIAS] = bias
    feeds[K] = int_feed(min(k, bias.shape[0]))
    return feeds


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
