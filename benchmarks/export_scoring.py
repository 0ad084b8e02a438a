"""Two export decisions, measured: the scoring path and where the item table lives.

1. Scoring + top-10 for one user: numpy ``items @ u`` + argpartition against an ONNX
   MatMul + TopK graph, for a bundle's catalog and synthetic 100k / 1M-item matrices.
2. The item table as a graph *input* against a baked-in *initializer*: the user
   encoder (the table feeds a Gather) and the scoring graph (the table feeds a MatMul,
   which onnxruntime pre-packs when it is a constant).

Medians of repeated single-user calls, 1 onnxruntime intra-op thread; numpy's BLAS uses
whatever threads OPENBLAS_NUM_THREADS/OMP_NUM_THREADS allow (recorded). Prints a
markdown table and writes results/export_scoring.json.

Example:
  OMP_NUM_THREADS=1 python benchmarks/export_scoring.py --bundle bundles/ml100k
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def _session(model_bytes: bytes):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


def bake_table(model_bytes: bytes, table: np.ndarray) -> bytes:
    """The same graph with its ``item_table`` input turned into an initializer."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(model_bytes)
    keep = [i for i in model.graph.input if i.name != "item_table"]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    model.graph.initializer.append(numpy_helper.from_array(table, "item_table"))
    return model.SerializeToString()


def scoring_rows(n_rows: int, dim: int, repeats: int) -> dict:
    from edgerec.export.scoring import measure_scoring, topk_graph

    items = np.random.default_rng(0).standard_normal((n_rows, dim)).astype(np.float32)
    row = measure_scoring(items, repeats=repeats)
    user = np.random.default_rng(1).standard_normal((dim, 1)).astype(np.float32)
    graph = topk_graph(dim, 10).SerializeToString()
    baked = _session(bake_table_scoring(graph, items))
    row["onnx_initializer_ms"] = round(
        _median_ms(lambda: baked.run(None, {"user_col": user}), repeats), 4
    )
    return row


def bake_table_scoring(graph: bytes, items: np.ndarray) -> bytes:
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(graph)
    keep = [i for i in model.graph.input if i.name != "items"]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    model.graph.initializer.append(numpy_helper.from_array(items, "items"))
    return model.SerializeToString()


def user_encoder_rows(bundle: Path, repeats: int) -> list[dict]:
    manifest = json.loads((bundle / "manifest.json").read_text())
    from edgerec.export.bundle import load_item_matrix

    table = load_item_matrix(bundle, manifest["item_matrix"])
    rng = np.random.default_rng(0)
    dims = manifest["dims"]
    seq = dims["max_len"]
    feed = {
        "items": rng.integers(1, dims["n_items"] + 1, (1, seq)),
        "behaviours": rng.integers(1, dims["n_behaviours"], (1, seq)),
        "gaps": rng.integers(1, dims["n_gap_buckets"], (1, seq)),
        "lengths": np.array([seq]),
    }
    rows = []
    for name in manifest["graphs"]["user_encoder"].values():
        raw = (bundle / name).read_bytes()
        as_input = _session(raw)
        baked = _session(bake_table(raw, table))
        rows.append(
            {
                "graph": name,
                "n_rows": int(table.shape[0]),
                "history": seq,
                "input_ms": round(
                    _median_ms(
                        lambda s=as_input: s.run(None, {**feed, "item_table": table}), repeats
                    ),
                    4,
                ),
                "initializer_ms": round(_median_ms(lambda s=baked: s.run(None, feed), repeats), 4),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path, help="A bundle: its catalog and user encoders.")
    parser.add_argument("--sizes", default="100000,1000000", help="Synthetic catalog sizes.")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--out", type=Path, default=RESULTS / "export_scoring.json")
    args = parser.parse_args()

    sizes = [int(s) for s in args.sizes.split(",") if s]
    result = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "omp_threads": os.environ.get("OMP_NUM_THREADS"),
            "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        },
        "scoring": [],
        "user_encoder_table": [],
    }
    if args.bundle is not None:
        manifest = json.loads((args.bundle / "manifest.json").read_text())
        sizes = [manifest["dims"]["n_items"] + 1] + sizes
        result["user_encoder_table"] = user_encoder_rows(args.bundle, args.repeats)
    for n in sizes:
        result["scoring"].append(
            scoring_rows(n, args.dim, max(5, args.repeats // (1 + n // 200_000)))
        )

    print("| catalog rows | numpy ms | onnx (input) ms | onnx (initializer) ms | faster |")
    print("|---|---|---|---|---|")
    for r in result["scoring"]:
        print(
            f"| {r['n_rows']:,} | {r['numpy_ms']:.3f} | {r['onnx_ms']:.3f} | "
            f"{r['onnx_initializer_ms']:.3f} | {r['method']} |"
        )
    if result["user_encoder_table"]:
        print("\n| user encoder | table rows | table as input ms | as initializer ms |")
        print("|---|---|---|---|")
        for r in result["user_encoder_table"]:
            print(
                f"| {r['graph']} | {r['n_rows']:,} | {r['input_ms']:.3f} | {r['initializer_ms']:.3f} |"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten {args.out}")


if __name__ == "__main__":
    main()
