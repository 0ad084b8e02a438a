"""Speed of ``edgerec.runtime`` (bundle format 2) against the previous runtime, PyTorch
eager and a bare numpy matmul, in one run on one machine. Nothing is asserted.

1. ``recommend()`` of real 50-event MovieLens 100K histories (timestamps given), 1
   thread, k=10, per bundle (distilled int8, int8): this runtime; the previous runtime
   (``--old-python``: an interpreter with the previous edgerec installed, serving the
   same run exported in the previous format, in a worker process); and the run's
   PyTorch model in eager mode doing the same work (ids -> rows, gaps, encoder, scoring,
   masking, top-k, rows -> ids: ``edgerec.benchmark.torchref``). Contenders alternate in
   blocks of ``--block`` calls for ``--rounds`` rounds; the figures are the medians of
   the rounds' p50s.
2. ``recommend_batch`` of 256 real histories: the whole call against the bundle's
   ``recommend`` graph run alone on the same arrays, the difference per history being
   the host-side work (normalising, id mapping, results); the previous runtime's whole
   call alongside.
3. A 1M-item catalog (the bundle's rows and random rows like them): ``recommend()``
   (the int8 shortlist) against a bare ``items @ u`` of the float32 matrix.

    OPENBLAS_NUM_THREADS=1 python benchmarks/runtime_latency.py --work /tmp/lat5 \\
        --data-dir /work/shared/data --old-python /tmp/oldvenv/bin/python --out benchmarks/results

``--work`` holds ``run`` (the training run), ``bundle-distilled`` and ``bundle-int8``
(this format) and ``old-distilled`` / ``old-int8`` (the previous format, same run).
Both distilled bundles must hold user encoders of the same size: the previous export
always shipped the half-width student, so this format's is exported with
``DistillConfig(min_retention=0.0)`` (else its guard may ship the teacher, and the two
runtimes would run different graphs); the report prints each bundle's user encoder.
Writes ``runtime_latency.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy's BLAS: fixed when it loads
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

# The previous runtime's side, run by ``--old-python`` (it cannot import this edgerec):
# commands in, per-call nanoseconds out, one JSON line each.
WORKER = r"""
import json, sys, time
from edgerec.runtime import Recommender
recs, hist = {}, None
for line in sys.stdin:
    cmd = json.loads(line)
    if cmd["op"] == "load":
        recs[cmd["name"]] = Recommender.load(cmd["bundle"], providers="cpu", threads=1,
                                             precision="int8")
        hist = cmd["histories"]
        out = "ok"
    elif cmd["op"] == "block":
        rec, out, n = recs[cmd["name"]], [], len(hist)
        for i in range(cmd["start"], cmd["start"] + cmd["n"]):
            ids, ts = hist[i % n]
            t = time.perf_counter_ns()
            rec.recommend(ids, k=10, timestamps=ts)
            out.append(time.perf_counter_ns() - t)
    elif cmd["op"] == "batch":
        rec, out = recs[cmd["name"]], []
        ids = [h[0] for h in hist[: cmd["size"]]]
        ts = [h[1] for h in hist[: cmd["size"]]]
        for _ in range(cmd["repeats"]):
            t = time.perf_counter_ns()
            rec.recommend_batch(ids, k=10, timestamps=ts)
            out.append(time.perf_counter_ns() - t)
    print(json.dumps(out), flush=True)
"""


class OldRuntime:
    """The previous runtime in a worker process, driven block by block."""

    def __init__(self, python: str) -> None:
        self.proc = subprocess.Popen(
            [python, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def ask(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the previous runtime's worker died on {cmd['op']}")
        return json.loads(line)


def real_histories(data_dir: str, length: int = 50, limit: int = 400) -> list:
    """(ids, timestamps) of the latest ``length`` events before each user's test target,
    for users with that many."""
    from edgerec.data import leave_one_out, load_dataset

    ds = load_dataset("movielens-100k", Path(data_dir) / "movielens" / "ml-100k")
    split = leave_one_out(ds)
    seq = split.sequences
    ends = split.history_end("test")
    out = []
    for u in range(seq.n_users):
        start = seq.offsets[u]
        if ends[u] - start >= length:
            sl = slice(ends[u] - length, ends[u])
            ids = [int(ds.catalog.item_ids[i - 1]) for i in seq.items[sl]]
            out.append((ids, seq.timestamps[sl].tolist()))
    return out[:limit]


def p50(ns: list) -> float:
    return float(np.percentile(np.asarray(ns) / 1e6, 50))


def rounds_summary(per_round: list[list]) -> dict:
    p50s = [p50(r) for r in per_round]
    return {
        "p50_ms": statistics.median(p50s),
        "p50_ms_rounds": [round(x, 4) for x in p50s],
        "p95_ms": float(np.percentile(np.concatenate(per_round) / 1e6, 95)),
        "calls": int(sum(len(r) for r in per_round)),
    }


def timed_block(fn, hist, start: int, n: int) -> list:
    out = []
    for i in range(start, start + n):
        ids, ts = hist[i % len(hist)]
        t = time.perf_counter_ns()
        fn(ids, ts)
        out.append(time.perf_counter_ns() - t)
    return out


def recommend_section(args, hist, old: OldRuntime | None) -> dict:
    import torch

    from edgerec.benchmark.torchref import TorchModel
    from edgerec.benchmark.workload import Histories
    from edgerec.runtime import Recommender

    torch.set_num_threads(1)
    out = {}
    for name in ("distilled", "int8"):
        rec = Recommender.load(
            args.work / f"bundle-{name}", providers="cpu", threads=1, precision="int8"
        )
        ids = tuple(json.loads((rec.path / "items.json").read_text())["ids"])
        matrix = np.load(rec.path / "items.npy")
        tm = TorchModel(
            args.work / "run",
            rec.manifest.dims,
            rec.manifest.behaviour_vocab.index(rec.manifest.default_behaviour),
        )
        index = {x: i + 1 for i, x in enumerate(ids)}

        stages = {}  # per history, built once: the table tensor and index as a server keeps them
        for h_ids, h_ts in hist:
            rows = np.array([[index[x] for x in h_ids]], np.int64)
            stages[id(h_ids)] = tm.stages(Histories([h_ids], [h_ts], rows), matrix, ids, 10)

        def torch_call(h_ids, h_ts, stages=stages):
            return stages[id(h_ids)].end_to_end()  # ids -> rows, gaps, encoder, top-k, ids

        contenders = {
            "runtime": lambda h_ids, h_ts, rec=rec: rec.recommend(h_ids, k=10, timestamps=h_ts),
            "torch_eager": torch_call,
        }
        if old is not None:
            old.ask(op="load", name=name, bundle=str(args.work / f"old-{name}"), histories=hist)
        times = {c: [] for c in [*contenders, *(["previous_runtime"] if old else [])]}
        for fn in contenders.values():  # warm up
            timed_block(fn, hist, 0, 50)
        for r in range(args.rounds):
            order = list(times)
            order = order[r % len(order) :] + order[: r % len(order)]
            for c in order:
                start = r * args.block
                if c == "previous_runtime":
                    times[c].append(old.ask(op="block", name=name, start=start, n=args.block))
                else:
                    times[c].append(timed_block(contenders[c], hist, start, args.block))
        res = {c: rounds_summary(t) for c, t in times.items()}
        res["user_encoder"] = user_encoder_of(args.work / f"bundle-{name}")
        res["previous_user_encoder"] = user_encoder_of(args.work / f"old-{name}")
        res["torch_eager_over_runtime"] = res["torch_eager"]["p50_ms"] / res["runtime"]["p50_ms"]
        if old is not None:
            res["runtime_over_previous"] = (
                res["runtime"]["p50_ms"] / res["previous_runtime"]["p50_ms"]
            )
        out[name] = res
    return out


def batch_section(args, hist, old: OldRuntime | None, size: int = 256) -> dict:
    from edgerec.runtime import Recommender

    rec = Recommender.load(
        args.work / "bundle-distilled", providers="cpu", threads=1, precision="int8"
    )
    batch = hist[:size]
    ids, ts = [h[0] for h in batch], [h[1] for h in batch]
    # the graph's own arrays, as docs/bundle.md defines them (every history has 50 events:
    # no padding), run alone
    m = rec.manifest
    index = {
        x: i + 1 for i, x in enumerate(json.loads((rec.path / "items.json").read_text())["ids"])
    }
    matrix = np.load(rec.path / "items.npy").astype(np.float32)
    bias = np.zeros((1, matrix.shape[0]), np.float32)
    bias[0, 0] = -np.inf
    feeds = {
        "history_rows": np.array([[index[x] for x in h] for h in ids], np.int64),
        "history_behaviours": np.full(
            (size, len(ids[0])), m.behaviour_vocab.index(m.default_behaviour)
        ),
        "history_times": np.array(ts, np.int64),
        "now": np.full(size, np.iinfo(np.int64).min),
        "item_matrix": matrix,
        "row_bias": bias,
        "mask_seen": np.array([True]),
        "k": np.array([10]),
    }
    session = rec.sessions["recommend"]
    whole, graph = [], []
    rec.recommend_batch(ids, k=10, timestamps=ts)
    for _ in range(args.batch_repeats):
        t = time.perf_counter_ns()
        rec.recommend_batch(ids, k=10, timestamps=ts)
        whole.append(time.perf_counter_ns() - t)
        t = time.perf_counter_ns()
        session.run(None, feeds)
        graph.append(time.perf_counter_ns() - t)
    out = {
        "histories": size,
        "recommend_batch_ms": statistics.median(whole) / 1e6,
        "graph_run_ms": statistics.median(graph) / 1e6,
    }
    out["host_us_per_history"] = (out["recommend_batch_ms"] - out["graph_run_ms"]) * 1e3 / size
    if old is not None:
        prev = old.ask(op="batch", name="distilled", size=size, repeats=args.batch_repeats)
        out["previous_recommend_batch_ms"] = statistics.median(prev) / 1e6
    return out


def million_section(args, hist, n_items: int = 1_000_000) -> dict:
    from edgerec.benchmark.workload import extra_ids, grow_matrix
    from edgerec.runtime.bundle import ItemIds, verify
    from edgerec.runtime.providers import plan_providers
    from edgerec.runtime.recommender import Recommender

    data = verify(args.work / "bundle-int8")
    matrix = grow_matrix(np.asarray(data.items, np.float32), n_items, seed=0)
    have = data.manifest.dims.n_items
    new = extra_ids(data.item_ids.ids, data.item_ids.id_type, n_items - have)
    pop = np.zeros(n_items + 1, np.float32)
    pop[: have + 1] = data.popularity
    big = replace(
        data,
        manifest=replace(data.manifest, dims=replace(data.manifest.dims, n_items=n_items)),
        items=matrix,
        popularity=pop,
        item_ids=ItemIds(
            data.item_ids.ids + tuple(new),
            data.item_ids.titles + (None,) * len(new),
            data.item_ids.id_type,
        ),
    )
    rec = Recommender(big, plan_providers("cpu"), 1, "int8", "auto", "auto")
    u = np.ascontiguousarray(rec.user_vector(hist[0][0], timestamps=hist[0][1]).vector)
    out_buf = np.empty(matrix.shape[0], np.float32)
    runtime, floor = [], []
    for r in range(args.million_repeats):
        ids, ts = hist[r % len(hist)]
        t = time.perf_counter_ns()
        rec.recommend(ids, k=10, timestamps=ts)
        runtime.append(time.perf_counter_ns() - t)
        t = time.perf_counter_ns()
        np.matmul(matrix, u, out=out_buf)
        floor.append(time.perf_counter_ns() - t)
    res = {
        "n_items": n_items,
        "scoring": rec.scoring,
        "runtime": p50(runtime),
        "numpy_items_at_u": p50(floor),
    }
    res["runtime_over_numpy"] = res["runtime"] / res["numpy_items_at_u"]
    return res


def user_encoder_of(bundle: Path) -> str:
    """What a bundle's user encoder is: the student or teacher its export chose, by size."""
    if not (bundle / "manifest.json").exists():
        return "-"
    m = json.loads((bundle / "manifest.json").read_text())
    info = m.get("distillation", {}).get("user_encoder") or {}
    graph = m.get("graphs", {}).get("user_encoder", {}).get("int8") or "user_encoder.onnx"
    size = (bundle / graph).stat().st_size // 1000
    if not info:
        return f"teacher, {size} kB"
    return f"{info.get('chosen', 'student')} (hidden {info['hidden']}), {size} kB"


def hardware() -> dict:
    import onnxruntime

    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in open("/proc/cpuinfo")
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": onnxruntime.__version__,
        "platform": platform.platform(),
    }


def report(result: dict) -> str:
    r = result["recommend"]
    lines = [
        "# Runtime latency (bundle format 2)",
        "",
        f"Command: `{result['command']}`  ",
        f"Hardware: {result['hardware']['cpu']}, {result['hardware']['cores']} cores, "
        f"onnxruntime {result['hardware']['onnxruntime']}, numpy {result['hardware']['numpy']}"
        f"; {result['when']}. 1 intra-op thread, k = 10, real 50-event MovieLens 100K "
        f"histories with timestamps; {result['settings']['rounds']} rounds of blocks of "
        f"{result['settings']['block']} calls, contenders alternating; medians of the "
        "rounds' p50s.",
        "",
        "| bundle | user encoder (this / previous) | this runtime p50 | previous runtime p50 "
        "| this / previous | PyTorch eager p50 | PyTorch / this |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in ("distilled", "int8"):
        x = r[name]
        prev = x.get("previous_runtime", {}).get("p50_ms")
        lines.append(
            f"| {name} | {x.get('user_encoder', '-')} / {x.get('previous_user_encoder', '-')} "
            f"| {x['runtime']['p50_ms']:.3f} ms | "
            f"{f'{prev:.3f} ms' if prev else '-'} | "
            f"{x.get('runtime_over_previous', float('nan')):.2f}x | "
            f"{x['torch_eager']['p50_ms']:.3f} ms | {x['torch_eager_over_runtime']:.2f}x |"
        )
    b = result["batch"]
    lines += [
        "",
        f"`recommend_batch` of {b['histories']} histories (distilled int8): "
        f"{b['recommend_batch_ms']:.2f} ms; the recommend graph alone on the same arrays "
        f"{b['graph_run_ms']:.2f} ms; host-side work **{b['host_us_per_history']:.2f} us per "
        "history**"
        + (
            f"; previous runtime {b['previous_recommend_batch_ms']:.2f} ms."
            if "previous_recommend_batch_ms" in b
            else "."
        ),
    ]
    m = result.get("million")
    if m:
        lines += [
            "",
            f"{m['n_items']:,} items ({m['scoring']} scoring): `recommend()` p50 "
            f"{m['runtime']:.2f} ms against a bare float32 `items @ u` {m['numpy_items_at_u']:.2f}"
            f" ms: **{m['runtime_over_numpy']:.2f}x**.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--old-python", default=None)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--block", type=int, default=200)
    p.add_argument("--batch-repeats", type=int, default=30)
    p.add_argument("--million-repeats", type=int, default=60)
    p.add_argument("--skip-million", action="store_true")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    hist = real_histories(args.data_dir)
    old = OldRuntime(args.old_python) if args.old_python else None
    result = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "hardware": hardware(),
        "settings": {"rounds": args.rounds, "block": args.block, "histories": len(hist)},
        "recommend": recommend_section(args, hist, old),
        "batch": batch_section(args, hist, old),
    }
    if not args.skip_million:
        result["million"] = million_section(args, hist)
    text = report(result)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "runtime_latency.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.out / "runtime_latency.md").write_text(text)


if __name__ == "__main__":
    main()
