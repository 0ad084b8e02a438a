"""Bad input gets one clear error or a counted, reported skip naming file and line."""

import pytest
from typer.testing import CliRunner

from edgerec.cli import app
from edgerec.data import load_dataset
from edgerec.errors import DataError

GOOD = "".join(f"{u}\t{i}\t3\t{100 + t}\n" for u in (1, 2) for t, i in enumerate([1, 2, 3, 4]))


def _dataset(tmp_path, data: bytes, item_bytes: bytes | None = None):
    root = tmp_path / "ml-100k"
    root.mkdir(exist_ok=True)
    (root / "u.genre").write_text("unknown|0\nDrama|1\n")
    items = item_bytes or "".join(f"{i}|Film {i}|||x|0|1\n" for i in range(1, 6)).encode("latin-1")
    (root / "u.item").write_bytes(items)
    (root / "u.data").write_bytes(data)
    return root


def test_wrong_field_count_rows_are_dropped_and_named_by_line(tmp_path):
    ds = load_dataset(
        "movielens-100k", _dataset(tmp_path, (GOOD + "1\t2\n3\t4\t5\t6\t7\n").encode())
    )
    assert len(ds.interactions) == 8
    text = " ".join(ds.report.issues)
    assert "line 10" in text and "wrong number of fields" in text
    assert "line 9" in text and "missing" in text


def test_non_numeric_ids_and_timestamps_are_dropped_with_line_numbers(tmp_path):
    bad = GOOD + "x\t1\t3\t5\n1\t1\t3\tyesterday\n"
    ds = load_dataset("movielens-100k", _dataset(tmp_path, bad.encode()))
    assert len(ds.interactions) == 8
    issues = " | ".join(ds.report.issues)
    assert "line 9: user is not a number ('x')" in issues
    assert "line 10: ts is not a number ('yesterday')" in issues


def test_strict_mode_turns_the_first_bad_row_into_an_error(tmp_path):
    with pytest.raises(DataError, match=r"u.data: line 9"):
        load_dataset(
            "movielens-100k", _dataset(tmp_path, (GOOD + "x\t1\t3\t5\n").encode()), strict=True
        )


def test_bad_encoding_names_the_file_and_line(tmp_path):
    root = _dataset(tmp_path, GOOD.encode())
    (root / "u.data").write_bytes(GOOD.encode() + b"1\t\xff\xfe\t3\t1\n")
    with pytest.raises(DataError, match=r"u.data: line 9: bytes that are not valid utf-8"):
        load_dataset("movielens-100k", root)


def test_missing_files_and_empty_files_are_named(tmp_path):
    with pytest.raises(DataError, match="no u.data found"):
        load_dataset("movielens-100k", tmp_path)
    with pytest.raises(DataError, match="u.data: the file is empty"):
        load_dataset("movielens-100k", _dataset(tmp_path, b"\n\n"))


def test_events_with_unknown_items_are_dropped_and_counted(tmp_path):
    ds = load_dataset("movielens-100k", _dataset(tmp_path, (GOOD + "1\t99\t3\t1000\n").encode()))
    assert ds.report.dropped["events with items missing from the catalog"] == 1
    assert any("line 9" in issue and "99" in issue for issue in ds.report.issues)


def test_exact_duplicates_are_dropped_and_counted(tmp_path):
    ds = load_dataset("movielens-100k", _dataset(tmp_path, (GOOD + "1\t1\t3\t100\n").encode()))
    assert ds.report.dropped["exact duplicate events"] == 1


def test_a_data_set_with_no_splittable_user_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no usable interactions"):
        load_dataset("movielens-100k", _dataset(tmp_path, b"1\t1\t3\t1\n1\t2\t3\t2\n"))


def test_ids_that_overflow_int64_are_refused(tmp_path):
    with pytest.raises(DataError, match="integers within int64"):
        load_dataset(
            "movielens-100k",
            _dataset(tmp_path, (GOOD + "99999999999999999999999\t1\t3\t1\n").encode()),
        )


def test_cli_reports_bad_data_without_a_traceback(tmp_path):
    root = _dataset(tmp_path, b"\n")
    result = CliRunner().invoke(
        app, ["data", "info", "-d", "movielens-100k", "--data-dir", str(root)]
    )
    assert result.exit_code != 0
    assert "Traceback" not in result.output


def test_cli_main_exits_2_with_one_line(tmp_path, capsys):
    from edgerec.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["data", "info", "-d", "movielens-100k", "--data-dir", str(tmp_path / "missing")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no such directory" in err and "Traceback" not in err


def test_cli_evaluate_json_has_the_documented_fields():
    import json

    result = CliRunner().invoke(app, ["evaluate", "--model", "markov", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    for key in ("users", "items", "valid", "test"):
        assert key in out
    for key in ("hr@10", "ndcg@10", "mrr@10", "hr@20", "ndcg@20", "coverage@10"):
        assert 0.0 <= out["test"][key] <= 1.0
