"""``bench quality``: what each way of shipping the model costs in quality, size and time.

Variants of one trained run: the PyTorch model itself, the ONNX bundle in fp32, int8
and fp16, and the distilled bundle in fp32 and int8 -- plus the MostPop, ItemKNN and
Markov baselines for scale. Quality is test NDCG/HR/MRR@10 under the evaluation
protocol (leave-one-out, full ranking, seen items excluded); for bundles it is the
export's own figure, computed from the bundle's files (``manifest.quality``), or
computed here the same way when a given bundle lacks it. Size is what an app ships for
that variant; latency is ``recommend`` for one history of the model's maximum length
at one thread on the CPU, timed like ``bench latency`` does.

Bundles are exported to a temporary directory (``keep_dir`` keeps them) with
``edgerec.export.export_bundle``, or given ready-made.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgerec.benchmark import workload
from edgerec.benchmark.hardware import hardware_record
from edgerec.benchmark.timing import DEFAULT_POLICY, TimingPolicy, blas_threads, measure
from edgerec.io import atomic_write_json, atomic_write_text

SCHEMA = "edgerec-bench-quality"
VARIANTS = ("pytorch", "fp32", "int8", "fp16", "distilled-fp32", "distilled-int8", "distilled-fp16")
DEFAULT_VARIANTS = ("pytorch", "fp32", "int8", "fp16", "distilled-fp32", "distilled-int8")
METRICS = ("ndcg@10", "hr@10", "mrr@10")

Progress = Callable[[str, int, int], None]


def parse_variants(text: str | list) -> list[str]:
    parts = text if isinstance(text, list | tuple) else str(text).split(",")
    out = []
    for p in parts:
        v = str(p).strip().lower()
        if not v:
            continue
        if v == "all":
            out.extend(DEFAULT_VARIANTS)
        elif v in VARIANTS:
            out.append(v)
        else:
            raise ValueError(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)} or all")
    if not out:
        raise ValueError("no variants given")
    return list(dict.fromkeys(out))


def parse_baselines(text: str | list) -> list[str]:
    from edgerec.evaluation.baselines import BASELINES

    parts = text if isinstance(text, list | tuple) else str(text).split(",")
    out = [str(p).strip().lower() for p in parts if str(p).strip()]
    if out == ["none"]:
        return []
    bad = [b for b in out if b not in BASELINES]
    if bad:
        raise ValueError(f"unknown baseline {bad[0]!r}; choose from {', '.join(BASELINES)} or none")
    return list(dict.fromkeys(out))


def precision_bytes(bundle: Path, manifest: dict, precision: str) -> dict:
    """Bytes an app ships for one precision: its graphs, the scorer graphs and the shared
    data files (``bytes``), and what ``recommend`` alone needs, without the cold-start
    text encoder and tokenizer (``serving_bytes``)."""
    files = manifest["files"]
    graphs = {role: v[precision] for role, v in manifest["graphs"].items() if precision in v}
    shared = [manifest["item_matrix"]["file"], manifest["item_ids"], manifest["popularity"]]
    if manifest["item_matrix"].get("scale_file"):
        shared.append(manifest["item_matrix"]["scale_file"])
    shared += list((manifest.get("scorers") or {}).values())
    cold_start = {graphs.get("text_encoder"), manifest.get("tokenizer")} - {None}
    if manifest.get("tokenizer"):
        shared.append(manifest["tokenizer"])
    size = lambda name: int(files[name]["size"])  # noqa: E731
    shipped = set(shared) | set(graphs.values())
    return {
        "bytes": sum(size(n) for n in shipped),
        "serving_bytes": sum(size(n) for n in shipped - cold_start),
        "recommend_bytes": size(graphs["recommend"]) if "recommend" in graphs else None,
        "user_encoder_bytes": size(graphs["user_encoder"]),
        "text_encoder_bytes": size(graphs["text_encoder"]) if "text_encoder" in graphs else None,
        "item_matrix_bytes": size(manifest["item_matrix"]["file"]),
    }


def _time_recommend(
    bundle: Path, precision: str, threads: int, policy: TimingPolicy, seed: int
) -> dict:
    from edgerec.benchmark import adapter

    with blas_threads(threads):
        data = adapter.load_data(bundle)
        rec = adapter.build(data, "cpu", threads, precision)
        h = workload.make_histories(data.item_ids.ids, data.popularity, 1, rec.max_len, seed)
        stats = measure(lambda: rec.recommend(h.ids[0], k=10, timestamps=h.timestamps[0]), policy)
    return {
        "p50_ms": stats["p50_ms"],
        "p95_ms": stats["p95_ms"],
        "latency_n": stats["n"],
        "scorer": rec.scoring,
    }


def _time_torch(run_dir: Path, bundle: Path, threads: int, policy: TimingPolicy, seed: int) -> dict:
    from edgerec.benchmark import adapter
    from edgerec.benchmark.torchref import TorchModel, torch_threads

    data = adapter.load_data(bundle)
    m = data.manifest
    tm = TorchModel(run_dir, m.dims, m.behaviour_vocab.index(m.default_behaviour))
    h = workload.make_histories(data.item_ids.ids, data.popularity, 1, m.dims.max_len, seed)
    matrix = adapter.bundle_vectors(data).copy()
    with torch_threads(threads), blas_threads(threads):
        st = tm.stages(h, matrix, data.item_ids.ids, 10)
        stats = measure(st.end_to_end, policy)
    return {"p50_ms": stats["p50_ms"], "p95_ms": stats["p95_ms"], "latency_n": stats["n"]}


def _time_baseline(scorer, n_users: int, policy: TimingPolicy) -> dict:
    users = np.array([0]) if n_users else np.zeros(0, np.int64)

    def one() -> np.ndarray:
        s = np.asarray(scorer(users, "test"))[0]
        return np.argpartition(-s, 10)[:10]

    stats = measure(one, policy)
    return {"p50_ms": stats["p50_ms"], "p95_ms": stats["p95_ms"], "latency_n": stats["n"]}


def _metrics(m: dict) -> dict:
    return {k: round(float(m[k]), 6) for k in METRICS}


def run_quality(
    run_dir: Path | str,
    out_dir: Path | str,
    *,
    variants=DEFAULT_VARIANTS,
    baselines=("mostpop", "itemknn", "markov"),
    data_dir: Path | str | None = None,
    bundles: dict[str, Path] | None = None,
    keep_dir: Path | str | None = None,
    threads: int = 1,
    policy: TimingPolicy = DEFAULT_POLICY,
    distill_config=None,
    target: str | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict:
    """Measure every variant; writes ``quality.json``, ``quality.md`` (+ ``quality.png``).

    ``bundles`` maps ``"plain"``/``"distilled"`` to existing bundle directories of this
    run, used instead of exporting. Returns the result dict.
    """
    import json

    from edgerec.data import leave_one_out
    from edgerec.evaluation import evaluate, make_baseline
    from edgerec.export import export_bundle
    from edgerec.export.sources import load_run_dataset
    from edgerec.training.checkpoint import MODEL_FILE, load_run
    from edgerec.training.evaluate_run import model_scorer

    variants = parse_variants(list(variants))
    baselines = parse_baselines(list(baselines)) if baselines else []
    run_dir = Path(run_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bundles = dict(bundles or {})
    plain = [p for p in ("fp32", "int8", "fp16") if p in variants]
    distilled = [p for p in ("fp32", "int8", "fp16") if f"distilled-{p}" in variants]
    steps = (
        2
        + len(baselines)
        + ("pytorch" in variants)
        + bool(plain) * 2
        + bool(distilled) * 2
        + len(plain)
        + len(distilled)
    )
    done = 0

    def step(what: str) -> None:
        nonlocal done
        if progress is not None:
            progress(what, done, steps)
        done += 1

    step("loading the run and its data")
    t0 = time.perf_counter()
    run = load_run(run_dir)
    ds = load_run_dataset(run, data_dir)
    split = leave_one_out(ds)
    rows: list[dict] = []
    result = {
        "schema": SCHEMA,
        "schema_version": 1,
        "run": str(run_dir.resolve()),
        "dataset": ds.name,
        "stage": "test",
        "users": int(split.sequences.n_users),
        "items": int(split.n_items),
        "hardware": hardware_record(target),
        "settings": {
            "variants": variants,
            "baselines": baselines,
            "threads": threads,
            "policy": policy.to_dict(),
            "latency": "recommend() for one history of the model's max length, k=10, CPU",
        },
        "variants": rows,
    }
    result["target"] = result["hardware"]["target"]
    metrics_file = run_dir / "metrics.json"
    if metrics_file.is_file():  # the run's validation curve (when its trainer recorded one)
        run_metrics = json.loads(metrics_file.read_text())
        if run_metrics.get("curve"):
            result["training"] = {
                k: run_metrics.get(k)
                for k in ("best_epoch", "epochs_run", "stop_reason", "cooldown_start_step")
            }
            result["training"]["curve"] = run_metrics["curve"]

    if "pytorch" in variants:
        step("PyTorch model: test metrics")
        scorer = model_scorer(run.model, split, run.model_config.max_len)
        m = evaluate(scorer, split, "test", batch_size=run.train_config.eval_batch_size)
        rows.append(
            {
                "name": "pytorch",
                "kind": "pytorch",
                "precision": "fp32",
                "distilled": False,
                **_metrics(m),
                "bytes": (run_dir / MODEL_FILE).stat().st_size,
                "serving_bytes": (run_dir / MODEL_FILE).stat().st_size,
                "size_note": "model.safetensors (both towers and the items' text embeddings); "
                "adding items needs the text encoder on top (MiniLM, about 90 MB), which the "
                "bundles' size column includes",
            }
        )

    tmp = None
    if keep_dir is None and (
        (plain and "plain" not in bundles) or (distilled and "distilled" not in bundles)
    ):
        tmp = tempfile.TemporaryDirectory(prefix="edgerec-quality-")
    where = Path(keep_dir) if keep_dir is not None else (Path(tmp.name) if tmp else None)
    try:
        for kind, precs in (("plain", plain), ("distilled", distilled)):
            if not precs:
                continue
            if kind not in bundles:
                step(f"exporting the {kind} bundle ({', '.join(precs)})")
                path = where / f"bundle-{kind}"
                export_bundle(
                    run_dir,
                    path,
                    precisions=tuple(precs),
                    distill=kind == "distilled",
                    dataset=ds,
                    distill_config=distill_config if kind == "distilled" else None,
                )
                bundles[kind] = path
            else:
                step(f"using the {kind} bundle {bundles[kind]}")
            path = Path(bundles[kind])
            manifest = json.loads((path / "manifest.json").read_text())
            _check_source(manifest, ds, path, kind)
            step(f"{kind} bundle: test metrics")
            quality = manifest.get("quality") or {}
            for prec in precs:
                if prec not in manifest["graphs"]["user_encoder"]:
                    raise ValueError(f"{path}: the bundle has no {prec} graphs")
                if prec not in quality or not all(k in quality[prec] for k in METRICS):
                    from edgerec.export.quality import runtime_scorer

                    quality[prec] = evaluate(
                        runtime_scorer(path, manifest, prec, split), split, "test"
                    )
            for prec in precs:
                name = prec if kind == "plain" else f"distilled-{prec}"
                step(f"{name}: latency")
                row = {
                    "name": name,
                    "kind": "onnx",
                    "precision": prec,
                    "distilled": kind == "distilled",
                    **_metrics(quality[prec]),
                    **precision_bytes(path, manifest, prec),
                    **_time_recommend(path, prec, threads, policy, seed),
                }
                dist = (manifest.get("distillation") or {}).get("user_encoder") or {}
                if kind == "distilled" and dist.get("student_parameters"):
                    row["user_encoder_parameters"] = dist["student_parameters"]
                rows.append(row)
        if "pytorch" in variants:
            ref = bundles.get("plain") or bundles.get("distilled")
            step("PyTorch model: latency")
            if ref is not None:
                rows[0].update(_time_torch(run_dir, Path(ref), threads, policy, seed))
            else:
                rows[0]["latency_note"] = "not timed: no bundle to take the item matrix from"
    finally:
        if tmp is not None:
            tmp.cleanup()

    for name in baselines:
        step(f"baseline {name}")
        scorer = make_baseline(name, split)
        m = evaluate(scorer, split, "test")
        with blas_threads(threads):
            timing = _time_baseline(scorer, split.sequences.n_users, policy)
        rows.append(
            {
                "name": name,
                "kind": "baseline",
                "precision": None,
                "distilled": False,
                **_metrics(m),
                "bytes": None,
                **timing,
            }
        )

    ref = next((r for r in rows if r["name"] == "pytorch"), None)
    for r in rows:
        if ref and r is not ref and r["kind"] != "baseline" and ref["ndcg@10"]:
            r["ndcg@10_vs_pytorch"] = round((r["ndcg@10"] - ref["ndcg@10"]) / ref["ndcg@10"], 6)
    result["elapsed_s"] = round(time.perf_counter() - t0, 1)
    step("writing the report")
    write_quality_report(result, out_dir)
    if progress is not None:
        progress("done", steps, steps)
    return result


def _check_source(manifest: dict, ds, path: Path, kind: str) -> None:
    source = manifest.get("source") or {}
    fp = source.get("fingerprint")
    if fp is not None and fp != ds.fingerprint():
        raise ValueError(
            f"{path}: the {kind} bundle was exported from other data (fingerprint differs)"
        )
    if kind == "distilled" and not source.get("distilled", False):
        raise ValueError(f"{path}: given as the distilled bundle but it is not distilled")


def _mb(b) -> str:
    return "–" if b is None else f"{b / 1e6:.2f}"


def quality_markdown(result: dict, plot: str | None, plot_note: str | None) -> str:
    from edgerec.benchmark.report import fmt_ms, table

    rows = []
    for r in result["variants"]:
        drop = r.get("ndcg@10_vs_pytorch")
        rows.append(
            [
                r["name"],
                f"{r['ndcg@10']:.4f}",
                f"{r['hr@10']:.4f}",
                f"{r['mrr@10']:.4f}",
                "–" if drop is None else f"{drop:+.1%}",
                _mb(r.get("bytes")),
                _mb(r.get("serving_bytes")),
                _mb(r.get("user_encoder_bytes")),
                fmt_ms(r.get("p50_ms")),
                fmt_ms(r.get("p95_ms")),
            ]
        )
    hw = result["hardware"]
    out = [
        f"# edgerec quality vs size vs latency: {result['dataset']}",
        "",
        f"Run `{result['run']}`; {result['users']:,} test users, {result['items']:,} items; "
        f"target {result['target']} ({hw['cpu'].get('model')}, {hw['cpu'].get('usable_cores')} "
        f"usable cores, load average at start {hw.get('load_average_start')}).",
        "",
        "Test metrics under the protocol (leave-one-out, full ranking, seen items excluded). "
        "*size*: the files an app ships for the variant (graphs of that precision, the "
        "scorer graphs, item matrix, ids, popularity, tokenizer); *serving*: what "
        "`recommend` alone needs (no text encoder or tokenizer for cold-start items); "
        "*user enc*: the user-encoder graph alone. "
        f"Latency: {result['settings']['latency']}, {result['settings']['threads']} thread(s); "
        "for baselines, scoring one user over the catalog plus top-10. fp16 graphs are meant "
        "for GPUs: their CPU latency is shown for completeness.",
        "",
        table(
            [
                "variant",
                "NDCG@10",
                "HR@10",
                "MRR@10",
                "NDCG vs PyTorch",
                "size MB",
                "serving MB",
                "user enc MB",
                "p50 ms",
                "p95 ms",
            ],
            rows,
        ),
        "",
    ]
    notes = [r for r in result["variants"] if r.get("size_note")]
    for r in notes:
        out.append(f"- {r['name']} size: {r['size_note']}.")
    if notes:
        out.append("")
    if plot:
        out += [f"![quality]({Path(plot).name})", ""]
    elif plot_note:
        out += [f"_{plot_note}_", ""]
    training = result.get("training")
    if training:
        out += [
            f"Training stopped after {training['epochs_run']} epochs "
            f"({training['stop_reason']}); best validation NDCG@10 at epoch "
            f"{training['best_epoch']}.",
            "",
        ]
        if plot:
            out += ["![validation curve](training_curve.png)", ""]
    out.append(f"Measured in {result.get('elapsed_s')} s.")
    return "\n".join(out)


def curve_plot(training: dict, path: Path) -> Path:
    """Validation NDCG@10 per evaluation against training steps; the cool-down shaded."""
    from edgerec.benchmark.plots import _figure, _save

    fig, (ax,) = _figure(height=3.2)
    curve = training["curve"]
    ax.plot([c["step"] for c in curve], [c["valid_ndcg@10"] for c in curve], marker="o")
    start = training.get("cooldown_start_step")
    if start is not None and start >= 0:
        ax.axvspan(start, curve[-1]["step"], color="grey", alpha=0.15, label="cool-down")
        ax.legend(fontsize=8)
    ax.set_xlabel("training step")
    ax.set_ylabel("valid NDCG@10")
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def quality_plot(result: dict, path: Path) -> Path | None:
    from edgerec.benchmark.plots import _figure, _save

    models = [r for r in result["variants"] if r["kind"] != "baseline"]
    if not models:
        return None
    fig, (ax, ax2) = _figure(ncols=2)
    for r in models:
        marker = "s" if r["kind"] == "pytorch" else ("^" if r["distilled"] else "o")
        serving, shipped = r.get("serving_bytes"), r.get("bytes")
        if serving:
            dot = ax.scatter([serving / 1e6], [r["ndcg@10"]], marker=marker, s=50)
            ax.annotate(
                r["name"],
                (serving / 1e6, r["ndcg@10"]),
                fontsize=8,
                xytext=(4, 4),
                textcoords="offset points",
            )
            if shipped and shipped != serving:  # hollow: with the cold-start text encoder
                color = dot.get_facecolor()[0]
                ax.scatter(
                    [shipped / 1e6],
                    [r["ndcg@10"]],
                    marker=marker,
                    s=50,
                    facecolors="none",
                    edgecolors=[color],
                )
                ax.plot([serving / 1e6, shipped / 1e6], [r["ndcg@10"]] * 2, color=color, alpha=0.3)
        if r.get("p50_ms"):
            ax2.scatter([r["p50_ms"]], [r["ndcg@10"]], marker=marker, s=50)
            ax2.annotate(
                r["name"],
                (r["p50_ms"], r["ndcg@10"]),
                fontsize=8,
                xytext=(4, 4),
                textcoords="offset points",
            )
    for r in result["variants"]:
        if r["kind"] == "baseline":
            for a in (ax, ax2):
                a.axhline(r["ndcg@10"], linestyle="--", color="grey", linewidth=0.8)
                a.annotate(
                    r["name"],
                    (0.01, r["ndcg@10"]),
                    xycoords=("axes fraction", "data"),
                    fontsize=7,
                    color="grey",
                    xytext=(0, 2),
                    textcoords="offset points",
                )
    ax.set_xscale("log")
    ax.set_xlabel("size (MB): filled = serving, hollow = with the text encoder")
    ax2.set_xscale("log")
    ax2.set_xlabel("recommend() p50 (ms)")
    for a in (ax, ax2):
        a.set_ylabel("test NDCG@10")
        a.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"{result['dataset']}: quality vs size vs latency ({result['target']})")
    return _save(fig, path)


def write_quality_report(result: dict, out_dir: Path) -> dict:
    from edgerec.benchmark import plots

    plot, note = None, None
    if plots.available():
        plot = quality_plot(result, out_dir / "quality.png")
        if result.get("training"):
            curve_plot(result["training"], out_dir / "training_curve.png")
    else:
        note = "matplotlib is not installed: no plot"
    atomic_write_json(out_dir / "quality.json", result)
    atomic_write_text(
        out_dir / "quality.md", quality_markdown(result, str(plot) if plot else None, note) + "\n"
    )
    return {"report": out_dir / "quality.md", "plot": plot}
