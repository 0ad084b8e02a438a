"""Small hand-made bundles for the runtime tests (no training, no export pipeline).

The user encoder is the real ``InterestModel`` with random weights and tiny sizes,
exported with ``torch.onnx.export``; the text encoder is a toy embedding-bag model with a
word-level ``tokenizers`` tokenizer. That is enough to exercise every runtime path --
verification, providers, scoring, input handling, cold start -- in seconds.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import shutil
import warnings
from pathlib import Path

import numpy as np

VOCAB_WORDS = "action comedy drama horror space love war crime music story night city".split()
BEHAVIOURS = ["none", "1", "2", "3", "4", "5"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest(root: Path, manifest: dict) -> None:
    """Fill in ``files`` from what is in ``root`` and write manifest.json."""
    manifest["files"] = {
        p.name: {"sha256": sha256(p), "size": p.stat().st_size}
        for p in sorted(root.iterdir())
        if p.is_file() and p.name != "manifest.json"
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))


def rehash(root: Path) -> None:
    """Recompute checksums after a test edited a file on purpose."""
    m = json.loads((root / "manifest.json").read_text())
    write_manifest(root, m)


def _export(module, args, path, **kwargs) -> None:
    import torch

    torch.onnx.export(module, args, path, opset_version=17, dynamo=False, **kwargs)


_MODELS: dict[str, object] = {}  # bundle path -> the PyTorch model its graphs were built from


def _write_user_graphs(out: Path, n_items: int, dim: int, max_len: int, seed: int):
    """A random tiny ``InterestModel`` and the bundle's serving graphs built from it by
    the export's own builders (``edgerec.export.serving``)."""
    import torch

    from edgerec.export.onnx_user_graph import build_user_encoder
    from edgerec.export.serving import write_serving_graphs
    from edgerec.training.config import ModelConfig
    from edgerec.training.model import InterestModel

    torch.manual_seed(seed)
    cfg = ModelConfig(
        n_items=n_items,
        n_behaviours=len(BEHAVIOURS),
        n_categories=0,
        text_dim=16,
        dim=dim,
        hidden=dim,
        max_len=max_len,
        window=3,
        dropout=0.0,
    )
    model = InterestModel(cfg).eval()
    with torch.no_grad():
        model.items.text_embeddings.normal_()
        model.log_temperature.fill_(-1.0)
        matrix = model.items().detach().clone()
        matrix[0] = 0.0
    graphs, scorers = write_serving_graphs(
        build_user_encoder(model, opset=18),
        out,
        max_len=max_len,
        dim=dim,
        opset=18,
        ir_version=9,
        metadata={"dim": dim},
    )
    return model, matrix.numpy().astype(np.float32), graphs, scorers


def _export_text_encoder(path: Path, vocab_size: int, dim: int, seed: int) -> None:
    import torch

    torch.manual_seed(seed + 1)

    class TextEncoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(vocab_size, 16)
            self.types = torch.nn.Embedding(2, 16)
            self.proj = torch.nn.Linear(16, dim)

        def forward(self, input_ids, attention_mask, token_type_ids):
            h = self.emb(input_ids) + self.types(token_type_ids)
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return self.proj(pooled)

    ids = torch.randint(0, vocab_size, (2, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _export(
            TextEncoder().eval(),
            (ids, torch.ones_like(ids), torch.zeros_like(ids)),
            str(path),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["item_vector"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
                "token_type_ids": {0: "batch", 1: "tokens"},
                "item_vector": {0: "batch"},
            },
        )


def _tokenizer_json() -> tuple[str, int]:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *VOCAB_WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return tok.to_str(), len(vocab)


def quantize_rows(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    peak = np.abs(v).max(axis=1)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    return np.clip(np.rint(v / scale[:, None]), -127, 127).astype(np.int8), scale


_CACHE: dict[tuple, tuple] = {}


def make_bundle(
    out: Path,
    *,
    n_items: int = 40,
    dim: int = 8,
    max_len: int = 10,
    item_dtype: str = "float32",
    id_type: str = "int",
    text: bool = True,
    seed: int = 0,
) -> Path:
    """Write a complete, valid bundle to ``out`` (graphs are built once per process)."""
    import tempfile

    out = Path(out)
    out.mkdir(parents=True)
    key = (n_items, dim, max_len, text, seed)
    if key not in _CACHE:
        src = Path(tempfile.mkdtemp(prefix="edgerec-rt-graphs-"))
        atexit.register(shutil.rmtree, src, True)
        model, matrix, graphs, scorers = _write_user_graphs(src, n_items, dim, max_len, seed)
        if text:
            tok_json, vocab_size = _tokenizer_json()
            (src / "tokenizer.json").write_text(tok_json)
            _export_text_encoder(src / "text_encoder.onnx", vocab_size, dim, seed)
        _CACHE[key] = (src, model, matrix, graphs, scorers)
    src, model, matrix, graphs, scorers = _CACHE[key]
    _MODELS[str(out)] = model
    for name in [*graphs.values(), *scorers.values()]:
        shutil.copy(src / name, out / name)
    rng = np.random.default_rng(seed)
    manifest_graphs = {role: {"fp32": name} for role, name in graphs.items()}
    tok_name = None
    if text:
        shutil.copy(src / "tokenizer.json", out / "tokenizer.json")
        shutil.copy(src / "text_encoder.onnx", out / "text_encoder.onnx")
        manifest_graphs["text_encoder"] = {"fp32": "text_encoder.onnx"}
        tok_name = "tokenizer.json"
    scale_file = None
    if item_dtype == "float32":
        np.save(out / "items.npy", matrix)
    elif item_dtype == "float16":
        np.save(out / "items.npy", matrix.astype(np.float16))
    elif item_dtype == "int8":
        q, s = quantize_rows(matrix)
        np.save(out / "items.npy", q)
        np.save(out / "items_scale.npy", s)
        scale_file = "items_scale.npy"
    else:
        raise ValueError(item_dtype)
    ids = list(range(101, 101 + n_items)) if id_type == "int" else [f"m{i}" for i in range(n_items)]
    titles = [f"Item {x}" for x in ids]
    (out / "items.json").write_text(json.dumps({"ids": ids, "titles": titles, "id_type": id_type}))
    pop = rng.integers(0, 100, n_items + 1).astype(np.float32)
    pop[0] = 0
    np.save(out / "popularity.npy", pop)
    (out / "README.md").write_text("test bundle\n")
    manifest = {
        "format": "edgerec-bundle",
        "format_version": 2,
        "edgerec_version": "0.1.0",
        "created_at": "2026-01-01T00:00:00Z",
        "dims": {
            "dim": dim,
            "n_items": n_items,
            "max_len": max_len,
            "window": 3,
            "n_behaviours": len(BEHAVIOURS),
            "n_gap_buckets": 34,
            "text_max_length": 16,
        },
        "behaviour_vocab": BEHAVIOURS,
        "default_behaviour": "4",
        "precisions": ["fp32"],
        "default_precision": "fp32",
        "graphs": manifest_graphs,
        "scorers": scorers,
        "request_time": True,
        "item_matrix": {"file": "items.npy", "dtype": item_dtype, "scale_file": scale_file},
        "item_ids": "items.json",
        "popularity": "popularity.npy",
        "tokenizer": tok_name,
    }
    write_manifest(out, manifest)
    return out


def reference_scores(bundle: Path, history_rows, behaviours=None, timestamps=None, now=None):
    """What the runtime should compute, from the PyTorch model the bundle was built from
    and its items.npy: (scores of every row, gate)."""
    import torch

    from edgerec.features import pad_histories, request_gap_buckets

    matrix = np.load(bundle / "items.npy", allow_pickle=False).astype(np.float32)
    if (bundle / "items_scale.npy").exists():
        matrix = matrix * np.load(bundle / "items_scale.npy")[:, None]
    model = _MODELS[str(bundle)]
    rows = np.asarray(history_rows, dtype=np.int64)
    n = len(rows)
    beh = np.full(n, BEHAVIOURS.index("4"), np.int64) if behaviours is None else behaviours
    ts = np.zeros(n, np.int64) if timestamps is None else np.asarray(timestamps, np.int64)
    items, beh, gaps, lengths = pad_histories([rows], [np.asarray(beh)], [ts], model.cfg.max_len)
    request = np.zeros(1, np.int64)
    if now is not None and timestamps is not None:
        request = request_gap_buckets(ts[-1:], np.array([now]))
    with torch.no_grad():
        enc = model.encode_users(
            *(torch.from_numpy(a) for a in (items, beh, gaps, lengths)),
            item_table=torch.from_numpy(matrix),
            request_gaps=torch.from_numpy(request),
        )
    return matrix @ enc.user[0].numpy(), float(enc.gate[0])


_REAL: dict[str, Path] = {}


def real_tiny_bundle(root: Path) -> Path:
    """The export pipeline's tiny fp32 + int8 bundle, built once per test process."""
    if "bundle" not in _REAL:
        from export_fixtures import make_tiny_bundle

        out = Path(root) / "bundle"
        make_tiny_bundle(out, precisions=("fp32", "int8"))
        _REAL["bundle"] = out
    return _REAL["bundle"]
