"""Cold start and removal: the catalog changes while the recommender serves. A mixin of
``Recommender``: an update builds a new catalog snapshot (and scorer) under a lock and
publishes it with one assignment, so a concurrent call sees it all or not at all."""

from __future__ import annotations

import re

import numpy as np

from edgerec.errors import BundleError
from edgerec.runtime import requests as R
from edgerec.runtime.catalog import Catalog
from edgerec.runtime.results import check_finite

_TEXT_BATCH = 64  # texts per text-encoder run
_SURROGATE = re.compile("[\ud800-\udfff]")


class CatalogUpdates:
    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        """Item vectors of ``texts``; batches group texts of similar length, so little
        compute goes to padding (the graph pools over the attention mask). An int8 text
        encoder quantizes its activations with one scale per run, which would make a
        text's vector depend on its batch mates: it encodes one text per run."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        inputs = {i.name for i in self._text.get_inputs()}
        vectors = np.zeros((len(texts), self.dim), np.float32)
        step = 1 if self.graph_files.get("text_encoder", "").endswith(".int8.onnx") else _TEXT_BATCH
        for start in range(0, len(texts), step):
            idx = order[start : start + step]
            tokens = self._tokenizer([texts[i] for i in idx])
            (vectors[idx],) = self._text.run(["item_vector"], {n: tokens[n] for n in inputs})
        check_finite(vectors, "text encoder")
        return vectors

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
        ids = R.as_list(item_ids, "item_ids", R.MAX_IDS)
        txt = R.as_list(texts, "texts", R.MAX_IDS)
        ttl = [None] * len(ids) if titles is None else R.as_list(titles, "titles", R.MAX_IDS)
        for name, values in (("texts", txt), ("titles", ttl)):
            if len(values) != len(ids):
                raise ValueError(f"item_ids has {len(ids)} entries but {name} has {len(values)}")
        for i, t in enumerate(txt):
            if not isinstance(t, str):
                raise ValueError(f"texts[{i}] must be a str, got {type(t).__name__}")
            if _SURROGATE.search(t):  # the tokenizer takes UTF-8, which cannot hold one
                raise ValueError(f"texts[{i}] is not valid Unicode text (a lone surrogate)")
        for i, t in enumerate(ttl):
            if t is not None and not isinstance(t, str):
                raise ValueError(f"titles[{i}] must be a str or None, got {type(t).__name__}")
        id_type = self._state.catalog.id_type
        keys = [R.id_key(x, id_type, f"item_ids[{i}]") for i, x in enumerate(ids)]
        for i, key in enumerate(keys):
            if id_type == "int" and not (isinstance(key, int) and -(2**63) <= key < 2**63):
                raise ValueError(f"item_ids[{i}] = {ids[i]!r} is not an int id of 64 bits")
        if len(set(keys)) != len(keys):
            dup = [k for k in dict.fromkeys(keys) if keys.count(k) > 1]
            raise ValueError(f"item_ids has duplicates: {dup[:10]}")
        if not keys:
            return 0
        self._check_new(self._state.catalog, keys)
        vectors = self._encode_texts(txt)
        with self._write_lock:
            state = self._state
            self._check_new(state.catalog, keys)
            if state.catalog.n_rows + len(keys) > R.MAX_CATALOG_ROWS:
                raise ValueError(f"item_ids: the catalog would exceed {R.MAX_CATALOG_ROWS} rows")
            catalog = state.catalog.append(vectors, keys, ttl)
            self._publish(state, catalog)
        return len(keys)

    @staticmethod
    def _check_new(cat: Catalog, keys: list) -> None:
        present = [k for k in keys if (row := cat.index.get(k)) is not None and cat.active[row]]
        if present:
            raise ValueError(
                f"item_ids already in the catalog: {', '.join(repr(x) for x in present[:10])}"
            )

    def remove_items(self, item_ids) -> int:
        """Stop recommending these items (they still count when they appear in a history).

        Unknown ids raise ``UnknownItemError`` and nothing is removed. Returns the number
        of items that were active and are now removed.
        """
        ids = R.as_list(item_ids, "item_ids", R.MAX_IDS)
        with self._write_lock:
            state = self._state
            rows = np.unique(R.known_rows(ids, state.catalog, "item_ids"))
            rows = rows[state.catalog.active[rows]]
            if rows.size:
                self._publish(state, state.catalog.deactivate(rows))
        return int(rows.size)

    def _publish(self, state, catalog: Catalog) -> None:
        scorer = None if state.scorer is None else state.scorer.with_catalog(catalog)
        self._state = self._new_state(catalog, scorer)
