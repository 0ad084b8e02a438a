"""``edgerec recommend``, ``edgerec inspect`` and ``edgerec info``: the runtime's commands.

They import only the runtime (numpy, onnxruntime, tokenizers) and rich, so they work in
an install without torch.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from pathlib import Path

import typer


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def _numbers(value: str | None, name: str) -> list[float] | None:
    parts = _split(value)
    if parts is None:
        return None
    out = []
    for p in parts:
        try:
            out.append(float(p))
        except ValueError:
            raise ValueError(f"{name}: {p!r} is not a number") from None
    return out


def recommend(
    bundle: Path = typer.Argument(..., help="Bundle directory (from `edgerec export`)."),
    history: str = typer.Option(
        ..., "--history", "-H", help="Comma-separated item ids, oldest first ('' for none)."
    ),
    k: int = typer.Option(10, "--k", "-k", help="How many items to return."),
    behaviours: str = typer.Option(
        None, help="Comma-separated behaviour per event (e.g. ratings 4,5,3)."
    ),
    timestamps: str = typer.Option(None, help="Comma-separated event times in seconds."),
    now: float = typer.Option(
        None, help="Request time in seconds (bundles trained with --request-time read it)."
    ),
    exclude: str = typer.Option(None, help="Comma-separated ids never to return."),
    candidates: str = typer.Option(None, help="Comma-separated ids to rank (only these)."),
    keep_seen: bool = typer.Option(False, "--keep-seen", help="Allow items of the history."),
    strict: bool = typer.Option(False, help="Fail on unknown ids instead of skipping them."),
    providers: str = typer.Option("auto", help="auto, cpu or cuda."),
    threads: int = typer.Option(None, help="onnxruntime intra-op threads (default: all)."),
    precision: str = typer.Option(None, help="fp32, int8 or fp16 (default: the bundle's)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Recommend the next items for one history.

    Examples:
      edgerec recommend bundle/ --history 50,172,133
      edgerec recommend bundle/ --history 50,172,133 --behaviours 5,4,4 --k 5 --json
      edgerec recommend bundle/ --history ""          (no history: most popular items)
    """
    from edgerec.runtime import Recommender

    if k <= 0:
        raise ValueError(f"--k must be a positive integer, got {k}")
    rec = Recommender.load(bundle, providers=providers, threads=threads, precision=precision)
    hist = _split(history) or []
    ts = _numbers(timestamps, "--timestamps")
    result = rec.recommend(
        hist,
        k=k,
        exclude_seen=not keep_seen,
        behaviours=_split(behaviours),
        timestamps=ts,
        candidates=_split(candidates),
        exclude=_split(exclude),
        strict=strict,
        now=now,
    )
    if as_json:
        out = result.to_dict()
        out["bundle"] = str(bundle)
        out["providers"] = list(rec.providers)
        out["precision"] = rec.precision
        typer.echo(json.dumps(out, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"top {len(result)} for a history of {result.n_events} events")
    table.add_column("#", justify="right")
    table.add_column("item")
    table.add_column("title")
    table.add_column("popularity" if result.fallback else "score", justify="right")
    for i, r in enumerate(result, 1):
        score = f"{r.score:,.0f} events" if result.fallback else f"{r.score:.4f}"
        table.add_row(str(i), str(r.item_id), r.title or "", score)
    console.print(table)
    if result.fallback:
        console.print(
            "popularity fallback: no known item in the history; the column counts "
            "each item's training events"
        )
    else:
        side = "long-term" if result.gate >= 0.5 else "short-term"
        console.print(f"gate {result.gate:.3f}: {side} interests lead")
    if result.unknown_items:
        shown = ", ".join(str(x) for x in result.unknown_items[:10])
        console.print(f"ignored {result.n_unknown} unknown item id(s): {shown}")
    if result.unknown_behaviours:
        shown = ", ".join(str(x) for x in dict.fromkeys(result.unknown_behaviours))
        console.print(
            f"behaviour(s) {shown} are not in the bundle's vocabulary "
            f"({', '.join(rec.manifest.behaviour_vocab)}): read as "
            f"{rec.manifest.behaviour_vocab[0]!r}"
        )
    console.print(f"[dim]{rec.precision} on {rec.providers[0]}[/dim]")


def _figures(raw: dict) -> list[tuple[str, str]]:
    """The export's headline figures, one line each (the full ones are in --json)."""
    rows = []
    parity = raw.get("parity") or {}
    user = parity.get("user_encoder") or {}
    if user:
        rows.append(
            (
                "parity",
                f"max |user - PyTorch| {user.get('max_abs_user', float('nan')):.2g}, identical "
                f"top-10 {user.get('top10_identical', float('nan')):.1%} of {user.get('users')} users",
            )
        )
    quality = raw.get("quality") or {}
    for precision in ("fp32", "int8", "fp16"):
        q = quality.get(precision)
        if isinstance(q, dict) and "ndcg@10" in q:
            rows.append(
                (f"test {precision}", f"NDCG@10 {q['ndcg@10']:.4f}, HR@10 {q['hr@10']:.4f}")
            )
    for role, d in (raw.get("distillation") or {}).items():
        if isinstance(d, dict) and "student_test_ndcg@10" in d:
            rows.append(
                (
                    f"distilled {role}",
                    f"NDCG@10 {d['student_test_ndcg@10']:.4f} (teacher {d['teacher_test_ndcg@10']:.4f})",
                )
            )
    source = raw.get("source") or {}
    if source:
        rows.append(("source", f"{source.get('dataset')} from {source.get('run')}"))
    return rows


def inspect(
    bundle: Path = typer.Argument(..., help="Bundle directory.", metavar="BUNDLE"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a bundle and verify it fully, as Recommender.load does, for every precision:
    each file's size and sha256, the arrays' shapes and dtypes, and every graph loaded by
    onnxruntime with its interface checked.

    Exits with status 2 and the loader's message if anything fails.

    Example: edgerec inspect bundle/
    """
    from edgerec.errors import BundleError
    from edgerec.runtime.bundle import check_files, read_manifest, verify_all

    manifest = read_manifest(bundle)
    checks = check_files(bundle, manifest)
    try:
        verify_all(bundle)
        problem = None
    except BundleError as e:
        problem = str(e)
    if as_json:
        out = {
            "manifest": dict(manifest.raw),
            "files": [
                {"name": c.name, "size": c.size, "ok": c.ok, "problem": c.problem} for c in checks
            ],
            "verified": problem is None,
            "problem": problem,
        }
        typer.echo(json.dumps(out, indent=2, default=str))
    else:
        from rich.console import Console
        from rich.table import Table

        console = Console()
        table = Table(title=f"bundle {bundle}", show_header=False)
        table.add_column("key", style="bold")
        table.add_column("value")
        d = manifest.dims
        rows = [
            ("format", f"{manifest.raw.get('format')} v{manifest.format_version}"),
            ("edgerec", manifest.edgerec_version),
            ("dims", f"dim {d.dim}, {d.n_items} items, max history {d.max_len}, window {d.window}"),
            ("behaviours", ", ".join(manifest.behaviour_vocab)),
            (
                "precisions",
                f"{', '.join(manifest.precisions)} (default {manifest.default_precision})",
            ),
            ("item matrix", f"{manifest.item_matrix['file']} ({manifest.item_matrix['dtype']})"),
        ]
        for role, variants in manifest.graphs.items():
            rows.append((role, ", ".join(f"{p}: {f}" for p, f in variants.items())))
        rows.append(("scorers", ", ".join(manifest.scorers.values())))
        for key, value in rows + _figures(dict(manifest.raw)):
            table.add_row(key, str(value))
        console.print(table)
        files = Table(title="files")
        files.add_column("file")
        files.add_column("bytes", justify="right")
        files.add_column("sha256")
        files.add_column("check")
        for c in checks:
            sha = manifest.files[c.name].sha256[:16]
            status = "[green]ok[/green]" if c.ok else f"[red]{c.problem}[/red]"
            files.add_row(c.name, f"{c.size:,}", sha, status)
        console.print(files)
        console.print("verified" if problem is None else f"[red]not verified: {problem}[/red]")
    if problem is not None:
        raise BundleError(problem)


def _cpu() -> dict:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("", platform.machine()):
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    wanted = {
        "avx2": "avx2",
        "avx512": "avx512f",
        "avx512_vnni": "avx512_vnni",
        "avx_vnni": "avx_vnni",
        "amx": "amx_tile",
        "neon": "asimd",
    }
    return {
        "model": model,
        "cores": os.cpu_count(),
        "flags": {name: flag in flags for name, flag in wanted.items()},
    }


def _gpu() -> list[str]:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


# y = x + x over a float vector of 2: the smallest real graph, serialized by onnx.helper
_ADD_GRAPH = bytes.fromhex(
    "08073a350a0e0a01780a017812017922034164641201675a0f0a0178120a0a08080112040a020802620f"
    "0a0179120a0a08080112040a02080242040a00100d"
)


def _provider_works(name: str) -> tuple[bool, str]:
    """Create and run a one-node session on ``name`` alone; it must really run there."""
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 4
    try:
        sess = ort.InferenceSession(_ADD_GRAPH, so, providers=[name])
        if sess.get_providers()[0] != name:
            return False, f"session fell back to {sess.get_providers()[0]}"
        y = sess.run(None, {"x": np.ones(2, np.float32)})[0]
        if not np.allclose(y, 2.0):
            return False, "wrong result"
    except Exception as e:
        return False, str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
    return True, ""


def info(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Versions, execution providers that really work here, CPU flags and GPUs.

    Example: edgerec info --json
    """
    import numpy as np
    import onnxruntime as ort

    from edgerec import __version__

    try:
        import tokenizers

        tok_version = tokenizers.__version__
    except ImportError:
        tok_version = None
    providers = {}
    for name in ort.get_available_providers():
        ok, why = _provider_works(name)
        providers[name] = {"works": ok, "problem": why}
    out = {
        "edgerec": __version__,
        "onnxruntime": ort.__version__,
        "onnxruntime_device": ort.get_device(),
        "numpy": np.__version__,
        "tokenizers": tok_version,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "providers": providers,
        "cpu": _cpu(),
        "gpus": _gpu(),
    }
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="edgerec info", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for key in ("edgerec", "onnxruntime", "numpy", "tokenizers", "python", "platform"):
        table.add_row(key, str(out[key]))
    for name, p in providers.items():
        table.add_row(
            name, "[green]works[/green]" if p["works"] else f"[red]no[/red] {p['problem']}"
        )
    cpu = out["cpu"]
    flags = ", ".join(f for f, on in cpu["flags"].items() if on) or "none"
    table.add_row("cpu", f"{cpu['model']} ({cpu['cores']} cores)")
    table.add_row("cpu flags", flags)
    table.add_row("gpu", "; ".join(out["gpus"]) or "none")
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("recommend")(recommend)
    app.command("inspect")(inspect)
    app.command("info")(info)
