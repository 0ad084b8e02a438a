"""Turning parsed columns into a :class:`Dataset`: cleaning, id mapping, filters.

Every loader ends here, so the cleaning rules (exact duplicates, unknown items, too-short
users, optional k-core) are the same whatever the source format.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from edgerec.data.schema import Catalog, Dataset, Interactions, LoadReport
from edgerec.errors import DataError

MIN_USER_EVENTS = 3  # leave-one-out needs a train, a validation and a test event
_INT64_MAX = np.iinfo(np.int64).max


def _lines(lines: np.ndarray, n: int = 5) -> str:
    return ", ".join(str(int(x)) for x in lines[:n]) + (" ..." if len(lines) > n else "")


def as_int_ids(values: pd.Series, what: str, source: str) -> np.ndarray:
    """Integral ids as int64, refusing floats like 1.5 and values past int64."""
    numeric = pd.to_numeric(values, errors="coerce")
    arr = numeric.to_numpy(dtype=float)
    if np.isnan(arr).any() or (arr != np.floor(arr)).any() or (np.abs(arr) > 2**62).any():
        bad = values.to_numpy()[np.isnan(arr) | (arr != np.floor(arr)) | (np.abs(arr) > 2**62)]
        raise DataError(f"{source}: {what} must be integers within int64, got {str(bad[0])!r}")
    return numeric.astype(np.int64).to_numpy()


def make_catalog(
    item_ids: np.ndarray,
    titles: list[str],
    categories: np.ndarray,
    category_names: tuple[str, ...],
    extra_text: list[str] | None = None,
) -> Catalog:
    """Item text = title + genre names (+ tags): what the text encoder sees."""
    texts = []
    names = np.asarray(category_names, dtype=object)
    for i, title in enumerate(titles):
        genres = ", ".join(names[categories[i]])
        text = title if not genres else f"{title}. Genres: {genres}."
        if extra_text is not None and extra_text[i]:
            text += f" Tags: {extra_text[i]}."
        texts.append(text)
    ids = pd.Index(item_ids)
    if ids.has_duplicates:
        dup = ids[ids.duplicated()][0]
        raise DataError(f"catalog: item id {dup!r} appears more than once")
    return Catalog(
        item_ids=np.asarray(item_ids),
        titles=list(titles),
        texts=texts,
        categories=np.asarray(categories, dtype=bool),
        category_names=tuple(category_names),
    )


def build_dataset(
    name: str,
    *,
    users: np.ndarray,
    items: np.ndarray,
    timestamps: np.ndarray,
    behaviours: np.ndarray | None,
    lines: np.ndarray,
    source: str,
    catalog: Catalog,
    report: LoadReport,
    kcore: int = 0,
    min_user_events: int = MIN_USER_EVENTS,
) -> Dataset:
    """Clean raw event columns (original ids, file order) and map them to dense indices."""
    frame = pd.DataFrame(
        {
            "user": users,
            "item": items,
            "ts": np.asarray(timestamps, dtype=np.int64),
            "beh": np.asarray(behaviours).astype(str) if behaviours is not None else "",
            "line": lines,
        }
    )
    dup = frame.duplicated(subset=["user", "item", "ts", "beh"]).to_numpy()
    if dup.any():
        report.drop(
            "exact duplicate events",
            int(dup.sum()),
            f"{source}: line {_lines(frame['line'].to_numpy()[dup])}",
        )
        frame = frame[~dup]
    item_index = pd.Index(catalog.item_ids)
    dense_items = item_index.get_indexer(frame["item"].to_numpy())
    unknown = dense_items < 0
    if unknown.any():
        report.drop(
            "events with items missing from the catalog",
            int(unknown.sum()),
            f"{source}: line {_lines(frame['line'].to_numpy()[unknown])}"
            f" (item {frame['item'].to_numpy()[unknown][0]!r})",
        )
        frame = frame[~unknown]
        dense_items = dense_items[~unknown]
    frame = frame.assign(dense_item=dense_items + 1)
    if kcore > 0:
        frame, catalog = _kcore(frame, catalog, kcore, report)
    counts = frame.groupby("user", sort=False)["user"].transform("size").to_numpy()
    short = counts < min_user_events
    if short.any():
        n_users = frame.loc[short, "user"].nunique()
        report.drop(
            f"events of {n_users} user(s) with fewer than {min_user_events} interactions "
            "(cannot be split into train/validation/test)",
            int(short.sum()),
        )
        frame = frame[~short]
    if frame.empty:
        raise DataError(f"{source}: no usable interactions left after cleaning ({report.issues})")
    user_ids, dense_users = np.unique(frame["user"].to_numpy(), return_inverse=True)
    if behaviours is not None:
        vocab_values, beh_index = np.unique(frame["beh"].to_numpy(), return_inverse=True)
        vocab = ("none",) + tuple(str(v) for v in vocab_values)
        beh = beh_index.astype(np.int64) + 1
    else:
        vocab = ("none",)
        beh = np.zeros(len(frame), dtype=np.int64)
    inter = Interactions(
        users=dense_users.astype(np.int64),
        items=frame["dense_item"].to_numpy(dtype=np.int64),
        timestamps=frame["ts"].to_numpy(dtype=np.int64),
        behaviours=beh,
    )
    return Dataset(
        name=name,
        interactions=inter,
        catalog=catalog,
        user_ids=user_ids,
        behaviour_vocab=vocab,
        report=report,
    )


def _kcore(frame: pd.DataFrame, catalog: Catalog, k: int, report: LoadReport):
    before = len(frame)
    while True:
        ucount = frame.groupby("user")["user"].transform("size")
        icount = frame.groupby("dense_item")["dense_item"].transform("size")
        keep = (ucount >= k) & (icount >= k)
        if keep.all():
            break
        frame = frame[keep.to_numpy()]
    report.drop(f"events outside the {k}-core", before - len(frame))
    kept = np.unique(frame["dense_item"].to_numpy())  # dense 1-based
    rows = kept - 1
    new_catalog = catalog.subset(rows)
    remap = np.zeros(catalog.n_items + 1, dtype=np.int64)
    remap[kept] = np.arange(1, len(kept) + 1)
    frame = frame.assign(dense_item=remap[frame["dense_item"].to_numpy()])
    if len(kept) < catalog.n_items:
        report.note(f"{catalog.n_items - len(kept)} items left the catalog in the {k}-core")
    return frame, new_catalog
