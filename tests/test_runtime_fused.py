"""Scoring and top-k inside the user encoder's run: same answers as scoring them apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from runtime_helpers import (
    assert_same,
    assert_usual_path_answers_like_the_general_path,
    make_bundle,
    rehash,
)

from edgerec.runtime import Recommender
from edgerec.runtime import onnxproto as P
from edgerec.runtime import recommender as recommender_module
from edgerec.runtime.fused import (
    BIAS,
    MAX_FIXED_WIDTH,
    PREFIX,
    REQUEST,
    SPLIT_INPUTS,
    UP_TO_WINDOW,
    K,
    full_window_widths,
    fused_graph,
    fused_graphs,
    plan_width,
    ranked,
    widened,
)

N = 40  # items 101..140


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("fused") / "b", n_items=N, max_len=10)


def pair(bundle: Path) -> tuple[Recommender, Recommender]:
    fused = Recommender.load(bundle, providers="cpu", threads=1)
    apart = Recommender.load(bundle, providers="cpu", threads=1, fuse_topk=False)
    assert fused.fused_topk and not apart.fused_topk
    return fused, apart


def count_general_calls(rec: Recommender) -> list:
    """A list that gains an entry each time ``rec`` answers on the general path (its
    ``_prepare``); clear it before a request, then check it."""
    calls: list = []
    real_prepare = rec._prepare
    rec._prepare = lambda *a, **kw: calls.append(1) or real_prepare(*a, **kw)
    return calls


def test_fused_topk_answers_like_separate_scoring(bundle):
    fused, apart = pair(bundle)
    rng = np.random.default_rng(0)
    for _ in range(60):
        n = int(rng.integers(1, 25))  # longer than max_len too
        history = rng.integers(101, 101 + N, n).tolist()
        ts = np.sort(rng.integers(0, 10**7, n)).tolist()
        for k in (1, 7, N - n // 2, N + 5):  # also k beyond the eligible rows
            for exclude_seen in (True, False):
                kw = {"k": k, "exclude_seen": exclude_seen, "timestamps": ts}
                assert_same(fused.recommend(history, **kw), apart.recommend(history, **kw))


def test_the_graph_buckets_gaps_like_the_host_at_every_edge(bundle):
    """The fused graph counts gap buckets itself (``MARKED_BUCKET_EDGES``): gaps at and
    around every bucket edge, negative and huge gaps, unsorted and extreme timestamps,
    histories past max_len (the first event read is marked, not the first given) answer
    exactly like the host's ``gap_buckets`` in separate scoring."""
    fused, apart = pair(bundle)
    edges = [(1 << b) - 1 for b in range(1, 33)]
    gaps = sorted(
        {0, 1, 2, -1, -(10**12), 2**40, 2**61} | {e + d for e in edges for d in (-1, 0, 1)}
    )
    rng = np.random.default_rng(3)
    for start in range(0, len(gaps), 7):
        chunk = gaps[start : start + 13]
        ts = np.concatenate([[0], np.cumsum(chunk)]).tolist()
        history = rng.integers(101, 101 + N, len(ts)).tolist()
        for k in (3, N):
            for exclude_seen in (True, False):
                kw = {"k": k, "exclude_seen": exclude_seen, "timestamps": ts}
                assert_same(fused.recommend(history, **kw), apart.recommend(history, **kw))
                assert_same(fused.recommend(iter(history), **kw), apart.recommend(history, **kw))
    extreme = [-(2**62) + 1, 2**62 - 1, -(2**62) + 1, 0, 2**62 - 1]
    kw = {"k": 5, "timestamps": extreme}
    assert_same(
        fused.recommend([101, 102, 103, 104, 105], **kw),
        apart.recommend([101, 102, 103, 104, 105], **kw),
    )


def test_plan_width_keeps_lengths_in_the_window_and_rounds_longer_ones_to_powers_of_two():
    assert [plan_width(n, 10) for n in (1, 9, 10, 11, 16, 17, 100, 100_000)] == [
        1,
        9,
        10,
        16,
        16,
        32,
        128,
        131_072,
    ]
    a = np.arange(12, dtype=np.int64).reshape(4, 3)
    assert widened(a, 3) is a
    np.testing.assert_array_equal(widened(a, 5), np.hstack([np.zeros((4, 2), np.int64), a]))


def record_fused_runs(rec: Recommender) -> list[tuple[str, tuple[int, int]]]:
    """Wrap ``rec``'s fused runs to log (which session, REQUEST's shape) per run."""
    import dataclasses

    log: list[tuple[str, tuple[int, int]]] = []

    def logged(kind: str, real):
        def run(names, feeds):
            log.append((kind, feeds[REQUEST].shape))
            return real(names, feeds)

        return run

    rec._fused = dataclasses.replace(rec._fused, run=logged("dynamic", rec._fused.run))
    rec._fused_runs = {
        w: logged("fixed" if w >= rec.max_len else "short", run)
        for w, run in rec._fused_runs.items()
    }
    return log


def test_requests_past_the_window_take_few_distinct_widths_and_answer_alike(bundle):
    """Every distinct input shape leaves onnxruntime a memory plan for the session's
    life; histories longer than max_len (10 here) are fed at power-of-two widths, and
    those (and full windows) run on the session fixed to their width, shorter ones on
    the one session for widths below the window."""
    fused, apart = pair(bundle)
    assert sorted(fused._fused_runs) == [*range(1, 10), 10, 16, 32, 64, 128, 256, 512, 1024]
    assert len({fused._fused_runs[w] for w in range(1, 10)}) == 1
    log = record_fused_runs(fused)
    rng = np.random.default_rng(11)
    for n in range(1, 140):
        history = rng.integers(101, 101 + N, n).tolist()
        ts = np.sort(rng.integers(0, 10**7, n)).tolist()
        for h in (history, iter(history)):  # the usual path and the general one
            kw = {"k": 5, "timestamps": ts, "exclude_seen": bool(n % 2)}
            assert_same(fused.recommend(h, **kw), apart.recommend(history, **kw))
    widths = [shape for _, shape in log]
    assert {w for w in widths if w[1] > 10} == {(4, 16), (4, 32), (4, 64), (4, 128), (4, 256)}
    # the general path's array holds just the window when no rows are masked
    expected = [
        (4, w)
        for n in range(1, 140)
        for w in (plan_width(n, 10), plan_width(n, 10) if n % 2 else min(n, 10))
    ]
    assert widths == expected
    assert all(kind == ("fixed" if shape[1] >= 10 else "short") for kind, shape in log)


def test_tuples_and_numpy_arrays_take_the_usual_path_and_answer_alike(bundle):
    """A tuple or a 1-D array (ids, behaviours, timestamps) is read as the list the
    general path would make of it, so it takes the usual request's path: its request
    array is the whole history (the general path's holds just the window when nothing
    is masked)."""
    fused, apart = pair(bundle)
    log = record_fused_runs(fused)
    rng = np.random.default_rng(12)
    history = rng.integers(101, 101 + N, 14).tolist()
    ts = np.sort(rng.integers(0, 10**7, 14)).tolist()
    beh = ["1", "2", "3", "4", "5", "none", "1"] * 2
    kw = {"k": 5, "exclude_seen": False}
    want = apart.recommend(history, behaviours=beh, timestamps=ts, now=ts[-1] + 60, **kw)
    for kind in (tuple, np.array):
        got = fused.recommend(
            kind(history), behaviours=kind(beh), timestamps=kind(ts), now=ts[-1] + 60, **kw
        )
        assert_same(got, want)
    assert_same(fused.recommend(iter(history), **kw), apart.recommend(history, **kw))
    assert [shape for _, shape in log] == [(4, 16), (4, 16), (4, 10)]
    two_d = np.array([history])  # not a 1-D sequence: the general path refuses it
    with pytest.raises(ValueError, match="one-dimensional"):
        fused.recommend(two_d)


def test_histories_with_unknown_ids_take_the_usual_path_and_answer_alike(bundle):
    """Unknown ids are left out on the usual path too (after the lookup, with every
    argument checked over all events as the general path checks them): the answers,
    unknown_items, n_events and n_used equal the general path's and separate scoring's,
    the request gap runs from the last known event, and strict=True still raises."""
    from edgerec.errors import UnknownItemError

    fused, apart = pair(bundle)
    general_calls = count_general_calls(fused)
    rng = np.random.default_rng(13)
    vocab = list(fused.manifest.behaviour_vocab)
    strangers = [999, 10**9, -3, 0, 2**70]  # past the int list, negative, padding, huge
    for trial in range(120):
        n = int(rng.integers(1, 24))
        history = rng.integers(101, 101 + N, n).tolist()
        for pos in rng.choice(n, int(rng.integers(1, n + 1)), replace=False):
            history[pos] = strangers[int(rng.integers(0, len(strangers)))]
        if trial % 7 == 0:
            history[-1] = 999  # the last event unknown: the request gap from the one before
        kw = {"k": int(rng.choice([3, N + 5])), "exclude_seen": bool(trial % 2)}
        if trial % 3:
            kw["behaviours"] = [vocab[j] for j in rng.integers(0, len(vocab), n)]
        if trial % 4:
            kw["timestamps"] = (
                np.sort(rng.integers(-(10**6), 10**7, n)) + 0.5 * (trial % 8 == 1)
            ).tolist()
            kw["now"] = kw["timestamps"][-1] + int(rng.integers(0, 10**6))
        general_calls.clear()
        got = fused.recommend(history, **kw)
        # the usual path answered unless no event was known (the popularity fallback)
        assert bool(general_calls) == all(x in strangers for x in history)
        general = fused.recommend(
            iter(history),
            **{key: iter(v) if isinstance(v, list) else v for key, v in kw.items()},
        )
        want = apart.recommend(history, **kw)
        assert_same(got, want)
        assert_same(got, general)
        assert got.fallback == want.fallback and got.unknown_items == want.unknown_items
        assert got.unknown_items == tuple(x for x in history if x in strangers)
    with pytest.raises(UnknownItemError):
        fused.recommend([101, 999], strict=True)
    with pytest.raises(ValueError, match="behaviours"):  # checked at unknown events too
        fused.recommend([101, 999], behaviours=["1", {"bad": 1}])


def test_exclude_runs_fused_and_answers_like_separate_scoring(bundle):
    """A few excluded ids are dropped from a fused top-(k + their number) with the seen
    rows masked: the answers equal separate scoring's exclusion of the union, for k
    beyond the eligible rows too; many excluded ids, iterators and bad values take the
    general path (which checks the history first)."""
    from edgerec.runtime import recommender as R

    fused, apart = pair(bundle)
    general_calls = count_general_calls(fused)
    rng = np.random.default_rng(14)
    for trial in range(150):
        n = int(rng.integers(1, 20))
        history = rng.integers(101, 101 + N, n).tolist()
        exclude = rng.integers(95, 101 + N + 5, int(rng.integers(0, 12))).tolist()  # some unknown
        if trial % 5 == 0:
            exclude += history[:2]  # seen ones too
        kind = (list, tuple, np.array)[trial % 3]
        kw = {"k": int(rng.choice([1, 5, N, N + 5])), "exclude_seen": bool(trial % 2)}
        general_calls.clear()
        got = fused.recommend(history, exclude=kind(exclude), **kw)
        assert not general_calls  # answered fused
        assert_same(got, apart.recommend(history, exclude=exclude, **kw))
        assert not set(got.item_ids) & set(exclude)
    many = list(range(101, 101 + N))[: R.MAX_FUSED_EXCLUDED + 1]
    assert R.MAX_FUSED_EXCLUDED >= N  # the catalog is smaller than the cap: all can be excluded
    assert fused.recommend([101], exclude=many).item_ids == []
    general_calls.clear()
    assert_same(
        fused.recommend([101, 102], exclude=iter([103])), apart.recommend([101, 102], exclude=[103])
    )
    assert general_calls  # an iterator is read once, by the general path
    with pytest.raises(ValueError, match="history"):  # the history's error comes first
        fused.recommend([1.5], exclude="not a list")


def test_candidates_run_fused_and_answer_like_separate_scoring(tmp_path):
    """A candidates request runs fused with a row bias of its own (-inf outside the
    candidates, at excluded and removed rows): the answers equal separate scoring's
    ranking of the candidates -- unknown, repeated, removed, seen and excluded ids among
    them, k beyond the eligible rows -- and iterators and bad values take the general
    path (which checks the history first)."""
    b = make_bundle(tmp_path / "b", n_items=N, max_len=10)
    fused, apart = pair(b)
    for rec in (fused, apart):
        rec.remove_items([107, 131])
    general_calls = count_general_calls(fused)
    rng = np.random.default_rng(21)
    for trial in range(150):
        n = int(rng.integers(1, 20))
        history = rng.choice([i for i in range(101, 101 + N) if i not in (107, 131)], n).tolist()
        candidates = rng.integers(95, 101 + N + 5, int(rng.integers(0, 30))).tolist()
        candidates += [107, history[0]] if trial % 4 == 0 else []  # removed and seen ones
        exclude = rng.integers(101, 101 + N, int(rng.integers(0, 4))).tolist() or None
        kind = (list, tuple, np.array)[trial % 3]
        kw = {"k": int(rng.choice([1, 5, N + 5])), "exclude_seen": bool(trial % 2)}
        general_calls.clear()
        got = fused.recommend(
            history, candidates=kind(candidates), exclude=exclude and kind(exclude), **kw
        )
        assert not general_calls  # answered fused
        want = apart.recommend(history, candidates=candidates, exclude=exclude, **kw)
        assert_same(got, want)
        assert set(got.item_ids) <= set(candidates) - {107, 131} - set(exclude or ())
    general_calls.clear()
    assert_same(
        fused.recommend([101, 102], candidates=iter([103, 104])),
        apart.recommend([101, 102], candidates=[103, 104]),
    )
    assert general_calls  # an iterator is read once, by the general path
    assert fused.recommend([], candidates=[103, 104]).fallback == "popularity"
    with pytest.raises(ValueError, match="history"):  # the history's error comes first
        fused.recommend([1.5], candidates="not a list")
    with pytest.raises(ValueError, match="candidates"):
        fused.recommend([101], candidates=[None])


def test_more_excluded_ids_than_the_top_k_cap_run_fused_with_a_row_bias(bundle, monkeypatch):
    """Past ``MAX_FUSED_EXCLUDED`` (lowered here to 3) the excluded ids go in a row bias
    of the request's own instead of the general path; same answers."""
    from edgerec.runtime import recommender as R

    monkeypatch.setattr(R, "MAX_FUSED_EXCLUDED", 3)
    fused, apart = pair(bundle)
    general_calls = count_general_calls(fused)
    rng = np.random.default_rng(5)
    for trial in range(60):
        history = rng.integers(101, 101 + N, int(rng.integers(1, 20))).tolist()
        exclude = rng.integers(95, 101 + N + 5, int(rng.integers(4, 40))).tolist()
        kind = (list, tuple, np.array)[trial % 3]
        kw = {"k": int(rng.choice([1, 5, N + 5])), "exclude_seen": bool(trial % 2)}
        general_calls.clear()
        got = fused.recommend(history, exclude=kind(exclude), **kw)
        assert not general_calls  # answered fused
        assert_same(got, apart.recommend(history, exclude=exclude, **kw))
    assert fused.recommend([101], exclude=list(range(90, 200))).item_ids == []


def test_full_window_widths_are_the_window_and_the_power_of_two_widths_up_to_the_cap():
    assert full_window_widths(10) == (10, 16, 32, 64, 128, 256, 512, 1024)
    assert full_window_widths(50) == (50, 64, 128, 256, 512, 1024)
    assert full_window_widths(64) == (64, 128, 256, 512, 1024)
    assert full_window_widths(2000) == (2000,)
    for max_len in (10, 50, 64, 100):
        # every width plan_width gives a longer history, up to the cap
        past = {plan_width(n, max_len) for n in range(max_len + 1, 5000)}
        assert {w for w in past if w <= MAX_FIXED_WIDTH} == set(full_window_widths(max_len)[1:])


def test_fused_graph_with_a_width_fixes_the_request_columns(bundle):
    blob = (bundle / "user_encoder.onnx").read_bytes()
    assert P.scan_model(fused_graph(blob, 10, 16)).inputs[REQUEST] == P.TensorInfo(P.INT64, (4, 16))
    session = ort.InferenceSession(fused_graph(blob, 10, 10), providers=["CPUExecutionProvider"])
    assert {i.name: i.shape for i in session.get_inputs()}[REQUEST] == [4, 10]


def test_a_fixed_width_session_that_answers_differently_at_load_is_dropped(
    bundle, tmp_path, monkeypatch
):
    """The load-time check runs each fixed-width session against the dynamic one; here
    the 16-column one is built from another model's graph, so it must not be kept."""
    other = make_bundle(tmp_path / "other", n_items=N, max_len=10, seed=1) / "user_encoder.onnx"
    other_blob = other.read_bytes()
    real = recommender_module.fused_graphs

    def mixed(blob, max_len, widths):
        return real(blob, max_len, widths) | real(other_blob, max_len, [16])

    monkeypatch.setattr(recommender_module, "fused_graphs", mixed)
    fused = Recommender.load(bundle, providers="cpu", threads=1)
    apart = Recommender.load(bundle, providers="cpu", threads=1, fuse_topk=False)
    assert fused.fused_topk and 16 not in fused._fused_runs and 32 in fused._fused_runs
    history = list(range(101, 101 + 14))  # fed 16 columns wide: the dynamic session
    assert_same(fused.recommend(history, k=5), apart.recommend(history, k=5))


def test_graphs_whose_requests_fit_the_window_split_the_request_without_slicing(bundle):
    """Requests no wider than the window are read whole: one Split gives the four rows
    (two Slices fewer per run); the other graphs slice the latest max_len columns."""
    onnx = pytest.importorskip("onnx")
    blob = (bundle / "user_encoder.onnx").read_bytes()
    graphs = fused_graphs(blob, 10, [None, UP_TO_WINDOW, 10, 16])
    for width, graph in graphs.items():
        reads = [n for n in onnx.load_from_string(graph).graph.node if REQUEST in n.input]
        if width in (UP_TO_WINDOW, 10):
            assert [n.op_type for n in reads] == ["Split"] and len(reads[0].output) == 4
        else:
            assert sorted(n.op_type for n in reads) == ["Slice", "Slice"]


def test_a_short_request_session_that_answers_differently_at_load_is_dropped(
    bundle, tmp_path, monkeypatch
):
    other = make_bundle(tmp_path / "other", n_items=N, max_len=10, seed=1) / "user_encoder.onnx"
    other_blob = other.read_bytes()
    real = recommender_module.fused_graphs

    def mixed(blob, max_len, widths):
        return real(blob, max_len, widths) | real(other_blob, max_len, [UP_TO_WINDOW])

    monkeypatch.setattr(recommender_module, "fused_graphs", mixed)
    fused = Recommender.load(bundle, providers="cpu", threads=1)
    apart = Recommender.load(bundle, providers="cpu", threads=1, fuse_topk=False)
    assert fused.fused_topk and sorted(fused._fused_runs)[0] == 10
    log = record_fused_runs(fused)
    history = list(range(101, 101 + 6))
    assert_same(fused.recommend(history, k=5), apart.recommend(history, k=5))
    assert log == [("dynamic", (4, 6))]


def test_a_fixed_width_session_that_cannot_load_is_left_out(bundle, monkeypatch):
    real = recommender_module.fused_graphs

    def broken(blob, max_len, widths):
        return real(blob, max_len, widths) | {32: b"not a model"}

    monkeypatch.setattr(recommender_module, "fused_graphs", broken)
    fused = Recommender.load(bundle, providers="cpu", threads=1)
    assert fused.fused_topk and 32 not in fused._fused_runs and 16 in fused._fused_runs


def test_fused_topk_never_returns_seen_padding_or_removed_items(bundle):
    fused, apart = pair(bundle)
    history = [101, 105, 105, 130]
    removed = [102, 110, 139]
    for rec in (fused, apart):
        rec.remove_items(removed)
    got = fused.recommend(history, k=N)
    assert len(got) == N - 3 - 3  # 3 distinct seen, 3 removed
    assert not set(got.item_ids) & (set(history) | set(removed) | {None})
    assert_same(got, apart.recommend(history, k=N))


def test_fused_topk_follows_added_items(bundle):
    fused, apart = pair(bundle)
    texts = ["a new item", "another one", "third"]
    for rec in (fused, apart):
        rec.add_items([501, 502, 503], texts)
    history = [101, 120, 133]
    got = fused.recommend(history, k=N + 3)
    assert {501, 502, 503} <= set(got.item_ids) and len(got) == N
    assert_same(got, apart.recommend(history, k=N + 3))
    fused.remove_items([502])
    assert 502 not in fused.recommend(history, k=N + 3).item_ids


def test_fused_topk_breaks_ties_by_the_lower_row(tmp_path):
    b = make_bundle(tmp_path / "tied", n_items=N, max_len=10)
    m = np.load(b / "items.npy")
    m[10:30] = m[9]  # rows 9..29 (items 109..129) score exactly alike
    np.save(b / "items.npy", m)
    rehash(b)
    fused, apart = pair(b)
    for history in ([101, 140], [109], [135, 136, 137]):
        for k in (3, 12, 25, N):
            got, want = fused.recommend(history, k=k), apart.recommend(history, k=k)
            assert_same(got, want)
            tied = [i for i in got.item_ids if 109 <= i <= 129]
            assert tied == sorted(tied)


def test_fused_topk_only_where_numpy_scoring_is_used(bundle, tmp_path):
    assert Recommender.load(bundle, providers="cpu", scoring="numpy").fused_topk
    assert not Recommender.load(bundle, providers="cpu", scoring="int8").fused_topk
    initializer = make_bundle(tmp_path / "init", n_items=N, table="initializer")
    assert not Recommender.load(initializer, providers="cpu").fused_topk
    with pytest.raises(ValueError, match="fuse_topk must be True or False"):
        Recommender.load(bundle, providers="cpu", fuse_topk="yes")


def test_fused_graph_refuses_a_graph_that_already_uses_its_names(bundle):
    blob = (bundle / "user_encoder.onnx").read_bytes()
    assert fused_graph(blob, 10) is not None
    taken = P.extend_graph(
        blob,
        [P.node("Identity", ["user"], [PREFIX + "values"])],
        [],
        [P.value_info(PREFIX + "values", P.FLOAT, None)],
    )
    assert fused_graph(taken, 10) is None


def test_fused_graph_declares_one_request_input_in_place_of_the_history_inputs(bundle):
    blob = (bundle / "user_encoder.onnx").read_bytes()
    before = P.scan_model(blob)
    after = P.scan_model(fused_graph(blob, 10))
    assert set(SPLIT_INPUTS) <= before.inputs.keys()
    assert not set(SPLIT_INPUTS) & after.inputs.keys()
    assert after.inputs.keys() == before.inputs.keys() - set(SPLIT_INPUTS) | {REQUEST, BIAS, K}
    assert after.inputs[REQUEST] == P.TensorInfo(P.INT64, (4, "n_events"))
    assert after.initializer_names >= before.initializer_names


@pytest.mark.parametrize(
    ("opset", "lengths_type", "fused"),
    [(17, P.INT64, True), (14, P.INT64, False), (17, P.INT32, False)],
)
def test_fused_graph_needs_opset_15_and_int64_history_inputs(opset, lengths_type, fused):
    types = dict.fromkeys(SPLIT_INPUTS, P.INT64) | {"lengths": lengths_type}
    graph = P.model(
        [P.node("Identity", ["items"], ["user"])],
        [P.value_info(n, t, None) for n, t in types.items()],
        [P.value_info("user", P.INT64, None)],
        opsets={"": opset},
    )
    assert (fused_graph(graph, 10) is not None) is fused


def test_without_inputs_drops_only_the_named_graph_inputs():
    base = P.model(
        [P.node("Add", ["x", "y"], ["z"])],
        [P.value_info(n, P.FLOAT, [2]) for n in ("x", "y", "w")],
        [P.value_info("z", P.FLOAT, [2])],
        initializers=[P.tensor("y", np.ones(2, np.float32))],
        opsets={"": 17},
    )
    out = P.without_inputs(base, {"y", "w", "absent"})
    summary = P.scan_model(out)
    assert summary.inputs.keys() == {"x"}
    assert summary.initializer_names == {"y"} and summary.opsets == {"": 17}
    assert summary.outputs.keys() == {"z"}
    sess = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    x = np.array([1.0, 2.0], np.float32)
    np.testing.assert_array_equal(sess.run(["z"], {"x": x})[0], x + 1)
    assert P.without_inputs(base, set()) == base  # nothing dropped: the same bytes


def test_extend_graph_adds_nodes_and_outputs_that_onnxruntime_runs():
    base = P.model(
        [P.node("Identity", ["x"], ["y"])],
        [P.value_info("x", P.FLOAT, [2])],
        [P.value_info("y", P.FLOAT, [2])],
    )
    extended = P.extend_graph(
        base,
        [P.node("Add", ["y", "b"], ["z"])],
        [P.value_info("b", P.FLOAT, [2])],
        [P.value_info("z", P.FLOAT, [2])],
        initializers=[],
    )
    sess = ort.InferenceSession(extended, providers=["CPUExecutionProvider"])
    x, b = np.array([1.0, 2.0], np.float32), np.array([10.0, 20.0], np.float32)
    y, z = sess.run(["y", "z"], {"x": x, "b": b})
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(z, x + b)
    assert P.scan_model(extended).inputs.keys() == {"x", "b"}


def test_ranked_sorts_ties_by_row_and_drops_ineligible_rows():
    values = np.array([[3.0, 2.0, 2.0, 2.0, -np.inf, -np.inf]], np.float32)
    indices = np.array([[7, 9, 4, 6, 0, 2]], np.int64)
    assert ranked(values, indices) == ([7, 4, 6, 9], [3.0, 2.0, 2.0, 2.0])
    # untied scores keep TopK's order; a k past every eligible row returns none of them
    untied = np.array([[5.5, 1.25, -np.inf]], np.float32), np.array([[3, 1, 0]], np.int64)
    assert ranked(*untied) == ([3, 1], [5.5, 1.25])
    nothing = np.full((1, 2), -np.inf, np.float32), np.array([[0, 5]], np.int64)
    assert ranked(*nothing) == ([], [])


def test_a_catalog_grown_past_the_fused_limit_scores_apart(bundle, monkeypatch):
    import edgerec.runtime.recommender as R

    monkeypatch.setattr(R, "MAX_FUSED_ROWS", N + 3)  # 41 rows now (padding + 40 items)
    fused, apart = pair(bundle)
    assert fused._state_ref.bias is not None
    for rec in (fused, apart):
        rec.add_items([601, 602, 603, 604], ["one", "two", "three", "four"])
    assert fused._state_ref.bias is None  # 45 rows: the numpy scorer ranks them
    history = [101, 120]
    assert_same(fused.recommend(history, k=N), apart.recommend(history, k=N))
    for rec in (fused, apart):
        rec.remove_items([601, 602])
    got = fused.recommend(history, k=N + 4)
    assert not {601, 602} & set(got.item_ids)
    assert_same(got, apart.recommend(history, k=N + 4))


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_a_non_finite_user_vector_raises_instead_of_ranking_its_scores(bundle, bad):
    """A graph that yields a non-finite user vector (corrupted weights) must raise, fused
    or not. onnxruntime's activations absorb non-finite inputs, so the vector is spoiled
    after the run, and the fused scores are recomputed from it as the graph would."""
    import dataclasses

    from edgerec.errors import EdgerecError

    fused, apart = pair(bundle)

    def spoil_fused(real):
        def run(names, feeds):
            values, indices, user, gate = real(names, feeds)
            user = user.copy()
            user[0, 1] = bad
            with np.errstate(invalid="ignore"):
                scores = user @ feeds["item_table"].T + feeds[BIAS]
            scores[0, feeds[REQUEST][3]] = -np.inf
            top = np.argsort(-scores[0], kind="stable")[: int(feeds[K][0])]
            return scores[:, top], top[None, :], user, gate

        return run

    def spoil_apart(real):
        def run(names, feeds):
            user, *rest = real(names, feeds)
            user = user.copy()
            user[:, 1] = bad
            return [user, *rest]

        return run

    fused._fused = dataclasses.replace(fused._fused, run=spoil_fused(fused._fused.run))
    fused._fused_runs = {w: spoil_fused(run) for w, run in fused._fused_runs.items()}
    apart._user_main = dataclasses.replace(apart._user_main, run=spoil_apart(apart._user_main.run))
    for rec in (fused, apart):
        for k in (1, 5, N):
            with pytest.raises(EdgerecError, match="non-finite user vectors"):
                rec.recommend([101, 103], k=k)


def test_the_usual_request_path_answers_like_the_general_path(bundle):
    fused, apart = pair(bundle)
    assert_usual_path_answers_like_the_general_path(fused, apart, list(range(101, 101 + N)), 240)


@pytest.mark.parametrize("behaviours", [[[4], [5]], [{"a": 1}, "4"], ["4", bytearray(b"4")]])
def test_unhashable_behaviours_are_a_value_error_naming_them_on_every_path(bundle, behaviours):
    for rec in pair(bundle):
        with pytest.raises(ValueError, match="behaviours"):
            rec.recommend([101, 102], behaviours=behaviours)


def test_fused_sessions_run_without_the_memory_arena_and_batch_sessions_with_it(bundle):
    """One-history runs allocate a few KB per tensor, cheaper from the C allocator than
    from onnxruntime's locked arena; batches keep the arena (their tensors grow large)."""
    fused, _ = pair(bundle)
    assert fused._fused.session.get_session_options().enable_cpu_mem_arena is False
    assert fused._user_main.session.get_session_options().enable_cpu_mem_arena is True
    history = list(range(101, 121))
    assert fused.recommend(history, k=5) == fused.recommend(history, k=5)
