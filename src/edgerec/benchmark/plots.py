"""PNG plots of latency results with matplotlib's object API (no global pyplot state).

matplotlib is optional: ``available()`` says whether it is installed, and callers write
a note instead of the plots when it is not (a runtime-only install still benchmarks).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from edgerec.benchmark.results import select

STAGE_STYLE = {"end_to_end": "-", "scoring_topk": "--", "user_encoder": ":"}


def available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _figure(width: float = 7.0, height: float = 4.2, ncols: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def _save(fig, path: Path) -> Path:
    fig.savefig(path, format="png")
    return path


def _series(cells, x: str, stage: str, metric: str = "p50_ms"):
    pts = sorted(
        (c[x], c["stages"][stage][metric])
        for c in cells
        if stage in c["stages"] and c[x] is not None
    )
    return [p[0] for p in pts], [p[1] for p in pts]


def _label_catalog(c) -> str:
    return "bundle" if c == "bundle" else f"{int(c):,}"


def latency_vs_batch(result: dict, path: Path) -> Path | None:
    """p50 per call and users/s against batch size, one line per provider and precision."""
    base = result["settings"]["base"]
    at = dict(threads=base["threads"], history=base["history"], catalog=base["catalog"])
    runtime = select(result["cells"], engine="edgerec", op="recommend", **at)
    if len({c["batch"] for c in runtime}) < 2:
        return None
    fig, (ax, ax2) = _figure(ncols=2)
    combos = sorted({(c["provider"], c["precision"]) for c in runtime})
    for prov, prec in combos:
        cells = select(runtime, provider=prov, precision=prec)
        xs, ys = _series(cells, "batch", "end_to_end")
        ax.plot(xs, ys, marker="o", label=f"edgerec {prov} {prec}")
        xs, ys = _series(cells, "batch", "end_to_end", "per_s")
        ax2.plot(xs, ys, marker="o", label=f"edgerec {prov} {prec}")
    torch_cells = select(result["cells"], engine="pytorch", **at)
    if torch_cells:
        xs, ys = _series(torch_cells, "batch", "end_to_end")
        ax.plot(xs, ys, marker="s", color="black", label="PyTorch eager")
        xs, ys = _series(torch_cells, "batch", "end_to_end", "per_s")
        ax2.plot(xs, ys, marker="s", color="black", label="PyTorch eager")
    batches = sorted({c["batch"] for c in runtime})
    for a in (ax, ax2):
        a.set_xscale("log", base=2)
        a.set_yscale("log")
        a.set_xticks(batches, [str(b) for b in batches], minor=False)
        a.set_xticks([], minor=True)
        a.set_xlabel("batch size (histories per call)")
        a.grid(True, which="both", alpha=0.3)
    ax.set_ylabel("end-to-end p50 per call (ms)")
    ax2.set_ylabel("users / s")
    ax.legend(fontsize=8)
    fig.suptitle(
        f"{result['target']}: latency vs batch ({base['threads']} thread(s), history "
        f"{base['history']}, catalog {_label_catalog(base['catalog'])})"
    )
    return _save(fig, path)


def latency_vs_catalog(result: dict, path: Path) -> Path | None:
    """p50 (batch 1) against catalog size: runtime stages, PyTorch and the numpy floor."""
    base = result["settings"]["base"]
    at = dict(threads=base["threads"], batch=base["batch"])
    runtime = select(
        result["cells"], engine="edgerec", op="recommend", history=base["history"], **at
    )
    if len({c["n_items"] for c in runtime}) < 2:
        return None
    fig, (ax,) = _figure()
    for prov, prec in sorted({(c["provider"], c["precision"]) for c in runtime}):
        cells = select(runtime, provider=prov, precision=prec)
        for stage in ("end_to_end", "scoring_topk"):
            xs, ys = _series(cells, "n_items", stage)
            if not xs:  # no separate scorer: the recommend graph scores in its run
                continue
            ax.plot(
                xs,
                ys,
                STAGE_STYLE[stage],
                marker="o",
                label=f"{prov} {prec} {stage.replace('_', ' ')}",
            )
    torch_cells = select(result["cells"], engine="pytorch", history=base["history"], **at)
    if torch_cells:
        xs, ys = _series(torch_cells, "n_items", "end_to_end")
        ax.plot(xs, ys, marker="s", color="black", label="PyTorch eager end to end")
    floor = select(result["cells"], engine="numpy", **at)
    if floor:
        xs, ys = _series(floor, "n_items", "matmul")
        ax.plot(xs, ys, marker="^", color="grey", linestyle="-.", label="numpy items @ u (floor)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("catalog size (items)")
    ax.set_ylabel("p50 per call (ms)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(
        f"{result['target']}: latency vs catalog size (batch {base['batch']}, {base['threads']} thread(s))"
    )
    return _save(fig, path)


def throughput_vs_threads(result: dict, path: Path) -> Path | None:
    """users/s against intra-op threads, one line per batch size (base precision)."""
    base = result["settings"]["base"]
    runtime = select(
        result["cells"],
        engine="edgerec",
        op="recommend",
        provider=base["provider"],
        precision=base["precision"],
        history=base["history"],
        catalog=base["catalog"],
    )
    if len({c["threads"] for c in runtime}) < 2:
        return None
    fig, (ax,) = _figure()
    for batch in sorted({c["batch"] for c in runtime}):
        xs, ys = _series(select(runtime, batch=batch), "threads", "end_to_end", "per_s")
        ax.plot(xs, ys, marker="o", label=f"batch {batch}")
    ax.set_xlabel("intra-op threads")
    ax.set_ylabel("users / s (end to end)")
    ax.set_yscale("log")
    ax.set_xticks(sorted({c["threads"] for c in runtime}))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(
        f"{result['target']}: throughput vs threads ({base['provider']} {base['precision']})"
    )
    return _save(fig, path)


def latency_plots(result: dict, out_dir: Path) -> list[Path]:
    """Every latency plot that the result has the cells for."""
    out_dir = Path(out_dir)
    made = [
        latency_vs_batch(result, out_dir / "latency_vs_batch.png"),
        latency_vs_catalog(result, out_dir / "latency_vs_catalog.png"),
        throughput_vs_threads(result, out_dir / "throughput_vs_threads.png"),
    ]
    return [p for p in made if p is not None]


def compare_plot(rows: list[dict], targets: list[str], path: Path, title: str) -> Path:
    """Grouped bars: one group per setting, one bar per target (p50 ms, log scale)."""
    import numpy as np

    fig, (ax,) = _figure(width=max(7.0, 1.1 * len(rows) + 2), height=4.8)
    width = 0.8 / max(len(targets), 1)
    x = np.arange(len(rows))
    for i, t in enumerate(targets):
        ys = [r["values"].get(t) for r in rows]
        ax.bar(
            x + (i - (len(targets) - 1) / 2) * width,
            [y if y is not None else 0.0 for y in ys],
            width,
            label=t,
        )
    ax.set_xticks(x)
    ax.set_xticklabels([r["label"] for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("end-to-end p50 per call (ms)")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    return _save(fig, path)
