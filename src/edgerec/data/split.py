"""Leave-one-out split of the evaluation protocol.

Per user, events are sorted by timestamp with a stable sort (ties keep file order); the
last event is the test target, the one before it the validation target, the rest train.
Sequences are stored once in CSR form; a stage picks how much of each one is history.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgerec.data.schema import Dataset

STAGES = ("valid", "test")


@dataclass(frozen=True)
class Sequences:
    """All events of every user, chronologically, as CSR (``offsets`` has n_users+1)."""

    offsets: np.ndarray
    items: np.ndarray
    behaviours: np.ndarray
    timestamps: np.ndarray
    order: np.ndarray  # position of each CSR event in the dataset's file order

    @property
    def n_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


@dataclass(frozen=True)
class LeaveOneOut:
    sequences: Sequences
    n_items: int

    def history_end(self, stage: str) -> np.ndarray:
        """Index (exclusive, in CSR coordinates) where each user's history stops."""
        if stage == "train":
            return self.sequences.offsets[1:] - 2
        if stage == "valid":
            return self.sequences.offsets[1:] - 2
        if stage == "test":
            return self.sequences.offsets[1:] - 1
        raise ValueError(f"stage must be 'train', 'valid' or 'test', got {stage!r}")

    def targets(self, stage: str) -> np.ndarray:
        return self.sequences.items[self.history_end(stage)]

    def train_events(self) -> np.ndarray:
        """Boolean mask over CSR events: True for training interactions."""
        seq = self.sequences
        mask = np.ones(len(seq.items), dtype=bool)
        mask[seq.offsets[1:] - 1] = False
        mask[seq.offsets[1:] - 2] = False
        return mask

    def history_matrix_rows(self, stage: str, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, item) pairs of every history event of ``users`` for the stage."""
        seq = self.sequences
        start = seq.offsets[users]
        end = self.history_end(stage)[users]
        lengths = end - start
        rows = np.repeat(np.arange(len(users)), lengths)
        idx = np.repeat(start - np.cumsum(np.r_[0, lengths[:-1]]), lengths) + np.arange(
            lengths.sum()
        )
        return rows, seq.items[idx]


def leave_one_out(dataset: Dataset) -> LeaveOneOut:
    inter = dataset.interactions
    order = np.lexsort((inter.timestamps, inter.users))  # stable: ties keep file order
    counts = np.bincount(inter.users, minlength=dataset.n_users)
    offsets = np.r_[0, np.cumsum(counts)].astype(np.int64)
    seq = Sequences(
        offsets=offsets,
        items=inter.items[order],
        behaviours=inter.behaviours[order],
        timestamps=inter.timestamps[order],
        order=order,
    )
    return LeaveOneOut(sequences=seq, n_items=dataset.n_items)
