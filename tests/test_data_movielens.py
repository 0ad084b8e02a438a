"""Loaders against the real MovieLens 100K and hand-made files of the other formats."""

import json
import zipfile

import numpy as np
import pytest

from edgerec.data import leave_one_out, load_dataset
from edgerec.evaluation import evaluate_both, make_baseline


@pytest.fixture(scope="module")
def ml100k(ml100k_dir):
    return load_dataset("movielens-100k", ml100k_dir)


def test_ml100k_counts_match_the_published_figures(ml100k):
    assert ml100k.n_users == 943
    assert ml100k.n_items == 1682
    assert len(ml100k.interactions) == 100_000
    assert ml100k.report.dropped == {}
    assert len(ml100k.catalog.category_names) == 19


def test_ml100k_titles_are_decoded_from_latin1(ml100k):
    assert "Misérables, Les (1995)" in ml100k.catalog.titles
    assert ml100k.catalog.texts[0] == "Toy Story (1995). Genres: Animation, Children's, Comedy."


def test_mostpop_reproduces_the_reference_figures(ml100k):
    split = leave_one_out(ml100k)
    result = evaluate_both(make_baseline("mostpop", split), split)
    assert result["users"] == 943
    assert round(result["test"]["ndcg@10"], 6) == 0.044091
    assert round(result["test"]["hr@10"], 6) == 0.084836
    assert round(result["test"]["mrr@10"], 6) == 0.031792


def test_sequence_baselines_beat_popularity_on_ml100k(ml100k):
    split = leave_one_out(ml100k)
    pop = evaluate_both(make_baseline("mostpop", split), split)["test"]["ndcg@10"]
    for name in ("itemknn", "markov"):
        assert evaluate_both(make_baseline(name, split), split)["test"]["ndcg@10"] > pop


def test_ml100k_accepts_the_parent_data_dir(ml100k_dir):
    ds = load_dataset("movielens-100k", ml100k_dir.parent.parent)
    assert ds.n_users == 943


def _write(path, text, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def test_movielens_1m_format_reads_double_colon_latin1(tmp_path):
    root = tmp_path / "ml-1m"
    _write(
        root / "movies.dat", "1::Amélie (2001)::Comedy|Romance\n2::Heat (1995)::Action\n", "latin-1"
    )
    _write(
        root / "ratings.dat",
        "".join(f"{u}::{i}::4::{t}\n" for u in (1, 2) for t, i in enumerate([1, 2, 1])),
    )
    ds = load_dataset("movielens-1m", tmp_path)
    assert ds.n_items == 2 and ds.n_users == 2 and len(ds.interactions) == 6
    assert ds.catalog.titles[0] == "Amélie (2001)"
    assert ds.catalog.category_names == ("Action", "Comedy", "Romance")


def test_movielens_latest_tolerates_crlf_and_quoted_titles(tmp_path):
    root = tmp_path / "ml-latest-small"
    _write(
        root / "movies.csv",
        'movieId,title,genres\r\n1,"Toy Story, The (1995)",Animation|Comedy\r\n2,Heat (1995),Action\r\n',
    )
    _write(root / "tags.csv", "userId,movieId,tag,timestamp\r\n1,1,pixar,5\r\n")
    rows = "".join(f"{u},{i},3.5,{t}\r\n" for u in (7, 8) for t, i in enumerate([1, 2, 1]))
    _write(root / "ratings.csv", "userId,movieId,rating,timestamp\r\n" + rows)
    ds = load_dataset("movielens-latest", tmp_path)
    assert ds.catalog.titles[0] == "Toy Story, The (1995)"
    assert "Tags: pixar" in ds.catalog.texts[0]
    assert len(ds.interactions) == 6


def test_csv_event_log_with_a_column_mapping_keeps_string_ids(tmp_path):
    _write(
        tmp_path / "events.csv",
        "uid,sku,ts,kind\n"
        + "".join(
            f"u{u},A{i},2024-01-0{t + 1},view\n" for u in (1, 2) for t, i in enumerate([1, 2, 3])
        ),
    )
    _write(
        tmp_path / "items.csv",
        "sku,name,cats\nA1,Red shoe,shoes|red\nA2,Blue hat,hats\nA3,Green sock,socks\n",
    )
    ds = load_dataset(
        "csv",
        tmp_path,
        columns="user=uid,item=sku,timestamp=ts,behaviour=kind,title=name,categories=cats",
    )
    assert list(ds.catalog.item_ids) == ["A1", "A2", "A3"]
    assert ds.behaviour_vocab == ("none", "view")
    assert ds.catalog.categories.sum() == 4
    assert np.all(np.diff(ds.interactions.timestamps[:3]) == 86400)


def test_parquet_event_log_loads(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    pd.DataFrame(
        {"user_id": [1, 1, 1], "item_id": ["x", "y", "x"], "timestamp": [1, 2, 3]}
    ).to_parquet(tmp_path / "events.parquet")
    ds = load_dataset("parquet", tmp_path)
    assert ds.n_users == 1 and ds.n_items == 2


def test_fetch_verifies_and_extracts_an_archive_from_a_file_url(tmp_path):
    from edgerec.data.fetch import fetch_dataset

    archive = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ml-1m/movies.dat", "1::A (1999)::Drama\n")
        zf.writestr("ml-1m/ratings.dat", "1::1::5::1\n1::1::4::2\n1::1::3::3\n")
    import hashlib

    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    out = fetch_dataset("movielens-1m", tmp_path / "data", url=archive.as_uri(), sha256=digest)
    assert (out / "ratings.dat").is_file()
    assert load_dataset("movielens-1m", tmp_path / "data").n_users == 1


def test_fetch_refuses_a_checksum_mismatch_and_leaves_nothing(tmp_path):
    from edgerec.data.fetch import fetch_dataset
    from edgerec.errors import DataError

    archive = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ml-1m/ratings.dat", "1::1::5::1\n")
    with pytest.raises(DataError, match="sha256 mismatch"):
        fetch_dataset("movielens-1m", tmp_path / "data", url=archive.as_uri(), sha256="0" * 64)
    assert not (tmp_path / "data" / "ml-1m").exists()


def test_fetch_refuses_members_that_escape_the_target(tmp_path):
    from edgerec.data.fetch import fetch_dataset
    from edgerec.errors import DataError

    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ml-1m/../../escaped.txt", "x")
    with pytest.raises(DataError, match="escape"):
        fetch_dataset("movielens-1m", tmp_path / "data", url=archive.as_uri())
    assert not (tmp_path / "escaped.txt").exists()


def test_data_info_cli_prints_counts_and_split_sizes(ml100k_dir):
    from typer.testing import CliRunner

    from edgerec.cli import app

    result = CliRunner().invoke(
        app, ["data", "info", "-d", "movielens-100k", "--data-dir", str(ml100k_dir), "--json"]
    )
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["users"] == 943 and info["split"]["train"] == 100_000 - 2 * 943
