"""Train edgerec on MovieLens 100K under the protocol; record every configuration tried.

Each run appends to results/ml100k_tuning.jsonl; results/ml100k_tuning.md is rebuilt
from all of them (one row per configuration and seed, then per-configuration means).
Defaults are chosen on validation NDCG@10; the test column is reported, never tuned on.

Examples:
  python benchmarks/train_movielens.py --data-dir /work/shared/data --name default --seeds 0 1 2
  python benchmarks/train_movielens.py --data-dir /work/shared/data --name drop0.3 \\
      --set model.dropout=0.3 --seeds 0
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from train_common import (
    RESULTS,
    append_line,
    describe,
    fmt,
    parse_sets,
    read_lines,
    record_run,
    run_one,
)

RESULTS_FILE = RESULTS / "ml100k_tuning.jsonl"
TABLE_FILE = RESULTS / "ml100k_tuning.md"
NOTES_FILE = RESULTS / "ml100k_tuning_notes.md"  # hand-written observations, appended

HEADER = """# MovieLens 100K: configurations tried

Protocol: leave-one-out (last event test, second-to-last valid), full ranking over all
1682 items, seen items excluded. Defaults are picked on **valid** NDCG@10. Times are wall
minutes inside `train()` (split, samples, every epoch with its validation; parsing the
files and the final test evaluation excluded; the text-embedding cache already filled,
a cold one adds a one-off MiniLM pass over the item texts) on a 2-core
AMD EPYC machine, and process CPU minutes (all threads). The `default` rows ran on an
otherwise idle machine with both cores (torch threads = 2); the earlier rows shared the
machine with other jobs (load average 6-12), so their wall times are pessimistic.

Peers under the same protocol (test): MostPop NDCG@10 0.0441, ItemKNN 0.0545-0.0619,
Markov 0.0768, SASRec 0.1035 (HR@10 0.1845).
"""


def cpu_minutes(r: dict) -> str:
    cpu = r.get("train_cpu_seconds")
    return fmt(cpu / 60, 1) if cpu else "-"  # runs before CPU time was recorded


def render(lines: list[dict]) -> str:
    rows = [
        "| config | seed | best epoch | valid NDCG@10 | valid HR@10 | test NDCG@10 | test HR@10 "
        "| train min (wall) | train min (CPU) | settings |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in lines:
        groups[r["name"]].append(r)
        rows.append(
            f"| {r['name']} | {r['seed']} | {r['best_epoch']}/{r['epochs_run']} "
            f"| {fmt(r['valid']['ndcg@10'])} | {fmt(r['valid']['hr@10'])} "
            f"| {fmt(r['test']['ndcg@10'])} | {fmt(r['test']['hr@10'])} "
            f"| {fmt(r['train_seconds'] / 60, 1)} "
            f"| {cpu_minutes(r)} | {describe(r)} |"
        )
    means = [
        "| config | seeds | mean valid NDCG@10 | mean test NDCG@10 | mean test HR@10 "
        "| mean train min (wall) |",
        "|---|---|---|---|---|---|",
    ]
    for name, rs in groups.items():
        n = len(rs)
        means.append(
            f"| {name} | {n} | {fmt(sum(r['valid']['ndcg@10'] for r in rs) / n)} "
            f"| {fmt(sum(r['test']['ndcg@10'] for r in rs) / n)} "
            f"| {fmt(sum(r['test']['hr@10'] for r in rs) / n)} "
            f"| {fmt(sum(r['train_seconds'] for r in rs) / n / 60, 1)} |"
        )
    notes = NOTES_FILE.read_text() if NOTES_FILE.is_file() else ""
    return (
        HEADER
        + "\n## Per run\n\n"
        + "\n".join(rows)
        + "\n\n## Means per configuration\n\n"
        + "\n".join(means)
        + "\n"
        + ("\n" + notes if notes else "")
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data-dir", required=True, help="folder holding movielens/ml-100k")
    ap.add_argument("--name", required=True, help="label of this configuration in the table")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--set", dest="sets", action="append", default=[], help="model.X=V / train.X=V")
    ap.add_argument("--out-root", type=Path, default=Path("runs/ml100k-tuning"))
    ap.add_argument("--render-only", action="store_true", help="only rebuild the table")
    ap.add_argument(
        "--import-run", type=Path, default=None, help="record a finished run dir under --name"
    )
    args = ap.parse_args()

    if args.import_run is not None:
        append_line(RESULTS_FILE, record_run(args.import_run, args.name))
    elif not args.render_only:
        from edgerec.data import load_dataset

        ds = load_dataset("movielens-100k", args.data_dir)
        source = {"loader": "movielens-100k", "data_dir": args.data_dir}
        overrides = parse_sets(args.sets)
        for seed in args.seeds:
            rec = run_one(ds, args.name, overrides, seed, args.out_root, source)
            append_line(RESULTS_FILE, rec)
            print(
                f"{args.name} seed {seed}: valid ndcg@10 {rec['valid']['ndcg@10']:.4f} "
                f"test ndcg@10 {rec['test']['ndcg@10']:.4f} hr@10 {rec['test']['hr@10']:.4f} "
                f"({rec['train_seconds'] / 60:.1f} min)",
                flush=True,
            )
    TABLE_FILE.parent.mkdir(parents=True, exist_ok=True)
    TABLE_FILE.write_text(render(read_lines(RESULTS_FILE)))


if __name__ == "__main__":
    main()
