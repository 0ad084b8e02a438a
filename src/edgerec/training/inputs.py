"""Padded model inputs for users of a split, built without per-user Python loops."""

from __future__ import annotations

import numpy as np

from edgerec.data.split import LeaveOneOut
from edgerec.features import gap_buckets, request_gap_buckets


def window_inputs(
    split: LeaveOneOut, starts: np.ndarray, ends: np.ndarray, max_len: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Right-padded (items, behaviours, gaps, lengths) for CSR ranges [starts, ends).

    Only the latest ``max_len`` events of each range are kept. Ranges must be non-empty.
    """
    seq = split.sequences
    starts = np.maximum(np.asarray(starts), np.asarray(ends) - max_len)
    lengths = (ends - starts).astype(np.int64)
    width = max(int(lengths.max()), 1)
    pos = np.arange(width)[None, :]
    idx = starts[:, None] + pos
    valid = pos < lengths[:, None]
    idx = np.where(valid, idx, 0)
    items = np.where(valid, seq.items[idx], 0)
    behaviours = np.where(valid, seq.behaviours[idx], 0)
    ts = np.where(valid, seq.timestamps[idx], 0)
    return items, behaviours, gap_buckets(ts, lengths), lengths


def stage_inputs(
    split: LeaveOneOut, users: np.ndarray, stage: str, max_len: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Inputs for predicting each user's ``stage`` target ('valid' or 'test')."""
    users = np.asarray(users)
    return window_inputs(
        split, split.sequences.offsets[users], split.history_end(stage)[users], max_len
    )


def request_gaps(split: LeaveOneOut, ends: np.ndarray) -> np.ndarray:
    """Gap bucket from the last history event (``ends - 1``) to the event at ``ends``,
    whose time is the request time of the prediction (it is known when a user asks)."""
    ts = split.sequences.timestamps
    ends = np.asarray(ends)
    return request_gap_buckets(ts[ends - 1], ts[ends])


def stage_request_gaps(split: LeaveOneOut, users: np.ndarray, stage: str) -> np.ndarray:
    return request_gaps(split, split.history_end(stage)[np.asarray(users)])
