"""Bad data through the loaders and the CLI: one clear DataError, or a counted skip.

Extends tests/test_data_bad_input.py (MovieLens files) to users' own event logs (CSV and
Parquet with a column map) and to gigantic lines: malformed rows, wrong encodings,
missing or repeated columns, nulls, duplicate and out-of-order events, ids and
timestamps that overflow, empty files, a 50 MB single line. Each case either raises a
DataError naming the file (and the line or row where there is one) or drops the rows,
counted in ``report.dropped`` and named in ``report.issues``. Through ``edgerec data
info`` the same cases exit 2 with one ``error: ...`` line, or 0 with ``warning:`` lines;
never a traceback.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from reliability_helpers import run_cli

from edgerec.data import leave_one_out, load_dataset
from edgerec.data.tables import MAX_FIELD_CHARS
from edgerec.errors import DataError

HEADER = "user_id,item_id,timestamp\n"
ROWS = "".join(f"u{u},i{i},{100 + t}\n" for u in range(3) for t, i in enumerate([1, 2, 3, 4]))
GOOD = HEADER + ROWS  # 3 users x 4 events
HUGE = "x" * 50_000_000  # a 50 MB line


def _frame(text: str = GOOD) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), dtype={"timestamp": "int64"})


def _write(root: Path, files: dict) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        if isinstance(content, pd.DataFrame):
            content.to_parquet(root / name)
        else:
            (root / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return root


# (case, files, format, column map, fragments of the DataError)
ERRORS = [
    ("unterminated quote", {"events.csv": GOOD + 'u0,"i1,5\n'}, "csv", None, ["cannot parse"]),
    (
        "latin-1 byte",
        {"events.csv": GOOD.encode() + "u0,caf\xe9,5\n".encode("latin-1")},
        "csv",
        None,
        ["events.csv", "line 14", "not valid utf-8"],
    ),
    ("utf-16 file", {"events.csv": GOOD.encode("utf-16")}, "csv", None, ["line 1", "utf-8"]),
    (
        "missing column",
        {"events.csv": GOOD.replace("timestamp", "ts")},
        "csv",
        None,
        ["events.csv", "missing column(s) ['timestamp']", "found ['user_id', 'item_id', 'ts']"],
    ),
    (
        "column map names a missing column",
        {"events.csv": GOOD},
        "csv",
        "timestamp=when",
        ["missing column(s) ['when']"],
    ),
    ("column map with an unknown key", {"events.csv": GOOD}, "csv", "time=ts", ["--columns"]),
    ("column map without '='", {"events.csv": GOOD}, "csv", "garbage", ["--columns"]),
    (
        "repeated column name",
        {"events.csv": "user_id,user_id,item_id,timestamp\nu1,u1,i1,1\n"},
        "csv",
        None,
        ["line 1", "['user_id'] appear more than once"],
    ),
    ("empty file", {"events.csv": ""}, "csv", None, ["events.csv", "the file is empty"]),
    ("blank lines only", {"events.csv": "\n\n  \n"}, "csv", None, ["the file is empty"]),
    ("header only", {"events.csv": HEADER}, "csv", None, ["no usable rows"]),
    ("no events file", {"other.csv": GOOD}, "csv", None, ["events.csv", "not found"]),
    (
        "timestamp past int64",
        {"events.csv": GOOD + "u0,i1,99999999999999999999999\n"},
        "csv",
        None,
        ["line 14", "'99999999999999999999999'", "2**62"],
    ),
    ("infinite timestamp", {"events.csv": GOOD + "u0,i1,inf\n"}, "csv", None, ["line 14", "'inf'"]),
    ("NaN timestamp", {"events.csv": GOOD + "u0,i1,nan\n"}, "csv", None, ["line 14", "'nan'"]),
    (
        "a date among numbers",
        {"events.csv": GOOD + "u0,i1,2020-01-01\n"},
        "csv",
        None,
        ["line 14", "'2020-01-01' is not a number"],
    ),
    (
        "a number among dates",
        {"events.csv": HEADER + "u0,i1,2020-01-01\nu0,i2,2020-01-02\nu0,i3,yesterday\n"},
        "csv",
        None,
        ["line 4", "'yesterday' is neither a number nor a date"],
    ),
    (
        "too few events per user",
        {"events.csv": HEADER + "u0,i1,1\nu0,i2,2\nu1,i1,1\n"},
        "csv",
        None,
        ["no usable interactions"],
    ),
    (
        "duplicate item ids in items.csv",
        {"events.csv": GOOD, "items.csv": "item_id,title\ni1,a\ni1,b\n"},
        "csv",
        None,
        ["item id 'i1' appears more than once"],
    ),
    (
        "items.csv without a title column",
        {"events.csv": GOOD, "items.csv": "item_id,name\ni1,a\n"},
        "csv",
        None,
        ["items.csv", "missing column(s) ['title']"],
    ),
    (
        "parquet missing a column",
        {"events.parquet": _frame().drop(columns=["timestamp"])},
        "parquet",
        None,
        ["events.parquet", "missing column(s) ['timestamp']"],
    ),
    ("parquet with no rows", {"events.parquet": _frame().iloc[:0]}, "parquet", None, ["no rows"]),
    (
        "parquet that is not parquet",
        {"events.parquet": b"PAR1 this is not a parquet file PAR1"},
        "parquet",
        None,
        ["events.parquet", "not a readable Parquet file"],
    ),
    (
        "parquet timestamp at int64 max",
        {"events.parquet": _frame().assign(timestamp=np.int64(2**63 - 1))},
        "parquet",
        None,
        ["events.parquet", "2**62"],
    ),
]


@pytest.mark.parametrize(
    ("files", "fmt", "columns", "fragments"),
    [case[1:] for case in ERRORS],
    ids=[case[0] for case in ERRORS],
)
def test_unusable_data_is_one_clear_data_error(tmp_path, files, fmt, columns, fragments):
    root = _write(tmp_path / "data", files)
    with pytest.raises(DataError) as e:
        load_dataset(fmt, root, columns=columns)
    for fragment in fragments:
        assert fragment in str(e.value), str(e.value)


# (case, files, format, column map, dropped reason, count, fragment of the issue, and
# whether --strict turns the skip into an error; duplicates and unknown items are
# cleaning, not malformed rows, so strict mode drops them too)
SKIPS = [
    (
        "wrong number of fields",
        {"events.csv": GOOD + "u0,i1\nu1,i2,5,extra\n"},
        "csv",
        None,
        "rows with",
        2,
        "line 15",
        True,
    ),
    (
        "an empty field",
        {"events.csv": GOOD + "u0,,7\n"},
        "csv",
        None,
        "rows with missing fields",
        1,
        "line 14",
        True,
    ),
    (
        "exact duplicate events",
        {"events.csv": GOOD + "u0,i1,100\nu0,i1,100\n"},
        "csv",
        None,
        "exact duplicate events",
        2,
        "line 14, 15",
        False,
    ),
    (
        "events of items missing from items.csv",
        {
            "events.csv": GOOD + "u0,i99,7\n",
            "items.csv": "item_id,title\n" + "".join(f"i{i},Film {i}\n" for i in range(1, 5)),
        },
        "csv",
        None,
        "events with items missing from the catalog",
        1,
        "'i99'",
        False,
    ),
    (
        "a 50 MB line",
        {"events.csv": GOOD + f"u0,{HUGE},5\n"},
        "csv",
        None,
        f"rows with a field longer than {MAX_FIELD_CHARS} characters",
        1,
        "line 14",
        True,
    ),
    (
        "a 50 MB line without separators",
        {"events.csv": GOOD + HUGE + "\n"},
        "csv",
        None,
        f"rows with a field longer than {MAX_FIELD_CHARS} characters",
        1,
        "line 14",
        True,
    ),
    (
        "parquet nulls",
        {
            "events.parquet": pd.concat(
                [_frame(), pd.DataFrame({"user_id": [None], "item_id": ["i1"], "timestamp": [5]})]
            )
        },
        "parquet",
        None,
        "rows with missing fields",
        1,
        "row 13",
        True,
    ),
    (
        "parquet with a renamed column",
        {"events.parquet": _frame().rename(columns={"item_id": "sku"})},
        "parquet",
        "item=sku",
        None,
        0,
        "",
        False,
    ),
]


@pytest.mark.parametrize(
    ("files", "fmt", "columns", "reason", "count", "fragment", "strict_fails"),
    [case[1:] for case in SKIPS],
    ids=[case[0] for case in SKIPS],
)
def test_bad_rows_are_dropped_counted_and_named(
    tmp_path, files, fmt, columns, reason, count, fragment, strict_fails
):
    root = _write(tmp_path / "data", files)
    ds = load_dataset(fmt, root, columns=columns)
    assert len(ds.interactions) == 12  # the 12 good events survive
    if reason is None:
        assert not ds.report.dropped
        return
    dropped = {k: v for k, v in ds.report.dropped.items() if k.startswith(reason)}
    assert sum(dropped.values()) == count, ds.report.dropped
    assert any(fragment in issue for issue in ds.report.issues), ds.report.issues
    if strict_fails:
        with pytest.raises(DataError, match=fragment):
            load_dataset(fmt, root, columns=columns, strict=True)
    else:
        assert len(load_dataset(fmt, root, columns=columns, strict=True).interactions) == 12


def test_a_gigantic_line_in_movielens_files_is_dropped_and_strict_mode_refuses_it(tmp_path):
    root = _write(
        tmp_path / "ml-100k",
        {
            "u.genre": "unknown|0\nDrama|1\n",
            "u.item": "".join(f"{i}|Film {i}|||x|0|1\n" for i in range(1, 6)),
            "u.data": "".join(
                f"{u}\t{i}\t3\t{100 + t}\n" for u in (1, 2) for t, i in enumerate([1, 2, 3, 4])
            )
            + f"1\t2\t3\t{'9' * 200_000}\n",
        },
    )
    ds = load_dataset("movielens-100k", root)
    assert len(ds.interactions) == 8
    assert "line 9" in " ".join(ds.report.issues)
    with pytest.raises(DataError, match=r"u.data: line 9: a field longer than"):
        load_dataset("movielens-100k", root, strict=True)


def test_out_of_order_events_give_the_same_sequences_as_sorted_ones(tmp_path):
    rng = np.random.default_rng(0)
    lines = ROWS.splitlines(keepends=True)
    shuffled = [lines[i] for i in rng.permutation(len(lines))]
    a = load_dataset("csv", _write(tmp_path / "a", {"events.csv": GOOD}))
    b = load_dataset("csv", _write(tmp_path / "b", {"events.csv": HEADER + "".join(shuffled)}))
    sa, sb = leave_one_out(a).sequences, leave_one_out(b).sequences
    ids_a = a.catalog.item_ids[sa.items - 1]
    ids_b = b.catalog.item_ids[sb.items - 1]
    assert list(ids_a) == list(ids_b)
    assert (sa.timestamps == sb.timestamps).all() and (sa.offsets == sb.offsets).all()


def test_same_time_events_keep_file_order_and_different_behaviours_are_not_duplicates(tmp_path):
    text = "user_id,item_id,timestamp,rating\n" + "".join(
        f"u0,i{i},100,{r}\n" for i, r in [(3, 5), (1, 4), (2, 3), (1, 2)]
    )
    ds = load_dataset(
        "csv", _write(tmp_path / "d", {"events.csv": text}), columns="behaviour=rating"
    )
    assert len(ds.interactions) == 4 and not ds.report.dropped
    seq = leave_one_out(ds).sequences
    assert list(ds.catalog.item_ids[seq.items - 1]) == ["i3", "i1", "i2", "i1"]


def test_ids_too_long_for_any_integer_type_are_just_strings(tmp_path):
    big = "9" * 40
    text = GOOD + "".join(f"{big},{big}{i},{t}\n" for t, i in enumerate([1, 2, 3]))
    ds = load_dataset("csv", _write(tmp_path / "d", {"events.csv": text}))
    assert f"{big}1" in set(ds.catalog.item_ids) and big in set(ds.user_ids)


def test_a_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path):
    plain = load_dataset("csv", _write(tmp_path / "a", {"events.csv": GOOD}))
    bom = load_dataset(
        "csv", _write(tmp_path / "b", {"events.csv": b"\xef\xbb\xbf" + GOOD.encode()})
    )
    assert plain.fingerprint() == bom.fingerprint()


def test_items_with_an_empty_optional_text_column_are_kept(tmp_path):
    items = "item_id,title,description\n" + "".join(
        f"i{i},Film {i},{'' if i == 2 else 'a story'}\n" for i in range(1, 5)
    )
    ds = load_dataset(
        "csv",
        _write(tmp_path / "d", {"events.csv": GOOD, "items.csv": items}),
        columns="text=description",
    )
    assert ds.n_items == 4 and len(ds.interactions) == 12 and not ds.report.dropped


# --- the CLI -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "fmt", "columns", "fragments"),
    [case[1:] for case in ERRORS],
    ids=[case[0] for case in ERRORS],
)
def test_cli_reports_unusable_data_in_one_line_and_exits_2(
    tmp_path, capsys, files, fmt, columns, fragments
):
    root = _write(tmp_path / "data", files)
    args = ["data", "info", "-d", fmt, "--data-dir", str(root), "--json"]
    code, _, err = run_cli(capsys, *args, *(["--columns", columns] if columns else []))
    assert code == 2, err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: ") and fragments[-1] in lines[-1], err
    assert "Traceback" not in err and sum(x.startswith("error") for x in lines) == 1


@pytest.mark.parametrize("case", [c for c in SKIPS if c[4]], ids=[c[0] for c in SKIPS if c[4]])
def test_cli_reports_dropped_rows_as_warnings(tmp_path, capsys, case):
    _, files, fmt, columns, reason, count, _, _ = case
    root = _write(tmp_path / "data", files)
    args = ["data", "info", "-d", fmt, "--data-dir", str(root), "--json"]
    code, out, err = run_cli(capsys, *args, *(["--columns", columns] if columns else []))
    assert code == 0, err
    assert "warning: dropped" in err and reason in err, err
    assert "Traceback" not in err
    assert json.loads(out)["interactions"] == 12


def test_cli_strict_mode_turns_a_skip_into_exit_2(tmp_path, capsys):
    root = _write(tmp_path / "data", {"events.csv": GOOD + f"u0,{HUGE[:200_000]},5\n"})
    code, _, err = run_cli(capsys, "data", "info", "-d", "csv", "--data-dir", str(root), "--strict")
    assert code == 2 and err.startswith("error: ") and "line 14" in err


def test_cli_train_refuses_bad_data_before_training(tmp_path, capsys):
    root = _write(tmp_path / "data", {"events.csv": GOOD + "u0,i1,inf\n"})
    run = tmp_path / "run"
    code, _, err = run_cli(
        capsys, "train", "-d", "csv", "--data-dir", str(root), "--out", str(run), "-q"
    )
    assert code == 2 and err.startswith("error: ") and "'inf'" in err
    assert "Traceback" not in err and not run.exists()
