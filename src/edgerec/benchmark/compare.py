"""``bench compare``: several latency results (machines, or runs on one machine) side by side.

Rows are settings (provider, precision, threads, batch, history, catalog size), columns
are targets; a setting one run did not measure shows "–". The headline ratios come
first, since they travel between machines better than absolute times. The PNG puts
the settings every run measured next to each other (up to ``MAX_PLOT_ROWS``).
"""

from __future__ import annotations

from pathlib import Path

from edgerec.benchmark import plots
from edgerec.benchmark.report import fmt_ms, fmt_ratio, table
from edgerec.benchmark.results import headline, load_result, select
from edgerec.io import atomic_write_json, atomic_write_text

MAX_PLOT_ROWS = 16
KEY = ("provider", "precision", "threads", "batch", "history", "n_items")


def _labels(results: list[dict]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for r in results:
        name = str(r["target"])
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} #{seen[name]}")
    return out


def _key_label(key: tuple) -> str:
    prov, prec, threads, batch, history, n_items = key
    return f"{prov} {prec} {threads}t b{batch} h{history} {n_items:,}"


def compare_rows(results: list[dict], labels: list[str]) -> list[dict]:
    """One row per runtime setting: ``{"key", "label", "values": {target: e2e p50}}``."""
    rows: dict[tuple, dict] = {}
    for label, r in zip(labels, results, strict=True):
        for c in select(r["cells"], engine="edgerec", op="recommend"):
            key = tuple(c[k] for k in KEY)
            row = rows.setdefault(key, {"key": key, "label": _key_label(key), "values": {}})
            row["values"][label] = c["stages"]["end_to_end"]["p50_ms"]
    return sorted(rows.values(), key=lambda row: tuple(_sortable(x) for x in row["key"]))


def _sortable(x) -> tuple:
    return (0, x, "") if isinstance(x, int | float) else (1, 0, str(x))


def headline_rows(results: list[dict]) -> list[list[str]]:
    heads = [r.get("headline") or headline(r) for r in results]
    names: list[str] = []
    values: dict[str, list] = {}

    def put(name: str, i: int, v) -> None:
        if name not in values:
            names.append(name)
            values[name] = [None] * len(results)
        values[name][i] = v

    for i, h in enumerate(heads):
        for prec, v in h.get("pytorch_over_edgerec", {}).items():
            put(f"PyTorch ÷ edgerec {prec} (bundle catalog)", i, v)
        for cat, per in h.get("precision_over_fp32", {}).items():
            for prec, v in per.items():
                where = "bundle" if cat == "bundle" else f"{int(cat):,} items"
                put(f"{prec} ÷ fp32 ({where} catalog)", i, v)
        for entry in h.get("over_numpy_floor", {}).values():
            for prec, v in entry.items():
                if isinstance(v, dict):
                    put(
                        f"edgerec {prec} e2e ÷ numpy floor ({entry['n_items']:,} items)",
                        i,
                        v["end_to_end"],
                    )
    return [[n, *(fmt_ratio(v) for v in values[n])] for n in names]


def hardware_line(label: str, r: dict) -> list[str]:
    hw = r["hardware"]
    cpu = hw.get("cpu", {})
    gpus = hw.get("gpus") or []
    return [
        label,
        str(cpu.get("model")),
        str(cpu.get("usable_cores")),
        ", ".join(f for f in cpu.get("flags", []) if f.startswith(("avx512", "amx", "avx_vnni")))
        or "–",
        "; ".join(g["name"] for g in gpus) or "–",
        str(hw.get("onnxruntime", {}).get("version")),
        str(r["created_at"])[:10],
        str(hw.get("load_average_start")),
    ]


def compare_results(paths: list[Path | str], out_dir: Path | str) -> dict:
    """Write ``compare.md``, ``compare.json`` and (with matplotlib) ``compare.png``."""
    if len(paths) < 2:
        raise ValueError("compare needs at least two latency results")
    results = [load_result(p) for p in paths]
    labels = _labels(results)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = compare_rows(results, labels)
    common = [r for r in rows if len(r["values"]) == len(results)]
    lines = [f"# edgerec latency: {' vs '.join(labels)}", ""]
    lines += [
        "## Targets",
        "",
        table(
            [
                "target",
                "CPU",
                "cores",
                "AVX-512/AMX",
                "GPU",
                "onnxruntime",
                "date",
                "load avg at start",
            ],
            [hardware_line(lbl, r) for lbl, r in zip(labels, results, strict=True)],
        ),
        "",
        "## Headline ratios (each measured within its own run)",
        "",
    ]
    heads = headline_rows(results)
    lines += [table(["ratio", *labels], heads) if heads else "(no headline ratios)", ""]
    lines += [
        "## End-to-end p50 per call (ms)",
        "",
        "Setting: provider, precision, threads, batch (b), history (h), catalog items.",
        "",
        table(
            ["setting", *labels],
            [[r["label"], *(fmt_ms(r["values"].get(lbl)) for lbl in labels)] for r in rows],
        ),
        "",
    ]
    plot = None
    if plots.available() and common:
        plot = plots.compare_plot(
            common[:MAX_PLOT_ROWS],
            labels,
            out_dir / "compare.png",
            "end-to-end p50 per call, settings every target measured",
        )
        lines += ["![compare](compare.png)", ""]
    elif not common:
        lines += ["_No setting was measured by every target, so there is no plot._", ""]
    else:
        lines += ["_matplotlib is not installed: no plot._", ""]
    lines += ["Sources:", ""] + [
        f"- {lbl}: `{Path(p)}`" for lbl, p in zip(labels, paths, strict=True)
    ]
    atomic_write_text(out_dir / "compare.md", "\n".join(lines) + "\n")
    summary = {
        "targets": labels,
        "sources": [str(p) for p in paths],
        "rows": [{"setting": r["label"], "end_to_end_p50_ms": r["values"]} for r in rows],
    }
    atomic_write_json(out_dir / "compare.json", summary)
    return {"report": out_dir / "compare.md", "plot": plot, "rows": rows, "common": len(common)}
