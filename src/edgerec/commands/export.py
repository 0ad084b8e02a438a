"""``edgerec export``: a trained run directory -> a verified bundle directory."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def _graph_size(manifest: dict, role: str, precision: str) -> int | None:
    """Bytes of ``role``'s graph at ``precision``: the shipped file, else the export's
    figure (a reference precision that was built but not shipped)."""
    name = manifest.get("graphs", {}).get(role, {}).get(precision)
    if name in manifest["files"]:
        return manifest["files"][name]["size"]
    info = manifest.get("export", {}).get(role, {})
    size = info.get(precision, {}).get("size") if isinstance(info.get(precision), dict) else None
    return size if size is not None or precision != "fp32" else info.get("size")


def _summary(manifest: dict, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True)  # lines in a log file are not cut at 80 columns
    quality = manifest.get("quality", {})
    files = manifest["files"]
    roles = [r for r in ("recommend", "user_encoder", "text_encoder") if r in manifest["graphs"]]
    table = Table(title=f"bundle {out}")
    for col in ("precision", *(r.replace("_", " ") for r in roles)):
        table.add_column(col, justify="left" if col == "precision" else "right")
    for col in ("HR@10", "NDCG@10", "drop vs fp32"):
        table.add_column(col, justify="right")
    for p in ("fp32", "int8", "fp16"):
        if p not in manifest["precisions"] and p not in quality:
            continue
        q = quality.get(p, {})
        drop = q.get("ndcg@10_drop_vs_fp32")
        sizes = [_graph_size(manifest, role, p) for role in roles]
        note = " (default)" if p == manifest["default_precision"] else ""
        if p not in manifest["precisions"]:
            note = " (reference, not shipped)"
        table.add_row(
            p + note,
            *("-" if size is None else f"{size / 1e6:.2f} MB" for size in sizes),
            f"{q['hr@10']:.4f}" if q else "-",
            f"{q['ndcg@10']:.4f}" if q else "-",
            "-" if drop is None else f"{drop:+.2%}",
        )
    console.print(table)
    user, text = manifest["parity"]["user_encoder"], manifest["parity"]["text_encoder"]
    console.print(
        f"parity: user max abs {user['max_abs_user']:.1e}, top-10 identical "
        f"{user['top10_identical']:.2%} ({user['users']} users); text max abs "
        f"{text['max_abs_item_vector']:.1e} ({text['texts']} texts)"
    )
    if manifest.get("quantization_target"):
        console.print(f"int8 text encoder quantized for {manifest['quantization_target']}")
    for role, d in (manifest.get("distillation") or {}).items():
        console.print(
            f"distilled {role}: {d['student_parameters']:,} parameters "
            f"(teacher {d['teacher_parameters']:,}), test NDCG@10 "
            f"{d.get('student_test_ndcg@10', float('nan')):.4f} "
            f"(teacher {d.get('teacher_test_ndcg@10', float('nan')):.4f})"
        )
        if "chosen" in d:  # the user encoder: which model kept the validation bound
            console.print(
                f"  shipped: the {d['chosen']}, validation NDCG@10 retention "
                f"{d['retention']:.1%} (bound {d['min_retention']:.0%})"
            )
    total = sum(f["size"] for f in files.values())
    console.print(f"{len(files) + 1} files, {total / 1e6:.1f} MB, written to {out}")


def export(
    run_dir: Path = typer.Argument(..., help="A finished training run directory."),
    out: Path = typer.Option(..., "--out", "-o", help="Bundle directory to write (replaced)."),
    distill: bool = typer.Option(
        False, "--distill/--no-distill", help="Distil smaller text and user encoders first."
    ),
    precision: list[str] = typer.Option(
        ["fp32,int8"],
        "--precision",
        "-p",
        help="Graphs to ship: fp32, int8 (CPU), fp16 (GPU); repeat or comma-separate. fp32 is always built for the parity gate.",
    ),
    opset: int = typer.Option(18, help="ONNX opset (17-21); IR version 9 up to opset 20."),
    tolerance: float = typer.Option(
        1e-4, help="Parity gate: max abs difference between PyTorch and fp32 ONNX outputs."
    ),
    data_dir: Path = typer.Option(
        None, "--data-dir", help="Where the run's data set is now, if it moved."
    ),
    item_dtype: str = typer.Option(
        "float32", help="Item matrix storage: float32, float16 or int8 (per-row scales)."
    ),
    target: str = typer.Option(
        "avx512_vnni",
        "--target",
        help="CPU the int8 text encoder is quantized for: avx2, avx512, avx512_vnni or arm64 (recorded in the manifest; the runtime warns on another architecture).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """Export a trained run to an ONNX bundle, verified against PyTorch before it is kept.

    The bundle is built in a temporary directory next to OUT and renamed into place only
    when the parity gate passed and every file checks out; a failed or killed export
    leaves an existing bundle at OUT untouched.

    Examples:
      edgerec export runs/ml100k --out bundles/ml100k
      edgerec export runs/ml100k --out bundles/ml100k-small --distill --precision int8
      edgerec export runs/ml100k --out bundles/ml100k-gpu --precision fp32,fp16
      edgerec export runs/ml100k --out bundles/ml100k-arm --target arm64
    """
    from edgerec.commands.progress import Progress
    from edgerec.export import export_bundle
    from edgerec.export.config import ExportConfig

    # bad options fail here, before any model is loaded
    target = ExportConfig(
        precisions=precision, opset=opset, tolerance=tolerance, item_dtype=item_dtype, target=target
    ).target
    with Progress(transient=as_json) as bar:
        progress = bar.callback("export")
        manifest = export_bundle(
            run_dir,
            out,
            precisions=precision,
            distill=distill,
            opset=opset,
            tolerance=tolerance,
            progress=progress,
            data_dir=data_dir,
            item_dtype=item_dtype,
            target=target,
        )
    if as_json:
        typer.echo(json.dumps(manifest, indent=2))
    else:
        _summary(manifest, out)


def register(app: typer.Typer) -> None:
    app.command("export")(export)
