"""The item catalog as an immutable snapshot, replaced whole by ``add_items``/``remove_items``.

Readers take one reference to the current snapshot and use only it, so a concurrent
update is seen entirely or not at all. Updates are copy-on-write but cheap: per-row
arrays live in buffers with spare capacity, a snapshot is a view of the first ``n_rows``
rows, and an update only ever writes rows beyond the newest snapshot's end -- rows that
no published snapshot can see. Removal never touches a row either: it flips a copy of
the ``active`` mask. Ids resolve through a large immutable base dictionary plus a small
per-snapshot delta that is folded into the base once it grows.

Dense row 0 is padding; item ``i`` of the bundle is row ``i``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from types import MappingProxyType

import numpy as np

_DELTA_FOLD_MIN = 4096
_LABEL_LIST_ROWS = 1 << 16  # catalogs up to this size also keep their ids/titles as lists


def _grow(buf: np.ndarray, used: int, extra: int) -> np.ndarray:
    """A buffer with room for ``used + extra`` rows: ``buf`` itself when it fits, else a copy."""
    need = used + extra
    if buf.shape[0] >= need and buf.flags.writeable:
        return buf
    cap = max(need, used + used // 2, 16)
    out = np.empty((cap,) + buf.shape[1:], dtype=buf.dtype)
    out[:used] = buf[:used]
    return out


@dataclass(frozen=True)
class IdIndex:
    """Original id -> dense row: an immutable base plus a small delta (delta wins), so an
    update copies only the delta until it is folded into a new base."""

    base: MappingProxyType
    delta: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def of(cls, rows_by_id: dict, delta: dict | None = None) -> IdIndex:
        """An index owning ``rows_by_id`` (the caller keeps no reference to it)."""
        index = cls(MappingProxyType(rows_by_id), MappingProxyType(delta or {}))
        # the dict's own get: a request looks up each of its ids, and the read-only
        # proxy's get costs more per call; the dict is reachable only through the proxy
        object.__setattr__(index, "base_get", rows_by_id.get)
        return index

    def get(self, key, default=None):
        row = self.delta.get(key) if self.delta else None
        return self.base.get(key, default) if row is None else row

    def with_updates(self, updates: dict) -> IdIndex:
        delta = {**self.delta, **updates}
        if len(delta) > max(_DELTA_FOLD_MIN, len(self.base) // 8):
            return IdIndex.of({**self.base, **delta})
        index = IdIndex(self.base, MappingProxyType(delta))
        object.__setattr__(index, "base_get", self.base_get)
        return index


@dataclass(frozen=True)
class Catalog:
    """One immutable state of the catalog; arrays are views that are never written to."""

    matrix: np.ndarray  # (n_rows, dim) float32 | float16 | int8
    scale: np.ndarray | None  # (n_rows,) float32 for int8 rows
    ids: np.ndarray  # (n_rows,) object: original id per row, None at row 0
    titles: np.ndarray  # (n_rows,) object
    popularity: np.ndarray  # (n_rows,) float32
    active: np.ndarray  # (n_rows,) bool: recommendable (False at row 0 and removed rows)
    inactive: np.ndarray  # sorted int64 rows where active is False
    index: IdIndex
    id_type: str  # "int" | "str"
    version: int = 0
    # the capacity buffers behind the views, reused by the next update
    _buffers: tuple = field(default=(), repr=False, compare=False)

    @property
    def n_rows(self) -> int:
        return self.matrix.shape[0]

    @property
    def dim(self) -> int:
        return self.matrix.shape[1]

    @property
    def n_active(self) -> int:
        return self.n_rows - len(self.inactive)

    @cached_property
    def labels(self) -> tuple[Sequence, Sequence]:
        """(ids, titles) by row: lists for catalogs of at most ``_LABEL_LIST_ROWS`` rows,
        made once per snapshot, else the arrays: every result reads one id and one title
        per item, and a list index costs a fraction of a numpy object array's."""
        if self.n_rows <= _LABEL_LIST_ROWS:
            return self.ids.tolist(), self.titles.tolist()
        return self.ids, self.titles

    @classmethod
    def create(
        cls,
        matrix: np.ndarray,
        scale: np.ndarray | None,
        ids: Sequence,
        titles: Sequence,
        popularity: np.ndarray,
        id_type: str,
    ) -> Catalog:
        n_rows = matrix.shape[0]
        id_arr = np.empty(n_rows, dtype=object)
        id_arr[1:] = list(ids)
        title_arr = np.empty(n_rows, dtype=object)
        title_arr[1:] = list(titles)
        active = np.ones(n_rows, dtype=bool)
        active[0] = False
        index = IdIndex.of({x: i + 1 for i, x in enumerate(ids)})
        for arr in (matrix, scale, popularity, active):
            if arr is not None and arr.flags.writeable:
                arr.flags.writeable = False
        id_arr.flags.writeable = False
        title_arr.flags.writeable = False
        return cls(
            matrix=matrix,
            scale=scale,
            ids=id_arr,
            titles=title_arr,
            popularity=popularity,
            active=active,
            inactive=np.flatnonzero(~active),
            index=index,
            id_type=id_type,
        )

    @cached_property
    def bias(self) -> np.ndarray:
        """(1, n_rows) float32: 0 where a row may be recommended, -inf at padding and
        removed rows (the graphs' ``row_bias``); read-only, shared by every request."""
        bias = np.zeros((1, self.n_rows), np.float32)
        bias[0, self.inactive] = -np.inf
        bias.flags.writeable = False
        return bias

    @cached_property
    def float_matrix(self) -> np.ndarray:
        """The matrix as float32 (the stored one itself when it is float32)."""
        if self.matrix.dtype == np.float32:
            return self.matrix
        out = self.vectors(np.arange(self.n_rows))
        out.flags.writeable = False
        return out

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """float32 vectors of ``rows`` (dequantized for int8, upcast for float16)."""
        v = self.matrix[rows]
        if self.scale is not None:
            return v.astype(np.float32) * self.scale[rows, None]
        return v if v.dtype == np.float32 else v.astype(np.float32)

    def append(self, vectors: np.ndarray, ids: list, titles: list) -> Catalog:
        """A new snapshot with rows appended for ``ids`` (reusing a removed id's name)."""
        n, k = self.n_rows, len(ids)
        bufs = dict(self._buffers) if self._buffers else {}
        out = {}
        for name in ("matrix", "scale", "ids", "titles", "popularity"):
            arr = getattr(self, name)
            if arr is None:
                continue
            out[name] = _grow(bufs.get(name, arr), n, k)
        if self.scale is not None:
            peak = np.abs(vectors).max(axis=1)
            scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
            q = np.clip(np.rint(vectors / scale[:, None]), -127, 127).astype(np.int8)
            out["matrix"][n : n + k] = q
            out["scale"][n : n + k] = scale
        else:
            out["matrix"][n : n + k] = vectors.astype(self.matrix.dtype)
        out["ids"][n : n + k] = ids
        out["titles"][n : n + k] = titles
        out["popularity"][n : n + k] = 0.0
        # ``active`` is copied, never shared: removal flips rows of published snapshots' masks
        active = np.empty(n + k, dtype=bool)
        active[:n] = self.active
        active[n:] = True
        views = {name: buf[: n + k] for name, buf in out.items()}
        for v in views.values():
            v.flags.writeable = False
        active.flags.writeable = False
        index = self.index.with_updates({x: n + i for i, x in enumerate(ids)})
        return replace(
            self,
            **views,
            active=active,
            inactive=np.flatnonzero(~active),
            index=index,
            version=self.version + 1,
            _buffers=tuple(out.items()),
        )

    def deactivate(self, rows: np.ndarray) -> Catalog:
        active = self.active.copy()
        active[rows] = False
        active.flags.writeable = False
        return replace(
            self, active=active, inactive=np.flatnonzero(~active), version=self.version + 1
        )
