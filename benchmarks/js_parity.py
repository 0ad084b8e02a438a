"""The JS runtime against ``edgerec.runtime`` on real MovieLens 100K histories.

For each bundle: 200 users' histories (all events but the last, with their ratings as
behaviours, their timestamps, and the last event's time as ``now``) plus the
cold-start, batch and removal steps of js/test/expected.py go through the Python
runtime, the Node runtime (onnxruntime-node) and the browser runtime (headless
Chromium, onnxruntime-web, wasm, 1 thread) -- and the ORT-format graphs when the bundle
has them (``edgerec convert-ort``). Writes JSON and a markdown table.

    python benchmarks/js_parity.py --bundle /tmp/lat5/bundle-int8 --bundle /tmp/lat5/bundle-distilled \\
        --data-dir ../shared/data --out benchmarks/results/js_parity
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import random
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JS = ROOT / "js"


def expected_module():
    spec = importlib.util.spec_from_file_location("js_expected", JS / "test" / "expected.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ml100k_requests(data_dir: Path, n: int = 200, seed: int = 0) -> list[dict]:
    """``n`` users' requests from MovieLens 100K's u.data: every event but the user's last
    (time order, ties in file order), ratings as behaviours, the last event's time as now."""
    path = data_dir / "movielens" / "ml-100k" / "u.data"
    if not path.is_file():
        path = data_dir / "u.data"
    events: dict[int, list] = {}
    for line in path.read_text().splitlines():
        user, item, rating, ts = (int(x) for x in line.split("\t"))
        events.setdefault(user, []).append((ts, item, rating))
    users = sorted(events)
    random.Random(seed).shuffle(users)
    out = []
    for user in sorted(users[:n]):
        seq = sorted(events[user], key=lambda e: e[0])  # stable: ties keep file order
        hist = seq[:-1]
        out.append(
            {
                "history": [e[1] for e in hist],
                "behaviours": [str(e[2]) for e in hist],
                "timestamps": [e[0] for e in hist],
                "now": seq[-1][0],
                "k": 10,
            }
        )
    return out


def node(*args: str, timeout: int = 1800) -> dict:
    proc = subprocess.run(
        ["node", *args], cwd=JS, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"node {' '.join(args)} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def check_bundle(bundle: Path, requests: list[dict], work: Path) -> list[dict]:
    ex = expected_module()
    cases = ex.make_cases(bundle, len(requests), histories=requests)
    cases_file, expected_file = work / "cases.json", work / "expected.json"
    cases_file.write_text(json.dumps(cases))
    expected_file.write_text(json.dumps(ex.expect(bundle, cases)))
    manifest = json.loads((bundle / "manifest.json").read_text())
    runs = [(graphs, browser, None) for graphs in ("onnx", "ort") for browser in (False, True)]
    runs = [r for r in runs if r[0] == "onnx" or manifest.get("ort_graphs")]
    if "fp32" in manifest["precisions"] and manifest["default_precision"] != "fp32":
        # the fp32 text encoder in the browser: cold start without int8's rounding steps
        fp32_file = work / "expected-fp32.json"
        fp32_file.write_text(json.dumps(ex.expect(bundle, cases, precision="fp32")))
        runs.append(("onnx", True, "fp32"))
    rows = []
    for graphs, browser, precision in runs:
        expected = work / "expected-fp32.json" if precision else expected_file
        args = ["scripts/parity.mjs", str(bundle), str(cases_file), str(expected)]
        args += ["--graphs", graphs] + (["--browser"] if browser else [])
        args += ["--precision", precision] if precision else []
        t0 = time.perf_counter()
        figures = node(*args)
        figures["seconds"] = round(time.perf_counter() - t0, 1)
        figures["bundle"] = str(bundle)
        rows.append(figures)
        print(json.dumps({k: v for k, v in figures.items() if k != "mismatches"}), flush=True)
    return rows


def markdown(rows: list[dict], n: int, note: str = "") -> str:
    lines = [
        "# JS runtime parity with edgerec.runtime (MovieLens 100K)",
        "",
        f"{n} users' histories (all events but the last; ratings as behaviours, timestamps, "
        "`now` = the last event's time), k = 10, plus the batch, cold-start and removal steps "
        "of js/test/expected.py. Bar (issue 22): >= 99.5 % identical top-10 lists, scores "
        "within 1e-4, cold-start item vectors cosine >= 0.9999. Lists and scores: the "
        "requests, the batch and the demo clicks; the requests after adding the cold-start "
        "items (and removing three) are counted apart, as they depend on the text encoder.",
        *(["", note] if note else []),
        "",
        "| bundle | target | graphs | precision | lists identical | max score diff | "
        "max gate diff | after cold start: lists identical | cold-start cosine (min) | "
        "token ids identical |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        cos = f"{r['minCosine']:.6f}" if "minCosine" in r else "-"
        tok = f"{r['tokensIdentical']}/{r['texts']}" if "texts" in r else "-"
        cold = f"{r['cold']['identical']}/{r['cold']['lists']}" if "cold" in r else "-"
        lines.append(
            f"| {Path(r['bundle']).name} | {r['target']} | {r['graphs']} | {r['precision']} | "
            f"{r['identical']}/{r['lists']} ({100 * r['identicalShare']:.2f} %) | "
            f"{r['maxScoreDiff']:.2e} | {r['maxGateDiff']:.2e} | {cold} | {cos} | {tok} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, action="append", required=True)
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("EDGEREC_DATA_DIR", "")))
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--note", default="", help="a line for the report (which bundle, how made)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "js_parity")
    a = p.parse_args(argv)
    requests = ml100k_requests(a.data_dir, a.n)
    rows = []
    for bundle in a.bundle:
        with tempfile.TemporaryDirectory() as work:
            rows += check_bundle(bundle, requests, Path(work))
    meta = {"node": subprocess.run(["node", "--version"], capture_output=True, text=True).stdout}
    meta.update(machine=platform.machine(), cpus=os.cpu_count(), histories=a.n)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    a.out.with_suffix(".md").write_text(markdown(rows, a.n, a.note))
    print(markdown(rows, a.n, a.note))


if __name__ == "__main__":
    main()
