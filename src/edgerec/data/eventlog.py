"""Generic event logs (CSV or Parquet) with a column mapping, for users' own data.

Ids are kept as strings: an app's ids can be anything, and the runtime matches the
history ids users pass in against these strings (ints are converted with ``str``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from edgerec.data.build import build_dataset, make_catalog
from edgerec.data.schema import Dataset, LoadReport
from edgerec.data.tables import read_table
from edgerec.errors import DataError


@dataclass(frozen=True)
class ColumnMap:
    """Which column of the user's files holds what."""

    user: str = "user_id"
    item: str = "item_id"
    timestamp: str = "timestamp"
    behaviour: str | None = None  # rating or event type; optional
    title: str = "title"
    categories: str | None = "categories"  # "a|b|c" in one column; optional
    text: tuple[str, ...] = ()  # extra text columns appended to the title
    category_sep: str = "|"

    @classmethod
    def parse(cls, spec: str | None) -> ColumnMap:
        """``"user=uid,item=sku,timestamp=ts,text=description+brand"`` -> ColumnMap."""
        if not spec:
            return cls()
        known = {f.name for f in fields(cls)}
        values: dict = {}
        for part in spec.split(","):
            key, sep, value = part.partition("=")
            key = key.strip()
            if not sep or key not in known:
                raise DataError(f"--columns: cannot read {part!r}; keys are {sorted(known)}")
            values[key] = tuple(v for v in value.split("+") if v) if key == "text" else value
        return cls(**values)


_TS_LIMIT = 2**62  # what the runtime accepts; gaps between such times still fit in int64


def _read_any(
    path: Path,
    columns: list[str],
    report: LoadReport,
    strict: bool,
    required: list[str] | None = None,
) -> pd.DataFrame:
    """``columns`` as strings plus ``_line``; rows missing a ``required`` value are dropped."""
    need = list(columns if required is None else required)
    if path.suffix == ".parquet":
        try:
            frame = pd.read_parquet(path)
        except FileNotFoundError:
            raise DataError(f"{path}: file not found") from None
        except Exception as e:  # pyarrow raises many types for a broken file
            raise DataError(f"{path}: not a readable Parquet file ({e})") from None
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}; found {list(frame.columns)}")
        null = frame[need].isna().any(axis=1).to_numpy()
        frame = frame[columns].astype(str)
        frame["_line"] = np.arange(1, len(frame) + 1)  # row numbers for Parquet
        if null.any():  # astype(str) would turn a null into the id "None" or "nan"
            rows = frame["_line"].to_numpy()[null]
            shown = ", ".join(str(int(r)) for r in rows[:5]) + (" ..." if len(rows) > 5 else "")
            msg = f"{path}: row {shown}: missing value(s) in {need}"
            if strict:
                raise DataError(msg)
            report.drop("rows with missing fields", int(null.sum()), msg)
            frame = frame[~null]
        if frame.empty:
            raise DataError(f"{path}: no rows")
        return frame
    return read_table(
        path,
        columns=columns,
        sep=",",
        header=True,
        quoted=True,
        required=tuple(need),
        report=report,
        strict=strict,
    )


def _timestamps(values: pd.Series, lines: np.ndarray, source: str) -> np.ndarray:
    """Seconds as int64: numbers (finite, |t| < 2**62) or dates, one kind per column."""
    values = values.astype(str).str.strip()
    numeric = pd.to_numeric(values, errors="coerce")
    is_number = numeric.notna().to_numpy()
    if is_number.all():
        if numeric.dtype.kind in "iu":
            raw = numeric.to_numpy()
            bad = raw >= _TS_LIMIT if numeric.dtype.kind == "u" else np.abs(raw) >= _TS_LIMIT
        else:
            raw = numeric.to_numpy(dtype=np.float64)
            bad = ~np.isfinite(raw) | (np.abs(raw) >= _TS_LIMIT)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{source}: line {lines[i]}: timestamp {values.iloc[i]!r} is not a finite "
                "number of seconds within +-2**62"
            )
        return raw.astype(np.int64)
    if is_number.any():  # mostly numbers: the others are typos, not dates
        i = int(np.flatnonzero(~is_number)[0])
        raise DataError(
            f"{source}: line {lines[i]}: timestamp {values.iloc[i]!r} is not a number "
            "(other rows hold numbers)"
        )
    with warnings.catch_warnings():  # "could not infer format": the check below reports
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(values, errors="coerce", utc=True)
    if parsed.isna().any():
        i = int(np.flatnonzero(parsed.isna().to_numpy())[0])
        raise DataError(
            f"{source}: line {lines[i]}: timestamp {values.iloc[i]!r} is neither a number "
            "nor a date"
        )
    epoch = pd.Timestamp("1970-01-01", tz="UTC")
    return ((parsed - epoch) // pd.Timedelta(seconds=1)).astype(np.int64).to_numpy()


def load_event_log(
    data_dir: Path,
    *,
    fmt: str = "csv",
    columns: ColumnMap | None = None,
    strict: bool = False,
    kcore: int = 0,
) -> Dataset:
    """``data_dir`` holds ``events.<fmt>`` and optionally ``items.<fmt>``."""
    cm = columns or ColumnMap()
    data_dir = Path(data_dir)
    events_path = data_dir / f"events.{fmt}" if data_dir.is_dir() else data_dir
    items_path = events_path.with_name(f"items.{fmt}")
    report = LoadReport()
    ev_cols = [cm.user, cm.item, cm.timestamp] + ([cm.behaviour] if cm.behaviour else [])
    events = _read_any(events_path, ev_cols, report, strict)
    if items_path.is_file():
        item_cols = [cm.item, cm.title] + list(cm.text)
        item_need = [cm.item, cm.title]  # text and categories may be empty
        probe = _read_any(items_path, item_cols, report, strict, item_need)
        has_cats = False
        if cm.categories:
            try:
                items = _read_any(
                    items_path, item_cols + [cm.categories], report, strict, item_need
                )
                has_cats = True
            except DataError:
                items = probe
        else:
            items = probe
        ids = items[cm.item].astype(str).str.strip().to_numpy(dtype=object)
        if has_cats:
            split = items[cm.categories].fillna("").str.split(cm.category_sep)
            names = sorted({c.strip() for cs in split for c in cs if c.strip()})
            index = {c: i for i, c in enumerate(names)}
            cats = np.zeros((len(ids), len(names)), dtype=bool)
            for row, cs in enumerate(split):
                for c in cs:
                    if c.strip() in index:
                        cats[row, index[c.strip()]] = True
        else:
            names, cats = [], np.zeros((len(ids), 0), dtype=bool)
        extra = None
        if cm.text:
            extra = items[list(cm.text)].fillna("").astype(str).agg(". ".join, axis=1).tolist()
        catalog = make_catalog(ids, items[cm.title].astype(str).tolist(), cats, tuple(names), extra)
    else:
        ids = np.unique(events[cm.item].astype(str).str.strip().to_numpy(dtype=object))
        report.note(f"{items_path} not found: item text is the item id alone")
        catalog = make_catalog(ids, [str(i) for i in ids], np.zeros((len(ids), 0), bool), ())
    source = str(events_path)
    return build_dataset(
        f"{fmt}:{events_path.name}",
        users=events[cm.user].astype(str).str.strip().to_numpy(dtype=object),
        items=events[cm.item].astype(str).str.strip().to_numpy(dtype=object),
        timestamps=_timestamps(events[cm.timestamp], events["_line"].to_numpy(), source),
        behaviours=events[cm.behaviour].to_numpy() if cm.behaviour else None,
        lines=events["_line"].to_numpy(),
        source=source,
        catalog=catalog,
        report=report,
        kcore=kcore,
    )
