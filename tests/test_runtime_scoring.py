"""Top-k, the three scorers and catalog snapshots, against brute force on random catalogs."""

from __future__ import annotations

import numpy as np
import pytest

from edgerec.runtime import onnxproto as P
from edgerec.runtime.catalog import Catalog
from edgerec.runtime.providers import CPU
from edgerec.runtime.scoring import Int8Scorer, NumpyScorer, OrtTopKScorer, top_k


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


def check_against_brute(cat: Catalog, scorer, users, excl, k, exact_matrix):
    results = scorer.topk(users, k, excl)
    for u, ex, (rows, scores) in zip(users, excl, results, strict=True):
        full = exact_matrix @ u
        banned = set(ex.tolist()) | set(cat.inactive.tolist())
        want = brute_top(full, k, banned)
        assert rows.tolist() == want
        np.testing.assert_allclose(scores, full[want], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k", [1, 10, 400])
def test_numpy_scorer_exact(k):
    cat = catalog().deactivate(np.array([5, 6, 7]))
    users = np.random.default_rng(2).standard_normal((6, 16)).astype(np.float32)
    check_against_brute(cat, NumpyScorer(cat), users, excluded_sets(cat, 6, 3), k, cat.matrix)


@pytest.mark.parametrize("k", [1, 3, 10, 290, 400])
def test_numpy_scorer_batch_breaks_ties_by_row_like_brute_force(k):
    """The vectorised batch path: many exactly tied scores (duplicated item vectors),
    ties straddling the k-th place, rows excluded per user, k beyond what is eligible."""
    rng = np.random.default_rng(5)
    # small integers: every dot product is exact in float32 whatever the BLAS summation
    # order, so tied items really score the same
    base = rng.integers(-3, 4, (12, 16)).astype(np.float32)
    m = base[rng.integers(0, 12, 301)]  # 300 items sharing 12 distinct vectors
    m[0] = 0
    cat = Catalog.create(
        m, None, list(range(300)), [None] * 300, np.zeros(301, np.float32), "int"
    ).deactivate(np.array([4, 8]))
    users = rng.integers(-3, 4, (9, 16)).astype(np.float32)
    excl = excluded_sets(cat, 9, 8)
    check_against_brute(cat, NumpyScorer(cat), users, excl, k, cat.matrix)
    singles = [
        NumpyScorer(cat).topk(u[None, :], k, [e])[0] for u, e in zip(users, excl, strict=True)
    ]
    batch = NumpyScorer(cat).topk(users, k, excl)
    assert [r.tolist() for r, _ in batch] == [r.tolist() for r, _ in singles]


@pytest.mark.parametrize("dtype", [np.int8, np.float32, np.float16])
@pytest.mark.parametrize("k", [1, 10, 400])
def test_int8_scorer_is_exact_whatever_the_stored_dtype(k, dtype):
    cat = catalog(n=3000, dtype=dtype).deactivate(np.array([5, 6, 7]))
    exact = cat.vectors(np.arange(cat.n_rows))
    users = np.random.default_rng(2).standard_normal((8, 16)).astype(np.float32)
    users[0] *= 40  # a long user vector: large quantization steps
    scorer = Int8Scorer(cat, threads=1)
    check_against_brute(cat, scorer, users, excluded_sets(cat, 8, 3), k, exact)


def test_int8_scorer_exact_on_a_catalog_large_enough_for_block_maxima():
    cat = catalog(n=140_000, dim=8, seed=6).deactivate(np.arange(1, 5000))
    users = np.random.default_rng(3).standard_normal((3, 8)).astype(np.float32)
    excl = excluded_sets(cat, 3, 4)
    scorer = Int8Scorer(cat, threads=1)
    check_against_brute(cat, scorer, users, excl, 10, cat.matrix)


@pytest.mark.parametrize("dim", [32, 24, 64])
def test_int8_shortlist_error_never_exceeds_its_bound(dim):
    cat = catalog(n=5000, dim=dim, seed=4)
    scorer = Int8Scorer(cat, threads=1)
    exact = cat.vectors(np.arange(cat.n_rows))
    rng = np.random.default_rng(9)
    for scale in (0.01, 1.0, 100.0):
        users = (rng.standard_normal((4, dim)) * scale).astype(np.float32)
        users[0, : dim // 2] *= 50  # a batch mate with a far wider range
        approx = scorer._approx(users)
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
    scorer = Int8Scorer(tied, threads=1)
    check_against_brute(tied, scorer, u, [np.zeros(0, np.int64)], 20, m)


def test_int8_batch_with_one_long_user_vector_still_gives_exact_top_k_to_the_others():
    """Users are quantized one by one: a long batch mate must not cost the others."""
    cat = catalog(n=20_000, dim=16, seed=11)
    users = np.random.default_rng(5).standard_normal((4, 16)).astype(np.float32) * 0.05
    users[0] *= 400
    excl = [np.zeros(0, np.int64)] * 4
    scorer = Int8Scorer(cat, threads=1)
    check_against_brute(cat, scorer, users, excl, 10, cat.matrix)
    together, _ = scorer._shortlist(users)
    alone, _ = scorer._shortlist(users[1:2])
    np.testing.assert_array_equal(together[1], alone[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_ort_topk_scorer_with_io_binding_on_cpu(dtype):
    """The CUDA path's code, run on the CPU provider: same answers as brute force."""
    cat = catalog(dtype=dtype).deactivate(np.array([9]))
    exact = cat.matrix.astype(np.float32)
    users = np.random.default_rng(4).standard_normal((5, 16)).astype(np.float32)
    scorer = OrtTopKScorer(cat, [CPU], 1, "cpu")
    results = scorer.topk(users, 10, excluded_sets(cat, 5, 5))
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
    scorer = Int8Scorer(cat, threads=1)
    new = rng.standard_normal((3, 16)).astype(np.float32) * 5  # strong new items
    cat2 = cat.append(new, [1, 2, 3], ["a", "b", "c"])
    s2 = scorer.with_catalog(cat2)
    assert s2.n_base == cat.n_rows  # the prepacked session is reused for a few new rows
    u = new[1][None, :]
    rows, _ = s2.topk(u, 1, [np.zeros(0, np.int64)])[0]
    assert cat2.ids[rows[0]] == 2
    cat3 = cat2.deactivate(rows)
    rows3, _ = s2.with_catalog(cat3).topk(u, 1, [np.zeros(0, np.int64)])[0]
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


def test_onnxproto_writes_models_onnx_accepts():
    onnx = pytest.importorskip("onnx")
    graph = P.model(
        [P.node("Gemm", ["a", "w", "b"], ["y"], transB=1, alpha=0.5)],
        [P.value_info("a", P.FLOAT, ["n", 3])],
        [P.value_info("y", P.FLOAT, ["n", 2])],
        initializers=[
            P.tensor("w", np.arange(6, dtype=np.float32).reshape(2, 3)),
            P.tensor("b", np.array([1, -1], np.float32)),
        ],
    )
    onnx.checker.check_model(onnx.load_from_string(graph), full_check=True)
    import onnxruntime as ort

    y = ort.InferenceSession(graph, providers=[CPU]).run(None, {"a": np.ones((1, 3), np.float32)})
    np.testing.assert_allclose(y[0], [[0.5 * 3 + 1, 0.5 * 12 - 1]])


def test_onnxproto_finds_external_data_in_nested_subgraphs(tmp_path):
    pytest.importorskip("onnx")
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
    assert P.scan_model(data).external_tensors == ["c"]
    clean = helper.make_model(
        helper.make_graph(
            [helper.make_node("If", ["cond"], ["out"], then_branch=other, else_branch=other)],
            "main",
            [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
            [helper.make_tensor_value_info("out", TensorProto.FLOAT, [4])],
        )
    ).SerializeToString()
    assert P.scan_model(clean).external_tensors == []


@pytest.mark.parametrize("garbage", [b"", b"\xff" * 20, b"\x0a\x80", b"\x3a\x05abc"])
def test_onnxproto_rejects_garbage(garbage):
    with pytest.raises(P.ProtoError):
        P.scan_model(garbage)


def test_the_int_id_list_reads_like_the_dict_for_every_id():
    from edgerec.runtime.inputs import BehaviourMap, usual_stack

    cat = catalog(n=300)  # ids 1000..1299
    rows = cat.index.int_rows
    assert rows is not None and len(rows) == 1300
    bm = BehaviourMap(("none",), "none")
    for x in [*range(-2700, 2700, 7), -1, 0, 999, 1000, 1299, 1300, 10**7, -(10**7), 2**70]:
        arr = usual_stack([1000, x], None, None, cat, bm)
        want = cat.index.base.get(x)
        if want is None:
            assert arr is None, x  # unknown: left to the general path, which reports it
        else:
            assert arr.tolist() == [[1, want]], x
    # the list is only for ints: a bool or a float takes the general path; numpy integer
    # scalars are read as the ints they hold
    for x in (True, 1000.0, np.bool_(True), np.float64(1000)):
        assert usual_stack([x], None, None, cat, bm) is None
    for x in (np.int64(1000), np.uint16(1000)):
        assert usual_stack([x], None, None, cat, bm).tolist() == [[1]]
    # a tuple or a 1-D int array is read as the list of its values, as the general path
    # reads it; a float array is not ints
    for seq in ((1000, 1299), np.array([1000, 1299]), np.array([1000, 1299], np.uint16)):
        assert usual_stack(seq, None, None, cat, bm).tolist() == [[1, 300]]
    assert usual_stack(np.array([1000.0]), None, None, cat, bm) is None


def test_the_int_id_list_is_kept_only_for_dense_non_negative_int_ids():
    def index_of(ids):
        m = np.zeros((len(ids) + 1, 2), np.float32)
        pop = np.zeros(len(ids) + 1, np.float32)
        return Catalog.create(m, None, ids, [None] * len(ids), pop, "int").index

    assert index_of([0, 5, 2]).int_rows[:6] == [1, None, 3, None, None, 2]
    assert index_of([5, 10**9]).int_rows is None  # sparse: the list would dwarf the dict
    assert index_of([-1, 4]).int_rows is None
    m = np.zeros((3, 2), np.float32)
    strings = Catalog.create(m, None, ["a", "b"], [None, None], np.zeros(3, np.float32), "str")
    assert strings.index.int_rows is None


def test_added_items_are_found_before_and_after_the_index_folds():
    from edgerec.runtime import catalog as C
    from edgerec.runtime.inputs import BehaviourMap, usual_stack

    bm = BehaviourMap(("none",), "none")
    cat = catalog(n=20, dim=4)
    rng = np.random.default_rng(0)
    grown = cat.append(rng.standard_normal((2, 4)).astype(np.float32), [7, 1005], ["x", "y"])
    assert grown.index.delta  # a delta: its ids resolve through the dicts
    assert usual_stack([7, 1005, 1001], None, None, grown, bm).tolist() == [[21, 22, 2]]
    n_new = C._DELTA_FOLD_MIN + 1  # enough new ids to fold the delta into a new base
    new_ids = list(range(5000, 5000 + n_new))
    folded = grown.append(np.zeros((n_new, 4), np.float32), new_ids, [None] * n_new)
    assert not folded.index.delta and folded.index.int_rows is not None
    got = usual_stack([7, 1005, 5000, new_ids[-1]], None, None, folded, bm)
    assert got.tolist() == [[21, 22, 23, 22 + n_new]]
    assert usual_stack([4999], None, None, folded, bm) is None


def test_catalog_labels_are_lists_for_small_catalogs_and_follow_updates(monkeypatch):
    from edgerec.runtime import catalog as C

    cat = catalog(n=20, dim=4)
    ids, titles = cat.labels
    assert type(ids) is list and ids == cat.ids.tolist() and titles == cat.titles.tolist()
    grown = cat.append(np.ones((1, 4), np.float32), [7], ["new"])
    assert grown.labels[0][-1] == 7 and grown.labels[1][-1] == "new" and len(cat.labels[0]) == 21
    monkeypatch.setattr(C, "_LABEL_LIST_ROWS", 10)
    big = catalog(n=20, dim=4)
    assert big.labels[0] is big.ids and big.labels[1] is big.titles  # large: the arrays
