"""Export figures of a trained run: sizes and test quality per precision, with and
without distillation, against the export issue's targets.

Exports the run twice -- as trained (fp32 + int8 + fp16) and distilled (int8 only, the
smallest bundle) -- and writes a markdown table plus the two manifests' figures. The
quality figures come from the bundles themselves through ``edgerec.runtime`` (see
``edgerec.export.quality``). fp16 graphs target GPUs; on a CPU-only machine their
figures are measured with onnxruntime's CPU kernels.

Targets: int8 within 1% relative test NDCG@10 of fp32; distilled + int8 within 3% of
the undistilled fp32 model; the distilled int8 MovieLens 100K bundle <= 10 MB.

Example:
  edgerec train --dataset movielens-100k --data-dir /work/shared/data --out runs/ml100k
  python benchmarks/export_quality.py runs/ml100k --out-root bundles --name ml100k
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f}"


def _export(run: Path, out: Path, **kwargs) -> tuple[dict, float]:
    from edgerec.export import export_bundle

    def progress(step: str, done: int, total: int) -> None:
        if "(" not in step:
            print(f"  [{done}/{total}] {step}", flush=True)

    t0 = time.perf_counter()
    manifest = export_bundle(run, out, progress=progress, **kwargs)
    return manifest, time.perf_counter() - t0


def rows(label: str, manifest: dict, base_ndcg: float) -> list[str]:
    quality, info = manifest["quality"], manifest["export"]
    total = sum(f["size"] for f in manifest["files"].values())
    out = []
    for p in ("fp32", "int8", "fp16"):
        if p not in quality:
            continue
        q = quality[p]
        sizes = [
            info[role]["size"] if p == "fp32" else info[role][p]["size"]
            for role in ("user_encoder", "text_encoder")
        ]
        shipped = p in manifest["precisions"]
        drop = q.get("ndcg@10_drop_vs_fp32", 0.0)
        vs_base = (base_ndcg - q["ndcg@10"]) / base_ndcg
        out.append(
            f"| {label} | {p}{'' if shipped else ' (not shipped)'} | {_mb(sizes[0])} | "
            f"{_mb(sizes[1])} | {q['hr@10']:.4f} | {q['ndcg@10']:.4f} | {drop:+.2%} | "
            f"{vs_base:+.2%} | {_mb(total) if shipped else '-'} |"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="A finished training run directory.")
    parser.add_argument("--out-root", type=Path, default=Path("bundles"))
    parser.add_argument("--name", default="ml100k")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--skip-plain", action="store_true", help="Only the distilled export.")
    args = parser.parse_args()

    common = {"data_dir": args.data_dir}
    results = {
        "run": str(args.run),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
    }
    plain_dir = args.out_root / args.name
    distilled_dir = args.out_root / f"{args.name}-distilled-int8"
    if args.skip_plain and (plain_dir / "manifest.json").is_file():
        plain = json.loads((plain_dir / "manifest.json").read_text())
        results["plain_seconds"] = None
    else:
        print(f"export as trained -> {plain_dir}")
        plain, seconds = _export(args.run, plain_dir, precisions=("fp32", "int8", "fp16"), **common)
        results["plain_seconds"] = round(seconds, 1)
    print(f"export distilled, int8 only -> {distilled_dir}")
    distilled, seconds = _export(
        args.run, distilled_dir, precisions=("int8",), distill=True, **common
    )
    results["distilled_seconds"] = round(seconds, 1)

    base = plain["quality"]["fp32"]["ndcg@10"]
    lines = [
        f"# Export figures: {plain['source']['dataset']}\n",
        f"Run `{args.run}`; test users, leave-one-out, full ranking, through "
        f"{plain['quality']['path']}. Sizes in MB (10^6 bytes).\n",
        "| export | precision | user encoder | text encoder | HR@10 | NDCG@10 | "
        "NDCG@10 vs fp32 | vs undistilled fp32 | bundle |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows("as trained", plain, base),
        *rows("distilled", distilled, base),
    ]
    d = distilled["distillation"]
    t, u = d["text_encoder"], d["user_encoder"]
    lines += [
        "",
        "## Distillation",
        "",
        "| student | parameters (teacher) | agreement with teacher | test NDCG@10 teacher -> student | loss first -> last | seconds |",
        "|---|---|---|---|---|---|",
        f"| text: {t['layers']} layers x {t['hidden']} ({t['init']} init) | "
        f"{t['student_parameters']:,} ({t['teacher_parameters']:,}) | held-out items: mean cos "
        f"{t['heldout_mean_cosine']:.4f}, min {t['heldout_min_cosine']:.4f} "
        f"(augmented {t['heldout_augmented_mean_cosine']:.4f}) | "
        f"{t['teacher_test_ndcg@10']:.4f} -> {t['student_test_ndcg@10']:.4f} | "
        f"{t['loss_first']:.4f} -> {t['loss_last']:.4f} | {t['seconds']} |",
        f"| user: Bi-LSTM hidden {u['hidden']} (teacher {u['teacher_hidden']}) | "
        f"{u['student_parameters']:,} ({u['teacher_parameters']:,}) | test users: mean cos "
        f"{u['test_mean_cosine']:.4f}, min {u['test_min_cosine']:.4f} | "
        f"{u['teacher_test_ndcg@10']:.4f} -> {u['student_test_ndcg@10']:.4f} | "
        f"{u['loss_first']:.4f} -> {u['loss_last']:.4f} | {u['seconds']} |",
    ]
    p_user, p_text = plain["parity"]["user_encoder"], plain["parity"]["text_encoder"]
    lines += [
        "",
        "## Parity gate (fp32, as trained)",
        "",
        f"user encoder max abs {p_user['max_abs_user']:.2e} over {p_user['users']} validation "
        f"users (widths {p_user['history_widths']}), identical top-10 "
        f"{p_user['top10_identical']:.2%}; text encoder max abs "
        f"{p_text['max_abs_item_vector']:.2e} over {p_text['texts']} texts.",
    ]
    int8_drop = plain["quality"]["int8"]["ndcg@10_drop_vs_fp32"]
    dist_drop = (base - distilled["quality"]["int8"]["ndcg@10"]) / base
    dist_size = sum(f["size"] for f in distilled["files"].values())
    targets = {
        "int8 within 1% of fp32": (int8_drop <= 0.01, f"{int8_drop:+.2%}"),
        "distilled int8 within 3% of undistilled fp32": (dist_drop <= 0.03, f"{dist_drop:+.2%}"),
        "distilled int8 bundle <= 10 MB": (dist_size <= 10e6, f"{dist_size / 1e6:.2f} MB"),
    }
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {k} | {v} | {'yes' if ok else 'no'} |" for k, (ok, v) in targets.items()]
    lines += [
        "",
        f"Export wall time on {results['machine']['cores']} shared cores: as trained "
        f"{results['plain_seconds']} s, distilled {results['distilled_seconds']} s.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"export_quality_{args.name}.md").write_text(text)
    results.update(
        {
            "plain": {k: plain[k] for k in ("quality", "parity", "export", "files", "scoring")},
            "distilled": {
                k: distilled[k] for k in ("quality", "parity", "export", "files", "distillation")
            },
            "targets": {k: {"met": ok, "measured": v} for k, (ok, v) in targets.items()},
        }
    )
    (RESULTS / f"export_quality_{args.name}.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
