"""recommend() latency per target: the Python runtime (CPU), Node (onnxruntime-node) and
headless Chromium (onnxruntime-web, wasm, 1 thread) on the same bundle and requests.

Requests: 200 MovieLens 100K users' histories (benchmarks/js_parity.py), k = 10. Every
target runs in its own process, one call at a time, with 1 intra-op thread; each round
calls recommend() once per request, the first round is a warm-up. The targets take turns
(``--repeats`` times), so a busy machine slows them alike; the report gives the median
over repeats of each figure. Also: session load time (verify + sessions), bytes read
(the bundle's files; the browser skips the text encoder), and the runtime code the page
downloaded. Writes JSON and a markdown report.

    python benchmarks/js_latency.py --bundle /tmp/lat5/bundle-distilled \\
        --data-dir ../shared/data --out benchmarks/results/js_latency
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JS = ROOT / "js"
sys.path.insert(0, str(ROOT / "benchmarks"))

from js_parity import ml100k_requests  # noqa: E402

GOALS = {"browser_p50_ms": 2.0, "node_vs_python_p50": 1.5, "serving_download_bytes": 1 << 20}


def python_target(bundle: Path, requests_file: Path, rounds: int) -> dict:
    """The Python runtime, measured in a child process like the JS targets."""
    code = f"""
import json, time
t0 = time.perf_counter()
from edgerec.runtime import Recommender
rec = Recommender.load({str(bundle)!r}, providers="cpu", threads=1)
load_ms = (time.perf_counter() - t0) * 1e3
reqs = json.load(open({str(requests_file)!r}))
times = []
for r in range({rounds}):
    for q in reqs:
        s = time.perf_counter()
        rec.recommend(q["history"], k=q.get("k", 10), timestamps=q.get("timestamps"),
                      behaviours=q.get("behaviours"), now=q.get("now"))
        if r:
            times.append((time.perf_counter() - s) * 1e3)
times.sort()
q = lambda p: times[min(len(times) - 1, int(p * len(times)))]
print(json.dumps({{"target": "python", "loadMs": load_ms, "calls": len(times), "p50Ms": q(0.5),
                  "p95Ms": q(0.95), "meanMs": sum(times) / len(times)}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def js_target(bundle: Path, requests_file: Path, rounds: int, browser: bool) -> dict:
    args = ["node", "scripts/bench.mjs", str(bundle), str(requests_file), "--rounds", str(rounds)]
    proc = subprocess.run(
        args + (["--browser"] if browser else []), cwd=JS, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-4000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summarise(runs: list[dict]) -> dict:
    out = dict(runs[-1])
    for key in ("loadMs", "p50Ms", "p95Ms", "meanMs"):
        out[key] = statistics.median(r[key] for r in runs)
        out[key + "_runs"] = [round(r[key], 4) for r in runs]
    return out


def markdown(res: dict) -> str:
    t, meta = res["targets"], res["meta"]
    py, nd, br = t["python"], t["node"], t["chromium-wasm-1thread"]
    bundle_bytes = sum(br["files"].values())
    runtime = br.get("runtimeFiles", {})
    rt_bytes = sum(v["bytes"] for v in runtime.values())
    rt_gzip = sum(v["gzip"] for v in runtime.values())
    lines = [
        "# recommend() latency per target (JS runtime)",
        "",
        f"Bundle `{meta['bundle']}` ({meta['precision']}), {meta['requests']} MovieLens 100K "
        f"histories, k = 10, 1 intra-op thread, {meta['rounds'] - 1} measured rounds after a "
        f"warm-up, {meta['repeats']} repeats taking turns (medians). Machine: {meta['cpus']} "
        f"CPUs ({meta['machine']}), load average {meta['load_before']} before / "
        f"{meta['load_after']} after (a shared machine: compare targets, not absolute values). "
        f"Browser: {br.get('browser')}; Node {nd.get('node')}.",
        "",
        "| target | p50 (ms) | p95 (ms) | mean (ms) | load (ms) | bytes read | "
        "control p50 / p95 (ms) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in (("Python runtime (CPU)", py), ("Node (onnxruntime-node)", nd)):
        ctl = f"{r['controlP50Ms']:.3f} / {r['controlP95Ms']:.3f}" if "controlP50Ms" in r else "-"
        lines.append(
            f"| {name} | {r['p50Ms']:.3f} | {r['p95Ms']:.3f} | {r['meanMs']:.3f} | "
            f"{r['loadMs']:.0f} | {r.get('bytesRead', '-')} | {ctl} |"
        )
    lines.append(
        f"| Chromium wasm, 1 thread (onnxruntime-web) | {br['p50Ms']:.3f} | {br['p95Ms']:.3f} | "
        f"{br['meanMs']:.3f} | {br['loadMs']:.0f} | {bundle_bytes} | "
        f"{br['controlP50Ms']:.3f} / {br['controlP95Ms']:.3f} |"
    )
    lines += [
        "",
        "Control: the same thread runs plain arithmetic of about one call's length, no "
        "onnxruntime, as many times: where its p95 is high too, the tail is the machine's "
        "(other jobs on its cores), not the runtime's. Load time: verification (sha256) and "
        "sessions; Node and Python hash every file of the bundle (the text encoders too), "
        "the browser downloads and hashes only what it uses.",
    ]
    g = res["goals"]
    lines += [
        "",
        "Goals (issue 22):",
        "",
        f"- browser p50 <= 2 ms: {br['p50Ms']:.3f} ms -> {'met' if g['browser_p50'] else 'NOT met'}",
        f"- Node p50 <= 1.5x Python's: {nd['p50Ms']:.3f} / {py['p50Ms']:.3f} = "
        f"{g['node_ratio']:.2f}x -> {'met' if g['node_ratio'] <= 1.5 else 'NOT met'}",
        f"- serving download without the text encoder <= 1 MB: {bundle_bytes} bytes of bundle "
        f"-> {'met' if g['download'] else 'NOT met'}",
        "",
        "Bundle files the browser downloaded (each checked: size and sha256):",
        "",
        *[f"- `{k}`: {v} bytes" for k, v in br["files"].items()],
        "",
        f"Runtime code the page downloaded (once per browser cache): {rt_bytes} bytes, "
        f"{rt_gzip} gzipped, of which onnxruntime-web's wasm binary "
        f"{runtime.get('/vendor/ort/ort-wasm-simd-threaded.wasm', {}).get('bytes', '?')} bytes.",
    ]
    return "\n".join(lines) + "\n"


def plot(res: dict, path: Path) -> bool:
    """p50 and p95 per target as bars (matplotlib's object API; skipped without it)."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        return False
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = {"python": "Python (CPU)", "node": "Node", "chromium-wasm-1thread": "Chromium wasm"}
    targets = res["targets"]
    fig = Figure(figsize=(6, 3.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    xs = range(len(targets))
    for offset, key, label in ((-0.2, "p50Ms", "p50"), (0.2, "p95Ms", "p95")):
        ax.bar([x + offset for x in xs], [t[key] for t in targets.values()], 0.4, label=label)
    ax.set_xticks(list(xs), [names.get(k, k) for k in targets])
    ax.set_yscale("log")
    ax.set_ylabel("recommend() ms (log)")
    ax.axhline(GOALS["browser_p50_ms"], color="grey", lw=0.8, ls="--", label="browser p50 goal")
    ax.legend(fontsize=8)
    ax.set_title(f"{Path(res['meta']['bundle']).name}: {res['meta']['requests']} histories, k=10")
    fig.tight_layout()
    fig.savefig(path)
    return True


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("EDGEREC_DATA_DIR", "")))
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--rounds", type=int, default=6, help="rounds per run (the first warms up)")
    p.add_argument("--repeats", type=int, default=3, help="runs per target, taking turns")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "js_latency")
    a = p.parse_args(argv)
    requests = ml100k_requests(a.data_dir, a.n)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    requests_file = a.out.parent.resolve() / ".js_latency_requests.json"
    requests_file.write_text(json.dumps(requests))
    load_before = os.getloadavg()[0]
    runs: dict[str, list] = {"python": [], "node": [], "chromium-wasm-1thread": []}
    try:
        for _ in range(a.repeats):
            runs["python"].append(python_target(a.bundle, requests_file, a.rounds))
            runs["node"].append(js_target(a.bundle, requests_file, a.rounds, False))
            runs["chromium-wasm-1thread"].append(js_target(a.bundle, requests_file, a.rounds, True))
            print(json.dumps({k: round(v[-1]["p50Ms"], 4) for k, v in runs.items()}), flush=True)
    finally:
        requests_file.unlink()
    targets = {k: summarise(v) for k, v in runs.items()}
    manifest = json.loads((a.bundle / "manifest.json").read_text())
    br = targets["chromium-wasm-1thread"]
    res = {
        "meta": {
            "bundle": str(a.bundle),
            "precision": manifest["default_precision"],
            "distilled": manifest.get("source", {}).get("distilled"),
            "requests": len(requests),
            "rounds": a.rounds,
            "repeats": a.repeats,
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "load_before": round(load_before, 2),
            "load_after": round(os.getloadavg()[0], 2),
            "date": time.strftime("%Y-%m-%d %H:%M"),
        },
        "targets": targets,
        "goals": {
            "browser_p50": br["p50Ms"] <= GOALS["browser_p50_ms"],
            "node_ratio": targets["node"]["p50Ms"] / targets["python"]["p50Ms"],
            "download": sum(br["files"].values()) <= GOALS["serving_download_bytes"],
        },
    }
    a.out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    text = markdown(res)
    if plot(res, a.out.with_suffix(".png")):
        text += f"\n![p50 and p95 per target]({a.out.with_suffix('.png').name})\n"
    a.out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
