"""The reliability issue's runtime findings, each pinned: behaviours outside the
vocabulary are reported, integer request times are checked as integers, and the
command line says when a list is the popularity fallback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from runtime_helpers import make_bundle

from edgerec.cli import main
from edgerec.runtime import Recommender


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("mends-rt") / "b")


@pytest.fixture(scope="module")
def rec(bundle) -> Recommender:
    return Recommender.load(bundle, providers="cpu", threads=1)


def test_behaviours_outside_the_vocabulary_are_reported_not_silent(rec):
    got = rec.recommend([101, 102, 103], k=3, behaviours=["5", 7, "like"])
    assert got.unknown_behaviours == (7, "like")
    assert got.to_dict()["unknown_behaviours"] == [7, "like"]
    assert rec.recommend([101], k=3, behaviours=["5"]).unknown_behaviours == ()
    batch = rec.recommend_batch([[101], [102, 103]], k=3, behaviours=[["x"], ["5", 9]])
    assert [b.unknown_behaviours for b in batch] == [("x",), (9,)]


def test_integer_request_times_are_checked_as_integers(rec):
    ts = [10, 20, 30]
    near_limit = 2**62 - 1  # float(2**62 - 1) rounds to 2**62, past the limit
    got = rec.recommend([101, 102, 103], k=3, timestamps=ts, now=near_limit)
    assert len(got) == 3
    with pytest.raises(ValueError, match="now = 4611686018427387904 is out of range"):
        rec.recommend([101, 102, 103], k=3, timestamps=ts, now=2**62)
    with pytest.raises(ValueError, match="out of range"):
        rec.recommend([101, 102, 103], k=3, timestamps=ts, now=float(near_limit))


def run(args, capsys) -> tuple[int, str]:
    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code or 0
    return code, capsys.readouterr().out


def test_the_cli_labels_popularity_counts_and_names_unknown_behaviours(bundle, capsys):
    code, out = run(["recommend", str(bundle), "--history", "999", "--k", "3"], capsys)
    assert code == 0 and "popularity" in out and "popularity fallback" in out
    code, out = run(
        ["recommend", str(bundle), "--history", "101,102", "--behaviours", "5,7", "--k", "3"],
        capsys,
    )
    assert code == 0 and "7" in out and "not in the bundle's vocabulary" in " ".join(out.split())


def test_a_cold_items_vector_does_not_depend_on_the_items_added_with_it(tmp_path):
    """The int8 text encoder quantizes activations per run: one text per run keeps a
    cold item's vector its own (a batch would share one scale)."""
    from reliability_helpers import copy_bundle

    mates = ["zzzz qqqq xxxx " * 20, "!!!! ???? #### " * 20, "0 1 2 3 4 5 6 7 8 9 " * 6]
    texts = ["space war story", *mates, *(f"item {i} " * 10 for i in range(20))]
    alone = Recommender.load(copy_bundle(tmp_path / "a"), providers="cpu")
    together = Recommender.load(copy_bundle(tmp_path / "b"), providers="cpu")
    assert alone.graph_files["text_encoder"].endswith(".int8.onnx")
    alone.add_items([90_001], texts[:1])
    together.add_items(list(range(90_001, 90_001 + len(texts))), texts)
    np.testing.assert_array_equal(alone.item_vectors([90_001]), together.item_vectors([90_001]))
