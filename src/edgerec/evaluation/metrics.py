"""Full-ranking metrics with ties handled by expectation.

When several items score exactly as high as the target, a real system would order them
arbitrarily. Rather than pick one order (which favours or punishes constant-score models
such as MostPop by accident), each metric is the exact average over every position the
target could take among its ties: with ``g`` items strictly above it and ``e`` items tied
with it (itself included), the target sits at rank ``g+1 .. g+e`` with equal probability.
Sums of the per-rank gains over such a run are read from prefix sums, so the expectation
costs no sampling and no loop.
"""

from __future__ import annotations

import numpy as np

KS = (10, 20)


def _gain_tables(kmax: int) -> dict[str, np.ndarray]:
    ranks = np.arange(1, kmax + 1, dtype=np.float64)
    zero = np.zeros(1)
    return {
        "hr": np.r_[zero, np.cumsum(np.ones(kmax))],
        "ndcg": np.r_[zero, np.cumsum(1.0 / np.log2(ranks + 1.0))],
        "mrr": np.r_[zero, np.cumsum(1.0 / ranks)],
    }


def rank_metrics(scores: np.ndarray, targets: np.ndarray, ks: tuple[int, ...] = KS) -> dict:
    """Per-user HR/NDCG/MRR@k for rows of ``scores`` (excluded items already at -inf).

    ``targets`` are column indices into ``scores``. Returns arrays of shape (B,).
    """
    scores = np.asarray(scores)
    rows = np.arange(len(targets))
    target_scores = scores[rows, targets][:, None]
    above = (scores > target_scores).sum(axis=1)
    tied = (scores == target_scores).sum(axis=1)  # includes the target itself
    tied = np.maximum(tied, 1)
    kmax = max(ks)
    tables = _gain_tables(kmax)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        lo = np.minimum(above, k)
        hi = np.minimum(above + tied, k)
        for name, table in tables.items():
            out[f"{name}@{k}"] = (table[hi] - table[lo]) / tied
    return out


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best columns per row, best first (ties: lower index first)."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    return np.take_along_axis(part, order, axis=1)
