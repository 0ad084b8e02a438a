"""Top-k, the large-catalog and device scorers, the external-data check and catalog
snapshots, against brute force on random catalogs."""

from __future__ import annotations

import numpy as np
import pytest

from edgerec.runtime.catalog import Catalog
from edgerec.runtime.onnxcheck import ProtoError, external_tensors
from edgerec.runtime.providers import CPU, create_session
from edgerec.runtime.scoring import DeviceScorer, Int8Scorer, top_k

onnx = pytest.importorskip("onnx")  # the scoring graphs come from the export's builders


def int8_scorer(cat: Catalog) -> Int8Scorer:
    """The scorer over the bundle's shortlist graph, built as export writes it."""
    from edgerec.export.serving import shortlist_graph

    graph = shortlist_graph(cat.dim, 18).SerializeToString()
    return Int8Scorer(cat, lambda inits: create_session(graph, "shortlist", [CPU], 1, inits))


def device_scorer(cat: Catalog, fp16: bool) -> DeviceScorer:
    from edgerec.export.serving import topk_graph

    graph = topk_graph(cat.dim, 18, fp16=fp16).SerializeToString()
    return DeviceScorer(cat, create_session(graph, "topk", [CPU], 1), "cpu")


def excluded_matrix(excl: list[np.ndarray]) -> np.ndarray:
    """Rows to exclude per user as the graphs take them: padded with row 0."""
    out = np.zeros((len(excl), max([len(e) for e in excl] + [1])), np.int64)
    for j, e in enumerate(excl):
        out[j, : len(e)] = e
    return out


def brute_top(scores: np.ndarray, k: int, banned) -> list[int]:
    """Reference: sort eligible rows by (-score, row)."""
    rows = [r for r in range(len(scores)) if r not in banned and np.isfinite(scores[r])]
    rows.sort(key=lambda r: (-scores[r], r))
    return rows[:k]


def catalog(n: int = 300, dim: int = 16, seed: int = 0, dtype=np.float32) -> Catalog:
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((n + 1, dim)).astype(np.float32)
    m[0] = 0
    scale = None
    if dtype == np.int8:
        peak = np.abs(m).max(1)
        scale = np.where(peak > 0, peak / 127, 1).astype(np.float32)
        m = np.clip(np.rint(m / scale[:, None]), -127, 127).astype(np.int8)
    else:
        m = m.astype(dtype)
    pop = rng.integers(0, 50, n + 1).astype(np.float32)
    return Catalog.create(
        m, scale, list(range(1000, 1000 + n)), [f"t{i}" for i in range(n)], pop, "int"
    )


@pytest.mark.parametrize("n", [5, 1000, 70_000, 70_001])
@pytest.mark.parametrize("k", [1, 10, 37])
def test_top_k_matches_full_sort_with_ties_and_masked_rows(n, k):
    rng = np.random.default_rng(n + k)
    s = rng.integers(0, 50, n).astype(np.float32)  # many ties
    s[rng.choice(n, n // 3, replace=False)] = -np.inf
    k = min(k, int(np.isfinite(s).sum()))
    got = top_k(s, k).tolist()
    assert got == brute_top(s, k, set())


def test_top_k_threshold_path_on_a_million_distinct_scores():
    s = np.random.default_rng(1).standard_normal(1_000_000).astype(np.float32)
    assert top_k(s, 10).tolist() == np.argsort(-s, kind="stable")[:10].tolist()


def excluded_sets(cat: Catalog, n_users: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.unique(rng.integers(1, cat.n_rows, rng.integers(0, 30))) for _ in range(n_users)]


def check_against_brute(cat, scorer, users, excl, k, exact_matrix):
    results = scorer.topk(users, k, cat.bias, excluded_matrix(excl))
    for u, ex, (rows, scores) in zip(users, excl, results, strict=True):
        full = exact_matrix @ u
        banned = set(ex.tolist()) | set(cat.inactive.tolist())
        want = brute_top(full, k, banned)
        assert rows.tolist() == want
        np.testing.assert_allclose(scores, full[want], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k", [1, 3, 10, 290, 400])
@pytest.mark.parametrize("make", ["int8", "device"])
def test_scorers_break_ties_by_row_like_brute_force(k, make):
    """Many exactly tied scores (duplicated item vectors), ties straddling the k-th place,
    rows excluded per user, k beyond what is eligible; a batch answers like single calls."""
    rng = np.random.default_rng(5)
    # small integers: every dot product is exact in float32 whatever the summation
    # order, so tied items really score the same
    base = rng.integers(-3, 4, (12, 16)).astype(np.float32)
    m = base[rng.integers(0, 12, 301)]  # 300 items sharing 12 distinct vectors
    m[0] = 0
    cat = Catalog.create(
        m, None, list(range(300)), [None] * 300, np.zeros(301, np.float32), "int"
    ).deactivate(np.array([4, 8]))
    scorer = int8_scorer(cat) if make == "int8" else device_scorer(cat, fp16=False)
    users = rng.integers(-3, 4, (9, 16)).astype(np.float32)
    excl = excluded_sets(cat, 9, 8)
    check_against_brute(cat, scorer, users, excl, k, cat.matrix)
    singles = [
        scorer.topk(u[None, :], k, cat.bias, excluded_matrix([e]))[0]
        for u, e in zip(users, excl, strict=True)
    ]
    batch = scorer.topk(users, k, cat.bias, excluded_matrix(excl))
    assert [r.tolist() for r, _ in batch] == [r.tolist() for r, _ in singles]


@pytest.mark.parametrize("dtype", [np.int8, np.float32, np.float16])
@pytest.mark.parametrize("k", [1, 10, 400])
def test_int8_scorer_is_exact_whatever_the_stored_dtype(k, dtype):
    cat = catalog(n=3000, dtype=dtype).deactivate(np.array([5, 6, 7]))
    exact = cat.vectors(np.arange(cat.n_rows))
    users = np.random.default_rng(2).standard_normal((8, 16)).astype(np.float32)
    users[0] *= 40  # a long user vector: large quantization steps
    scorer = int8_scorer(cat)
    check_against_brute(cat, scorer, users, excluded_sets(cat, 8, 3), k, exact)


def test_int8_scorer_exact_on_a_catalog_large_enough_for_block_maxima():
    cat = catalog(n=140_000, dim=8, seed=6).deactivate(np.arange(1, 5000))
    users = np.random.default_rng(3).standard_normal((3, 8)).astype(np.float32)
    excl = excluded_sets(cat, 3, 4)
    scorer = int8_scorer(cat)
    check_against_brute(cat, scorer, users, excl, 10, cat.matrix)


@pytest.mark.parametrize("dim", [32, 24, 64])
def test_int8_shortlist_error_never_exceeds_its_bound(dim):
    cat = catalog(n=5000, dim=dim, seed=4)
    scorer = int8_scorer(cat)
    exact = cat.vectors(np.arange(cat.n_rows))
    rng = np.random.default_rng(9)
    for scale in (0.01, 1.0, 100.0):
        users = (rng.standard_normal((4, dim)) * scale).astype(np.float32)
        users[0, : dim // 2] *= 50  # a batch mate with a far wider range
        scores, steps = scorer.shortlist(users)
        approx = scores * steps[:, None]
        for u, a in zip(users, approx, strict=True):
            err = np.abs(a - exact @ u).max()
            assert err <= scorer.error_bound(u)
        # and the bound is useful: well below the scores
        u = users[1]
        assert scorer.error_bound(u) < 0.2 * np.abs(exact @ u).max()


def test_int8_scorer_with_ties_matches_brute_force():
    cat = catalog(n=2000)
    m = np.array(cat.matrix)
    m[100:140] = m[50]  # 41 identical rows: scores tie exactly
    tied = Catalog.create(m, None, list(range(2000)), [None] * 2000, cat.popularity, "int")
    u = m[50][None, :].copy()
    scorer = int8_scorer(tied)
    check_against_brute(tied, scorer, u, [np.zeros(0, np.int64)], 20, m)


def test_int8_batch_with_one_long_user_vector_still_gives_exact_top_k_to_the_others():
    """Users are quantized one by one: a long batch mate must not cost the others."""
    cat = catalog(n=20_000, dim=16, seed=11)
    users = np.random.default_rng(5).standard_normal((4, 16)).astype(np.float32) * 0.05
    users[0] *= 400
    excl = [np.zeros(0, np.int64)] * 4
    scorer = int8_scorer(cat)
    check_against_brute(cat, scorer, users, excl, 10, cat.matrix)
    together, _ = scorer.shortlist(users)
    alone, _ = scorer.shortlist(users[1:2])
    np.testing.assert_array_equal(together[1], alone[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_device_scorer_with_io_binding_on_cpu(dtype):
    """The CUDA path's code, run on the CPU provider: same answers as brute force."""
    cat = catalog(dtype=dtype).deactivate(np.array([9]))
    exact = cat.matrix.astype(np.float32)
    users = np.random.default_rng(4).standard_normal((5, 16)).astype(np.float32)
    scorer = device_scorer(cat, fp16=dtype == np.float16)
    results = scorer.topk(users, 10, cat.bias, excluded_matrix(excluded_sets(cat, 5, 5)))
    for u, ex, (rows, _) in zip(users, excluded_sets(cat, 5, 5), results, strict=True):
        full = exact @ u
        want = brute_top(full, 10, set(ex.tolist()) | {0, 9})
        if dtype == np.float32:
            assert rows.tolist() == want
        else:  # float16 arithmetic may swap near-ties
            assert len(set(rows.tolist()) & set(want)) >= 8


def test_scorers_follow_catalog_updates():
    cat = catalog(dtype=np.int8)
    rng = np.random.default_rng(7)
    scorer = int8_scorer(cat)
    new = rng.standard_normal((3, 16)).astype(np.float32) * 5  # strong new items
    cat2 = cat.append(new, [1, 2, 3], ["a", "b", "c"])
    s2 = scorer.with_catalog(cat2)
    assert s2.n_base == cat.n_rows  # the prepacked session is reused for a few new rows
    u = new[1][None, :]
    none = np.zeros((1, 1), np.int64)
    rows, _ = s2.topk(u, 1, cat2.bias, none)[0]
    assert cat2.ids[rows[0]] == 2
    cat3 = cat2.deactivate(rows)
    rows3, _ = s2.with_catalog(cat3).topk(u, 1, cat3.bias, none)[0]
    assert rows3[0] != rows[0]


def test_catalog_snapshots_never_change_after_publication():
    cat = catalog(n=20, dim=4)
    before = cat.matrix.copy(), cat.ids.copy(), cat.active.copy()
    rng = np.random.default_rng(0)
    c2 = cat.append(rng.standard_normal((2, 4)).astype(np.float32), [1, 2], [None, None])
    c3 = c2.append(rng.standard_normal((3, 4)).astype(np.float32), [3, 4, 5], [None] * 3)
    c4 = c3.deactivate(np.array([1, 21]))
    for arr, old in zip((cat.matrix, cat.ids, cat.active), before, strict=True):
        assert np.array_equal(arr, old)
    assert c2.n_rows == 23 and c3.n_rows == 26 and c2.index.get(3) is None
    assert c3.index.get(1) == 21 and c3.active[21] and not c4.active[21]
    assert cat.index.get(1) is None
    with pytest.raises(ValueError):
        c4.matrix[1, 0] = 1.0  # read-only views


def test_external_data_is_found_in_nested_subgraphs(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    inner_const = numpy_helper.from_array(np.ones(4, np.float32), "c")
    inner_const.data_location = TensorProto.EXTERNAL
    entry = inner_const.external_data.add()
    entry.key, entry.value = "location", "../../secret.bin"
    inner_const.ClearField("raw_data")
    then = helper.make_graph(
        [helper.make_node("Constant", [], ["y"], value=inner_const)],
        "then",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
    )
    other = helper.make_graph(
        [
            helper.make_node(
                "Constant", [], ["y"], value=numpy_helper.from_array(np.zeros(4, np.float32))
            )
        ],
        "else",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
    )
    g = helper.make_graph(
        [helper.make_node("If", ["cond"], ["out"], then_branch=then, else_branch=other)],
        "main",
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [4])],
    )
    data = helper.make_model(g).SerializeToString()
    assert external_tensors(data) == ["c"]
    clean = helper.make_model(
        helper.make_graph(
            [helper.make_node("If", ["cond"], ["out"], then_branch=other, else_branch=other)],
            "main",
            [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
            [helper.make_tensor_value_info("out", TensorProto.FLOAT, [4])],
        )
    ).SerializeToString()
    assert external_tensors(clean) == []


@pytest.mark.parametrize("garbage", [b"", b"\xff" * 20, b"\x0a\x80", b"\x3a\x05abc"])
def test_the_external_data_check_rejects_garbage(garbage):
    with pytest.raises(ProtoError):
        external_tensors(garbage)


def test_added_items_are_found_before_and_after_the_index_folds():
    cat = catalog(n=20, dim=4)
    rng = np.random.default_rng(0)
    grown = cat.append(rng.standard_normal((2, 4)).astype(np.float32), [7, 1005], ["x", "y"])
    assert grown.index.delta  # a delta: its ids resolve through the dicts
    assert [grown.index.get(x) for x in (7, 1005, 1001)] == [21, 22, 2]
    n_new = 5000  # enough new ids to fold the delta into a new base
    new_ids = list(range(5000, 5000 + n_new))
    folded = grown.append(np.zeros((n_new, 4), np.float32), new_ids, [None] * n_new)
    assert not folded.index.delta
    got = [folded.index.get(x) for x in (7, 1005, 5000, new_ids[-1])]
    assert got == [21, 22, 23, 22 + n_new]
    assert folded.index.get(4999) is None


def test_catalog_labels_are_lists_for_small_catalogs_and_follow_updates():
    cat = catalog(n=20, dim=4)
    ids, titles = cat.labels
    assert type(ids) is list and ids == cat.ids.tolist() and titles == cat.titles.tolist()
    grown = cat.append(np.ones((1, 4), np.float32), [7], ["new"])
    assert grown.labels[0][-1] == 7 and grown.labels[1][-1] == "new" and len(cat.labels[0]) == 21
