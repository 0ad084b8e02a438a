"""``bench cold-start``: train without the cold items, export, add them from text, measure.

One seed of the item cold-start protocol (``edgerec.evaluation.cold_start``), end to end
with the user's own entry points: ``edgerec.training.trainer.train`` on the data without
the cold items (and, for the warm comparison, on the full data with the same settings),
``edgerec.export.export_bundle`` for the teacher bundle and the distilled one, then the
torch-free ``Recommender`` of each bundle gets the cold items through ``add_items`` and
is evaluated on the cold and the warm test events; popularity, content kNN (the text
encoder's vectors) and random run on the same split.

Every step writes into ``out`` and is skipped when its result is already there (a
finished run, a bundle with a manifest), so an interrupted run continues.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgerec.data.schema import Dataset
from edgerec.errors import EdgerecError
from edgerec.evaluation import cold_start as C
from edgerec.io import atomic_write_json

SCHEMA = "edgerec-cold-start"
RESULT_FILE = "cold_start.json"
# settings that change how fast a run goes, not what it learns
_RUNTIME_SETTINGS = {"num_threads", "device", "eval_batch_size"}
_DATA_SETTINGS = {"n_items", "n_behaviours", "n_categories", "text_dim"}

Log = Callable[[str], None]


def _run_summary(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "dir": str(run_dir),
        "best_epoch": metrics.get("best_epoch"),
        "epochs_run": metrics.get("epochs_run"),
        "stop_reason": metrics.get("stop_reason"),
        "train_seconds": metrics.get("train_seconds"),
        "valid_ndcg@10": metrics.get("valid", {}).get("ndcg@10"),
    }


def _settings(config: dict) -> dict:
    """A run's model and training settings, without data-derived and speed-only ones."""
    return {
        "model": {k: v for k, v in config["model"].items() if k not in _DATA_SETTINGS},
        "train": {k: v for k, v in config["train"].items() if k not in _RUNTIME_SETTINGS},
    }


def _check_full_run(run_dir: Path, dataset: Dataset, model_cfg, train_cfg) -> None:
    """A given full-data run must be of this data and these settings, or the warm
    comparison compares two things at once."""
    config_file = run_dir / "config.json"
    if not config_file.is_file():
        raise EdgerecError(f"--full-run {run_dir}: not a run directory (no config.json)")
    config = json.loads(config_file.read_text())
    recorded = (config.get("data") or {}).get("fingerprint")
    if recorded != dataset.fingerprint():
        raise EdgerecError(
            f"--full-run {run_dir}: trained on data with fingerprint {recorded}, "
            f"not this data set's {dataset.fingerprint()}"
        )
    want = _settings({"model": model_cfg.to_dict(), "train": train_cfg.to_dict()})
    got = _settings(config)
    diff = [
        f"{scope}.{k}: {got[scope].get(k)!r} (wanted {v!r})"
        for scope in ("model", "train")
        for k, v in want[scope].items()
        if got[scope].get(k) != v
    ]
    if diff:
        raise EdgerecError(f"--full-run {run_dir}: other settings than asked: {'; '.join(diff)}")


def _train(dataset: Dataset, run_dir: Path, model_cfg, train_cfg, source: dict, log: Log) -> dict:
    from edgerec.training.trainer import train

    metrics_file = run_dir / "metrics.json"
    if metrics_file.is_file() and json.loads(metrics_file.read_text()).get("finished"):
        log(f"{run_dir}: finished run, kept")
    else:
        resume = (run_dir / "config.json").is_file()
        log(f"{run_dir}: {'resuming' if resume else 'training'} on {dataset.name}")
        train(
            dataset,
            run_dir,
            model_cfg,
            train_cfg,
            progress=False,
            resume=resume,
            data_source=source,
        )
    return _run_summary(run_dir)


def _export(
    run_dir: Path, out: Path, dataset: Dataset, precisions, distill: bool, log: Log
) -> dict:
    if (out / "manifest.json").is_file():
        log(f"{out}: bundle exists, kept")
        return json.loads((out / "manifest.json").read_text())
    from edgerec.export import export_bundle

    log(f"{out}: exporting {run_dir}" + (" with distillation" if distill else ""))
    code = {**_code_state(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    manifest = export_bundle(
        run_dir, out, precisions=precisions, distill=distill, dataset=dataset, evaluate=False
    )
    # the export code others edit meanwhile: which state built this bundle
    atomic_write_json(out.parent / f"{out.name}.code.json", code)
    return manifest


def _bundle_rows(
    bundle: Path,
    label: str,
    css: C.ColdStartSplit,
    precisions,
    threads: int,
    add: bool,
    per_event: dict,
) -> list[dict]:
    """One row per precision: the bundle's recommender (with the cold items added from
    text when ``add``) on the cold and warm test events; ``per_event`` receives each
    row's per-event metrics under (label, precision)."""
    from edgerec.runtime import Recommender

    rows = []
    for precision in precisions:
        rec = Recommender.load(
            bundle, providers="cpu", threads=threads, precision=precision, scoring="graph"
        )
        row = {"model": label, "precision": precision, "bundle": str(bundle)}
        code_file = bundle.parent / f"{bundle.name}.code.json"
        if code_file.is_file():
            row["exported_with"] = json.loads(code_file.read_text())
        if add:
            t0 = time.perf_counter()
            row["added_items"] = C.add_cold_items(rec, css)
            row["add_items_seconds"] = round(time.perf_counter() - t0, 3)
        keep: dict = {}
        row.update(C.evaluate_groups(C.runtime_scorer(rec, css.dataset, css.split), css, keep=keep))
        per_event[(label, precision)] = keep
        rows.append(row)
    return rows


def _code_state() -> dict:
    """The commit and the source files changed from it (several people edit the tree)."""
    import subprocess

    root = Path(__file__).resolve().parents[3]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": commit, "changed": [line[3:] for line in changed if line.strip()]}


def _distillation_summary(manifest: dict) -> dict:
    """What the student bundle's manifest says about its students (sizes, choices)."""
    d = manifest.get("distillation") or {}
    keep = ("student_parameters", "teacher_parameters", "chosen", "retention")
    return {
        role: {k: v for k, v in (d.get(role) or {}).items() if k in keep}
        for role in ("text_encoder", "user_encoder")
    }


def text_vectors(dataset: Dataset, text_encoder: str | None) -> np.ndarray:
    """The text encoder's (MiniLM's) mean-pooled vectors of every catalog text: what the
    item tower reads, and what content kNN compares (cached like training's)."""
    from edgerec.training.text_encoder import encode_texts, resolve_text_encoder

    vectors, _ = encode_texts(list(dataset.catalog.texts), resolve_text_encoder(text_encoder))
    return vectors


def run_cold_start(
    dataset: Dataset,
    out: Path | str,
    model_cfg,
    train_cfg,
    *,
    fraction: float = 0.10,
    choice: str = "recent",
    distill: bool = True,
    precisions: tuple[str, ...] = ("fp32", "int8"),
    full_run: Path | str | None = None,
    recent: int = 10,
    threads: int = 1,
    data_source: dict | None = None,
    log: Log | None = None,
) -> dict:
    """One seed (``train_cfg.seed``) of the protocol; writes ``out/cold_start.json`` and
    returns its content."""
    from edgerec.data.split import leave_one_out
    from edgerec.training import scaling
    from edgerec.training.config import ModelConfig, TrainConfig

    log = log or (lambda line: None)
    C.check_fraction(fraction)
    C.check_choice(choice)
    if recent < 1:
        raise ValueError(f"recent must be at least 1, got {recent}")
    if train_cfg.text_encoder == "random":
        raise EdgerecError(
            "cold start adds items from their text: train with a pretrained text encoder, "
            "not text_encoder='random'"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model_cfg = ModelConfig.from_dict(model_cfg.to_dict())
    train_cfg = TrainConfig.from_dict(train_cfg.to_dict())
    css = C.cold_start_split(dataset, fraction, choice, train_cfg.seed)
    summary = css.summary()
    log(
        f"{summary['cold_items']} cold items ({choice}), {summary['cold_test_events']} cold "
        f"and {summary['warm_test_events']} warm test events"
    )
    if model_cfg.max_len == 0:  # both runs read as much history: the full data's rule
        model_cfg.max_len = scaling.max_len_rule(scaling.data_shape(leave_one_out(dataset)))
    source = dict(data_source or {})
    full_dir = Path(full_run) if full_run is not None else out / "full-run"
    if full_run is not None:
        _check_full_run(full_dir, dataset, model_cfg, train_cfg)
    runs = {
        "full": _train(dataset, full_dir, model_cfg, train_cfg, source, log),
        "cold": _train(
            css.train_data,
            out / "cold-run",
            model_cfg,
            train_cfg,
            {**source, "cold_start": {"fraction": fraction, "choice": choice}},
            log,
        ),
    }
    bundles = out / "bundles"
    exported = {
        "teacher": _export(
            out / "cold-run", bundles / "teacher", css.train_data, precisions, False, log
        ),
        "full": _export(full_dir, bundles / "full", dataset, ("fp32",), False, log),
    }
    if distill:
        exported["student"] = _export(
            out / "cold-run", bundles / "student", css.train_data, precisions, True, log
        )
    log("evaluating bundles through the runtime")
    per_event: dict = {}
    rows = _bundle_rows(bundles / "full", "full-data", css, ("fp32",), threads, False, per_event)
    # the teacher without the cold items: a warm figure that the added items cannot crowd
    rows += _bundle_rows(
        bundles / "teacher", "teacher-no-cold", css, ("fp32",), threads, False, per_event
    )
    rows += _bundle_rows(bundles / "teacher", "teacher", css, precisions, threads, True, per_event)
    if distill:
        rows += _bundle_rows(
            bundles / "student", "student", css, precisions, threads, True, per_event
        )
    reference = per_event[("full-data", "fp32")].get("warm")
    for row in rows:
        events = per_event[(row["model"], row["precision"])].get("warm")
        if row["model"] != "full-data" and events is not None and reference is not None:
            row["warm_vs_full_data"] = C.paired_difference(events["ndcg@10"], reference["ndcg@10"])
    log("baselines")
    vectors = text_vectors(dataset, train_cfg.text_encoder)
    for label, scorer in (
        ("content-knn", C.content_knn_scorer(css.split, vectors, recent)),
        ("popularity", C.popularity_scorer(css)),
        ("random", C.random_scorer(css)),
    ):
        rows.append({"model": label, "precision": None, **C.evaluate_groups(scorer, css)})
    result = {
        "schema": SCHEMA,
        "dataset": dataset.name,
        "seed": int(train_cfg.seed),
        "split": summary,
        "cold_items": dataset.catalog.item_ids[css.cold_items - 1].tolist(),
        "settings": {
            **_settings({"model": model_cfg.to_dict(), "train": train_cfg.to_dict()}),
            "num_threads": train_cfg.num_threads,
            "content_knn_recent": recent,
            "precisions": list(precisions),
            "distill": distill,
        },
        "runs": runs,
        "distillation": _distillation_summary(exported["student"]) if distill else None,
        "code": _code_state(),  # at evaluation; each row's exported_with: at export
        "rows": rows,
    }
    from edgerec.benchmark.hardware import hardware_record

    result["hardware"] = hardware_record()
    atomic_write_json(out / RESULT_FILE, result)
    return result
