"""Every argument of every public ``Recommender`` method, fuzzed with hypothesis.

Against a bundle made by the real trainer and exporter, one argument at a time gets an
arbitrary value (wrong types, None, NaN/inf, huge or negative numbers, unicode, bytes,
numpy scalars and arrays, generators, mappings, sets) while the others stay valid. A call
either succeeds with a well-formed answer or raises one of the documented exceptions
(``ValueError``, ``EdgerecError`` and its subclasses), raised by edgerec itself -- never
an error escaping from numpy, onnxruntime or tokenizers -- with a message naming the
argument. A failed ``add_items``/``remove_items`` changes nothing.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_helpers import raised_in_edgerec, real_bundle

from edgerec.errors import BundleError, EdgerecError, UnknownItemError
from edgerec.runtime import Explanation, RecommendationList, Recommender, UserVector

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)


@pytest.fixture(scope="module")
def rec() -> Recommender:
    return Recommender.load(real_bundle(), providers="cpu", threads=1)


SYNTHETIC_IDS = list(range(1, 61))  # the tiny synthetic world's item ids


@pytest.fixture(scope="module")
def ids(rec) -> list:
    ids = rec.item_ids
    assert ids == SYNTHETIC_IDS
    return ids


# --- strategies -----------------------------------------------------------------------

NUMPY_SCALARS = [
    np.int64(3),
    np.int32(-7),
    np.uint64(2**64 - 1),
    np.int8(-128),
    np.float32("nan"),
    np.float64("inf"),
    np.float16(2.5),
    np.bool_(True),
    np.str_("12"),
    np.bytes_(b"12"),
    np.datetime64("2020-01-01"),
    np.timedelta64(5, "s"),
]


def scalars(known: list) -> st.SearchStrategy:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=-(2**80), max_value=2**80),
        st.floats(),  # NaN and +-inf included
        st.text(max_size=12),
        st.binary(max_size=6),
        st.complex_numbers(allow_nan=True),
        st.sampled_from(NUMPY_SCALARS),
        st.sampled_from(known),
        st.sampled_from([str(x) for x in known[:10]] + [f" {known[0]} ", "٣", "\ud800", "\x00"]),
        st.just(object()),
        st.just(Ellipsis),
    )


def sequences_of(elements: st.SearchStrategy) -> st.SearchStrategy:
    as_list = st.lists(elements, max_size=40)
    return st.one_of(
        as_list,
        as_list.map(tuple),
        as_list.map(iter),  # a one-shot iterator
        as_list.map(lambda xs: (x for x in xs)),  # a generator
        st.lists(elements, max_size=8).map(lambda xs: dict.fromkeys(range(len(xs)))),
        st.lists(st.integers(-5, 5), max_size=8).map(frozenset),
        st.lists(st.integers(-(2**63), 2**63 - 1), max_size=30).map(np.array),
        st.lists(st.floats(), max_size=30).map(lambda xs: np.array(xs, dtype=np.float64)),
        st.lists(st.text(max_size=5), max_size=10).map(np.array),
        st.lists(st.integers(0, 100), min_size=1, max_size=12).map(
            lambda xs: np.array(xs).reshape(1, -1)
        ),
        st.just(np.zeros((2, 3, 1))),
        st.just(np.array(5)),
        st.just(np.array([None, 1], dtype=object)),
    )


def anything(known: list) -> st.SearchStrategy:
    """Any value at all for an argument: scalars, containers of scalars, nested lists."""
    atom = scalars(known)
    return st.one_of(
        atom,
        sequences_of(atom),
        st.lists(st.lists(atom, max_size=5), max_size=5),
        st.text(max_size=30),
    )


def history_like(known: list) -> st.SearchStrategy:
    """Histories a careful caller might pass: known ids (as int, str or numpy), unknown
    ids and the occasional bad element."""
    element = st.one_of(
        st.sampled_from(known),
        st.sampled_from(known).map(str),
        st.sampled_from(known).map(np.int64),
        st.integers(-(2**70), 2**70),
        st.text(max_size=6),
    )
    return st.lists(element, max_size=60)


# --- checking one call ----------------------------------------------------------------

ALLOWED = (ValueError, EdgerecError)


def call(fn, *, names: tuple[str, ...], unknown_ok: bool = False, **kwargs):
    """Run ``fn(**kwargs)``; on an error, check it is documented, edgerec's own, and
    names one of ``names``. Returns the result, or None after an allowed error."""
    try:
        return fn(**kwargs)
    except ALLOWED as e:
        message = str(e)
        assert raised_in_edgerec(e), f"{type(e).__name__} escaped from a library: {message}"
        assert type(e).__module__.startswith(("edgerec", "builtins")), type(e)
        if isinstance(e, UnknownItemError):
            assert unknown_ok and e.unknown, message
            return None
        assert any(n in message for n in names), f"{names} not named in {message!r}"
        return None


def check_list(recs, k: int, ids_now: set) -> None:
    assert isinstance(recs, RecommendationList)
    assert len(recs) <= k
    got = recs.item_ids
    assert len(set(map(repr, got))) == len(got), "an item recommended twice"
    assert set(got) <= ids_now
    scores = [r.score for r in recs]
    assert all(math.isfinite(s) for s in scores)
    assert scores == sorted(scores, reverse=True)
    assert recs.gate is None or 0.0 <= recs.gate <= 1.0
    assert recs.fallback in (None, "popularity")


def valid_args(ids: list) -> dict:
    return {
        "history": ids[:6],
        "k": 5,
        "exclude_seen": True,
        "behaviours": None,
        "timestamps": None,
        "candidates": None,
        "exclude": None,
        "strict": False,
    }


RECOMMEND_ARGS = list(valid_args([0]))


# --- recommend ------------------------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_recommend_survives_any_value_of_any_argument(rec, ids, data):
    name = data.draw(st.sampled_from(RECOMMEND_ARGS), label="argument")
    value = data.draw(anything(ids), label="value")
    args = valid_args(ids)
    args[name] = value
    recs = call(rec.recommend, names=(name,), unknown_ok=name == "strict", **args)
    if recs is not None:
        check_list(recs, int(args["k"]), set(ids))


@FUZZ
@given(data=st.data())
def test_recommend_with_plausible_histories_and_side_inputs(rec, ids, data):
    history = data.draw(history_like(ids), label="history")
    n = len(history)
    timestamps = data.draw(
        st.one_of(
            st.none(),
            st.lists(st.integers(-(2**63), 2**63), min_size=n, max_size=n),
            st.lists(st.floats(), min_size=n, max_size=n),
            st.lists(st.integers(0, 2**40), min_size=n, max_size=n).map(np.array),
            st.lists(st.floats(-1e12, 1e12), min_size=n, max_size=n).map(
                lambda xs: np.array(xs, dtype=np.float32)
            ),
            st.lists(st.integers(0, 10**9), max_size=n + 2),  # maybe the wrong length
        ),
        label="timestamps",
    )
    behaviours = data.draw(
        st.one_of(
            st.none(),
            st.lists(
                st.one_of(
                    st.sampled_from(list(rec.manifest.behaviour_vocab)),
                    st.integers(-3, 9),
                    st.floats(),
                    st.text(max_size=3),
                ),
                min_size=n,
                max_size=n,
            ),
        ),
        label="behaviours",
    )
    k = data.draw(st.one_of(st.integers(-3, 200), st.just(10**30)), label="k")
    candidates = data.draw(st.one_of(st.none(), st.lists(st.sampled_from(ids))), label="cand")
    exclude = data.draw(st.one_of(st.none(), st.lists(st.sampled_from(ids))), label="exclude")
    recs = call(
        rec.recommend,
        names=("history", "timestamps", "behaviours", "k"),
        history=history,
        k=k,
        timestamps=timestamps,
        behaviours=behaviours,
        candidates=candidates,
        exclude=exclude,
    )
    if recs is None:
        return
    check_list(recs, k, set(ids))
    assert recs.n_events == n
    assert recs.n_used <= rec.max_len
    if candidates is not None:
        assert set(recs.item_ids) <= set(candidates)
    if exclude:
        assert not set(recs.item_ids) & set(exclude)
    known = {x for x in history if str(x).strip() in {str(i) for i in ids}}
    if not known:
        assert recs.fallback == "popularity"


# --- recommend_batch ------------------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_recommend_batch_survives_any_value_of_any_argument(rec, ids, data):
    args = {
        "histories": [ids[:4], [], ids[5:9]],
        "k": 4,
        "exclude_seen": True,
        "behaviours": None,
        "timestamps": None,
        "candidates": None,
        "exclude": None,
        "strict": False,
    }
    name = data.draw(st.sampled_from(list(args)), label="argument")
    value = data.draw(st.one_of(anything(ids), st.lists(anything(ids), max_size=4)), label="value")
    args[name] = value
    names = (name, "histories") if name in ("behaviours", "timestamps") else (name,)
    out = call(rec.recommend_batch, names=names, unknown_ok=name == "strict", **args)
    if out is not None:
        assert isinstance(out, list)
        for recs in out:
            check_list(recs, int(args["k"]), set(ids))


@FUZZ
@given(histories=st.lists(history_like(SYNTHETIC_IDS), max_size=12))
def test_recommend_batch_equals_single_calls(rec, histories):
    out = call(rec.recommend_batch, names=("histories",), histories=histories, k=7)
    if out is None:
        return
    assert len(out) == len(histories)
    for h, got in zip(histories, out, strict=True):
        want = rec.recommend(h, k=7)
        assert got.item_ids == want.item_ids
        np.testing.assert_allclose(
            [r.score for r in got], [r.score for r in want], rtol=1e-5, atol=1e-6
        )


# --- user_vector and explain ----------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_user_vector_survives_any_value_of_any_argument(rec, ids, data):
    args = {"history": ids[:5], "behaviours": None, "timestamps": None, "strict": False}
    name = data.draw(st.sampled_from(list(args)), label="argument")
    args[name] = data.draw(anything(ids), label="value")
    out = call(rec.user_vector, names=(name, "history"), unknown_ok=name == "strict", **args)
    if out is not None:
        assert isinstance(out, UserVector)
        assert out.vector.shape == (rec.dim,) and np.isfinite(out.vector).all()
        assert 0.0 <= out.gate <= 1.0


@FUZZ
@given(data=st.data())
def test_explain_survives_any_value_of_any_argument(rec, ids, data):
    args = {
        "history": ids[:5],
        "k": 4,
        "behaviours": None,
        "timestamps": None,
        "exclude_seen": True,
        "strict": False,
        "n_drivers": 2,
    }
    name = data.draw(st.sampled_from(list(args)), label="argument")
    args[name] = data.draw(anything(ids), label="value")
    out = call(rec.explain, names=(name,), unknown_ok=name == "strict", **args)
    if out is not None:
        assert isinstance(out, Explanation)
        assert len(out.items) <= int(args["k"])
        assert all(len(item.drivers) <= int(args["n_drivers"]) for item in out.items)
        assert out.horizon in ("long-term", "short-term", "popularity")
        for event in out.events:
            assert 0.0 <= event.attention <= 1.0 + 1e-6


# --- add_items and remove_items -------------------------------------------------------


@pytest.fixture(scope="module")
def mutable(rec) -> Recommender:
    """A recommender of its own: these tests change its catalog."""
    return Recommender.load(rec.path, providers="cpu", threads=1)


def _snapshot(r: Recommender):
    return tuple(r.item_ids), r.n_items


@FUZZ
@given(data=st.data())
def test_add_items_survives_any_value_and_a_failure_changes_nothing(mutable, ids, data):
    fresh = data.draw(st.integers(10**6, 10**12), label="new id")
    args = {"item_ids": [fresh], "texts": ["space war story"], "titles": None}
    name = data.draw(st.sampled_from(list(args)), label="argument")
    args[name] = data.draw(
        st.one_of(anything(ids), st.lists(st.text(max_size=50), min_size=1, max_size=3)),
        label="value",
    )
    before = _snapshot(mutable)
    added = call(mutable.add_items, names=(name, "item_ids"), **args)
    if added is None:
        assert _snapshot(mutable) == before, "a failed add_items changed the catalog"
        return
    assert mutable.n_items == before[1] + added
    if isinstance(args["item_ids"], list):
        assert added == len(args["item_ids"])
        assert all(x in mutable for x in args["item_ids"])
    # the new items are recommendable and answers stay well formed
    check_list(mutable.recommend(ids[:3], k=mutable.n_items), mutable.n_items, _all_ids(mutable))


def _all_ids(r: Recommender) -> set:
    return set(r.item_ids)


@FUZZ
@given(value=st.one_of(anything(SYNTHETIC_IDS), st.lists(st.integers(1, 60), max_size=3)))
def test_remove_items_survives_any_value_and_a_failure_changes_nothing(mutable, value):
    before = _snapshot(mutable)
    active_before = _all_ids(mutable)
    removed = call(mutable.remove_items, names=("item_ids",), unknown_ok=True, item_ids=value)
    if removed is None:
        assert _snapshot(mutable) == before, "a failed remove_items changed the catalog"
        return
    assert mutable.n_items == before[1] - removed
    assert not (_all_ids(mutable) & set(value if isinstance(value, list) else []))
    assert _all_ids(mutable) <= active_before


def test_add_items_refuses_text_the_tokenizer_cannot_take(mutable):
    before = _snapshot(mutable)
    with pytest.raises(ValueError, match=r"texts\[1\] is not valid Unicode") as e:
        mutable.add_items([10**13, 10**13 + 1], ["fine", "lone surrogate \ud800"])
    assert raised_in_edgerec(e.value)
    assert _snapshot(mutable) == before


# --- load -----------------------------------------------------------------------------

LOAD_ARGS = {"providers": "cpu", "threads": 1, "precision": None, "scoring": "auto"}


@settings(FUZZ, max_examples=30)
@given(data=st.data())
def test_load_survives_any_value_of_any_argument(rec, data):
    name = data.draw(st.sampled_from(["path", *LOAD_ARGS]), label="argument")
    value = data.draw(
        st.one_of(
            anything([1]),
            st.sampled_from(
                ["", ".", "/", "/etc/passwd", "/nonexistent", "a" * 5000, "x\x00y", b"/tmp"]
            ),
            st.integers(-5, 10**9),
            st.sampled_from(["fp32", "int8", "fp16", "graph", "int8", "topk", "cuda"]),
        ),
        label="value",
    )
    args = {"path": rec.path, **LOAD_ARGS, name: value}
    # a precision or scoring the bundle cannot honour, or CUDA on a CPU machine: refused
    names = (name, "path", "bundle", "precision", "provider", "CUDA", "scoring")
    loaded = call(Recommender.load, names=names, **args)
    if loaded is not None:
        assert loaded.recommend([1, 2, 3], k=3).item_ids


def test_load_of_a_path_that_is_not_a_directory_names_it(tmp_path):
    with pytest.raises(ValueError, match="path must be a str or os.PathLike, got NoneType"):
        Recommender.load(None)
    with pytest.raises(BundleError, match="cannot open the bundle directory"):
        Recommender.load(str(tmp_path / ("a" * 5000)))
    with pytest.raises(BundleError, match="cannot open the bundle directory"):
        Recommender.load("bundle\x00")
    with pytest.raises(ValueError, match="threads must be None or an int from 0 to 1024"):
        Recommender.load(real_bundle(), threads=10**9)


def test_flags_are_booleans_not_truthy_strings(rec, ids):
    for kwargs in ({"exclude_seen": "no"}, {"strict": "yes"}, {"exclude_seen": None}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            rec.recommend(ids[:3], **kwargs)
    assert rec.recommend(ids[:3], exclude_seen=np.bool_(False), k=3).item_ids
    with pytest.raises(ValueError, match="n_drivers must be a positive int"):
        rec.explain(ids[:3], n_drivers=0)


@pytest.mark.parametrize("name", ["history", "k", "behaviours", "timestamps", "exclude", "now"])
def test_numpy_timedelta_values_are_a_value_error_naming_the_argument(rec, ids, name):
    """numpy registers timedelta64 as an Integral, yet int() of one with units raises
    TypeError: found by the fuzz test above (hypothesis seed 15)."""
    td = np.timedelta64(5, "D")
    args = {"history": ids[:5], "k": 5, "timestamps": [1, 2, 3, 4, 5]}
    args[name] = {"history": [td], "k": td, "now": td}.get(name, [td] * 5)
    with pytest.raises(ValueError, match=name):
        rec.recommend(**args)
