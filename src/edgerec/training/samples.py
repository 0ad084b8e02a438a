"""Training samples: every prefix of every user's training sequence predicts its next item.

A sample is a CSR range ``[start, end)`` of history plus the target event at ``end``.
The history stops strictly before the target, so the user tower never sees the target
or anything after it. Batches are materialised lazily from the ranges, which keeps
memory at O(events) instead of O(events x max_len).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgerec.data.schema import Dataset
from edgerec.data.split import LeaveOneOut
from edgerec.training.inputs import request_gaps, window_inputs


@dataclass(frozen=True)
class Samples:
    user: np.ndarray  # (S,) dense user index
    start: np.ndarray  # (S,) CSR start of the history (before max_len clipping)
    end: np.ndarray  # (S,) CSR index of the target == exclusive end of the history

    def __len__(self) -> int:
        return len(self.end)

    def history_lengths(self, max_len: int) -> np.ndarray:
        return np.minimum(self.end - self.start, max_len)


@dataclass(frozen=True)
class Batch:
    items: np.ndarray
    behaviours: np.ndarray
    gaps: np.ndarray
    lengths: np.ndarray
    targets: np.ndarray  # (B,) item index
    target_behaviours: np.ndarray  # (B,) behaviour index (0 = none)
    target_categories: np.ndarray  # (B, C) float multi-hot
    user_categories: np.ndarray  # (B, C) float distribution over categories
    future_targets: np.ndarray  # (B, K) items after the target (0 = none), training part only
    request_gaps: np.ndarray  # (B,) gap bucket from the last history event to the target
    seen: tuple[np.ndarray, np.ndarray] | None  # (row, item) of earlier items, targets excluded


def training_samples(split: LeaveOneOut) -> Samples:
    """One sample per training event that has at least one earlier event."""
    seq = split.sequences
    train = split.train_events()
    n = len(seq.items)
    user_of = np.repeat(np.arange(seq.n_users), seq.lengths)
    first = np.zeros(n, dtype=bool)
    first[seq.offsets[:-1][seq.lengths > 0]] = True
    ends = np.flatnonzero(train & ~first)
    users = user_of[ends]
    return Samples(user=users, start=seq.offsets[users], end=ends)


class BatchBuilder:
    """Turns sample indices into padded numpy batches (same encoding as the runtime)."""

    def __init__(
        self,
        dataset: Dataset,
        split: LeaveOneOut,
        samples: Samples,
        max_len: int,
        future: int = 0,
        mask_seen: bool = False,
    ):
        self.split = split
        self.samples = samples
        self.max_len = max_len
        self.future = future
        self.mask_seen = mask_seen
        self.train_end = split.history_end("train")  # exclusive; valid/test never labels
        cats = np.asarray(dataset.catalog.categories, dtype=np.float32)
        n_cat = cats.shape[1]
        # row 0 (padding) has no categories
        self.item_categories = np.vstack([np.zeros((1, n_cat), np.float32), cats])
        seq = split.sequences
        train = split.train_events()
        user_of = np.repeat(np.arange(seq.n_users), seq.lengths)
        dist = np.zeros((seq.n_users, n_cat), dtype=np.float64)
        np.add.at(dist, user_of[train], self.item_categories[seq.items[train]])
        total = dist.sum(1, keepdims=True)
        self.user_categories = np.divide(
            dist, total, out=np.zeros_like(dist), where=total > 0
        ).astype(np.float32)

    def __call__(self, index: np.ndarray) -> Batch:
        s = self.samples
        starts, ends = s.start[index], s.end[index]
        items, behaviours, gaps, lengths = window_inputs(self.split, starts, ends, self.max_len)
        seq = self.split.sequences
        targets = seq.items[ends]
        steps = ends[:, None] + np.arange(1, self.future + 1)[None, :]
        inside = steps < self.train_end[s.user[index]][:, None]
        future = np.where(inside, seq.items[np.where(inside, steps, 0)], 0)
        seen = None
        if self.mask_seen:
            counts = ends - s.start[index]
            rows = np.repeat(np.arange(len(index)), counts)
            first = np.repeat(s.start[index] - np.r_[0, np.cumsum(counts)[:-1]], counts)
            hist_items = seq.items[first + np.arange(counts.sum())]
            is_target = hist_items == targets[rows]
            for k in range(future.shape[1]):
                is_target |= hist_items == future[rows, k]
            seen = (rows[~is_target], hist_items[~is_target])
        return Batch(
            items=items,
            behaviours=behaviours,
            gaps=gaps,
            lengths=lengths,
            targets=targets,
            target_behaviours=seq.behaviours[ends],
            target_categories=self.item_categories[targets],
            user_categories=self.user_categories[s.user[index]],
            future_targets=future.astype(np.int64),
            request_gaps=request_gaps(self.split, ends),
            seen=seen,
        )


def epoch_order(
    n: int,
    seed: int,
    epoch: int,
    rank: int = 0,
    world: int = 1,
    batch_size: int = 256,
    lengths: np.ndarray | None = None,
    bucket_batches: int = 32,
) -> list[np.ndarray]:
    """Shuffled batches of this rank for an epoch; a function of (seed, epoch) only.

    Deriving the permutation from (seed, epoch) instead of a running RNG is what makes a
    resumed run replay exactly the batches the uninterrupted one would have seen. Every
    rank gets the same number of batches (DDP needs matching collective calls). With
    ``lengths``, each run of ``bucket_batches`` batches is sorted by history length
    before it is cut, so a batch pads to a similar length (the LSTM's cost is
    batch x longest history); the batches are then shuffled again.
    """
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(n)
    if world > 1:
        per_rank = n // world
        perm = perm[rank * per_rank : (rank + 1) * per_rank]
    if lengths is not None and bucket_batches > 1:
        chunk = batch_size * bucket_batches
        parts = []
        for i in range(0, len(perm), chunk):
            block = perm[i : i + chunk]
            parts.append(block[np.argsort(lengths[block], kind="stable")])
        perm = np.concatenate(parts) if parts else perm
    batches = [perm[i : i + batch_size] for i in range(0, len(perm), batch_size)]
    if lengths is not None and bucket_batches > 1:
        batches = [batches[j] for j in rng.permutation(len(batches))]
    return batches
