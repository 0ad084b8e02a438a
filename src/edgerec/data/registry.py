"""Loaders by name, as the CLI and the trainer refer to them."""

from __future__ import annotations

from pathlib import Path

from edgerec.data.eventlog import ColumnMap, load_event_log
from edgerec.data.movielens import (
    load_movielens_1m,
    load_movielens_100k,
    load_movielens_latest,
)
from edgerec.data.schema import Dataset
from edgerec.data.synthetic import SyntheticConfig, generate_synthetic
from edgerec.errors import DataError

DATASETS = ("synthetic", "movielens-100k", "movielens-1m", "movielens-latest", "csv", "parquet")


def load_dataset(
    name: str,
    data_dir: Path | str | None = None,
    *,
    strict: bool = False,
    kcore: int = 0,
    columns: str | None = None,
    seed: int = 0,
) -> Dataset:
    """Load a data set by name; ``synthetic`` needs no files (seed picks the world)."""
    if name == "synthetic" or name.startswith("synthetic-"):
        if name.startswith("synthetic-"):
            seed = int(name.split("-", 1)[1])
        return generate_synthetic(SyntheticConfig(seed=seed))
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    if data_dir is None:
        raise DataError(f"data set {name!r} needs --data-dir")
    data_dir = Path(data_dir)
    if not data_dir.exists():
        raise DataError(f"{data_dir}: no such directory")
    if name == "movielens-100k":
        return load_movielens_100k(data_dir, strict=strict, kcore=kcore)
    if name == "movielens-1m":
        return load_movielens_1m(data_dir, strict=strict, kcore=kcore)
    if name == "movielens-latest":
        return load_movielens_latest(data_dir, strict=strict, kcore=kcore)
    return load_event_log(
        data_dir, fmt=name, columns=ColumnMap.parse(columns), strict=strict, kcore=kcore
    )
