"""Reading delimited text files with line numbers, so every dropped row can be named.

pandas' C parser does the work (no per-row Python loop); its own "bad line" warnings
are captured to learn which file lines were skipped, which lets each surviving row
carry its original 1-based line number in the ``_line`` column.
"""

from __future__ import annotations

import csv
import io
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from edgerec.data.schema import LoadReport
from edgerec.errors import DataError

_SKIP_RE = re.compile(r"Skipping line (\d+): (.*)")
_MAX_SHOWN = 5
# A field longer than this is a broken file (a lost newline or quote), not an id or a
# title: the row is dropped and counted rather than fed to the model as text.
MAX_FIELD_CHARS = 100_000
_INT_LIMIT = 2**62  # ids and seconds past this are broken data, not values


def _first_lines(lines: np.ndarray) -> str:
    shown = ", ".join(str(int(x)) for x in lines[:_MAX_SHOWN])
    return f"line {shown}" + (" ..." if len(lines) > _MAX_SHOWN else "")


def read_text(path: Path, encoding: str) -> str:
    """Decode a whole file, naming the line of the first undecodable byte."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(
            f"{path}: line {line}: bytes that are not valid {encoding} "
            f"({raw[e.start : e.start + 4]!r}); is the file in another encoding?"
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise DataError(f"{path}: the file is empty")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_table(
    path: Path,
    *,
    columns: list[str],
    sep: str,
    encoding: str = "utf-8",
    header: bool = False,
    quoted: bool = False,
    numeric: tuple[str, ...] = (),
    integer: tuple[str, ...] = (),
    required: tuple[str, ...] | None = None,
    report: LoadReport,
    strict: bool = False,
) -> pd.DataFrame:
    """Parse ``path`` into string columns (numeric ones converted), dropping bad rows.

    ``integer`` names numeric columns that hold ids or timestamps: a row whose value
    there is fractional (``1.5``) is malformed like a non-numeric one (``5.0`` is 5), and
    a value past +-2**62 is an error. Every drop is recorded in ``report`` with file and
    line numbers; ``strict`` turns the first one into a :class:`DataError` instead. With
    ``header``, the first line names the columns (quotes honoured when ``quoted``).
    """
    path = Path(path)
    text = read_text(path, encoding)
    if len(sep) > 1:  # the C parser takes one character; \x1f never occurs in text data
        text = text.replace(sep, "\x1f")
        sep = "\x1f"
    header_row: list[str] | None = None
    if header:
        first, _, text = text.partition("\n")
        header_row = _header_names(first, sep, quoted)
        repeated = sorted({h for h in header_row if header_row.count(h) > 1})
        if repeated:
            raise DataError(f"{path}: line 1: column name(s) {repeated} appear more than once")
        missing = [c for c in columns if c not in header_row]
        if missing:
            raise DataError(f"{path}: line 1: missing column(s) {missing}; found {header_row}")
    names = header_row if header_row is not None else columns
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            frame = pd.read_csv(
                io.StringIO(text),
                sep=sep,
                header=None,
                names=names,
                dtype=str,
                keep_default_na=False,
                na_values=[],
                skip_blank_lines=False,
                quoting=0 if quoted else 3,
                engine="c",
                on_bad_lines="warn",
            )
        except pd.errors.ParserError as e:
            raise DataError(f"{path}: cannot parse: {e}") from None
    offset = 1 if header else 0
    skipped: list[tuple[int, str]] = []
    for w in caught:
        for m in _SKIP_RE.finditer(str(w.message)):
            skipped.append((int(m.group(1)) + offset, m.group(2).strip()))
    n_lines = len(frame) + len(skipped)
    bad = np.array(sorted(s[0] for s in skipped), dtype=np.int64)
    all_lines = np.arange(1 + offset, n_lines + 1 + offset)
    frame["_line"] = np.setdiff1d(all_lines, bad, assume_unique=True)[: len(frame)]
    if skipped:
        msg = f"{path}: {_first_lines(bad)}: wrong number of fields ({skipped[0][1]})"
        if strict:
            raise DataError(msg)
        report.drop("rows with the wrong number of fields", len(skipped), msg)
    frame = frame[columns + ["_line"]]
    if len(text) > MAX_FIELD_CHARS:  # only a file this large can hold such a field
        long = np.zeros(len(frame), dtype=bool)
        for col in columns:
            long |= (frame[col].str.len() > MAX_FIELD_CHARS).to_numpy(dtype=bool, na_value=False)
        if long.any():
            lines = frame["_line"].to_numpy()[long]
            msg = f"{path}: {_first_lines(lines)}: a field longer than {MAX_FIELD_CHARS} characters"
            if strict:
                raise DataError(msg)
            report.drop(
                f"rows with a field longer than {MAX_FIELD_CHARS} characters", int(long.sum()), msg
            )
            frame = frame[~long]
    blank = (frame[columns] == "").all(axis=1) | frame[columns].isna().all(axis=1)
    frame = frame[~blank.to_numpy()]
    need = list(required) if required is not None else list(columns)
    missing = frame[need].isna().any(axis=1).to_numpy() | (frame[need] == "").any(axis=1).to_numpy()
    if missing.any():
        lines = frame["_line"].to_numpy()[missing]
        msg = f"{path}: {_first_lines(lines)}: missing field(s)"
        if strict:
            raise DataError(msg)
        report.drop("rows with missing fields", int(missing.sum()), msg)
        frame = frame[~missing]
    for col in numeric:
        text_values = frame[col].str.strip()
        values = pd.to_numeric(text_values, errors="coerce")
        bad_mask = values.isna().to_numpy() | ~np.isfinite(values.to_numpy(dtype=float))
        if bad_mask.any():
            lines = frame["_line"].to_numpy()[bad_mask]
            example = str(frame[col].to_numpy()[bad_mask][0])
            msg = f"{path}: {_first_lines(lines)}: {col} is not a number ({example!r})"
            if strict:
                raise DataError(msg)
            report.drop(f"rows with a non-numeric {col}", int(bad_mask.sum()), msg)
            frame = frame[~bad_mask]
            values = values[~bad_mask]
            text_values = text_values[~bad_mask]
        if col in integer:
            frame, values = _integers(path, frame, col, values, text_values, report, strict)
        frame[col] = values
    if frame.empty:
        raise DataError(f"{path}: no usable rows")
    return frame.reset_index(drop=True)


def _header_names(first: str, sep: str, quoted: bool) -> list[str]:
    """Column names of a header line; quoted names (R's write.csv) lose their quotes."""
    if quoted:
        row = next(csv.reader([first], delimiter=sep, quotechar='"', skipinitialspace=True), [])
    else:
        row = first.split(sep)
    return [h.strip() for h in row]


def _integers(path, frame, col, values, text_values, report, strict):
    """Drop rows whose ``col`` is fractional; refuse values past +-2**62 (ids, seconds)."""
    as_float = values.to_numpy(dtype=float)
    fractional = as_float != np.floor(as_float)
    if fractional.any():
        lines = frame["_line"].to_numpy()[fractional]
        example = str(text_values.to_numpy()[fractional][0])
        msg = f"{path}: {_first_lines(lines)}: {col} is not an integer ({example!r})"
        if strict:
            raise DataError(msg)
        report.drop(f"rows with a non-integer {col}", int(fractional.sum()), msg)
        frame = frame[~fractional]
        text_values = text_values[~fractional]
        # read the kept texts again: a column of integer texts becomes exact int64
        values = pd.to_numeric(text_values, errors="coerce")
        as_float = values.to_numpy(dtype=float)
    huge = np.abs(as_float) > _INT_LIMIT
    if huge.any():
        lines = frame["_line"].to_numpy()[huge]
        example = str(text_values.to_numpy()[huge][0])
        raise DataError(
            f"{path}: {_first_lines(lines)}: {col} values must be integers within int64 "
            f"(|x| <= 2**62), got {example!r}"
        )
    if values.dtype.kind != "i":
        values = values.astype(np.int64)
    return frame, values
