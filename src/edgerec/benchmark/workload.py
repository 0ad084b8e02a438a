"""What the benchmark feeds the runtime: histories, catalogs and item texts.

A bundle carries no interaction data, so histories are drawn from it: item ids sampled
by training popularity (the skew real traffic has), with timestamps an irregular few
minutes to days apart so every gap bucket path runs. Catalogs larger than the bundle's
keep the bundle's rows and append random vectors drawn per dimension from the bundle's
own mean and spread, so scores and top-k behave as they would on a bigger catalog of the
same model. Everything is seeded: two runs time the same work.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# catalog vectors a precision stores; the user encoder graph of that precision reads them
ITEM_DTYPE = {"fp32": "float32", "fp16": "float16", "int8": "int8"}

_WORDS = (
    "classic drama about family and loss with a quiet ending; comedy of errors in a small "
    "town; space adventure with a lost crew; documentary on music and the city at night; "
    "crime thriller set in the nineteen seventies with a detective who cannot sleep"
).split()


@dataclass(frozen=True)
class Histories:
    """``batch`` histories of ``length`` events, as an app would pass them."""

    ids: list[list]  # original item ids, oldest first
    timestamps: list[list[int]]  # seconds
    rows: np.ndarray  # (batch, length) dense bundle rows of ``ids`` (for the PyTorch path)


def make_histories(
    item_ids: tuple, popularity: np.ndarray, batch: int, length: int, seed: int = 0
) -> Histories:
    """Popularity-weighted histories over the bundle's items (rows ``1..len(item_ids)``)."""
    n = len(item_ids)
    if n == 0:
        raise ValueError("the bundle has no items to draw histories from")
    rng = np.random.default_rng([seed, batch, length])
    weights = np.asarray(popularity[1 : n + 1], dtype=np.float64) + 1.0
    rows = rng.choice(np.arange(1, n + 1), size=(batch, length), p=weights / weights.sum())
    gaps = rng.integers(60, 3 * 86_400, size=(batch, length))
    ts = 1_700_000_000 + np.cumsum(gaps, axis=1)
    ids = [[item_ids[r - 1] for r in row] for row in rows.tolist()]
    return Histories(ids, ts.tolist(), rows.astype(np.int64))


def dequantized(items: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
    """The bundle's item matrix as float32 (whatever dtype it was stored in)."""
    if scale is not None:
        return items.astype(np.float32) * scale[:, None]
    return np.asarray(items, dtype=np.float32)


def grow_matrix(base: np.ndarray, n_items: int, seed: int = 0) -> np.ndarray:
    """``(n_items + 1, dim)`` float32: ``base``'s rows first, then random rows like them.

    A size at or below the bundle's keeps its first ``n_items`` rows.
    """
    have = base.shape[0] - 1
    if n_items <= have:
        return np.ascontiguousarray(base[: n_items + 1])
    real = base[1:]
    mean = real.mean(axis=0, dtype=np.float64).astype(np.float32)
    std = real.std(axis=0, dtype=np.float64).astype(np.float32) + np.float32(1e-6)
    out = np.empty((n_items + 1, base.shape[1]), dtype=np.float32)
    out[: have + 1] = base
    rng = np.random.default_rng([seed, n_items])
    step = 1 << 18
    for start in range(have + 1, n_items + 1, step):
        stop = min(start + step, n_items + 1)
        block = rng.standard_normal((stop - start, base.shape[1]), dtype=np.float32)
        out[start:stop] = block * std + mean
    return out


def quantize_rows(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per row (the bundle format's rule): vector = q * scale."""
    peak = np.abs(table).max(axis=1)
    scale = (peak / 127.0).astype(np.float32)
    safe = np.where(scale > 0, scale, 1.0)
    q = np.clip(np.rint(table / safe[:, None]), -127, 127).astype(np.int8)
    return q, scale


def store_as(table: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``table`` stored the way a bundle with ``dtype`` item vectors would hold it."""
    if dtype == "float32":
        return table, None
    if dtype == "float16":
        return table.astype(np.float16), None
    if dtype == "int8":
        return quantize_rows(table)
    raise ValueError(f"unknown item dtype {dtype!r}")


def extra_ids(item_ids: tuple, id_type: str, count: int, prefix: str = "bench") -> list:
    """``count`` ids that are not in ``item_ids`` (for synthetic rows and added items)."""
    if count <= 0:
        return []
    if id_type == "int":
        start = max((int(x) for x in item_ids), default=0) + 1
        return list(range(start, start + count))
    taken = set(item_ids)
    out = [f"{prefix}-{i}" for i in range(count)]
    if taken.intersection(out):
        raise ValueError(f"synthetic id prefix {prefix!r} collides with the bundle's ids")
    return out


def item_texts(titles: tuple, count: int, words: int = 24, seed: int = 0) -> list[str]:
    """Cold-start texts: a catalog title followed by description-like words."""
    rng = np.random.default_rng([seed, count, words])
    out = []
    for i in range(count):
        title = titles[i % len(titles)] if titles else None
        body = " ".join(_WORDS[j] for j in rng.integers(0, len(_WORDS), size=words))
        out.append(f"{title or 'Untitled'}. {body}")
    return out
