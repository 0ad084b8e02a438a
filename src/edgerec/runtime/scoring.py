"""Scores over the item matrix and top-k, three ways, chosen by what measures fastest.

- ``NumpyScorer`` (CPU, float32 rows): one BLAS GEMV/GEMM into a per-thread buffer that
  is reused across calls, masking by index, then top-k. For large catalogs top-k first
  takes per-block maxima: the k-th largest block maximum is a lower bound of the k-th
  largest score, so only the few scores above it need sorting (about 7x faster than
  ``argpartition`` over 1M scores, and 3x faster than ONNX TopK, measured in
  ``benchmarks/runtime_latency.py``).
- ``Int8Scorer`` (CPU, large catalogs of any stored dtype): onnxruntime's
  ``MatMulInteger`` of an 8-bit user over a prepacked int8 copy of the matrix reads a quarter of
  the float32 bytes. Its scores are approximate, so they only shortlist candidates; a
  certified error bound then says which rows could still reach the top k, and those are
  rescored exactly -- the answer equals exact scoring (see the class docstring).
- ``OrtTopKScorer`` (the CUDA path): matrix and a bias row (0, or -inf for padding and
  removed rows) live on the device as OrtValues bound through I/O binding, so a call
  moves only the user vectors in and k (score, row) pairs out. The same code runs on the
  CPU provider, which is how the tests cover it on machines without a GPU.

Every scorer returns rows sorted by score, ties by row, never including padding, removed
rows or the caller's exclusions, and ``min(k, number of eligible rows)`` of them.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import onnxruntime as ort

from edgerec.runtime import onnxproto as P
from edgerec.runtime.catalog import Catalog
from edgerec.runtime.providers import CPU, create_session

NEG_INF = np.float32(-np.inf)
_BLOCK = 1024  # block size of the threshold top-k
_THRESHOLD_MIN_ROWS = 1 << 16  # below this argpartition is as fast
_MAX_BUFFER = 1 << 23  # floats of scores per chunk of users (32 MB)

Result = tuple[np.ndarray, np.ndarray]  # (rows int64, scores float32), best first


class BlockMax:
    """Per-block maxima of a score vector: one pass, then cheap threshold queries.

    Each block maximum (and each score of the ragged tail) is a distinct score, so the
    k-th largest of them is a lower bound of the k-th largest score; and rows scoring at
    least ``t`` can only sit in blocks whose maximum is at least ``t``.
    """

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = scores
        self.usable = scores.shape[0] - scores.shape[0] % _BLOCK
        self.maxima = scores[: self.usable].reshape(-1, _BLOCK).max(axis=1)

    def kth_bound(self, k: int) -> float:
        reps = self.maxima
        if self.usable < self.scores.shape[0]:
            reps = np.concatenate([reps, self.scores[self.usable :]])
        return reps[np.argpartition(reps, reps.shape[0] - k)[reps.shape[0] - k]]

    def at_least(self, t: float) -> np.ndarray:
        """Rows with score >= t, reading only the blocks that can hold them."""
        blocks = np.flatnonzero(self.maxima >= t)
        if blocks.size * 4 > self.maxima.size:
            return np.flatnonzero(self.scores >= t)
        idx = (blocks[:, None] * _BLOCK + np.arange(_BLOCK)).ravel()
        idx = idx[self.scores[idx] >= t]
        tail = self.usable + np.flatnonzero(self.scores[self.usable :] >= t)
        return np.concatenate([idx, tail]) if tail.size else idx


def top_k(scores: np.ndarray, k: int, blocks: BlockMax | None = None) -> np.ndarray:
    """Rows of the ``k`` largest ``scores``, sorted by score then row; ``k`` <= len(scores).

    ``blocks`` reuses the block maxima of ``scores`` when the caller has them already.
    """
    n = scores.shape[0]
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if k >= n:
        cand = np.arange(n)
    elif n >= _THRESHOLD_MIN_ROWS and k * 4 <= n // _BLOCK:
        blocks = blocks or BlockMax(scores)
        cand = blocks.at_least(blocks.kth_bound(k))
    else:
        part = np.argpartition(scores, n - k)[n - k :]
        cand = np.flatnonzero(scores >= scores[part].min())
    order = np.lexsort((cand, -scores[cand]))[:k]
    return cand[order].astype(np.int64, copy=False)


def eligible_count(catalog: Catalog, excluded: np.ndarray) -> int:
    """Rows that may be recommended once ``excluded`` (rows, repeats allowed) are out."""
    if excluded.size == 0:
        return catalog.n_active
    return catalog.n_active - int(np.count_nonzero(catalog.active[np.unique(excluded)]))


def eligible_k(catalog: Catalog, k: int, excluded: np.ndarray) -> int:
    """``min(k, eligible rows)``, without counting when k is clearly available."""
    if k + excluded.size <= catalog.n_active:
        return k
    return min(k, eligible_count(catalog, excluded))


def _best_first(rows: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's (rows, scores) sorted by score, best first, ties by the lower row."""
    order = np.lexsort((rows, -vals), axis=-1)
    return np.take_along_axis(rows, order, axis=-1), np.take_along_axis(vals, order, axis=-1)


def _rank_block(scores: np.ndarray, k: int) -> list[Result]:
    """``top_k`` of each row of a (users, rows) block whose ineligible rows are -inf.

    One argpartition and one lexsort over the whole block instead of a Python loop of
    them (a batch of 256 histories spent ~30 us a history there). A row whose k-th
    score is tied with a score outside its top k, or that has fewer than k eligible
    rows, takes ``top_k`` itself, so ties go to the lower row exactly as there.
    """
    n = scores.shape[1]
    kk = min(k, n)
    part = np.argpartition(scores, n - kk, axis=1)[:, n - kk :]
    vals = np.take_along_axis(scores, part, axis=1)
    inexact = np.count_nonzero(scores >= vals.min(axis=1)[:, None], axis=1) > kk
    part, vals = _best_first(part, vals)
    out: list[Result] = []
    for j in range(scores.shape[0]):
        if inexact[j]:
            s = scores[j]
            rows = top_k(s, kk)
            rows = rows[np.isfinite(s[rows])]
            out.append((rows, s[rows]))
        elif vals[j, -1] == NEG_INF:  # k covers ineligible rows: keep the eligible ones
            keep = vals[j] > NEG_INF
            out.append((part[j][keep], vals[j][keep]))
        else:
            out.append((part[j], vals[j]))
    return out


class _Buffers(threading.local):
    def get(self, name: str, shape: tuple[int, int]) -> np.ndarray:
        buf = self.__dict__.get(name)
        if buf is None or buf.shape[0] < shape[0] or buf.shape[1] != shape[1]:
            buf = np.empty(shape, dtype=np.float32)
            self.__dict__[name] = buf
        return buf[: shape[0]]


def _user_chunks(n_users: int, n_rows: int) -> int:
    return max(1, min(n_users, _MAX_BUFFER // max(n_rows, 1)))


class NumpyScorer:
    """Exact float32 scoring with BLAS; the default on CPU for float32/float16 bundles."""

    kind = "numpy"

    def __init__(self, catalog: Catalog) -> None:
        if catalog.matrix.dtype != np.float32:
            raise TypeError("NumpyScorer needs a float32 matrix")
        self.catalog = catalog
        self._buffers = _Buffers()

    def with_catalog(self, catalog: Catalog) -> NumpyScorer:
        return NumpyScorer(catalog)

    def topk(self, users: np.ndarray, k: int, excluded: Sequence[np.ndarray]) -> list[Result]:
        cat = self.catalog
        n = cat.n_rows
        matrix = cat.matrix
        out: list[Result] = []
        step = _user_chunks(len(users), n)
        for start in range(0, len(users), step):
            block = users[start : start + step]
            buf = self._buffers.get("scores", (len(block), n))
            if len(block) == 1:
                np.matmul(matrix, block[0], out=buf[0])
            else:
                np.matmul(block, matrix.T, out=buf)
            if len(block) > 1 and n < _THRESHOLD_MIN_ROWS:
                buf[:, cat.inactive] = NEG_INF
                ex = _excluded_matrix(excluded[start : start + len(block)])
                buf[np.arange(len(block))[:, None], ex] = NEG_INF  # pad row 0 is inactive
                out.extend(_rank_block(buf, k))
                continue
            for j in range(len(block)):
                s = buf[j]
                s[cat.inactive] = NEG_INF
                ex = excluded[start + j]
                if ex.size:
                    s[ex] = NEG_INF
                rows = top_k(s, eligible_k(cat, k, ex))
                out.append((rows, s[rows]))
        return out


def _int8_graph(qt: np.ndarray, scale: np.ndarray) -> bytes:
    """Shortlist scores in units of each user's quantization step: the exact integer dot
    products of the quantized user and rows, times each row's scale.

    ``MatMulInteger`` then ``Cast`` and ``Mul`` ran a 1M x 64 catalog in 9.2 ms against
    14.0 ms for ``DynamicQuantizeMatMul`` over the same int8 matrix, 1 thread on the
    2-core EPYC (``benchmarks/runtime_latency.py``, shortlist product); the user's own
    scale is left to the host, which compares against thresholds divided by it instead
    of scaling a million scores.
    """
    dim, n = qt.shape
    return P.model(
        [
            P.node("MatMulInteger", ["user_q", "qt", "user_zp", "qt_zp"], ["dots"]),
            P.node("Cast", ["dots"], ["dots_f"], to=P.FLOAT),
            P.node("Mul", ["dots_f", "scale"], ["scores"]),
        ],
        [P.value_info("user_q", P.UINT8, ["batch", dim])],
        [P.value_info("scores", P.FLOAT, ["batch", n])],
        initializers=[
            P.tensor("qt", qt),
            P.tensor("scale", scale),
            P.tensor("user_zp", np.array(_USER_ZERO, dtype=np.uint8)),
            P.tensor("qt_zp", np.array(0, dtype=np.int8)),
        ],
    )


_USER_Q_MAX = 127  # users: symmetric 8-bit steps around the zero point below
_USER_ZERO = 128


def quantize_users(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 codes, step per user): ``u ~ step * (code - 128)``, each element within
    half a step. Each user has its own step, so a batch mate never coarsens another's."""
    peak = np.abs(block).max(axis=1)
    steps = np.where(peak > 0, peak / _USER_Q_MAX, 1.0).astype(np.float32)
    q = np.clip(np.rint(block / steps[:, None]), -_USER_Q_MAX, _USER_Q_MAX)
    return (q + _USER_ZERO).astype(np.uint8), steps


_Q_MAX = 63  # 7-bit weights: see _quantize_base
_BUILD_CHUNK = 1 << 16


def _quantize_base(catalog: Catalog) -> tuple[np.ndarray, np.ndarray, tuple]:
    """7-bit per-row copy of the catalog for the shortlist, and its error figures.

    7 bits, not 8: on CPUs without VNNI onnxruntime's u8 x s8 kernels add pairs of
    products in saturating int16, which 8-bit weights can overflow. Returns the
    transposed int8 matrix (dim, rows), per-row scales, and error figures against the
    vectors exact scoring uses: the largest element error ``|v - s*q|``, the largest row
    L1 norm of ``s*q``, the largest row L2 norm of ``v - s*q`` and of ``s*q`` -- they
    bound the shortlist score's error (``Int8Scorer.error_bound``).
    """
    n, dim = catalog.n_rows, catalog.dim
    qt = np.empty((dim, n), dtype=np.int8)
    scales = np.empty(n, dtype=np.float32)
    max_err = max_l1 = max_err2 = max_l2 = 0.0
    for start in range(0, n, _BUILD_CHUNK):
        rows = np.arange(start, min(n, start + _BUILD_CHUNK))
        v = catalog.vectors(rows)
        peak = np.abs(v).max(axis=1)
        sc = np.where(peak > 0, peak / _Q_MAX, 1.0).astype(np.float32)
        q = np.clip(np.rint(v / sc[:, None]), -_Q_MAX, _Q_MAX).astype(np.int8)
        deq = q.astype(np.float32) * sc[:, None]
        diff = v - deq
        max_err = max(max_err, float(np.abs(diff).max(initial=0.0)))
        max_l1 = max(max_l1, float(np.abs(deq).sum(axis=1).max(initial=0.0)))
        max_err2 = max(max_err2, float(np.sqrt((diff * diff).sum(axis=1)).max(initial=0.0)))
        max_l2 = max(max_l2, float(np.sqrt((deq * deq).sum(axis=1)).max(initial=0.0)))
        qt[:, rows] = q.T
        scales[rows] = sc
    return qt, scales, (max_err, max_l1, max_err2, max_l2)


class Int8Scorer:
    """int8 shortlist with onnxruntime, then exact scores; results equal exact scoring.

    With ``v`` a row, ``v'`` its int8 copy, ``u`` the user vector and ``u'`` its 8-bit
    copy (``quantize_users``: its own step ``s_u``, each element within half a step),
    the shortlist score ``v'.u'`` differs from the exact ``v.u`` by
    ``(v - v').u + v'.(u - u')``, at most ``max|v-v'| * |u|_1 + max|v'|_1 * s_u`` and at
    most ``max|v-v'|_2 * |u|_2 + max|v'|_2 * sqrt(dim) * s_u`` (Cauchy-Schwarz); the
    smaller of the two bounds every row (figures from ``_quantize_base``).
    After rescoring the top shortlist exactly, ``T`` (the k-th best exact score found)
    is a lower bound of the true k-th best score; any row that could beat it has
    ``a >= T - bound``, so those rows are rescored too. The answer is therefore the exact
    top-k of the stored vectors, at the memory traffic of int8 for nearly all rows.
    Rows added after the session was built are scored exactly with numpy until there
    are enough of them to rebuild it.
    """

    kind = "int8"

    def __init__(self, catalog: Catalog, threads: int | None, _base=None) -> None:
        self.catalog = catalog
        self.threads = threads
        if _base is None:
            qt, scales, errors = _quantize_base(catalog)
            graph = _int8_graph(qt, scales)
            del qt
            session = create_session(graph, "int8 scoring graph", [CPU], threads)
            _base = (session, catalog.n_rows, errors)
        self._base = _base
        self._session, self.n_base, self._errors = _base
        delta_rows = np.arange(self.n_base, catalog.n_rows)
        self._delta = np.ascontiguousarray(catalog.vectors(delta_rows))
        self._buffers = _Buffers()

    def with_catalog(self, catalog: Catalog) -> Int8Scorer:
        fresh = catalog.n_rows - self.n_base > max(1 << 16, self.n_base // 8)
        return Int8Scorer(catalog, self.threads, None if fresh else self._base)

    def _shortlist(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scores of the base rows in units of each user's step, the steps)."""
        codes, steps = quantize_users(np.asarray(block, dtype=np.float32))
        buf = self._buffers.get("approx", (len(block), self.n_base))
        io = self._session.io_binding()
        io.bind_cpu_input("user_q", codes)
        io.bind_output("scores", "cpu", 0, np.float32, list(buf.shape), buf.ctypes.data)
        self._session.run_with_iobinding(io)
        return buf, steps

    def _approx(self, block: np.ndarray) -> np.ndarray:
        """Shortlist scores in the units of exact scores (for checks; topk avoids this)."""
        buf, steps = self._shortlist(block)
        return buf * steps[:, None]

    def error_bound(self, user: np.ndarray, step: float | None = None) -> float:
        """Largest possible |shortlist score - exact score| of any row for ``user``;
        ``step``: the user's quantization step when the caller has it already."""
        max_err, max_l1, max_err2, max_l2 = self._errors
        if step is None:
            step = float(quantize_users(np.asarray(user, np.float32)[None, :])[1][0])
        l1 = float(np.abs(user).sum())
        l2 = float(np.sqrt((user * user).sum()))
        by_l1 = max_err * l1 + max_l1 * step
        by_l2 = max_err2 * l2 + max_l2 * np.sqrt(user.shape[0]) * step
        return min(by_l1, by_l2) * 1.01 + 1e-6  # float32 rounding of the final scaling

    def topk(self, users: np.ndarray, k: int, excluded: Sequence[np.ndarray]) -> list[Result]:
        cat = self.catalog
        nb = self.n_base
        out: list[Result] = []
        inactive_a = cat.inactive[cat.inactive < nb]
        inactive_d = cat.inactive[cat.inactive >= nb] - nb
        step = _user_chunks(len(users), nb)
        for start in range(0, len(users), step):
            block = users[start : start + step]
            approx, steps = self._shortlist(block)
            delta = block @ self._delta.T if self._delta.shape[0] else None
            for j in range(len(block)):
                ex = excluded[start + j]
                u = block[j]
                kk = eligible_k(cat, k, ex)
                if kk == 0:
                    out.append((np.zeros(0, np.int64), np.zeros(0, np.float32)))
                    continue
                sa = approx[j]  # in units of this user's step: ranks like the scores
                sa[inactive_a] = NEG_INF
                sa[ex[ex < nb]] = NEG_INF
                blocks = BlockMax(sa) if nb >= _THRESHOLD_MIN_ROWS else None
                short = top_k(sa, min(max(4 * kk, kk + 32), nb), blocks)
                short = short[np.isfinite(sa[short])]
                cand, exact = short, cat.vectors(short) @ u
                if delta is not None:  # rows added since the session: exact already
                    sd = delta[j]
                    sd[inactive_d] = NEG_INF
                    sd[ex[ex >= nb] - nb] = NEG_INF
                    cd = top_k(sd, min(kk, sd.shape[0]))
                    cd = cd[np.isfinite(sd[cd])]
                    cand = np.concatenate([cand, nb + cd])
                    exact = np.concatenate([exact, sd[cd]])
                if exact.shape[0] >= kk:
                    kth = np.partition(exact, exact.shape[0] - kk)[exact.shape[0] - kk]
                    step_j = float(steps[j])
                    floor = (float(kth) - self.error_bound(u, step_j)) / step_j
                    floor -= 1e-5 * abs(floor) + 1e-5  # float32 rounding of sa and floor
                    more = blocks.at_least(floor) if blocks else np.flatnonzero(sa >= floor)
                else:  # fewer eligible rows than k in the shortlist: take them all
                    more = np.flatnonzero(np.isfinite(sa))
                more = np.setdiff1d(more, short, assume_unique=True)
                if more.size:
                    cand = np.concatenate([cand, more])
                    exact = np.concatenate([exact, cat.vectors(more) @ u])
                best = top_k(exact, min(kk, cand.shape[0]))
                out.append((cand[best], exact[best].astype(np.float32, copy=False)))
        return out


def row_bias(catalog: Catalog, dtype=np.float32) -> np.ndarray:
    """0 for rows that may be recommended, -inf for padding and removed rows."""
    bias = np.zeros(catalog.n_rows, dtype=dtype)
    bias[catalog.inactive] = -np.inf
    return bias


def masked_topk_nodes(
    user: str, items: str, bias: str, excluded: str, k: str, values: str, indices: str, p: str
) -> list[bytes]:
    """``user @ items.T + bias``, -inf at each user's ``excluded`` rows, then TopK; the
    intermediate names start with ``p``, which also needs a ``p + "neg_inf"`` (1, 1)
    initializer of the scores' type."""
    return [
        P.node("Gemm", [user, items, bias], [p + "scores"], transB=1),
        P.node("Shape", [excluded], [p + "excluded_shape"]),
        P.node("Expand", [p + "neg_inf", p + "excluded_shape"], [p + "excluded_values"]),
        P.node(
            "ScatterElements",
            [p + "scores", excluded, p + "excluded_values"],
            [p + "masked"],
            axis=1,
        ),
        P.node("TopK", [p + "masked", k], [values, indices], axis=-1),
    ]


def _topk_graph(dim: int, fp16: bool) -> bytes:
    """scores = user @ items.T + bias, excluded rows set to -inf, then TopK.

    Exclusions happen inside the graph (``ScatterElements`` of -inf at each user's
    excluded rows, padded with row 0, which the bias already masks), so TopK returns
    exactly the answer and the host only drops -inf entries: no per-user filtering in
    Python, which cost ~40 us a history on the GPU path (``benchmarks/gpu_checks.py``).
    """
    elem = P.FLOAT16 if fp16 else P.FLOAT
    nodes = []
    user = "user"
    if fp16:
        nodes.append(P.node("Cast", ["user"], ["user_h"], to=P.FLOAT16))
        user = "user_h"
    nodes += masked_topk_nodes(user, "items", "bias", "excluded", "k", "top_raw", "indices", "")
    nodes.append(P.node("Cast", ["top_raw"], ["values"], to=P.FLOAT))
    neg_inf = np.full((1, 1), -np.inf, dtype=np.float16 if fp16 else np.float32)
    return P.model(
        nodes,
        [
            P.value_info("user", P.FLOAT, ["batch", dim]),
            P.value_info("items", elem, ["n", dim]),
            P.value_info("bias", elem, ["n"]),
            P.value_info("excluded", P.INT64, ["batch", "n_excluded"]),
            P.value_info("k", P.INT64, [1]),
        ],
        [
            P.value_info("values", P.FLOAT, ["batch", "k_out"]),
            P.value_info("indices", P.INT64, ["batch", "k_out"]),
        ],
        initializers=[P.tensor("neg_inf", neg_inf)],
    )


def _excluded_matrix(excluded: Sequence[np.ndarray]) -> np.ndarray:
    """(users, widest) int64 rows to exclude, padded with row 0 (always masked)."""
    width = max((e.size for e in excluded), default=0)
    out = np.zeros((len(excluded), max(width, 1)), np.int64)
    for j, e in enumerate(excluded):
        out[j, : e.size] = e
    return out


class OrtTopKScorer:
    """Scoring + TopK inside onnxruntime with the matrix resident on the device."""

    kind = "ort-topk"

    def __init__(
        self,
        catalog: Catalog,
        providers: Sequence[str],
        threads: int | None,
        device: str,
        _session=None,
        _items=None,
    ) -> None:
        if catalog.matrix.dtype not in (np.float32, np.float16):
            raise TypeError("OrtTopKScorer needs a float32 or float16 matrix")
        self.catalog = catalog
        self.device = device
        self.providers = tuple(providers)
        self.threads = threads
        fp16 = catalog.matrix.dtype == np.float16
        self._session = _session or create_session(
            _topk_graph(catalog.dim, fp16), "top-k scoring graph", self.providers, threads
        )
        self._items = _items or ort.OrtValue.ortvalue_from_numpy(
            np.ascontiguousarray(catalog.matrix), device, 0
        )
        self._bias = ort.OrtValue.ortvalue_from_numpy(
            row_bias(catalog, catalog.matrix.dtype), device, 0
        )

    def with_catalog(self, catalog: Catalog) -> OrtTopKScorer:
        same_rows = catalog.n_rows == self.catalog.n_rows and catalog.matrix is self.catalog.matrix
        return OrtTopKScorer(
            catalog,
            self.providers,
            self.threads,
            self.device,
            _session=self._session,
            _items=self._items if same_rows else None,
        )

    def topk(self, users: np.ndarray, k: int, excluded: Sequence[np.ndarray]) -> list[Result]:
        cat = self.catalog
        out: list[Result] = []
        want = min(cat.n_rows, k)
        step = _user_chunks(len(users), 4 * (want + 64))  # outputs are small; bound the batch
        k_feed = np.array([want], dtype=np.int64)
        for start in range(0, len(users), step):
            block = np.ascontiguousarray(users[start : start + step], dtype=np.float32)
            io = self._session.io_binding()
            io.bind_cpu_input("user", block)
            io.bind_ortvalue_input("items", self._items)
            io.bind_ortvalue_input("bias", self._bias)
            io.bind_cpu_input("excluded", _excluded_matrix(excluded[start : start + len(block)]))
            io.bind_cpu_input("k", k_feed)
            io.bind_output("values", "cpu")
            io.bind_output("indices", "cpu")
            self._session.run_with_iobinding(io)
            values, indices = io.copy_outputs_to_cpu()
            # ties by row (as the numpy scorer orders them); -inf = ineligible
            indices, values = _best_first(indices, values)
            finite = np.isfinite(values)
            if finite.all():
                out.extend(zip(indices, values, strict=True))
            else:
                out.extend((r[f], v[f]) for r, v, f in zip(indices, values, finite, strict=True))
        return out
