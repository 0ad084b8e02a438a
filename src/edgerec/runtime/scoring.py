"""Scoring for the catalogs and devices the ``recommend`` graph does not serve best.

- ``Int8Scorer`` (CPU, catalogs from ``INT8_MIN_ROWS`` rows): the bundle's ``shortlist``
  graph (``MatMulInteger``) scores an 8-bit user over a 7-bit copy of the matrix -- a
  quarter of the float32 bytes -- and a certified error bound says which rows could
  still reach the top k; those are rescored exactly, so the answer equals exact scoring.
- ``DeviceScorer`` (the CUDA path): the bundle's ``topk`` graph with the matrix and its
  row bias resident on the device, bound through I/O binding, so a call moves only user
  vectors in and k (score, row) pairs out. The same code runs on the CPU provider,
  which is how the tests cover it on machines without a GPU.

Both return, per user, rows best first (ties by the lower row) and their scores, never a
row whose bias is -inf or that the user's ``excluded`` rows hold.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from edgerec.runtime.catalog import Catalog

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


def _user_chunks(n_users: int, n_rows: int) -> int:
    return max(1, min(n_users, _MAX_BUFFER // max(n_rows, 1)))


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

    def __init__(self, catalog: Catalog, make_session, _base=None) -> None:
        """``make_session(initializers)``: a session of the bundle's shortlist graph with
        those initializers (the catalog's matrix and scales) in place of its own."""
        self.catalog = catalog
        self.make_session = make_session
        if _base is None:
            qt, scales, errors = _quantize_base(catalog)
            # onnxruntime reads these buffers for the session's life: the base keeps them
            values = {
                "qt": ort.OrtValue.ortvalue_from_numpy(qt),
                "scale": ort.OrtValue.ortvalue_from_numpy(scales),
            }
            _base = (make_session(values), catalog.n_rows, errors, (qt, scales, values))
        self._base = _base
        self._session, self.n_base, self._errors, _ = _base
        self._delta = np.ascontiguousarray(catalog.vectors(np.arange(self.n_base, catalog.n_rows)))

    def with_catalog(self, catalog: Catalog) -> Int8Scorer:
        fresh = catalog.n_rows - self.n_base > max(1 << 16, self.n_base // 8)
        return Int8Scorer(catalog, self.make_session, None if fresh else self._base)

    def shortlist(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scores of the base rows in units of each user's step, the steps)."""
        codes, steps = quantize_users(np.asarray(block, dtype=np.float32))
        (scores,) = self._session.run(["scores"], {"user_q": codes})
        return scores, steps

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

    def topk(
        self, users: np.ndarray, k: int, bias: np.ndarray, excluded: np.ndarray
    ) -> list[Result]:
        """``bias``: (1, rows) 0 / -inf; ``excluded``: (users, any) rows, 0 as padding."""
        cat = self.catalog
        nb = self.n_base
        out: list[Result] = []
        blocked = np.flatnonzero(~np.isfinite(bias[0]))
        blocked_a, blocked_d = blocked[blocked < nb], blocked[blocked >= nb] - nb
        eligible = cat.n_rows - blocked.size
        step = _user_chunks(len(users), nb)
        for start in range(0, len(users), step):
            block = users[start : start + step]
            approx, steps = self.shortlist(block)
            delta = block @ self._delta.T if self._delta.shape[0] else None
            for j in range(len(block)):
                ex = np.unique(excluded[start + j])
                ex = ex[np.isfinite(bias[0, ex])]
                u = block[j]
                kk = min(k, eligible - ex.size)
                if kk <= 0:
                    out.append((np.zeros(0, np.int64), np.zeros(0, np.float32)))
                    continue
                sa = approx[j]  # in units of this user's step: ranks like the scores
                sa[blocked_a] = NEG_INF
                sa[ex[ex < nb]] = NEG_INF
                blocks = BlockMax(sa) if nb >= _THRESHOLD_MIN_ROWS else None
                short = top_k(sa, min(max(4 * kk, kk + 32), nb), blocks)
                short = short[np.isfinite(sa[short])]
                cand, exact = short, cat.vectors(short) @ u
                if delta is not None:  # rows added since the session: exact already
                    sd = delta[j]
                    sd[blocked_d] = NEG_INF
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
                best = np.lexsort((cand, -exact))[:kk]  # ties: the lower row first
                out.append((cand[best], exact[best].astype(np.float32, copy=False)))
        return out


def best_first(rows: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's (rows, scores) sorted by score, best first, ties by the lower row."""
    order = np.lexsort((rows, -vals), axis=-1)
    return np.take_along_axis(rows, order, axis=-1), np.take_along_axis(vals, order, axis=-1)


class DeviceScorer:
    """The bundle's ``topk`` graph with the matrix and the catalog's bias on a device."""

    kind = "topk"

    def __init__(self, catalog: Catalog, session, device: str, _items=None) -> None:
        self.catalog = catalog
        self.session = session
        self.device = device
        half = next(i for i in session.get_inputs() if i.name == "items").type.endswith("16)")
        self.dtype = np.float16 if half else np.float32
        matrix = catalog.matrix if catalog.matrix.dtype == self.dtype else catalog.float_matrix
        self._items = _items or ort.OrtValue.ortvalue_from_numpy(
            np.ascontiguousarray(matrix, self.dtype), device, 0
        )
        self._bias = ort.OrtValue.ortvalue_from_numpy(catalog.bias.astype(self.dtype), device, 0)

    def with_catalog(self, catalog: Catalog) -> DeviceScorer:
        same = catalog.matrix is self.catalog.matrix
        return DeviceScorer(catalog, self.session, self.device, self._items if same else None)

    def topk(
        self, users: np.ndarray, k: int, bias: np.ndarray, excluded: np.ndarray
    ) -> list[Result]:
        out: list[Result] = []
        want = np.array([min(self.catalog.n_rows, k)], np.int64)
        step = _user_chunks(len(users), 4 * (int(want[0]) + 64))
        for start in range(0, len(users), step):
            io = self.session.io_binding()
            io.bind_cpu_input("user", np.ascontiguousarray(users[start : start + step]))
            io.bind_ortvalue_input("items", self._items)
            if bias is self.catalog.bias:
                io.bind_ortvalue_input("bias", self._bias)
            else:  # the request's own bias (candidates, exclude)
                io.bind_cpu_input("bias", bias.astype(self.dtype))
            io.bind_cpu_input("excluded", np.ascontiguousarray(excluded[start : start + step]))
            io.bind_cpu_input("k", want)
            io.bind_output("values", "cpu")
            io.bind_output("indices", "cpu")
            self.session.run_with_iobinding(io)
            values, indices = io.copy_outputs_to_cpu()
            indices, values = best_first(indices, values)
            for r, v in zip(indices, values, strict=True):
                keep = v > NEG_INF
                out.append((r, v) if keep.all() else (r[keep], v[keep]))
        return out
