"""The runtime's stages, as the benchmark times them.

``Recommender.recommend`` is one call; to say where its time goes the benchmark also
times its parts separately, through the same sessions and scorer the method uses:

- ``user_encoder``: original ids -> request arrays (``requests.normalise``) -> the
  recommender's user-encoder session (``rec.sessions``) -> user vectors;
- ``scoring_topk``: user vectors -> the catalog's separate scorer (the int8 shortlist
  or the ``topk`` graph) -> top-k rows, seen items excluded. Only where there is one:
  with ``scoring == "graph"`` the ``recommend`` graph encodes, scores and ranks inside
  its one run, so there is no scoring stage to time apart (``Stages.score`` is None).
- ``end_to_end``: ``recommend`` / ``recommend_batch`` as an app calls them.

Catalogs other than the bundle's (larger synthetic ones, other item dtypes) are given
to the ``Recommender`` constructor as a modified ``BundleData`` (``bundle.verify``), so
they go through the runtime's own catalog and scorer selection. All uses of runtime
internals (``Recommender._state``, ``requests``) live in this module: if the runtime
changes, this is the one file to follow it.
"""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import numpy as np

from edgerec.benchmark import workload
from edgerec.runtime import requests as R
from edgerec.runtime.bundle import BundleData, ItemIds, verify
from edgerec.runtime.providers import CPU, plan_providers
from edgerec.runtime.recommender import Recommender

PROVIDERS = ("cpu", "cuda")
_USER_OUTPUTS = ["user", "gate", "attention"]


def load_data(bundle) -> BundleData:
    """The verified bundle, every graph of every precision (no sessions yet): one read
    serves every precision and provider of a sweep."""
    return verify(bundle)


def bundle_vectors(data: BundleData) -> np.ndarray:
    return workload.dequantized(data.items, data.scale)


def with_catalog(data: BundleData, matrix: np.ndarray, dtype: str, seed: int = 0) -> BundleData:
    """``data`` whose item matrix is ``matrix`` (float32, rows ``0..n``) stored as ``dtype``.

    Rows past the bundle's get fresh ids, no titles and zero popularity.
    """
    n_items = matrix.shape[0] - 1
    have = data.manifest.dims.n_items
    items, scale = workload.store_as(matrix, dtype)
    if n_items > have:
        new = workload.extra_ids(data.item_ids.ids, data.item_ids.id_type, n_items - have)
        ids = data.item_ids.ids + tuple(new)
        titles = data.item_ids.titles + (None,) * len(new)
        pop = np.zeros(n_items + 1, dtype=np.float32)
        pop[: have + 1] = data.popularity
    else:
        ids = data.item_ids.ids[:n_items]
        titles = data.item_ids.titles[:n_items]
        pop = np.ascontiguousarray(data.popularity[: n_items + 1])
    m = data.manifest
    spec = dict(m.item_matrix)
    spec["dtype"] = str(items.dtype)
    if scale is None:
        spec["scale_file"] = None
    else:
        spec["scale_file"] = spec.get("scale_file") or "items_scale.npy"
    manifest = replace(m, dims=replace(m.dims, n_items=n_items), item_matrix=MappingProxyType(spec))
    return replace(
        data,
        manifest=manifest,
        items=items,
        scale=scale,
        popularity=pop,
        item_ids=ItemIds(ids, titles, data.item_ids.id_type),
    )


def build(
    data: BundleData,
    provider: str,
    threads: int | None,
    precision: str,
    scoring: str = "auto",
    user_encoder: str = "auto",
) -> Recommender:
    """A ``Recommender`` over ``data`` on ``provider`` at exactly ``precision`` (no
    fall-back to another); ``ProviderError`` if CUDA cannot run."""
    if provider not in PROVIDERS:
        raise ValueError(f"provider must be one of {PROVIDERS}, got {provider!r}")
    plan = plan_providers(provider)
    return Recommender(data, plan, threads, precision, scoring, user_encoder)


def request_batch(rec: Recommender, histories: list, timestamps: list | None = None) -> R.Batch:
    """``histories`` (original ids; ``timestamps``: None or one list per history) as the
    request arrays ``recommend_batch`` builds (``requests.normalise``), over ``rec``'s
    current catalog; no behaviours (the bundle's default) and no request time."""
    m = rec.manifest
    n = len(histories)
    return R.normalise(
        histories,
        [None] * n,
        [None] * n if timestamps is None else timestamps,
        [None] * n,
        rec._state.catalog,
        R.BehaviourMap(m.behaviour_vocab, m.default_behaviour),
        False,
        lambda i: "",
    )


def user_encoder_feeds(rec: Recommender, histories: list, timestamps: list | None = None) -> dict:
    """The user-encoder graph's inputs for ``histories`` as ``Recommender`` builds them:
    the request arrays (``request_batch``) and the catalog as a float32 table (the whole
    matrix when it is stored as float32, else just the rows the histories use, with the
    history rows renumbered into it)."""
    cat = rec._state.catalog
    batch = request_batch(rec, histories, timestamps)
    rows, table = batch.rows, cat.matrix
    if table.dtype != np.float32:
        used, rows = np.unique(np.r_[0, rows.ravel()], return_inverse=True)
        rows = rows[1:].reshape(batch.behaviours.shape)
        table = cat.vectors(used)
    return {
        "history_rows": rows,
        "history_behaviours": batch.behaviours,
        "history_times": batch.times,
        "now": batch.now,
        "item_matrix": table,
    }


def encoder_session(rec: Recommender, n_histories: int):
    """The onnxruntime session ``rec`` runs the user encoder in for ``n_histories``
    histories (a GPU recommender encodes small batches on the CPU)."""
    if rec.encoder_device(n_histories) == "cpu" and "user_encoder_cpu" in rec.sessions:
        return rec.sessions["user_encoder_cpu"]
    return rec.sessions["user_encoder"]


class Stages:
    """The timed entry points of one ``Recommender`` for one set of histories."""

    def __init__(self, rec: Recommender, histories: workload.Histories, k: int) -> None:
        self.rec = rec
        self.histories = histories
        self.k = k
        self.state = rec._state
        self._session = encoder_session(rec, len(histories.ids))
        # every event of a history counts as seen, as in recommend
        self.seen = request_batch(rec, histories.ids, histories.timestamps).rows
        self.users = self.encode()
        # ``score`` is None where the recommend graph scores inside its own run
        self.score = self._score if self.state.scorer is not None else None

    def encode(self) -> np.ndarray:
        """User vectors from original ids: request arrays, then the user-encoder session
        (``user_encoder_feeds``)."""
        h = self.histories
        feeds = user_encoder_feeds(self.rec, h.ids, h.timestamps)
        users, _, _ = self._session.run(_USER_OUTPUTS, feeds)
        return users

    def _score(self):
        return self.state.scorer.topk(self.users, self.k, self.state.catalog.bias, self.seen)

    def end_to_end(self):
        h = self.histories
        if len(h.ids) == 1:
            return self.rec.recommend(h.ids[0], k=self.k, timestamps=h.timestamps[0])
        return self.rec.recommend_batch(h.ids, k=self.k, timestamps=h.timestamps)


def scoring_dtype(rec: Recommender) -> str:
    """The dtype the catalog is scored in: float32 in the recommend graph, the int8
    shortlist's 7-bit copy (rescored exactly), or the matrix bound for the topk graph."""
    scorer = rec._state.scorer
    if scorer is None:
        return "float32"
    if getattr(scorer, "kind", None) == "int8":
        return "int8"
    return np.dtype(getattr(scorer, "dtype", np.float32)).name


def describe(rec: Recommender) -> dict:
    """What actually ran: provider, device, precision, scorer, the dtype it scores in and
    the bundle file each session runs."""
    return {
        "provider_used": rec.providers[0] if rec.providers else CPU,
        "providers_used": list(rec.providers),
        "device": rec.device,
        "precision_used": rec.precision,
        "scorer": rec.scoring,
        "scoring_dtype": scoring_dtype(rec),
        "graph_files": dict(rec.graph_files),
        "ort_threads": rec.threads,
    }
