"""``report.md`` (and the PNG plots) of a latency result; the same tables feed compare.

Everything is recomputed from ``latency.json``, so a report can be regenerated from a
committed result (``edgerec bench report DIR``) and an interrupted sweep gets a report
of the cells it finished.
"""

from __future__ import annotations

from pathlib import Path

from edgerec.benchmark import plots
from edgerec.benchmark.results import headline, select
from edgerec.io import atomic_write_text


def fmt_ms(v) -> str:
    if v is None:
        return "–"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def fmt_rate(v) -> str:
    if v is None:
        return "–"
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def fmt_ratio(v) -> str:
    return "–" if v is None else f"{v:.2f}×"


def catalog_label(c) -> str:
    return "bundle" if c == "bundle" else f"{int(c):,}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(x) for x in r) + " |" for r in rows]
    return "\n".join(lines)


def hardware_rows(result: dict) -> list[list[str]]:
    hw = result["hardware"]
    cpu = hw.get("cpu", {})
    ort = hw.get("onnxruntime", {})
    versions = hw.get("versions", {})
    gpus = hw.get("gpus") or []
    blas = hw.get("blas", {})
    rows = [
        ["target", result["target"]],
        ["host", hw.get("host")],
        ["CPU", cpu.get("model")],
        [
            "cores",
            f"{cpu.get('logical_cores')} logical, {cpu.get('usable_cores')} usable"
            + (f", {cpu['physical_cores']} physical" if cpu.get("physical_cores") else ""),
        ],
        ["ISA flags", ", ".join(cpu.get("flags", [])) or "–"],
        [
            "AVX-512 / VNNI / AMX",
            f"{_yn(cpu.get('avx512'))} / {_yn(cpu.get('vnni'))} / {_yn(cpu.get('amx'))}",
        ],
        ["memory", f"{hw.get('memory_gib')} GiB"],
        [
            "GPU",
            "; ".join(f"{g['name']} ({g.get('memory_gib')} GiB)" for g in gpus) if gpus else "none",
        ],
        [
            "onnxruntime",
            f"{ort.get('version')} ({ort.get('device')}; providers: "
            f"{', '.join(ort.get('available_providers', []))})",
        ],
        [
            "numpy / BLAS",
            f"{versions.get('numpy')} / {blas.get('name')} {blas.get('version') or ''}".strip(),
        ],
        ["python / edgerec", f"{versions.get('python')} / {result.get('edgerec_version')}"],
        ["torch", versions.get("torch", "not installed")],
        ["OS", hw.get("os")],
        [
            "load average (1/5/15 min)",
            f"start {hw.get('load_average_start')}, end {hw.get('load_average_end')}",
        ],
    ]
    return [[a, b if b is not None else "–"] for a, b in rows]


def _yn(v) -> str:
    return "yes" if v else "no"


def headline_section(result: dict) -> str:
    h = result.get("headline") or headline(result)
    base = h["base"]
    parts = [
        f"Ratios of p50 latencies measured in the same run at the base setting: provider "
        f"{base.get('provider')}, {base.get('threads')} thread(s), batch {base.get('batch')}, "
        f"history {base.get('history')}."
    ]
    rows = []
    for prec, v in h.get("pytorch_over_edgerec", {}).items():
        rows.append([f"PyTorch eager ÷ edgerec {prec}, end to end (bundle catalog)", fmt_ratio(v)])
    for cat, per in h.get("precision_over_fp32", {}).items():
        for prec, v in per.items():
            rows.append(
                [
                    f"edgerec {prec} ÷ fp32, end to end ({catalog_label(_cat(cat))} items)",
                    fmt_ratio(v),
                ]
            )
    for entry in h.get("over_numpy_floor", {}).values():
        for prec, v in entry.items():
            if not isinstance(v, dict):
                continue
            rows.append(
                [
                    f"edgerec {prec} ÷ numpy `items @ u`, {entry['n_items']:,} items "
                    f"(floor {fmt_ms(entry['floor_ms'])} ms)",
                    f"scoring+top-k {fmt_ratio(v.get('scoring_topk'))}, "
                    f"end to end {fmt_ratio(v.get('end_to_end'))}",
                ]
            )
    if not rows:
        return parts[0] + "\n\n(no cells for the headline ratios)"
    return parts[0] + "\n\n" + table(["ratio", "value"], rows)


def _cat(key: str):
    return "bundle" if key == "bundle" else int(key)


def runtime_rows(result: dict) -> list[list[str]]:
    rows = []
    for c in select(result["cells"], engine="edgerec", op="recommend"):
        s = c["stages"]
        e = s["end_to_end"]
        rows.append(
            [
                c["provider"],
                c["precision"],
                c["threads"],
                c["batch"],
                c["history"],
                catalog_label(c["catalog"]) if c["catalog"] == "bundle" else f"{c['n_items']:,}",
                _scorer(c),
                stage_ms(s, "user_encoder"),
                stage_ms(s, "scoring_topk"),
                fmt_ms(e["p50_ms"]),
                fmt_ms(e["p95_ms"]),
                fmt_ms(e["p99_ms"]),
                fmt_rate(e["per_s"]),
                e["n"],
            ]
        )
    return rows


def stage_ms(stages: dict, stage: str) -> str:
    """p50 of a stage; a runtime cell without ``scoring_topk`` scored inside its
    recommend graph's run (no separate scorer to time): "in e2e"."""
    if stage in stages:
        return fmt_ms(stages[stage]["p50_ms"])
    return "in e2e" if stage == "scoring_topk" else "–"


def _scorer(c: dict) -> str:
    stored, scored = c["item_dtype"], c.get("scoring_dtype", c["item_dtype"])
    dtypes = stored if stored == scored else f"{stored}→{scored}"
    return f"{c.get('scorer', '?')} ({dtypes})"


RUNTIME_HEADER = [
    "provider",
    "precision",
    "threads",
    "batch",
    "history (events)",
    "catalog (items)",
    "scorer (items stored→scored)",
    "user enc p50 (ms)",
    "score+top-k p50 (ms)",
    "e2e p50 (ms)",
    "e2e p95 (ms)",
    "e2e p99 (ms)",
    "users/s",
    "calls",
]


def torch_rows(result: dict) -> list[list[str]]:
    base = result["settings"]["base"]
    rows = []
    for c in select(result["cells"], engine="pytorch"):
        s = c["stages"]
        ours = select(
            result["cells"],
            engine="edgerec",
            op="recommend",
            provider=base["provider"],
            precision=base["precision"],
            threads=c["threads"],
            batch=c["batch"],
            history=c["history"],
            catalog=c["catalog"],
        )
        ratio = None
        if ours:
            ratio = s["end_to_end"]["p50_ms"] / max(ours[0]["stages"]["end_to_end"]["p50_ms"], 1e-9)
        rows.append(
            [
                c["threads"],
                c["batch"],
                c["history"],
                catalog_label(c["catalog"]) if c["catalog"] == "bundle" else f"{c['n_items']:,}",
                stage_ms(s, "user_encoder"),
                stage_ms(s, "scoring_topk"),
                fmt_ms(s["end_to_end"]["p50_ms"]),
                fmt_ms(s["end_to_end"]["p95_ms"]),
                fmt_rate(s["end_to_end"]["per_s"]),
                fmt_ratio(None if ratio is None else round(ratio, 3)),
            ]
        )
    return rows


def floor_rows(result: dict) -> list[list[str]]:
    rows = []
    for c in select(result["cells"], engine="numpy"):
        s = c["stages"]["matmul"]
        rows.append(
            [
                c["threads"],
                c["batch"],
                f"{c['n_items']:,}",
                fmt_ms(s["p50_ms"]),
                fmt_ms(s["p95_ms"]),
                fmt_ms(s["p99_ms"]),
                c.get("blas_threads"),
            ]
        )
    return rows


def add_items_rows(result: dict) -> list[list[str]]:
    rows = []
    for c in select(result["cells"], engine="edgerec", op="add_items"):
        s = c["stages"]["add_items"]
        rows.append(
            [
                c["provider"],
                c["precision"],
                c["threads"],
                c["batch"],
                c.get("text_words", "–"),
                fmt_ms(s["p50_ms"]),
                fmt_ms(s["p95_ms"]),
                fmt_rate(s["per_s"]),
            ]
        )
    return rows


def latency_markdown(result: dict, plot_files: list[str], plot_note: str | None = None) -> str:
    b = result["bundle"]
    st = result["settings"]
    out = [f"# edgerec latency: {result['target']}", ""]
    if result["status"] != "complete":
        out += [
            f"**Status: {result['status']}.** Only the cells measured before the sweep "
            "stopped are reported.",
            "",
        ]
    out += [
        f"Measured {result['created_at']} to {result.get('finished_at') or '–'} "
        f"({result.get('elapsed_s', '–')} s) with edgerec {result.get('edgerec_version')}.",
        f"Bundle `{b['path']}`: {b['n_items']:,} items, dim {b['dim']}, max history "
        f"{b['max_len']}, precisions {', '.join(b['precisions'])} (default "
        f"{b['default_precision']}), item matrix {b['item_matrix_dtype']}"
        + (", distilled" if b.get("distilled") else "")
        + (f", data set {b['dataset']}" if b.get("dataset") else "")
        + ".",
        "",
    ]
    for note in result.get("notes", []):
        out.append(f"> {note}")
        out.append("")
    out += ["## Headline", "", headline_section(result), ""]
    out += ["## Hardware", "", table(["", ""], hardware_rows(result)), ""]
    rows = runtime_rows(result)
    if rows:
        out += [
            "## edgerec runtime",
            "",
            "Per call, in ms; *user enc* = ids to user vectors (input checks, request "
            "arrays, the user-encoder session), *score+top-k* = the catalog's separate "
            "scorer (int8 shortlist or the topk graph) with seen items excluded -- *in e2e* "
            "where the `recommend` graph encodes, scores and ranks in one run (scorer "
            "`graph`), *e2e* = `recommend`/`recommend_batch` as an app calls it. users/s "
            "is the sustained rate over the whole series.",
            "",
            table(RUNTIME_HEADER, rows),
            "",
        ]
    rows = torch_rows(result)
    if rows:
        out += [
            "## PyTorch eager (same work)",
            "",
            f"The run's model doing what `recommend` does (ids to rows, user tower, scoring, "
            f"masking, top-k, rows to ids). Last column: PyTorch p50 ÷ edgerec "
            f"{st['base']['precision']} p50 at the same setting.",
            "",
            table(
                [
                    "threads",
                    "batch",
                    "history (events)",
                    "catalog (items)",
                    "user enc p50 (ms)",
                    "score+top-k p50 (ms)",
                    "e2e p50 (ms)",
                    "e2e p95 (ms)",
                    "users/s",
                    "PyTorch ÷ edgerec",
                ],
                rows,
            ),
            "",
        ]
    rows = floor_rows(result)
    if rows:
        out += [
            "## numpy floor",
            "",
            "A bare float32 `items @ u` (no masking, no top-k): no scorer can be much faster.",
            "",
            table(
                [
                    "threads",
                    "batch",
                    "catalog (items)",
                    "p50 (ms)",
                    "p95 (ms)",
                    "p99 (ms)",
                    "BLAS threads",
                ],
                rows,
            ),
            "",
        ]
    rows = add_items_rows(result)
    if rows:
        out += [
            "## add_items (cold start)",
            "",
            "Tokenizer + text encoder + catalog update for a call of N new items.",
            "",
            table(
                [
                    "provider",
                    "precision",
                    "threads",
                    "texts per call",
                    "words per text",
                    "p50 (ms)",
                    "p95 (ms)",
                    "items/s",
                ],
                rows,
            ),
            "",
        ]
    if plot_files or plot_note:
        out += ["## Plots", ""]
        out += [f"![{Path(p).stem}]({Path(p).name})" for p in plot_files]
        if plot_note:
            out.append(f"_{plot_note}_")
        out.append("")
    if result.get("skipped"):
        out += ["## Skipped", ""]
        out += [
            f"- {', '.join(f'{k}={v}' for k, v in s.items() if k != 'reason')}: {s['reason']}"
            for s in result["skipped"]
        ]
        out.append("")
    out += [
        "## Settings",
        "",
        table(
            ["setting", "value"],
            [
                ["providers", ", ".join(st["providers"])],
                ["threads", ", ".join(map(str, st["threads"]))],
                ["batch sizes", ", ".join(map(str, st["batches"]))],
                ["history lengths", ", ".join(map(str, st["histories"]))],
                ["precisions", ", ".join(st["precisions"])],
                ["catalogs", ", ".join(catalog_label(c) for c in st["catalogs"])],
                ["grid", st["grid"]],
                ["base", ", ".join(f"{k}={v}" for k, v in st["base"].items())],
                ["k", st["k"]],
                ["scoring", st["scoring"]],
                ["item vectors", st.get("item_dtype_rule", "–")],
                ["timing", ", ".join(f"{k}={v}" for k, v in st["policy"].items())],
                ["BLAS threads pinned per cell", _yn(st.get("blas_threads_controlled"))],
                ["command", f"`{st['command']}`" if st.get("command") else "–"],
            ],
        ),
        "",
    ]
    return "\n".join(out)


def write_latency_report(result: dict, out_dir: Path | str) -> dict:
    """Write ``report.md`` and the PNGs into ``out_dir``; returns what was written."""
    out_dir = Path(out_dir)
    plot_files: list[Path] = []
    note = None
    if plots.available():
        plot_files = plots.latency_plots(result, out_dir)
    else:
        note = "matplotlib is not installed: no plots (pip install matplotlib)"
    text = latency_markdown(result, [str(p) for p in plot_files], note)
    atomic_write_text(out_dir / "report.md", text + "\n")
    return {"report": out_dir / "report.md", "plots": plot_files, "note": note}
