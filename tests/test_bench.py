"""``edgerec bench``: the latency sweep, its result file, reports, compare and quality.

Bundles are the runtime tests' hand-made ones (seconds to build); the PyTorch
comparison gets a run directory with a randomly initialised model of the bundle's
dims. Nothing here asserts a wall-clock time: only that every cell is measured and
recorded with every field, and that the outputs are what a reader needs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from runtime_helpers import make_bundle

from edgerec.benchmark import latency as L
from edgerec.benchmark.compare import compare_results
from edgerec.benchmark.hardware import parse_cpuinfo
from edgerec.benchmark.report import write_latency_report
from edgerec.benchmark.results import (
    STAT_FIELDS,
    ResultError,
    load_result,
    select,
)
from edgerec.benchmark.timing import QUICK_POLICY, TimingPolicy, measure, summarize

PNG = b"\x89PNG\r\n\x1a\n"


def make_run_for(bundle: Path, run_dir: Path) -> Path:
    """A run directory whose model has the bundle's dims (random weights)."""
    from edgerec.training.checkpoint import MODEL_FILE, save_weights, write_run_files
    from edgerec.training.config import ModelConfig
    from edgerec.training.model import InterestModel

    dims = json.loads((bundle / "manifest.json").read_text())["dims"]
    cfg = ModelConfig(
        n_items=dims["n_items"],
        n_behaviours=dims["n_behaviours"],
        n_categories=0,
        text_dim=16,
        dim=dims["dim"],
        hidden=dims["dim"],
        max_len=dims["max_len"],
        window=dims["window"],
        dropout=0.0,
    )
    ids = json.loads((bundle / "items.json").read_text())["ids"]
    write_run_files(
        run_dir, config={"model": cfg.to_dict(), "train": {}, "data": {}}, catalog={"item_ids": ids}
    )
    save_weights(run_dir / MODEL_FILE, InterestModel(cfg).eval())
    return run_dir


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bench") / "bundle", n_items=40, dim=8, max_len=10)


@pytest.fixture(scope="module")
def run_dir(bundle, tmp_path_factory) -> Path:
    return make_run_for(bundle, tmp_path_factory.mktemp("bench") / "run")


def tiny_sweep(**kw) -> L.Sweep:
    values = dict(
        providers=["cpu"],
        threads=[1, 2],
        batches=[1, 4],
        histories=[3, 10],
        precisions=["fp32"],
        catalogs=["bundle", 3000],
        policy=QUICK_POLICY,
        add_items_texts=4,
    )
    values.update(kw)
    return L.Sweep(**values)


@pytest.fixture(scope="module")
def tiny_result(bundle, run_dir, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench") / "laptop"
    seen = []
    result = L.run_latency(
        bundle,
        out,
        tiny_sweep(),
        target="laptop",
        run_dir=run_dir,
        progress=lambda what, done, total: seen.append((done, total)),
    )
    write_latency_report(result, out)
    result["_progress"] = seen
    return result, out


def test_tiny_sweep_measures_every_planned_cell_with_every_field(tiny_result):
    result, out = tiny_result
    on_disk = load_result(out)  # validates the layout
    assert on_disk["status"] == "complete" and on_disk["skipped"] == []
    assert on_disk["target"] == "laptop"

    planned = L.plan_cells(tiny_sweep(base=result["settings"]["base"]))
    measured = {
        tuple(c[k] for k in ("provider", "precision", "threads", "batch", "history", "catalog"))
        for c in select(on_disk["cells"], engine="edgerec", op="recommend")
    }
    assert measured == {tuple(p.values()) for p in planned}
    # slices through the base: every batch, history, catalog and thread count appears
    assert {c[3] for c in measured} == {1, 4}
    assert {c[4] for c in measured} == {3, 10}
    assert {c[5] for c in measured} == {"bundle", 3000}
    assert {c[2] for c in measured} == {1, 2}

    for c in on_disk["cells"]:
        for stage, stats in c["stages"].items():
            assert set(STAT_FIELDS) <= set(stats), (c["engine"], stage)
            assert stats["n"] >= 1
            assert stats["p50_ms"] <= stats["p95_ms"] <= stats["p99_ms"] <= stats["max_ms"]
            assert stats["per_s"] > 0
    runtime = select(on_disk["cells"], engine="edgerec", op="recommend")
    for c in runtime:
        # small catalogs on a CPU: the recommend graph scores inside its own run, so
        # there is no separate scoring stage to time
        assert c["scorer"] == "graph" and c["scoring_dtype"] == "float32"
        assert set(c["stages"]) == {"user_encoder", "end_to_end"}
        assert c["graph_files"]["recommend"] == "recommend.onnx"
        assert c["provider_used"] == "CPUExecutionProvider" and c["device"] == "cpu"
        assert c["n_items"] == (40 if c["catalog"] == "bundle" else 3000)
        assert c["blas_threads"] in (c["threads"], "default")
    # the same work through PyTorch and the numpy floor, for every setting measured
    torch_keys = {
        (c["threads"], c["batch"], c["history"], c["catalog"])
        for c in select(on_disk["cells"], engine="pytorch")
    }
    assert torch_keys == {(t, b, h, cat) for (_, _, t, b, h, cat) in measured}
    floors = select(on_disk["cells"], engine="numpy")
    assert {(c["threads"], c["batch"], c["catalog"]) for c in floors} == {
        (t, b, cat) for (_, _, t, b, _, cat) in measured
    }
    adds = select(on_disk["cells"], op="add_items")
    assert {c["threads"] for c in adds} == {1, 2}
    assert all(c["stages"]["add_items"]["units_per_call"] == 4 for c in adds)

    hw = on_disk["hardware"]
    assert hw["cpu"]["logical_cores"] >= 1 and isinstance(hw["cpu"]["flags"], list)
    assert hw["versions"]["numpy"] == np.__version__
    assert (
        hw["onnxruntime"]["version"]
        and "CPUExecutionProvider" in hw["onnxruntime"]["available_providers"]
    )
    assert hw["load_average_end"] is not None or hw["load_average_start"] is None

    head = on_disk["headline"]
    assert head["pytorch_over_edgerec"]["fp32"] > 0
    assert set(head["over_numpy_floor"]) == {"bundle", "3000"}
    assert head["over_numpy_floor"]["3000"]["n_items"] == 3000
    assert head["over_numpy_floor"]["3000"]["fp32"]["scoring_topk"] is None
    assert head["over_numpy_floor"]["3000"]["fp32"]["end_to_end"] > 0
    assert set(on_disk["bundle"]["scorers"]) == {"shortlist", "topk", "topk_fp16"}

    # progress went from 0 to the total, one tick per cell
    ticks = result["_progress"]
    assert ticks[0][0] == 0 and ticks[-1][0] == ticks[-1][1] == len(on_disk["cells"])


def test_latency_report_has_tables_and_plots(tiny_result):
    _, out = tiny_result
    text = (out / "report.md").read_text()
    for heading in (
        "## Headline",
        "## Hardware",
        "## edgerec runtime",
        "## PyTorch eager",
        "## numpy floor",
        "## add_items",
    ):
        assert heading in text
    assert "PyTorch eager ÷ edgerec fp32" in text
    assert "| graph (float32) |" in text and "| in e2e |" in text
    for name in ("latency_vs_batch.png", "latency_vs_catalog.png", "throughput_vs_threads.png"):
        assert (out / name).read_bytes()[:8] == PNG
        assert f"]({name})" in text


def test_compare_of_two_runs_makes_a_table_and_a_png(tiny_result, bundle, tmp_path):
    result, out_a = tiny_result
    out_b = tmp_path / "server"
    sweep = tiny_sweep(threads=[1], catalogs=["bundle"], add_items_texts=0)
    L.run_latency(bundle, out_b, sweep, target="server", torch_compare=False)
    written = compare_results([out_a, out_b / "latency.json"], tmp_path / "cmp")
    text = written["report"].read_text()
    assert "| setting | laptop | server |" in text
    assert (tmp_path / "cmp" / "compare.png").read_bytes()[:8] == PNG
    # a setting only the laptop measured shows a dash for the server
    assert any(
        line.startswith("| cpu fp32 2t") and line.rstrip().endswith("| – |")
        for line in text.splitlines()
    )
    assert written["common"] >= 1
    summary = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert summary["targets"] == ["laptop", "server"]
    with pytest.raises(ValueError, match="at least two"):
        compare_results([out_a], tmp_path / "cmp1")
    with pytest.raises(ResultError, match="no such file"):
        compare_results([out_a, tmp_path / "missing"], tmp_path / "cmp2")


def test_cuda_is_swept_when_listed_and_skipped_with_the_reason_when_it_cannot_run(
    bundle, tmp_path, monkeypatch
):
    """What a machine with the GPU build but no usable GPU does. Only the provider list
    is faked: the runtime then really asks onnxruntime for CUDA and really gets the CPU."""
    import onnxruntime as ort

    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    providers = L.parse_providers("auto")
    assert providers == ["cpu", "cuda"]
    sweep = tiny_sweep(
        providers=providers, threads=[1], batches=[1], histories=[10], catalogs=["bundle"]
    )
    result = L.run_latency(bundle, tmp_path / "gpu", sweep, torch_compare=False)
    assert result["status"] == "complete"
    assert {c["provider"] for c in select(result["cells"], engine="edgerec")} == {"cpu"}
    (skip,) = result["skipped"]
    assert skip["provider"] == "cuda" and "CUDA" in skip["reason"]
    assert "## Skipped" in write_latency_report(result, tmp_path / "gpu")["report"].read_text()


@pytest.mark.parametrize("scoring", ["topk", "int8"])
def test_separate_scorers_time_a_scoring_stage(bundle, tmp_path, scoring):
    """``--scoring topk`` is the scorer CUDA uses (I/O binding, TopK in the graph), here
    on the CPU provider; ``int8`` the CPU's for large catalogs. Both score apart from the
    user encoder, so their cells time ``scoring_topk`` too."""
    sweep = tiny_sweep(
        threads=[1],
        batches=[1, 4],
        histories=[10],
        catalogs=["bundle", 2000],
        scoring=scoring,
        add_items_texts=0,
    )
    result = L.run_latency(bundle, tmp_path / scoring, sweep, torch_compare=False)
    assert result["status"] == "complete" and result["skipped"] == []
    runtime = select(result["cells"], engine="edgerec")
    assert runtime and {c["scorer"] for c in runtime} == {scoring}
    for c in runtime:
        assert set(c["stages"]) == {"user_encoder", "scoring_topk", "end_to_end"}
    assert {c["scoring_dtype"] for c in runtime} == {"int8" if scoring == "int8" else "float32"}
    floor = result["headline"]["over_numpy_floor"]["2000"]["fp32"]
    assert floor["scoring_topk"] > 0 and floor["end_to_end"] > 0
    text = write_latency_report(result, tmp_path / scoring)["report"].read_text()
    assert f"| {scoring} (float32" in text and "| in e2e |" not in text


def test_interrupt_keeps_the_cells_measured_so_far(bundle, tmp_path):
    out = tmp_path / "stopped"

    def progress(what, done, total):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        L.run_latency(
            bundle, out, tiny_sweep(add_items_texts=0), torch_compare=False, progress=progress
        )
    result = load_result(out)
    assert result["status"] == "interrupted"
    assert len(result["cells"]) == 3
    assert "**Status: interrupted.**" in write_latency_report(result, out)["report"].read_text()


def test_cli_quick_sweep_then_report_and_bad_options(bundle, tmp_path):
    from typer.testing import CliRunner

    from edgerec.cli import app

    runner = CliRunner()
    out = tmp_path / "quick"
    r = runner.invoke(
        app,
        [
            "bench",
            "latency",
            str(bundle),
            "--out",
            str(out),
            "--quick",
            "--no-torch",
            "-q",
            "--target",
            "ci",
        ],
    )
    assert r.exit_code == 0, r.output
    result = load_result(out)
    assert result["settings"]["quick"] is True and result["target"] == "ci"
    assert result["settings"]["batches"] == [1, 8] and result["settings"]["histories"] == [10]
    assert "--quick" in result["settings"]["command"]
    (out / "report.md").unlink()
    r = runner.invoke(app, ["bench", "report", str(out)])
    assert r.exit_code == 0 and (out / "report.md").is_file()

    for args, message in (
        (["--threads", "0"], "--threads"),
        (["--precision", "fp16"], "no fp16 graphs"),
        (["--catalog", "lots"], "--catalog"),
        (["--providers", "tpu"], "unknown provider"),
        (["--scoring", "numpy"], "--scoring must be auto, graph, int8 or topk"),
    ):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "edgerec",
                "bench",
                "latency",
                str(bundle),
                "--out",
                str(tmp_path / "bad"),
                *args,
            ],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_latency_bench_runs_without_torch_or_matplotlib(bundle, tmp_path):
    """A runtime-only install: torch, matplotlib, pandas, onnx absent -> numbers, no plots."""
    out = tmp_path / "rt"
    code = (
        "import sys\n"
        "for m in ('torch', 'matplotlib', 'pandas', 'onnx', 'transformers', 'optimum'):\n"
        "    sys.modules[m] = None\n"
        "from edgerec.cli import main\n"
        f"main(['bench', 'latency', {str(bundle)!r}, '--out', {str(out)!r}, '--quick', '-q', '--catalog', 'bundle,2000'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result = load_result(out)
    assert not select(result["cells"], engine="pytorch")
    assert any("torch is not installed" in n for n in result["notes"])
    assert select(result["cells"], engine="numpy") and select(result["cells"], engine="edgerec")
    assert "matplotlib is not installed" in (out / "report.md").read_text()
    assert not list(out.glob("*.png"))


def test_axis_parsing():
    assert L.parse_catalogs("bundle,100k,1m,250000") == ["bundle", 100_000, 1_000_000, 250_000]
    assert L.parse_histories("10,max,50", 50) == [10, 50]
    assert L.parse_threads("1,all") == list(dict.fromkeys([1, L.usable_cores()]))
    assert L.parse_precisions("all", ("fp32", "int8")) == ["fp32", "int8"]
    with pytest.raises(ValueError, match="no fp16 graphs"):
        L.parse_precisions("fp16", ("fp32", "int8"))
    with pytest.raises(ValueError, match="at least 1"):
        L.parse_batches("0")
    with pytest.raises(ValueError, match="no values"):
        L.parse_batches(" , ")
    full = L.Sweep(["cpu"], [1, 2], [1, 8], [10], ["fp32", "int8"], ["bundle"], grid="full")
    full.base = L.default_base(full, "int8")
    assert len(L.plan_cells(full)) == 2 * 2 * 2
    assert full.base["precision"] == "int8" and full.base["history"] == 10


def test_timing_stops_within_its_bounds_and_orders_percentiles():
    calls = []
    policy = TimingPolicy(
        warmup_reps=2,
        warmup_s=0.0,
        min_reps=5,
        max_reps=40,
        min_time_s=0.0,
        max_time_s=5.0,
        rel_tol=0.0,
    )
    stats = measure(lambda: calls.append(sum(range(200))), policy, units=3)
    assert 5 <= stats["n"] <= 40 and len(calls) == stats["n"] + 2
    assert (
        stats["min_ms"] <= stats["p50_ms"] <= stats["p95_ms"] <= stats["p99_ms"] <= stats["max_ms"]
    )
    s = summarize([1_000_000, 3_000_000], units=4)  # 1 ms and 3 ms
    assert s["p50_ms"] == 2.0 and s["per_s"] == pytest.approx(4 * 2 / 0.004)
    with pytest.raises(ValueError):
        TimingPolicy(min_reps=10, max_reps=5)


def test_cpuinfo_parsing_finds_the_isa_flags_that_matter():
    x86 = (
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nphysical id\t: 0\ncore id\t: 0\n"
        "flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_vnni amx_tile amx_int8\n\n"
        "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nphysical id\t: 0\ncore id\t: 0\n"
        "flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_vnni amx_tile amx_int8\n\n"
    )
    info = parse_cpuinfo(x86)
    assert info["model"].startswith("Intel") and info["physical_cores"] == 1
    assert info["avx512"] and info["vnni"] and info["amx"] and "amx_int8" in info["flags"]
    arm = "processor\t: 0\nFeatures\t: fp asimd asimddp i8mm sve\nCPU part\t: 0xd40\n\n"
    info = parse_cpuinfo(arm)
    assert info["vnni"] and not info["avx2"] and {"asimddp", "i8mm", "sve"} <= set(info["flags"])


@pytest.mark.slow
def test_quality_table_covers_pytorch_the_exported_bundle_and_baselines(tmp_path):
    """Protocol figures, sizes and latency per variant, with a plot; the bundle is
    exported by the benchmark itself (fp32 only, to keep the test to one export)."""
    from export_fixtures import make_tiny_run

    from edgerec.benchmark.quality import run_quality

    run = make_tiny_run(tmp_path / "run")
    result = run_quality(
        run,
        tmp_path / "q",
        variants=["fp32", "pytorch"],
        baselines=["mostpop", "markov"],
        keep_dir=tmp_path / "bundles",
        policy=QUICK_POLICY,
    )
    rows = {r["name"]: r for r in result["variants"]}
    assert list(rows) == ["pytorch", "fp32", "mostpop", "markov"]
    for r in rows.values():
        assert 0.0 <= r["ndcg@10"] <= r["hr@10"] <= 1.0 and 0.0 <= r["mrr@10"] <= r["hr@10"]
        assert r["p50_ms"] > 0
    assert rows["pytorch"]["bytes"] == (run / "model.safetensors").stat().st_size
    manifest = json.loads((tmp_path / "bundles" / "bundle-plain" / "manifest.json").read_text())
    # the bundle's figures are the export's own, measured on the bundle's files
    assert rows["fp32"]["ndcg@10"] == pytest.approx(
        manifest["quality"]["fp32"]["ndcg@10"], abs=1e-6
    )
    files = manifest["files"]
    assert rows["fp32"]["user_encoder_bytes"] == files["user_encoder.onnx"]["size"]
    assert (
        rows["fp32"]["serving_bytes"]
        < rows["fp32"]["bytes"]
        == sum(
            f["size"] for name, f in files.items() if name != "README.md" and ".int8." not in name
        )
    )
    text = (tmp_path / "q" / "quality.md").read_text()
    assert "| pytorch |" in text and "| fp32 |" in text and "| markov |" in text
    assert (tmp_path / "q" / "quality.png").read_bytes()[:8] == PNG
    saved = json.loads((tmp_path / "q" / "quality.json").read_text())
    assert saved["schema"] == "edgerec-bench-quality" and len(saved["variants"]) == 4
