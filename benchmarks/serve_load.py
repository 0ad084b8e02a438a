"""Load test of ``edgerec serve`` on 127.0.0.1 with real MovieLens 100K histories.

For each configuration (clients x batching) it starts a fresh ``edgerec serve``, runs
closed-loop asyncio + httpx clients for ``--duration`` seconds, reloads the bundle twice
during the run (alternating ``--bundle`` and ``--bundle-b``), and reports throughput,
latency percentiles, errors, answers that differ from the in-process
``Recommender.recommend`` of the bundle that answered (by the ``x-edgerec-bundle``
header), server RSS before and after, and the mean micro-batch size.

Requests: one per user, the user's events in time order minus the last (history, ratings
as behaviours, timestamps), ``now`` = the last event's time, k = 10; cycled.

    python benchmarks/serve_load.py --bundle B1 --bundle-b B2 \\
        --data-dir ../shared/data --out benchmarks/results/serve_load

Traffic goes only to 127.0.0.1; every run is bounded by ``--duration``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx
import numpy as np

BUNDLE_HEADER = "x-edgerec-bundle"


def movielens_requests(data_dir: Path, k: int, max_history: int) -> list[dict]:
    root = data_dir / "movielens" / "ml-100k" if (data_dir / "movielens").is_dir() else data_dir
    events = defaultdict(list)
    with open(root / "u.data") as f:
        for line in f:
            user, item, rating, ts = line.split("\t")
            events[int(user)].append((int(ts), int(item), rating.strip()))
    out = []
    for user in sorted(events):
        ev = sorted(events[user], key=lambda e: e[0])  # stable: ties keep file order
        hist, last = ev[:-1][-max_history:], ev[-1]
        out.append(
            {
                "history": [e[1] for e in hist],
                "behaviours": [e[2] for e in hist],
                "timestamps": [e[0] for e in hist],
                "now": last[0],
                "k": k,
            }
        )
    return out


def same(got: dict, want: dict, tol: float = 1e-5) -> str:
    """ "same", "tie" (only items whose in-process scores are within ``tol`` swapped
    places) or "different"."""
    rest = lambda d: {k: v for k, v in d.items() if k != "items"}  # noqa: E731
    if rest(got) != rest(want) or len(got["items"]) != len(want["items"]):
        return "different"
    g_ids = [r["item_id"] for r in got["items"]]
    w_ids = [r["item_id"] for r in want["items"]]
    close = all(
        math.isclose(a["score"], b["score"], rel_tol=tol, abs_tol=tol)
        for a, b in zip(got["items"], want["items"], strict=True)
    )
    if g_ids == w_ids:
        return "same" if close else "different"
    if close and sorted(map(str, g_ids)) == sorted(map(str, w_ids)):
        return "tie"
    return "different"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def metric_sum(text: str, prefix: str) -> float:
    return sum(float(x.rsplit(" ", 1)[1]) for x in text.splitlines() if x.startswith(prefix))


def start_server(args, bundle, max_batch, workers, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [
        sys.executable, "-m", "edgerec", "serve", str(bundle),
        "--host", "127.0.0.1", "--port", str(port),
        "--batch-window-ms", str(args.window_ms), "--max-batch", str(max_batch),
        "--workers", str(workers), "--providers", "cpu",
    ]  # fmt: skip
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited; see {log}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


class RawClient:
    """One keep-alive HTTP/1.1 connection on asyncio streams: POST a JSON body, read the
    status, the bundle header and the body. A fraction of httpx's CPU per request, which
    matters when the load generator shares two cores with the server."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def post(self, path: str, body: bytes) -> tuple[int, str | None, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        status = int((await self.reader.readline()).split(b" ", 2)[1])
        length, version = 0, None
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == BUNDLE_HEADER.encode():
                version = value.strip().decode()
        return status, version, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def run_load(url, bodies, expected, clients, duration, reload_paths, raw_client) -> dict:
    payloads = [json.dumps(b).encode() for b in bodies]
    lat: list[float] = []
    statuses: dict[int, int] = defaultdict(int)
    outcome: dict[str, int] = defaultdict(int)
    versions: dict[str, int] = defaultdict(int)
    verified: dict[tuple, set] = defaultdict(set)
    transport_errors = 0
    reloads = []
    limits = httpx.Limits(max_connections=clients + 2, max_keepalive_connections=clients + 2)
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        t_start = time.perf_counter()
        deadline = t_start + duration

        host, port = url.rsplit("/", 1)[1].split(":")

        async def worker(i: int) -> None:
            nonlocal transport_errors
            raw = RawClient(host, int(port))
            j = i * 7919
            while time.perf_counter() < deadline:
                idx = j % len(payloads)
                j += 1
                t0 = time.perf_counter()
                try:
                    if raw_client:
                        status, version, body = await raw.post("/recommend", payloads[idx])
                    else:
                        r = await client.post("/recommend", content=payloads[idx], headers=headers)
                        status, version, body = (
                            r.status_code,
                            r.headers.get(BUNDLE_HEADER),
                            r.content,
                        )
                except (httpx.HTTPError, OSError, asyncio.IncompleteReadError, ValueError):
                    transport_errors += 1
                    await raw.close()
                    continue
                lat.append(time.perf_counter() - t0)
                statuses[status] += 1
                if status != 200:
                    continue
                versions[version] += 1
                seen = verified[(idx, version)]
                if body in seen:
                    outcome["same"] += 1
                    continue
                want = expected.get(version)
                verdict = "unknown_bundle" if want is None else same(json.loads(body), want[idx])
                outcome[verdict] += 1
                if verdict == "same":
                    seen.add(body)

        async def reloader() -> None:
            for n, path in enumerate(reload_paths, 1):
                await asyncio.sleep(
                    max(0.0, t_start + duration * n / (len(reload_paths) + 1) - time.perf_counter())
                )
                t0 = time.perf_counter()
                r = await client.post("/admin/reload", json={"path": str(path)})
                info = r.json()
                reloads.append(
                    {
                        "at_s": round(t0 - t_start, 1),
                        "status": r.status_code,
                        "ok": info.get("ok"),
                        "version": info.get("serving", {}).get("version"),
                        "seconds": round(time.perf_counter() - t0, 2),
                    }
                )

        await asyncio.gather(reloader(), *(worker(i) for i in range(clients)))
        await asyncio.sleep(0)
        elapsed = time.perf_counter() - t_start
        metrics = (await client.get("/metrics")).text
    lat_ms = np.array(lat) * 1000
    n = int(sum(statuses.values()))
    errors = n - statuses.get(200, 0) + transport_errors
    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "requests": n,
        "throughput_rps": round(statuses.get(200, 0) / elapsed, 1),
        "p50_ms": round(float(np.percentile(lat_ms, 50)), 2),
        "p95_ms": round(float(np.percentile(lat_ms, 95)), 2),
        "p99_ms": round(float(np.percentile(lat_ms, 99)), 2),
        "errors": int(errors),
        "statuses": {str(k): v for k, v in statuses.items()},
        "differing": outcome.get("different", 0) + outcome.get("unknown_bundle", 0),
        "tie_order_swaps": outcome.get("tie", 0),
        "same": outcome.get("same", 0),
        "answers_by_bundle": dict(versions),
        "reloads": reloads,
        "mean_batch": round(
            metric_sum(metrics, "edgerec_batch_size_sum")
            / max(1, metric_sum(metrics, "edgerec_batch_size_count")),
            2,
        ),
    }


def expected_answers(bundle: Path, bodies: list[dict], threads: int | None) -> tuple[str, list]:
    from edgerec.runtime import Recommender
    from edgerec.serve.app import bundle_version

    rec = Recommender.load(bundle, providers="cpu", threads=threads)
    answers = []
    for b in bodies:
        args = {k: v for k, v in b.items() if k != "history"}
        answers.append(json.loads(json.dumps(rec.recommend(b["history"], **args).to_dict())))
    return bundle_version(rec), answers


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--bundle-b", type=Path, help="reload alternates to this bundle and back")
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("EDGEREC_DATA_DIR", "")))
    p.add_argument("--clients", type=int, nargs="+", default=[16, 64])
    p.add_argument("--unbatched-clients", type=int, nargs="*", default=[64])
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--window-ms", type=float, default=2.0)
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument(
        "--unbatched-workers",
        type=int,
        nargs="*",
        default=[1, 2],
        help="one-request-per-call runs with each of these worker counts (the best is the baseline)",
    )
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--k", type=int, default=10)
    p.add_argument(
        "--client",
        choices=["raw", "httpx"],
        default="raw",
        help="the load clients: keep-alive asyncio streams (default) or httpx.AsyncClient; "
        "httpx always drives reloads and metrics",
    )
    p.add_argument("--max-history", type=int, default=5000)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/serve_load"))
    p.add_argument("--render", type=Path, help="only write the .md of this .json report")
    args = p.parse_args()
    if args.render:
        report = json.loads(args.render.read_text())
        args.render.with_suffix(".md").write_text(markdown(report))
        return
    if args.duration > 600 or max(args.clients + args.unbatched_clients) > 256:
        p.error("keep it bounded: --duration <= 600 s and <= 256 clients")

    bodies = movielens_requests(args.data_dir, args.k, args.max_history)
    bundle_b = args.bundle_b or args.bundle
    expected = {}
    for b in {args.bundle, bundle_b}:
        version, answers = expected_answers(b, bodies, args.threads)
        expected[version] = answers
    print(f"{len(bodies)} requests; bundles {list(expected)}", file=sys.stderr)

    log = Path(tempfile.gettempdir()) / "edgerec_serve_load.server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"")
    plan = [(c, args.max_batch, args.workers) for c in args.clients] + [
        (c, 1, w) for c in args.unbatched_clients for w in args.unbatched_workers or [args.workers]
    ]
    load_before = os.getloadavg()
    runs = []
    for clients, max_batch, workers in plan:
        proc, url = start_server(args, args.bundle, max_batch, workers, log)
        try:
            warm = bodies[:50]
            with httpx.Client(base_url=url, timeout=30) as c:
                for b in warm:
                    c.post("/recommend", json=b).raise_for_status()
            rss_before = rss_mb(proc.pid)
            result = asyncio.run(
                run_load(
                    url,
                    bodies,
                    expected,
                    clients,
                    args.duration,
                    [bundle_b, args.bundle],
                    args.client == "raw",
                )
            )
            result["rss_before_mb"] = round(rss_before, 1)
            result["rss_after_mb"] = round(rss_mb(proc.pid), 1)
            result["batching"] = (
                f"window {args.window_ms} ms, max {max_batch}"
                if max_batch > 1
                else "off (1 per call)"
            )
            result["max_batch"] = max_batch
            result["workers"] = workers
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        runs.append(result)
        print(json.dumps(result), file=sys.stderr)

    import onnxruntime

    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in open("/proc/cpuinfo")
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    report = {
        "command": "python " + " ".join([sys.argv[0], *sys.argv[1:]]),
        "hardware": f"{cpu}, {os.cpu_count()} cores (shared), {platform.system()} {platform.release()}",
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "bundle": str(args.bundle),
        "bundle_b": str(bundle_b),
        "requests": len(bodies),
        "threads": args.threads,
        "client": "asyncio streams, keep-alive HTTP/1.1"
        if args.client == "raw"
        else "asyncio + httpx.AsyncClient",
        "runs": runs,
    }
    batched = {r["clients"]: r for r in runs if r["max_batch"] > 1}
    single: dict[int, dict] = {}
    for r in runs:  # the best one-request-per-call run is the baseline
        best = single.get(r["clients"])
        if r["max_batch"] == 1 and (best is None or r["throughput_rps"] > best["throughput_rps"]):
            single[r["clients"]] = r
    gains = {
        c: round(batched[c]["throughput_rps"] / single[c]["throughput_rps"], 2)
        for c in batched
        if c in single and single[c]["throughput_rps"] > 0
    }
    report["batching_gain"] = gains
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


def markdown(r: dict) -> str:
    lines = [
        "# `edgerec serve` under load (MovieLens 100K histories, loopback)",
        "",
        f"Command: `{r['command']}`",
        "",
        f"Hardware: {r['hardware']}; load average before/after "
        f"{r['load_average_before']} / {r['load_average_after']} (other jobs were running). "
        f"Python {r['python']}, onnxruntime {r['onnxruntime']}, onnxruntime threads per "
        f"session {r['threads'] or 'default'}; workers: threads running recommend calls. "
        f"The load generator ({r['client']}) runs on the same cores as the server.",
        "",
        f"Bundles: `{r['bundle']}` and `{r['bundle_b']}` (each run reloads to the second "
        f"and back, at 1/3 and 2/3 of its duration). {r['requests']} requests, one per "
        "user: the user's events minus the last (ids, ratings, timestamps), now = the last "
        "event's time, k = 10.",
        "",
        "| clients | batching | workers | seconds | requests | req/s | p50 ms | p95 ms | p99 ms "
        "| mean batch | errors | differing | tie swaps | reloads ok | RSS before -> after MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for x in r["runs"]:
        ok = sum(1 for rl in x["reloads"] if rl["ok"])
        lines.append(
            f"| {x['clients']} | {x['batching']} | {x['workers']} | {x['seconds']} | {x['requests']} "
            f"| {x['throughput_rps']} | {x['p50_ms']} | {x['p95_ms']} | {x['p99_ms']} "
            f"| {x['mean_batch']} | {x['errors']} | {x['differing']} | {x['tie_order_swaps']} "
            f"| {ok}/{len(x['reloads'])} | {x['rss_before_mb']} -> {x['rss_after_mb']} |"
        )
    lines.append("")
    for c, g in r["batching_gain"].items():
        batched = next(x for x in r["runs"] if x["clients"] == int(c) and x["max_batch"] > 1)
        each = ", ".join(
            f"{round(batched['throughput_rps'] / x['throughput_rps'], 2)}x over {x['workers']} "
            f"worker{'s' if x['workers'] > 1 else ''}"
            for x in r["runs"]
            if x["clients"] == int(c) and x["max_batch"] == 1 and x["throughput_rps"] > 0
        )
        lines.append(
            f"Micro-batching gain at {c} clients: **{g}x** the throughput of the best "
            f"one-request-per-call run ({each})."
        )
    lines += [
        "",
        "errors: non-200 answers and transport errors. differing: answers whose items, "
        "gate, fallback or reported unknowns differ from in-process `recommend` of the "
        "bundle named by the `x-edgerec-bundle` header, or whose scores differ by more than "
        "1e-5 (a batched dot product may differ from a single one in the last float32 bit). "
        "tie swaps: only items with scores within 1e-5 of each other changed places.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
