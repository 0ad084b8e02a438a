"""The gap encoding shared by training and the runtime: exact log2 buckets."""

from __future__ import annotations

import numpy as np

from edgerec.features import (
    GAP_FIRST,
    GAP_LOG2_BUCKETS,
    GAP_PAD,
    gap_buckets,
    request_gap_buckets,
)


def reference_bucket(seconds: int) -> int:
    """2 + floor(log2(1 + s)) in exact integer arithmetic, clipped; negative gaps are 0 s."""
    return 2 + min((max(seconds, 0) + 1).bit_length() - 1, GAP_LOG2_BUCKETS - 1)


def test_gap_buckets_are_exact_at_every_power_of_two_and_clip_at_the_last_bucket():
    k = np.arange(1, 62)
    edges = np.concatenate([2**k - 2, 2**k - 1, 2**k, 2**k + 1]).astype(np.int64)
    seconds = np.concatenate([np.arange(-5, 5000), edges, -edges, [2**63 - 1, -(2**63)]])
    rng = np.random.default_rng(0)
    seconds = np.concatenate([seconds, (2.0 ** rng.uniform(0, 45, 20_000)).astype(np.int64)])
    last = np.zeros(len(seconds), np.int64)
    got = request_gap_buckets(last, seconds)
    assert got.tolist() == [reference_bucket(int(s)) for s in seconds]


def test_gap_buckets_mark_the_first_event_and_padding():
    ts = np.array([[100, 101, 50, 1_000_101, 0], [7, 7, 9, 0, 0]], np.int64)
    got = gap_buckets(ts, np.array([4, 3]))
    want = [
        [
            GAP_FIRST,
            reference_bucket(1),
            reference_bucket(-51),
            reference_bucket(1_000_051),
            GAP_PAD,
        ],
        [GAP_FIRST, reference_bucket(0), reference_bucket(2), GAP_PAD, GAP_PAD],
    ]
    assert got.tolist() == want
    one = gap_buckets(ts[:1, :4], np.array([4]))  # one history, no padding
    assert one.tolist() == [want[0][:4]]
