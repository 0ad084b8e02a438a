"""Writing a bundle's data files, its manifest and its model card, and checking them.

Everything here follows ``docs/bundle.md``: plain file names, no pickle, every file
listed in the manifest with its sha256 and size. ``verify_bundle`` is the export's own
last check before the temporary directory is renamed into place: the runtime's own.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from edgerec.errors import BundleError
from edgerec.export.config import FORMAT, FORMAT_VERSION
from edgerec.io import atomic_write_bytes, atomic_write_json, atomic_write_text

MANIFEST = "manifest.json"
ITEMS = "items.npy"
ITEMS_SCALE = "items_scale.npy"
ITEM_IDS = "items.json"
POPULARITY = "popularity.npy"
TOKENIZER = "tokenizer.json"
CARD = "README.md"


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_npy(path: Path | str, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def quantize_rows(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per row: vector = q * scale; an all-zero row gets scale 0."""
    table = np.asarray(table, dtype=np.float32)
    peak = np.abs(table).max(axis=1)
    scale = (peak / 127.0).astype(np.float32)
    safe = np.where(scale > 0, scale, 1.0)
    q = np.clip(np.rint(table / safe[:, None]), -127, 127).astype(np.int8)
    return q, scale


def write_item_matrix(bundle: Path, table: np.ndarray, dtype: str) -> dict:
    """``items.npy`` (+ ``items_scale.npy`` for int8); returns the manifest entry."""
    table = np.asarray(table, dtype=np.float32)
    if not np.all(table[0] == 0):
        raise BundleError("item matrix row 0 (padding) must be zeros")
    if dtype == "float32":
        write_npy(bundle / ITEMS, table)
        return {"file": ITEMS, "dtype": "float32", "scale_file": None}
    if dtype == "float16":
        if np.abs(table).max() >= np.finfo(np.float16).max:
            raise BundleError("item vectors overflow float16; use float32 or int8")
        write_npy(bundle / ITEMS, table.astype(np.float16))
        return {"file": ITEMS, "dtype": "float16", "scale_file": None}
    if dtype == "int8":
        q, scale = quantize_rows(table)
        write_npy(bundle / ITEMS, q)
        write_npy(bundle / ITEMS_SCALE, scale)
        return {"file": ITEMS, "dtype": "int8", "scale_file": ITEMS_SCALE}
    raise ValueError(f"unknown item matrix dtype {dtype!r}")


def load_item_matrix(bundle: Path, entry: dict) -> np.ndarray:
    """The float32 matrix back from the bundle files (what a runtime computes with)."""
    raw = np.load(bundle / entry["file"], allow_pickle=False)
    if entry.get("scale_file"):
        scale = np.load(bundle / entry["scale_file"], allow_pickle=False)
        return raw.astype(np.float32) * scale[:, None].astype(np.float32)
    return raw.astype(np.float32)


def write_item_ids(bundle: Path, catalog: dict) -> None:
    ids = list(catalog["item_ids"])
    id_type = "int" if all(isinstance(x, int) for x in ids) else "str"
    if id_type == "str":
        ids = [str(x) for x in ids]
    atomic_write_json(
        bundle / ITEM_IDS, {"ids": ids, "titles": list(catalog["titles"]), "id_type": id_type}
    )


def write_popularity(bundle: Path, catalog: dict, n_items: int) -> None:
    pop = np.asarray(catalog.get("popularity") or np.zeros(n_items + 1), dtype=np.float32)
    if pop.shape != (n_items + 1,):
        raise BundleError(f"catalog popularity has shape {pop.shape}, expected ({n_items + 1},)")
    write_npy(bundle / POPULARITY, pop)


def write_tokenizer(bundle: Path, source: Path, *, max_length: int, pad_id: int, pad_token: str):
    """The teacher's ``tokenizer.json`` with truncation and padding switched on.

    Set in the file, so a runtime's ``Tokenizer.from_file(...).encode_batch(texts)``
    gives exactly the padded, truncated ids the graph was exported and checked with.
    """
    from tokenizers import Tokenizer

    src = Path(source) / TOKENIZER
    if not src.is_file():
        raise BundleError(f"{source}: the text encoder has no {TOKENIZER} (a fast tokenizer)")
    tok = Tokenizer.from_file(str(src))
    tok.enable_truncation(max_length=int(max_length))
    tok.enable_padding(pad_id=int(pad_id), pad_token=pad_token)
    atomic_write_text(bundle / TOKENIZER, tok.to_str())


def file_table(bundle: Path) -> dict:
    """sha256 and size of every file except the manifest; nothing but plain files allowed."""
    files = {}
    for path in sorted(bundle.iterdir()):
        if path.name == MANIFEST:
            continue
        if not path.is_file() or path.is_symlink():
            raise BundleError(f"{path}: a bundle holds only plain files")
        files[path.name] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    return files


def new_manifest(**sections) -> dict:
    from datetime import datetime, timezone

    from edgerec import __version__

    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "edgerec_version": __version__,
        "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **sections,
    }


def write_manifest(bundle: Path, manifest: dict) -> dict:
    manifest = dict(manifest)
    manifest["files"] = file_table(bundle)
    atomic_write_json(bundle / MANIFEST, manifest)
    return manifest


def verify_bundle(bundle: Path | str) -> dict:
    """The runtime's own full verification (``edgerec.runtime.bundle.verify_all``): every
    file, array and graph of every precision, plus no file the manifest does not list;
    raises ``BundleError`` naming the problem."""
    import warnings

    from edgerec.runtime.bundle import verify_all
    from edgerec.runtime.manifest import QuantizationTargetWarning

    with warnings.catch_warnings():  # the export chose the target on purpose
        warnings.simplefilter("ignore", QuantizationTargetWarning)
        manifest = dict(verify_all(bundle).manifest.raw)
    on_disk = {p.name for p in Path(bundle).iterdir() if p.name != MANIFEST}
    if on_disk != set(manifest["files"]):
        raise BundleError(
            f"{bundle}: files on disk {sorted(on_disk)} differ from the manifest "
            f"{sorted(manifest['files'])}"
        )
    return manifest
