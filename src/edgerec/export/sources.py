"""What an export needs from a run besides its weights: its data and its text encoder.

The parity gate runs the run's own validation users, and the quality report its test
users, so the data set is reloaded exactly as the run recorded it and checked against
the recorded fingerprint. The text encoder is the one the run names; when the run
fine-tuned encoder layers they live in ``RUN_DIR/text_encoder/``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgerec.errors import DataError, EdgerecError


def load_run_dataset(run, data_dir: Path | str | None = None):
    """The run's data set; ``data_dir`` overrides the folder recorded at training time."""
    from edgerec.training.evaluate_run import load_spec

    spec = dict(run.config.get("data") or {})
    if data_dir is not None:
        spec["data_dir"] = str(data_dir)
    elif "synthetic" not in spec and spec.get("data_dir") and not Path(spec["data_dir"]).exists():
        raise DataError(
            f"the run was trained on {spec.get('name')} from {spec['data_dir']}, which does "
            "not exist here; pass --data-dir"
        )
    ds = load_spec(spec)
    if ds.n_items != run.model_config.n_items:
        raise DataError(
            f"data set {ds.name} has {ds.n_items} items, the run's model {run.model_config.n_items}"
        )
    return ds


def run_text_encoder(run) -> tuple[Path, int]:
    """(model directory, max token length) of the text encoder the run was trained with."""
    from edgerec.training.text_encoder import resolve_text_encoder, weights_digest

    local = Path(run.path) / "text_encoder"
    te = run.config.get("text_encoder")
    max_length = 64
    name = None
    if isinstance(te, dict) and te.get("kind") in ("random", "none"):
        raise EdgerecError(
            f"{run.path}: the run was trained with {te['kind']} text features, so there is no "
            "text encoder whose vectors match its item tower; train with a pretrained encoder"
        )
    if isinstance(te, dict):
        name = te.get("path") or te.get("name") or te.get("model")
        max_length = int(te.get("max_length") or max_length)
    elif isinstance(te, str):
        name = te
    if (local / "config.json").is_file():
        return local, max_length
    if int(getattr(run.train_config, "finetune_layers", 0) or 0) > 0:
        raise EdgerecError(
            f"{run.path}: the run fine-tuned text encoder layers but holds no text_encoder/ "
            "directory with them; the exported text encoder would not match the model"
        )
    name = name or run.train_config.text_encoder
    if name and not Path(str(name)).exists() and Path(str(name)).is_absolute():
        name = None  # recorded on another machine: fall back to the bundled default
    path = resolve_text_encoder(str(name) if name else None)
    if not Path(str(path)).is_dir():
        raise EdgerecError(f"text encoder {path} is not a local directory; export runs offline")
    digest = te.get("digest") if isinstance(te, dict) else None
    if digest and weights_digest(path) != digest:
        raise EdgerecError(
            f"text encoder {path} is not the one the run was trained with (weights differ)"
        )
    return Path(path), max_length


def default_behaviour(split, vocab: list[str]) -> str:
    """The commonest behaviour in training: what a history without behaviours gets."""
    seq = split.sequences
    counts = np.bincount(seq.behaviours[split.train_events()], minlength=len(vocab))
    counts[0] = 0 if counts[1:].sum() else counts[0]
    return vocab[int(np.argmax(counts))]
