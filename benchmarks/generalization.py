"""Does the default transfer? Train it on data sets of other shapes than MovieLens 100K.

Worlds: the synthetic generator at several shapes (catalog size and tail, history
length, session strength; ``WORLDS`` below) and, with ``--movielens``, MovieLens 100K.
Each world is scored by the baselines (MostPop, ItemKNN, Markov) and by edgerec trained
with one configuration (the defaults unless ``--set``), per seed. Nothing here is tuned
per world: every world gets the same configuration, whose data-dependent settings come
from the rules in src/edgerec/training/scaling.py.

Each run appends a line to results/generalization.jsonl; results/generalization.md is
rebuilt from all lines.

Example (the committed report: no time budget, so every run stops on its validation
curve):
  python benchmarks/generalization.py --name default --seeds 0 --set train.num_threads=1 \\
      --worlds longtail-10k long-histories strong-sessions weak-sessions
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections import defaultdict
from pathlib import Path

from train_common import RESULTS, append_line, describe, fmt, parse_sets, read_lines, record_run

from edgerec.data.synthetic import SyntheticConfig

RESULTS_FILE = RESULTS / "generalization.jsonl"
TABLE_FILE = RESULTS / "generalization.md"
NOTES_FILE = RESULTS / "generalization_notes.md"  # hand-written observations, appended

# Synthetic worlds; each differs from the generator's default in the fields named.
WORLDS = {
    # 10k items in 40 categories with a steep tail: most items are seen a few times
    "longtail-10k": dict(
        n_items=10_000,
        n_users=1_500,
        n_categories=40,
        popularity_exponent=1.2,
        min_events=20,
        max_events=50,
    ),
    # 50k items, same tail and history lengths, twice the users: most items are never or
    # rarely seen in training (the catalog outgrows the interactions)
    "longtail-50k": dict(
        n_items=50_000,
        n_users=3_000,
        n_categories=40,
        popularity_exponent=1.2,
        min_events=20,
        max_events=50,
    ),
    # long histories: ~150 events a user, 2k items
    "long-histories": dict(n_items=2_000, n_users=250, min_events=120, max_events=180),
    "strong-sessions": dict(p_follow_intent=0.9, n_users=600),  # almost all intent
    "weak-sessions": dict(p_follow_intent=0.35, n_users=600),  # intent barely matters
    "synthetic-default": {},  # the demo's world: 600 items, 1200 users, 30-70 events
}


def world_dataset(name: str, data_dir: str | None, seed: int):
    if name == "movielens-100k":
        from edgerec.data import load_dataset

        return load_dataset("movielens-100k", data_dir), {
            "loader": "movielens-100k",
            "data_dir": data_dir,
        }
    from edgerec.data.synthetic import generate_synthetic

    cfg = SyntheticConfig(**{**WORLDS[name], "seed": seed})
    return generate_synthetic(cfg), {}


def baselines(ds) -> dict:
    from edgerec.data import leave_one_out
    from edgerec.evaluation import evaluate_both, make_baseline
    from edgerec.evaluation.baselines import BASELINES

    split = leave_one_out(ds)
    return {b: evaluate_both(make_baseline(b, split), split)["test"] for b in BASELINES}


def run_world(world, ds, source, name, overrides, seed, out_root: Path) -> dict:
    from train_common import build_configs

    from edgerec.training.trainer import train

    mcfg, tcfg = build_configs(overrides, seed)
    out = out_root / f"{world}-{name}-seed{seed}"
    resume = (out / "config.json").is_file()
    train(ds, out, mcfg, tcfg, progress=False, resume=resume, data_source=source)
    rec = record_run(out, name, overrides)
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    rec.update(
        world=world,
        world_config=WORLDS.get(world),
        data_shape=config["training"].get("data_shape"),
        stop_reason=metrics.get("stop_reason"),
        cooldown_trigger=metrics.get("cooldown_trigger"),
        steps_run=metrics.get("steps_run"),
        curve=metrics.get("curve"),
    )
    return rec


def stop(r: dict) -> str:
    """Why training ended; for a cool-down, what started it (plateau, epochs, time)."""
    trigger = r.get("cooldown_trigger")
    return (r.get("stop_reason") or "-") + (f" ({trigger})" if trigger else "")


def render(lines: list[dict]) -> str:
    out = [
        "# Generalization: one configuration on data sets of other shapes",
        "",
        "Leave-one-out, full ranking, seen items excluded (the MovieLens protocol). Test",
        "metrics; edgerec's end of training is chosen on validation NDCG@10 only. Shapes:",
        "users, items, training events, the median user's training history, the median",
        "item's training interactions, the share of items seen fewer than 5 times (each",
        "world's first recorded seed; other seeds are other draws of the same shape).",
        "",
        "| world | users | items | events | median history | median item count "
        "| items < 5 | max_len |",
        "|---|---|---|---|---|---|---|---|",
    ]
    seen = set()
    for r in lines:
        s = r.get("data_shape") or {}
        if r["world"] in seen or not s:
            continue
        seen.add(r["world"])
        out.append(
            f"| {r['world']} | {s['users']} | {s['items']} | {s['train_events']} "
            f"| {s['median_history']:.0f} | {s['median_item_count']:.0f} "
            f"| {s['items_under_5']:.0%} | {r['config']['model']['max_len']} |"
        )
    out += [
        "",
        "## Test NDCG@10 (HR@10)",
        "",
        "| world | config | seed | MostPop | ItemKNN | Markov | edgerec | valid NDCG@10 "
        "| best / run epochs | stop | train min |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in lines:
        b = r.get("baselines", {})

        def cell(m):
            return f"{fmt(m['ndcg@10'])} ({fmt(m['hr@10'], 3)})" if m else "-"

        out.append(
            f"| {r['world']} | {r['name']} | {r['seed']} | {cell(b.get('mostpop'))} "
            f"| {cell(b.get('itemknn'))} | {cell(b.get('markov'))} | **{cell(r['test'])}** "
            f"| {fmt(r['valid']['ndcg@10'])} | {r['best_epoch']}/{r['epochs_run']} "
            f"| {stop(r)} | {fmt(r['train_seconds'] / 60, 1)} |"
        )
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in lines:
        groups[(r["world"], r["name"])].append(r)
    out += [
        "",
        "## Means over seeds",
        "",
        "| world | config | seeds | test NDCG@10 | test HR@10 | best baseline (mean) NDCG@10 "
        "| best / run epochs per seed | mean train min | settings |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (world, name), rs in groups.items():
        n = len(rs)
        # each seed is a different draw of the world, so its baselines differ too
        names = set.intersection(*(set(r.get("baselines", {})) for r in rs))
        base = {b: {"ndcg@10": sum(r["baselines"][b]["ndcg@10"] for r in rs) / n} for b in names}
        best = max(base, key=lambda b: base[b]["ndcg@10"], default=None)
        best_cell = f"{fmt(base[best]['ndcg@10'])} ({best})" if best else "-"
        epochs = ", ".join(f"{r['best_epoch']}/{r['epochs_run']}" for r in rs)
        out.append(
            f"| {world} | {name} | {n} | {fmt(sum(r['test']['ndcg@10'] for r in rs) / n)} "
            f"| {fmt(sum(r['test']['hr@10'] for r in rs) / n)} | {best_cell} | {epochs} "
            f"| {fmt(sum(r['train_seconds'] for r in rs) / n / 60, 1)} | {describe(rs[0])} |"
        )
    commands = list(dict.fromkeys(r["command"] for r in lines if r.get("command")))
    if commands:
        out += ["", "Made by:", "", "```bash", *commands, "```"]
    notes = NOTES_FILE.read_text() if NOTES_FILE.is_file() else ""
    return "\n".join(out) + "\n" + ("\n" + notes if notes else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--name", default="default", help="label of the configuration")
    ap.add_argument("--worlds", nargs="+", default=["all"], help=f"all or {', '.join(WORLDS)}")
    ap.add_argument("--movielens", default=None, help="data dir: add MovieLens 100K as a world")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--set", dest="sets", action="append", default=[], help="model.X=V / train.X=V")
    ap.add_argument("--out-root", type=Path, default=Path("runs/generalization"))
    ap.add_argument("--render-only", action="store_true")
    args = ap.parse_args()

    if not args.render_only:
        worlds = list(WORLDS) if args.worlds == ["all"] else args.worlds
        if args.movielens:
            worlds.append("movielens-100k")
        overrides = parse_sets(args.sets)
        for world in worlds:
            for seed in args.seeds:
                ds, source = world_dataset(world, args.movielens, seed)
                t0 = time.perf_counter()
                base = baselines(ds)
                rec = run_world(world, ds, source, args.name, overrides, seed, args.out_root)
                rec["baselines"] = base
                rec["command"] = "python benchmarks/generalization.py " + shlex.join(sys.argv[1:])
                append_line(RESULTS_FILE, rec)
                print(
                    f"{world} {args.name} seed {seed}: test ndcg@10 {rec['test']['ndcg@10']:.4f} "
                    f"(markov {base['markov']['ndcg@10']:.4f}) best {rec['best_epoch']}/"
                    f"{rec['epochs_run']} {rec['stop_reason']} "
                    f"{(time.perf_counter() - t0) / 60:.1f} min",
                    flush=True,
                )
    TABLE_FILE.write_text(render(read_lines(RESULTS_FILE)))


if __name__ == "__main__":
    main()
