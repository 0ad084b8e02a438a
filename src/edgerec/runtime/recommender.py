"""``Recommender``: a verified bundle, its onnxruntime sessions and the current catalog.

Load once and share: every method may be called from many threads at once. A call reads
the current catalog snapshot (``_state``) once and works only on it; ``add_items`` and
``remove_items`` build a new snapshot and publish it with one assignment, so a
concurrent call sees the catalog entirely before or entirely after an update.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path

import numpy as np

from edgerec.errors import BundleError, EdgerecError, UnknownItemError
from edgerec.features import GAP_PAD, gap_buckets
from edgerec.runtime import inputs as I
from edgerec.runtime.bundle import (
    REQUEST_INPUT,
    BundleData,
    Manifest,
    check_onnx,
    check_text_encoder,
    check_user_encoder,
    load_bundle,
    read_verified,
)
from edgerec.runtime.catalog import Catalog
from edgerec.runtime.fused import MAX_ROWS as MAX_FUSED_ROWS
from edgerec.runtime.fused import OUTPUTS as FUSED_OUTPUTS
from edgerec.runtime.fused import REQUEST as FUSED_REQUEST
from edgerec.runtime.fused import (
    UP_TO_WINDOW,
    full_window_widths,
    fused_graphs,
    plan_width,
    ranked,
    request_array,
    scoring_feeds,
    widened,
)
from edgerec.runtime.providers import (
    CPU,
    ProviderPlan,
    active_device,
    create_session,
    fast_run,
    plan_providers,
)
from edgerec.runtime.results import (
    Driver,
    EventInfluence,
    Explanation,
    ItemExplanation,
    Recommendation,
    RecommendationList,
    UserVector,
)
from edgerec.runtime.scoring import Int8Scorer, NumpyScorer, OrtTopKScorer, row_bias, top_k
from edgerec.runtime.tokenize import TextTokenizer

SCORINGS = ("auto", "numpy", "int8", "ort-topk")
USER_ENCODER_PLACEMENTS = ("auto", "cpu", "device")
# On a GPU recommender, batches of fewer histories than this encode on the CPU. Measured
# on a lent H200 with 16 Xeon cores (benchmarks/gpu_checks.py, user-encoder placement):
# encoding 1 / 8 / 64 / 256 histories of up to 50 events took 0.08 / 0.29 / 1.15 / 3.50
# ms on the CPU and 0.98 / 1.97 / 2.59 / 3.26 ms on the GPU, whose Bi-LSTM runs its 50
# steps one launch after another whatever the batch.
GPU_ENCODE_MIN_BATCH = 256
INT8_MIN_ROWS = 100_000  # below this an exact float32 GEMV is as fast as a quantized path
_ENCODE_BATCH = 256  # histories per user-encoder run
_TEXT_BATCH = 64  # texts per text-encoder run
_EMPTY = np.zeros(0, dtype=np.int64)
_USER_OUTPUTS = ["user", "gate", "attention"]
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class _UserSession:
    """A user-encoder session and how its inputs are fed (they differ by device)."""

    session: object  # onnxruntime.InferenceSession
    run: Callable
    device: str  # "cpu" or "cuda"
    file: str
    static_table: int | None  # rows of a fixed-size item_table input (old exports)
    direct_table: bool  # the catalog's float32 matrix can be fed as item_table in place
    batch: int  # histories per run


@dataclass(frozen=True)
class _State:
    catalog: Catalog
    scorer: object
    by_popularity: np.ndarray  # active rows, most popular first (ties by row)
    bias: np.ndarray | None  # the fused session's row bias (None: no fused scoring)


def _check_users(user: np.ndarray) -> None:
    # one reduction on the usual path: a sum is finite only if every element is
    if not math.isfinite(float(user.sum())) and not np.isfinite(user).all():
        raise EdgerecError("the user encoder produced non-finite user vectors")


_new_tuple = tuple.__new__
# exclude= rows dropped after a fused top-(k + their number); more go in a row bias
# (``Recommender._fused_masks``)
MAX_FUSED_EXCLUDED = 256


def _recommendations(cat: Catalog, rows: list[int], scores: list[float]) -> list:
    """``Recommendation`` of each (row, score), in order.

    Built by ``tuple.__new__`` through C-level maps: what ``Recommendation._make`` does,
    without a Python call per item (10 results: ~5 against ~8 us in a tight loop).
    """
    ids, titles = cat.labels
    return list(
        map(
            _new_tuple,
            repeat(Recommendation),
            zip(map(ids.__getitem__, rows), scores, map(titles.__getitem__, rows), strict=True),
        )
    )


class Recommender:
    """Next-item recommendations from an edgerec bundle with onnxruntime and numpy only.

    >>> rec = Recommender.load("bundle/")
    >>> recs = rec.recommend([50, 172, 133], k=10)
    >>> [(r.item_id, r.title) for r in recs], recs.gate
    """

    def __init__(
        self,
        data: BundleData,
        plan: ProviderPlan,
        threads: int | None,
        scoring: str,
        precision_fixed: bool,
        user_encoder: str = "auto",
        fuse_topk: bool = True,
    ) -> None:
        m = data.manifest
        self.manifest: Manifest = m
        self.path: Path = data.root
        self.threads = threads
        self._write_lock = threading.Lock()
        self._behaviours = I.BehaviourMap(m.behaviour_vocab, m.default_behaviour)
        self._positions = np.arange(m.dims.max_len + 1, dtype=np.int64)[None, :]
        self._zero_gaps = gap_buckets(
            np.zeros((1, m.dims.max_len), np.int64), np.array([m.dims.max_len])
        )
        self._zero_gaps.flags.writeable = False

        ue_file = data.graph_files["user_encoder"]
        ue_blob = data.graph_bytes["user_encoder"]
        session = create_session(ue_blob, ue_file, plan.requested, threads, user_encoder=True)
        self.device = active_device(session, plan, ue_file)
        precision = data.precision
        if self.device == "cpu" and precision == "fp16" and not precision_fixed:
            alt = self._cpu_variant(data)
            if alt is not None:
                precision, ue_file, ue_blob = alt
                session = create_session(ue_blob, ue_file, [CPU], threads, user_encoder=True)
        self.precision = precision
        self._table_input = check_user_encoder(session, ue_file, m)
        self._encodable = None if self._table_input else m.dims.n_items + 1
        self._user_main = self._user_session(session, ue_file, data, self.device)
        self.graph_files = {"user_encoder": ue_file}
        # small batches on a GPU recommender encode on the CPU (GPU_ENCODE_MIN_BATCH)
        self._user_small: _UserSession | None = None
        if self.device == "cuda" and user_encoder in ("auto", "cpu"):
            alt = self._cpu_variant(data) or (precision, ue_file, data.graph_bytes["user_encoder"])
            cpu_session = create_session(alt[2], alt[1], [CPU], threads, user_encoder=True)
            if check_user_encoder(cpu_session, alt[1], m) != self._table_input:
                raise BundleError(f"{alt[1]}: its inputs differ from {ue_file}'s")
            self._user_small = self._user_session(cpu_session, alt[1], data, "cpu")
        self._small_max = (
            0
            if self._user_small is None
            else (1 << 62 if user_encoder == "cpu" else GPU_ENCODE_MIN_BATCH - 1)
        )
        self.user_encoder = user_encoder
        self._request_input = m.request_time  # load checked the graph takes request_gaps
        self.providers: tuple[str, ...] = tuple(session.get_providers())

        self._text = None
        self._tokenizer = None
        if "text_encoder" in data.graph_files:
            te_file = data.graph_files["text_encoder"]
            self._text = create_session(
                data.graph_bytes["text_encoder"], te_file, self.providers, threads
            )
            self._text_inputs = check_text_encoder(self._text, te_file, m)
            self._tokenizer = TextTokenizer(
                data.tokenizer_json or "", m.dims.text_max_length, m.tokenizer or "tokenizer"
            )
            self.graph_files["text_encoder"] = te_file

        catalog, scorer = self._build_catalog(data, scoring)
        self.scoring = scorer.kind
        # The dynamic fused session (any width), and REQUEST width -> run of the session
        # for it: one with that width fixed (full_window_widths), or for the widths below
        # the window one dynamic session that reads every column (UP_TO_WINDOW). The
        # dynamic one answers the widths left. 50-event MovieLens requests, sessions
        # fixed vs dynamic (alternating blocks of 25, three rounds per run): -2.2 to
        # -13.4 us per recommend() over four runs toggled on one recommender, -16.2 to
        # +6.1 us over four runs of two recommenders.
        self._fused: _UserSession | None = None
        self._fused_runs: dict[int | str, Callable] = {}  # str: UP_TO_WINDOW, at load
        if fuse_topk and self._can_fuse(scorer.kind):
            short = (UP_TO_WINDOW,) if m.dims.max_len > 1 else ()  # widths below the window
            widths = (*short, *full_window_widths(m.dims.max_len))
            graphs = fused_graphs(ue_blob, m.dims.max_len, [None, *widths])
            self._fused = self._fused_session(graphs.get(None), ue_file)
            if self._fused is not None:
                for width in widths:
                    fixed = self._fused_session(graphs.get(width), ue_file)
                    if fixed is not None:
                        self._fused_runs[width] = fixed.run  # checked by _smoke_test
        self._state_ref = self._new_state(catalog, scorer)
        self._smoke_test()

    # --- construction -----------------------------------------------------------------

    @classmethod
    def load(
        cls,
        path: str | Path,
        providers: str | Sequence[str] = "auto",
        threads: int | None = None,
        precision: str | None = None,
        scoring: str = "auto",
        user_encoder: str = "auto",
        fuse_topk: bool = True,
    ) -> Recommender:
        """Verify and load a bundle directory.

        - ``providers``: ``"auto"`` (CUDA when onnxruntime-gpu is installed *and* a session
          really runs on it, else CPU), ``"cpu"``, ``"cuda"`` (raises ``ProviderError`` if
          it cannot be honoured) or a list of onnxruntime provider names.
        - ``threads``: intra-op threads of the onnxruntime sessions (None: its default).
          numpy's BLAS follows OPENBLAS_NUM_THREADS / OMP_NUM_THREADS.
        - ``precision``: graph variant, ``"fp32"``, ``"int8"`` or ``"fp16"``; None takes
          the bundle's default (on CPU an fp16 default gives way to int8 or fp32).
        - ``scoring``: ``"auto"`` (on CPU a float32 BLAS GEMV below 100k items, and from
          100k items an int8 onnxruntime shortlist whose candidates are rescored exactly
          -- the same answers at a quarter of the memory traffic; on CUDA scoring and
          top-k on the device), or force ``"numpy"``, ``"int8"`` or ``"ort-topk"``.
        - ``user_encoder``: where a GPU recommender runs the user tower. ``"auto"``: on
          the CPU for calls of fewer than ``GPU_ENCODE_MIN_BATCH`` histories (a single
          history's 50 sequential LSTM steps are launch-bound on a GPU), on the GPU for
          larger batches; ``"cpu"`` or ``"device"`` force one. Scoring stays on the GPU.
          Ignored on a CPU recommender.
        - ``fuse_topk``: on a CPU recommender scoring with numpy (catalogs below
          ``edgerec.runtime.fused.MAX_ROWS`` rows), a single-history ``recommend()``
          scores and takes the top k inside the user encoder's onnxruntime run
          (``fused_topk`` says whether it does). The answers are the same; False keeps
          the two steps apart, for A/B measurements.

        Raises ``BundleError`` naming the file for anything wrong with the bundle.
        """
        if not isinstance(scoring, str) or scoring not in SCORINGS:
            raise ValueError(f"scoring must be one of {SCORINGS}, got {scoring!r}")
        if precision is not None and not isinstance(precision, str):
            raise ValueError(f"precision must be a string or None, got {precision!r}")
        if not isinstance(user_encoder, str) or user_encoder not in USER_ENCODER_PLACEMENTS:
            raise ValueError(
                f"user_encoder must be one of {USER_ENCODER_PLACEMENTS}, got {user_encoder!r}"
            )
        fuse_topk = I.check_flag(fuse_topk, "fuse_topk")
        plan = plan_providers(providers)
        guess = "cuda" if plan.requested[0] != CPU else "cpu"
        data = load_bundle(path, precision=precision, device=guess)
        return cls(
            data,
            plan,
            threads,
            scoring,
            precision is not None,
            user_encoder=user_encoder,
            fuse_topk=fuse_topk,
        )

    @staticmethod
    def _cpu_variant(data: BundleData) -> tuple[str, str, bytes] | None:
        """(precision, file, bytes) of the user-encoder variant made for the CPU, if any:
        an fp16 graph runs slower on the CPU than the fp32/int8 one it was cast from."""
        m = data.manifest
        for alt in ("int8", "fp32"):
            if alt in m.graphs["user_encoder"]:
                file = m.graphs["user_encoder"][alt]
                blob = read_verified(data.root, file, m.files[file])
                check_onnx(blob, file)
                return alt, file, blob
        return None

    def _user_session(self, session, file: str, data: BundleData, device: str) -> _UserSession:
        table_shape = next((i.shape for i in session.get_inputs() if i.name == "item_table"), None)
        static = table_shape[0] if table_shape and isinstance(table_shape[0], int) else None
        # A dynamically quantized user encoder (older bundles' int8 variant; export now
        # keeps it fp32, see edgerec.export.pipeline) takes activation ranges over the
        # whole input: in a padded batch one history's vector would depend on the
        # others'. Such graphs encode one history per run, so a batch answers exactly
        # like single calls.
        quantized = data.graph_metadata.get(file, {}).get("precision") == "int8"
        return _UserSession(
            session=session,
            run=fast_run(session),
            device=device,
            file=file,
            static_table=static,
            direct_table=device == "cpu" and static is None,
            batch=1 if quantized else _ENCODE_BATCH,
        )

    def _new_state(self, catalog: Catalog, scorer) -> _State:
        rows = np.flatnonzero(catalog.active)
        order = np.lexsort((rows, -catalog.popularity[rows]))
        bias = None
        if self._fused is not None and catalog.n_rows <= MAX_FUSED_ROWS:
            bias = row_bias(catalog)
            bias.flags.writeable = False  # shared by every call on this snapshot
        return _State(catalog, scorer, rows[order], bias)

    def _can_fuse(self, scoring: str) -> bool:
        """Whether single histories can score inside the user encoder's run
        (``edgerec.runtime.fused``): a CPU recommender that scores float32 rows with numpy
        and feeds its catalog matrix to the user encoder as is."""
        usable = self._table_input and self._user_main.direct_table
        return self.device == "cpu" and scoring == "numpy" and bool(usable)

    def _fused_session(self, graph: bytes | None, file: str) -> _UserSession | None:
        """A session of one of ``fused_graphs``'s graphs (None where there is none)."""
        if graph is None:
            return None
        try:
            session = create_session(
                graph, file, [CPU], self.threads, user_encoder=True, arena=False
            )
        except BundleError:  # the graph itself loaded: keep separate scoring
            return None
        return _UserSession(
            session=session,
            run=fast_run(session),
            device="cpu",
            file=file,
            static_table=None,
            direct_table=True,
            batch=1,
        )

    def _user_for(self, n_histories: int) -> _UserSession:
        if n_histories <= self._small_max:
            return self._user_small  # type: ignore[return-value]
        return self._user_main

    def _build_catalog(self, data: BundleData, scoring: str):
        items, scale = data.items, data.scale
        n_rows = items.shape[0]
        ids, titles = data.item_ids.ids, data.item_ids.titles
        if scoring == "auto":
            if self.device == "cuda":
                scoring = "ort-topk"
            elif n_rows >= INT8_MIN_ROWS:
                scoring = "int8"
            else:
                scoring = "numpy"

        def fp32() -> np.ndarray:
            if scale is not None:
                return items.astype(np.float32) * scale[:, None]
            return items if items.dtype == np.float32 else items.astype(np.float32)

        if scoring == "numpy":
            cat = Catalog.create(fp32(), None, ids, titles, data.popularity, data.item_ids.id_type)
            return cat, NumpyScorer(cat)
        if scoring == "int8":
            if self.device == "cuda":
                raise ValueError("scoring='int8' is a CPU path; use 'auto' or 'ort-topk' on CUDA")
            # rows stay as stored (float32, float16 or int8): exact rescoring reads them
            cat = Catalog.create(items, scale, ids, titles, data.popularity, data.item_ids.id_type)
            return cat, Int8Scorer(cat, self.threads)
        # ort-topk: float16 where the bundle stored less than float32, float32 otherwise
        m = items if items.dtype != np.int8 else fp32().astype(np.float16)
        cat = Catalog.create(m, None, ids, titles, data.popularity, data.item_ids.id_type)
        try:
            scorer = OrtTopKScorer(cat, self.providers, self.threads, self.device)
        except BundleError:
            raise
        except Exception as e:
            raise EdgerecError(
                f"cannot place the item matrix on {self.device} ({type(e).__name__}: {e})"
            ) from None
        return cat, scorer

    def _smoke_test(self) -> None:
        """Run each graph once: a graph that loads but cannot run fails here, not later."""
        cat = self._state_ref.catalog
        row = int(np.flatnonzero(cat.active)[0]) if cat.n_active else 1
        prep = I.Prepared(
            rows=np.array([row], np.int64),
            behaviours=np.array([self._behaviours.default], np.int64),
            timestamps=np.zeros(1, np.int64),
            positions=np.zeros(1, np.int64),
            seen=np.array([row], np.int64),
            unknown=(),
            n_events=1,
        )
        for enc in filter(None, (self._user_main, self._user_small)):
            try:
                users, gates, att = self._encode_chunk(cat, [prep], 1, enc)
            except EdgerecError:
                raise
            except Exception as e:
                raise BundleError(
                    f"{enc.file}: the graph fails on a one-event history ({e})"
                ) from None
            dim = self.manifest.dims.dim
            if users.shape != (1, dim) or gates.shape != (1,) or att.shape[0] != 1:
                raise BundleError(
                    f"{enc.file}: outputs have shapes user {users.shape}, gate {gates.shape}, "
                    f"attention {att.shape}; expected (1, {dim}), (1,), (1, L)"
                )
        if self._fused is not None:
            self._smoke_test_fused(prep)
        if self._text is not None:
            name = self.graph_files["text_encoder"]
            try:
                vec = self._encode_texts(["smoke test"])
            except EdgerecError:
                raise
            except Exception as e:
                raise BundleError(f"{name}: the graph fails on a short text ({e})") from None
            if vec.shape != (1, self.manifest.dims.dim):
                raise BundleError(
                    f"{name}: item_vector has shape {vec.shape}, expected (1, {self.manifest.dims.dim})"
                )

    def _smoke_test_fused(self, prep: I.Prepared) -> None:
        """The fused session must answer like separate scoring; if it cannot run or
        disagrees (an onnxruntime whose TopK orders differently), single calls keep
        separate scoring and ``fused_topk`` is False."""
        state = self._state_ref
        cat = state.catalog
        k = min(cat.n_rows, 20)
        try:
            got_rows, got_scores, _ = self._fused_topk(cat, state.bias, prep, k, _EMPTY)
            users, _, _ = self._encode_chunk(cat, [prep], len(prep.rows))
            ((rows, scores),) = state.scorer.topk(users, k, [_EMPTY])
            same = np.array_equal(rows, got_rows) and np.allclose(
                scores, got_scores, rtol=1e-5, atol=1e-6
            )
        except EdgerecError:
            raise
        except Exception:  # onnxruntime's own error types
            same = False
        if not same:
            self._fused = None
            self._fused_runs = {}
            self._state_ref = self._new_state(cat, state.scorer)
            return
        self._smoke_test_fixed_widths(cat, state.bias)

    def _smoke_test_fixed_widths(self, cat: Catalog, bias: np.ndarray) -> None:
        """Each fixed-width session must answer a full-window request of its width as the
        dynamic session does, and the ``UP_TO_WINDOW`` one a request one event short of
        the window; one that cannot run or differs is dropped (its requests then run on
        the dynamic session). The ``UP_TO_WINDOW`` session then serves every width below
        the window."""
        max_len = self.manifest.dims.max_len
        k = min(cat.n_rows, 20)
        active = np.flatnonzero(cat.active)
        rows = active if len(active) else np.ones(1, np.int64)  # row 1 of an empty catalog
        for width, run in list(self._fused_runs.items()):
            cols = max_len - 1 if width == UP_TO_WINDOW else width
            n_read = min(cols, max_len)
            request = request_array(
                rows[np.arange(n_read) % len(rows)],
                np.full(n_read, self._behaviours.default, np.int64),
                np.arange(n_read, dtype=np.int64) * 3600,
                rows[np.arange(cols) % len(rows)],
                max_len,
            )
            feeds = self._fused_feeds(request, cat, bias, k, GAP_PAD)
            try:
                want = self._fused.run(FUSED_OUTPUTS, feeds)
                got = run(FUSED_OUTPUTS, feeds)
                same = (
                    request.shape[1] == cols
                    and all(
                        a.shape == b.shape and np.allclose(a, b, rtol=1e-5, atol=1e-6)
                        for a, b in zip(want, got, strict=True)
                    )
                    and np.array_equal(want[1], got[1])
                )
            except Exception:  # onnxruntime's own error types
                same = False
            if not same:
                del self._fused_runs[width]
        short = self._fused_runs.pop(UP_TO_WINDOW, None)
        if short is not None:
            self._fused_runs.update(dict.fromkeys(range(1, max_len), short))

    # --- properties -------------------------------------------------------------------

    @property
    def fused_topk(self) -> bool:
        """Whether single-history calls score inside the user encoder's run (``load``)."""
        return self._fused is not None

    @property
    def n_items(self) -> int:
        """Items that can be recommended now (bundle items + added - removed)."""
        return self._state_ref.catalog.n_active

    @property
    def dim(self) -> int:
        return self.manifest.dims.dim

    @property
    def max_len(self) -> int:
        return self.manifest.dims.max_len

    @property
    def can_add_items(self) -> bool:
        return self._text is not None

    def __contains__(self, item_id: object) -> bool:
        cat = self._state_ref.catalog
        try:
            rows, _ = I.lookup([item_id], cat, "item_id")
        except ValueError:
            return False
        return bool(rows[0] > 0 and cat.active[rows[0]])

    def __repr__(self) -> str:
        return (
            f"Recommender({str(self.path)!r}, items={self.n_items}, dim={self.dim}, "
            f"precision={self.precision!r}, providers={list(self.providers)}, "
            f"scoring={self.scoring!r}"
            + (", fused_topk=True" if self._fused is not None else "")
            + (f", user_encoder={self.user_encoder!r})" if self.device == "cuda" else ")")
        )

    # --- encoding ---------------------------------------------------------------------

    def _prepare(
        self, cat: Catalog, history, behaviours, timestamps, strict: bool, now=None
    ) -> I.Prepared:
        return I.prepare(
            history,
            behaviours,
            timestamps,
            cat,
            self._behaviours,
            self.manifest.dims.max_len,
            strict,
            self._encodable,
            now,
        )

    def _encode(self, cat: Catalog, preps: list[I.Prepared]):
        """User vectors, gates and attention of non-empty histories (in chunks)."""
        users, gates, atts = [], [], []
        width = max(len(p.rows) for p in preps)
        enc = self._user_for(len(preps))
        step = enc.batch
        for start in range(0, len(preps), step):
            u, g, a = self._encode_chunk(cat, preps[start : start + step], width, enc)
            users.append(u)
            gates.append(g)
            atts.append(a if a.shape[1] == width else np.pad(a, ((0, 0), (0, width - a.shape[1]))))
        if len(users) == 1:
            return users[0], gates[0], atts[0]
        return np.concatenate(users), np.concatenate(gates), np.concatenate(atts)

    def _encode_chunk(
        self, cat: Catalog, preps: list[I.Prepared], width: int, enc: _UserSession | None = None
    ):
        enc = enc or self._user_for(len(preps))
        user, gate, att = enc.run(_USER_OUTPUTS, self._user_feeds(cat, preps, width, enc))
        _check_users(user)
        return user, gate.reshape(-1), att

    def _user_feeds(
        self, cat: Catalog, preps: list[I.Prepared], width: int, enc: _UserSession
    ) -> dict:
        b = len(preps)
        if b == 1:
            p = preps[0]
            rows, beh, ts = p.rows[None, :], p.behaviours[None, :], p.timestamps[None, :]
            lengths = I.int_feed(rows.shape[1])
        else:
            lengths = np.fromiter((len(p.rows) for p in preps), np.int64, count=b)
            rows = np.zeros((b, width), np.int64)
            beh = np.zeros((b, width), np.int64)
            ts = np.zeros((b, width), np.int64)
            for j, p in enumerate(preps):
                n = len(p.rows)
                rows[j, :n] = p.rows
                beh[j, :n] = p.behaviours
                ts[j, :n] = p.timestamps
        if b == 1 and not p.timed:  # no timestamps: the gaps only depend on the length
            gaps = self._zero_gaps[:, : rows.shape[1]]
        else:
            gaps = gap_buckets(ts, lengths)
        feeds = {"behaviours": beh, "gaps": gaps, "lengths": lengths}
        if self._request_input:
            feeds[REQUEST_INPUT] = (
                I.int_feed(p.request_gap)
                if b == 1
                else np.array([p.request_gap for p in preps], np.int64)
            )
        if not self._table_input:
            feeds["items"] = rows
        elif enc.direct_table and cat.scale is None and cat.matrix.dtype == np.float32:
            # on CPU onnxruntime reads a float32 numpy input in place: the catalog
            # matrix goes in as it is (any size), and the graph gathers the history rows
            feeds["items"] = rows
            feeds["item_table"] = cat.matrix
        elif b == 1 and enc.static_table is None:
            # a compact table of just the rows this history reads (the matrix may be
            # int8 or float16 here, or on a device): equal to passing the whole matrix,
            # since the graph only gathers from it
            n_used = rows.shape[1]
            table = np.empty((n_used + 1, cat.dim), np.float32)
            table[0] = 0.0
            table[1:] = cat.vectors(rows[0])
            feeds["items"] = self._positions[:, 1 : n_used + 1]
            feeds["item_table"] = table
        else:
            valid = rows > 0
            n_used = int(np.count_nonzero(valid))
            table_rows = n_used + 1 if enc.static_table is None else enc.static_table
            if table_rows < n_used + 1:
                raise EdgerecError(
                    "this bundle's user encoder has a fixed-size item table; encode "
                    "fewer histories per call"
                )
            table = np.zeros((table_rows, cat.dim), np.float32)
            table[1 : n_used + 1] = cat.vectors(rows[valid])
            local = np.zeros(rows.shape, np.int64)
            local[valid] = np.arange(1, n_used + 1)
            feeds["items"] = local
            feeds["item_table"] = table
        return feeds

    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        """Item vectors of ``texts``; batches group texts of similar length, so little
        compute goes to padding (the graph pools over the attention mask)."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors = np.zeros((len(texts), self.dim), np.float32)
        for start in range(0, len(texts), _TEXT_BATCH):
            idx = order[start : start + _TEXT_BATCH]
            tokens = self._tokenizer([texts[i] for i in idx])
            feeds = {name: tokens[name] for name in self._text_inputs}
            (vec,) = self._text.run(["item_vector"], feeds)
            vectors[idx] = vec
        if not np.isfinite(vectors).all():
            raise EdgerecError("the text encoder produced non-finite item vectors")
        return vectors.astype(np.float32, copy=False)

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
        """The ``k`` best next items for one history, best first.

        - ``history``: original item ids, oldest first (list, tuple, 1-D array or any
          finite iterable). Unknown ids are skipped and listed in ``unknown_items``
          (``strict=True`` raises ``UnknownItemError`` naming them instead). Only the
          latest ``max_len`` known events are read; all of them count as seen.
        - An empty history (or one with no known id) returns the most popular items,
          flagged ``fallback="popularity"``.
        - ``k``: a positive int (``ValueError`` otherwise, bools included); more than the
          catalog returns the whole eligible catalog.
        - ``behaviours``/``timestamps``: one per event (see ``edgerec.runtime.inputs``);
          NaN/inf timestamps or wrong types raise ``ValueError`` naming the argument.
        - ``candidates``: only rank these ids; ``exclude``: never return these ids
          (unknown ids in either are ignored). ``exclude_seen`` drops history items.
        - ``now``: the request time in seconds on the clock of ``timestamps``. Bundles
          whose gate reads it (``request_time`` models) lean long-term when the request
          opens a new session and short-term inside one; without ``now`` or timestamps
          they treat the time as unknown. Other bundles ignore it.
        """
        k = I.check_k(k)
        exclude_seen = I.check_flag(exclude_seen, "exclude_seen")
        strict = I.check_flag(strict, "strict")
        state = self._state_ref
        if state.bias is not None:
            if candidates is None and exclude is None:
                found = self._recommend_usual(
                    state, history, behaviours, timestamps, k, exclude_seen, now, strict
                )
            else:
                masks = self._fused_masks(state, candidates, exclude)
                found = None
                if masks is not None:
                    found = self._recommend_usual(
                        state, history, behaviours, timestamps, k, exclude_seen, now, strict, *masks
                    )
            if found is not None:
                return found
        prep = self._prepare(state.catalog, history, behaviours, timestamps, strict, now)
        if candidates is not None or exclude is not None or not len(prep.rows):
            return self._recommend(state, [prep], k, exclude_seen, candidates, exclude)[0]
        # the common request, without the batch bookkeeping of _recommend (same answer)
        cat = state.catalog
        seen = prep.seen if exclude_seen else _EMPTY
        if state.bias is not None:
            rows, scores, gate = self._fused_topk(cat, state.bias, prep, k, seen)
        else:
            users, gates, _ = self._encode_chunk(cat, [prep], len(prep.rows))
            ((found, found_scores),) = state.scorer.topk(users, k, [seen])
            rows, scores, gate = found.tolist(), found_scores.tolist(), float(gates[0])
        return RecommendationList(
            _recommendations(cat, rows, scores),
            gate=gate,
            unknown_items=prep.unknown,
            n_events=prep.n_events,
            n_used=len(prep.rows),
        )

    @staticmethod
    def _fused_masks(
        state: _State, candidates, exclude
    ) -> tuple[set[int] | None, np.ndarray | None] | None:
        """How a fused run leaves out ``exclude`` and keeps only ``candidates``: (rows
        to drop from a top-(k + their number), None) for up to ``MAX_FUSED_EXCLUDED``
        excluded ids without candidates, else (None, a row bias of the request's own:
        the catalog's bias at the candidates' rows -- every row without candidates --,
        -inf everywhere else and at the excluded rows). None for an argument the general
        path must read or name (it checks the history first): only lists, tuples and
        arrays are read here, since reading an iterator would leave the general path none.

        Why: ranking a shortlist is the usual shape of a candidates request, and the
        general path pays for the request's checks and a separate user-encoder run: 100
        candidates with a 50-event MovieLens history took 328 us against 517 us there
        (int8 bundle, 20 paired rounds of 200 calls toggled on one recommender); 5
        excluded ids, 188 us less. Answers match it: ``id_rows`` gives sorted unique rows,
        so its ties already fall to the lower row, as TopK's do.
        """
        kinds = (list, tuple, np.ndarray)
        for value in (candidates, exclude):
            if value is not None and type(value) not in kinds:
                return None
        cat = state.catalog
        try:
            rows = I.id_rows(candidates, cat, "candidates") if candidates is not None else None
            dropped = I.id_rows(exclude, cat, "exclude") if exclude is not None else _EMPTY
        except ValueError:
            return None
        if rows is None and dropped.size <= MAX_FUSED_EXCLUDED:
            return set(dropped.tolist()), None
        if rows is None:
            bias = state.bias.copy()
        else:
            bias = np.full(cat.n_rows, -np.inf, np.float32)
            bias[rows] = state.bias[rows]
        bias[dropped] = -np.inf
        return None, bias

    def _recommend_usual(
        self,
        state: _State,
        history,
        behaviours,
        timestamps,
        k: int,
        exclude_seen: bool,
        now,
        strict: bool = False,
        excluded: set[int] | None = None,
        bias: np.ndarray | None = None,
    ) -> RecommendationList | None:
        """``recommend()`` of the usual request (``I.usual_stack``) in one fused run, or
        None for any other request (the general path then answers it, identically).

        Why a path of its own: after the model's run every distinct numpy operation
        pays again for the caches the run took, so this one feeds the request's single
        array (or a view of it), whose rows the graph splits and buckets itself, and
        skips the ``Prepared`` record (a prototype of it took 9% less time per call than
        the general path, interleaved A/B). ``tests/test_runtime_fused.py`` pins its
        answers to separate scoring's over random requests. ``excluded``: rows dropped
        from a top-(k + their number); ``bias``: this request's row bias in place of the
        catalog's (``_fused_masks``).
        """
        cat = state.catalog
        max_len = self.manifest.dims.max_len
        args = (history, behaviours, timestamps, cat, self._behaviours, max_len, exclude_seen)
        arr = I.usual_stack(*args)
        dropped = None
        if arr is None:  # once more, leaving out unknown ids (the general path: 137 us more)
            if strict:  # UnknownItemError comes from the general path
                return None
            dropped = I.Dropped()
            arr = I.usual_stack(*args, dropped=dropped)
            if arr is None:
                return None
        n = arr.shape[1]
        if n > max_len:
            arr = widened(arr, plan_width(n, max_len))
        request = None if now is None else I.request_time(now)  # checked even if unused
        gap = GAP_PAD
        if self._request_input and request is not None and timestamps is not None:
            # the last event read is the last one kept, in whole seconds (floats floored)
            last = dropped.last_time if dropped is not None else math.floor(timestamps[n - 1])
            gap = I.request_gap_bucket([last], 1, request, True)
        if bias is None:
            bias = state.bias
        if not excluded:
            rows, scores, gate = self._fused_answer(self._fused_feeds(arr, cat, bias, k, gap))
        else:  # the best k + |excluded| with the seen rows masked, less the excluded ones
            feeds = self._fused_feeds(arr, cat, bias, k + len(excluded), gap)
            rows, scores, gate = self._fused_answer(feeds)
            kept = [i for i, row in enumerate(rows) if row not in excluded][:k]
            rows, scores = [rows[i] for i in kept], [scores[i] for i in kept]
        unknown = dropped.unknown if dropped is not None else ()
        return RecommendationList(
            _recommendations(cat, rows, scores),
            gate=gate,
            unknown_items=unknown,
            n_events=n + len(unknown),
            n_used=min(n, max_len),
        )

    def _fused_topk(
        self, cat: Catalog, bias: np.ndarray, prep: I.Prepared, k: int, seen: np.ndarray
    ) -> tuple[list[int], list[float], float]:
        """(rows, scores, gate) of one history from one run of the fused session."""
        request = request_array(
            prep.rows,
            prep.behaviours,
            prep.timestamps if prep.timed else None,
            seen,
            self.manifest.dims.max_len,
        )
        return self._fused_answer(self._fused_feeds(request, cat, bias, k, prep.request_gap))

    def _fused_feeds(
        self, request: np.ndarray, cat: Catalog, bias: np.ndarray, k: int, request_gap: int
    ) -> dict:
        """A fused run's feeds: the ``REQUEST`` array, the catalog, scoring inputs and, for
        a bundle whose gate reads it, the bucket of the time to the request."""
        feeds = scoring_feeds({FUSED_REQUEST: request, "item_table": cat.matrix}, bias, k)
        if self._request_input:
            feeds[REQUEST_INPUT] = I.int_feed(request_gap)
        return feeds

    def _fused_answer(self, feeds: dict) -> tuple[list[int], list[float], float]:
        """(rows, scores, gate) from one run of the fused session on ``feeds``: the
        session of the request's width if it has one (a full window), else the dynamic
        one."""
        run = self._fused_runs.get(feeds[FUSED_REQUEST].shape[1]) or self._fused.run
        values, indices, user, gate = run(FUSED_OUTPUTS, feeds)
        rows, scores = ranked(values, indices)
        # A non-finite user vector makes every score non-finite (inf * x, inf * 0 and NaN
        # all are), so a finite best score proves the vector finite; the full check runs
        # only otherwise. The usual call skips a numpy reduction, the first numpy call
        # after the run, which cost ~3% of recommend() (interleaved A/B, 100 histories).
        if not (scores and math.isfinite(scores[0])):
            _check_users(user)
        return rows, scores, gate.item(0)

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
        """``recommend`` for many histories in one pass (same rules, same answers).

        ``behaviours``/``timestamps`` are None or one sequence per history (each may be
        None); ``now`` is None, one time for all or one per history;
        ``candidates``/``exclude`` apply to every history.
        """
        k = I.check_k(k)
        exclude_seen = I.check_flag(exclude_seen, "exclude_seen")
        strict = I.check_flag(strict, "strict")
        if isinstance(histories, np.ndarray) and histories.ndim == 2:
            histories = list(histories)  # one row per history
        hist = I.as_list(histories, "histories", I.MAX_BATCH)
        n = len(hist)

        def per_user(value, name):
            if value is None:
                return [None] * n
            values = I.as_list(value, name, I.MAX_BATCH)
            if len(values) != n:
                raise ValueError(f"{name} has {len(values)} entries for {n} histories")
            return values

        behs = per_user(behaviours, "behaviours")
        tss = per_user(timestamps, "timestamps")
        per_history = isinstance(now, Iterable) and not isinstance(now, str | bytes)
        nows = per_user(now, "now") if per_history else [now] * n
        state = self._state_ref
        # bounds on what one call may hold: the histories read, and the answers returned
        if n * min(k, state.catalog.n_active) > I.MAX_RESULTS:
            raise ValueError(
                f"{n} histories x k={k} would return more than {I.MAX_RESULTS} "
                "recommendations; split the batch or lower k"
            )
        if self._encodable is None:  # prepare's usual path: every catalog row encodable
            preps = I.usual_batch(
                hist, behs, tss, nows, state.catalog, self._behaviours, self.manifest.dims.max_len
            )
            if preps is not None:
                return self._recommend(state, preps, k, exclude_seen, candidates, exclude)
        preps = []
        events = 0
        for i, h in enumerate(hist):
            try:
                preps.append(self._prepare(state.catalog, h, behs[i], tss[i], strict, nows[i]))
            except UnknownItemError:
                raise
            except ValueError as e:
                raise ValueError(f"histories[{i}]: {e}") from None
            events += preps[-1].n_events
            if events > I.MAX_BATCH_EVENTS:
                raise ValueError(
                    f"histories hold more than {I.MAX_BATCH_EVENTS} events in total; "
                    "split the batch"
                )
        return self._recommend(state, preps, k, exclude_seen, candidates, exclude)

    def _recommend(
        self,
        state: _State,
        preps: list[I.Prepared],
        k: int,
        exclude_seen: bool,
        candidates,
        exclude,
    ) -> list[RecommendationList]:
        cat = state.catalog
        extra = I.id_rows(exclude, cat, "exclude") if exclude is not None else _EMPTY
        cand_rows = I.id_rows(candidates, cat, "candidates") if candidates is not None else None
        if cand_rows is not None:
            cand_rows = cand_rows[cat.active[cand_rows]]

        def excluded(p: I.Prepared) -> np.ndarray:
            if exclude_seen and p.seen.size:
                return np.union1d(p.seen, extra) if extra.size else p.seen
            return extra

        model_idx = [i for i, p in enumerate(preps) if len(p.rows)]
        found: dict[int, tuple] = {}
        if model_idx:
            users, gates, _ = self._encode(cat, [preps[i] for i in model_idx])
            excl = [excluded(preps[i]) for i in model_idx]
            if cand_rows is None:
                ranked = state.scorer.topk(users, k, excl)
            else:
                ranked = self._rank_candidates(cat, users, cand_rows, k, excl)
            for j, i in enumerate(model_idx):
                found[i] = (ranked[j], float(gates[j]))
        out = []
        for i, p in enumerate(preps):
            if i in found:
                (rows, scores), gate = found[i]
                fallback = None
            else:
                rows, scores = self._popular(state, k, excluded(p), cand_rows)
                gate, fallback = None, "popularity"
            out.append(
                RecommendationList(
                    _recommendations(cat, rows.tolist(), scores.tolist()),
                    gate=gate,
                    unknown_items=p.unknown,
                    fallback=fallback,
                    n_events=p.n_events,
                    n_used=len(p.rows),
                )
            )
        return out

    @staticmethod
    def _rank_candidates(cat: Catalog, users: np.ndarray, rows: np.ndarray, k: int, excl):
        vectors = cat.vectors(rows)
        scores = users @ vectors.T  # (users, candidates)
        out = []
        for j, ex in enumerate(excl):
            keep = ~np.isin(rows, ex) if ex.size else np.ones(rows.shape[0], bool)
            r, s = rows[keep], scores[j][keep]
            best = top_k(s, min(k, r.shape[0]))
            out.append((r[best], s[best]))
        return out

    @staticmethod
    def _popular(state: _State, k: int, ex: np.ndarray, cand_rows):
        order = state.by_popularity
        if cand_rows is not None:
            order = order[np.isin(order, cand_rows)]
        head = order[: k + ex.size]
        if ex.size:
            head = head[~np.isin(head, ex)]
        rows = head[:k]
        return rows, state.catalog.popularity[rows]

    # --- user vectors and explanations ------------------------------------------------

    def user_vector(
        self, history, behaviours=None, timestamps=None, strict: bool = False, now=None
    ) -> UserVector:
        """``(vector, gate)``: score an item yourself as ``item_vector @ vector``.

        Raises ``ValueError`` if the history has no known item (there is no vector to give).
        """
        strict = I.check_flag(strict, "strict")
        cat = self._state_ref.catalog
        prep = self._prepare(cat, history, behaviours, timestamps, strict, now)
        if not len(prep.rows):
            raise ValueError("history has no known item; there is no user vector for it")
        users, gates, _ = self._encode(cat, [prep])
        return UserVector(users[0].copy(), float(gates[0]))

    def explain(
        self,
        history,
        k: int = 10,
        behaviours=None,
        timestamps=None,
        exclude_seen: bool = True,
        strict: bool = False,
        n_drivers: int = 3,
        now=None,
    ) -> Explanation:
        """Why these recommendations: the gate (which horizon dominated), the long-term
        attention over the events read, and for each recommended item the history events
        whose item vectors are most similar to it (cosine)."""
        k = I.check_k(k)
        n_drivers = I.check_k(n_drivers, "n_drivers")
        exclude_seen = I.check_flag(exclude_seen, "exclude_seen")
        strict = I.check_flag(strict, "strict")
        state = self._state_ref
        cat = state.catalog
        prep = self._prepare(cat, history, behaviours, timestamps, strict, now)
        recs = self._recommend(state, [prep], k, exclude_seen, None, None)[0]
        if not len(prep.rows):
            items = tuple(ItemExplanation(r.item_id, r.title, r.score, ()) for r in recs)
            return Explanation(None, "popularity", (), items, prep.unknown)
        _, gates, att = self._encode(cat, [prep])
        gate = float(gates[0])
        n = len(prep.rows)
        window = self.manifest.dims.window
        events = tuple(
            EventInfluence(
                position=int(prep.positions[t]),
                item_id=cat.ids[prep.rows[t]],
                title=cat.titles[prep.rows[t]],
                attention=float(att[0, t]),
                in_short_window=t >= n - window,
            )
            for t in range(n)
        )
        hist_vec = cat.vectors(prep.rows)
        hist_vec = hist_vec / np.maximum(np.linalg.norm(hist_vec, axis=1, keepdims=True), 1e-12)
        rec_rows = [cat.index.get(r.item_id) for r in recs]
        rec_vec = cat.vectors(np.array(rec_rows, np.int64)) if rec_rows else np.zeros((0, self.dim))
        rec_vec = rec_vec / np.maximum(np.linalg.norm(rec_vec, axis=1, keepdims=True), 1e-12)
        sims = rec_vec @ hist_vec.T  # (items, events)
        items = []
        for i, r in enumerate(recs):
            order = np.lexsort((np.arange(n), -sims[i]))[:n_drivers]
            drivers = tuple(
                Driver(int(prep.positions[t]), cat.ids[prep.rows[t]], float(sims[i, t]))
                for t in order
            )
            items.append(ItemExplanation(r.item_id, r.title, r.score, drivers))
        horizon = "long-term" if gate >= 0.5 else "short-term"
        return Explanation(gate, horizon, events, tuple(items), prep.unknown)

    # --- catalog updates --------------------------------------------------------------

    def add_items(self, item_ids, texts, titles=None) -> int:
        """Cold start: encode ``texts`` with the bundle's text encoder and make the items
        recommendable at once. Returns the number added.

        Ids must be new (or previously removed, which brings them back with the new text
        vector); ids already in the catalog, duplicates, or a length mismatch raise
        ``ValueError``. ``titles`` defaults to None for each item.
        """
        if self._text is None:
            raise BundleError(
                f"{self.path}: this bundle has no text encoder, so items cannot be added"
            )
        ids = I.as_list(item_ids, "item_ids", I.MAX_IDS)
        txt = I.as_list(texts, "texts", I.MAX_IDS)
        if len(ids) != len(txt):
            raise ValueError(f"item_ids has {len(ids)} entries but texts has {len(txt)}")
        for i, t in enumerate(txt):
            if not isinstance(t, str):
                raise ValueError(f"texts[{i}] must be a str, got {type(t).__name__}")
            if _SURROGATE.search(t):  # the tokenizer takes UTF-8, which cannot hold one
                raise ValueError(f"texts[{i}] is not valid Unicode text (a lone surrogate)")
        ttl = [None] * len(ids) if titles is None else I.as_list(titles, "titles", I.MAX_IDS)
        if len(ttl) != len(ids):
            raise ValueError(f"titles has {len(ttl)} entries but item_ids has {len(ids)}")
        for i, t in enumerate(ttl):
            if t is not None and not isinstance(t, str):
                raise ValueError(f"titles[{i}] must be a str or None, got {type(t).__name__}")
        id_type = self._state_ref.catalog.id_type
        keys = [I._id_key(x, id_type, f"item_ids[{i}]") for i, x in enumerate(ids)]
        if id_type == "int":
            for i, key in enumerate(keys):
                if not isinstance(key, int):
                    raise ValueError(f"item_ids[{i}] = {ids[i]!r} is not an int id")
                if not -(2**63) <= key < 2**63:
                    raise ValueError(f"item_ids[{i}] = {key} does not fit in 64 bits")
        if len(set(keys)) != len(keys):
            dup = [k for k in dict.fromkeys(keys) if keys.count(k) > 1]
            raise ValueError(f"item_ids has duplicates: {dup[:10]}")
        if not keys:
            return 0
        self._check_new(self._state_ref.catalog, keys)
        vectors = self._encode_texts(txt)
        with self._write_lock:
            state = self._state_ref
            self._check_new(state.catalog, keys)
            if state.catalog.n_rows + len(keys) > I.MAX_CATALOG_ROWS:
                raise ValueError(
                    f"item_ids: the catalog would exceed {I.MAX_CATALOG_ROWS} rows "
                    f"({state.catalog.n_rows} now, {len(keys)} to add)"
                )
            catalog = state.catalog.append(vectors, keys, ttl)
            self._state_ref = self._new_state(catalog, state.scorer.with_catalog(catalog))
        return len(keys)

    @staticmethod
    def _check_new(cat: Catalog, keys: list) -> None:
        present = [k for k in keys if (row := cat.index.get(k)) is not None and cat.active[row]]
        if present:
            shown = ", ".join(repr(x) for x in present[:10])
            raise ValueError(f"item_ids already in the catalog: {shown}")

    def remove_items(self, item_ids) -> int:
        """Stop recommending these items (they still count when they appear in a history).

        Unknown ids raise ``UnknownItemError`` and nothing is removed. Returns the number
        of items that were active and are now removed.
        """
        ids = I.as_list(item_ids, "item_ids", I.MAX_IDS)
        with self._write_lock:
            state = self._state_ref
            rows, unknown_pos = I.lookup(ids, state.catalog, "item_ids")
            if unknown_pos:
                raise UnknownItemError([ids[i] for i in unknown_pos])
            rows = np.unique(rows)
            rows = rows[state.catalog.active[rows]]
            if rows.size == 0:
                return 0
            catalog = state.catalog.deactivate(rows)
            self._state_ref = self._new_state(catalog, state.scorer.with_catalog(catalog))
        return int(rows.size)
