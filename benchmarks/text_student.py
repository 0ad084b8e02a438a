"""The distilled text student against its teacher, per student variant, on one trained run.

Each variant is a ``DistillConfig`` (overrides of today's defaults) trained by
``edgerec.export.distill.distill_text_encoder`` on the run's catalog texts; the teacher
is the run's MiniLM + the item tower's text projection. Per variant and seed:

- whole model (test NDCG@10): the student's text vectors replace the teacher's in every
  item vector, the export report's worst case;
- cold items (valid + test events whose target is one of the texts the student never
  saw, ``text_holdout``): those items get text-only vectors, the teacher's or the
  student's, as an item added by its text gets -- in PyTorch (fp32) and through the
  exported int8 graph, one text per run as the runtime's ``add_items`` runs it;
- cosine to the teacher on held-out texts and on augmented ones;
- the int8 text encoder's size (exported and quantized as ``edgerec export`` does) and
  its texts/s (one text per run, 1 thread; median of 3 passes, the machine is shared).

Each (variant, seed) appends a line to results/text_student.jsonl; results/text_student.md
is rebuilt from all lines, with results/text_student_notes.md appended. Example:
  python benchmarks/text_student.py --run runs/ml100k-tuning/plateau-auto-seed0 \\
      --data-dir /work/shared/data --variants default mse-loss --seeds 0 1 2
``--sizes-only`` records the int8 size of untrained students (wider ones over budget).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from train_common import RESULTS, append_line, fmt, read_lines

from edgerec.io import atomic_write_text

RESULTS_FILE = RESULTS / "text_student.jsonl"
TABLE_FILE = RESULTS / "text_student.md"

# name -> (what it tries, DistillConfig overrides of today's defaults)
VARIANTS: dict[str, tuple[str, dict]] = {
    "default": ("today's defaults", {}),
    "mse-loss": ("MSE + cosine loss (the default before)", {"text_loss": "mse"}),
    "steps-1200": ("3x the steps", {"text_steps": 1200}),
    "layers-3": ("3 layers", {"text_layers": 3}),
    "layers-4": ("4 layers", {"text_layers": 4}),
    "hidden-224": ("hidden 224 (7 heads)", {"text_hidden": 224}),
    "hidden-256": ("hidden 256 (8 heads)", {"text_hidden": 256, "text_intermediate": 1024}),
}
# variants measured at commit 7414404, whose options were removed for buying nothing
REMOVED = (
    "recombined-4",
    "norm-loss",
    "projected-words",
    "frozen-words",
    "hidden",
    "vocabulary-4",
)


def _int8_student(student, tokenizer, max_length: int, texts: list[str], work: Path) -> dict:
    """Export + quantize as the bundle does; int8 vectors of all texts, one per run."""
    import onnxruntime as ort

    from edgerec.export.config import DEFAULT_OPSET, IR_VERSION
    from edgerec.export.onnx_text import export_text_encoder, tokenize
    from edgerec.export.quantize import quantize_int8

    fp32, int8 = work / "text_encoder.onnx", work / "text_encoder.int8.onnx"
    export_text_encoder(
        student, tokenizer, fp32, max_length=max_length, opset=DEFAULT_OPSET, ir_version=IR_VERSION
    )
    quantize_int8(fp32, int8, ir_version=IR_VERSION)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(int8), opts, providers=["CPUExecutionProvider"])
    feeds = [tokenize(tokenizer, [t], max_length) for t in texts]
    passes, vecs = [], None
    for _ in range(3):
        t0 = time.perf_counter()
        vecs = np.concatenate([sess.run(None, feed)[0] for feed in feeds])
        passes.append(len(texts) / (time.perf_counter() - t0))
    return {"int8_bytes": int8.stat().st_size, "int8_texts_per_s": float(np.median(passes))}, vecs


def run_variant(run, split, teacher, tokenizer, max_length, name: str, seed: int) -> dict:
    import torch

    from edgerec.export.config import DistillConfig
    from edgerec.export.distill import distill_text_encoder, text_holdout, text_student_quality

    overrides = VARIANTS[name][1]
    cfg = DistillConfig(**{**overrides, "seed": seed})
    texts = list(run.catalog["texts"])
    student, report = distill_text_encoder(
        teacher, tokenizer, texts, max_length=max_length, config=cfg, model=run.model, split=split
    )
    held, _ = text_holdout(len(texts), cfg)
    with tempfile.TemporaryDirectory() as tmp:
        int8_info, vecs = _int8_student(student, tokenizer, max_length, texts, Path(tmp))
    q8 = text_student_quality(run.model, split, vecs, held)
    with torch.no_grad():
        t_vecs = run.model.items.project_text(run.model.items.text_embeddings)[1:].numpy()
    report.update(int8_info)
    report["int8_cold_ndcg@10"] = q8.get("student_cold_ndcg@10")
    report["int8_test_ndcg@10"] = q8["student_test_ndcg@10"]
    cos = (vecs[held] * t_vecs[held]).sum(1) / (
        np.linalg.norm(vecs[held], axis=1) * np.linalg.norm(t_vecs[held], axis=1)
    )
    report["int8_heldout_mean_cosine"] = float(cos.mean())
    # how far the student's held-out vectors sit from the mean, against the teacher's:
    # below 1, a cold item scores lower than the teacher's text vector makes it score
    mean = t_vecs.mean(0)
    report["int8_heldout_spread_ratio"] = float(
        np.linalg.norm(vecs[held] - mean, axis=1).mean()
        / np.linalg.norm(t_vecs[held] - mean, axis=1).mean()
    )
    report["int8_warm_test_ndcg@10"] = q8.get("student_warm_test_ndcg@10")
    return {
        "variant": name,
        "what": VARIANTS[name][0],
        "seed": seed,
        "config": dataclasses.asdict(cfg),
        "report": report,
    }


def size_only(run, tokenizer, max_length: int, teacher, name: str) -> dict:
    """The int8 text encoder's size of a variant, from an untrained student (the size
    does not depend on training): for variants over the bundle budget."""
    from edgerec.export.config import DEFAULT_OPSET, IR_VERSION, DistillConfig
    from edgerec.export.distill import make_text_student
    from edgerec.export.onnx_text import export_text_encoder
    from edgerec.export.quantize import quantize_int8

    student = make_text_student(teacher, DistillConfig(**VARIANTS[name][1])).eval()
    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = Path(tmp) / "t.onnx", Path(tmp) / "t.int8.onnx"
        export_text_encoder(
            student,
            tokenizer,
            fp32,
            max_length=max_length,
            opset=DEFAULT_OPSET,
            ir_version=IR_VERSION,
        )
        quantize_int8(fp32, int8, ir_version=IR_VERSION)
        size = int8.stat().st_size
    params = int(sum(p.numel() for p in student.parameters()))
    return {
        "variant": name,
        "what": VARIANTS[name][0],
        "size_only": True,
        "parameters": params,
        "int8_bytes": size,
    }


def _gap(student: float | None, teacher: float | None) -> float | None:
    if student is None or not teacher:
        return None
    return student / teacher - 1.0


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.1f}%"


def render(records: list[dict]) -> str:
    lines = [r for r in records if not r.get("size_only")]
    sizes = {r["variant"]: r for r in records if r.get("size_only")}
    out = [
        "# The distilled text student against its teacher (MovieLens 100K)",
        "",
        "`python benchmarks/text_student.py` (see its docstring): one trained run as the",
        "teacher, one student per row and seed. *cold*: NDCG@10 over the valid + test",
        "events whose target is a text the student never saw (`text_holdout`, 10 % of",
        "items), those items holding text-only vectors (teacher: its projection of the",
        "MiniLM embedding; student: fp32 PyTorch, and the exported int8 graph run one",
        "text per run). *whole*: test NDCG@10 with the student's text part in every item",
        "vector. *warm*: the other test events, the cold items' text-only vectors in the",
        "catalog. *spread*: mean distance of the int8 student's held-out vectors from the",
        "teacher's mean vector, over the teacher's (below 1: cold items score lower). Gaps",
        "are student / teacher - 1 on the same events. Size: the int8 text",
        "encoder as `edgerec export` writes it. texts/s: int8, 1 thread, one text per",
        "run, median of 3 passes on the shared 2-core VM (noisy; compare within a run).",
        "",
        "| variant | what | teacher run | seed | steps | train texts | cos held-out | "
        "cos augmented | spread int8 | cold teacher | cold student | cold gap | cold int8 gap | "
        "warm gap | whole gap | int8 MB | texts/s | train s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in lines:
        rep = r["report"]
        tc = rep.get("teacher_cold_ndcg@10")
        out.append(
            "| "
            + " | ".join(
                [
                    r["variant"],
                    r["what"],
                    Path(r.get("run_dir") or "?").name,
                    str(r["seed"]),
                    str(rep["steps"]),
                    str(rep["train_texts"]),
                    fmt(rep["heldout_mean_cosine"], 3),
                    fmt(rep["heldout_augmented_mean_cosine"], 3),
                    fmt(rep.get("int8_heldout_spread_ratio"), 3),
                    fmt(tc),
                    fmt(rep.get("student_cold_ndcg@10")),
                    _pct(_gap(rep.get("student_cold_ndcg@10"), tc)),
                    _pct(_gap(rep.get("int8_cold_ndcg@10"), tc)),
                    _pct(
                        _gap(
                            rep.get("student_warm_test_ndcg@10"),
                            rep.get("teacher_warm_test_ndcg@10"),
                        )
                    ),
                    _pct(_gap(rep["student_test_ndcg@10"], rep["teacher_test_ndcg@10"])),
                    f"{rep['int8_bytes'] / 1e6:.2f}",
                    f"{rep['int8_texts_per_s']:.0f}",
                    f"{rep['seconds']:.0f}",
                ]
            )
            + " |"
        )
    out += [
        "",
        "`mse-loss` is the loss before this report (rows labelled `default` when run);",
        "`centered-loss` is today's default loss. It and "
        + ", ".join(f"`{v}`" for v in REMOVED)
        + " were run at commit 7414404, whose options for the latter were removed after:",
        "they bought no gain (notes below).",
    ]
    out += _summary(lines)
    if sizes:
        out += [
            "",
            "Sizes of untrained students (the size does not depend on training):",
            "",
            "| variant | what | parameters | int8 text encoder MB |",
            "|---|---|---|---|",
        ]
        out += [
            f"| {v} | {r['what']} | {r['parameters']:,} | {r['int8_bytes'] / 1e6:.2f} |"
            for v, r in sizes.items()
        ]
    notes = Path(__file__).parent / "results" / "text_student_notes.md"
    if notes.is_file():
        out += ["", notes.read_text().strip()]
    out += ["", "Made by:", "", "```bash"]
    seen = []
    for r in records:
        if r["command"] not in seen:
            seen.append(r["command"])
    out += seen + ["```", ""]
    return "\n".join(out)


def _summary(lines: list[dict]) -> list[str]:
    """Mean gaps per (variant, teacher run) over seeds."""
    groups: dict[tuple, list[dict]] = {}
    for r in lines:
        groups.setdefault((r["variant"], Path(r.get("run_dir") or "?").name), []).append(r)
    out = [
        "",
        "Means over seeds:",
        "",
        "| variant | teacher run | seeds | cold gap | cold int8 gap | whole gap | cos held-out |",
        "|---|---|---|---|---|---|---|",
    ]
    for (variant, run), rs in groups.items():
        reps = [r["report"] for r in rs]

        def mean(key_s, key_t, reps=reps):
            vals = [_gap(p.get(key_s), p.get(key_t)) for p in reps]
            vals = [v for v in vals if v is not None]
            return float(np.mean(vals)) if vals else None

        cos = float(np.mean([p["heldout_mean_cosine"] for p in reps]))
        out.append(
            f"| {variant} | {run} | {','.join(str(r['seed']) for r in rs)} | "
            f"{_pct(mean('student_cold_ndcg@10', 'teacher_cold_ndcg@10'))} | "
            f"{_pct(mean('int8_cold_ndcg@10', 'teacher_cold_ndcg@10'))} | "
            f"{_pct(mean('student_test_ndcg@10', 'teacher_test_ndcg@10'))} | {cos:.3f} |"
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", help="a trained run directory (the teacher)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--render-only", action="store_true", help="rebuild the table only")
    ap.add_argument("--sizes-only", action="store_true", help="int8 sizes, untrained")
    args = ap.parse_args()
    if not args.render_only and not args.run:
        ap.error("--run is required unless --render-only")
    if not args.render_only:
        import torch

        from edgerec.data import leave_one_out
        from edgerec.export.onnx_text import TextTower
        from edgerec.export.sources import load_run_dataset, run_text_encoder
        from edgerec.training.checkpoint import load_run
        from edgerec.training.text_encoder import load_encoder

        torch.set_num_threads(1)  # a shared 2-core machine: one thread loses least
        run = load_run(args.run)
        split = leave_one_out(load_run_dataset(run, args.data_dir))
        teacher_dir, max_length = run_text_encoder(run)
        tokenizer, bert = load_encoder(teacher_dir)
        teacher = TextTower(bert, run.model.items.text_proj).eval()
        command = "python benchmarks/text_student.py " + " ".join(sys.argv[1:])
        for name in args.variants if args.sizes_only else []:
            rec = size_only(run, tokenizer, max_length, teacher, name)
            append_line(RESULTS_FILE, {**rec, "command": command})
        for seed in [] if args.sizes_only else args.seeds:
            for name in args.variants:
                rec = run_variant(run, split, teacher, tokenizer, max_length, name, seed)
                rec["run_dir"] = args.run
                rec["command"] = command
                rec["finished_at"] = time.strftime("%Y-%m-%d %H:%M:%S")
                append_line(RESULTS_FILE, rec)
                atomic_write_text(TABLE_FILE, render(read_lines(RESULTS_FILE)))
                print(name, seed, {k: v for k, v in rec["report"].items()}, flush=True)
    atomic_write_text(TABLE_FILE, render(read_lines(RESULTS_FILE)))


if __name__ == "__main__":
    main()
