"""Speed of ``edgerec.runtime`` against PyTorch eager and a bare numpy matmul, in one run.

Three measurements (issue 5), each interleaving the contenders call by call so that the
drift of a shared machine hits them alike; medians are reported, nothing is asserted:

1. ``recommend()`` with a history of 50 on the MovieLens 100K bundle at 1 intra-op
   thread, against the PyTorch model in eager mode two ways: ``torch_eager`` (user
   tower + scoring + seen masking + top-k from prebuilt index tensors and a cached item
   table, i.e. favourable to PyTorch) and ``torch_end_to_end`` (the same behind the
   runtime's own input handling and result objects: all of recommend()'s work with the
   engine swapped). Measured three times: call by call in a random order per round (each
   call starts with caches full of another contender's code and data), "warm", in
   alternating blocks of 25 consecutive calls per contender, and "steady", in blocks of
   200 (a server answering request after request: the first calls of a block pay for
   the caches the other contenders took, a smaller share of a longer block). The int8
   bundle also runs with ``fuse_topk=False`` (A/B of the fused top-k). The distilled
   bundle is also compared with ``torch_eager_student``, the student's architecture in
   PyTorch (``student_model``). The report records the CPython build (``interpreter``).
2. A 1M-item catalog (synthetic vectors around the real ones): ``recommend()`` over
   float32, float16 and int8 item matrices against a bare ``items @ u`` of the float32
   matrix; plus top-k alone (threshold, argpartition, ONNX TopK) over 1M scores.
3. ``add_items`` throughput with the bundle's int8 student text encoder on 2 threads.

Usage (builds what is missing under --work: a 1-epoch MovieLens 100K run unless --run
gives one -- latency does not depend on how well it is trained -- an exported fp32+int8
bundle, and a distilled one):

    OPENBLAS_NUM_THREADS=1 python benchmarks/runtime_latency.py \\
        --data-dir /work/shared/data/movielens/ml-100k --work /tmp/edgerec-bench

Writes ``benchmarks/results/runtime_latency.json`` and ``.md`` (hardware, versions,
settings, medians).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import sysconfig
import time
from pathlib import Path

# numpy's BLAS threads are fixed when numpy loads: pin them before anything imports it
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent


def ms(seconds: list[float]) -> dict:
    a = np.asarray(seconds) * 1e3
    return {
        "p50_ms": round(float(np.median(a)), 4),
        "p95_ms": round(float(np.percentile(a, 95)), 4),
        "n": len(a),
    }


class Timer:
    """Wall-clock and process CPU time, per contender.

    On a shared machine a waiting process still ages in wall-clock time; CPU time
    counts only the work done (by every thread of the process, so a library's helper
    threads are included). Everything timed here is set to 1 thread (onnxruntime,
    torch, the BLAS), so both are reported and the CPU figures are the steadier ones.
    """

    def __init__(self) -> None:
        self.wall: dict[str, list[float]] = {}
        self.cpu: dict[str, list[float]] = {}

    def __call__(self, name: str, fn, *args, **kwargs):
        w, c = time.perf_counter(), time.process_time()
        out = fn(*args, **kwargs)
        self.cpu.setdefault(name, []).append(time.process_time() - c)
        self.wall.setdefault(name, []).append(time.perf_counter() - w)
        return out

    def summary(self) -> dict:
        return {
            name: {**ms(self.wall[name]), "cpu_p50_ms": ms(self.cpu[name])["p50_ms"]}
            for name in self.wall
        }


# --- building the bundles ---------------------------------------------------------------


def build(work: Path, data_dir: Path) -> dict:
    """A 1-epoch MovieLens 100K run, its fp32+int8 bundle and a distilled int8 bundle."""
    from edgerec.data import load_dataset
    from edgerec.export import DistillConfig, export_bundle
    from edgerec.training.config import ModelConfig, TrainConfig
    from edgerec.training.trainer import train

    run = work / "run"
    plain = work / "bundle"
    distilled = work / "bundle-distilled"
    ds = None
    if not (run / "model.safetensors").is_file():
        ds = load_dataset("movielens-100k", data_dir)
        print("training 1 epoch on MovieLens 100K ...", flush=True)
        train(
            ds,
            run,
            ModelConfig(),
            TrainConfig(epochs=1, device="cpu", num_threads=2),
            progress=False,
            data_source={"name": "movielens-100k", "data_dir": str(data_dir)},
        )
    for out, distill in ((plain, False), (distilled, True)):
        if (out / "manifest.json").is_file():
            continue
        ds = ds or load_dataset("movielens-100k", data_dir)
        print(f"exporting {out.name} ...", flush=True)
        export_bundle(
            run,
            out,
            precisions=("fp32", "int8"),
            distill=distill,
            dataset=ds,
            evaluate=False,
            distill_config=DistillConfig(text_steps=100, user_epochs=1) if distill else None,
        )
    return {"run": str(run), "bundle": str(plain), "bundle_distilled": str(distilled)}


# --- inputs ------------------------------------------------------------------------------


def ml100k_histories(data_dir: Path, n: int, length: int, seed: int = 0):
    """(ids, ratings, timestamps) of the latest ``length`` events of ``n`` real users."""
    from edgerec.data import load_dataset
    from edgerec.data.split import leave_one_out

    ds = load_dataset("movielens-100k", data_dir)
    seq = leave_one_out(ds).sequences
    rng = np.random.default_rng(seed)
    counts = np.diff(seq.offsets)
    users = rng.choice(np.flatnonzero(counts >= length), n, replace=False)
    out = []
    for u in users:
        sl = slice(seq.offsets[u + 1] - length, seq.offsets[u + 1])
        out.append(
            (
                [int(ds.catalog.item_ids[i - 1]) for i in seq.items[sl]],
                [ds.behaviour_vocab[b] for b in seq.behaviours[sl]],
                seq.timestamps[sl].tolist(),
                seq.items[sl].copy(),
                seq.behaviours[sl].copy(),
            )
        )
    return out, ds


# --- 1: recommend vs PyTorch --------------------------------------------------------------


def p50_ratio(num: dict, den: dict, digits: int) -> dict:
    """``num``'s p50 over ``den``'s, wall-clock and process CPU time."""
    return {
        "wall": round(num["p50_ms"] / den["p50_ms"], digits),
        "cpu": round(num["cpu_p50_ms"] / den["cpu_p50_ms"], digits),
    }


def with_speedups(summary: dict, variants) -> dict:
    """``summary`` plus PyTorch's p50 over each ``runtime_<variant>``'s (wall and CPU)."""
    for p in variants:
        summary[f"speedup_vs_torch_{p}"] = p50_ratio(
            summary["torch_eager"], summary[f"runtime_{p}"], 2
        )
    return summary


def speedup_table(summary: dict, keys) -> list[str]:
    """Markdown rows of ``keys`` (runtime_* rows get their speed-up cells)."""
    e2e = "torch_end_to_end" in summary
    head = (
        "| path | wall p50 ms | wall p95 ms | CPU p50 ms | speed-up vs torch_eager (wall / CPU) |"
    )
    lines = [
        head + (" vs torch_end_to_end (wall / CPU) |" if e2e else ""),
        "| --- | ---: | ---: | ---: | ---: |" + (" ---: |" if e2e else ""),
    ]
    for key in keys:
        row = summary[key]
        cells = [f"| {key} | {row['p50_ms']} | {row['p95_ms']} | {row['cpu_p50_ms']} |"]
        variant = key[len("runtime_") :]
        for prefix in ("speedup_vs_torch_", "speedup_vs_torch_end_to_end_")[: 1 + e2e]:
            sp = summary.get(prefix + variant) if key.startswith("runtime_") else None
            cells.append(f" {sp['wall']}x / {sp['cpu']}x |" if sp else "  |")
        lines.append("".join(cells))
    return lines


def without_lookup_lists(rec):
    """``rec`` resolving ids through the dict and reading result labels from the catalog's
    object arrays: the runtime before ``IdIndex.int_rows`` and ``Catalog.labels``."""
    import dataclasses

    from edgerec.runtime.catalog import IdIndex

    state = rec._state_ref
    cat, index = state.catalog, state.catalog.index
    cat = dataclasses.replace(cat, index=IdIndex(index.base, index.delta, index.base_get, None))
    cat.__dict__["labels"] = (cat.ids, cat.titles)  # pre-set the cached property
    rec._state_ref = dataclasses.replace(state, catalog=cat)
    return rec


def torch_requests(histories) -> list:
    """Each history as the index tensors the PyTorch model takes, built once: the
    PyTorch side is timed without input handling (favourable to it)."""
    import torch

    from edgerec.features import gap_buckets

    out = []
    for _, _, ts, items, beh in histories:
        L = len(items)
        t = torch.from_numpy
        out.append(
            (
                t(items[None, :].astype(np.int64)),
                t(beh[None, :].astype(np.int64)),
                t(gap_buckets(np.asarray(ts)[None, :], np.array([L]))),
                torch.tensor([L]),
                t(np.unique(items).astype(np.int64)),
            )
        )
    return out


def eager_recommend(model, table):
    """``recommend()``'s work in PyTorch eager: user tower, scoring, seen and padding
    masked, top-10, on one of ``torch_requests``."""
    import torch

    def torch_recommend(p):
        items, beh, gaps, lengths, seen = p
        with torch.inference_mode():
            enc = model.encode_users(items, beh, gaps, lengths, item_table=table)
            scores = enc.user @ table.T
            scores[0, 0] = -torch.inf
            scores[0, seen] = -torch.inf
            return torch.topk(scores, 10, dim=1)

    return torch_recommend


def bench_recommend(
    bundle: Path, run_dir: Path, histories, repeats: int, distilled: Path | None = None
) -> dict:
    import torch

    from edgerec.features import gap_buckets
    from edgerec.runtime import Recommender
    from edgerec.runtime import inputs as I
    from edgerec.runtime.recommender import _recommendations
    from edgerec.runtime.results import RecommendationList
    from edgerec.training.checkpoint import load_run

    torch.set_num_threads(1)
    recs = {
        p: Recommender.load(bundle, providers="cpu", threads=1, precision=p)
        for p in ("fp32", "int8")
    }
    # the same bundle with scoring and top-k apart from the user encoder's run (A/B)
    recs["int8_unfused"] = Recommender.load(
        bundle, providers="cpu", threads=1, precision="int8", fuse_topk=False
    )
    # A/B of the lookup tables: ids through the dict, labels from the object arrays
    recs["int8_dict_lookups"] = without_lookup_lists(
        Recommender.load(bundle, providers="cpu", threads=1, precision="int8")
    )
    if distilled is not None:  # the student user encoder (PyTorch column: the teacher)
        recs["distilled_int8"] = Recommender.load(
            distilled, providers="cpu", threads=1, precision="int8"
        )
    model = load_run(run_dir).model.eval()
    with torch.inference_mode():
        table = model.items().contiguous()  # cached once, as a PyTorch server would
    student = student_model(model, recs.get("distilled_int8"))
    prepared = torch_requests(histories)
    torch_recommend = eager_recommend(model, table)
    eager_models = {"torch_eager": torch_recommend}
    if student is not None:
        eager_models["torch_eager_student"] = eager_recommend(student, table)

    # End to end: the PyTorch model behind the runtime's own input handling and result
    # objects, i.e. all the work recommend() does, with only the engine swapped.
    rec8 = recs["int8"]
    cat = rec8._state_ref.catalog
    max_len = rec8.manifest.dims.max_len

    def torch_end_to_end(h):
        p = I.prepare(h[0], h[1], h[2], cat, rec8._behaviours, max_len, False)
        n = len(p.rows)
        lengths = np.array([n], np.int64)
        gaps = gap_buckets(p.timestamps[None, :], lengths)
        with torch.inference_mode():
            enc = model.encode_users(
                torch.from_numpy(p.rows[None, :]),
                torch.from_numpy(p.behaviours[None, :]),
                torch.from_numpy(gaps),
                torch.from_numpy(lengths),
                item_table=table,
            )
            scores = enc.user @ table.T
            scores[0, 0] = -torch.inf
            scores[0, torch.from_numpy(p.seen)] = -torch.inf
            values, rows = torch.topk(scores, 10, dim=1)
        return RecommendationList(
            _recommendations(cat, rows[0].tolist(), values[0].tolist()),
            gate=float(enc.gate[0]),
            n_events=p.n_events,
            n_used=n,
        )

    def runtime(rec, h):
        return rec.recommend(h[0], k=10, behaviours=h[1], timestamps=h[2])

    for i in range(20):  # warm-up
        h = histories[i % len(histories)]
        for rec in recs.values():
            runtime(rec, h)
        for fn in eager_models.values():
            fn(prepared[i % len(prepared)])
        torch_end_to_end(h)
    same = sum(torch_end_to_end(h).item_ids == runtime(rec8, h).item_ids for h in histories) / len(
        histories
    )
    # Call by call, in a fresh random order every round: a call right after another
    # library's starts with caches full of that library's code and data, and with a
    # fixed (or rotated) order the same contender always follows the same other one
    # (runtime_fp32 and runtime_int8, one graph, differed by 25-30% that way).
    contenders = [(f"runtime_{p}", runtime, rec) for p, rec in recs.items()]
    contenders += [(name, fn, None) for name, fn in eager_models.items()]
    contenders += [("torch_end_to_end", torch_end_to_end, None)]
    order_rng = np.random.default_rng(0)
    timer = Timer()
    for i in range(repeats):
        j = i % len(histories)
        for c in order_rng.permutation(len(contenders)):
            name, fn, rec = contenders[c]
            if rec is not None:
                timer(name, fn, rec, histories[j])
            elif name in eager_models:
                timer(name, fn, prepared[j])
            else:
                timer(name, fn, histories[j])
    out = with_speedups(timer.summary(), recs)

    # Warm: the same contenders in blocks of consecutive calls, blocks alternating. Call by
    # call interleaving (above) runs each call right after another library's, with caches
    # full of its code and data; a server answering request after request does not.
    # Blocks keep each contender's working set warm while drift still hits all alike.
    def in_blocks(block: int, cycles: int) -> dict:
        timer = Timer()
        for r in range(cycles):
            for p, rec in recs.items():
                for i in range(block):
                    h = histories[(r * block + i) % len(histories)]
                    timer(f"runtime_{p}", runtime, rec, h)
            for name, fn in eager_models.items():
                for i in range(block):
                    timer(name, fn, prepared[(r * block + i) % len(prepared)])
            for i in range(block):
                h = histories[(r * block + i) % len(histories)]
                timer("torch_end_to_end", torch_end_to_end, h)
        return {**with_speedups(timer.summary(), recs), "block": block, "cycles": cycles}

    out["warm"] = in_blocks(25, max(repeats // 25, 4))
    out["steady"] = in_blocks(200, max(repeats // 200, 8))
    for table_ in (out, out["warm"], out["steady"]):
        for p in recs:
            table_[f"speedup_vs_torch_end_to_end_{p}"] = p50_ratio(
                table_["torch_end_to_end"], table_[f"runtime_{p}"], 2
            )
        if student is not None:
            table_["speedup_vs_torch_student_distilled_int8"] = p50_ratio(
                table_["torch_eager_student"], table_["runtime_distilled_int8"], 2
            )
    out["items"] = rec8.n_items
    out["history_length"] = len(histories[0][0])
    out["scoring_path"] = rec8.scoring
    out["fused_topk"] = {p: r.fused_topk for p, r in recs.items()}
    out["user_encoder_graph"] = bench_skip_layer_norm_fusion(rec8, histories, repeats * 4)
    out["time_budget"] = bench_time_budget(
        {p: recs[p] for p in ("int8", "distilled_int8") if p in recs}, histories, repeats
    )
    out["torch_end_to_end_same_top10_as_runtime_int8"] = round(same, 4)
    return out


def student_model(teacher, distilled):
    """The student's architecture in PyTorch, for the distilled bundle's own eager
    comparison: the teacher narrowed to the bundle's distilled LSTM width by the export's
    ``make_user_student``. Its weights are the pruned teacher's, not the distilled ones
    (the bundle holds only the graph), so its answers differ, but its work -- every op and
    shape of a request -- is the distilled model's. None without a distilled bundle."""
    if distilled is None:
        return None
    from edgerec.export import DistillConfig
    from edgerec.export.distill import make_user_student

    info = (distilled.manifest.raw.get("distillation") or {}).get("user_encoder") or {}
    hidden, teacher_hidden = info.get("hidden"), int(teacher.cfg.hidden)
    if not hidden:
        return None
    student = make_user_student(teacher, DistillConfig(user_hidden_ratio=hidden / teacher_hidden))
    if int(student.cfg.hidden) != int(hidden):
        raise SystemExit(f"student width {student.cfg.hidden} != the bundle's {hidden}")
    return student.eval()


def bench_skip_layer_norm_fusion(rec, histories, repeats: int) -> dict:
    """The bundle's user encoder alone, with and without onnxruntime's SkipLayerNormFusion
    (which CPU user-encoder sessions leave out, ``providers.CPU_USER_ENCODER_DISABLED``)."""
    from edgerec.runtime.providers import create_session

    blob = (rec.path / rec.graph_files["user_encoder"]).read_bytes()
    sessions = {
        "default_optimizations": create_session(blob, "ue", ["CPUExecutionProvider"], 1),
        "without_skip_layer_norm_fusion": create_session(
            blob, "ue", ["CPUExecutionProvider"], 1, user_encoder=True
        ),
    }
    cat = rec._state_ref.catalog
    enc = rec._user_for(1)
    feeds = []
    for h in histories:
        p = rec._prepare(cat, h[0], h[1], h[2], False)
        feeds.append(rec._user_feeds(cat, [p], len(p.rows), enc))
    outputs = ["user", "gate", "attention"]
    timer = Timer()
    for i in range(repeats):
        for name, sess in sessions.items():
            timer(name, sess.run, outputs, feeds[i % len(feeds)])
    out = timer.summary()
    out["ratio"] = p50_ratio(out["without_skip_layer_norm_fusion"], out["default_optimizations"], 3)
    return out


BUDGET_SECTIONS = {  # share of a warm recommend(): which cut's p50 minus which
    "run_overhead_and_event_embedding": ("graph_to_embedding", None),
    "bidirectional_lstm": ("graph_to_lstm", "graph_to_embedding"),
    "attention_pooling_heads": ("graph_to_user_vector", "graph_to_lstm"),
    "scoring_masking_topk": ("graph_whole", "graph_to_user_vector"),
    "python_around_the_run": ("recommend", "graph_whole"),
}


def graph_cut(model, outputs: list[str]) -> bytes:
    """``model`` with only the nodes ``outputs`` need and those as its outputs; every
    input stays declared, so a run still takes (and pays for) all of recommend()'s feeds."""
    import onnx
    from onnx import helper

    cut = onnx.ModelProto()
    cut.CopyFrom(model)
    del cut.graph.output[:]
    cut.graph.output.extend(helper.make_empty_tensor_value_info(o) for o in outputs)
    nodes = list(cut.graph.node)  # not in topological order: the fused graph's additions
    need, keep = set(outputs), set()  # come last, so collect until nothing more is needed
    while True:
        more = {
            i
            for i, node in enumerate(nodes)
            if i not in keep and any(o in need for o in node.output)
        }
        if not more:
            break
        keep |= more
        for i in more:
            need.update(nodes[i].input)
    del cut.graph.node[:]
    cut.graph.node.extend(nodes[i] for i in sorted(keep))
    return cut.SerializeToString()


def _captured_feeds(rec, histories) -> list[dict]:
    """The feeds of the fused run each history's recommend() makes (one per history),
    whichever session ran it (the dynamic one or one of a fixed width)."""
    import dataclasses

    fused, fixed, feeds = rec._fused, rec._fused_runs, []

    def capturing(run):
        def capture(names, feed):
            feeds.append(dict(feed))
            return run(names, feed)

        return capture

    rec._fused = dataclasses.replace(fused, run=capturing(fused.run))
    rec._fused_runs = {width: capturing(run) for width, run in fixed.items()}
    try:
        for h in histories:
            rec.recommend(h[0], k=10, behaviours=h[1], timestamps=h[2])
    finally:
        rec._fused, rec._fused_runs = fused, fixed
    return feeds


def bench_time_budget(recs: dict, histories, repeats: int) -> dict:
    """Where a warm single-history ``recommend()`` spends its time, measured per bundle.

    The fused graph recommend() runs (user encoder + scoring + top-k; the fixed-width
    one when every history's request has a width with a session of its own) is cut
    after the event embedding (its LayerNormalization), after the LSTM and after the
    user vector.
    Each cut runs on the very feeds recommend() built for the same history, so it pays
    onnxruntime's whole per-run cost. Per cycle, every bundle's recommend() and cuts run
    in blocks of 25 consecutive calls; a section's share is the median over cycles of the
    difference of two blocks' CPU medians, so drift between cycles cancels (an estimate:
    shares need not add up exactly to recommend()).
    """
    import onnx

    from edgerec.runtime.fused import OUTPUTS, REQUEST, UP_TO_WINDOW, fused_graph
    from edgerec.runtime.providers import CPU, create_session, fast_run

    plans, out = {}, {}
    for name, rec in recs.items():
        feeds = _captured_feeds(rec, histories) if rec._fused is not None else []
        blob = (rec.path / rec.graph_files["user_encoder"]).read_bytes()
        widths = {f[REQUEST].shape[1] for f in feeds}
        width = widths.pop() if len(widths) == 1 else None
        if width not in rec._fused_runs:
            width = None  # the dynamic session ran them
        elif width < rec.max_len:
            width = UP_TO_WINDOW  # the session for requests short of the window
        model = onnx.load_from_string(fused_graph(blob, rec.max_len, width)) if feeds else None
        by_op: dict[str, list[str]] = {}
        for node in model.graph.node if model is not None else []:
            by_op.setdefault(node.op_type, []).append(node.output[0])
        if len(feeds) != len(histories) or any(
            len(by_op.get(op, [])) != 1 for op in ("LayerNormalization", "LSTM")
        ):
            out[name] = {"skipped": "no fused run per history, or not the graph builder's graph"}
            continue
        cuts = {
            "graph_to_embedding": by_op["LayerNormalization"],
            "graph_to_lstm": by_op["LSTM"],
            "graph_to_user_vector": ["user", "gate"],
            "graph_whole": list(OUTPUTS),
        }
        runs = {
            cut: (fast_run(create_session(graph_cut(model, outs), cut, [CPU], 1, True)), outs)
            for cut, outs in cuts.items()
        }
        plans[name] = (rec, feeds, runs, width)
    block = 25
    cycles: dict[str, list[dict]] = {name: [] for name in plans}
    for r in range(max(repeats // block, 4)):
        for name, (rec, feeds, runs, _) in plans.items():
            timer = Timer()
            for i in range(block):
                h = histories[(r * block + i) % len(histories)]
                timer("recommend", rec.recommend, h[0], k=10, behaviours=h[1], timestamps=h[2])
            for cut, (run, outs) in runs.items():
                for i in range(block):
                    timer(cut, run, outs, feeds[(r * block + i) % len(feeds)])
            cycles[name].append({k: statistics.median(v) * 1e6 for k, v in timer.cpu.items()})
    for name, per_cycle in cycles.items():
        out[name] = {
            "block": block,
            "cycles": len(per_cycle),
            "request_width_fixed": plans[name][3],
            "recommend_cpu_us": round(statistics.median(c["recommend"] for c in per_cycle), 1),
            "sections_cpu_us": {
                section: round(statistics.median(c[a] - (c[b] if b else 0.0) for c in per_cycle), 1)
                for section, (a, b) in BUDGET_SECTIONS.items()
            },
        }
    return out


# --- 2: a 1M-item catalog -----------------------------------------------------------------


def make_large_bundle(src: Path, out: Path, n: int, dtype: str, seed: int = 0) -> Path:
    """``src`` with its catalog replaced by ``n`` synthetic items (no text encoder)."""
    from edgerec.runtime.bundle import read_manifest

    sys.path.insert(0, str(HERE.parent / "tests"))
    from runtime_helpers import quantize_rows, write_manifest

    if (out / "manifest.json").is_file():
        return out
    m = json.loads((src / "manifest.json").read_text())
    man = read_manifest(src)
    real = np.load(src / man.item_matrix.file, allow_pickle=False).astype(np.float32)
    if man.item_matrix.scale_file:
        real = real * np.load(src / man.item_matrix.scale_file)[:, None]
    rng = np.random.default_rng(seed)
    base = real[1:][rng.integers(0, real.shape[0] - 1, n)]
    noise = rng.standard_normal(base.shape, dtype=np.float32) * base.std(axis=0)
    matrix = np.zeros((n + 1, real.shape[1]), np.float32)
    matrix[1:] = 0.7 * base + 0.3 * noise
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in set(m["graphs"]["user_encoder"].values()):
        shutil.copy(src / f, tmp / f)
    scale_file = None
    if dtype == "float32":
        np.save(tmp / "items.npy", matrix)
    elif dtype == "float16":
        np.save(tmp / "items.npy", matrix.astype(np.float16))
    else:
        q, s = quantize_rows(matrix)
        np.save(tmp / "items.npy", q)
        np.save(tmp / "items_scale.npy", s)
        scale_file = "items_scale.npy"
    ids = list(range(1, n + 1))  # MovieLens ids 1..1682 stay valid history ids
    (tmp / "items.json").write_text(
        json.dumps({"ids": ids, "titles": [None] * n, "id_type": "int"})
    )
    np.save(tmp / "popularity.npy", rng.integers(0, 1000, n + 1).astype(np.float32))
    m["dims"]["n_items"] = n
    m["graphs"] = {"user_encoder": m["graphs"]["user_encoder"]}
    m["tokenizer"] = None
    m["item_matrix"] = {"file": "items.npy", "dtype": dtype, "scale_file": scale_file}
    for key in ("parity", "quality", "distillation", "scoring"):
        m.pop(key, None)
    write_manifest(tmp, m)
    tmp.rename(out)
    return out


def bench_topk_methods(scores: np.ndarray, repeats: int) -> dict:
    import onnxruntime as ort

    from edgerec.runtime import onnxproto as P
    from edgerec.runtime.scoring import top_k

    graph = P.model(
        [P.node("TopK", ["s", "k"], ["v", "i"])],
        [P.value_info("s", P.FLOAT, [1, "n"]), P.value_info("k", P.INT64, [1])],
        [P.value_info("v", P.FLOAT, [1, 10]), P.value_info("i", P.INT64, [1, 10])],
    )
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(graph, so, providers=["CPUExecutionProvider"])
    s2 = scores[None, :]
    k = np.array([10], np.int64)
    fns = {
        "threshold_top_k": lambda: top_k(scores, 10),
        "argpartition": lambda: np.argpartition(scores, -10)[-10:],
        "onnx_topk": lambda: sess.run(None, {"s": s2, "k": k}),
    }
    for _ in range(3):
        for f in fns.values():
            f()
    timer = Timer()
    for _ in range(repeats):
        for name, f in fns.items():
            timer(name, f)
    return timer.summary()


def bench_shortlist_product(rec, u: np.ndarray, repeats: int) -> dict:
    """The int8 shortlist's matrix product alone, two ways over the same int8 rows:
    ``DynamicQuantizeMatMul`` (the fourth session's graph, onnxruntime quantizes the
    user and scales each column) and the runtime's ``MatMulInteger`` + ``Cast`` + ``Mul``
    of a user quantized on the host (``scoring._int8_graph``)."""
    from edgerec.runtime import onnxproto as P
    from edgerec.runtime.providers import CPU, create_session
    from edgerec.runtime.scoring import _int8_graph, _quantize_base, quantize_users

    qt, scales, _ = _quantize_base(rec._state_ref.catalog)
    n = qt.shape[1]
    dqmm = P.model(
        [
            P.node(
                "DynamicQuantizeMatMul",
                ["user", "qt", "scale", "zp"],
                ["scores"],
                domain="com.microsoft",
            )
        ],
        [P.value_info("user", P.FLOAT, [1, qt.shape[0]])],
        [P.value_info("scores", P.FLOAT, [1, n])],
        initializers=[
            P.tensor("qt", qt),
            P.tensor("scale", scales),
            P.tensor("zp", np.zeros(n, np.int8)),
        ],
        opsets={"": 17, "com.microsoft": 1},
    )
    sessions = {
        "dynamic_quantize_matmul": (create_session(dqmm, "dqmm", [CPU], 1), "user"),
        "matmul_integer": (create_session(_int8_graph(qt, scales), "mmi", [CPU], 1), "user_q"),
    }
    del qt
    user = u[None, :].astype(np.float32)
    codes, _ = quantize_users(user)
    feeds = {"user": {"user": user}, "user_q": {"user_q": codes}}
    timer = Timer()
    for _ in range(repeats):
        for name, (sess, key) in sessions.items():
            timer(name, sess.run, ["scores"], feeds[key])
    out = timer.summary()
    out["ratio"] = p50_ratio(out["matmul_integer"], out["dynamic_quantize_matmul"], 3)
    return out


def bench_large(src: Path, work: Path, n: int, histories, repeats: int) -> dict:
    from edgerec.runtime import Recommender

    recs = {}
    load_s = {}
    variants = [
        ("float32", "auto"),
        ("float16", "auto"),
        ("int8", "auto"),
        ("float32", "numpy"),
    ]
    for dtype, scoring in variants:
        b = make_large_bundle(src, work / f"bundle-{n}-{dtype}", n, dtype)
        name = dtype if scoring == "auto" else f"{dtype}_scoring_{scoring}"
        t = time.perf_counter()
        recs[name] = Recommender.load(b, providers="cpu", threads=1, scoring=scoring)
        load_s[name] = round(time.perf_counter() - t, 2)
    items32 = np.load(work / f"bundle-{n}-float32" / "items.npy", allow_pickle=False)
    u = recs["float32"].user_vector(histories[0][0], histories[0][1], histories[0][2]).vector
    bare = lambda: items32 @ u  # noqa: E731
    for i in range(3):
        bare()
        for rec in recs.values():
            rec.recommend(histories[i][0], k=10)
    timer = Timer()
    for i in range(repeats):
        h = histories[i % len(histories)]
        timer("bare_numpy_matmul_fp32", bare)
        for d, rec in recs.items():
            timer(f"recommend_{d}", rec.recommend, h[0], k=10, behaviours=h[1], timestamps=h[2])
    out = timer.summary()
    for d in recs:
        out[f"ratio_{d}_to_bare_matmul"] = p50_ratio(
            out[f"recommend_{d}"], out["bare_numpy_matmul_fp32"], 3
        )
    out["scoring_path"] = {d: r.scoring for d, r in recs.items()}
    out["load_seconds"] = load_s
    out["items"] = n

    def agreement(a: str, b: str, count: int = 50) -> dict:
        same, overlap = [], []
        for h in histories[:count]:
            x = recs[a].recommend(h[0], k=10, behaviours=h[1], timestamps=h[2]).item_ids
            y = recs[b].recommend(h[0], k=10, behaviours=h[1], timestamps=h[2]).item_ids
            same.append(x == y)
            overlap.append(len(set(x) & set(y)) / 10)
        return {
            "identical": round(float(np.mean(same)), 4),
            "overlap": round(float(np.mean(overlap)), 4),
        }

    # the quantized shortlist paths must equal exact scoring of the same rows
    out["fp32_auto_vs_exact_numpy"] = agreement("float32", "float32_scoring_numpy")
    out["int8_rows_vs_fp32_rows"] = agreement("int8", "float32_scoring_numpy")
    out["topk_over_1m_scores"] = bench_topk_methods(items32 @ u, max(repeats // 2, 20))
    out["shortlist_product"] = bench_shortlist_product(recs["float32"], u, max(repeats // 2, 20))
    recs.clear()  # free the matrices before the next section
    return out


# --- 3: add_items --------------------------------------------------------------------------


def bench_add_items(bundle: Path, texts: list[str], threads: int, repeats: int) -> dict:
    from edgerec.runtime import Recommender

    rec = Recommender.load(bundle, providers="cpu", threads=threads)
    rec.add_items([10_000_000], ["warm-up"])
    rates, cpu_rates = [], []
    next_id = 20_000_000
    for _ in range(repeats):
        ids = list(range(next_id, next_id + len(texts)))
        next_id += len(texts)
        w, c = time.perf_counter(), time.process_time()
        rec.add_items(ids, texts)
        cpu = time.process_time() - c  # all threads of the process
        rates.append(len(texts) / (time.perf_counter() - w))
        cpu_rates.append(len(texts) / cpu)
    return {
        "items_per_s_median": round(statistics.median(rates), 1),
        "items_per_s_all": [round(r, 1) for r in rates],
        "items_per_cpu_second_median": round(statistics.median(cpu_rates), 1),
        "items_per_call": len(texts),
        "threads": threads,
        "text_encoder": rec.graph_files.get("text_encoder"),
        "distilled": bool((rec.manifest.raw.get("source") or {}).get("distilled")),
        "precision": rec.precision,
    }


# --- report --------------------------------------------------------------------------------


def interpreter() -> dict:
    """Which CPython build ran: about a third of a warm ``recommend()`` is Python, and
    builds differ there (see docs/runtime.md, "The Python interpreter"). ``CONFIG_ARGS``
    is kept as sysconfig gives it, though a distribution's static binary may report its
    shared build's; the libpython actually mapped into this process is read directly."""
    shared = None
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            shared = any("libpython" in line for line in f)
    except OSError:
        shared = bool(sysconfig.get_config_var("Py_ENABLE_SHARED"))
    args = sysconfig.get_config_var("CONFIG_ARGS") or ""
    return {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": os.path.realpath(sys.executable),
        "libpython_shared": shared,
        "config_args": args,
    }


def hardware() -> dict:
    import onnxruntime as ort

    from edgerec.commands.runtime import _cpu, _gpu

    return {
        "host": platform.node(),
        "cpu": _cpu(),
        "gpus": _gpu(),
        "python": platform.python_version(),
        "interpreter": interpreter(),
        "numpy": np.__version__,
        "onnxruntime": ort.__version__,
        "blas_threads_env": {
            k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
        },
        "load_average": os.getloadavg(),
    }


def python_build(hw: dict) -> str:
    py = hw.get("interpreter") or {"version": hw.get("python", "?")}
    if "executable" not in py:
        return f"Python {py['version']}"
    linkage = {True: "libpython shared", False: "libpython linked in", None: "linkage unknown"}
    return f"{py['implementation']} {py['version']} ({py['executable']}, {linkage[py['libpython_shared']]})"


def fixed_note(budgets: dict) -> str:
    widths = {b.get("request_width_fixed") for b in budgets.values()}
    fixed = sorted(w for w in widths if isinstance(w, int))
    names = ["the dynamic session's graph"] if None in widths else []
    if widths - {None, *fixed}:  # UP_TO_WINDOW
        names.append("the graph for requests short of the window")
    if fixed:
        names.append("the graph with the request width fixed at " + ", ".join(map(str, fixed)))
    return " and ".join(names)


def student_line(summary: dict) -> list[str]:
    sp = summary.get("speedup_vs_torch_student_distilled_int8")
    if not sp:
        return []
    return [
        "",
        f"runtime_distilled_int8 vs torch_eager_student: {sp['wall']}x wall / {sp['cpu']}x CPU.",
    ]


def markdown(res: dict) -> str:
    hw = res["hardware"]
    flags = ", ".join(f for f, on in hw["cpu"]["flags"].items() if on) or "none"
    lines = [
        "# edgerec runtime latency",
        "",
        f"{res['date']} on {hw['cpu']['model']} ({hw['cpu']['cores']} cores, flags {flags}), "
        f"onnxruntime {hw['onnxruntime']}, numpy {hw['numpy']}, {python_build(hw)}. "
        "Load average at start "
        f"{', '.join(f'{x:.1f}' for x in hw['load_average'])} on a machine shared with "
        "other jobs: wall-clock times include waiting for a core, so each table also gives "
        "the process CPU time (the steadier figure); ratios come from the same "
        "interleaved run.",
        "",
        f"Command: `{res['command']}`",
        "",
    ]
    if "recommend" in res:
        r = res["recommend"]
        lines += [
            f"## recommend(), history {r['history_length']}, {r['items']} items, 1 intra-op thread",
            "",
        ]
        order = [f"runtime_{p}" for p in r.get("fused_topk", {})]  # the contenders' order
        runtime_keys = sorted(
            (k for k in r if k.startswith("runtime_")),
            key=lambda k: order.index(k) if k in order else len(order),
        )
        torch_keys = [
            k for k in ("torch_eager", "torch_eager_student", "torch_end_to_end") if k in r
        ]
        lines += speedup_table(r, [*runtime_keys, *torch_keys])
        lines += student_line(r)
        for key, what in (
            ("warm", "Warm"),
            (
                "steady",
                "Steady (the same, in longer blocks: a server answering request after "
                "request, whose first calls in a block pay for the caches the other contenders "
                "took)",
            ),
        ):
            if key not in r:
                continue
            w = r[key]
            lines += [
                "",
                f"{what}: blocks of {w['block']} consecutive calls per contender, blocks "
                f"alternating, {w.get('cycles', '?')} cycles (the first table interleaves call "
                "by call in a random order, so every call starts with caches holding another "
                "contender's code and data):",
                "",
            ]
            lines += speedup_table(w, [*runtime_keys, *torch_keys])
            lines += student_line(w)
        lines += [
            "",
            "torch_eager: the trained model in eager mode (user tower + scoring + masking + "
            "top-k from prebuilt tensors: the PyTorch side skips the input handling). "
            "torch_end_to_end: the same model behind the runtime's own input handling "
            "(ids, behaviours, timestamps -> rows and gap buckets) and result objects, i.e. "
            "all the work recommend() does with only the engine swapped (same top-10 as "
            "runtime_int8 for "
            f"{r.get('torch_end_to_end_same_top10_as_runtime_int8', float('nan')):.0%} of "
            f"histories). Scoring path: {r['scoring_path']}; runtime_int8_unfused is the "
            "int8 bundle loaded with fuse_topk=False (scoring and top-k in numpy after the "
            "user encoder's run instead of inside it); runtime_int8_dict_lookups resolves ids "
            "through the id dict and reads result labels from numpy object arrays (the "
            "runtime before list lookups). runtime_distilled_int8 is the "
            "distilled student bundle; its speed-up columns compare it with the teacher's "
            "PyTorch model, and the line under each table with torch_eager_student: the "
            "student's architecture (LSTM narrowed to the distilled width) in eager mode, "
            "the same work as the distilled bundle (its weights are the pruned teacher's, "
            "so its answers differ; its ops and shapes do not).",
            "",
        ]
        if "user_encoder_graph" in r:
            ug = r["user_encoder_graph"]
            lines += [
                "The int8 bundle's user encoder graph alone, one history per run, interleaved "
                "(CPU p50): "
                f"{ug['without_skip_layer_norm_fusion']['cpu_p50_ms']} ms without onnxruntime's "
                f"SkipLayerNormFusion (what CPU sessions use), "
                f"{ug['default_optimizations']['cpu_p50_ms']} ms with it (ratio "
                f"{ug['ratio']['cpu']}).",
                "",
            ]
        budgets = {p: b for p, b in r.get("time_budget", {}).items() if "skipped" not in b}
        if budgets:
            lines += [
                "Where a warm recommend() spends its time (CPU us): the fused graph it runs "
                f"({fixed_note(budgets)}), "
                "cut after the event embedding, after the LSTM and after the user vector, each "
                "run on the feeds recommend() built, in blocks of 25 calls alternating with "
                "recommend() itself and with the other bundle's; each row is the median over "
                "cycles of the difference of two blocks' medians (an estimate: the rows need "
                "not add up to recommend()). The first row includes onnxruntime's per-run cost "
                "(feeds, outputs, executor) and the nodes that split the request and count its "
                "gap buckets.",
                "",
                "| section | " + " | ".join(budgets) + " |",
                "| --- |" + " ---: |" * len(budgets),
            ]
            for section in BUDGET_SECTIONS:
                lines.append(
                    f"| {section.replace('_', ' ')} | "
                    + " | ".join(str(b["sections_cpu_us"][section]) for b in budgets.values())
                    + " |"
                )
            lines.append(
                "| recommend() | "
                + " | ".join(str(b["recommend_cpu_us"]) for b in budgets.values())
                + " |"
            )
            lines.append("")
    if "large" in res:
        g = res["large"]
        b = g["bare_numpy_matmul_fp32"]
        lines += [
            f"## {g['items']:,}-item catalog (synthetic vectors), 1 thread",
            "",
            "| path | wall p50 ms | wall p95 ms | CPU p50 ms | / bare matmul (wall / CPU) |",
            "| --- | ---: | ---: | ---: | ---: |",
            f"| bare `items @ u` (fp32) | {b['p50_ms']} | {b['p95_ms']} | {b['cpu_p50_ms']} | 1 |",
        ]
        for d, path in g["scoring_path"].items():
            x, ratio = g[f"recommend_{d}"], g[f"ratio_{d}_to_bare_matmul"]
            lines.append(
                f"| recommend() {d} ({path}) | {x['p50_ms']} | {x['p95_ms']} | "
                f"{x['cpu_p50_ms']} | {ratio['wall']} / {ratio['cpu']} |"
            )
        t = g["topk_over_1m_scores"]
        lines += [
            "",
            f"Top-10 lists, float32 rows via the {g['scoring_path']['float32']} shortlist vs "
            "exact numpy scoring: identical for "
            f"{g['fp32_auto_vs_exact_numpy']['identical']:.0%} of histories. "
            "int8-stored rows vs float32 rows (quantized catalog): identical "
            f"{g['int8_rows_vs_fp32_rows']['identical']:.0%}, mean overlap "
            f"{g['int8_rows_vs_fp32_rows']['overlap']:.0%}.",
            "",
            f"Top-10 of {g['items']:,} scores alone (CPU p50): "
            + ", ".join(f"{k} {v['cpu_p50_ms']} ms" for k, v in t.items())
            + ".",
            "",
        ]
        if "shortlist_product" in g:
            sp = g["shortlist_product"]
            lines += [
                f"The int8 shortlist's product alone over the {g['items']:,} int8 rows (CPU "
                f"p50): MatMulInteger + Cast + Mul {sp['matmul_integer']['cpu_p50_ms']} ms, "
                f"DynamicQuantizeMatMul {sp['dynamic_quantize_matmul']['cpu_p50_ms']} ms "
                f"(ratio {sp['ratio']['cpu']}).",
                "",
            ]
    if "add_items" in res:
        a = res["add_items"]
        kind = "distilled student" if a["distilled"] else "teacher, not distilled"
        lines += [
            "## add_items (cold start)",
            "",
            f"{a['items_per_s_median']} items/s wall-clock (runs: {a['items_per_s_all']}); "
            f"{a['items_per_cpu_second_median']} items per CPU-second of the process; "
            f"{a['items_per_call']} items per call, {a['threads']} onnxruntime threads, "
            f"{a['text_encoder']} ({kind}).",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data-dir", type=Path, required=True, help="MovieLens 100K folder.")
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgerec-bench"))
    ap.add_argument("--bundle", type=Path, help="Undistilled bundle (default: built in --work).")
    ap.add_argument("--run", type=Path, help="Its training run (for the PyTorch model).")
    ap.add_argument("--distilled", type=Path, help="Distilled bundle for add_items.")
    ap.add_argument("--repeats", type=int, default=300)
    ap.add_argument("--large-items", type=int, default=1_000_000)
    ap.add_argument("--large-repeats", type=int, default=40)
    ap.add_argument("--add-items", type=int, default=1000, help="Items per add_items call.")
    ap.add_argument("--skip", nargs="*", default=[], choices=["recommend", "large", "add_items"])
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)

    args.work.mkdir(parents=True, exist_ok=True)
    built = {}
    if not (args.bundle and args.run and args.distilled):
        built = build(args.work, args.data_dir)
    bundle = args.bundle or Path(built["bundle"])
    run = args.run or Path(built["run"])
    distilled = args.distilled or Path(built["bundle_distilled"])

    histories, ds = ml100k_histories(args.data_dir, 200, 50)
    res = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": "OPENBLAS_NUM_THREADS=1 python "
        + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "hardware": hardware(),
        "bundles": {"bundle": str(bundle), "run": str(run), "distilled": str(distilled)},
        "run_epochs": json.loads((run / "config.json").read_text())["train"].get("epochs"),
    }
    if "recommend" not in args.skip:
        print("recommend() vs PyTorch ...", flush=True)
        res["recommend"] = bench_recommend(
            bundle, run, histories, args.repeats, distilled if distilled != bundle else None
        )
        print(json.dumps(res["recommend"], indent=1), flush=True)
    if "large" not in args.skip:
        print(f"{args.large_items:,}-item catalog ...", flush=True)
        res["large"] = bench_large(
            bundle, args.work, args.large_items, histories, args.large_repeats
        )
        print(json.dumps(res["large"], indent=1), flush=True)
    if "add_items" not in args.skip:
        print("add_items ...", flush=True)
        texts = [f"{t} (new edition)" for t in ds.catalog.texts[: args.add_items]]
        while len(texts) < args.add_items:
            texts += texts[: args.add_items - len(texts)]
        res["add_items"] = bench_add_items(distilled, texts, threads=2, repeats=5)
        print(json.dumps(res["add_items"], indent=1), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "runtime_latency.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    (args.out / "runtime_latency.md").write_text(markdown(res) + "\n")
    print(markdown(res))


if __name__ == "__main__":
    main()
