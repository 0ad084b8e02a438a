"""What the runtime returns: plain, immutable, JSON-friendly values."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np

from edgerec.errors import EdgerecError


def check_finite(values: np.ndarray, what: str) -> None:
    """A graph's outputs must be finite: a NaN would rank items arbitrarily."""
    if not np.isfinite(values).all():
        raise EdgerecError(f"the {what} produced non-finite values")


class Recommendation(NamedTuple):
    """One recommended item (a named tuple: ``item_id, score, title = r`` works too).

    Why a tuple: a call builds one per returned item, and a frozen dataclass spent
    ~1 us on each (its ``__init__`` goes through ``object.__setattr__`` per field);
    ten of them were 3% of a single-history ``recommend()`` on the CPU.
    """

    item_id: int | str  # the original id, as the bundle's items.json has it
    score: float  # items @ user (or the popularity count in the fallback)
    title: str | None = None


class RecommendationList(list):
    """A list of ``Recommendation``, best first, with what happened to the input.

    - ``gate``: weight of the long-term interest in [0, 1] (None in the fallback);
    - ``unknown_items``: history ids the bundle does not know, in order (left out);
    - ``unknown_behaviours``: behaviour values outside the bundle's vocabulary, in order
      (read as its default behaviour);
    - ``fallback``: ``"popularity"`` when the history had no known item, else None;
    - ``n_events``: history events given; ``n_used``: events the model read (the most
      recent ``max_len`` known ones).
    """

    __slots__ = ("gate", "unknown_items", "unknown_behaviours", "fallback", "n_events", "n_used")

    def __init__(
        self,
        items=(),
        *,
        gate: float | None = None,
        unknown_items: tuple = (),
        unknown_behaviours: tuple = (),
        fallback: str | None = None,
        n_events: int = 0,
        n_used: int = 0,
    ) -> None:
        super().__init__(items)
        self.gate = gate
        self.unknown_items = tuple(unknown_items)
        self.unknown_behaviours = tuple(unknown_behaviours)
        self.fallback = fallback
        self.n_events = n_events
        self.n_used = n_used

    @property
    def n_unknown(self) -> int:
        return len(self.unknown_items)

    @property
    def item_ids(self) -> list:
        return [r.item_id for r in self]

    def to_dict(self) -> dict:
        return {
            "items": [r._asdict() for r in self],
            "gate": self.gate,
            "fallback": self.fallback,
            "unknown_items": list(self.unknown_items),
            "unknown_behaviours": list(self.unknown_behaviours),
            "n_events": self.n_events,
            "n_used": self.n_used,
        }

    def __repr__(self) -> str:
        return (
            f"RecommendationList({list.__repr__(self)}, gate={self.gate}, "
            f"unknown_items={self.unknown_items!r}, fallback={self.fallback!r})"
        )


class UserVector(NamedTuple):
    vector: np.ndarray  # (dim,) float32; score of an item = items @ vector
    gate: float  # weight of the long-term interest in [0, 1]


@dataclass(frozen=True)
class EventInfluence:
    position: int  # index in the history as given
    item_id: int | str
    title: str | None
    attention: float  # long-term attention weight (sums to 1 over the events)
    in_short_window: bool  # among the last ``window`` events the short-term vector reads


@dataclass(frozen=True)
class Driver:
    position: int  # index in the history as given
    item_id: int | str
    similarity: float  # cosine of the event's item vector and the recommended item's


@dataclass(frozen=True)
class ItemExplanation:
    item_id: int | str
    title: str | None
    score: float
    drivers: tuple[Driver, ...]  # the most similar history events, most similar first


@dataclass(frozen=True)
class Explanation:
    """Which horizon drove the recommendations and which history events stand behind them."""

    gate: float | None
    horizon: str  # "long-term" (gate >= 0.5), "short-term", or "popularity" (fallback)
    events: tuple[EventInfluence, ...]
    items: tuple[ItemExplanation, ...]
    unknown_items: tuple = ()

    def to_dict(self) -> dict:
        return asdict(self)
