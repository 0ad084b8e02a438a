"""In-memory data model shared by loaders, the split, baselines and the trainer.

Items and users get dense indices; item index 0 is reserved for padding so that
sequences can be zero-padded without a separate mask array. Original ids are kept
alongside so every output can be mapped back to what the user's data called things.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Catalog:
    """Items by dense index ``1..n_items`` (row ``i-1`` of every array)."""

    item_ids: np.ndarray  # original ids, object or int64, shape (n_items,)
    titles: list[str]
    texts: list[str]  # the text the item tower encodes (title, genres, tags ...)
    categories: np.ndarray  # bool multi-hot, shape (n_items, n_categories)
    category_names: tuple[str, ...]

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def subset(self, rows: np.ndarray) -> Catalog:
        """The catalog of these 0-based rows, in their order (dense indices renumbered)."""
        return Catalog(
            item_ids=self.item_ids[rows],
            titles=[self.titles[i] for i in rows],
            texts=[self.texts[i] for i in rows],
            categories=self.categories[rows],
            category_names=self.category_names,
        )


@dataclass(frozen=True)
class Interactions:
    """One row per event, in file order (dense user index, dense item index >= 1)."""

    users: np.ndarray  # int64
    items: np.ndarray  # int64, 1..n_items
    timestamps: np.ndarray  # int64 (seconds or any monotone clock)
    behaviours: np.ndarray  # int64 index into Dataset.behaviour_vocab (0 = unknown/none)

    def __len__(self) -> int:
        return len(self.users)


@dataclass
class LoadReport:
    """What a loader dropped or fixed, so nothing disappears silently."""

    issues: list[str] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str, count: int, detail: str | None = None) -> None:
        if count <= 0:
            return
        self.dropped[reason] = self.dropped.get(reason, 0) + int(count)
        self.issues.append(f"dropped {count} {reason}" + (f": {detail}" if detail else ""))

    def note(self, message: str) -> None:
        self.issues.append(message)


@dataclass(frozen=True)
class Dataset:
    name: str
    interactions: Interactions
    catalog: Catalog
    user_ids: np.ndarray  # original user ids by dense user index
    behaviour_vocab: tuple[str, ...]  # index 0 is "none"
    report: LoadReport = field(default_factory=LoadReport)
    ground_truth: dict | None = None  # synthetic data only: the generator's latent state

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return self.catalog.n_items

    def fingerprint(self) -> str:
        """Content hash: a trained run records it so evaluation can refuse other data."""
        import hashlib

        h = hashlib.sha256()
        for arr in (
            self.interactions.users,
            self.interactions.items,
            self.interactions.timestamps,
            self.interactions.behaviours,
        ):
            h.update(np.ascontiguousarray(arr, dtype=np.int64).tobytes())
        h.update("\x1f".join(self.catalog.texts).encode("utf-8"))
        return h.hexdigest()[:16]
