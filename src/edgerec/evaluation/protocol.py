"""The evaluation protocol: leave-one-out, full ranking, seen items excluded.

Any model is evaluated through a ``scorer(users, stage) -> scores`` callable that
returns one row per user over columns ``0..n_items`` (column 0 is padding and ignored),
so baselines, the PyTorch model and an exported bundle are measured identically.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgerec.data.split import LeaveOneOut
from edgerec.evaluation.metrics import KS, rank_metrics, top_k

Scorer = Callable[[np.ndarray, str], np.ndarray]


def recommender_scorer(rec, item_ids: list, behaviour_vocab: list, split: LeaveOneOut) -> Scorer:
    """Every catalog item's score from an ``edgerec.runtime.Recommender`` (``rec``): each
    user's history as original ids (``item_ids[row - 1]``), behaviour labels and
    timestamps, the request at the held-out event's time; the recommender's own
    encoding, item matrix and scoring. Items it does not hold score -inf."""
    index = {item_id: i + 1 for i, item_id in enumerate(item_ids)}
    seq = split.sequences
    n = len(item_ids)

    def scorer(users: np.ndarray, stage: str) -> np.ndarray:
        starts, ends = seq.offsets[users], split.history_end(stage)[users]
        histories, behaviours, timestamps = [], [], []
        for s, e in zip(starts, ends, strict=True):
            histories.append([item_ids[i - 1] for i in seq.items[s:e]])
            behaviours.append([behaviour_vocab[b] for b in seq.behaviours[s:e]])
            timestamps.append(seq.timestamps[s:e].tolist())
        results = rec.recommend_batch(
            histories,
            k=rec.n_items,
            exclude_seen=False,  # the protocol masks seen items itself
            behaviours=behaviours,
            timestamps=timestamps,
            now=seq.timestamps[ends].tolist(),  # when the held-out event happened
        )
        scores = np.full((len(users), n + 1), -np.inf)
        for row, recs in enumerate(results):
            cols = [index[r.item_id] for r in recs if r.item_id in index]
            scores[row, cols] = [r.score for r in recs if r.item_id in index]
        return scores

    return scorer


def mask_seen(scores: np.ndarray, split: LeaveOneOut, stage: str, users: np.ndarray) -> None:
    """Exclude padding and each user's earlier items (never the target itself), in place."""
    scores[:, 0] = -np.inf
    rows, items = split.history_matrix_rows(stage, users)
    targets = split.targets(stage)[users]
    keep = items != targets[rows]
    scores[rows[keep], items[keep]] = -np.inf


def evaluate(
    scorer: Scorer,
    split: LeaveOneOut,
    stage: str,
    *,
    batch_size: int = 256,
    users: np.ndarray | None = None,
) -> dict[str, float]:
    """Mean metrics over users for ``stage`` ('valid' or 'test')."""
    if users is None:
        users = np.arange(split.sequences.n_users)
    sums: dict[str, float] = {}
    recommended = np.zeros(split.n_items + 1, dtype=bool)
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        scores = np.array(scorer(batch, stage), dtype=np.float64, copy=True)
        if scores.shape != (len(batch), split.n_items + 1):
            raise ValueError(
                f"scorer returned shape {scores.shape}, expected {(len(batch), split.n_items + 1)}"
            )
        mask_seen(scores, split, stage, batch)
        per_user = rank_metrics(scores, split.targets(stage)[batch], KS)
        for name, values in per_user.items():
            sums[name] = sums.get(name, 0.0) + float(values.sum())
        recommended[top_k(scores, 10).ravel()] = True
    n = len(users)
    result = {name: total / n for name, total in sums.items()}
    result["coverage@10"] = float(recommended[1:].sum()) / split.n_items
    return result


def evaluate_both(scorer: Scorer, split: LeaveOneOut, **kw) -> dict:
    """The JSON layout every edgerec evaluation prints: users, items, valid, test."""
    return {
        "users": int(split.sequences.n_users),
        "items": int(split.n_items),
        "valid": evaluate(scorer, split, "valid", **kw),
        "test": evaluate(scorer, split, "test", **kw),
    }
