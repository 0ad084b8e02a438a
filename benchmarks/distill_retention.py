"""How much of the teacher's quality the distilled user encoder keeps, per seed.

Calls ``edgerec.export.distill.distill_user_encoder`` directly on trained runs (no ONNX
export): the teacher and the encoder it returns (student, larger student or the teacher
itself, chosen on validation NDCG@10) are both scored in PyTorch on the same item table,
so the retention is the distillation's alone. ``--text`` also distils the text encoder
and reports its worst case (every item's text part from the student).

Each run appends a line to results/ml100k_distill.jsonl; results/ml100k_distill.md is
rebuilt from all lines.

Example (the committed report, on the runs of train_movielens.py):
  python benchmarks/distill_retention.py --data-dir /work/shared/data \\
      runs/ml100k-tuning/plateau-auto-seed0 runs/ml100k-tuning/plateau-auto-seed1 ...
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from train_common import RESULTS, append_line, fmt, read_lines

RESULTS_FILE = RESULTS / "ml100k_distill.jsonl"
TABLE_FILE = RESULTS / "ml100k_distill.md"


def distil_run(run_dir: Path, data_dir: str, text: bool) -> dict:
    import torch

    from edgerec.data import leave_one_out, load_dataset
    from edgerec.export.config import DistillConfig
    from edgerec.export.distill import distill_user_encoder
    from edgerec.training.checkpoint import load_run

    torch.set_num_threads(1)  # a shared 2-core machine: one thread loses least
    run = load_run(run_dir)
    seed = int(run.train_config.seed)
    ds = load_dataset("movielens-100k", data_dir)
    split = leave_one_out(ds)
    cfg = DistillConfig(seed=seed)
    t0 = time.perf_counter()
    _, user = distill_user_encoder(run.model, split, config=cfg)
    rec = {
        "run_dir": str(run_dir),
        "seed": seed,
        "user_encoder": user,
        "user_seconds": round(time.perf_counter() - t0, 1),
    }
    if text:
        from edgerec.export.distill import distill_text_encoder
        from edgerec.export.onnx_text import TextTower
        from edgerec.export.sources import run_text_encoder
        from edgerec.training.text_encoder import load_encoder

        teacher_dir, max_length = run_text_encoder(run)
        tokenizer, bert = load_encoder(teacher_dir)
        tower = TextTower(bert, run.model.items.text_proj).eval()
        _, rec["text_encoder"] = distill_text_encoder(
            tower,
            tokenizer,
            list(run.catalog["texts"]),
            max_length=max_length,
            config=cfg,
            model=run.model,
            split=split,
        )
    rec["command"] = "python benchmarks/distill_retention.py " + " ".join(sys.argv[1:])
    rec["finished_at"] = time.strftime("%Y-%m-%d %H:%M:%S")
    return rec


def render(lines: list[dict]) -> str:
    out = [
        "# MovieLens 100K: distilled user encoder vs its teacher",
        "",
        "`distill_user_encoder` on each trained run (PyTorch, same item table; no ONNX).",
        "The encoder it returns must keep >= 97 % of the teacher's **validation** NDCG@10;",
        "the student (hidden = 0.5 x the teacher's) is tried first, then a wider one",
        "(0.75 x), then the teacher is kept. Retention = returned / teacher.",
        "",
        "| run | seed | chosen | hidden | teacher valid | returned valid | valid retention "
        "| teacher test NDCG@10 | returned test NDCG@10 | test retention | students tried "
        "(hidden: valid retention) | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in lines:
        u = r["user_encoder"]
        tried = ", ".join(f"{c['hidden']}: {c['retention']:.3f}" for c in u["candidates"])
        out.append(
            f"| {Path(r['run_dir']).name} | {r['seed']} | {u['chosen']} | {u['hidden']} "
            f"| {fmt(u['teacher_valid_ndcg@10'])} | {fmt(u['student_valid_ndcg@10'])} "
            f"| {u['retention']:.1%} | {fmt(u['teacher_test_ndcg@10'])} "
            f"| {fmt(u['student_test_ndcg@10'])} | {u['test_retention']:.1%} | {tried} "
            f"| {r['user_seconds']} |"
        )
    texts = [r for r in lines if r.get("text_encoder")]
    if texts:
        out += [
            "",
            "Text student, worst case (every item's text part from the student, ID "
            "embeddings kept; the bundle's catalog vectors come from the teacher, the text "
            "student serves cold-start items):",
            "",
            "| run | teacher test NDCG@10 | student-text test NDCG@10 | retention "
            "| held-out mean cosine |",
            "|---|---|---|---|---|",
        ]
        for r in texts:
            t = r["text_encoder"]
            out.append(
                f"| {Path(r['run_dir']).name} | {fmt(t['teacher_test_ndcg@10'])} "
                f"| {fmt(t['student_test_ndcg@10'])} "
                f"| {t['student_test_ndcg@10'] / t['teacher_test_ndcg@10']:.1%} "
                f"| {t['heldout_mean_cosine']:.3f} |"
            )
    commands = list(dict.fromkeys(r["command"] for r in lines if r.get("command")))
    if commands:
        out += ["", "Made by:", "", "```bash", *commands, "```"]
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("runs", nargs="*", type=Path, help="trained MovieLens 100K run directories")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--text", action="store_true", help="also distil the text encoder")
    ap.add_argument("--render-only", action="store_true")
    args = ap.parse_args()
    if not args.render_only:
        for run_dir in args.runs:
            rec = distil_run(run_dir, args.data_dir, args.text)
            append_line(RESULTS_FILE, rec)
            u = rec["user_encoder"]
            print(
                f"{run_dir}: {u['chosen']} (hidden {u['hidden']}) valid retention "
                f"{u['retention']:.3f} test {u['student_test_ndcg@10']:.4f} / "
                f"{u['teacher_test_ndcg@10']:.4f} = {u['test_retention']:.3f}",
                flush=True,
            )
            print(json.dumps(u["candidates"]), flush=True)
    TABLE_FILE.write_text(render(read_lines(RESULTS_FILE)))


if __name__ == "__main__":
    main()
