"""Ablation table: the full model against each component dropped (--ablate X).

Runs the default configuration and one run per ablation (long, short, text, id, aux),
each with the same seeds, and writes results/ablations_<dataset>.md (plus a .jsonl of
every run). On the synthetic data set it also reports the fused model's gate grouped by
the generator's ground truth (see edgerec.training.diagnostics).

Examples:
  python benchmarks/ablations.py --dataset movielens-100k --data-dir /work/shared/data --seeds 0
  python benchmarks/ablations.py --dataset synthetic --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from train_common import RESULTS, append_line, fmt, parse_sets, read_lines, run_one

VARIANTS = {
    "full": (),
    "no long-term": ("long",),
    "no short-term": ("short",),
    "no text": ("text",),
    "no item id": ("id",),
    "no aux tasks": ("aux",),
}


def render(dataset: str, lines: list[dict]) -> str:
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in lines:
        groups[r["name"]].append(r)
    out = [
        f"# Ablations on {dataset}\n",
        "Same configuration and seeds for every row; only the named component is dropped.",
        "Mean over seeds (n = seeds); times are wall minutes on a 2-core machine shared with",
        "other jobs (they vary with the load, not with the variant). Rows 'full, X' are the",
        "full model with the named options: `window` = short_term=window; `disjoint` =",
        "window + long_term=before_window; `request_time` = the gate reads the time from",
        "the last event to the request; `scalar` = gate=scalar; `horizon_dropout=0.2` = 20 %",
        "of training samples fused from one horizon alone; `last-gap gate` = an earlier",
        "option (gate_context) that read the gap before the last event, replaced by",
        "request_time. Rows named `full` and the ablations were run with the defaults of",
        "their time: up to 2026-11-28's fourth session a per-dimension gate without",
        "request_time or horizon dropout; the default is now",
        "`full, request_time+scalar+horizon_dropout=0.2`. The long- and short-term",
        "ablations pin the gate, so those options play no part in them. Which horizon",
        "drives the fused vector, per group of requests: `gate_synthetic.md`.\n",
        "| variant | n | valid NDCG@10 | valid HR@10 | test NDCG@10 | test HR@10 | train min |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in list(VARIANTS) + [k for k in groups if k not in VARIANTS]:
        rs = groups.get(name)
        if not rs:
            continue
        n = len(rs)

        def mean(stage: str, key: str, rs=rs, n=n) -> float:
            return sum(r[stage][key] for r in rs) / n

        out.append(
            f"| {name} | {n} | {fmt(mean('valid', 'ndcg@10'))} | {fmt(mean('valid', 'hr@10'))} "
            f"| {fmt(mean('test', 'ndcg@10'))} | {fmt(mean('test', 'hr@10'))} "
            f"| {fmt(sum(r['train_seconds'] for r in rs) / n / 60, 1)} |"
        )
    gates = [r for r in lines if r.get("gate")]
    if gates:
        out += [
            "\n## Gate of the full model against the generator's ground truth\n",
            "Mean gate (weight of the long-term vector) over the valid and test histories,",
            "grouped by the session position of the history's last event (`session_start`:",
            "it opens a session; `strong_session`: position >= 4 with >= 3 of the last 4",
            "events in the session's intent category) or of the target event.\n",
            "| variant | seed | session_start | strong_session | next_starts_session "
            "| next_deep_in_session | strong_session_continues | all |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in gates:
            g = r["gate"]
            cells = " | ".join(
                f"{g[k]['mean_gate']:.3f} (n={g[k]['n']})" if k in g else "-"
                for k in (
                    "session_start",
                    "strong_session",
                    "next_starts_session",
                    "next_deep_in_session",
                    "strong_session_continues",
                    "all",
                )
            )
            out.append(f"| {r['name']} | {r['seed']} | {cells} |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dataset", default="movielens-100k")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--only", nargs="*", default=None, help="run only these variants")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="model.X=V / train.X=V")
    ap.add_argument("--label", default=None, help="row name suffix, e.g. 'short_term=window'")
    ap.add_argument("--out-root", type=Path, default=Path("runs/ablations"))
    ap.add_argument("--render-only", action="store_true")
    args = ap.parse_args()

    slug = args.dataset.replace("/", "_")
    jsonl = RESULTS / f"ablations_{slug}.jsonl"
    table = RESULTS / f"ablations_{slug}.md"
    if not args.render_only:
        from edgerec.data import leave_one_out, load_dataset
        from edgerec.training.checkpoint import load_run
        from edgerec.training.diagnostics import gate_by_session_position

        ds = load_dataset(args.dataset, args.data_dir)
        source = {"loader": args.dataset, "data_dir": args.data_dir}
        base = parse_sets(args.sets)
        names = args.only or list(VARIANTS)
        for name in names:
            overrides = json.loads(json.dumps(base))
            ablate = VARIANTS[name]
            if ablate:
                overrides["model"]["ablate"] = list(ablate)
            for seed in args.seeds:
                slug_name = name.replace(" ", "-")
                rec = run_one(ds, slug_name, overrides, seed, args.out_root / slug, source)
                rec["name"] = f"{name}, {args.label}" if args.label else name
                if ds.ground_truth is not None and not ablate:
                    run = load_run(rec["run_dir"])
                    rec["gate"] = gate_by_session_position(
                        run.model, ds, leave_one_out(ds), run.model_config.max_len
                    )
                append_line(jsonl, rec)
                print(
                    f"{name} seed {seed}: valid {rec['valid']['ndcg@10']:.4f} "
                    f"test {rec['test']['ndcg@10']:.4f}",
                    flush=True,
                )
    table.parent.mkdir(parents=True, exist_ok=True)
    table.write_text(render(args.dataset, read_lines(jsonl)))


if __name__ == "__main__":
    main()
