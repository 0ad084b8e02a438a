"""The Recommender API on hand-made bundles: answers, input handling, updates, threads."""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from runtime_helpers import BEHAVIOURS, make_bundle, reference_scores

from edgerec.errors import BundleError, UnknownItemError
from edgerec.runtime import RecommendationList, Recommender

N = 40  # items 101..140 are rows 1..40


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("rt-rec") / "b")


@pytest.fixture(scope="module")
def rec(bundle) -> Recommender:
    return Recommender.load(bundle, providers="cpu", threads=1)


@pytest.fixture
def fresh(bundle) -> Recommender:
    """A recommender of its own, for tests that add or remove items."""
    return Recommender.load(bundle, providers="cpu", threads=1)


def rows_of(ids):
    return [i - 100 for i in ids]


def test_scores_match_the_graph_and_matrix_directly(rec, bundle):
    history = [103, 117, 125, 103, 140]
    got = rec.recommend(history, k=5)
    scores, gate = reference_scores(bundle, rows_of(history))
    scores[[0, 3, 17, 25, 40]] = -np.inf  # padding and seen
    want = np.argsort(-scores, kind="stable")[:5]
    assert [r.item_id for r in got] == [100 + int(i) for i in want]
    np.testing.assert_allclose([r.score for r in got], scores[want], rtol=1e-5, atol=1e-6)
    assert got.gate == pytest.approx(gate, abs=1e-6)
    assert got.fallback is None and got.n_unknown == 0 and got[0].title == f"Item {got[0].item_id}"


def test_exclude_seen_false_can_return_history_items(rec):
    history = [103, 117, 125]
    scores, _ = reference_scores(rec.path, rows_of(history))
    scores[0] = -np.inf
    got = rec.recommend(history, k=N, exclude_seen=False)
    assert [r.item_id for r in got] == [
        100 + int(i) for i in np.argsort(-scores, kind="stable")[:N]
    ]


def test_unknown_ids_are_ignored_and_counted(rec):
    plain = rec.recommend([103, 117], k=5)
    noisy = rec.recommend([999, 103, "nope", 117, -5], k=5)
    assert noisy.item_ids == plain.item_ids
    assert noisy.unknown_items == (999, "nope", -5) and noisy.n_unknown == 3
    assert noisy.n_events == 5 and noisy.n_used == 2


def test_strict_raises_naming_the_unknown_ids(rec):
    with pytest.raises(UnknownItemError) as e:
        rec.recommend([103, 999, 998], strict=True)
    assert e.value.unknown == [999, 998] and "999" in str(e.value)


def test_empty_or_all_unknown_history_falls_back_to_popularity(rec, bundle):
    pop = np.load(bundle / "popularity.npy")
    want = [100 + int(i) for i in np.lexsort((np.arange(N + 1), -pop)) if i > 0][:5]
    for history in ([], (), np.array([], dtype=np.int64), [999]):
        got = rec.recommend(history, k=5)
        assert got.fallback == "popularity" and got.gate is None
        assert got.item_ids == want
    assert rec.recommend([999], k=5).unknown_items == (999,)
    # the fallback still honours exclusions and candidates
    got = rec.recommend([], k=3, exclude=[want[0]], candidates=want[:3] + [want[4]])
    assert got.item_ids == [want[1], want[2], want[4]]


def test_long_history_keeps_the_most_recent_max_len_events(rec):
    rng = np.random.default_rng(0)
    history = rng.integers(101, 141, 37).tolist()
    assert rec.max_len == 10
    full = rec.recommend(history, k=5, exclude_seen=False)
    recent = rec.recommend(history[-10:], k=5, exclude_seen=False)
    assert full.item_ids == recent.item_ids and full.n_used == 10
    np.testing.assert_allclose([r.score for r in full], [r.score for r in recent], rtol=1e-6)
    # ...but every event of the history counts as seen
    seen_all = rec.recommend(history, k=N)
    assert not set(seen_all.item_ids) & set(history)


def test_unknown_ids_do_not_use_up_the_window(rec):
    known = list(range(101, 111))
    a = rec.recommend(known, k=5)
    b = rec.recommend(known[:5] + [999] * 20 + known[5:], k=5)
    assert a.item_ids == b.item_ids and b.n_used == 10


@pytest.mark.parametrize("k", [0, -1, 2.5, "3", True, None, np.float64(3)])
def test_bad_k_is_a_value_error(rec, k):
    with pytest.raises(ValueError, match="k must be a positive int"):
        rec.recommend([101], k=k)


def test_numpy_int_k_and_k_larger_than_the_catalog(rec):
    assert len(rec.recommend([101], k=np.int64(3))) == 3
    everything = rec.recommend([101, 102], k=10_000)
    assert len(everything) == N - 2
    assert len(rec.recommend([], k=10_000)) == N


def test_ids_as_strings_and_numpy_ints_are_the_same_items(rec):
    want = rec.recommend([103, 117], k=5).item_ids
    assert rec.recommend(["103", " 117 "], k=5).item_ids == want
    assert rec.recommend(np.array([103, 117], dtype=np.int32), k=5).item_ids == want
    assert rec.recommend([np.int64(103), np.uint16(117)], k=5).item_ids == want
    assert rec.recommend(iter([103, 117]), k=5).item_ids == want


@pytest.mark.parametrize(
    "history, fragment",
    [
        (None, "history"),
        ("103,117", "history"),
        (103, "history"),
        ({103, 117}, "ordered"),
        ({103: 1}, "ordered"),
        ([103, 1.5], "history[1]"),
        ([103, None], "history[1]"),
        ([True], "history[0]"),
        ([b"103"], "history[0]"),
        (np.zeros((2, 2), np.int64), "one-dimensional"),
        (np.array([1.0, 2.0]), "history[0]"),
        (range(200_000), "more than"),
    ],
)
def test_bad_histories_are_value_errors_naming_the_argument(rec, history, fragment):
    with pytest.raises(ValueError, match="history") as e:
        rec.recommend(history)
    assert fragment in str(e.value)


def test_infinite_generator_is_bounded(rec):
    import itertools

    with pytest.raises(ValueError, match="more than"):
        rec.recommend(itertools.cycle([101]))


@pytest.mark.parametrize(
    "timestamps, fragment",
    [
        ([0, float("nan"), 2], "timestamps[1]"),
        ([0, 1, float("inf")], "timestamps[2]"),
        (np.array([0.0, -np.inf, 1.0]), "timestamps[1]"),
        ([0, "1", 2], "timestamps[1]"),
        ([0, None, 2], "timestamps[1]"),
        ([0, True, 2], "timestamps[1]"),
        ([0, 1], "2 entries"),
        ([0, 1, 2**70], "out of range"),
        ("012", "timestamps"),
    ],
)
def test_bad_timestamps_are_value_errors_naming_the_field(rec, timestamps, fragment):
    with pytest.raises(ValueError, match="timestamps") as e:
        rec.recommend([101, 102, 103], timestamps=timestamps)
    assert fragment in str(e.value)


def test_timestamps_become_the_exported_gap_buckets(rec, bundle):
    history = [103, 117, 125]
    ts = [1_000_000, 1_000_100, 1_090_000]
    got = rec.recommend(history, k=5, timestamps=ts)
    scores, _ = reference_scores(bundle, rows_of(history), timestamps=ts)
    scores[[0, 3, 17, 25]] = -np.inf
    assert got.item_ids == [100 + int(i) for i in np.argsort(-scores, kind="stable")[:5]]
    assert (
        rec.recommend(history, k=5, timestamps=np.array(ts, dtype=np.float64)).item_ids
        == got.item_ids
    )
    with_time = rec.user_vector(history, timestamps=ts).vector
    assert not np.allclose(with_time, rec.user_vector(history).vector)  # gaps reach the model


def test_behaviours_map_through_the_vocabulary(rec, bundle):
    history = [103, 117, 125]
    by_value = rec.recommend(history, k=N, behaviours=[5, 4.0, "3"])
    beh = np.array([[BEHAVIOURS.index("5"), BEHAVIOURS.index("4"), BEHAVIOURS.index("3")]])
    scores, _ = reference_scores(bundle, rows_of(history), behaviours=beh)
    np.testing.assert_allclose(
        sorted((r.score for r in by_value), reverse=True),
        sorted(np.delete(scores, [0, 3, 17, 25]), reverse=True)[: len(by_value)],
        rtol=1e-5,
        atol=1e-6,
    )
    # unknown values map to index 0 ("none"), exactly like passing "none"
    unknown = rec.recommend(history, k=5, behaviours=["like", 9, "none"])
    none = rec.recommend(history, k=5, behaviours=["none", "none", "none"])
    assert [r.score for r in unknown] == [r.score for r in none]
    # None means the bundle's default behaviour ("4" here)
    assert (
        rec.recommend(history, k=5).item_ids
        == rec.recommend(history, k=5, behaviours=[4, 4, 4]).item_ids
    )


@pytest.mark.parametrize(
    "behaviours, fragment",
    [
        ([1, 2], "2 entries"),
        ([1, None, 2], "behaviours[1]"),
        ([1, float("nan"), 2], "behaviours[1]"),
        ([True, 1, 2], "behaviours[0]"),
        ("123", "behaviours"),
    ],
)
def test_bad_behaviours_are_value_errors(rec, behaviours, fragment):
    with pytest.raises(ValueError, match="behaviours") as e:
        rec.recommend([101, 102, 103], behaviours=behaviours)
    assert fragment in str(e.value)


def test_candidates_and_exclude(rec):
    history = [103, 117]
    full = rec.recommend(history, k=N).item_ids
    subset = full[5:12][::-1] + [103, 999]  # seen and unknown candidates are dropped
    got = rec.recommend(history, k=3, candidates=subset)
    assert got.item_ids == full[5:8]
    got = rec.recommend(history, k=3, exclude=full[:2] + ["x"])
    assert got.item_ids == full[2:5]
    assert rec.recommend(history, k=3, candidates=[]).item_ids == []


def test_batch_gives_the_same_answers_as_single_calls(rec):
    rng = np.random.default_rng(1)
    histories = [rng.integers(101, 141, rng.integers(0, 15)).tolist() for _ in range(25)]
    histories[3] = [999]
    ts = [np.sort(rng.integers(0, 10**6, len(h))) for h in histories]
    batch = rec.recommend_batch(histories, k=7, timestamps=ts)
    for h, t, got in zip(histories, ts, batch, strict=True):
        one = rec.recommend(h, k=7, timestamps=t)
        assert got.item_ids == one.item_ids and got.fallback == one.fallback
        np.testing.assert_allclose(
            [r.score for r in got], [r.score for r in one], rtol=1e-4, atol=1e-5
        )


def test_batch_errors_name_the_history(rec):
    with pytest.raises(ValueError, match=r"histories\[1\]: history\[0\]"):
        rec.recommend_batch([[101], [1.5]])
    with pytest.raises(ValueError, match="behaviours has 1 entries for 2 histories"):
        rec.recommend_batch([[101], [102]], behaviours=[[4]])


def test_string_id_bundle_with_int8_items(tmp_path):
    b = make_bundle(tmp_path / "s", id_type="str", item_dtype="int8", seed=2)
    rec = Recommender.load(b, providers="cpu")
    got = rec.recommend(["m3", "m17", 5], k=5)  # 5 -> "5", unknown here
    assert all(isinstance(r.item_id, str) for r in got) and got.unknown_items == (5,)
    scores, _ = reference_scores(b, [4, 18])
    scores[[0, 4, 18]] = -np.inf
    assert got.item_ids == [f"m{int(i) - 1}" for i in np.argsort(-scores, kind="stable")[:5]]


@pytest.mark.parametrize("dtype", ["float16", "int8"])
@pytest.mark.parametrize("scoring", ["graph", "int8", "topk"])
def test_every_scoring_path_gives_the_same_top_items(tmp_path, dtype, scoring):
    b = make_bundle(tmp_path / dtype, item_dtype=dtype)
    rec = Recommender.load(b, providers="cpu", scoring=scoring)
    assert rec.scoring == scoring
    history = [103, 117, 125]
    scores, _ = reference_scores(b, rows_of(history))
    scores[[0, 3, 17, 25]] = -np.inf
    want = [100 + int(i) for i in np.argsort(-scores, kind="stable")[:5]]
    got = rec.recommend(history, k=5).item_ids
    if scoring == "topk" and dtype == "float16":  # fp16 sums may swap near-ties
        assert len(set(got) & set(want)) >= 4
    else:
        assert got == want


def test_user_vector_scores_items_like_recommend(rec, bundle):
    history = [103, 117, 125]
    vec, gate = rec.user_vector(history)
    matrix = np.load(bundle / "items.npy")
    top = rec.recommend(history, k=3)
    np.testing.assert_allclose(
        [r.score for r in top], matrix[rows_of(top.item_ids)] @ vec, rtol=1e-5
    )
    assert 0 <= gate <= 1 and gate == pytest.approx(top.gate)
    with pytest.raises(ValueError, match="no known item"):
        rec.user_vector([999])


def test_explain_names_the_horizon_and_the_driving_events(rec, bundle):
    history = [103, 117, 999, 125, 130]
    ex = rec.explain(history, k=3)
    recs = rec.recommend(history, k=3)
    assert [i.item_id for i in ex.items] == recs.item_ids
    assert ex.gate == pytest.approx(recs.gate)
    assert ex.horizon == ("long-term" if ex.gate >= 0.5 else "short-term")
    assert [e.position for e in ex.events] == [0, 1, 3, 4] and ex.unknown_items == (999,)
    assert sum(e.attention for e in ex.events) == pytest.approx(1.0, abs=1e-5)
    assert [e.in_short_window for e in ex.events] == [False, True, True, True]  # window 3
    matrix = np.load(bundle / "items.npy")
    unit = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    first = ex.items[0]
    sims = {e.item_id: float(unit[first.item_id - 100] @ unit[e.item_id - 100]) for e in ex.events}
    best = max(sims, key=sims.get)
    assert first.drivers[0].item_id == best
    assert first.drivers[0].similarity == pytest.approx(sims[best], abs=1e-5)
    fallback = rec.explain([], k=2)
    assert fallback.horizon == "popularity" and fallback.gate is None and len(fallback.items) == 2


def test_add_items_makes_cold_items_recommendable(fresh):
    assert fresh.can_add_items
    before = fresh.n_items
    assert (
        fresh.add_items([900, "901"], ["space war story", "love comedy music"], titles=["A", None])
        == 2
    )
    assert fresh.n_items == before + 2 and 900 in fresh and 901 in fresh
    everything = fresh.recommend([101, 102], k=1000)
    assert {900, 901} <= set(everything.item_ids)
    assert next(r for r in everything if r.item_id == 900).title == "A"
    # a new item can be part of a history; its text vector feeds the user encoder
    assert fresh.recommend([900, 901], k=3).fallback is None
    # its vector is the text encoder's output (the score recomputes from user_vector)
    vec, _ = fresh.user_vector([101, 102])
    cold = next(r for r in everything if r.item_id == 901)
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(fresh.path / "tokenizer.json"))
    enc = tok.encode("love comedy music")
    sess = ort.InferenceSession(
        str(fresh.path / "text_encoder.onnx"), providers=["CPUExecutionProvider"]
    )
    ids = np.array([enc.ids])
    (item,) = sess.run(
        None,
        {
            "input_ids": ids,
            "attention_mask": np.ones_like(ids),
            "token_type_ids": np.zeros_like(ids),
        },
    )
    assert cold.score == pytest.approx(float(item[0] @ vec), rel=1e-4, abs=1e-5)


def test_add_items_validation(fresh):
    with pytest.raises(ValueError, match="already in the catalog: 101"):
        fresh.add_items([101], ["x"])
    with pytest.raises(ValueError, match="duplicates"):
        fresh.add_items([950, 950], ["x", "y"])
    with pytest.raises(ValueError, match="2 entries but texts has 1"):
        fresh.add_items([950, 951], ["x"])
    with pytest.raises(ValueError, match=r"texts\[0\] must be a str"):
        fresh.add_items([950], [None])
    with pytest.raises(ValueError, match=r"item_ids\[0\]"):
        fresh.add_items([1.5], ["x"])
    with pytest.raises(ValueError, match="not an int id"):
        fresh.add_items(["abc"], ["x"])
    assert fresh.add_items([], []) == 0
    assert 950 not in fresh


def test_remove_items(fresh):
    top = fresh.recommend([101, 102], k=3).item_ids
    assert fresh.remove_items([top[0], top[0]]) == 1
    assert top[0] not in fresh
    assert fresh.recommend([101, 102], k=2).item_ids == top[1:3]
    assert top[0] not in fresh.recommend([], k=1000).item_ids
    # a removed item still counts in a history (it was seen, and it has a vector)
    assert fresh.recommend([top[0]], k=3).fallback is None
    with pytest.raises(UnknownItemError, match="999"):
        fresh.remove_items([101, 999])
    assert 101 in fresh  # nothing removed when one id was unknown
    assert fresh.remove_items([top[0]]) == 0
    # removed ids can come back through add_items
    assert fresh.add_items([top[0]], ["drama night"]) == 1 and top[0] in fresh


def test_bundle_without_text_encoder_cannot_add(tmp_path):
    b = make_bundle(tmp_path / "notext", text=False)
    rec = Recommender.load(b, providers="cpu")
    assert not rec.can_add_items
    with pytest.raises(BundleError, match="no text encoder"):
        rec.add_items([900], ["x"])


def test_one_recommender_shared_by_threads_answers_like_serial_calls(rec):
    rng = np.random.default_rng(5)
    histories = [rng.integers(101, 141, rng.integers(0, 20)).tolist() for _ in range(200)]
    serial = [rec.recommend(h, k=5) for h in histories]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(lambda h: rec.recommend(h, k=5), histories * 3))
    for want, got in zip(serial * 3, parallel, strict=True):
        assert got.item_ids == want.item_ids
        assert [r.score for r in got] == [r.score for r in want]


def test_updates_concurrent_with_recommend_are_all_or_nothing(bundle, tmp_path):
    """Every answer during add/remove matches the catalog before or after an update."""
    rec = Recommender.load(bundle, providers="cpu", threads=1)
    history = [103, 117, 125]
    new_ids = list(range(2000, 2040))
    texts = ["space war story music night"] * len(new_ids)
    # precompute every state's answer serially on a twin recommender
    twin = Recommender.load(bundle, providers="cpu", threads=1)
    states = [tuple(twin.recommend(history, k=1000).item_ids)]
    for start in range(0, 40, 8):
        twin.add_items(new_ids[start : start + 8], texts[start : start + 8])
        states.append(tuple(twin.recommend(history, k=1000).item_ids))
        twin.remove_items([new_ids[start]])
        states.append(tuple(twin.recommend(history, k=1000).item_ids))
    allowed = set(states)
    stop = threading.Event()
    seen: list[tuple] = []

    def reader():
        while not stop.is_set():
            seen.append(tuple(rec.recommend(history, k=1000).item_ids))

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for start in range(0, 40, 8):
        rec.add_items(new_ids[start : start + 8], texts[start : start + 8])
        rec.remove_items([new_ids[start]])
    stop.set()
    for t in threads:
        t.join()
    assert seen and set(seen) <= allowed
    assert tuple(rec.recommend(history, k=1000).item_ids) == states[-1]


def test_recommendation_list_is_a_list_with_metadata(rec):
    got = rec.recommend([101, 999], k=2)
    assert isinstance(got, RecommendationList) and isinstance(got, list) and len(got) == 2
    d = got.to_dict()
    assert d["unknown_items"] == [999] and len(d["items"]) == 2 and "item_id" in d["items"][0]


def test_threads_and_scoring_arguments_are_checked(bundle):
    with pytest.raises(ValueError, match="threads"):
        Recommender.load(bundle, threads=-1)
    with pytest.raises(ValueError, match="scoring"):
        Recommender.load(bundle, scoring="gpu-magic")


def test_bundle_copied_elsewhere_still_loads(bundle, tmp_path):
    shutil.copytree(bundle, tmp_path / "copy")
    assert Recommender.load(tmp_path / "copy").n_items == N


def test_random_inputs_raise_only_documented_errors(rec):
    """A short fuzz (issue 7 runs the long one): any argument, only ValueError and
    UnknownItemError come out, and every answer is well-formed."""
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    scalar = st.one_of(
        st.integers(95, 145),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=True),
        st.text(max_size=4),
        st.none(),
        st.booleans(),
        st.builds(np.int64, st.integers(-(2**63), 2**63 - 1)),
    )
    seq = st.one_of(st.lists(scalar, max_size=25), scalar, st.sets(st.integers(), max_size=2))
    k = st.one_of(st.integers(-3, 60), st.none(), st.floats(), st.booleans())

    @hypothesis.settings(max_examples=150, deadline=None, database=None)
    @hypothesis.given(
        h=seq,
        k=k,
        b=st.one_of(st.none(), seq),
        t=st.one_of(st.none(), seq),
        c=st.one_of(st.none(), seq),
        strict=st.booleans(),
    )
    def check(h, k, b, t, c, strict):
        try:
            out = rec.recommend(h, k=k, behaviours=b, timestamps=t, candidates=c, strict=strict)
        except (ValueError, UnknownItemError) as e:
            assert str(e)
            return
        assert len(out) <= k and all(np.isfinite(r.score) for r in out)
        assert len(set(out.item_ids)) == len(out)

    check()


