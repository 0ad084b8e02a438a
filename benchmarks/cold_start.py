"""Item cold start on MovieLens 100K and the synthetic data: the issue #23 table.

``run`` calls ``edgerec bench cold-start`` once per seed (each call trains the model
without the cold items and, unless it exists, the full-data model, exports the teacher
and the distilled bundle, adds the cold items from text through the runtime and
measures); ``report`` gathers every ``cold_start.json`` under the work folder into
benchmarks/results/cold_start.jsonl and cold_start.md. Runs and bundles stay in the
work folder, so an interrupted run continues and ``report`` can be rerun at any time.

    python benchmarks/cold_start.py run --work /tmp/cs --dataset movielens-100k \\
        --data-dir ../shared/data --seeds 0 1 2 --epochs 3
    python benchmarks/cold_start.py run --work /tmp/cs --dataset synthetic --seeds 0 1 2 --epochs 6
    python benchmarks/cold_start.py report --work /tmp/cs
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from edgerec.io import atomic_write_text

RESULTS = Path(__file__).parent / "results"
MODEL_ROWS = [
    ("teacher", "fp32"),
    ("teacher-no-cold", "fp32"),
    ("teacher", "int8"),
    ("student", "fp32"),
    ("student", "int8"),
    ("full-data", "fp32"),
]
BASELINE_ROWS = [("content-knn", None), ("popularity", None), ("random", None)]
LABELS = {
    ("teacher", "fp32"): "edgerec teacher, fp32",
    ("teacher-no-cold", "fp32"): "edgerec teacher, fp32, cold items not added (warm only)",
    ("teacher", "int8"): "edgerec teacher, int8",
    ("student", "fp32"): "edgerec distilled student, fp32",
    ("student", "int8"): "edgerec distilled student, int8",
    ("full-data", "fp32"): "full-data model, fp32 (trained on the cold items too: not cold start)",
    ("content-knn", None): "content kNN (MiniLM vectors, last 10 items)",
    ("popularity", None): "popularity",
    ("random", None): "random (exact expectation)",
}


def run(args: argparse.Namespace) -> None:
    work = Path(args.work) / args.dataset
    for seed in args.seeds:
        out = work / f"{args.choice}-seed{seed}"
        cmd = [
            "edgerec",
            "bench",
            "cold-start",
            "--dataset",
            args.dataset,
            "--out",
            str(out),
            "--seed",
            str(seed),
            "--cold-choice",
            args.choice,
            "--cold-items",
            str(args.fraction),
            "--threads",
            str(args.threads),
        ]
        if args.data_dir:
            cmd += ["--data-dir", args.data_dir]
        if args.epochs is not None:
            cmd += ["--epochs", str(args.epochs)]
        if args.time_budget:
            cmd += ["--time-budget", args.time_budget]
        # the full-data model does not depend on the cold items: share one per seed
        shared = work / f"recent-seed{seed}" / "full-run"
        if args.choice != "recent" and (shared / "metrics.json").is_file():
            cmd += ["--full-run", str(shared)]
        cmd += args.extra
        print("$", shlex.join(cmd), flush=True)
        t0 = time.time()
        proc = subprocess.run(cmd)
        if proc.returncode != 0:
            sys.exit(f"seed {seed} failed ({proc.returncode})")
        record = out / "command.json"
        record.write_text(json.dumps({"command": shlex.join(cmd), "wall_s": time.time() - t0}))


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def _metric(results: list[dict], key, group: str, metric: str) -> list[float]:
    out = []
    for r in results:
        for row in r["rows"]:
            if (row["model"], row["precision"]) == key and row.get(group):
                out.append(row[group][metric])
    return out


def _row(results: list[dict], key) -> dict | None:
    rows = [row for r in results for row in r["rows"] if (row["model"], row["precision"]) == key]
    return rows or None


def _table(results: list[dict]) -> list[str]:
    lines = [
        "| model | cold NDCG@10 | cold HR@10 | warm NDCG@10 | warm HR@10 "
        "| full-data model's warm NDCG@10 | warm − full-data (paired, per seed) "
        "| cold share of the warm top 10 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    full_warm = _metric(results, ("full-data", "fp32"), "warm", "ndcg@10")
    for key in MODEL_ROWS + BASELINE_ROWS:
        if not _row(results, key):
            continue
        is_model = key[0] in ("teacher", "student", "teacher-no-cold")
        no_cold = key[0] == "teacher-no-cold"
        diffs = [
            row["warm_vs_full_data"]
            for r in results
            for row in r["rows"]
            if (row["model"], row["precision"]) == key and "warm_vs_full_data" in row
        ]
        diff_cell = ", ".join(f"{d['mean']:+.4f} (se {d['se']:.4f})" for d in diffs) or "-"
        lines.append(
            f"| {LABELS[key]} | {'-' if no_cold else _mean_sd(_metric(results, key, 'cold', 'ndcg@10'))} "
            f"| {'-' if no_cold else _mean_sd(_metric(results, key, 'cold', 'hr@10'))} "
            f"| {_mean_sd(_metric(results, key, 'warm', 'ndcg@10'))} "
            f"| {_mean_sd(_metric(results, key, 'warm', 'hr@10'))} "
            f"| {_mean_sd(full_warm) if is_model else '-'} | {diff_cell if is_model else '-'} "
            f"| {_mean_sd(_metric(results, key, 'warm', 'cold_share@10'))} |"
        )
    return lines


def _per_seed(results: list[dict]) -> list[str]:
    lines = [
        "| seed | model | cold NDCG@10 | cold HR@10 | warm NDCG@10 | warm HR@10 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in sorted(results, key=lambda r: r["seed"]):
        for row in r["rows"]:
            if row["model"] not in ("teacher", "teacher-no-cold", "student", "full-data"):
                continue
            cold, warm = row.get("cold") or {}, row.get("warm") or {}
            lines.append(
                f"| {r['seed']} | {row['model']} {row['precision']} "
                f"| {cold.get('ndcg@10', float('nan')):.4f} | {cold.get('hr@10', float('nan')):.4f} "
                f"| {warm.get('ndcg@10', float('nan')):.4f} | {warm.get('hr@10', float('nan')):.4f} |"
            )
    return lines


def _runs(results: list[dict]) -> list[str]:
    lines = [
        "| seed | run | best / last epoch | stop | valid NDCG@10 (its own validation) "
        "| training (s, loaded machine) "
        "| student user encoder | add_items (s, teacher int8 / student int8) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in sorted(results, key=lambda r: r["seed"]):
        adds = {
            (row["model"], row["precision"]): row.get("add_items_seconds")
            for row in r["rows"]
            if "add_items_seconds" in row
        }
        add_cell = " / ".join(
            str(adds.get(k, "-")) for k in (("teacher", "int8"), ("student", "int8"))
        )
        chosen = ((r.get("distillation") or {}).get("user_encoder") or {}).get("chosen", "-")
        for name in ("full", "cold"):
            run = r["runs"][name]
            lines.append(
                f"| {r['seed']} | {name} | {run['best_epoch']} / {run['epochs_run']} "
                f"| {run['stop_reason']} | {run['valid_ndcg@10']:.4f} "
                f"| {run['train_seconds']:.0f} | {chosen if name == 'cold' else '-'} "
                f"| {add_cell if name == 'cold' else '-'} |"
            )
    return lines


def report(args: argparse.Namespace) -> None:
    work = Path(args.work)
    found = sorted(work.glob("*/*/cold_start.json"))
    results = []
    for path in found:
        r = json.loads(path.read_text())
        cmd_file = path.parent / "command.json"
        r["command"] = json.loads(cmd_file.read_text())["command"] if cmd_file.is_file() else None
        results.append(r)
    if not results:
        sys.exit(f"no cold_start.json under {work}")
    jsonl = "".join(json.dumps(r) + "\n" for r in results)
    atomic_write_text(RESULTS / "cold_start.jsonl", jsonl)
    groups: dict = {}
    for r in results:
        groups.setdefault((r["dataset"], r["split"]["choice"]), []).append(r)
    hw = results[0]["hardware"]
    cpu = hw.get("cpu", {})
    lines = [
        "# Item cold start",
        "",
        "Written by `python benchmarks/cold_start.py report` from every `cold_start.json` of "
        "`edgerec bench cold-start` (one per data set, choice and seed; all of them in "
        "[cold_start.jsonl](cold_start.jsonl)).",
        "",
        "Protocol (README, *Evaluation protocol*): 10 % of the items become cold -- those whose "
        "first interaction is latest (`recent`), or a random draw (`random`); every "
        "interaction with them leaves the training data (train and validation), the model "
        "is trained and exported (teacher, and `--distill` student), and the cold items "
        "join the bundle's catalog from their text alone through `Recommender.add_items`. "
        "Leave-one-out test, full ranking over every item (warm and cold), the user's "
        "earlier items excluded; test histories keep their cold items (the catalog knows "
        "them once added, so the runtime reads them through their text vectors). *Cold*: "
        "the test events whose target is a cold item; *warm*: the others. The full-data "
        "model is the same settings trained on all the data, measured on the same warm "
        "events; *warm − full-data* is the paired mean difference of NDCG@10 over those "
        "events with its standard error, per seed. Cells: mean ± standard deviation over "
        "seeds.",
        "",
        *(
            ["Findings and what is left: [cold_start_notes.md](cold_start_notes.md).", ""]
            if (RESULTS / "cold_start_notes.md").is_file()
            else []
        ),
        f"Hardware: {cpu.get('model', '?')}, {cpu.get('logical_cores', cpu.get('cores', '?'))} "
        f"logical cores, shared with other jobs (load average at start "
        f"{hw.get('load_average_start')}); quality figures do not depend on load.",
        "",
    ]
    for (dataset, choice), rs in sorted(groups.items()):
        s = rs[0]["split"]
        st = rs[0]["settings"]
        changed = {
            k: v
            for k, v in st["train"].items()
            if k in ("epochs", "time_budget", "schedule", "patience")
        }
        exported = {
            (e.get("commit", "?")[:7], ", ".join(e.get("changed", [])) or "clean")
            for r in rs
            for row in r["rows"]
            if (e := row.get("exported_with"))
        }
        code = "; ".join(f"{c} ({state})" for c, state in sorted(exported)) or "not recorded"
        lines += [
            f"## {dataset}, {choice} cold items",
            "",
            f"{s['cold_items']} of {s['items']} items cold; {s['cold_test_events']} cold and "
            f"{s['warm_test_events']} warm test events; {s['cold_interactions_removed']} "
            f"interactions removed from training; {s['test_histories_with_cold_items']} test "
            f"histories hold a cold item. Seeds: {', '.join(str(r['seed']) for r in sorted(rs, key=lambda r: r['seed']))}. "
            f"Training: {json.dumps(changed)}, max_len {st['model']['max_len']}, "
            f"{st['num_threads']} thread(s), otherwise defaults. Bundles exported with "
            f"commit {code}.",
            "",
            *_table(rs),
            "",
            "Per seed:",
            "",
            *_per_seed(rs),
            "",
            "Runs:",
            "",
            *_runs(rs),
            "",
            "Commands:",
            "",
            "```bash",
            *sorted({r["command"] for r in rs if r.get("command")}),
            "```",
            "",
        ]
    atomic_write_text(RESULTS / "cold_start.md", "\n".join(lines))
    print(f"wrote {RESULTS / 'cold_start.md'} ({len(results)} results)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    r = sub.add_parser("run", help="edgerec bench cold-start for each seed")
    r.add_argument("--work", required=True, help="Folder for runs, bundles and results.")
    r.add_argument("--dataset", default="synthetic")
    r.add_argument("--data-dir", default=None)
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    r.add_argument("--choice", default="recent", choices=("recent", "random"))
    r.add_argument("--fraction", type=float, default=0.10)
    r.add_argument("--epochs", type=int, default=None)
    r.add_argument("--time-budget", default=None)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("extra", nargs="*", help="More options for edgerec bench cold-start.")
    q = sub.add_parser("report", help="Write cold_start.md / .jsonl from the work folder.")
    q.add_argument("--work", required=True)
    args = p.parse_args()
    run(args) if args.what == "run" else report(args)


if __name__ == "__main__":
    main()
