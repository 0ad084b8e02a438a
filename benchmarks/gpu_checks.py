"""What the CUDA execution provider does with a bundle, checked and timed on a real GPU.

The CPU test suite cannot see a GPU, and onnxruntime-gpu reports CUDA as available on
machines where it silently falls back to the CPU, so these checks run where a GPU is:
``benchmarks/run_gpu.sh run`` calls this script after installing onnxruntime-gpu.

Checks (each recorded as pass/fail with its numbers, none stops the others):
- ``providers=args.provider`` and ``"auto"`` put every session on CUDA (``rec.sessions``),
  the item matrix is an OrtValue on the device (I/O binding), and scoring is ``topk``
  (the bundle's ``topk`` graph; ``topk.fp16`` for a float16 item matrix);
- CUDA answers agree with the CPU fp32 runtime over seeded random histories (top-10
  overlap, scores), per precision;
- ``recommend_batch`` gives what serial ``recommend`` calls give, and so do 8 threads
  sharing one Recommender;
- ``add_items`` on CUDA gives the CPU's text vectors, and the added items are ranked;
  ``remove_items`` takes them out again;
- the bundle's ``topk.fp16`` graph over a 1M-item float16 matrix on the device agrees
  with numpy.

Latency (medians over repeated calls, after warm-up): ``recommend`` for one history and
``recommend_batch`` for 256, on CUDA per precision, against the CPU runtime (1 thread)
and the run's PyTorch model in eager mode on the same GPU (user tower + scoring + top-k),
each timed with a device synchronisation in the measured region.

    python benchmarks/gpu_checks.py --bundle .gpu/bundle --run .gpu/run --out OUT/checks.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from edgerec.benchmark import adapter  # noqa: E402
from edgerec.benchmark.timing import TimingPolicy, measure  # noqa: E402
from edgerec.runtime import Recommender  # noqa: E402

RESULTS: dict = {"checks": [], "latency": []}


def check(name: str):
    """Run one check; record pass/fail, its numbers, or the exception, and go on."""

    def wrap(fn):
        t0 = time.perf_counter()
        try:
            ok, info = fn()
        except Exception as e:  # a check that crashes is a failed check, not a stop
            ok, info = False, {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()}
        info["seconds"] = round(time.perf_counter() - t0, 2)
        RESULTS["checks"].append({"check": name, "pass": bool(ok), **info})
        status = "PASS" if ok else "FAIL"
        shown = {k: v for k, v in info.items() if k != "trace"}
        print(f"[{status}] {name}: {json.dumps(shown, default=str)[:600]}", flush=True)
        return fn

    return wrap


# at least 30 calls and 1.5 s after 5 warm-up calls (up to 2,000 calls)
POLICY = TimingPolicy(
    warmup_reps=5, warmup_s=0.0, min_reps=30, max_reps=2000, min_time_s=1.5, max_time_s=1.5
)


def median_ms(fn) -> float:
    return measure(fn, POLICY)["p50_ms"]


def histories(ids: list, n: int, seed: int, max_len: int) -> list[list]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        length = int(rng.integers(1, max_len + 1))
        out.append([ids[i] for i in rng.choice(len(ids), size=length, replace=False)])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--run", type=Path, help="run directory for the PyTorch comparison")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--users", type=int, default=300)
    ap.add_argument(
        "--provider",
        default="cuda",
        help="cuda; 'cpu' only to dry-run the script on a machine without a GPU",
    )
    args = ap.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)  # the profile check writes there too

    import onnxruntime as ort

    manifest = json.loads((args.bundle / "manifest.json").read_text())
    ids = json.loads((args.bundle / "items.json").read_text())["ids"]
    precisions = list(manifest["graphs"]["user_encoder"])
    RESULTS["env"] = {
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "available_providers": ort.get_available_providers(),
        "numpy": np.__version__,
        "bundle": str(args.bundle),
        "precisions": precisions,
        "n_items": len(ids),
    }
    print(json.dumps(RESULTS["env"]), flush=True)
    max_len = int(manifest["dims"]["max_len"])
    hs = histories(ids, args.users, 0, max_len)
    h50 = histories(ids, 256, 1, max_len)
    h50 = [h for h in h50 if len(h) >= 1]
    one = histories(ids, 1, 2, 50)[0] if len(ids) > 50 else ids[:10]

    cpu = Recommender.load(args.bundle, providers="cpu", threads=1, precision="fp32")
    ref = [cpu.recommend(h, k=10) for h in hs]
    recs: dict[str, Recommender] = {}

    @check("providers='auto' runs on CUDA")
    def _auto():
        rec = Recommender.load(args.bundle, providers="auto")
        return rec.device == "cuda", {
            "providers": list(rec.providers),
            "device": rec.device,
            "scoring": rec.scoring,
            "precision": rec.precision,
        }

    for p in precisions:

        @check(f"{p}: providers='cuda' puts every session and the item matrix on the GPU")
        def _load(p=p):
            rec = Recommender.load(args.bundle, providers=args.provider, precision=p)
            recs[p] = rec
            scorer = rec._state.scorer  # the DeviceScorer: its matrix is an OrtValue
            items = getattr(scorer, "_items", None)
            where = items.device_name() if items is not None else None
            # role -> providers; "user_encoder_cpu" encodes small batches on the CPU
            sessions = {role: s.get_providers() for role, s in rec.sessions.items()}
            on_gpu = [r for r in sessions if r != "user_encoder_cpu"]
            ok = (
                rec.device == "cuda"
                and rec.scoring == "topk"
                and where == "cuda"
                and all(sessions[r][0] == "CUDAExecutionProvider" for r in on_gpu)
            )
            return ok, {
                "providers": list(rec.providers),
                "scoring": rec.scoring,
                "item_matrix_on": where,
                "sessions": sessions,
                "graph_files": dict(rec.graph_files),
            }

        @check(f"{p}: CUDA top-10 agrees with the CPU fp32 runtime")
        def _parity(p=p):
            rec = recs[p]
            overlap, exact, diffs = [], 0, []
            for h, r in zip(hs, ref, strict=True):
                got = rec.recommend(h, k=10)
                a, b = [x.item_id for x in got], [x.item_id for x in r]
                overlap.append(len(set(a) & set(b)) / max(len(b), 1))
                exact += a == b
                common = {x.item_id: x.score for x in r}
                diffs += [abs(x.score - common[x.item_id]) for x in got if x.item_id in common]
            mean_overlap = float(np.mean(overlap))
            floor = 0.999 if p == "fp32" else 0.9
            return mean_overlap >= floor, {
                "users": len(hs),
                "mean_top10_overlap": round(mean_overlap, 4),
                "identical_lists": exact,
                "max_abs_score_diff": float(max(diffs)) if diffs else None,
                "floor": floor,
            }

        @check(f"{p}: recommend_batch equals serial recommend on CUDA (up to near-ties)")
        def _batch(p=p):
            # The batch encodes on the GPU, single calls on the CPU (user_encoder='auto'),
            # so scores may differ by rounding: lists must agree except for swaps of items
            # whose scores differ by less than 1e-3 (float32), 2e-2 for fp16, whose GPU
            # graph computes in float16 while the CPU runs the fp32/int8 variant.
            rec = recs[p]
            serial = [rec.recommend(h, k=10) for h in hs]
            batch = rec.recommend_batch(hs, k=10)
            same, worst_swap, worst_diff = 0, 0.0, 0.0
            for a, b in zip(serial, batch, strict=True):
                ia, ib = [x.item_id for x in a], [x.item_id for x in b]
                same += ia == ib
                sa = {x.item_id: x.score for x in a}
                worst_diff = max(
                    [worst_diff] + [abs(x.score - sa[x.item_id]) for x in b if x.item_id in sa]
                )
                if ia != ib:  # how far apart are the scores of the positions that differ?
                    worst_swap = max(
                        [worst_swap]
                        + [
                            abs(x.score - y.score)
                            for x, y in zip(a, b, strict=True)
                            if x.item_id != y.item_id
                        ]
                    )
            return worst_swap < (2e-2 if p == "fp16" else 1e-3), {
                "identical": same,
                "of": len(hs),
                "max_score_gap_where_order_differs": worst_swap,
                "max_abs_score_diff_same_item": worst_diff,
            }

        @check(f"{p}: 8 threads sharing one Recommender give the serial answers")
        def _threads(p=p):
            rec = recs[p]
            serial = [[x.item_id for x in rec.recommend(h, k=10)] for h in hs]
            got: dict[int, list] = {}
            errors: list[str] = []

            def worker(t: int) -> None:
                try:
                    for i in range(t, len(hs), 8):
                        got[i] = [x.item_id for x in rec.recommend(hs[i], k=10)]
                except Exception as e:
                    errors.append(repr(e))

            threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            same = sum(got.get(i) == serial[i] for i in range(len(hs)))
            return same == len(hs) and not errors, {"identical": same, "errors": errors[:3]}

    @check("add_items on CUDA: same text vectors as the CPU, ranked, then removable")
    def _add():
        rec = Recommender.load(args.bundle, providers=args.provider, precision="fp32")
        if not rec.can_add_items:
            return False, {"error": "bundle has no text encoder"}
        texts = [f"A new film number {i} | Drama|Romance|{1990 + i % 30}" for i in range(64)]
        new_ids = [10_000_000 + i for i in range(64)]
        rec.add_items(new_ids, texts)
        # the same items added on a CPU twin: their vectors as the catalog stores them
        twin = Recommender.load(args.bundle, providers="cpu", threads=1, precision="fp32")
        twin.add_items(new_ids, texts)
        v_gpu, v_cpu = rec.item_vectors(new_ids), twin.item_vectors(new_ids)
        cos = np.sum(v_gpu * v_cpu, 1) / (
            np.linalg.norm(v_gpu, axis=1) * np.linalg.norm(v_cpu, axis=1) + 1e-12
        )
        t0 = time.perf_counter()
        rec.add_items([20_000_000 + i for i in range(256)], texts * 4)
        rate = 256 / (time.perf_counter() - t0)
        top = rec.recommend(one, k=rec.n_items, exclude_seen=False)
        ranked = {x.item_id for x in top} & set(new_ids)
        rec.remove_items(new_ids)
        after = {x.item_id for x in rec.recommend(one, k=rec.n_items)} & set(new_ids)
        ok = float(cos.min()) > 0.999 and len(ranked) == 64 and not after
        return ok, {
            "min_cosine_gpu_vs_cpu": float(cos.min()),
            "added_ranked": len(ranked),
            "left_after_remove": len(after),
            "items_per_s_256": round(rate, 1),
        }

    @check("the bundle's topk graph over 1M float16 rows on CUDA agrees with numpy")
    def _million():
        from edgerec.runtime.catalog import Catalog
        from edgerec.runtime.providers import create_session
        from edgerec.runtime.scoring import DeviceScorer

        rng = np.random.default_rng(3)
        n, d = 1_000_000, int(manifest["dims"]["dim"])
        m = rng.standard_normal((n + 1, d)).astype(np.float16)
        m[0] = 0
        cat = Catalog.create(
            m, None, range(1, n + 1), [None] * n, np.zeros(n + 1, np.float32), "int"
        )
        gpu = args.provider == "cuda"
        providers = (
            ["CUDAExecutionProvider", "CPUExecutionProvider"] if gpu else ["CPUExecutionProvider"]
        )
        # float16 on the device; the CPU dry run takes the float32 graph (CPUs lack the
        # float16 kernels) and the scorer upcasts the matrix for it
        name = manifest["scorers"]["topk_fp16" if gpu else "topk"]
        session = create_session((args.bundle / name).read_bytes(), name, providers, None)
        sc = DeviceScorer(cat, session, "cuda" if gpu else "cpu")
        users = rng.standard_normal((8, d)).astype(np.float32)
        excluded = np.tile(np.array([[1, 2, 3]], np.int64), (8, 1))
        none = np.zeros((8, 1), np.int64)  # row 0: padding, masked by the bias anyway
        got = sc.topk(users, 100, cat.bias, excluded)
        ref_scores = users.astype(np.float32) @ m.astype(np.float32).T
        ref_scores[:, [0, 1, 2, 3]] = -np.inf
        agree = []
        for j, (rows, _) in enumerate(got):
            want = np.argsort(-ref_scores[j])[:100]
            agree.append(len(set(rows.tolist()) & set(want.tolist())) / 100)
        single = median_ms(lambda: sc.topk(users[:1], 10, cat.bias, none[:1]))
        batch = median_ms(lambda: sc.topk(users, 10, cat.bias, none))
        return min(agree) >= 0.97, {
            "min_top100_overlap": min(agree),
            "ms_one_user_k10": round(single, 4),
            "ms_8_users_k10": round(batch, 4),
        }

    @check("user-encoder placement on a GPU recommender: CPU vs GPU session by batch size")
    def _placement():
        rows, vectors = {}, {}
        for placement in ("cpu", "device"):
            rec = Recommender.load(
                args.bundle, providers=args.provider, precision="fp32", user_encoder=placement
            )
            for b in (1, 8, 64, 256):
                # the session recommend_batch runs for b histories, on its request arrays
                sess = adapter.encoder_session(rec, b)

                def encode(rec=rec, sess=sess, b=b):
                    feeds = adapter.user_encoder_feeds(rec, h50[:b])
                    return sess.run(["user"], feeds)[0]

                rows[f"{placement} batch {b}"] = round(median_ms(encode), 4)
            vectors[placement] = encode()
        diff = float(np.abs(vectors["cpu"] - vectors["device"]).max())
        scale = float(np.abs(vectors["cpu"]).max())
        # float32 on both (TF32 off): differences at rounding level, not 1e-3
        return diff <= 1e-4 * max(scale, 1.0), {
            "encode_p50_ms": rows,
            "max_abs_user_vector_diff_gpu_vs_cpu": diff,
            "max_abs_user_vector": scale,
        }

    @check("onnxruntime profile of the GPU user-encoder session (where the time goes)")
    def _profile():
        import os

        import onnxruntime as ort

        rec = Recommender.load(
            args.bundle, providers=args.provider, precision="fp32", user_encoder="device"
        )
        so = ort.SessionOptions()
        so.enable_profiling = True
        so.profile_file_prefix = str(args.out.parent / "ue_profile")
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # a profiling session of the file the recommender's GPU user encoder runs
        blob = (args.bundle / rec.graph_files["user_encoder"]).read_bytes()
        sess = ort.InferenceSession(blob, so, providers=list(rec.providers))
        summary = {}
        for b, reps in ((1, 30), (256, 5)):
            feeds = adapter.user_encoder_feeds(rec, h50[:b])
            for _ in range(3):
                sess.run(None, feeds)
            t0 = time.perf_counter()
            for _ in range(reps):
                sess.run(None, adapter.user_encoder_feeds(rec, h50[:b]))
            summary[f"batch {b} wall ms per call"] = round(
                (time.perf_counter() - t0) / reps * 1e3, 3
            )
        path = sess.end_profiling()
        events = json.loads(Path(path).read_text())
        per_op: dict[str, list] = {}
        for e in events:
            if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
                continue
            a = e.get("args", {})
            key = f"{a.get('op_name')}@{a.get('provider', '?').replace('ExecutionProvider', '')}"
            per_op.setdefault(key, [0, 0])
            per_op[key][0] += e.get("dur", 0)
            per_op[key][1] += 1
        top = sorted(per_op.items(), key=lambda kv: -kv[1][0])[:14]
        summary["kernel_us_total_by_op (all calls)"] = {k: v for k, v in top}
        os.remove(path)
        return True, summary

    # --- latency ---------------------------------------------------------------------
    def lat(label: str, provider: str, precision: str, what: str, ms: float, n: int) -> None:
        row = {
            "engine": label,
            "provider": provider,
            "precision": precision,
            "call": what,
            "p50_ms": round(ms, 4),
            "histories_per_call": n,
        }
        RESULTS["latency"].append(row)
        print(f"latency {json.dumps(row)}", flush=True)

    lat("runtime", "cpu-1t", "fp32", "recommend", median_ms(lambda: cpu.recommend(one, k=10)), 1)
    lat(
        "runtime",
        "cpu-1t",
        "fp32",
        "recommend_batch",
        median_ms(lambda: cpu.recommend_batch(h50, k=10)),
        len(h50),
    )
    for p, rec in recs.items():
        for b in (8, 64):
            batch_ms = median_ms(lambda rec=rec, b=b: rec.recommend_batch(h50[:b], k=10))
            lat("runtime", args.provider, p, "recommend_batch", batch_ms, b)
        lat(
            "runtime",
            args.provider,
            p,
            "recommend",
            median_ms(lambda rec=rec: rec.recommend(one, k=10)),
            1,
        )
        lat(
            "runtime",
            args.provider,
            p,
            "recommend_batch",
            median_ms(lambda rec=rec: rec.recommend_batch(h50, k=10)),
            len(h50),
        )
        lat(
            "runtime",
            args.provider,
            p,
            "user_vector",
            median_ms(lambda rec=rec: rec.user_vector(one)),
            1,
        )

    if args.run is not None:

        @check("PyTorch eager on CUDA (the comparison point) runs the run's model")
        def _torch():
            torch_latency(args.run, args.bundle, one, h50, lat, args.provider)
            return True, {}

    args.out.write_text(json.dumps(RESULTS, indent=1, default=str))
    failed = [c["check"] for c in RESULTS["checks"] if not c["pass"]]
    print("\n| engine | provider | precision | call | histories | p50 ms |")
    print("|---|---|---|---|---|---|")
    for r in RESULTS["latency"]:
        print(
            f"| {r['engine']} | {r['provider']} | {r['precision']} | {r['call']} | "
            f"{r['histories_per_call']} | {r['p50_ms']} |"
        )
    print(
        f"\n{len(RESULTS['checks']) - len(failed)}/{len(RESULTS['checks'])} checks passed"
        + (f"; failed: {failed}" if failed else "")
    )


def torch_latency(run: Path, bundle: Path, one: list, batch: list, lat, device: str) -> None:
    """The run's model on the GPU doing what ``recommend`` does: ids -> rows, user tower,
    scores over the bundle's item matrix, seen items masked, top-k."""
    import torch

    from edgerec.features import gap_buckets
    from edgerec.runtime.bundle import verify
    from edgerec.training.checkpoint import load_run

    dev = torch.device(device)
    model = load_run(run).model.eval().to(dev)
    data = verify(bundle)
    index = {x: i + 1 for i, x in enumerate(data.item_ids.ids)}
    items = data.items.astype(np.float32)
    if data.scale is not None:
        items = items * data.scale[:, None]
    table = torch.from_numpy(np.ascontiguousarray(items, dtype=np.float32)).to(dev)
    max_len = int(model.cfg.max_len)

    def run_once(hist: list[list]) -> list:
        L = min(max_len, max(len(h) for h in hist))
        rows = np.zeros((len(hist), L), np.int64)
        lengths = np.zeros(len(hist), np.int64)
        for i, h in enumerate(hist):
            r = [index[x] for x in h[-L:]]
            rows[i, : len(r)] = r
            lengths[i] = len(r)
        ts = np.zeros_like(rows)
        beh = np.full(rows.shape, 0, np.int64)
        gaps = gap_buckets(ts, lengths)
        with torch.inference_mode():
            t = [torch.from_numpy(a).to(dev, non_blocking=True) for a in (rows, beh, gaps, lengths)]
            users = model.encode_users(*t, item_table=table).user
            scores = model.score_all(users, table)
            scores[:, 0] = float("-inf")
            scores.scatter_(1, t[0], float("-inf"))
            _, top = torch.topk(scores, 10, dim=1)
            return top.cpu().tolist()  # synchronises, as the runtime's answer must

    lat("pytorch-eager", device, "fp32", "recommend", median_ms(lambda: run_once([one])), 1)
    for b in (8, 64, len(batch)):
        lat(
            "pytorch-eager",
            device,
            "fp32",
            "recommend_batch",
            median_ms(lambda b=b: run_once(batch[:b])),
            b,
        )


if __name__ == "__main__":
    main()
