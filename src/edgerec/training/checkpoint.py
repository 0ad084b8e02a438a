"""The run directory: what a training run leaves behind and export reads.

RUN_DIR/
  config.json        {"edgerec_version", "model": ModelConfig, "train": TrainConfig,
                      "data": {...name, data_dir, fingerprint...}, "text_encoder": {...}}
  catalog.json       {"item_ids", "titles", "texts", "category_names", "categories",
                      "behaviour_vocab", "popularity"} -- dense item index i is row i-1
  model.safetensors  the best model's weights (text embeddings included as a buffer)
  metrics.json       written by the trainer

Weights go through safetensors only: loading a run never unpickles anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgerec import __version__
from edgerec.errors import EdgerecError
from edgerec.io import atomic_write_bytes, atomic_write_json
from edgerec.training.config import ModelConfig, TrainConfig

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CATALOG_FILE = "catalog.json"
METRICS_FILE = "metrics.json"


class RunError(EdgerecError):
    """A run directory that is missing files or does not match its config."""


@dataclass
class Run:
    path: Path
    model_config: ModelConfig
    train_config: TrainConfig
    config: dict  # the whole config.json
    catalog: dict  # the whole catalog.json
    model: object  # InterestModel, eval mode


def save_weights(path: Path, model) -> None:
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, save(state, metadata={"edgerec_version": __version__}))


def load_weights(path: Path, model) -> None:
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise RunError(f"{path}: missing weights file")
    try:
        state = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise RunError(f"{path}: unreadable safetensors file ({e})") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RunError(
            f"{path}: weights do not match the config (missing {missing}, unexpected {unexpected})"
        )


def catalog_dict(dataset) -> dict:
    """The parts of a Dataset a bundle needs, JSON-safe, with original ids kept."""
    from edgerec.data.split import leave_one_out

    cat = dataset.catalog
    split = leave_one_out(dataset)
    pop = np.bincount(split.sequences.items[split.train_events()], minlength=cat.n_items + 1)
    ids = cat.item_ids
    id_list = ids.tolist() if ids.dtype != object else [str(x) for x in ids]
    return {
        "item_ids": id_list,
        "titles": list(cat.titles),
        "texts": list(cat.texts),
        "category_names": list(cat.category_names),
        "categories": [np.flatnonzero(row).tolist() for row in cat.categories],
        "behaviour_vocab": list(dataset.behaviour_vocab),
        "popularity": pop.tolist(),
    }


def write_run_files(run_dir: Path, *, config: dict, catalog: dict) -> None:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / CONFIG_FILE, {"edgerec_version": __version__, **config})
    atomic_write_json(run_dir / CATALOG_FILE, catalog)


def load_run(run_dir: Path | str, *, weights: str = MODEL_FILE) -> Run:
    from edgerec.training.model import InterestModel

    run_dir = Path(run_dir)
    for name in (CONFIG_FILE, CATALOG_FILE, weights):
        if not (run_dir / name).is_file():
            raise RunError(f"{run_dir}: not a finished training run (missing {name})")
    try:
        config = json.loads((run_dir / CONFIG_FILE).read_text())
        catalog = json.loads((run_dir / CATALOG_FILE).read_text())
    except json.JSONDecodeError as e:
        raise RunError(f"{run_dir}: corrupt JSON ({e})") from None
    mcfg = ModelConfig.from_dict(config["model"])
    tcfg = TrainConfig.from_dict(config.get("train", {}))
    model = InterestModel(mcfg)
    load_weights(run_dir / weights, model)
    model.eval()
    return Run(run_dir, mcfg, tcfg, config, catalog, model)
