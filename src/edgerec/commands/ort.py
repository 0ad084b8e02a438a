"""``edgerec convert-ort BUNDLE``: the bundle's graphs also in ONNX Runtime's ORT format.

ORT-format graphs load in onnxruntime's reduced ("minimal") builds for phones and small
devices, and in onnxruntime-web / -node. The conversion is onnxruntime's own tool
(``python -m onnxruntime.tools.convert_onnx_models_to_ort``); it also writes the
required-operators configuration a reduced build is made with
(``build.sh --minimal_build --include_ops_by_config required_operators.config``).

The bundle gains ``<graph>.ort`` beside each ``<graph>.onnx`` of ``graphs`` (every role
and precision), ``required_operators.config``, and two manifest keys:
``"ort_graphs": {"recommend.onnx": "recommend.ort", ...}`` and
``"ort_required_operators": "required_operators.config"``; every new file is listed in
``files`` with its sha256. The whole bundle is rewritten atomically (a temporary copy,
verified by the Python runtime, then swapped in).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import typer

OPS_CONFIG = "required_operators.config"


def convert(bundle: Path, style: str = "Fixed", roles: tuple[str, ...] | None = None) -> dict:
    """Add ORT-format graphs to ``bundle`` (in place, atomically); returns the manifest."""
    from edgerec.export.bundle import MANIFEST, verify_bundle, write_manifest
    from edgerec.io import atomic_directory
    from edgerec.runtime.bundle import read_manifest

    bundle = Path(bundle)
    manifest = json.loads((bundle / MANIFEST).read_text())
    read_manifest(bundle)  # a bundle this edgerec reads, or a BundleError naming why
    onnx_files = sorted(
        {
            f
            for role, v in manifest["graphs"].items()
            if roles is None or role in roles
            for f in v.values()
        }
    )
    with tempfile.TemporaryDirectory(prefix="edgerec-ort-") as work:
        work = Path(work)
        (work / "in").mkdir()
        for name in onnx_files:
            shutil.copy(bundle / name, work / "in" / name)
        cmd = [
            sys.executable,
            "-m",
            "onnxruntime.tools.convert_onnx_models_to_ort",
            str(work / "in"),
        ]
        cmd += ["--output_dir", str(work / "out"), "--optimization_style", style]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"convert_onnx_models_to_ort failed:\n{proc.stderr[-3000:]}")
        suffix = ".ort" if style == "Fixed" else ".with_runtime_opt.ort"
        config = ".config" if style == "Fixed" else ".with_runtime_opt.config"
        ort_graphs = {}
        for name in onnx_files:
            produced = work / "out" / (Path(name).stem + suffix)
            if not produced.is_file():
                raise RuntimeError(f"convert_onnx_models_to_ort wrote no {produced.name}")
            ort_graphs[name] = Path(name).stem + ".ort"
        ops = work / "out" / ("required_operators" + config)
        with atomic_directory(bundle) as tmp:
            for f in bundle.iterdir():
                if f.is_file():
                    shutil.copy2(f, tmp / f.name)
            for name, ort in ort_graphs.items():
                shutil.copy(work / "out" / (Path(name).stem + suffix), tmp / ort)
            shutil.copy(ops, tmp / OPS_CONFIG)
            manifest["ort_graphs"] = ort_graphs
            manifest["ort_required_operators"] = OPS_CONFIG
            manifest["ort_optimization_style"] = style
            manifest = write_manifest(tmp, manifest)
            verify_bundle(tmp)  # the Python runtime still reads it, every checksum included
    return manifest


def convert_ort(
    bundle: Path = typer.Argument(..., help="Bundle directory (from `edgerec export`)."),
    style: str = typer.Option(
        "Fixed", help="Fixed (optimizations baked in) or Runtime (onnxruntime's styles)."
    ),
) -> None:
    """Add ORT-format graphs (mobile / reduced builds) and their operator config."""
    if style not in ("Fixed", "Runtime"):
        raise typer.BadParameter("style must be Fixed or Runtime")
    manifest = convert(bundle, style)
    for onnx, ort in manifest["ort_graphs"].items():
        typer.echo(f"{onnx} -> {ort} ({manifest['files'][ort]['size']} bytes)")
    typer.echo(f"operators for a reduced build: {bundle / OPS_CONFIG}")


def register(app: typer.Typer) -> None:
    app.command("convert-ort")(convert_ort)
