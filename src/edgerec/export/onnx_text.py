"""Text encoder -> ONNX: token ids -> BERT -> mean pooling -> item projection, one graph.

Why a wrapper module through ``torch.onnx.export`` rather than optimum's exporter:
optimum exports the BERT alone (``last_hidden_state``), and the pooling and the item
tower's projection would then have to be spliced in by graph surgery; one module gives
one clean graph with the bundle's names. The TorchScript exporter is used first because
its BERT graph is the one onnxruntime's transformer optimizer fuses completely
(EmbedLayerNormalization + Attention + SkipLayerNormalization + BiasGelu, 18 MatMuls
left for MiniLM); the dynamo exporter's graph of the same model kept unfused attention
(48 MatMuls) in a trial here. Dynamo is the fallback.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgerec.export.config import TEXT_INPUTS, TEXT_OUTPUTS, TEXT_ROLE
from edgerec.export.onnx_graph import check_and_save, set_interface, set_metadata, torch_to_onnx


class TextTower(nn.Module):
    """BERT + mean pooling over real tokens + a linear map to the scoring space.

    For the teacher the linear map is the trained model's ``items.text_proj``; a
    distilled student brings its own.
    """

    def __init__(self, bert: nn.Module, proj: nn.Module) -> None:
        super().__init__()
        self.bert = bert
        self.proj = proj

    def forward(self, input_ids, attention_mask, token_type_ids):
        hidden = self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / torch.clamp(mask.sum(1), min=1e-9)
        return self.proj(pooled)


def tokenize(tokenizer, texts: list[str], max_length: int) -> dict[str, np.ndarray]:
    """int64 arrays named as the graph inputs (BERT tokenizers give token_type_ids)."""
    enc = tokenizer(
        list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="np"
    )
    out = {name: np.asarray(enc[name], dtype=np.int64) for name in TEXT_INPUTS if name in enc}
    if "token_type_ids" not in out:
        out["token_type_ids"] = np.zeros_like(out["input_ids"])
    return out


def encode_torch(tower: TextTower, feed: dict[str, np.ndarray]) -> np.ndarray:
    with torch.inference_mode():
        return tower(*(torch.from_numpy(feed[n]) for n in TEXT_INPUTS)).float().numpy()


def _export_torchscript(tower, args, opset: int):
    axes = {name: dict(enumerate(shape)) for name, shape in TEXT_INPUTS.items()}
    axes["item_vector"] = {0: "batch"}
    return torch_to_onnx(
        tower,
        args,
        exporter="torchscript",
        opset=opset,
        inputs=list(TEXT_INPUTS),
        outputs=list(TEXT_OUTPUTS),
        dynamic=axes,
        do_constant_folding=True,
    )


def _export_dynamo(tower, args, opset: int):
    batch = torch.export.Dim("batch")
    tokens = torch.export.Dim("tokens", max=4096)
    return torch_to_onnx(
        tower,
        args,
        exporter="dynamo",
        opset=opset,
        inputs=list(TEXT_INPUTS),
        outputs=list(TEXT_OUTPUTS),
        dynamic={n: {0: batch, 1: tokens} for n in TEXT_INPUTS},
    )


def optimize_transformer(proto, *, num_heads: int, hidden_size: int):
    """onnxruntime's BERT fusions (pure graph rewrites, no execution-provider specifics).

    Kept over optimum's ``ORTOptimizer``, which wraps this same ``optimize_model``: its
    defaults (no EmbedLayerNormalization fusion, optimization level 2) gave an int8 graph
    no faster and with a lower min cosine, and its output needs a type-annotation pass
    before ``ORTQuantizer`` can quantize it (benchmarks/results/text_quantization.md)."""
    from onnxruntime.transformers import optimizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimized = optimizer.optimize_model(
            proto, model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=0
        )
    return optimized.model, optimized.get_fused_operator_statistics()


def export_text_encoder(
    tower: TextTower,
    tokenizer,
    path: Path | str,
    *,
    max_length: int,
    opset: int,
    ir_version: int,
    metadata: dict | None = None,
    exporter: str = "auto",
    optimize: bool = True,
) -> dict:
    """Write the fp32 text encoder graph; returns what the manifest records about it.

    ``optimize=False`` leaves out onnxruntime's fusions (a plain-ONNX BERT graph, for
    other optimizers to start from)."""
    tower = tower.eval()
    feed = tokenize(
        tokenizer,
        ["an example item | with some genres", "a second, longer example text for the export"],
        max_length,
    )
    args = tuple(torch.from_numpy(feed[n]) for n in TEXT_INPUTS)
    used, error, proto = None, None, None
    if exporter in ("auto", "torchscript"):
        try:
            proto = _export_torchscript(tower, args, opset)
            used = "torch.onnx torchscript"
        except Exception as e:  # e.g. a torch without the TorchScript exporter
            if exporter == "torchscript":
                raise
            error = f"{type(e).__name__}: {e}"
    if proto is None:
        proto = _export_dynamo(tower, args, opset)
        used = "torch.onnx dynamo"
    cfg = tower.bert.config
    fused = {}
    if optimize:
        proto, fused = optimize_transformer(
            proto, num_heads=int(cfg.num_attention_heads), hidden_size=int(cfg.hidden_size)
        )
    dim = int(tower.proj.out_features)
    set_interface(proto, TEXT_INPUTS, TEXT_OUTPUTS, {"dim": dim})
    set_metadata(
        proto,
        role=TEXT_ROLE,
        precision="fp32",
        ir_version=ir_version,
        extra={
            "dim": dim,
            "max_length": int(max_length),
            "layers": int(cfg.num_hidden_layers),
            "hidden": int(cfg.hidden_size),
            **(metadata or {}),
        },
    )
    size = check_and_save(proto, path)
    info = {
        "exporter": used,
        "opset": opset,
        "size": size,
        "fused_ops": {k: int(v) for k, v in fused.items() if v},
        "layers": int(cfg.num_hidden_layers),
        "hidden": int(cfg.hidden_size),
        "parameters": int(sum(p.numel() for p in tower.parameters())),
    }
    if error:
        info["torchscript_error"] = error[:500]
    return info
