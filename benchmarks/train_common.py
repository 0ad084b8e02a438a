"""Shared by the training benchmarks: run one configuration, record it, render tables.

Each finished run appends one JSON line (configuration, seed, valid/test metrics, wall
and CPU seconds, hardware) to a results file; the markdown tables are re-rendered from
all lines, so interrupted sweeps keep what they measured.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

from edgerec.training.config import ModelConfig, TrainConfig, parse_overrides

RESULTS = Path(__file__).parent / "results"


def parse_sets(pairs: list[str]) -> dict:
    """``edgerec.training.config.parse_overrides``; a bad pair ends the script."""
    try:
        return parse_overrides(pairs)
    except ValueError as e:
        raise SystemExit(str(e)) from None


def build_configs(overrides: dict, seed: int) -> tuple[ModelConfig, TrainConfig]:
    mcfg = ModelConfig.from_dict({**ModelConfig().to_dict(), **overrides.get("model", {})})
    tdict = {**TrainConfig().to_dict(), **overrides.get("train", {}), "seed": seed}
    if "loss_weights" in overrides.get("train", {}):
        tdict["loss_weights"] = {**TrainConfig().loss_weights, **tdict["loss_weights"]}
    return mcfg, TrainConfig.from_dict(tdict)


def hardware() -> dict:
    import torch

    return {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_avg_1m": os.getloadavg()[0],
    }


def run_one(dataset, name: str, overrides: dict, seed: int, out_root: Path, data_source: dict):
    from edgerec.training.trainer import train

    mcfg, tcfg = build_configs(overrides, seed)
    out = out_root / f"{name}-seed{seed}"
    resume = (out / "config.json").is_file()
    train(dataset, out, mcfg, tcfg, progress=False, resume=resume, data_source=data_source)
    return record_run(out, name, overrides)


def changed_settings(config: dict) -> dict:
    """The settings of a run that differ from today's defaults."""
    model_default, train_default = ModelConfig().to_dict(), TrainConfig().to_dict()
    skip = {"n_items", "n_behaviours", "n_categories", "text_dim", "seed"}
    return {
        "model": {
            k: v for k, v in config["model"].items() if k not in skip and model_default.get(k) != v
        },
        "train": {
            k: v for k, v in config["train"].items() if k not in skip and train_default.get(k) != v
        },
    }


def record_run(run_dir: Path, name: str, overrides: dict | None = None) -> dict:
    """One results line from a finished run directory."""
    run_dir = Path(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    return {
        "name": name,
        "seed": config["train"]["seed"],
        "overrides": overrides if overrides is not None else changed_settings(config),
        "config": {"model": config["model"], "train": config["train"]},
        "run_dir": str(run_dir),
        "best_epoch": metrics["best_epoch"],
        "epochs_run": metrics["epochs_run"],
        "valid": metrics["valid"],
        "test": metrics["test"],
        "train_seconds": metrics["train_seconds"],
        "train_cpu_seconds": metrics.get("train_cpu_seconds"),
        "history_valid_ndcg": [h["valid"].get("ndcg@10") for h in metrics["history"]],
        "hardware": hardware(),
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def append_line(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_lines(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def describe(record: dict) -> str:
    """A results line's settings that differ from today's defaults, from its full
    configuration (so rows stay right when the defaults change)."""
    changed = changed_settings(record["config"])
    parts = [f"{k}={v}" for scope in ("model", "train") for k, v in changed[scope].items()]
    return ", ".join(parts) if parts else "defaults"


def fmt(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"
