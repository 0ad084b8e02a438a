"""Feature encodings shared by training and the runtime (numpy only).

The trainer and the torch-free runtime must turn a history into exactly the same
integer inputs, so the encoding lives here, outside both, with no heavy imports.
Sequences are right-padded: event ``t`` of a user sits at position ``t``; padding
(item 0, behaviour 0, gap bucket 0) follows the last real event.
"""

from __future__ import annotations

import numpy as np

GAP_PAD = 0
GAP_FIRST = 1  # the first event of a history has no predecessor
GAP_LOG2_BUCKETS = 32  # floor(log2(1 + seconds)) clipped to 0..31 (about 68 years)
N_GAP_BUCKETS = 2 + GAP_LOG2_BUCKETS


# Bucket b >= 2 holds gaps s with 2**(b-2) - 1 <= s < 2**(b-1) - 1, i.e. b = 2 +
# floor(log2(1 + s)); counting the edges at or below s gives b in one searchsorted. The
# two leading int64 minima count for every gap (negative ones included), which adds the
# offset 2 without another array operation.
_INT64_MIN = np.iinfo(np.int64).min
_BUCKET_EDGES = np.array(
    [_INT64_MIN, _INT64_MIN] + [(1 << k) - 1 for k in range(1, GAP_LOG2_BUCKETS)], dtype=np.int64
)


# The same buckets counted inside an ONNX graph (``edgerec.runtime.fused``: GreaterOrEqual
# against these edges, summed). The second edge is one above int64's minimum, so a row of
# gap seconds can mark the first event it reads with ``FIRST_GAP_MARK``, which counts one
# edge: ``GAP_FIRST``. Real gaps still count both: timestamps are within +-2**62, so every
# gap is above int64's minimum plus one.
FIRST_GAP_MARK = _INT64_MIN
MARKED_BUCKET_EDGES = _BUCKET_EDGES.copy()
MARKED_BUCKET_EDGES[1] += 1
MARKED_BUCKET_EDGES.flags.writeable = False


def _log2_buckets(seconds: np.ndarray) -> np.ndarray:
    """2 + floor(log2(1 + s)) clipped to the last bucket; negative gaps count as 0 s.

    Why searchsorted over integer edges: it is exact for every int64 (no float rounding
    near large powers of two) and one numpy call, where the float route (clip, cast,
    frexp, clip, shift) took five -- a per-request cost on the runtime's hot path.
    """
    out = _BUCKET_EDGES.searchsorted(seconds, side="right")
    if out.dtype != np.int64:  # intp: int64 on 64-bit platforms, where this is no copy
        out = out.astype(np.int64)
    return out


def gap_buckets(timestamps: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Log-scale bucket of the time since the previous event, per right-padded position."""
    ts = np.asarray(timestamps, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    out = np.empty(ts.shape, dtype=np.int64)
    if ts.shape[1] == 0:
        return out
    out[:, 0] = GAP_FIRST
    out[:, 1:] = _log2_buckets(ts[:, 1:] - ts[:, :-1])
    if ts.shape[0] == 1 and lengths[0] >= ts.shape[1]:  # one history, no padding
        return out
    positions = np.arange(ts.shape[1])[None, :]
    out[positions >= lengths[:, None]] = GAP_PAD
    return out


def request_gap_buckets(last_timestamps: np.ndarray, request_times: np.ndarray) -> np.ndarray:
    """Bucket of the time from each history's last event to its request (same scale as
    ``gap_buckets``; a request before the last event counts as 0 s): a few minutes says
    the request continues a session, days say it opens a new one."""
    last = np.asarray(last_timestamps, dtype=np.int64)
    return _log2_buckets(np.asarray(request_times, dtype=np.int64) - last)


def pad_histories(
    items: list[np.ndarray],
    behaviours: list[np.ndarray],
    timestamps: list[np.ndarray],
    max_len: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Right-pad the most recent ``max_len`` events of each history.

    Returns (items, behaviours, gap_buckets, lengths) as int64 arrays; a history
    longer than ``max_len`` keeps its latest events.
    """
    n = len(items)
    lengths = np.array([min(len(x), max_len) for x in items], dtype=np.int64)
    width = max(int(lengths.max()) if n else 1, 1)
    it = np.zeros((n, width), dtype=np.int64)
    be = np.zeros((n, width), dtype=np.int64)
    ts = np.zeros((n, width), dtype=np.int64)
    for row in range(n):
        k = lengths[row]
        if k:
            it[row, :k] = items[row][-k:]
            be[row, :k] = behaviours[row][-k:]
            ts[row, :k] = timestamps[row][-k:]
    return it, be, gap_buckets(ts, lengths), lengths
