"""Non-neural baselines, fitted on training interactions only.

They anchor every quality figure: a learned model that does not beat ItemKNN and the
first-order Markov chain on a data set has learned little about sequences.
"""

from __future__ import annotations

import numpy as np

from edgerec.data.split import LeaveOneOut

BASELINES = ("mostpop", "itemknn", "markov")


def _popularity(split: LeaveOneOut) -> np.ndarray:
    seq = split.sequences
    return np.bincount(seq.items[split.train_events()], minlength=split.n_items + 1).astype(
        np.float64
    )


class MostPop:
    """Items by training-interaction count; the same list for everyone."""

    def __init__(self, split: LeaveOneOut) -> None:
        self.popularity = _popularity(split)

    def __call__(self, users: np.ndarray, stage: str) -> np.ndarray:
        return np.broadcast_to(self.popularity, (len(users), len(self.popularity)))


class ItemKNN:
    """Item-item cosine on user co-occurrence, keeping each item's top neighbours."""

    def __init__(self, split: LeaveOneOut, neighbours: int = 100, shrink: float = 0.0) -> None:
        n = split.n_items + 1
        seq = split.sequences
        mask = split.train_events()
        users = np.repeat(np.arange(seq.n_users), seq.lengths)[mask]
        items = seq.items[mask]
        ui = np.zeros((seq.n_users, n), dtype=np.float32)
        ui[users, items] = 1.0
        co = ui.T @ ui
        norms = np.sqrt(np.diag(co)).astype(np.float32)
        sim = co / (np.outer(norms, norms) + shrink + 1e-12)
        np.fill_diagonal(sim, 0.0)
        if neighbours < n:
            cut = np.argpartition(-sim, neighbours - 1, axis=1)[:, neighbours:]
            np.put_along_axis(sim, cut, 0.0, axis=1)
        self.sim = sim
        self.split = split
        self.popularity = _popularity(split)

    def __call__(self, users: np.ndarray, stage: str) -> np.ndarray:
        rows, items = self.split.history_matrix_rows(stage, users)
        hist = np.zeros((len(users), self.sim.shape[0]), dtype=np.float32)
        hist[rows, items] = 1.0
        # popularity breaks ties among items no neighbour reaches
        return hist @ self.sim + 1e-6 * self.popularity / self.popularity.max()


class Markov:
    """First-order transitions from the last history item, backed off to popularity."""

    def __init__(self, split: LeaveOneOut) -> None:
        seq = split.sequences
        n = split.n_items + 1
        mask = split.train_events()
        same_user = np.ones(len(seq.items), dtype=bool)
        same_user[seq.offsets[1:-1]] = False  # first event of each user has no predecessor
        src_idx = np.flatnonzero(mask & same_user)
        src_idx = src_idx[src_idx > 0]
        prev, nxt = seq.items[src_idx - 1], seq.items[src_idx]
        self.transitions = np.zeros((n, n), dtype=np.float32)
        np.add.at(self.transitions, (prev, nxt), 1.0)
        self.popularity = _popularity(split)
        self.split = split

    def __call__(self, users: np.ndarray, stage: str) -> np.ndarray:
        last = self.split.sequences.items[self.split.history_end(stage)[users] - 1]
        backoff = self.popularity / (self.popularity.max() + 1.0)  # < 1: below any transition
        return self.transitions[last] + backoff


def make_baseline(name: str, split: LeaveOneOut):
    if name == "mostpop":
        return MostPop(split)
    if name == "itemknn":
        return ItemKNN(split)
    if name == "markov":
        return Markov(split)
    raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
