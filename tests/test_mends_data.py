"""Issue 21, items 2 and 3: R's write.csv files load; fractional ids are malformed rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgerec.data import load_dataset
from edgerec.data.eventlog import ColumnMap, load_event_log
from edgerec.errors import DataError

ROWS = [(f"u{u}", f"i{i}", 100 + t) for u in range(3) for t, i in enumerate([1, 2, 3, 4])]


def _r_write_csv(rows, header, *, row_names: bool, crlf: bool) -> bytes:
    """What R's ``write.csv(df, fileEncoding = "UTF-8-BOM")`` writes: a BOM, every header
    name and string field quoted, numbers bare, optionally a quoted row-names column."""
    eol = "\r\n" if crlf else "\n"
    head = ([""] if row_names else []) + list(header)
    lines = [",".join(f'"{h}"' for h in head)]
    for n, row in enumerate(rows, 1):
        fields = [f'"{n}"'] if row_names else []
        fields += [f'"{v}"' if isinstance(v, str) else str(v) for v in row]
        lines.append(",".join(fields))
    return ("\ufeff" + eol.join(lines) + eol).encode("utf-8")


@pytest.mark.parametrize("row_names", [False, True])
@pytest.mark.parametrize("crlf", [False, True])
def test_r_write_csv_with_bom_and_quoted_header_loads(tmp_path, row_names, crlf):
    (tmp_path / "events.csv").write_bytes(
        _r_write_csv(ROWS, ("user_id", "item_id", "timestamp"), row_names=row_names, crlf=crlf)
    )
    items = [(f"i{i}", f"Film, {i}", "Drama|Comedy") for i in range(1, 5)]
    (tmp_path / "items.csv").write_bytes(
        _r_write_csv(items, ("item_id", "title", "categories"), row_names=row_names, crlf=crlf)
    )
    ds = load_dataset("csv", tmp_path)
    assert len(ds.interactions) == 12
    assert sorted(ds.user_ids.tolist()) == ["u0", "u1", "u2"]
    assert ds.catalog.titles[0] == "Film, 1"  # the quoted comma stays in the field
    assert ds.catalog.category_names == ("Comedy", "Drama")
    assert ds.report.dropped == {}


def test_quoted_header_with_a_separator_inside_a_name(tmp_path):
    text = '"user id, primary","item_id","timestamp"\n' + "".join(
        f'"{u}","{i}",{t}\n' for u, i, t in ROWS
    )
    (tmp_path / "events.csv").write_text(text)
    # --columns splits on commas, so such a name is given through the loader's ColumnMap
    ds = load_event_log(tmp_path, columns=ColumnMap(user="user id, primary"))
    assert len(ds.interactions) == 12


def test_a_missing_column_in_a_quoted_header_is_named_without_quotes(tmp_path):
    (tmp_path / "events.csv").write_bytes(
        _r_write_csv(ROWS, ("user_id", "item_id", "ts"), row_names=False, crlf=False)
    )
    with pytest.raises(DataError) as e:
        load_dataset("csv", tmp_path)
    assert "missing column(s) ['timestamp']" in str(e.value)
    assert "found ['user_id', 'item_id', 'ts']" in str(e.value)


# ---------------------------------------------------------------- item 3: u.data ids

GOOD = "".join(f"{u}\t{i}\t3\t{100 + t}\n" for u in (1, 2) for t, i in enumerate([1, 2, 3, 4]))


def _ml100k(tmp_path: Path, data: str) -> Path:
    root = tmp_path / "ml-100k"
    root.mkdir(exist_ok=True)
    (root / "u.genre").write_text("unknown|0\nDrama|1\n")
    (root / "u.item").write_text("".join(f"{i}|Film {i}|||x|0|1\n" for i in range(1, 6)))
    (root / "u.data").write_text(data)
    return root


@pytest.mark.parametrize("column,row", [("item", "1\t1.5\t3\t200\n"), ("user", "2.5\t1\t3\t9\n")])
def test_a_fractional_id_is_a_dropped_row_named_by_line(tmp_path, column, row):
    ds = load_dataset("movielens-100k", _ml100k(tmp_path, GOOD + row))
    assert len(ds.interactions) == 8
    issues = " | ".join(ds.report.issues)
    assert f"u.data: line 9: {column} is not an integer ('" in issues
    assert "np." not in issues and "float64" not in issues
    assert sum(ds.report.dropped.values()) == 1


def test_a_fractional_timestamp_is_a_dropped_row_too(tmp_path):
    ds = load_dataset("movielens-100k", _ml100k(tmp_path, GOOD + "1\t5\t3\t7.25\n"))
    assert len(ds.interactions) == 8
    assert "line 9: ts is not an integer ('7.25')" in " | ".join(ds.report.issues)


def test_strict_makes_a_fractional_id_an_error_naming_file_and_line(tmp_path):
    root = _ml100k(tmp_path, GOOD + "1\t1.5\t3\t200\n")
    with pytest.raises(DataError) as e:
        load_dataset("movielens-100k", root, strict=True)
    message = str(e.value)
    assert str(root / "u.data") in message and "line 9" in message and "'1.5'" in message
    assert "np." not in message


def test_integral_floats_like_3_0_stay_accepted(tmp_path):
    ds = load_dataset("movielens-100k", _ml100k(tmp_path, GOOD + "1\t5.0\t3\t200\n"))
    assert len(ds.interactions) == 9
    assert ds.report.dropped == {}


def test_cli_reports_a_fractional_id_as_a_warning_with_the_line(tmp_path):
    from typer.testing import CliRunner

    from edgerec.cli import app

    root = _ml100k(tmp_path, GOOD + "1\t1.5\t3\t200\n")
    result = CliRunner().invoke(
        app, ["data", "info", "--dataset", "movielens-100k", "--data-dir", str(root), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert "line 9: item is not an integer ('1.5')" in result.output
