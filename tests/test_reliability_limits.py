"""Resource bounds: oversized input is a clear ValueError, not an out-of-memory death.

The limits (``edgerec.runtime.requests``): events per history (MAX_HISTORY), histories per
batch (MAX_BATCH) and events per batch (MAX_BATCH_EVENTS), recommendations per call
(MAX_RESULTS), ids per candidates/exclude/add/remove argument (MAX_IDS), rows the catalog
may grow to (MAX_CATALOG_ROWS), and characters of item text the tokenizer reads. Inputs
at a limit work and stay cheap in memory; inputs past it fail before the work is done,
naming the argument and the limit; endless generators are read only up to the limit.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from reliability_helpers import real_bundle

from edgerec.runtime import Recommender
from edgerec.runtime import requests as I


@pytest.fixture(scope="module")
def rec() -> Recommender:
    return Recommender.load(real_bundle(), providers="cpu", threads=1)


@pytest.fixture
def fresh() -> Recommender:
    return Recommender.load(real_bundle(), providers="cpu", threads=1)


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _rss_growth_mib(fn) -> float:
    """RSS after ``fn`` minus RSS before (a rough but real bound on what it kept)."""
    before = _rss_mib()
    fn()
    return _rss_mib() - before


# --- history length --------------------------------------------------------------------


def test_a_history_at_the_limit_works_and_reads_only_the_latest_events(rec):
    history = (np.arange(I.MAX_HISTORY) % 60 + 1).tolist()
    timestamps = list(range(I.MAX_HISTORY))
    recs = rec.recommend(history, k=5, timestamps=timestamps, exclude_seen=False)
    assert recs.n_events == I.MAX_HISTORY and recs.n_used == rec.max_len
    latest = slice(-rec.max_len, None)
    same = rec.recommend(history[latest], k=5, timestamps=timestamps[latest], exclude_seen=False)
    assert recs.item_ids == same.item_ids and len(recs) == 5
    assert rec.recommend(history, k=5).item_ids == []  # every item was seen
    assert _rss_growth_mib(lambda: rec.recommend(history, k=5)) < 64


@pytest.mark.parametrize(
    "history",
    [
        lambda: [1] * (I.MAX_HISTORY + 1),
        lambda: np.ones(I.MAX_HISTORY + 1, np.int64),
        lambda: itertools.repeat(1),  # endless: read up to the limit, then refused
        lambda: itertools.count(1),
    ],
)
def test_a_history_past_the_limit_is_refused(rec, history):
    with pytest.raises(
        ValueError, match=rf"history has more than {I.MAX_HISTORY}|history has {I.MAX_HISTORY + 1}"
    ):
        rec.recommend(history(), k=5)


@pytest.mark.parametrize("argument", ["timestamps", "behaviours"])
def test_endless_side_inputs_are_bounded(rec, argument):
    with pytest.raises(ValueError, match=argument):
        rec.recommend([1, 2, 3], k=5, **{argument: itertools.repeat(1)})


def test_user_vector_and_explain_share_the_history_limit(rec):
    for method in (rec.user_vector, rec.explain):
        with pytest.raises(ValueError, match="history has more than"):
            method(itertools.repeat(2))


# --- batches ---------------------------------------------------------------------------


def test_a_batch_past_the_history_count_limit_is_refused(rec):
    with pytest.raises(ValueError, match=rf"histories has more than {I.MAX_BATCH}"):
        rec.recommend_batch(itertools.repeat([1, 2]), k=1)
    with pytest.raises(ValueError, match="timestamps has more than"):
        rec.recommend_batch([[1]], k=1, timestamps=itertools.repeat(None))


def test_a_batch_past_the_event_limit_is_refused_before_encoding(rec, monkeypatch):
    monkeypatch.setattr(I, "MAX_BATCH_EVENTS", 1000)
    calls = []
    monkeypatch.setattr(rec, "_encode", lambda *a: calls.append(a))
    histories = [[1, 2, 3, 4] * 50] * 6  # 1,200 events
    with pytest.raises(ValueError, match="more than 1000 events in total; split the batch"):
        rec.recommend_batch(histories, k=3)
    assert calls == []


def test_a_batch_whose_answers_would_be_too_many_is_refused(rec, monkeypatch):
    monkeypatch.setattr(I, "MAX_RESULTS", 10_000)
    histories = [[1, 2, 3]] * 200
    assert len(rec.recommend_batch(histories, k=50)) == 200  # 200 x 50 = 10,000: fine
    with pytest.raises(ValueError, match="would return more than 10000 recommendations"):
        rec.recommend_batch(histories, k=51)
    # k beyond the catalog counts as the catalog (60 items): 200 x 60 > 10,000
    with pytest.raises(ValueError, match="split the batch or lower k"):
        rec.recommend_batch(histories, k=10**12)


def test_the_default_result_limit_allows_a_whole_catalog_for_many_users(rec):
    out = rec.recommend_batch([[1, 2, 3], []] * 500, k=10**12)
    assert len(out) == 1000 and all(len(r) in (57, 60) for r in out)


# --- ids and the catalog -------------------------------------------------------------------


@pytest.mark.parametrize("argument", ["candidates", "exclude"])
def test_candidates_and_exclusions_are_bounded(rec, argument):
    with pytest.raises(ValueError, match=rf"{argument} has more than {I.MAX_IDS}"):
        rec.recommend([1, 2], k=3, **{argument: itertools.count(1)})


def test_add_and_remove_are_bounded(fresh):
    before = fresh.n_items
    with pytest.raises(ValueError, match=rf"item_ids has more than {I.MAX_IDS}"):
        fresh.add_items(itertools.count(10**6), itertools.repeat("text"))
    with pytest.raises(ValueError, match=rf"item_ids has more than {I.MAX_IDS}"):
        fresh.remove_items(itertools.count(1))
    assert fresh.n_items == before


def test_the_catalog_cannot_grow_past_its_row_limit(fresh, monkeypatch):
    rows = fresh.n_items + 1  # the catalog's rows: the items and the padding row
    monkeypatch.setattr(I, "MAX_CATALOG_ROWS", rows + 5)
    assert fresh.add_items([1001, 1002, 1003], ["a", "b", "c"]) == 3
    before = fresh.item_ids
    with pytest.raises(ValueError, match=rf"item_ids: the catalog would exceed {rows + 5} rows"):
        fresh.add_items([2001, 2002, 2003], ["a", "b", "c"])
    assert fresh.item_ids == before and 2001 not in fresh


def test_a_gigantic_item_text_is_cut_before_tokenizing(fresh):
    text = "space war story " * 3_000_000  # 48 MB
    growth = _rss_growth_mib(lambda: fresh.add_items([777_777], [text]))
    assert 777_777 in fresh
    short = Recommender.load(real_bundle(), providers="cpu", threads=1)
    short.add_items([777_777], [text[: 64 * 32]])  # what the tokenizer reads
    np.testing.assert_allclose(
        [r.score for r in fresh.recommend([777_777, 1], k=5)],
        [r.score for r in short.recommend([777_777, 1], k=5)],
        rtol=1e-6,
    )
    assert growth < 64
