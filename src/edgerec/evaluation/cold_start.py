"""The item cold-start protocol: hold items out of training, add them back from text.

A share of the catalog (the items introduced last, by their first interaction, or a
random draw) becomes *cold*: every interaction with them leaves the training and
validation data, so the model never sees them. At test time they join the catalog from
their text alone, and the usual leave-one-out test (full ranking over every item, the
user's earlier items excluded) is read in two groups: the test events whose target is a
cold item, and the others (warm). Test histories keep their cold items: once added, the
catalog knows them, so a model reads them through their text vectors.

This module is numpy only (the runtime scorer needs ``edgerec.runtime``): the split, the
baselines on it, and the per-group metrics. Training and export live in
``edgerec.benchmark.cold_start``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgerec.data.schema import Dataset, Interactions, LoadReport
from edgerec.data.split import LeaveOneOut, leave_one_out
from edgerec.evaluation.metrics import KS, rank_metrics, top_k
from edgerec.evaluation.protocol import Scorer, mask_seen, recommender_scorer

CHOICES = ("recent", "random")
GROUPS = ("cold", "warm")
MIN_USER_EVENTS = 3  # what leave-one-out needs: a train, a validation and a test event


def check_fraction(fraction: float) -> float:
    """The share of items to make cold, as a float strictly between 0 and 1."""
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise ValueError(f"the cold-item fraction must be a number, got {fraction!r}")
    value = float(fraction)
    if not math.isfinite(value) or not 0.0 < value < 1.0:
        raise ValueError(f"the cold-item fraction must be between 0 and 1 (exclusive), got {value}")
    return value


def check_choice(choice: str) -> str:
    if choice not in CHOICES:
        raise ValueError(
            f"the cold-item choice must be one of {', '.join(CHOICES)}, got {choice!r}"
        )
    return choice


def first_interaction(dataset: Dataset) -> np.ndarray:
    """(n_items + 1,) earliest timestamp of each item (inf: never interacted with)."""
    inter = dataset.interactions
    first = np.full(dataset.n_items + 1, np.inf)
    np.minimum.at(first, inter.items, inter.timestamps.astype(np.float64))
    return first


def choose_cold_items(
    dataset: Dataset, fraction: float = 0.10, choice: str = "recent", seed: int = 0
) -> np.ndarray:
    """Sorted dense indices (1-based) of round(fraction x items) cold items.

    ``recent``: the items whose first interaction is latest (ties: the higher index is
    the later one), as new items enter a live catalog. ``random``: a uniform draw
    (``seed``). Only items with at least one interaction are eligible: an item nobody
    interacted with cannot be a test target.
    """
    fraction, choice = check_fraction(fraction), check_choice(choice)
    first = first_interaction(dataset)
    eligible = np.flatnonzero(np.isfinite(first[1:])) + 1
    n_cold = max(1, int(round(fraction * dataset.n_items)))
    if n_cold >= len(eligible):
        raise ValueError(
            f"a cold-item fraction of {fraction} makes {n_cold} of {len(eligible)} items "
            "with interactions cold, leaving none to train on; choose a smaller fraction"
        )
    if choice == "recent":
        order = np.lexsort((eligible, first[eligible]))  # oldest first
        cold = eligible[order[-n_cold:]]
    else:
        cold = np.random.default_rng(seed).choice(eligible, size=n_cold, replace=False)
    return np.sort(cold).astype(np.int64)


def without_items(dataset: Dataset, cold_items: np.ndarray) -> tuple[Dataset, np.ndarray]:
    """The data set with ``cold_items`` removed from the catalog and every interaction with
    them dropped; users left with fewer than three events leave too (leave-one-out needs
    three). Returns it and, per item of the new catalog, its index in ``dataset``."""
    n = dataset.n_items
    cold = np.zeros(n + 1, dtype=bool)
    cold[np.asarray(cold_items, dtype=np.int64)] = True
    kept_items = np.flatnonzero(~cold[1:]) + 1
    remap = np.zeros(n + 1, dtype=np.int64)
    remap[kept_items] = np.arange(1, len(kept_items) + 1)
    inter = dataset.interactions
    keep = ~cold[inter.items]
    per_user = np.bincount(inter.users[keep], minlength=dataset.n_users)
    keep &= per_user[inter.users] >= MIN_USER_EVENTS
    kept_users = np.flatnonzero(per_user >= MIN_USER_EVENTS)
    user_remap = np.full(dataset.n_users, -1, dtype=np.int64)
    user_remap[kept_users] = np.arange(len(kept_users))
    rows = kept_items - 1
    catalog = dataset.catalog.subset(rows)
    on_cold = cold[inter.items]
    report = LoadReport()
    report.drop("interactions with cold items", int(on_cold.sum()))
    report.drop(
        f"events of users left with fewer than {MIN_USER_EVENTS} interactions",
        int((~on_cold).sum() - keep.sum()),
    )
    warm = Dataset(
        name=f"{dataset.name}-without-{int(cold.sum())}-cold-items",
        interactions=Interactions(
            users=user_remap[inter.users[keep]],
            items=remap[inter.items[keep]],
            timestamps=inter.timestamps[keep],
            behaviours=inter.behaviours[keep],
        ),
        catalog=catalog,
        user_ids=dataset.user_ids[kept_users],
        behaviour_vocab=dataset.behaviour_vocab,
        report=report,
        ground_truth=None,  # the generator's state describes the full data, not this part
    )
    return warm, kept_items


@dataclass(frozen=True)
class ColdStartSplit:
    """The full data's leave-one-out split (the test protocol), its cold items, and the
    training data without them (``train_data``; its item ``i`` is ``warm_items[i-1]``)."""

    dataset: Dataset
    split: LeaveOneOut
    cold_items: np.ndarray
    train_data: Dataset
    warm_items: np.ndarray
    fraction: float
    choice: str
    seed: int

    @property
    def cold_mask(self) -> np.ndarray:
        """(n_items + 1,) True at cold item indices of the full data."""
        mask = np.zeros(self.dataset.n_items + 1, dtype=bool)
        mask[self.cold_items] = True
        return mask

    def test_users(self, group: str) -> np.ndarray:
        """Users whose test target is a cold item (``"cold"``) or not (``"warm"``)."""
        if group not in GROUPS:
            raise ValueError(f"group must be one of {', '.join(GROUPS)}, got {group!r}")
        is_cold = self.cold_mask[self.split.targets("test")]
        return np.flatnonzero(is_cold if group == "cold" else ~is_cold)

    def summary(self) -> dict:
        """Counts a report needs to judge the figures (how many events each group has)."""
        seq = self.split.sequences
        cold = self.cold_mask
        rows, items = self.split.history_matrix_rows("test", np.arange(seq.n_users))
        with_cold = np.zeros(seq.n_users, dtype=bool)
        with_cold[rows[cold[items]]] = True
        return {
            "items": int(self.dataset.n_items),
            "cold_items": int(len(self.cold_items)),
            "fraction": self.fraction,
            "choice": self.choice,
            "users": int(seq.n_users),
            "cold_test_events": int(len(self.test_users("cold"))),
            "warm_test_events": int(len(self.test_users("warm"))),
            "test_histories_with_cold_items": int(with_cold.sum()),
            "interactions": int(len(seq.items)),
            "cold_interactions_removed": int(cold[seq.items].sum()),
            "training_users": int(self.train_data.n_users),
            "training_interactions": int(len(self.train_data.interactions)),
        }


def cold_start_split(
    dataset: Dataset, fraction: float = 0.10, choice: str = "recent", seed: int = 0
) -> ColdStartSplit:
    """Choose the cold items and build the training data without them."""
    cold = choose_cold_items(dataset, fraction, choice, seed)
    train_data, warm_items = without_items(dataset, cold)
    return ColdStartSplit(
        dataset=dataset,
        split=leave_one_out(dataset),
        cold_items=cold,
        train_data=train_data,
        warm_items=warm_items,
        fraction=float(fraction),
        choice=choice,
        seed=int(seed),
    )


# --------------------------------------------------------------------------- baselines


def popularity_scorer(css: ColdStartSplit) -> Scorer:
    """Training interactions per item, counted on the training data (cold items: 0)."""
    train_split = leave_one_out(css.train_data)
    counts = np.bincount(
        train_split.sequences.items[train_split.train_events()],
        minlength=css.train_data.n_items + 1,
    )
    popularity = np.zeros(css.dataset.n_items + 1)
    popularity[css.warm_items] = counts[1:]

    def scorer(users: np.ndarray, stage: str) -> np.ndarray:
        return np.broadcast_to(popularity, (len(users), len(popularity)))

    return scorer


def random_scorer(css: ColdStartSplit) -> Scorer:
    """Every item tied: under the protocol's tie rule the metrics are exactly the
    expectation over uniformly random orders (no sampling noise)."""
    n = css.dataset.n_items + 1
    return lambda users, stage: np.zeros((len(users), n))


def content_knn_scorer(split: LeaveOneOut, text_vectors: np.ndarray, recent: int = 10) -> Scorer:
    """Content-based filtering: each item's mean cosine to the user's ``recent`` latest
    history items, on the items' text vectors (``text_vectors[i-1]`` for item ``i``).
    It reads no interactions, so warm and cold items are scored alike."""
    if recent < 1:
        raise ValueError(f"recent must be at least 1, got {recent}")
    vectors = np.asarray(text_vectors, dtype=np.float64)
    if vectors.ndim != 2 or len(vectors) != split.n_items:
        raise ValueError(
            f"text_vectors must be ({split.n_items}, dim), one row per item, got {vectors.shape}"
        )
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = np.vstack([np.zeros((1, vectors.shape[1])), vectors / np.maximum(norms, 1e-12)])
    seq = split.sequences

    def scorer(users: np.ndarray, stage: str) -> np.ndarray:
        users = np.asarray(users)
        ends = split.history_end(stage)[users]
        starts = np.maximum(seq.offsets[users], ends - recent)
        profiles = np.zeros((len(users), unit.shape[1]))
        for row, (s, e) in enumerate(zip(starts, ends, strict=True)):
            if e > s:
                profiles[row] = unit[seq.items[s:e]].mean(axis=0)
        return profiles @ unit.T

    return scorer


# --------------------------------------------------------------------------- the runtime


def runtime_scorer(rec, dataset: Dataset, split: LeaveOneOut) -> Scorer:
    """``recommender_scorer`` over the data set's catalog: items the recommender does not
    hold (cold items not added) score -inf."""
    return recommender_scorer(
        rec, dataset.catalog.item_ids.tolist(), dataset.behaviour_vocab, split
    )


def add_cold_items(rec, css: ColdStartSplit) -> int:
    """Add the cold items to a recommender from their text only (``add_items``)."""
    cat = css.dataset.catalog
    rows = css.cold_items - 1
    return rec.add_items(
        cat.item_ids[rows].tolist(), [cat.texts[i] for i in rows], [cat.titles[i] for i in rows]
    )


def per_event_metrics(
    scorer: Scorer, css: ColdStartSplit, group: str, *, batch_size: int = 256
) -> dict[str, np.ndarray]:
    """Each test event's HR/NDCG/MRR@k in ``group``: the protocol's ``evaluate`` before
    its mean, so two models can be compared event by event; ``cold_share@10``: the share
    of its top 10 that are cold items."""
    users = css.test_users(group)
    cold = css.cold_mask
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        scores = np.array(scorer(batch, "test"), dtype=np.float64, copy=True)
        if scores.shape != (len(batch), css.dataset.n_items + 1):
            raise ValueError(
                f"scorer returned shape {scores.shape}, "
                f"expected {(len(batch), css.dataset.n_items + 1)}"
            )
        mask_seen(scores, css.split, "test", batch)
        for name, values in rank_metrics(scores, css.split.targets("test")[batch], KS).items():
            parts.setdefault(name, []).append(values)
        # how much of the top 10 the cold items take (ties: the lower index first)
        parts.setdefault("cold_share@10", []).append(cold[top_k(scores, 10)].mean(axis=1))
    return {name: np.concatenate(values) for name, values in parts.items()}


def evaluate_groups(
    scorer: Scorer, css: ColdStartSplit, *, keep: dict | None = None, batch_size: int = 256
) -> dict:
    """Mean test metrics over the cold and the warm test events separately (full ranking
    over every item the scorer scores, the user's earlier items excluded). ``keep``, a
    dict, receives each group's per-event metrics."""
    out: dict = {}
    for group in GROUPS:
        if len(css.test_users(group)) == 0:
            out[group] = None
            continue
        events = per_event_metrics(scorer, css, group, batch_size=batch_size)
        if keep is not None:
            keep[group] = events
        out[group] = {name: float(values.mean()) for name, values in events.items()}
        out[group]["events"] = int(len(css.test_users(group)))
    return out


def paired_difference(a: np.ndarray, b: np.ndarray) -> dict:
    """Mean of ``a - b`` over the same events and its standard error: whether two models
    differ by more than the events' noise."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"need two equal 1-d arrays of 2+ events, got {a.shape} and {b.shape}")
    d = a - b
    return {
        "mean": float(d.mean()),
        "se": float(d.std(ddof=1) / np.sqrt(len(d))),
        "events": int(len(d)),
    }
