"""Tiny trained runs and bundles for tests (the export's and the runtime's).

``make_tiny_run`` trains the real model with the real trainer for one epoch on a small
synthetic world, with real MiniLM text embeddings (cached under EDGEREC_CACHE_DIR), so a
bundle built from it has the same files, graphs and interfaces as a full-size one.
Cost on 2 cores: the run takes a few seconds, an fp32+int8 bundle about 30 s (most of
it exporting and quantizing MiniLM), so tests build one per module and share it.

    from export_fixtures import make_tiny_bundle
    manifest = make_tiny_bundle(tmp_path / "bundle")          # fp32 + int8
    manifest = make_tiny_bundle(tmp_path / "b", precisions=("fp32", "fp16"))
"""

from __future__ import annotations

from pathlib import Path

TINY_WORLD = {
    "n_users": 80,
    "n_items": 60,
    "n_categories": 4,
    "words_per_category": 6,
    "min_events": 8,
    "max_events": 20,
    "min_session": 3,
    "max_session": 6,
    "seed": 0,
}
# hidden 48: the LSTM's recurrent weights (4h x h = 9216 values) exceed onnxscript's
# default folding limit, as every real model's do, so the int8 path is tested for real
TINY_MODEL = {"dim": 16, "hidden": 48, "max_len": 20, "window": 3}
TINY_TRAIN = {
    "epochs": 1,
    "batch_size": 64,
    "warmup_steps": 5,
    "eval_batch_size": 256,
    "device": "cpu",
    "num_threads": 2,
}


def tiny_dataset(**overrides):
    from edgerec.data import SyntheticConfig, generate_synthetic

    return generate_synthetic(SyntheticConfig(**{**TINY_WORLD, **overrides}))


def tiny_text_encoder(folder: Path | str) -> Path:
    """A 2-layer, 32-wide BERT with random weights and MiniLM's tokenizer, saved as a
    Hugging Face directory: exports in a second where MiniLM takes ~20 s. Its vectors
    mean nothing, which tests of atomicity and distillation mechanics do not need."""
    import shutil

    import torch
    from transformers import BertConfig, BertModel

    from edgerec.training.text_encoder import resolve_text_encoder

    folder = Path(folder)
    if (folder / "config.json").is_file():
        return folder
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(cfg).save_pretrained(folder)
    source = Path(resolve_text_encoder())
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (source / name).is_file():
            shutil.copy(source / name, folder / name)
    return folder


def make_tiny_run(
    run_dir: Path | str,
    *,
    epochs: int = 1,
    text_encoder: str = "minilm",
    model: dict | None = None,
    **world,
) -> Path:
    """A finished training run directory (config, catalog, weights, metrics).

    ``model``: ModelConfig values on top of ``TINY_MODEL``.
    ``text_encoder``: "minilm" (the real default encoder) or "tiny" (``tiny_text_encoder``,
    saved next to the run), for tests where export time matters more than realism.
    """
    from edgerec.training.config import ModelConfig, TrainConfig
    from edgerec.training.trainer import train

    run_dir = Path(run_dir)
    encoder = None
    if text_encoder == "tiny":
        encoder = str(tiny_text_encoder(run_dir.parent / f"{run_dir.name}-tiny-bert"))
    elif text_encoder != "minilm":
        raise ValueError(f"text_encoder must be 'minilm' or 'tiny', got {text_encoder!r}")
    train(
        tiny_dataset(**world),
        run_dir,
        ModelConfig(**{**TINY_MODEL, **(model or {})}),
        TrainConfig(**{**TINY_TRAIN, "epochs": epochs, "text_encoder": encoder}),
        progress=False,
    )
    return run_dir


def tiny_distill_config(**overrides):
    """Students small and schedules short enough for a test (seconds, not minutes).

    ``text_hidden`` must be a multiple of the teacher's head width: 64 suits MiniLM
    (heads of 32), 16 the tiny BERT (heads of 16).
    """
    from edgerec.export import DistillConfig

    values = {
        "text_layers": 1,
        "text_hidden": 64,
        "text_heads": 2,
        "text_intermediate": 128,
        "text_steps": 30,
        "text_batch_size": 32,
        "user_epochs": 3,
        "user_batch_size": 128,
    }
    return DistillConfig(**{**values, **overrides})


def make_tiny_bundle(
    out_dir: Path | str,
    *,
    run_dir: Path | str | None = None,
    precisions=("fp32", "int8"),
    distill: bool = False,
    **kwargs,
) -> dict:
    """Export a tiny run (made next to ``out_dir`` unless given) and return the manifest."""
    from edgerec.export import export_bundle

    out_dir = Path(out_dir)
    if run_dir is None:
        run_dir = make_tiny_run(out_dir.parent / f"{out_dir.name}-run")
    if distill:
        kwargs.setdefault("distill_config", tiny_distill_config())
    return export_bundle(run_dir, out_dir, precisions=precisions, distill=distill, **kwargs)
