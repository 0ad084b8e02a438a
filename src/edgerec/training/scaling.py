"""Settings that follow the data's shape, as plain rules (no search, nothing tuned per set).

``max_len`` (events of history the Bi-LSTM reads): the median user's whole training
history, rounded to a multiple of 10, within [MIN_LEN, MAX_LEN]. A typical user is read
in full; heavy users contribute their latest MAX_LEN events (the LSTM's cost grows
linearly with it). MovieLens 100K: median 63 -> 60; 150-event histories -> 150.

How much an item leans on its ID embedding versus its text vector: an item seen ``n``
times in training adds its ID embedding scaled by n / (n + ID_PRIOR) (``id_prior`` in
the model config), so an item with a handful of interactions is mostly its text vector
and a well-watched one mostly collaborative; a brand-new item (n = 0) is its text vector
alone, which is what the runtime's cold-start path serves. This is a per-item rule, so
it transfers between a catalog of 1,682 well-watched items and one of 10k with a long
tail without a per-set constant.
"""

from __future__ import annotations

import numpy as np

MIN_LEN = 20
MAX_LEN = 200
ID_PRIOR = 5.0  # interactions at which an item's ID embedding gets half its weight


def data_shape(split) -> dict:
    """Counts the rules read, from the training part of a leave-one-out split."""
    seq = split.sequences
    train = split.train_events()
    per_user = np.bincount(
        np.repeat(np.arange(seq.n_users), seq.lengths)[train], minlength=seq.n_users
    )
    n_items = int(split.n_items)
    per_item = np.bincount(seq.items[train], minlength=n_items + 1)[1:]
    return {
        "users": int(seq.n_users),
        "items": int(len(per_item)),
        "train_events": int(train.sum()),
        "median_history": float(np.median(per_user)) if len(per_user) else 0.0,
        "p90_history": float(np.percentile(per_user, 90)) if len(per_user) else 0.0,
        "median_item_count": float(np.median(per_item)) if len(per_item) else 0.0,
        "items_under_5": float((per_item < 5).mean()) if len(per_item) else 0.0,
    }


def max_len_rule(shape: dict) -> int:
    length = int(round(shape["median_history"] / 10.0)) * 10
    return int(min(max(length, MIN_LEN), MAX_LEN))


def item_counts(split, n_items: int) -> np.ndarray:
    """(n_items + 1,) training interactions per item index (row 0: padding)."""
    return np.bincount(split.sequences.items[split.train_events()], minlength=n_items + 1)


def id_scale(counts: np.ndarray, prior: float) -> np.ndarray:
    """n / (n + prior) per item (row 0, padding, 0)."""
    counts = np.asarray(counts, dtype=np.float64)
    scale = counts / (counts + prior) if prior > 0 else np.ones_like(counts)
    scale[0] = 0.0
    return scale.astype(np.float32)
