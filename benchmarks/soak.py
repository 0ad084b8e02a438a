"""Soak test: one ``Recommender`` shared by many threads for a long run of requests.

Two phases against one bundle (tests/test_reliability_concurrency.py is the short
version that runs in CI):

1. **Load**: ``--threads`` threads send ``--requests`` requests in total, drawn from a
   pool of ``--distinct`` distinct requests of every public kind (``recommend`` with and
   without timestamps, behaviours, candidates and exclusions, ``recommend_batch``,
   ``user_vector``, ``explain``). Every answer is compared with the answer the same
   request got serially before the run. Reported: requests, errors (by type), answers
   that differ from the serial ones, wall and CPU time, latency percentiles per kind,
   and the process's resident memory (VmRSS from /proc/self/status) before, during
   (sampled every 0.25 s) and after, with the slope of a line fitted to the second half.
2. **Updates**: ``add_items``/``remove_items`` run while the other threads call
   ``recommend`` and ``recommend_batch``; every answer must equal the catalog's answer
   either before or after some update (computed serially on a twin), and every batch
   must come from one catalog.

Nothing is asserted about time. The script exits 1 if any request failed, any answer
differed from its serial answer, or any answer mixed two catalogs.

    python benchmarks/soak.py /tmp/edgerec-bench/bundle --requests 100000 --threads 16

Writes ``benchmarks/results/soak-<date>.md`` and ``.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# numpy's BLAS threads are fixed when numpy loads: one per request thread is the point
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from reliability_helpers import answer  # noqa: E402  (shared with the short soak test)

KINDS = ("recommend", "recommend", "recommend", "recommend", "batch", "user_vector", "explain")


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    import resource  # not Linux: the peak is the best there is

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def make_pool(rec, n: int, seed: int) -> list[tuple[str, dict]]:
    """Distinct requests with what apps send: known and unknown ids, side inputs."""
    ids = rec.item_ids
    vocab = list(rec.manifest.behaviour_vocab)
    rng = np.random.default_rng(seed)

    def history(max_len: int) -> list:
        length = int(rng.integers(0, max_len))
        picks = [ids[i] for i in rng.integers(0, len(ids), length)]
        if length and rng.random() < 0.2:
            picks[int(rng.integers(0, length))] = "no-such-item"
        return picks

    pool = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        k = int(rng.integers(1, 50))
        if kind == "batch":
            kwargs = {"histories": [history(60) for _ in range(int(rng.integers(2, 9)))], "k": k}
        elif kind == "user_vector":
            kwargs = {"history": history(80) or [ids[0]]}
        elif kind == "explain":
            kwargs = {"history": history(60), "k": min(k, 20)}
        else:
            h = history(80)
            kwargs = {"history": h, "k": k}
            if rng.random() < 0.3:
                kwargs["timestamps"] = np.cumsum(rng.integers(0, 10**6, len(h))).tolist()
            if rng.random() < 0.3:
                kwargs["behaviours"] = [vocab[j] for j in rng.integers(0, len(vocab), len(h))]
            if rng.random() < 0.1:
                kwargs["candidates"] = [ids[j] for j in rng.integers(0, len(ids), 200)]
            if rng.random() < 0.1:
                kwargs["exclude"] = [ids[j] for j in rng.integers(0, len(ids), 20)]
        pool.append((kind, kwargs))
    return pool


class RssMonitor(threading.Thread):
    def __init__(self, every: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.every = every
        self.samples: list[tuple[float, int, int]] = []  # (seconds, requests done, KiB)
        self.done = 0
        self._halt = threading.Event()
        self._t0 = time.perf_counter()

    def run(self) -> None:
        while not self._halt.wait(self.every):
            self.samples.append((time.perf_counter() - self._t0, self.done, rss_kib()))

    def stop(self) -> None:
        self._halt.set()
        self.join()


def load_phase(rec, pool, serial, n_requests: int, n_threads: int, seed: int) -> dict:
    per_thread = [n_requests // n_threads + (t < n_requests % n_threads) for t in range(n_threads)]
    errors: Counter = Counter()
    error_examples: dict[str, str] = {}
    mismatches = Counter()
    latencies: dict[str, list[float]] = {k: [] for k in set(KINDS)}
    lock = threading.Lock()
    monitor = RssMonitor()
    counter = {"done": 0}

    def worker(t: int) -> None:
        rng = random.Random(seed * 1000 + t)
        local_lat: dict[str, list[float]] = {k: [] for k in set(KINDS)}
        local_err: Counter = Counter()
        local_mis: Counter = Counter()
        examples = {}
        for n in range(per_thread[t]):
            i = rng.randrange(len(pool))
            kind, kwargs = pool[i]
            start = time.perf_counter()
            try:
                got = answer(rec, kind, kwargs)
            except Exception as e:  # counted and reported, the run goes on
                local_err[type(e).__name__] += 1
                examples.setdefault(type(e).__name__, f"{kind}: {e}")
                continue
            local_lat[kind].append(time.perf_counter() - start)
            if got != serial[i]:
                local_mis[kind] += 1
            if n % 256 == 0:
                with lock:
                    counter["done"] += 256
                    monitor.done = counter["done"]
        with lock:
            errors.update(local_err)
            mismatches.update(local_mis)
            for k, v in local_lat.items():
                latencies[k].extend(v)
            for k, v in examples.items():
                error_examples.setdefault(k, v)

    before = rss_kib()
    monitor.start()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(n_threads) as ex:
        list(ex.map(worker, range(n_threads)))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    monitor.stop()
    after = rss_kib()

    samples = monitor.samples
    half = samples[len(samples) // 2 :]
    slope = None
    if len(half) >= 3 and half[-1][1] > half[0][1]:
        x = np.array([s[1] for s in half], float)
        y = np.array([s[2] for s in half], float)
        slope = float(np.polyfit(x, y, 1)[0]) * 10_000 / 1024  # MiB per 10k requests
    done = sum(len(v) for v in latencies.values())
    # RSS when each tenth of the requests was done: flat, or growing with requests?
    trace = []
    for tenth in range(1, 11):
        mark = tenth * n_requests // 10
        hit = next((s for s in samples if s[1] >= mark), None)
        trace.append([mark, round((hit[2] if hit else after) / 1024, 1)])
    return {
        "requests": int(sum(per_thread)),
        "threads": n_threads,
        "answered": done,
        "errors": dict(errors),
        "error_examples": error_examples,
        "differing_from_serial": dict(mismatches),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "requests_per_s": round(done / wall, 1),
        "latency_ms": {
            k: {
                "n": len(v),
                "p50": round(float(np.percentile(v, 50)) * 1e3, 3),
                "p95": round(float(np.percentile(v, 95)) * 1e3, 3),
                "p99": round(float(np.percentile(v, 99)) * 1e3, 3),
            }
            for k, v in sorted(latencies.items())
            if v
        },
        "rss_mib": {
            "before": round(before / 1024, 1),
            "after": round(after / 1024, 1),
            "max_during": round(max((s[2] for s in samples), default=after) / 1024, 1),
            "samples": len(samples),
            "second_half_slope_mib_per_10k_requests": None if slope is None else round(slope, 3),
            "by_requests_done": trace,
        },
    }


def update_phase(bundle, load_kwargs, n_threads: int, n_updates: int, seed: int) -> dict:
    from edgerec.runtime import Recommender

    rec = Recommender.load(bundle, **load_kwargs)
    twin = Recommender.load(bundle, **load_kwargs)
    if not rec.can_add_items:
        return {"skipped": "the bundle has no text encoder"}
    ids = rec.item_ids
    rng = np.random.default_rng(seed)
    history = [ids[i] for i in rng.integers(0, len(ids), 30)]
    batch = [[ids[i] for i in rng.integers(0, len(ids), n)] for n in (5, 0, 40)]
    new_id = (lambda i: 10**12 + i) if isinstance(ids[0], int) else (lambda i: f"soak-{i}")
    words = "space war story music night city crime love drama comedy".split()
    ops = []
    for u in range(n_updates):
        added = [new_id(u * 10 + j) for j in range(10)]
        texts = [" ".join(rng.choice(words, 6)) for _ in added]
        ops.append(("add_items", (added, texts)))
        ops.append(("remove_items", ([added[0], ids[u % len(ids)]],)))

    def states(r):
        single = tuple(r.recommend(history, k=10**9).item_ids)
        batched = tuple(tuple(x.item_ids) for x in r.recommend_batch(batch, k=10**9))
        return single, batched

    allowed_single, allowed_batch = set(), set()
    s, b = states(twin)
    allowed_single.add(s)
    allowed_batch.add(b)
    for op, args in ops:
        getattr(twin, op)(*args)
        s, b = states(twin)
        allowed_single.add(s)
        allowed_batch.add(b)
    final = s

    stop = threading.Event()
    counts = Counter()
    lock = threading.Lock()

    def reader(t: int) -> None:
        local = Counter()
        while not stop.is_set():
            try:
                if t % 2:
                    ok = tuple(rec.recommend(history, k=10**9).item_ids) in allowed_single
                else:
                    got = rec.recommend_batch(batch, k=10**9)
                    ok = tuple(tuple(x.item_ids) for x in got) in allowed_batch
                local["answers"] += 1
                local["mixed_or_unknown_state"] += not ok
            except Exception as e:
                local[f"error {type(e).__name__}"] += 1
        with lock:
            counts.update(local)

    threads = [threading.Thread(target=reader, args=(t,)) for t in range(n_threads - 1)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    for op, args in ops:
        getattr(rec, op)(*args)
        time.sleep(0.02)  # let the readers answer between updates, not only around them
    wall = time.perf_counter() - t0
    stop.set()
    for t in threads:
        t.join()
    return {
        "updates": len(ops),
        "reader_threads": n_threads - 1,
        "answers_during_updates": counts["answers"],
        "answers_matching_no_single_catalog_state": counts["mixed_or_unknown_state"],
        "errors": {k: v for k, v in counts.items() if k.startswith("error")},
        "final_state_matches_serial": tuple(rec.recommend(history, k=10**9).item_ids) == final,
        "catalog_states": len(allowed_single),
        "wall_s": round(wall, 2),
    }


def hardware() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numpy
    import onnxruntime

    from edgerec import __version__

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "onnxruntime": onnxruntime.__version__,
        "edgerec": __version__,
    }


def write_report(result: dict, out_dir: Path) -> Path:
    stamp = dt.date.today().isoformat()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"soak-{stamp}.json").write_text(json.dumps(result, indent=2, default=str))
    load, upd, hw, st = result["load"], result["updates"], result["hardware"], result["settings"]
    rss = load["rss_mib"]
    lines = [
        f"# Soak test, {stamp}",
        "",
        f"Command: `{st['command']}`",
        "",
        f"Bundle: `{st['bundle']}` ({st['items']} items, dim {st['dim']}, precision "
        f"{st['precision']}, scoring {st['scoring']}); onnxruntime intra-op threads "
        f"{st['ort_threads']}, BLAS threads 1.",
        f"Machine: {hw['cpu']}, {hw['cores']} cores, load average at start "
        f"{hw['load_average']} (shared with other jobs); Python {hw['python']}, numpy "
        f"{hw['numpy']}, onnxruntime {hw['onnxruntime']}, edgerec {hw['edgerec']}.",
        "",
        "## Load: one Recommender, many threads",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| requests | {load['requests']:,} ({st['distinct']:,} distinct, mixed kinds) |",
        f"| threads | {load['threads']} |",
        f"| errors | {sum(load['errors'].values())} {load['errors'] or ''} |",
        f"| answers differing from serial calls | {sum(load['differing_from_serial'].values())} |",
        f"| wall time | {load['wall_s']} s ({load['requests_per_s']:,} requests/s) |",
        f"| CPU time | {load['cpu_s']} s |",
        f"| RSS before / after | {rss['before']} / {rss['after']} MiB |",
        f"| RSS max during run | {rss['max_during']} MiB ({rss['samples']} samples) |",
        "| RSS slope, second half | "
        f"{rss['second_half_slope_mib_per_10k_requests']} MiB per 10k requests |",
        "| RSS by requests done | "
        + ", ".join(f"{n:,}: {m}" for n, m in rss["by_requests_done"])
        + " MiB |",
        "",
        "| kind | n | p50 ms | p95 ms | p99 ms |",
        "| --- | --- | --- | --- | --- |",
    ]
    for kind, lat in load["latency_ms"].items():
        lines.append(f"| {kind} | {lat['n']:,} | {lat['p50']} | {lat['p95']} | {lat['p99']} |")
    lines += ["", "## Catalog updates during reads", ""]
    if "skipped" in upd:
        lines.append(f"Skipped: {upd['skipped']}.")
    else:
        lines += [
            "| figure | value |",
            "| --- | --- |",
            f"| updates (add 10 items / remove 2) | {upd['updates']} |",
            f"| reader threads | {upd['reader_threads']} |",
            f"| answers during the updates | {upd['answers_during_updates']:,} |",
            "| answers matching no single catalog state | "
            f"{upd['answers_matching_no_single_catalog_state']} |",
            f"| errors | {sum(upd['errors'].values())} |",
            f"| final answer equals serial | {upd['final_state_matches_serial']} |",
            f"| wall time | {upd['wall_s']} s |",
        ]
    lines += ["", f"Verdict: **{result['verdict']}**", ""]
    path = out_dir / f"soak-{stamp}.md"
    path.write_text("\n".join(lines))
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("bundle", type=Path, help="bundle directory (from `edgerec export`)")
    p.add_argument("--requests", type=int, default=100_000)
    p.add_argument("--threads", type=int, default=16)
    p.add_argument("--distinct", type=int, default=2000, help="size of the request pool")
    p.add_argument("--updates", type=int, default=50, help="add/remove rounds in phase 2")
    p.add_argument("--ort-threads", type=int, default=1, help="onnxruntime intra-op threads")
    p.add_argument(
        "--scoring",
        default="auto",
        choices=("auto", "graph", "int8", "topk"),
        help="the runtime's scorer (auto: the recommend graph below 100k items, else int8)",
    )
    p.add_argument("--precision", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)

    from edgerec.runtime import Recommender

    load_kwargs = {
        "providers": "cpu",
        "threads": args.ort_threads,
        "scoring": args.scoring,
        "precision": args.precision,
    }
    hw = hardware()
    rec = Recommender.load(args.bundle, **load_kwargs)
    pool = make_pool(rec, args.distinct, args.seed)
    t0 = time.perf_counter()
    serial = [answer(rec, kind, kw) for kind, kw in pool]
    serial_s = time.perf_counter() - t0
    print(f"{rec}\nserial answers for {len(pool)} requests in {serial_s:.1f} s", flush=True)
    load = load_phase(rec, pool, serial, args.requests, args.threads, args.seed)
    print(json.dumps(load, indent=1), flush=True)
    updates = update_phase(args.bundle, load_kwargs, args.threads, args.updates, args.seed)
    print(json.dumps(updates, indent=1), flush=True)
    ok = (
        not load["errors"]
        and not load["differing_from_serial"]
        and load["answered"] == load["requests"]
        and (
            "skipped" in updates
            or (
                not updates["errors"]
                and updates["answers_matching_no_single_catalog_state"] == 0
                and updates["final_state_matches_serial"]
            )
        )
    )
    cmd = "python benchmarks/soak.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result = {
        "settings": {
            "command": cmd,
            "bundle": str(args.bundle),
            "items": rec.n_items,
            "dim": rec.dim,
            "precision": rec.precision,
            "scoring": rec.scoring,
            "ort_threads": args.ort_threads,
            "distinct": args.distinct,
            "serial_reference_s": round(serial_s, 2),
        },
        "hardware": hw,
        "load": load,
        "updates": updates,
        "verdict": "pass" if ok else "FAIL",
    }
    path = write_report(result, args.out)
    print(f"{result['verdict']}: report in {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
