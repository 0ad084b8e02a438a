"""``Recommender``: a verified bundle, its onnxruntime sessions and the current catalog.

One request path: ``recommend`` and ``recommend_batch`` normalise their arguments into
the arrays the bundle's graphs read (``requests.normalise``), run one graph -- the
``recommend`` graph on a CPU, or the ``user_encoder`` graph and a scorer for large
catalogs and GPUs, chosen once at load -- and turn rows back into ids.

Load once and share: every method may be called from many threads at once. A call reads
the current catalog snapshot (``_state``) once and works only on it; ``add_items`` and
``remove_items`` build a new snapshot and publish it with one assignment, so a
concurrent call sees the catalog entirely before or entirely after an update.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from itertools import repeat
from pathlib import Path
from typing import NamedTuple

import numpy as np

from edgerec.errors import EdgerecError
from edgerec.runtime import requests as R
from edgerec.runtime.bundle import Manifest, graph_roles, verify
from edgerec.runtime.catalog import Catalog
from edgerec.runtime.insight import Insight
from edgerec.runtime.interfaces import check_interface
from edgerec.runtime.manifest import choose_precision
from edgerec.runtime.providers import CPU, active_device, create_session, fast_run, plan_providers
from edgerec.runtime.results import (
    Recommendation,
    RecommendationList,
    check_finite,
)
from edgerec.runtime.scoring import DeviceScorer, Int8Scorer
from edgerec.runtime.tokenize import TextTokenizer
from edgerec.runtime.updates import CatalogUpdates

SCORINGS = ("auto", "graph", "int8", "topk")
USER_ENCODER_PLACEMENTS = ("auto", "cpu", "device")
# On a GPU recommender, batches of fewer histories than this encode on the CPU, where a
# Bi-LSTM's sequential steps are not launch-bound (benchmarks/gpu_checks.py).
GPU_ENCODE_MIN_BATCH = 256
INT8_MIN_ROWS = 100_000  # from here the int8 shortlist reads a quarter of the bytes
_MAX_CELLS = 1 << 20  # events per graph run (histories x widest): bounds a batch's arrays
_RECOMMEND_OUTPUTS = ["top_rows", "top_scores", "user", "gate"]
_REQUEST_INPUTS = ("history_rows", "history_behaviours", "history_times", "now")
_NEG_INF = float("-inf")
_USER_OUTPUTS = ["user", "gate", "attention"]
_MASK = {True: np.array([True]), False: np.array([False])}


class _State(NamedTuple):
    catalog: Catalog
    scorer: object | None  # None: the recommend graph scores
    by_popularity: np.ndarray  # active rows, most popular first (ties by row)


class Recommender(Insight, CatalogUpdates):
    """Next-item recommendations from an edgerec bundle with onnxruntime and numpy only.

    >>> rec = Recommender.load("bundle/")
    >>> recs = rec.recommend([50, 172, 133], k=10)
    >>> [(r.item_id, r.title) for r in recs], recs.gate
    """

    @classmethod
    def load(
        cls,
        path: str | Path,
        providers: str | Sequence[str] = "auto",
        threads: int | None = None,
        precision: str | None = None,
        scoring: str = "auto",
        user_encoder: str = "auto",
    ) -> Recommender:
        """Verify and load a bundle directory.

        - ``providers``: ``"auto"`` (CUDA when onnxruntime-gpu is installed *and* a session
          really runs on it, else CPU), ``"cpu"``, ``"cuda"`` (raises ``ProviderError`` if
          it cannot be honoured) or a list of onnxruntime provider names.
        - ``threads``: intra-op threads of the onnxruntime sessions (None: its default).
        - ``precision``: ``"fp32"``, ``"int8"`` or ``"fp16"``; None takes the bundle's
          default (on a CPU an fp16 default gives way to int8 or fp32).
        - ``scoring``: ``"auto"`` (on a CPU the ``recommend`` graph below ``INT8_MIN_ROWS``
          rows and the int8 shortlist from there, the same answers at a quarter of the
          memory traffic; on CUDA the ``topk`` graph on the device), or force
          ``"graph"``, ``"int8"`` or ``"topk"``.
        - ``user_encoder``: where a GPU recommender runs the user tower: ``"auto"`` (on
          the CPU for calls of fewer than ``GPU_ENCODE_MIN_BATCH`` histories), ``"cpu"``
          or ``"device"``. Ignored on a CPU recommender.

        Raises ``BundleError`` naming the file for anything wrong with the bundle.
        """
        for name, value, allowed in (
            ("scoring", scoring, SCORINGS),
            ("user_encoder", user_encoder, USER_ENCODER_PLACEMENTS),
        ):
            if not isinstance(value, str) or value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if precision is not None and not isinstance(precision, str):
            raise ValueError(f"precision must be a string or None, got {precision!r}")
        plan = plan_providers(providers)
        return cls(verify(path), plan, threads, precision, scoring, user_encoder)

    def __init__(self, data, plan, threads, precision, scoring, user_encoder) -> None:
        m: Manifest = data.manifest
        self.manifest = m
        self.path: Path = data.root
        self.threads = threads
        self.dim = m.dims.dim
        self._graph_bytes = data.graphs  # file -> verified bytes, while sessions are built
        self._write_lock = threading.Lock()
        self._behaviours = R.BehaviourMap(m.behaviour_vocab, m.default_behaviour)
        guess = "cuda" if plan.requested[0] != CPU else "cpu"
        self.precision = choose_precision(m, precision, guess)
        self.graph_files: dict[str, str] = {}  # role -> the bundle file its session runs
        self.sessions: dict = {}  # role -> onnxruntime.InferenceSession (for inspection)
        encoder = self._session("user_encoder", plan.requested)
        self.device = active_device(encoder, plan, self.graph_files["user_encoder"])
        self.providers: tuple[str, ...] = tuple(encoder.get_providers())
        if self.device == "cpu" and self.precision == "fp16" and precision is None:
            self.precision = choose_precision(m, None, "cpu")
        self._encoders = {self.device: encoder}
        if self.device == "cuda" and user_encoder != "device":
            self._encoders["cpu"] = self._session("user_encoder", [CPU], key="user_encoder_cpu")
        self._small_batch = {"auto": GPU_ENCODE_MIN_BATCH, "cpu": 1 << 62}.get(user_encoder, 0)
        self.user_encoder = user_encoder
        self._text = self._tokenizer = None
        if "text_encoder" in m.graphs:
            self._text = self._session("text_encoder", self.providers)
            self._tokenizer = TextTokenizer(
                data.tokenizer_json or "", m.dims.text_max_length, m.tokenizer or "tokenizer"
            )
        n_rows = data.items.shape[0]
        if scoring == "auto":
            scoring = (
                "topk" if self.device == "cuda" else "graph" if n_rows < INT8_MIN_ROWS else "int8"
            )
        if scoring == "int8" and self.device == "cuda":
            raise ValueError("scoring='int8' is a CPU path; use 'auto' or 'topk' on CUDA")
        self.scoring = scoring
        self._recommend_run = None
        if scoring == "graph":
            self._recommend_run = fast_run(self._session("recommend", [CPU]))
        catalog = Catalog.create(
            data.items,
            data.scale,
            data.item_ids.ids,
            data.item_ids.titles,
            data.popularity,
            data.item_ids.id_type,
        )
        self._state = self._new_state(catalog, self._new_scorer(catalog))
        # the bytes now live in sessions; the int8 scorer's graph stays for the sessions
        # it rebuilds when the catalog grows
        keep = m.scorers["shortlist"] if scoring == "int8" else None
        self._graph_bytes = {keep: data.graphs[keep]} if keep else {}

    # --- construction -----------------------------------------------------------------

    def _session(self, role: str, providers, key: str | None = None, initializers=None):
        """A session of the bundle's graph for ``role`` (a scorer's name, or a role at
        this recommender's precision), its interface checked."""
        m = self.manifest
        name = m.scorers[role] if role in m.scorers else m.graph_file(role, self.precision)
        blob = self._graph_bytes[name]
        session = create_session(blob, name, providers, self.threads, initializers)
        check_interface(session, graph_roles(m)[name], name, self.dim)
        self.graph_files[key or role] = name
        self.sessions[key or role] = session
        return session

    def _new_scorer(self, catalog: Catalog):
        if self.scoring == "int8":
            return Int8Scorer(catalog, lambda inits: self._session("shortlist", [CPU], None, inits))
        if self.scoring == "topk":
            half = catalog.matrix.dtype != np.float32 and self.device == "cuda"
            session = self._session("topk_fp16" if half else "topk", self.providers)
            try:
                return DeviceScorer(catalog, session, self.device)
            except Exception as e:
                raise EdgerecError(
                    f"cannot place the item matrix on {self.device} ({type(e).__name__}: {e})"
                ) from None
        return None

    @staticmethod
    def _new_state(catalog: Catalog, scorer) -> _State:
        rows = np.flatnonzero(catalog.active)
        order = np.lexsort((rows, -catalog.popularity[rows]))
        return _State(catalog, scorer, rows[order])

    # --- recommending -----------------------------------------------------------------

    def recommend(
        self,
        history,
        k: int = 10,
        exclude_seen: bool = True,
        behaviours=None,
        timestamps=None,
        candidates=None,
        exclude=None,
        strict: bool = False,
        now=None,
    ) -> RecommendationList:
        """Top-``k`` items for one history (original item ids, oldest first).

        - ``behaviours``: one vocabulary value per event (e.g. ratings); None: the
          bundle's default behaviour. Values outside the vocabulary are read as its
          first entry ("none") and reported (``unknown_behaviours``).
        - ``timestamps``: event times in seconds; ``now``: the request time (the gate
          reads how long ago the last event was). Unknown without them.
        - ``exclude_seen``: never recommend the history's own items.
        - ``candidates``: rank only these ids; ``exclude``: never return these ids.
        - unknown history ids are left out and reported (``unknown_items``), or raise
          ``UnknownItemError`` with ``strict=True``; a history with no known id falls
          back to popularity (``fallback == "popularity"``).
        """
        sides = ([behaviours], [timestamps], [now])
        options = (k, exclude_seen, candidates, exclude, strict)
        return self._recommend([history], *sides, *options, lambda i: "")[0]

    def recommend_batch(
        self,
        histories,
        k: int = 10,
        exclude_seen: bool = True,
        behaviours=None,
        timestamps=None,
        candidates=None,
        exclude=None,
        strict: bool = False,
        now=None,
    ) -> list[RecommendationList]:
        """``recommend`` for many histories in one run (same rules, same answers).

        ``behaviours``/``timestamps`` are None or one sequence per history (given for
        all or for none); ``now`` is None, one time for all or one per history;
        ``candidates``/``exclude`` apply to every history.
        """
        if isinstance(histories, np.ndarray) and histories.ndim == 2:
            histories = list(histories)  # one row per history
        hist = R.as_list(histories, "histories", R.MAX_BATCH)
        n = len(hist)
        behs = R.per_history(behaviours, n, "behaviours")
        tss = R.per_history(timestamps, n, "timestamps")
        many = isinstance(now, Iterable) and not isinstance(now, str | bytes)
        nows = R.per_history(now, n, "now") if many else [now] * n
        options = (k, exclude_seen, candidates, exclude, strict)
        return self._recommend(hist, behs, tss, nows, *options, lambda i: f"histories[{i}]: ")

    def _recommend(
        self, hist, behs, tss, nows, k, exclude_seen, candidates, exclude, strict, name
    ) -> list[RecommendationList]:
        k = R.check_k(k)
        exclude_seen = R.check_flag(exclude_seen, "exclude_seen")
        strict = R.check_flag(strict, "strict")
        state = self._state
        cat = state.catalog
        if len(hist) * min(k, cat.n_active) > R.MAX_RESULTS:
            raise ValueError(
                f"{len(hist)} histories x k={k} would return more than "
                f"{R.MAX_RESULTS} recommendations; split the batch or lower k"
            )
        batch = R.normalise(hist, behs, tss, nows, cat, self._behaviours, strict, name)
        bias = self._request_bias(cat, candidates, exclude)
        known = batch.known
        ranked = iter(())
        if any(known):  # the histories with a known event go to the model
            chosen = None if all(known) else np.flatnonzero(known)
            ranked = self._rank(state, batch, chosen, k, bias, exclude_seen)
        max_len = self.manifest.dims.max_len
        ids, titles = cat.labels
        out = []
        for i, n in enumerate(known):
            if n:
                rows, scores, gate = next(ranked)
                fallback = None
            else:
                rows, scores = self._popular(state, k, bias)
                gate, fallback = None, "popularity"
            out.append(
                RecommendationList(
                    _recommendations(ids, titles, rows, scores),
                    gate=gate,
                    unknown_items=batch.unknown_items[i],
                    unknown_behaviours=batch.unknown_behaviours[i],
                    fallback=fallback,
                    n_events=batch.n_events[i],
                    n_used=min(n, max_len),
                )
            )
        return out

    def _rank(self, state: _State, batch: R.Batch, chosen, k, bias, exclude_seen):
        """(rows, scores, gate) of each history ``chosen`` (None: all), as Python values:
        every numpy call after a run pays again for the caches the run took."""
        arrays = [batch.rows, batch.behaviours, batch.times, batch.now]
        if chosen is not None:
            arrays = [a[chosen] for a in arrays]
        cat = state.catalog
        if state.scorer is not None:  # the user encoder, then the scorer
            users, gates, _ = self._encode(cat, arrays)
            seen = arrays[0] if exclude_seen else np.zeros((len(users), 1), np.int64)
            for (rows, scores), gate in zip(
                state.scorer.topk(users, k, bias, seen), gates.tolist(), strict=True
            ):
                yield rows.tolist(), scores.tolist(), gate
            return
        feeds = {
            "item_matrix": cat.float_matrix,
            "row_bias": bias,
            "mask_seen": _MASK[exclude_seen],
            "k": _int_feed(min(k, cat.n_rows)),
        }
        for part in _chunks(arrays):
            feeds.update(zip(_REQUEST_INPUTS, part, strict=True))
            top_rows, top_scores, user, gate = self._recommend_run(_RECOMMEND_OUTPUTS, feeds)
            scores = top_scores.tolist()
            for rows, values, g in zip(top_rows.tolist(), scores, gate.tolist(), strict=True):
                if values[-1] == _NEG_INF:  # k reached rows that may not be returned
                    n = sum(v > _NEG_INF for v in values)
                    rows, values = rows[:n], values[:n]
                    if not n:  # no eligible row, or a non-finite user vector
                        check_finite(user, "user encoder")
                elif not math.isfinite(values[0]):  # NaN or +inf: a broken user vector
                    check_finite(user, "user encoder")
                yield rows, values, g

    def encoder_device(self, n_histories: int) -> str:
        """Where a call of ``n_histories`` histories runs the user encoder: on a GPU
        recommender, small batches on the CPU (``user_encoder``); else ``device``."""
        small = n_histories < self._small_batch and "cpu" in self._encoders
        return "cpu" if small else self.device

    def _encode(self, cat: Catalog, arrays) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(users, gates, attention) of request arrays from the user-encoder graph."""
        session = self._encoders[self.encoder_device(len(arrays[0]))]
        users, gates, attention = [], [], []
        for rows, behaviours, times, now in _chunks(arrays):
            table = cat.matrix
            if table.dtype != np.float32:  # a compact table: just the rows these histories use
                used, rows = np.unique(np.r_[0, rows.ravel()], return_inverse=True)
                rows = rows[1:].reshape(behaviours.shape)
                table = cat.vectors(used)
            feeds = {
                "history_rows": rows,
                "history_behaviours": behaviours,
                "history_times": times,
                "now": now,
                "item_matrix": table,
            }
            u, g, a = session.run(_USER_OUTPUTS, feeds)
            check_finite(u, "user encoder")
            users.append(u)
            gates.append(g)
            attention.append(a)
        if len(attention) > 1:
            width = max(a.shape[1] for a in attention)
            attention = [np.pad(a, ((0, 0), (0, width - a.shape[1]))) for a in attention]
        return np.concatenate(users), np.concatenate(gates), np.concatenate(attention)

    @staticmethod
    def _request_bias(cat: Catalog, candidates, exclude) -> np.ndarray:
        """The catalog's row bias, or this request's copy with ``candidates`` and
        ``exclude`` applied (-inf outside the candidates and at excluded rows)."""
        if candidates is None and exclude is None:
            return cat.bias
        if candidates is None:
            bias = cat.bias.copy()
        else:
            bias = np.full_like(cat.bias, -np.inf)
            rows = R.id_rows(candidates, cat, "candidates")
            bias[0, rows] = cat.bias[0, rows]
        if exclude is not None:
            bias[0, R.id_rows(exclude, cat, "exclude")] = -np.inf
        return bias

    @staticmethod
    def _popular(state: _State, k: int, bias: np.ndarray) -> tuple[list, list]:
        order = state.by_popularity
        if bias is not state.catalog.bias:
            order = order[np.isfinite(bias[0, order])]
        rows = order[:k]
        return rows.tolist(), state.catalog.popularity[rows].tolist()

    def __repr__(self) -> str:
        return (
            f"Recommender({self.path}, precision={self.precision}, device={self.device}, "
            f"scoring={self.scoring}, items={self.n_items})"
        )


def _chunks(arrays: list[np.ndarray]):
    """``arrays`` (rows, behaviours, times, now) in parts of at most ``_MAX_CELLS`` events,
    each part cut to its own widest history (histories are right-aligned)."""
    n, width = arrays[0].shape
    step = max(1, _MAX_CELLS // width)
    if step >= n:  # the usual call: one run
        yield arrays
        return
    for start in range(0, n, step):
        part = [a[start : start + step] for a in arrays]
        used = int((part[0] > 0).sum(axis=1).max())
        if used < width:
            part[:3] = [a[:, -used:] for a in part[:3]]
        yield part


_SMALL_INTS = [np.array([i], np.int64) for i in range(1025)]


def _int_feed(value: int) -> np.ndarray:
    """A (1,) int64 input; shared arrays for the usual small values (no allocation)."""
    return _SMALL_INTS[value] if value < len(_SMALL_INTS) else np.array([value], np.int64)


def _recommendations(ids, titles, rows: list[int], scores: list[float]) -> list:
    """``Recommendation`` of each (row, score), built by ``tuple.__new__`` through C-level
    maps: a batch builds thousands, and a Python call per item cost more than the rest
    of a history's host-side work."""
    items = zip(map(ids.__getitem__, rows), scores, map(titles.__getitem__, rows), strict=True)
    return list(map(tuple.__new__, repeat(Recommendation), items))
