"""MovieLens loaders (100K, 1M, latest), reading the files GroupLens publishes as they are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from edgerec.data.build import as_int_ids, build_dataset, make_catalog
from edgerec.data.schema import Dataset, LoadReport
from edgerec.data.tables import read_table, read_text
from edgerec.errors import DataError


def _find_dir(data_dir: Path, marker: str, candidates: tuple[str, ...]) -> Path:
    """Accept the data set directory itself or a parent holding it (e.g. EDGEREC_DATA_DIR)."""
    data_dir = Path(data_dir)
    for sub in ("",) + candidates:
        d = data_dir / sub if sub else data_dir
        if (d / marker).is_file():
            return d
    raise DataError(
        f"{data_dir}: no {marker} found (looked in {data_dir} and "
        f"{', '.join(str(data_dir / c) for c in candidates)}); "
        "point --data-dir at the extracted MovieLens folder"
    )


def load_movielens_100k(data_dir: Path, *, strict: bool = False, kcore: int = 0) -> Dataset:
    root = _find_dir(data_dir, "u.data", ("ml-100k", "movielens/ml-100k"))
    report = LoadReport()
    genre_text = read_text(root / "u.genre", "latin-1")
    genres = [ln.split("|")[0] for ln in genre_text.split("\n") if ln.strip()]
    item_cols = ["item", "title", "release", "video", "url"] + [f"g{i}" for i in range(len(genres))]
    items = read_table(
        root / "u.item",
        columns=item_cols,
        sep="|",
        encoding="latin-1",
        numeric=("item",),
        integer=("item",),
        required=("item", "title"),
        report=report,
        strict=strict,
    )
    flags = items[[f"g{i}" for i in range(len(genres))]].to_numpy() == "1"
    catalog = make_catalog(
        as_int_ids(items["item"], "item ids", str(root / "u.item")),
        items["title"].tolist(),
        flags,
        tuple(genres),
    )
    events = read_table(
        root / "u.data",
        columns=["user", "item", "rating", "ts"],
        sep="\t",
        numeric=("user", "item", "rating", "ts"),
        integer=("user", "item", "ts"),
        report=report,
        strict=strict,
    )
    return _movielens_events("movielens-100k", events, catalog, report, str(root / "u.data"), kcore)


def _movielens_events(name, events, catalog, report, source, kcore) -> Dataset:
    ratings = events["rating"].to_numpy(dtype=float)
    return build_dataset(
        name,
        users=as_int_ids(events["user"], "user ids", source),
        items=as_int_ids(events["item"], "item ids", source),
        timestamps=as_int_ids(events["ts"], "timestamps", source),
        behaviours=np.char.mod("%g", ratings),
        lines=events["_line"].to_numpy(),
        source=source,
        catalog=catalog,
        report=report,
        kcore=kcore,
    )


def _genre_catalog(ids: np.ndarray, titles: list[str], genre_field: pd.Series, tags=None):
    split = genre_field.fillna("").str.split("|")
    names = sorted({g for gs in split for g in gs if g and g != "(no genres listed)"})
    index = {g: i for i, g in enumerate(names)}
    flags = np.zeros((len(ids), len(names)), dtype=bool)
    for row, gs in enumerate(split):  # once per item, not per event
        for g in gs:
            if g in index:
                flags[row, index[g]] = True
    return make_catalog(ids, titles, flags, tuple(names), tags)


def load_movielens_1m(data_dir: Path, *, strict: bool = False, kcore: int = 0) -> Dataset:
    root = _find_dir(data_dir, "ratings.dat", ("ml-1m", "movielens/ml-1m"))
    report = LoadReport()
    movies = read_table(
        root / "movies.dat",
        columns=["item", "title", "genres"],
        sep="::",
        encoding="latin-1",
        numeric=("item",),
        integer=("item",),
        required=("item", "title"),
        report=report,
        strict=strict,
    )
    ids = as_int_ids(movies["item"], "item ids", str(root / "movies.dat"))
    catalog = _genre_catalog(ids, movies["title"].tolist(), movies["genres"])
    events = read_table(
        root / "ratings.dat",
        columns=["user", "item", "rating", "ts"],
        sep="::",
        numeric=("user", "item", "rating", "ts"),
        integer=("user", "item", "ts"),
        report=report,
        strict=strict,
    )
    source = str(root / "ratings.dat")
    return _movielens_events("movielens-1m", events, catalog, report, source, kcore)


def load_movielens_latest(data_dir: Path, *, strict: bool = False, kcore: int = 0) -> Dataset:
    root = _find_dir(data_dir, "ratings.csv", ("ml-latest-small", "ml-latest"))
    report = LoadReport()
    movies = read_table(
        root / "movies.csv",
        columns=["movieId", "title", "genres"],
        sep=",",
        header=True,
        quoted=True,
        numeric=("movieId",),
        integer=("movieId",),
        required=("movieId", "title"),
        report=report,
        strict=strict,
    )
    ids = as_int_ids(movies["movieId"], "movieId", str(root / "movies.csv"))
    tags_text = None
    if (root / "tags.csv").is_file():
        tags = read_table(
            root / "tags.csv",
            columns=["userId", "movieId", "tag", "timestamp"],
            sep=",",
            header=True,
            quoted=True,
            numeric=("movieId",),
            integer=("movieId",),
            report=report,
            strict=strict,
        )
        tags["movieId"] = tags["movieId"].astype(np.int64)
        joined = (
            tags.drop_duplicates(["movieId", "tag"])
            .groupby("movieId")["tag"]
            .agg(lambda s: ", ".join(s.astype(str).str.strip()[:20]))
        )
        tags_text = joined.reindex(ids).fillna("").tolist()
    catalog = _genre_catalog(ids, movies["title"].tolist(), movies["genres"], tags_text)
    events = read_table(
        root / "ratings.csv",
        columns=["userId", "movieId", "rating", "timestamp"],
        sep=",",
        header=True,
        numeric=("userId", "movieId", "rating", "timestamp"),
        integer=("userId", "movieId", "timestamp"),
        report=report,
        strict=strict,
    )
    events = events.rename(columns={"userId": "user", "movieId": "item", "timestamp": "ts"})
    return _movielens_events(
        "movielens-latest", events, catalog, report, str(root / "ratings.csv"), kcore
    )
