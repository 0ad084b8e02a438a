"""``bench latency``: sweep a bundle over providers, threads, batch sizes, history lengths,
precisions and catalog sizes, timing each stage of a recommendation.

The default sweep is not the full cartesian product (hundreds of cells) but slices
through a base setting: every batch size, every history length and every catalog size
for each provider and precision, and every thread count for each batch size at the base
precision. That answers "latency vs batch", "vs catalog size" and "throughput vs
threads" in about two minutes on two cores; ``grid="full"`` runs the product.

Next to the runtime cells the same work runs through the PyTorch model (when torch and
the run directory are there) and a bare numpy ``items @ u`` (the floor), at the same
threads, batch, history and catalog: ratios between them are the headline. Cells are
written to ``latency.json`` as they finish, atomically, so an interrupted sweep keeps
what it measured.
"""

from __future__ import annotations

import gc
import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edgerec import __version__
from edgerec.benchmark import workload
from edgerec.benchmark.hardware import hardware_record, load_average
from edgerec.benchmark.results import SCHEMA, SCHEMA_VERSION, headline
from edgerec.benchmark.timing import (
    DEFAULT_POLICY,
    TimingPolicy,
    blas_control_available,
    blas_threads,
    measure,
)
from edgerec.errors import EdgerecError
from edgerec.io import atomic_write_json

BUNDLE = "bundle"
GRIDS = ("slices", "full")
DEFAULTS = {
    "providers": "auto",
    "threads": "1,2,all",
    "batch": "1,8,64,256",
    "history": "10,50,max",
    "precision": "all",
    "catalog": "bundle,100000,1000000",
}
QUICK = {"threads": "1", "batch": "1,8", "history": "max", "catalog": "bundle"}

Progress = Callable[[str, int, int], None]


# --- axes --------------------------------------------------------------------------


def _items(text: str | list | tuple, name: str) -> list[str]:
    parts = text if isinstance(text, list | tuple) else str(text).split(",")
    out = [str(p).strip().lower() for p in parts if str(p).strip()]
    if not out:
        raise ValueError(f"--{name}: no values given")
    return list(dict.fromkeys(out))


def _positive(value: str, name: str) -> int:
    v = value.replace("_", "")
    mult = 1
    if v.endswith("k"):
        v, mult = v[:-1], 1_000
    elif v.endswith("m"):
        v, mult = v[:-1], 1_000_000
    try:
        n = int(float(v) * mult) if "." in v else int(v) * mult
    except ValueError:
        raise ValueError(f"--{name}: {value!r} is not a positive integer") from None
    if n < 1:
        raise ValueError(f"--{name}: {value!r} must be at least 1")
    return n


def parse_providers(text) -> list[str]:
    """``auto`` = cpu, plus cuda when onnxruntime lists the CUDA provider."""
    values = _items(text, "providers")
    out: list[str] = []
    for v in values:
        if v == "auto":
            import onnxruntime as ort

            out.append("cpu")
            if "CUDAExecutionProvider" in ort.get_available_providers():
                out.append("cuda")
        elif v in ("cpu", "cuda"):
            out.append(v)
        else:
            raise ValueError(f"--providers: unknown provider {v!r} (cpu, cuda or auto)")
    return list(dict.fromkeys(out))


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def parse_threads(text) -> list[int]:
    out = []
    for v in _items(text, "threads"):
        out.append(usable_cores() if v == "all" else _positive(v, "threads"))
    return list(dict.fromkeys(out))


def parse_batches(text) -> list[int]:
    return list(dict.fromkeys(_positive(v, "batch") for v in _items(text, "batch")))


def parse_histories(text, max_len: int) -> list[int]:
    out = []
    for v in _items(text, "history"):
        out.append(max_len if v == "max" else _positive(v, "history"))
    return list(dict.fromkeys(out))


def parse_precisions(text, available: tuple[str, ...]) -> list[str]:
    out = []
    for v in _items(text, "precision"):
        if v in ("all", "bundle"):
            out.extend(available)
        elif v in available:
            out.append(v)
        elif v in workload.ITEM_DTYPE:
            raise ValueError(
                f"--precision: this bundle has no {v} graphs (it has {', '.join(available)}); "
                f"export with --precision {v}"
            )
        else:
            raise ValueError(f"--precision: unknown precision {v!r} (fp32, int8, fp16 or all)")
    return list(dict.fromkeys(out))


def parse_catalogs(text) -> list:
    out: list = []
    for v in _items(text, "catalog"):
        out.append(BUNDLE if v == BUNDLE else _positive(v, "catalog"))
    return list(dict.fromkeys(out))


@dataclass
class Sweep:
    """Resolved axes and how to run them."""

    providers: list[str]
    threads: list[int]
    batches: list[int]
    histories: list[int]
    precisions: list[str]
    catalogs: list
    grid: str = "slices"
    k: int = 10
    scoring: str = "auto"
    policy: TimingPolicy = DEFAULT_POLICY
    add_items_texts: int = 64
    seed: int = 0
    base: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.grid not in GRIDS:
            raise ValueError(f"grid must be one of {GRIDS}, got {self.grid!r}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"k must be a positive int, got {self.k!r}")
        for name in ("providers", "threads", "batches", "histories", "precisions", "catalogs"):
            if not getattr(self, name):
                raise ValueError(f"the {name} axis is empty")


def default_base(sweep: Sweep, default_precision: str) -> dict:
    """The setting every slice passes through: the first provider, thread count, batch
    size and catalog, the longest history, the bundle's default precision if swept."""
    return {
        "provider": sweep.providers[0],
        "precision": default_precision
        if default_precision in sweep.precisions
        else sweep.precisions[0],
        "threads": sweep.threads[0],
        "batch": sweep.batches[0],
        "history": max(sweep.histories),
        "catalog": sweep.catalogs[0],
    }


def plan_cells(sweep: Sweep) -> list[dict]:
    """Runtime cells (axis values only), without duplicates, in sweep order."""
    b = sweep.base
    keys: list[tuple] = []
    if sweep.grid == "full":
        keys = list(
            itertools.product(
                sweep.providers,
                sweep.precisions,
                sweep.threads,
                sweep.batches,
                sweep.histories,
                sweep.catalogs,
            )
        )
    else:
        for prov in sweep.providers:
            for prec in sweep.precisions:
                keys += [
                    (prov, prec, b["threads"], x, b["history"], b["catalog"]) for x in sweep.batches
                ]
                keys += [
                    (prov, prec, b["threads"], b["batch"], x, b["catalog"]) for x in sweep.histories
                ]
                keys += [
                    (prov, prec, b["threads"], b["batch"], b["history"], x) for x in sweep.catalogs
                ]
            for t in sweep.threads:
                keys += [
                    (prov, b["precision"], t, x, b["history"], b["catalog"]) for x in sweep.batches
                ]
    names = ("provider", "precision", "threads", "batch", "history", "catalog")
    return [dict(zip(names, k, strict=True)) for k in dict.fromkeys(keys)]


# --- the run -----------------------------------------------------------------------


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _bundle_record(data, path: Path) -> dict:
    from edgerec.runtime.manifest import referenced_files

    m = data.manifest
    sizes = {name: int(e.size) for name, e in m.files.items()}
    graph_files = {f for v in m.graphs.values() for f in v.values()}
    shared = [n for n in referenced_files(m) if n not in graph_files]  # data files, scorers
    per_precision = {}
    for prec in m.graphs["user_encoder"]:
        graphs = [v.get(prec) for v in m.graphs.values() if v.get(prec)]
        per_precision[prec] = sum(sizes.get(n, 0) for n in set(shared) | set(graphs))
    source = m.raw.get("source") if isinstance(m.raw.get("source"), dict) else {}
    return {
        "path": str(path),
        "n_items": m.dims.n_items,
        "dim": m.dims.dim,
        "max_len": m.dims.max_len,
        "precisions": list(m.graphs["user_encoder"]),
        "default_precision": m.default_precision,
        "item_matrix_dtype": m.item_matrix["dtype"],
        "scorers": dict(m.scorers),
        "has_text_encoder": "text_encoder" in m.graphs,
        "distilled": bool(source.get("distilled", False)),
        "source_run": source.get("run"),
        "dataset": source.get("dataset"),
        "edgerec_version": m.edgerec_version,
        "file_sizes": sizes,
        "bytes_per_precision": per_precision,
    }


class _Writer:
    """Keeps ``latency.json`` current: written after every cell, atomically."""

    def __init__(self, out_dir: Path, result: dict) -> None:
        self.path = out_dir / "latency.json"
        self.result = result
        self.started = time.perf_counter()

    def flush(self) -> None:
        self.result["elapsed_s"] = round(time.perf_counter() - self.started, 2)
        atomic_write_json(self.path, self.result)


def run_latency(
    bundle: Path | str,
    out_dir: Path | str,
    sweep: Sweep,
    *,
    target: str | None = None,
    run_dir: Path | str | None = None,
    torch_compare: bool | None = None,
    note: str | None = None,
    settings_extra: dict | None = None,
    progress: Progress | None = None,
) -> dict:
    """Run the sweep, writing ``out_dir/latency.json`` as it goes; returns the result.

    ``torch_compare``: None compares with PyTorch when torch is installed and the run
    directory is known (``run_dir`` or the manifest's ``source.run``), True requires it,
    False skips it. ``KeyboardInterrupt`` marks the file ``interrupted`` and propagates.
    """
    from edgerec.benchmark import adapter

    bundle = Path(bundle)
    out_dir = Path(out_dir)
    first = adapter.load_data(bundle)
    m = first.manifest
    if not sweep.base:
        sweep.base = default_base(sweep, m.default_precision)
    plan = plan_cells(sweep)

    notes: list[str] = [note] if note else []
    blas_ok = blas_control_available()
    if not blas_ok:
        notes.append(
            "threadpoolctl is not installed: numpy's BLAS (the runtime's float32 scoring and "
            "the numpy floor) ran with its default thread count in every cell"
        )
    torch_model, torch_status = _torch_model(first, run_dir, torch_compare)
    if torch_model is None:
        notes.append(f"no PyTorch comparison: {torch_status}")
    hw = hardware_record(target)
    result: dict = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "status": "running",
        "target": hw["target"],
        "created_at": _now(),
        "finished_at": None,
        "edgerec_version": __version__,
        "hardware": hw,
        "bundle": _bundle_record(first, bundle.resolve()),
        "settings": {
            "providers": sweep.providers,
            "threads": sweep.threads,
            "batches": sweep.batches,
            "histories": sweep.histories,
            "precisions": sweep.precisions,
            "catalogs": sweep.catalogs,
            "grid": sweep.grid,
            "base": sweep.base,
            "k": sweep.k,
            "scoring": sweep.scoring,
            "policy": sweep.policy.to_dict(),
            "add_items_texts": sweep.add_items_texts,
            "seed": sweep.seed,
            "blas_threads_controlled": blas_ok,
            "pytorch": torch_status,
            "item_dtype_rule": "item vectors are stored in the precision's dtype: "
            "fp32 -> float32, fp16 -> float16, int8 -> int8 with per-row scales",
            **(settings_extra or {}),
        },
        "cells": [],
        "skipped": [],
        "notes": notes,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    writer = _Writer(out_dir, result)
    writer.flush()

    floors = list(dict.fromkeys((c["threads"], c["batch"], c["catalog"]) for c in plan))
    torch_keys = (
        list(dict.fromkeys((c["threads"], c["batch"], c["history"], c["catalog"]) for c in plan))
        if torch_model is not None
        else []
    )
    can_add = "text_encoder" in m.graphs and sweep.add_items_texts > 0
    add_keys = {
        (c["provider"], c["precision"], c["threads"])
        for c in plan
        if can_add and c["catalog"] == sweep.base["catalog"]
    }
    counter = _Counter(len(plan) + len(floors) + len(torch_keys) + len(add_keys), progress)
    hist_cache: dict[tuple, workload.Histories] = {}
    base_vectors = adapter.bundle_vectors(first)

    def histories(batch: int, length: int, n_items: int) -> workload.Histories:
        n = min(n_items, m.dims.n_items)
        key = (batch, length, n)
        if key not in hist_cache:
            hist_cache[key] = workload.make_histories(
                first.item_ids.ids[:n], first.popularity[: n + 1], batch, length, sweep.seed
            )
        return hist_cache[key]

    def skip(what: dict, error: BaseException) -> None:
        result["skipped"].append({**what, "reason": f"{type(error).__name__}: {error}"})

    try:
        for catalog in sweep.catalogs:
            n_items = m.dims.n_items if catalog == BUNDLE else int(catalog)
            matrix = workload.grow_matrix(base_vectors, n_items, sweep.seed)
            groups: dict[tuple, list[dict]] = {}
            for c in plan:
                if c["catalog"] == catalog:
                    groups.setdefault((c["provider"], c["precision"], c["threads"]), []).append(c)
            for key, group in groups.items():
                prov, prec, threads = key
                dtype = workload.ITEM_DTYPE[prec]
                label = f"{prov} {prec} {threads}t {_cat_label(catalog)}"
                add_here = catalog == sweep.base["catalog"] and key in add_keys
                try:
                    data = adapter.with_catalog(first, matrix, dtype, sweep.seed)
                    rec = adapter.build(data, prov, threads, prec, sweep.scoring)
                except (EdgerecError, ValueError) as e:  # CUDA not usable, graph fails, ...
                    skip(
                        {
                            "provider": prov,
                            "precision": prec,
                            "threads": threads,
                            "catalog": catalog,
                        },
                        e,
                    )
                    writer.flush()
                    counter.tick(f"{label}: skipped", len(group) + add_here)
                    continue
                info = adapter.describe(rec)
                for c in group:
                    cell = _cell("edgerec", "recommend", c, n_items, dtype, sweep.k)
                    cell.update(info)
                    try:
                        with blas_threads(threads) as pinned:
                            st = adapter.Stages(
                                rec, histories(c["batch"], c["history"], n_items), sweep.k
                            )
                            cell["stages"] = _three_stages(st, sweep.policy, c["batch"])
                    except (EdgerecError, ValueError, RuntimeError) as e:
                        skip(dict(c), e)
                    else:
                        cell["blas_threads"] = threads if pinned else "default"
                        result["cells"].append(cell)
                    writer.flush()
                    counter.tick(f"{label}, batch {c['batch']}, history {c['history']}")
                if add_here:
                    cell = _add_items_cell(rec, data, key, n_items, dtype, sweep)
                    cell.update(info)
                    result["cells"].append(cell)
                    writer.flush()
                    counter.tick(f"{label}, add_items")
                del rec, data
                gc.collect()

            if torch_keys:
                from edgerec.benchmark.torchref import torch_threads

                n_real = min(n_items, m.dims.n_items)
                ids = first.item_ids.ids[:n_real] + tuple(
                    workload.extra_ids(first.item_ids.ids, first.item_ids.id_type, n_items - n_real)
                )
            for threads, batch, history, cat in torch_keys:
                if cat != catalog:
                    continue
                axes = dict(
                    provider="cpu",
                    precision="fp32",
                    threads=threads,
                    batch=batch,
                    history=history,
                    catalog=catalog,
                )
                cell = _cell("pytorch", "recommend", axes, n_items, "float32", sweep.k)
                with torch_threads(threads), blas_threads(threads):
                    st = torch_model.stages(
                        histories(batch, history, n_items), matrix, ids, sweep.k
                    )
                    cell["stages"] = _three_stages(st, sweep.policy, batch)
                cell["model"] = {
                    "run": str(torch_model.run_dir),
                    "user_tower_parameters": torch_model.parameters,
                    "what": "the run's PyTorch model in eager mode (the teacher if the bundle is distilled)",
                }
                result["cells"].append(cell)
                writer.flush()
                counter.tick(
                    f"pytorch {threads}t, batch {batch}, history {history}, {_cat_label(catalog)}"
                )

            rng = np.random.default_rng([sweep.seed, n_items])
            for threads, batch, cat in floors:
                if cat != catalog:
                    continue
                users = rng.standard_normal((batch, matrix.shape[1]), dtype=np.float32)
                axes = dict(
                    provider="cpu",
                    precision="fp32",
                    threads=threads,
                    batch=batch,
                    history=None,
                    catalog=catalog,
                )
                cell = _cell("numpy", "matmul", axes, n_items, "float32", None)
                with blas_threads(threads) as pinned:
                    cell["stages"] = {
                        "matmul": measure(_floor_fn(matrix, users), sweep.policy, units=batch)
                    }
                cell["blas_threads"] = threads if pinned else "default"
                result["cells"].append(cell)
                writer.flush()
                counter.tick(f"numpy floor {threads}t, batch {batch}, {_cat_label(catalog)}")
            del matrix
            gc.collect()
    except KeyboardInterrupt:
        result["status"] = "interrupted"
        _finish(result, writer)
        raise
    result["status"] = "complete"
    _finish(result, writer)
    return result


class _Counter:
    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total, self.done, self.progress = total, 0, progress
        if progress is not None:
            progress("starting", 0, total)

    def tick(self, what: str, n: int = 1) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(what, self.done, self.total)


def _three_stages(st, policy: TimingPolicy, batch: int) -> dict:
    """``user_encoder``, ``scoring_topk`` and ``end_to_end``; no ``scoring_topk`` where
    the stages have no separate scorer (``st.score`` is None: the runtime's recommend
    graph scores inside its run)."""
    out = {"user_encoder": measure(st.encode, policy, units=batch)}
    if st.score is not None:
        out["scoring_topk"] = measure(st.score, policy, units=batch)
    out["end_to_end"] = measure(st.end_to_end, policy, units=batch)
    return out


def _finish(result: dict, writer: _Writer) -> None:
    result["finished_at"] = _now()
    result["hardware"]["load_average_end"] = load_average()
    result["headline"] = headline(result)
    writer.flush()


def _cat_label(catalog) -> str:
    return "bundle catalog" if catalog == BUNDLE else f"{int(catalog):,} items"


def _cell(engine: str, op: str, axes: dict, n_items: int, item_dtype: str, k: int | None) -> dict:
    return {
        "engine": engine,
        "op": op,
        "provider": axes["provider"],
        "precision": axes["precision"],
        "threads": axes["threads"],
        "batch": axes["batch"],
        "history": axes["history"],
        "catalog": axes["catalog"],
        "n_items": int(n_items),
        "item_dtype": item_dtype,
        "k": k,
        "stages": {},
    }


def _floor_fn(matrix: np.ndarray, users: np.ndarray):
    if users.shape[0] == 1:
        u = np.ascontiguousarray(users[0])
        out = np.empty(matrix.shape[0], dtype=np.float32)
        return lambda: np.matmul(matrix, u, out=out)
    out = np.empty((users.shape[0], matrix.shape[0]), dtype=np.float32)
    t = matrix.T
    return lambda: np.matmul(users, t, out=out)


def _add_items_cell(rec, data, key: tuple, n_items: int, dtype: str, sweep: Sweep) -> dict:
    """items/s of ``add_items`` (tokenizer + text encoder + catalog update), new ids each
    call; ``data`` is the ``BundleData`` ``rec`` was built over (its ids and titles)."""
    prov, prec, threads = key
    n = sweep.add_items_texts
    known = data.item_ids
    titles = [t for t in known.titles if t][:n]
    texts = workload.item_texts(tuple(titles), n, seed=sweep.seed)
    calls = itertools.count()
    if known.id_type == "int":
        first_free = max((int(x) for x in known.ids), default=0) + 1

        def next_ids() -> list:
            i = next(calls)
            return list(range(first_free + i * n, first_free + (i + 1) * n))
    else:

        def next_ids() -> list:
            i = next(calls)
            return [f"bench-added-{i}-{j}" for j in range(n)]

    axes = dict(
        provider=prov,
        precision=prec,
        threads=threads,
        batch=n,
        history=None,
        catalog=sweep.base["catalog"],
    )
    cell = _cell("edgerec", "add_items", axes, n_items, dtype, None)
    with blas_threads(threads) as pinned:
        cell["stages"] = {
            "add_items": measure(lambda: rec.add_items(next_ids(), texts), sweep.policy, units=n)
        }
    cell["blas_threads"] = threads if pinned else "default"
    cell["text_words"] = len(texts[0].split()) if texts else 0
    return cell


def _torch_model(first, run_dir, torch_compare):
    """The PyTorch model to compare with, or None and why not."""
    from edgerec.benchmark.torchref import TorchModel, torch_available

    if torch_compare is False:
        return None, "disabled (--no-torch)"
    if not torch_available():
        if torch_compare:
            raise ValueError("--torch needs PyTorch installed (pip install edgerec[train])")
        return None, "torch is not installed (runtime-only install)"
    source = first.manifest.raw.get("source")
    run = run_dir or (source.get("run") if isinstance(source, dict) else None)
    if not run or not Path(run).is_dir():
        why = (
            f"the run directory {run} does not exist here"
            if run
            else "the bundle names no source run"
        )
        if torch_compare:
            raise ValueError(f"cannot compare with PyTorch: {why}; pass --run RUN_DIR")
        return None, f"{why} (pass --run RUN_DIR)"
    vocab = first.manifest.behaviour_vocab
    model = TorchModel(run, first.manifest.dims, vocab.index(first.manifest.default_behaviour))
    return model, {"run": str(Path(run).resolve()), "user_tower_parameters": model.parameters}
