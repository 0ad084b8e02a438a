"""The runtime's stages, as the benchmark times them.

``Recommender.recommend`` is one call; to say where its time goes the benchmark also
times its two halves separately, through the same internals the method uses:

- ``encode``: original ids -> prepared histories -> user-encoder session -> user vectors;
- ``score``: user vectors -> the catalog's scorer (matmul or int8 shortlist or ONNX
  TopK) -> top-k rows, seen items excluded.

Catalogs other than the bundle's (larger synthetic ones, other item dtypes) are given
to the ``Recommender`` constructor as a modified ``BundleData``, so they go through the
runtime's own catalog and scorer selection. All uses of runtime internals live in this
module: if the runtime changes, this is the one file to follow it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from edgerec.benchmark import workload
from edgerec.runtime.bundle import BundleData, ItemIds, load_bundle
from edgerec.runtime.providers import CPU, plan_providers
from edgerec.runtime.recommender import Recommender

PROVIDERS = ("cpu", "cuda")


def load_data(bundle, precision: str, provider: str) -> BundleData:
    """The verified bundle with ``precision``'s graphs (no sessions yet)."""
    return load_bundle(bundle, precision=precision, device=provider)


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
    manifest = data.manifest
    manifest = replace(manifest, dims=replace(manifest.dims, n_items=n_items))
    return replace(
        data,
        manifest=manifest,
        items=items,
        scale=scale,
        popularity=pop,
        item_ids=ItemIds(ids, titles, data.item_ids.id_type),
    )


def build(
    data: BundleData, provider: str, threads: int | None, scoring: str = "auto"
) -> Recommender:
    """A ``Recommender`` over ``data`` on ``provider``; ``ProviderError`` if CUDA cannot run."""
    if provider not in PROVIDERS:
        raise ValueError(f"provider must be one of {PROVIDERS}, got {provider!r}")
    plan = plan_providers(provider)
    return Recommender(data, plan, threads, scoring, precision_fixed=True)


class Stages:
    """The timed entry points of one ``Recommender`` for one set of histories."""

    def __init__(self, rec: Recommender, histories: workload.Histories, k: int) -> None:
        self.rec = rec
        self.histories = histories
        self.k = k
        self.state = rec._state_ref
        self.preps = self._prepare()
        self.users = self.encode()
        self.excluded = [p.seen for p in self.preps]

    def _prepare(self):
        cat = self.state.catalog
        h = self.histories
        return [
            self.rec._prepare(cat, ids, None, ts, False)
            for ids, ts in zip(h.ids, h.timestamps, strict=True)
        ]

    def encode(self) -> np.ndarray:
        users, _, _ = self.rec._encode(self.state.catalog, self._prepare())
        return users

    def score(self):
        return self.state.scorer.topk(self.users, self.k, self.excluded)

    def end_to_end(self):
        h = self.histories
        if len(h.ids) == 1:
            return self.rec.recommend(h.ids[0], k=self.k, timestamps=h.timestamps[0])
        return self.rec.recommend_batch(h.ids, k=self.k, timestamps=h.timestamps)


def describe(rec: Recommender) -> dict:
    """What actually ran: provider, device, precision, scorer and the dtype it scores in."""
    cat = rec._state_ref.catalog
    return {
        "provider_used": rec.providers[0] if rec.providers else CPU,
        "providers_used": list(rec.providers),
        "device": rec.device,
        "precision_used": rec.precision,
        "scorer": rec.scoring,
        "scoring_dtype": str(cat.matrix.dtype),
        "ort_threads": rec.threads,
    }
