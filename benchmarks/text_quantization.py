"""The int8 text encoder per hardware target (``edgerec export --target``), against the
fp32 teacher, the int8 graph of exports before ``--target``, and optimum's path.

For one trained run: the fp32 text encoder is exported as the bundle's is, then
quantized per target (``edgerec.export.quantize.quantize_int8``). When optimum is
installed, its path runs too: ``ORTOptimizer`` (O2) on the plain-ONNX graph, then
``ORTQuantizer`` with each ``AutoQuantizationConfig`` preset (dynamic, per-channel).
Per contender:

- cosine to the fp32 teacher's item vectors (the run's own ``project_text`` of the
  training MiniLM embeddings) on every catalog text, one text per run as the runtime
  encodes int8 (mean / min);
- texts/s of the text-encoder session alone, 1 thread, batches of 1 and of 32 texts;
  contenders alternate within each round, medians over rounds;
- graph size;
- whole-model test NDCG@10 / HR@10 with the contender's text vectors in place of the
  teacher's in every item vector (the ID embeddings stay; PyTorch scoring);
- with ``--cold-start DIR`` (an ``edgerec bench cold-start`` output with its cold run):
  a bundle per target exported from ``DIR/cold-run``, the cold items added from their
  text through ``Recommender.add_items``, cold and warm test NDCG@10, and add_items
  texts/s (alternating, medians).

Example:
  python benchmarks/text_quantization.py --run runs/ml100k --data-dir /work/shared/data \\
      --work /tmp/tq/bench
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
import warnings
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
NAME = "text_quantization"


def _graph_sha(path: Path) -> str:
    """sha256 of the graph alone (nodes, weights, interface): the same for two files that
    differ only in their metadata and IR stamp."""
    import onnx

    return hashlib.sha256(onnx.load(str(path)).graph.SerializeToString()).hexdigest()[:16]


def _session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _before_target(src: Path, dst: Path) -> None:
    """The int8 text encoder as exports wrote it before ``--target`` (commit a6b2e47):
    signed per-channel weights, full range, the same extra options."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(
            src,
            dst,
            per_channel=True,
            weight_type=QuantType.QInt8,
            extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT},
        )


def _optimum_contenders(plain: Path, bert_config, work: Path, notes: dict) -> dict[str, Path]:
    """optimum's path: ORTOptimizer O2, then ORTQuantizer per AutoQuantizationConfig preset.
    ORTQuantizer is first tried on the optimizer's output as is (its error is recorded),
    then after onnxruntime's symbolic shape inference types the fused ops' outputs."""
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference
    from optimum.onnxruntime import ORTOptimizer, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig, AutoQuantizationConfig

    from edgerec.export.targets import TARGETS

    odir = work / "optimum-O2"
    optimized = odir / f"{plain.stem}_optimized.onnx"
    if not optimized.exists():
        ORTOptimizer([plain], config=bert_config).optimize(AutoOptimizationConfig.O2(), odir)
    out: dict[str, Path] = {"optimum O2 fp32": optimized}
    typed = work / "optimum-O2-typed.onnx"
    if not typed.exists():
        model = onnx.load(str(optimized))
        if not any(o.domain == "com.microsoft" for o in model.opset_import):
            model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
        onnx.save(SymbolicShapeInference.infer_shapes(model, auto_merge=True), str(typed))
    try:
        ORTQuantizer(optimized, config=bert_config).quantize(
            AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True), work / "untyped"
        )
        notes["ortquantizer_on_optimizer_output"] = "worked"
    except Exception as e:  # the finding: it needs the typing pass
        notes["ortquantizer_on_optimizer_output"] = f"{type(e).__name__}: {str(e)[:160]}"
    for target in TARGETS:
        qdir = work / f"optimum-{target}"
        path = qdir / f"{typed.stem}_quantized.onnx"
        if not path.exists():
            preset = getattr(AutoQuantizationConfig, target)(is_static=False, per_channel=True)
            ORTQuantizer(typed, config=bert_config).quantize(preset, qdir)
        out[f"optimum {target}"] = path
    return out


def _encode_one_by_one(session, feeds: list[dict]) -> np.ndarray:
    return np.concatenate([session.run(["item_vector"], f)[0] for f in feeds])


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def _timing(sessions: dict, one: list[dict], batch: dict, rounds: int) -> dict:
    """texts/s per contender and round, batch of 1 and of 32; contenders alternate
    (rotated order), so each round's figures are measured side by side."""
    names = list(sessions)
    got: dict = {n: {"batch1": [], "batch32": []} for n in names}
    n32 = len(batch["input_ids"])
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            s = sessions[name]
            t0 = time.perf_counter()
            for f in one:
                s.run(["item_vector"], f)
            got[name]["batch1"].append(len(one) / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            s.run(["item_vector"], batch)
            s.run(["item_vector"], batch)
            got[name]["batch32"].append(2 * n32 / (time.perf_counter() - t0))
    return got


def _model_scorer(model, split, table):
    """Full-catalog PyTorch scores of each user's ``stage`` prediction with ``table`` as
    the item vectors (the trainer's own evaluation path)."""
    import torch

    from edgerec.training.inputs import request_gaps, stage_inputs

    def scorer(users: np.ndarray, stage: str) -> np.ndarray:
        inputs = stage_inputs(split, users, stage, model.cfg.max_len)
        gaps = None
        if model.cfg.request_time:
            ends = split.history_end(stage)[np.asarray(users)]
            gaps = torch.from_numpy(request_gaps(split, np.asarray(ends)))
        with torch.inference_mode():
            enc = model.encode_users(
                *(torch.from_numpy(a) for a in inputs), item_table=table, request_gaps=gaps
            )
            return (enc.user @ table.T).numpy()

    return scorer


def _add_items_speed(recs: dict, ids: list, texts: list[str], rounds: int) -> dict:
    """texts/s of ``Recommender.add_items`` per recommender: rounds in which each adds the
    items and removes them again (a removed id comes back with its new vector), the
    recommenders alternating in a rotated order; texts/s per round."""
    names = list(recs)
    got: dict = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            recs[name].add_items(ids, texts)
            got[name].append(len(ids) / (time.perf_counter() - t0))
            recs[name].remove_items(ids)
    return got


def _bundles(run_dir: Path, work: Path, prefix: str, log, **kwargs) -> dict:
    """A bundle per target (fp32 + int8, no quality step) and a Recommender of each: the
    fp32 one once, then each target's int8 (1 thread)."""
    from edgerec.export import export_bundle
    from edgerec.export.targets import TARGETS
    from edgerec.runtime import Recommender

    recs = {}
    for target in TARGETS:
        bundle = work / f"{prefix}-{target}"
        if not (bundle / "manifest.json").is_file():
            log(f"exporting {bundle}")
            export_bundle(
                run_dir,
                bundle,
                precisions=("fp32", "int8"),
                evaluate=False,
                target=target,
                **kwargs,
            )
        if "fp32" not in recs:
            recs["fp32"] = Recommender.load(bundle, providers="cpu", threads=1, precision="fp32")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # arm64 on x86: warned, measured anyway
            recs[target] = Recommender.load(bundle, providers="cpu", threads=1, precision="int8")
    return recs


def _per_user(scorer, split, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Each user's test NDCG@10 and HR@10 (``edgerec.evaluation.evaluate`` before its
    mean), so contenders can be compared user by user."""
    from edgerec.evaluation.metrics import KS, rank_metrics
    from edgerec.evaluation.protocol import mask_seen

    users = np.arange(split.sequences.n_users)
    parts: dict[str, list] = {"ndcg@10": [], "hr@10": []}
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        scores = np.array(scorer(batch, "test"), dtype=np.float64, copy=True)
        mask_seen(scores, split, "test", batch)
        metrics = rank_metrics(scores, split.targets("test")[batch], KS)
        for name in parts:
            parts[name].append(metrics[name])
    return {name: np.concatenate(v) for name, v in parts.items()}


def _paired(a: np.ndarray, b: np.ndarray) -> dict:
    """Mean of a - b over users with a normal 95 % interval."""
    d = a - b
    half = 1.96 * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
    return {"mean": float(d.mean()), "ci95": [float(d.mean() - half), float(d.mean() + half)]}


def _cold_start(cs_dir: Path, data_dir: Path | None, work: Path, rounds: int, log) -> dict:
    """Cold and warm test NDCG@10 of a bundle per target from the cold run, and add_items
    texts/s (alternating rounds of add then remove of the cold items)."""
    from edgerec.evaluation import cold_start as C
    from edgerec.training.checkpoint import load_run
    from edgerec.training.evaluate_run import load_spec

    run_dir = cs_dir / "cold-run"
    run = load_run(run_dir)
    cold = run.config["data"]["cold_start"]
    # the full data set as the bench's full run recorded it; the split is rebuilt from it
    spec = dict(load_run(cs_dir / "full-run").config["data"])
    if data_dir is not None:
        spec["data_dir"] = str(data_dir)
    full = load_spec(spec)
    css = C.cold_start_split(full, cold["fraction"], cold["choice"], int(run.train_config.seed))
    if css.train_data.fingerprint() != run.config["data"].get("fingerprint"):
        raise SystemExit(f"{run_dir}: its data is not the rebuilt cold-start split's")
    out = {"dir": str(cs_dir), "fraction": cold["fraction"], "choice": cold["choice"]}
    if (cs_dir / "command.json").is_file():  # what made the runs (edgerec bench cold-start)
        out["made_by"] = json.loads((cs_dir / "command.json").read_text()).get("command")
    out["split"] = css.summary()
    recs = _bundles(run_dir, work, "cold-bundle", log, dataset=css.train_data)
    cat = css.dataset.catalog
    rows = css.cold_items - 1
    ids, texts = cat.item_ids[rows].tolist(), [cat.texts[i] for i in rows]
    speed = _add_items_speed(recs, ids, texts, rounds)
    out["rows"] = {}
    vectors: dict = {}
    for name, rec in recs.items():  # fp32 first
        log(f"cold start: evaluating {name}")
        C.add_cold_items(rec, css)
        vectors[name] = rec.item_vectors(ids)
        cos = _cosines(vectors[name], vectors["fp32"])
        groups = C.evaluate_groups(C.runtime_scorer(rec, css.dataset, css.split), css)
        out["rows"][name] = {
            "cold_vectors_cosine_to_fp32": {"mean": float(cos.mean()), "min": float(cos.min())},
            "cold": groups["cold"],
            "warm": groups["warm"],
            "add_items_texts_per_s": float(np.median(speed[name])),
            "add_items_rounds": speed[name],
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, help="a trained run directory")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--work", type=Path, help="folder for the graphs")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--timed-texts", type=int, default=48, help="batch-of-1 texts per round")
    ap.add_argument("--cold-start", type=Path, default=None, help="a bench cold-start output")
    ap.add_argument("--no-optimum", action="store_true")
    ap.add_argument("--no-bundles", action="store_true", help="skip the add_items timing")
    ap.add_argument("--add-items", type=int, default=128, help="texts per add_items call")
    ap.add_argument("--out", type=Path, default=RESULTS / NAME)
    ap.add_argument("--render", type=Path, default=None, help="re-render a results .json")
    args = ap.parse_args()
    if args.render is not None:
        args.render.with_suffix(".md").write_text(render(json.loads(args.render.read_text())))
        return

    if args.run is None or args.work is None:
        ap.error("--run and --work are required (or --render)")
    import torch

    from edgerec.benchmark.hardware import hardware_record
    from edgerec.data import leave_one_out
    from edgerec.export.config import TEXT_INPUTS
    from edgerec.export.onnx_text import TextTower, export_text_encoder, tokenize
    from edgerec.export.quantize import quantize_int8
    from edgerec.export.sources import load_run_dataset, run_text_encoder
    from edgerec.export.targets import DEFAULT_TARGET, TARGETS
    from edgerec.training.checkpoint import load_run
    from edgerec.training.text_encoder import load_encoder

    def log(line: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    hw_start = hardware_record()
    run = load_run(args.run)
    teacher_dir, max_length = run_text_encoder(run)
    tokenizer, bert = load_encoder(teacher_dir)
    model = run.model
    tower = TextTower(bert, model.items.text_proj).eval()
    texts = list(run.catalog["texts"])
    with torch.inference_mode():
        teacher = model.items.project_text(model.items.text_embeddings).float().numpy()[1:]

    paths: dict[str, Path] = {"fp32": work / "fp32.onnx"}
    plain = work / "plain.onnx"
    for path, optimize in ((paths["fp32"], True), (plain, False)):
        if not path.exists():
            log(f"exporting {path.name}")
            export_text_encoder(
                tower,
                tokenizer,
                path,
                max_length=max_length,
                opset=18,
                ir_version=9,
                optimize=optimize,
            )
    paths["int8 before --target"] = work / "before.onnx"
    if not paths["int8 before --target"].exists():
        _before_target(paths["fp32"], paths["int8 before --target"])
    for target in TARGETS:
        paths[target] = work / f"{target}.onnx"
        if not paths[target].exists():
            log(f"quantizing for {target}")
            quantize_int8(paths["fp32"], paths[target], ir_version=9, target=target)
    notes: dict = {}
    if not args.no_optimum:
        try:
            import optimum.onnxruntime  # noqa: F401

            log("optimum's path")
            paths.update(_optimum_contenders(plain, bert.config, work, notes))
        except ImportError:
            notes["optimum"] = "not installed: its rows were not run"
    hashes = {name: _graph_sha(p) for name, p in paths.items()}

    feeds = [tokenize(tokenizer, [t], max_length) for t in texts]
    rows: dict = {}
    for name, path in paths.items():
        log(f"encoding the catalog with {name}")
        cache = work / f"vectors-{hashes[name]}.npy"  # a graph's catalog vectors, reused
        if cache.exists():
            vectors = np.load(cache)
        else:
            vectors = _encode_one_by_one(_session(path, 2), feeds)
            np.save(cache, vectors)
        cos = _cosines(vectors, teacher)
        rows[name] = {
            "size": path.stat().st_size,
            "graph_sha256_16": hashes[name],
            "same_graph_as": [o for o in paths if o != name and hashes[o] == hashes[name]],
            "cosine_mean": float(cos.mean()),
            "cosine_min": float(cos.min()),
            "vectors": vectors,
        }

    log("whole-model test NDCG@10 with each contender's text vectors")
    ds = load_run_dataset(run, args.data_dir)
    split = leave_one_out(ds)
    with torch.no_grad():
        table = model.items().float().clone()
    table[0] = 0.0
    base = _per_user(_model_scorer(model, split, table), split)
    teacher_t = torch.from_numpy(teacher)
    for row in rows.values():
        swapped = table.clone()
        swapped[1:] += torch.from_numpy(row.pop("vectors")) - teacher_t
        m = _per_user(_model_scorer(model, split, swapped), split)
        row["test_ndcg@10"], row["test_hr@10"] = (
            float(m["ndcg@10"].mean()),
            float(m["hr@10"].mean()),
        )
        row["ndcg@10_vs_teacher"] = _paired(m["ndcg@10"], base["ndcg@10"])

    log("timing the sessions (1 thread, alternating)")
    rng = np.random.default_rng(0)
    timed = [feeds[i] for i in rng.choice(len(texts), args.timed_texts, replace=False)]
    batch = tokenize(
        tokenizer, [texts[i] for i in rng.choice(len(texts), 32, replace=False)], max_length
    )
    batch = {n: batch[n] for n in TEXT_INPUTS}
    distinct = {}
    for name in paths:  # one session per distinct graph
        first = next(o for o in paths if hashes[o] == hashes[name])
        distinct.setdefault(first, paths[name])
    speed = _timing({n: _session(p, 1) for n, p in distinct.items()}, timed, batch, args.rounds)
    for name in rows:
        first = next(o for o in paths if hashes[o] == hashes[name])
        for k, v in speed[first].items():
            rows[name][f"texts_per_s_{k}"] = float(np.median(v))
            rows[name][f"texts_per_s_{k}_rounds"] = v

    if not args.no_bundles:
        log("add_items texts/s on a bundle per target")
        recs = _bundles(args.run, work, "bundle", log, data_dir=args.data_dir)
        n = min(len(texts), args.add_items)
        pick = rng.choice(len(texts), n, replace=False)
        ids = [10**9 + int(i) for i in pick]  # new ids, the catalog's texts
        speed = _add_items_speed(recs, ids, [texts[i] for i in pick], args.rounds)
        add_rows = {"fp32": "fp32", **{t: t for t in TARGETS}}
        for name, rec_name in add_rows.items():
            rows[name]["add_items_texts_per_s"] = float(np.median(speed[rec_name]))
            rows[name]["add_items_texts_per_s_rounds"] = speed[rec_name]
        rows["int8 before --target"]["add_items_texts_per_s"] = None

    cold = None
    if args.cold_start is not None:
        cold = _cold_start(args.cold_start, args.data_dir, work, args.rounds, log)

    result = {
        "run": str(args.run.resolve()),
        "dataset": ds.name,
        "teacher_test": {k: float(v.mean()) for k, v in base.items()},
        "run_train": {k: run.config["train"].get(k) for k in ("epochs", "seed", "schedule")},
        "default_target": DEFAULT_TARGET,
        "rounds": args.rounds,
        "timed_texts": args.timed_texts,
        "add_items": None if args.no_bundles else min(len(texts), args.add_items),
        "notes": notes,
        "rows": rows,
        "cold_start": cold,
        "hardware": {"start": hw_start, "end": hardware_record()},
        "command": "python benchmarks/text_quantization.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}"
            for k, v in vars(args).items()
            if v not in (None, False) and k != "out"
        ),
    }
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    args.out.with_suffix(".md").write_text(render(result))
    log(f"wrote {args.out.with_suffix('.md')}")


def _ci(d: dict) -> str:
    lo, hi = d["ci95"]
    return f"{d['mean']:+.4f} ({lo:+.4f}, {hi:+.4f})"


def _findings(r: dict) -> list[str]:
    """Sentences computed from the rows: speed against the default target, the graphs
    that coincide, optimum's path against onnxruntime's."""
    rows, default = r["rows"], r["default_target"]
    base = rows[default]
    out = []

    def ratio(name: str, key: str) -> str:
        """Median over rounds of the round's ratio (measured side by side), with the
        range over rounds."""
        got, ref = rows[name].get(f"{key}_rounds"), base.get(f"{key}_rounds")
        if not got or not ref:
            return "-"
        per_round = np.asarray(got) / np.asarray(ref)
        return f"{np.median(per_round):.2f}x ({per_round.min():.2f}-{per_round.max():.2f})"

    for name in ("fp32", "avx2", "avx512", "arm64"):
        if name in rows:
            out.append(
                f"- {name} against {default} (the default): texts/s {ratio(name, 'texts_per_s_batch1')} "
                f"at batch 1, {ratio(name, 'texts_per_s_batch32')} at batch 32, "
                f"{ratio(name, 'add_items_texts_per_s')} in add_items; min cosine "
                f"{rows[name]['cosine_min']:.4f} vs {base['cosine_min']:.4f}."
            )
    for name in base["same_graph_as"]:
        if rows[name].get("add_items_texts_per_s") and base.get("add_items_texts_per_s"):
            out.append(
                f"- {name} ships the same graph as {default}, so its batch timings are that "
                f"graph's; their add_items figures ({ratio(name, 'add_items_texts_per_s')}) "
                "differ by the machine's noise alone."
            )
    if "int8 before --target" in rows:
        same = "int8 before --target" in base["same_graph_as"]
        out.append(
            f"- The default target's graph is {'identical to' if same else 'NOT the same as'} "
            "the int8 graph of exports before `--target`."
        )
    opt = rows.get(f"optimum {default}")
    if opt:
        out.append(
            f"- optimum (ORTOptimizer O2 + ORTQuantizer, {default} preset) against "
            f"onnxruntime's optimizer + quantize_dynamic: min cosine {opt['cosine_min']:.4f} "
            f"vs {base['cosine_min']:.4f}, mean {opt['cosine_mean']:.5f} vs "
            f"{base['cosine_mean']:.5f}, texts/s {ratio(f'optimum {default}', 'texts_per_s_batch1')} "
            f"at batch 1 and {ratio(f'optimum {default}', 'texts_per_s_batch32')} at batch 32, "
            f"{opt['size'] / 1e6:.2f} vs {base['size'] / 1e6:.2f} MB; its presets that share "
            f"one graph: {', '.join([f'optimum {default}', *opt['same_graph_as']])}."
        )
    return out


def render(r: dict) -> str:
    hw = r["hardware"]["start"]
    cpu = hw.get("cpu", {})
    lines = [
        "# The int8 text encoder per hardware target",
        "",
        f"Command: `{r['command']}`",
        "",
        f"Machine: {cpu.get('model')}, {cpu.get('usable_cores')} usable cores, "
        f"{cpu.get('machine')}; ISA flags: {', '.join(cpu.get('flags', []))} "
        f"(VNNI: {'yes' if cpu.get('vnni') else 'no'}). Load average at start / end: "
        f"{hw.get('load_average_start')} / {r['hardware']['end'].get('load_average_start')}.",
        "",
        f"Run: `{r['run']}` ({r['dataset']}, training {r.get('run_train')}), teacher test NDCG@10 "
        f"{r['teacher_test']['ndcg@10']:.4f}, HR@10 {r['teacher_test']['hr@10']:.4f}.",
        "",
        "| contender | size MB | cosine mean | cosine min | texts/s batch 1 | texts/s batch 32 "
        "| add_items texts/s | test NDCG@10 | vs teacher (95 % CI) | test HR@10 | same graph as |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for name, row in r["rows"].items():
        add = row.get("add_items_texts_per_s")
        lines.append(
            f"| {name} | {row['size'] / 1e6:.2f} | {row['cosine_mean']:.5f} | "
            f"{row['cosine_min']:.5f} | {row['texts_per_s_batch1']:.1f} | "
            f"{row['texts_per_s_batch32']:.1f} | {'-' if add is None else f'{add:.1f}'} | "
            f"{row['test_ndcg@10']:.4f} | {_ci(row['ndcg@10_vs_teacher'])} | "
            f"{row['test_hr@10']:.4f} | "
            f"{', '.join(row['same_graph_as']) or '-'} |"
        )
    lines += [
        "",
        "Cosine: to the fp32 teacher's item vectors (the run's projection of the training "
        "MiniLM embeddings) on every catalog text, one text per run (as the runtime encodes "
        "int8). texts/s: the text-encoder session alone, 1 thread, medians of "
        f"{r['rounds']} rounds in which the contenders alternate ({r['timed_texts']} texts "
        "one per run; two runs of a padded batch of 32). Test NDCG@10 / HR@10: the whole "
        "model with the contender's vectors in place of the teacher's text part of every "
        "item vector (ID embeddings kept), PyTorch scoring, full ranking; vs teacher: the "
        "mean per-user difference to the run's own vectors with a normal 95 % interval. "
        "Same graph as: identical nodes and weights (metadata aside). add_items texts/s: "
        f"`Recommender.add_items` of {r.get('add_items')} catalog texts under new ids on a bundle "
        "exported with `--target` (fp32: the same bundle loaded at fp32; 1 thread; int8 "
        "encodes one text per run), medians of alternating rounds.",
        "",
    ]
    lines += [
        "## Findings",
        "",
        "Speed ratios: the median over rounds of each round's ratio (the contenders ran "
        "side by side), with the range over rounds.",
        "",
        *_findings(r),
        "",
    ]
    for key, value in r["notes"].items():
        lines.append(f"- {key}: {value}")
    cs = r.get("cold_start")
    if cs:
        same = Path(r["run"]) == Path(cs["dir"]).resolve() / "full-run"
        full_note = ", whose full run is the run above" if same else ""
        lines += [
            "",
            "## Cold start",
            "",
            f"Cold run `{cs['dir']}` ({cs['choice']}, fraction {cs['fraction']}; made by "
            f"`{cs.get('made_by')}`{full_note}): a bundle per target, "
            "the cold items added from their text through `add_items`.",
            "",
            "| text encoder | cold vectors' cosine to fp32 (mean / min) | cold NDCG@10 "
            "| cold HR@10 | cold HR@20 | warm NDCG@10 | add_items texts/s |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, row in cs["rows"].items():
            c = row["cold_vectors_cosine_to_fp32"]
            lines.append(
                f"| {name} | {c['mean']:.5f} / {c['min']:.5f} | {row['cold']['ndcg@10']:.4f} | "
                f"{row['cold']['hr@10']:.4f} | {row['cold']['hr@20']:.4f} | "
                f"{row['warm']['ndcg@10']:.4f} | {row['add_items_texts_per_s']:.1f} |"
            )
        split = cs["split"]
        lines += [
            "",
            f"{split['cold_items']} cold items, {split['cold_test_events']} cold and "
            f"{split['warm_test_events']} warm test events: one cold hit more or less moves "
            f"cold HR@10 by {1 / max(1, split['cold_test_events']):.4f}, so the cold columns "
            "cannot separate the targets here; the cold vectors' cosine can. add_items: the "
            f"{split['cold_items']} cold texts, alternating rounds, medians.",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
