"""What a ``Recommender`` can tell besides recommendations: what it holds, user vectors,
item vectors and explanations (which horizon led, which history events drove each item). A mixin of
``Recommender``: it reads the same catalog snapshot and runs the bundle's
``user_encoder`` graph through ``Recommender._encode``."""

from __future__ import annotations

import numpy as np

from edgerec.runtime import requests as R
from edgerec.runtime.results import (
    Driver,
    EventInfluence,
    Explanation,
    ItemExplanation,
    UserVector,
)


class Insight:
    @property
    def n_items(self) -> int:
        """Items that can be recommended now (bundle items + added - removed)."""
        return self._state.catalog.n_active

    @property
    def item_ids(self) -> list:
        """The ids that can be recommended now, in catalog order."""
        cat = self._state.catalog
        return [cat.ids[row] for row in np.flatnonzero(cat.active)]

    @property
    def max_len(self) -> int:
        return self.manifest.dims.max_len

    @property
    def can_add_items(self) -> bool:
        return self._text is not None

    def __contains__(self, item_id: object) -> bool:
        cat = self._state.catalog
        try:
            row = int(R.lookup([item_id], cat, lambda i: "item_id")[0])
        except ValueError:
            return False
        return row > 0 and bool(cat.active[row])

    def _one(self, history, behaviours, timestamps, strict, now):
        strict = R.check_flag(strict, "strict")
        cat = self._state.catalog
        batch = R.normalise(
            [history],
            [behaviours],
            [timestamps],
            [now],
            cat,
            self._behaviours,
            strict,
            lambda i: "",
            positions=True,
        )
        return cat, batch

    def user_vector(
        self, history, behaviours=None, timestamps=None, strict: bool = False, now=None
    ) -> UserVector:
        """``(vector, gate)``: score an item yourself as ``item_vector @ vector``.

        Raises ``ValueError`` if the history has no known item (there is no vector to give).
        """
        cat, batch = self._one(history, behaviours, timestamps, strict, now)
        if not batch.known[0]:
            raise ValueError("history has no known item; there is no user vector for it")
        users, gates, _ = self._encode(cat, batch[:4])
        return UserVector(users[0], float(gates[0]))

    def item_vectors(self, item_ids) -> np.ndarray:
        """(n, dim) float32 vectors of known item ids (``UnknownItemError`` otherwise):
        an item scores ``item_vectors([id])[0] @ user_vector(history).vector``."""
        ids = R.as_list(item_ids, "item_ids", R.MAX_IDS)
        cat = self._state.catalog
        rows = R.known_rows(ids, cat, "item_ids")
        return cat.vectors(rows)

    def explain(
        self,
        history,
        k: int = 10,
        behaviours=None,
        timestamps=None,
        exclude_seen: bool = True,
        strict: bool = False,
        n_drivers: int = 3,
        now=None,
    ) -> Explanation:
        """Why these recommendations: the gate (which horizon dominated), the long-term
        attention over the events read, and for each recommended item the history events
        whose item vectors are most similar to it (cosine)."""
        n_drivers = R.check_k(n_drivers, "n_drivers")
        recs = self.recommend(
            history, k, exclude_seen, behaviours, timestamps, strict=strict, now=now
        )
        cat, batch = self._one(history, behaviours, timestamps, strict, now)
        if not batch.known[0]:
            items = tuple(ItemExplanation(r.item_id, r.title, r.score, ()) for r in recs)
            return Explanation(None, "popularity", (), items, recs.unknown_items)
        _, gates, att = self._encode(cat, batch[:4])
        n = min(int(batch.known[0]), self.manifest.dims.max_len)
        rows = batch.rows[0, -n:]
        positions = batch.positions[0][-n:]
        window = self.manifest.dims.window
        events = tuple(
            EventInfluence(
                int(positions[t]),
                cat.ids[rows[t]],
                cat.titles[rows[t]],
                float(att[0, t]),
                t >= n - window,
            )
            for t in range(n)
        )
        hist_vec = _unit(cat.vectors(rows))
        rec_rows = np.array([cat.index.get(r.item_id) for r in recs], np.int64)
        sims = _unit(cat.vectors(rec_rows)) @ hist_vec.T  # (items, events)
        items = []
        for i, r in enumerate(recs):
            order = np.lexsort((np.arange(n), -sims[i]))[:n_drivers]
            drivers = tuple(
                Driver(int(positions[t]), cat.ids[rows[t]], float(sims[i, t])) for t in order
            )
            items.append(ItemExplanation(r.item_id, r.title, r.score, drivers))
        gate = float(gates[0])
        horizon = "long-term" if gate >= 0.5 else "short-term"
        return Explanation(gate, horizon, events, tuple(items), recs.unknown_items)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
