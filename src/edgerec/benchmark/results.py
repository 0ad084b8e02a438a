"""The latency result file (``latency.json``): its layout, loading, lookups and ratios.

One flat list of cells keeps the file easy to filter in any tool. Every cell has the
same axis fields; ``engine`` says what ran the work:

- ``edgerec``: the runtime (``Recommender``) -- stages ``user_encoder``,
  ``scoring_topk``, ``end_to_end`` (``op == "recommend"``) or ``add_items``
  (``op == "add_items"``; its ``per_s`` is items/s). ``scoring_topk`` is there only
  where the runtime scores with a separate scorer (``scorer`` ``int8`` or ``topk``);
  with ``graph`` the recommend graph scores inside its run and the cell has no
  such stage;
- ``pytorch``: the trained model in eager mode doing the same work (user tower,
  scoring, top-k), same stages as ``edgerec``;
- ``numpy``: the floor, a bare ``items @ u`` over the float32 matrix (stage ``matmul``).

Absolute times drift between runs on a shared machine, ratios measured in the same run
much less, so the headline is ratios (``headline``), recomputed from the cells.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgerec.errors import EdgerecError

SCHEMA = "edgerec-bench-latency"
SCHEMA_VERSION = 1
AXES = ("provider", "precision", "threads", "batch", "history", "catalog")
STAGES = ("user_encoder", "scoring_topk", "end_to_end")
STAT_FIELDS = ("n", "p50_ms", "p95_ms", "p99_ms", "mean_ms", "per_s", "stable")
CELL_FIELDS = ("engine", "op", *AXES, "n_items", "item_dtype", "stages")


class ResultError(EdgerecError):
    """A result file that is missing, unreadable or not an edgerec latency result."""


def result_path(path: Path | str) -> Path:
    path = Path(path)
    return path / "latency.json" if path.is_dir() else path


def check_result(obj: object, where: str) -> dict:
    """Validate the layout (what report and compare rely on); returns ``obj``."""
    if not isinstance(obj, dict) or obj.get("schema") != SCHEMA:
        raise ResultError(f"{where}: not an edgerec latency result (schema {SCHEMA!r} expected)")
    if int(obj.get("schema_version", 0)) > SCHEMA_VERSION:
        raise ResultError(
            f"{where}: schema version {obj['schema_version']} is newer than this edgerec"
        )
    for key in ("target", "hardware", "settings", "cells", "status"):
        if key not in obj:
            raise ResultError(f"{where}: missing {key!r}")
    if not isinstance(obj["cells"], list):
        raise ResultError(f"{where}: 'cells' must be a list")
    for i, cell in enumerate(obj["cells"]):
        missing = [f for f in CELL_FIELDS if f not in cell]
        if missing:
            raise ResultError(f"{where}: cell {i} lacks {', '.join(missing)}")
        for stage, stats in cell["stages"].items():
            lacking = [f for f in STAT_FIELDS if f not in stats]
            if lacking:
                raise ResultError(f"{where}: cell {i} stage {stage!r} lacks {', '.join(lacking)}")
    return obj


def load_result(path: Path | str) -> dict:
    """A ``latency.json`` (or the directory holding one), validated."""
    file = result_path(path)
    try:
        obj = json.loads(file.read_text())
    except FileNotFoundError:
        raise ResultError(f"{file}: no such file (run `edgerec bench latency` first)") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ResultError(f"{file}: unreadable ({e})") from None
    return check_result(obj, str(file))


def select(cells: list[dict], **fields) -> list[dict]:
    """Cells whose fields equal every given value (``None`` values are ignored)."""
    return [c for c in cells if all(v is None or c.get(k) == v for k, v in fields.items())]


def p50(cells: list[dict], stage: str, **fields) -> float | None:
    found = select(cells, **fields)
    if not found or stage not in found[0]["stages"]:
        return None
    return found[0]["stages"][stage]["p50_ms"]


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return round(a / b, 3)


def headline(result: dict) -> dict:
    """The ratios a reader compares across machines, at the sweep's base settings.

    - ``pytorch_over_edgerec``: PyTorch eager end-to-end p50 / runtime p50 (> 1: faster);
    - ``int8_over_fp32`` / ``fp16_over_fp32``: runtime p50 of each precision / fp32's;
    - ``over_numpy_floor``: per catalog size, runtime scoring+top-k and end-to-end p50 /
      the bare ``items @ u`` p50 (1.0 = as fast as the matmul alone); scoring+top-k is
      None where the cell has no separate scorer.
    """
    cells = result["cells"]
    base = result["settings"].get("base", {})
    at = {k: base.get(k) for k in ("provider", "threads", "batch", "history")}
    rt = dict(engine="edgerec", op="recommend")
    out: dict = {"base": base, "pytorch_over_edgerec": {}, "precision_over_fp32": {}}
    precisions = sorted({c["precision"] for c in select(cells, **rt)})
    for prec in precisions:
        ours = p50(cells, "end_to_end", **rt, **at, precision=prec, catalog="bundle")
        torch_ = p50(
            cells, "end_to_end", engine="pytorch", **{**at, "provider": None}, catalog="bundle"
        )
        if ours is not None and torch_ is not None:
            out["pytorch_over_edgerec"][prec] = _ratio(torch_, ours)
    catalogs = []
    for c in select(cells, **rt):
        if c["catalog"] not in catalogs:
            catalogs.append(c["catalog"])
    for cat in catalogs:
        fp32 = p50(cells, "end_to_end", **rt, **at, precision="fp32", catalog=cat)
        row = {}
        for prec in precisions:
            if prec != "fp32":
                row[prec] = _ratio(
                    p50(cells, "end_to_end", **rt, **at, precision=prec, catalog=cat), fp32
                )
        if any(v is not None for v in row.values()):
            out["precision_over_fp32"][str(cat)] = row
    floors: dict = {}
    for cat in catalogs:
        floor = p50(
            cells, "matmul", engine="numpy", threads=at["threads"], batch=at["batch"], catalog=cat
        )
        if floor is None:
            continue
        entry = {
            "floor_ms": floor,
            "n_items": select(cells, engine="numpy", catalog=cat)[0]["n_items"],
        }
        for prec in precisions:
            kw = dict(**rt, **at, precision=prec, catalog=cat)
            entry[prec] = {
                "scoring_topk": _ratio(p50(cells, "scoring_topk", **kw), floor),
                "end_to_end": _ratio(p50(cells, "end_to_end", **kw), floor),
            }
        floors[str(cat)] = entry
    out["over_numpy_floor"] = floors
    return out
