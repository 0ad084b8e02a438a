"""``edgerec bench``: latency per hardware target, quality vs size, comparisons.

``bench latency`` runs with only numpy + onnxruntime + tokenizers installed (torch is
used for the PyTorch comparison only when present, matplotlib for plots only when
present); ``bench quality`` needs the training extra.
"""

from __future__ import annotations

from pathlib import Path

import typer

bench_app = typer.Typer(
    name="bench",
    help="Benchmarks: latency sweeps per hardware target, quality vs size, comparisons.",
    no_args_is_help=True,
)


def _progress_bar(quiet: bool):
    """The progress display and its ``progress(description, done, total)`` callback."""
    from edgerec.commands.progress import Progress

    bar = Progress(enabled=not quiet)
    return bar, bar.callback("bench")


@bench_app.command("latency")
def latency(
    bundle: Path = typer.Argument(..., help="Bundle directory (from `edgerec export`)."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Directory for latency.json, report.md, PNGs."
    ),
    target: str = typer.Option(
        None, "--target", help="Name of this hardware target (default: host name)."
    ),
    providers: str = typer.Option(
        None, help="cpu, cuda or auto (cpu + cuda when installed). [auto]"
    ),
    threads: str = typer.Option(
        None, help="Intra-op thread counts; 'all' = usable cores. [1,2,all]"
    ),
    batch: str = typer.Option(None, help="Histories per call. [1,8,64,256]"),
    history: str = typer.Option(None, help="Events per history; 'max' = the model's. [10,50,max]"),
    precision: str = typer.Option(None, help="fp32, int8, fp16 or all (the bundle's). [all]"),
    catalog: str = typer.Option(
        None, help="'bundle' and/or synthetic sizes (100000, 1m). [bundle,100000,1000000]"
    ),
    grid: str = typer.Option("slices", help="slices (through a base setting) or full (product)."),
    k: int = typer.Option(10, help="Recommendations per history."),
    scoring: str = typer.Option("auto", help="Runtime scorer: auto, graph, int8 or topk."),
    run: Path = typer.Option(
        None,
        "--run",
        help="Run directory for the PyTorch comparison (default: manifest source.run).",
    ),
    torch: bool = typer.Option(
        None, "--torch/--no-torch", help="Require / skip the PyTorch comparison. [when possible]"
    ),
    add_items: int = typer.Option(
        None, "--add-items", help="Texts per add_items call, 0 to skip. [64; 8 with --quick]"
    ),
    quick: bool = typer.Option(
        False, "--quick", help="Few cells and short timings (seconds): a smoke test, not numbers."
    ),
    max_time: float = typer.Option(
        None, help="Seconds of timing per stage (more only to reach 20 calls). [0.8]"
    ),
    note: str = typer.Option(
        None, help="A line for the report (e.g. 'shared machine, 3 other jobs')."
    ),
    seed: int = typer.Option(0, help="Seed of histories and synthetic catalogs."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Latency sweep of a bundle: p50/p95/p99 and throughput per stage, vs PyTorch and numpy.

    Unset axes take the defaults (shown in brackets), about two minutes on two cores;
    --quick takes threads 1, batch 1,8, the longest history, the bundle's catalog and
    short timings. Ctrl-C stops the sweep and keeps the cells measured so far in
    latency.json (and writes report.md for them).

    Examples:
      edgerec bench latency bundles/ml100k --out bench/laptop --target laptop-i7
      edgerec bench latency bundles/ml100k --out bench/q --quick
      edgerec bench latency bundles/gpu --out bench/h100 --providers cpu,cuda --precision fp32,fp16
      edgerec bench latency bundles/ml100k --out bench/t --threads 1,4,8 --batch 1,64 --catalog 1m
    """
    from dataclasses import replace

    from edgerec.benchmark import latency as L
    from edgerec.benchmark.report import write_latency_report
    from edgerec.benchmark.timing import DEFAULT_POLICY, QUICK_POLICY
    from edgerec.runtime.bundle import read_manifest

    manifest = read_manifest(Path(bundle).resolve())
    given = {
        "providers": providers,
        "threads": threads,
        "batch": batch,
        "history": history,
        "precision": precision,
        "catalog": catalog,
    }
    axes = {
        name: value
        if value is not None
        else (L.QUICK.get(name) if quick else None) or L.DEFAULTS[name]
        for name, value in given.items()
    }
    policy = QUICK_POLICY if quick else DEFAULT_POLICY
    if max_time is not None:
        if max_time <= 0:
            raise ValueError("--max-time must be positive")
        policy = replace(policy, max_time_s=max_time, min_time_s=min(policy.min_time_s, max_time))
    if scoring not in ("auto", "graph", "int8", "topk"):
        raise ValueError(f"--scoring must be auto, graph, int8 or topk, got {scoring!r}")
    if add_items is None:
        add_items = 8 if quick else 64
    if add_items < 0:
        raise ValueError("--add-items must be 0 or more")
    sweep = L.Sweep(
        providers=L.parse_providers(axes["providers"]),
        threads=L.parse_threads(axes["threads"]),
        batches=L.parse_batches(axes["batch"]),
        histories=L.parse_histories(axes["history"], manifest.dims.max_len),
        precisions=L.parse_precisions(axes["precision"], tuple(manifest.graphs["user_encoder"])),
        catalogs=L.parse_catalogs(axes["catalog"]),
        grid=grid,
        k=k,
        scoring=scoring,
        policy=policy,
        add_items_texts=add_items,
        seed=seed,
    )
    command = " ".join(
        ["edgerec bench latency", str(bundle), "--out", str(out)]
        + (["--target", target] if target else [])
        + [f"--{name} {value}" for name, value in given.items() if value is not None]
        + (["--grid", grid] if grid != "slices" else [])
        + (["--quick"] if quick else [])
    )
    bar, progress = _progress_bar(quiet)
    with bar:
        try:
            result = L.run_latency(
                bundle,
                out,
                sweep,
                target=target,
                run_dir=run,
                torch_compare=torch,
                note=note,
                settings_extra={"command": command, "quick": quick},
                progress=progress,
            )
        except KeyboardInterrupt:
            from edgerec.benchmark.results import load_result

            bar.stop()
            written = write_latency_report(load_result(out), out)
            typer.echo(
                f"interrupted: the cells measured so far are in {out / 'latency.json'}; "
                f"report {written['report']}",
                err=True,
            )
            raise
    written = write_latency_report(result, out)
    _print_latency_summary(result)
    typer.echo(
        f"wrote {out / 'latency.json'}, {written['report']}"
        + "".join(f", {p.name}" for p in written["plots"])
    )
    if written["note"]:
        typer.echo(written["note"])


def _print_latency_summary(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from edgerec.benchmark.report import fmt_ms, fmt_rate, stage_ms
    from edgerec.benchmark.results import select

    base = result["settings"]["base"]
    cells = select(
        result["cells"],
        engine="edgerec",
        op="recommend",
        threads=base["threads"],
        history=base["history"],
        batch=base["batch"],
    )
    t = Table(
        title=f"{result['target']}: batch {base['batch']}, history {base['history']}, {base['threads']} thread(s)"
    )
    for col in (
        "provider",
        "precision",
        "catalog (items)",
        "user enc p50 (ms)",
        "score+top-k p50 (ms)",
        "e2e p50 (ms)",
        "e2e p99 (ms)",
        "users/s",
    ):
        t.add_column(col, justify="left" if col in ("provider", "precision") else "right")
    for c in cells:
        s = c["stages"]
        t.add_row(
            c["provider"],
            c["precision"],
            f"{c['n_items']:,}",
            stage_ms(s, "user_encoder"),
            stage_ms(s, "scoring_topk"),
            fmt_ms(s["end_to_end"]["p50_ms"]),
            fmt_ms(s["end_to_end"]["p99_ms"]),
            fmt_rate(s["end_to_end"]["per_s"]),
        )
    console = Console(soft_wrap=True)  # lines in a log file are not cut at 80 columns
    console.print(t)
    h = result.get("headline", {})
    for prec, v in h.get("pytorch_over_edgerec", {}).items():
        if v is not None:
            console.print(
                f"PyTorch eager / edgerec {prec}: {v:.2f}x (end-to-end p50, bundle catalog)"
            )
    for entry in h.get("over_numpy_floor", {}).values():
        for prec, v in entry.items():
            if isinstance(v, dict) and v.get("end_to_end") is not None:
                scoring = v.get("scoring_topk")
                console.print(
                    f"edgerec {prec} / numpy items@u at {entry['n_items']:,} items: "
                    f"{v['end_to_end']:.2f}x end to end"
                    + (f", {scoring:.2f}x scoring+top-k" if scoring is not None else "")
                )
    for s in result.get("skipped", []):
        console.print(
            f"[yellow]skipped[/yellow] {s.get('provider')} {s.get('precision')}: {s['reason']}"
        )


@bench_app.command("quality")
def quality(
    run_dir: Path = typer.Argument(..., help="A finished training run directory."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Directory for quality.json, quality.md, quality.png."
    ),
    variants: str = typer.Option(
        "all",
        help="pytorch, fp32, int8, fp16, distilled-fp32, distilled-int8, distilled-fp16 or all.",
    ),
    baselines: str = typer.Option("mostpop,itemknn,markov", help="Baselines for scale, or none."),
    bundle: Path = typer.Option(
        None, "--bundle", help="Use this (non-distilled) bundle of the run instead of exporting."
    ),
    distilled_bundle: Path = typer.Option(
        None,
        "--distilled-bundle",
        help="Use this distilled bundle of the run instead of exporting.",
    ),
    keep_bundles: Path = typer.Option(
        None, "--keep-bundles", help="Export into this directory and keep the bundles."
    ),
    data_dir: Path = typer.Option(
        None, "--data-dir", help="Where the run's data set is now, if it moved."
    ),
    threads: int = typer.Option(1, help="Threads for the latency column."),
    target: str = typer.Option(
        None, "--target", help="Name of this hardware target (default: host name)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Quality vs size vs latency of a run's variants (PyTorch, ONNX fp32/int8/fp16,
    distilled), with MostPop/ItemKNN/Markov for scale: test NDCG/HR/MRR@10, bytes, p50.

    Bundles are exported to a temporary directory unless given; exporting with
    distillation takes minutes on a laptop.

    Examples:
      edgerec bench quality runs/ml100k --out bench/quality
      edgerec bench quality runs/ml100k --out bench/q --bundle bundles/ml100k --variants pytorch,fp32,int8
    """
    from edgerec.benchmark.quality import parse_baselines, parse_variants, run_quality

    if threads < 1:
        raise ValueError("--threads must be at least 1")
    given = {k: v for k, v in (("plain", bundle), ("distilled", distilled_bundle)) if v is not None}
    bar, progress = _progress_bar(quiet)
    with bar:
        result = run_quality(
            run_dir,
            out,
            variants=parse_variants(variants),
            baselines=parse_baselines(baselines),
            data_dir=data_dir,
            bundles=given,
            keep_dir=keep_bundles,
            threads=threads,
            target=target,
            progress=progress,
        )
    from rich.console import Console
    from rich.table import Table

    from edgerec.benchmark.report import fmt_ms

    t = Table(title=f"{result['dataset']}: test metrics, size, latency ({result['target']})")
    for col in ("variant", "NDCG@10", "HR@10", "MRR@10", "size (MB)", "p50 (ms)"):
        t.add_column(col, justify="left" if col == "variant" else "right")
    for r in result["variants"]:
        t.add_row(
            r["name"],
            f"{r['ndcg@10']:.4f}",
            f"{r['hr@10']:.4f}",
            f"{r['mrr@10']:.4f}",
            "-" if r.get("bytes") is None else f"{r['bytes'] / 1e6:.2f}",
            fmt_ms(r.get("p50_ms")),
        )
    Console().print(t)
    typer.echo(f"wrote {out / 'quality.md'}, {out / 'quality.json'}")


@bench_app.command("report")
def report(
    result_dir: Path = typer.Argument(..., help="Directory with a latency.json."),
    out: Path = typer.Option(
        None, "--out", "-o", help="Where to write (default: the same directory)."
    ),
) -> None:
    """Rewrite report.md and the plots from a latency.json (e.g. after an interrupted run).

    Examples:
      edgerec bench report benchmarks/results/epyc-2core-2026-11-28 --out /tmp/epyc-report
    """
    from edgerec.benchmark.report import write_latency_report
    from edgerec.benchmark.results import load_result

    result = load_result(result_dir)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    written = write_latency_report(result, out or result_dir)
    typer.echo(f"wrote {written['report']}" + "".join(f", {p.name}" for p in written["plots"]))


@bench_app.command("compare")
def compare(
    results: list[Path] = typer.Argument(
        ..., help="Two or more latency result directories (or latency.json files)."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Directory for compare.md, compare.json, compare.png."
    ),
) -> None:
    """Put several targets' latency results side by side: headline ratios, a table, a plot.

    Examples:
      edgerec bench compare bench/laptop bench/jetson bench/server --out bench/compare
    """
    from edgerec.benchmark.compare import compare_results

    written = compare_results(results, out)
    typer.echo(
        f"wrote {written['report']}"
        + (f", {written['plot'].name}" if written["plot"] else "")
        + f" ({len(written['rows'])} settings, {written['common']} measured by every target)"
    )


def register(app: typer.Typer) -> None:
    from edgerec.commands.cold_start import cold_start

    bench_app.command("cold-start")(cold_start)
    app.add_typer(bench_app, name="bench")
