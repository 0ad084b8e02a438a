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


def _log2_buckets(seconds: np.ndarray) -> np.ndarray:
    """2 + floor(log2(1 + s)) clipped to the last bucket; negative gaps count as 0 s.

    floor(log2(x)) of x >= 1 is frexp's exponent of x minus one: exact for any float,
    where ``floor(np.log2(x))`` rounds up just below large powers of two (the clip hides
    that for x < 2**32, so both give the same buckets; frexp is also the quicker).
    """
    x = np.maximum(seconds, 0).astype(np.float64)
    x += 1.0
    exponent = np.frexp(x)[1]
    np.minimum(exponent, GAP_LOG2_BUCKETS, out=exponent)
    exponent += 1
    return exponent.astype(np.int64)


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
