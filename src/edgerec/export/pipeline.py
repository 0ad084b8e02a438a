"""Run directory -> verified bundle, in one temporary directory renamed into place at the end.

Order: load the run and its data -> (distil students) -> export fp32 graphs -> parity
gate -> int8/fp16 variants -> data files -> quality per precision -> manifest + model
card -> re-verify everything -> rename. Any exception (or a kill) before the rename
leaves no bundle at ``out_dir`` and an existing bundle there untouched.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgerec.errors import DataError
from edgerec.export import bundle as bundle_files
from edgerec.export.config import (
    DEFAULT_OPSET,
    DEFAULT_PRECISIONS,
    RECOMMEND_ROLE,
    TEXT_ROLE,
    USER_ROLE,
    DistillConfig,
    ExportConfig,
    graph_file,
)
from edgerec.export.targets import DEFAULT_TARGET
from edgerec.io import atomic_directory, atomic_write_text

Progress = Callable[[str, int, int], None]


class _Steps:
    """Numbered progress messages: ``progress(description, completed, total)``."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0

    def __call__(self, description: str) -> None:
        if self.progress is not None:
            self.progress(description, self.done, self.total)
        self.done += 1

    def inner(self, description: str) -> Callable[[int, int], None]:
        """Progress of a long step's own loop, shown in the step's description."""

        def report(done: int, total: int) -> None:
            if self.progress is not None:
                self.progress(f"{description} ({done}/{total})", self.done - 1, self.total)

        return report

    def finish(self) -> None:
        if self.progress is not None:
            self.progress("done", self.total, self.total)


def _sample(n: int, k: int, seed: int = 0) -> np.ndarray:
    if n <= k:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def _make_readable(folder: Path) -> None:
    """Temporary directories are created private (0700/0600); a bundle is shared read-only."""
    import os
    import stat

    for path in folder.iterdir():
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
    os.chmod(folder, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)


def _run_test_metrics(run_dir: Path) -> dict | None:
    """The trainer's own test figures (PyTorch), for comparison with the bundle's."""
    import json

    try:
        return json.loads((run_dir / "metrics.json").read_text()).get("test")
    except (OSError, ValueError, AttributeError):
        return None


def export_bundle(
    run_dir: Path | str,
    out_dir: Path | str,
    *,
    precisions=DEFAULT_PRECISIONS,
    distill: bool = False,
    opset: int | None = None,
    tolerance: float = 1e-4,
    progress: Progress | None = None,
    data_dir: Path | str | None = None,
    dataset=None,
    item_dtype: str = "float32",
    distill_config: DistillConfig | None = None,
    evaluate: bool = True,
    target: str = DEFAULT_TARGET,
) -> dict:
    """Export a trained run as a bundle at ``out_dir``; returns the manifest.

    ``dataset`` (a loaded ``Dataset``) or ``data_dir`` override where the run's data is
    found; the data must match the run's recorded fingerprint. Raises ``ParityError``
    when an fp32 graph does not reproduce PyTorch within ``tolerance``. ``target``: the
    hardware the int8 text encoder is quantized for (``edgerec.export.targets``).
    """
    import torch

    from edgerec.data import leave_one_out
    from edgerec.export import parity as parity_mod
    from edgerec.export import quality as quality_mod
    from edgerec.export.card import model_card
    from edgerec.export.onnx_text import TextTower, export_text_encoder, tokenize
    from edgerec.export.onnx_user import export_user_encoder
    from edgerec.export.quantize import convert_fp16, quantize_int8
    from edgerec.export.serving import write_serving_graphs
    from edgerec.export.sources import default_behaviour, load_run_dataset, run_text_encoder
    from edgerec.features import N_GAP_BUCKETS
    from edgerec.runtime.manifest import QuantizationTargetWarning
    from edgerec.training.checkpoint import load_run
    from edgerec.training.text_encoder import load_encoder

    cfg = ExportConfig(
        precisions=precisions,
        distill=distill,
        opset=opset or DEFAULT_OPSET,
        tolerance=tolerance,
        item_dtype=item_dtype,
        evaluate=evaluate,
        distill_config=distill_config or DistillConfig(),
        target=target,
    )
    out_dir = Path(out_dir)
    steps = _Steps(progress, 9 + (2 if cfg.distill else 0) + len(cfg.built_precisions) - 1)

    steps("loading the run and its data")
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    mcfg = run.model_config
    ds = dataset if dataset is not None else load_run_dataset(run, data_dir)
    recorded = (run.config.get("data") or {}).get("fingerprint")
    if recorded and ds.fingerprint() != recorded:
        raise DataError(
            f"the given data set has fingerprint {ds.fingerprint()}, but the run was trained "
            f"on {recorded}: export checks parity and quality on the run's own data"
        )
    if ds.n_items != mcfg.n_items:
        raise DataError(f"data set has {ds.n_items} items, the run's model {mcfg.n_items}")
    split = leave_one_out(ds)
    catalog = run.catalog
    texts = list(catalog["texts"])
    teacher_dir, max_length = run_text_encoder(run)
    tokenizer, bert = load_encoder(teacher_dir)
    model = run.model
    with torch.inference_mode():
        item_table = model.items().float().numpy().copy()
        # the model never reads row 0 (padding is masked), but it holds the text
        # projection's bias; the bundle format fixes it at zero
        item_table[0] = 0.0
        training_text_vectors = model.items.project_text(model.items.text_embeddings).numpy()
    teacher_text = TextTower(bert, model.items.text_proj).eval()
    user_model, text_tower = model, teacher_text
    distillation = None
    if cfg.distill:
        from edgerec.export import distill as distill_mod

        steps("distilling the text encoder")
        text_tower, text_report = distill_mod.distill_text_encoder(
            teacher_text,
            tokenizer,
            texts,
            max_length=max_length,
            config=cfg.distill_config,
            model=model,
            split=split,
            progress=steps.inner("distilling the text encoder"),
        )
        steps("distilling the user encoder")
        user_model, user_report = distill_mod.distill_user_encoder(
            model,
            split,
            config=cfg.distill_config,
            progress=steps.inner("distilling the user encoder"),
        )
        distillation = {"text_encoder": text_report, "user_encoder": user_report}

    vocab = list(catalog.get("behaviour_vocab") or ds.behaviour_vocab)
    dims = {
        "dim": int(mcfg.dim),
        "n_items": int(mcfg.n_items),
        "max_len": int(mcfg.max_len),
        "window": int(mcfg.window),
        "n_behaviours": int(mcfg.n_behaviours),
        "n_gap_buckets": int(N_GAP_BUCKETS),
        "text_max_length": int(max_length),
    }
    graph_meta = {"dims": dims, "dataset": ds.name}
    with atomic_directory(out_dir) as tmp:
        steps("exporting the user encoder and the serving graphs")
        export_info = {}
        encoder, export_info[USER_ROLE] = export_user_encoder(
            user_model,
            item_table=item_table,
            n_behaviours=mcfg.n_behaviours,
            n_gap_buckets=N_GAP_BUCKETS,
            opset=cfg.opset,
            ir_version=cfg.ir_version,
        )
        serving_files, scorers = write_serving_graphs(
            encoder,
            tmp,
            max_len=int(mcfg.max_len),
            dim=int(mcfg.dim),
            opset=cfg.opset,
            ir_version=cfg.ir_version,
            metadata={"dim": int(mcfg.dim), "hidden": int(user_model.cfg.hidden), **graph_meta},
        )
        graphs = {role: {"fp32": file} for role, file in serving_files.items()}
        export_info[RECOMMEND_ROLE] = {"encoder": export_info[USER_ROLE]["exporter"]}
        graphs[TEXT_ROLE] = {}
        steps("exporting the text encoder")
        graphs[TEXT_ROLE]["fp32"] = graph_file(TEXT_ROLE, "fp32")
        export_info[TEXT_ROLE] = export_text_encoder(
            text_tower,
            tokenizer,
            tmp / graphs[TEXT_ROLE]["fp32"],
            max_length=max_length,
            opset=cfg.opset,
            ir_version=cfg.ir_version,
            metadata=graph_meta,
        )
        bundle_files.write_tokenizer(
            tmp,
            teacher_dir,
            max_length=max_length,
            pad_id=int(tokenizer.pad_token_id or 0),
            pad_token=str(tokenizer.pad_token or "[PAD]"),
        )

        steps("parity gate: PyTorch vs ONNX (fp32)")
        users = _sample(split.sequences.n_users, cfg.parity_users)
        text_idx = _sample(len(texts), cfg.parity_texts)
        parity = {
            "tolerance": cfg.tolerance,
            "min_top10_agreement": cfg.min_top10_agreement,
            "user_encoder": parity_mod.user_parity(
                user_model,
                {role: tmp / files["fp32"] for role, files in graphs.items() if role != TEXT_ROLE},
                item_table,
                split,
                users,
                mcfg.max_len,
            ),
            "text_encoder": parity_mod.text_parity(
                text_tower,
                tmp / graphs[TEXT_ROLE]["fp32"],
                tokenizer,
                tmp / bundle_files.TOKENIZER,
                [texts[i] for i in text_idx],
                max_length,
                # the student is compared with its own PyTorch module; its agreement with
                # the teacher is the distillation report's business
                reference=None if cfg.distill else training_text_vectors[text_idx + 1],
            ),
        }
        parity_mod.gate(
            parity, tolerance=cfg.tolerance, min_top10_agreement=cfg.min_top10_agreement
        )

        for precision in cfg.built_precisions:
            if precision == "fp32":
                continue
            steps(f"{precision} graphs")
            for role in (RECOMMEND_ROLE, USER_ROLE, TEXT_ROLE):
                name = graph_file(role, precision)
                src = tmp / graphs[role]["fp32"]
                if precision == "int8" and role != TEXT_ROLE:
                    # measured on the bundled Bi-LSTM (1 thread, history 50): dynamic int8
                    # ran 0.67 ms per call against 0.50 ms in fp32 -- its weights are too
                    # small to repay quantizing the activations -- and its activation
                    # ranges span the whole batch, so a history's vector would depend on
                    # its batch mates. The int8 variant keeps this graph in fp32.
                    graphs[role][precision] = graphs[role]["fp32"]
                    export_info[role][precision] = {
                        "size": src.stat().st_size,
                        "kept_fp32": "dynamic int8 was slower and batch-dependent",
                    }
                    continue
                if precision == "int8":
                    info = quantize_int8(
                        src, tmp / name, ir_version=cfg.ir_version, target=cfg.target
                    )
                else:
                    info = convert_fp16(src, tmp / name, role=role, ir_version=cfg.ir_version)
                graphs[role][precision] = name
                export_info[role][precision] = {
                    k: v for k, v in info.items() if k in ("size", "fp32_weight_ops_left", "target")
                }

        steps("item matrix, ids, popularity")
        item_matrix = bundle_files.write_item_matrix(tmp, item_table, cfg.item_dtype)
        bundle_files.write_item_ids(tmp, catalog)
        bundle_files.write_popularity(tmp, catalog, mcfg.n_items)

        manifest = bundle_files.new_manifest(
            dims=dims,
            behaviour_vocab=vocab,
            default_behaviour=default_behaviour(split, vocab),
            precisions=list(cfg.built_precisions),
            default_precision=cfg.default_precision,
            graphs=graphs,
            scorers=scorers,
            request_time=bool(mcfg.request_time),  # the gate reads the time to the request
            item_matrix=item_matrix,
            item_ids=bundle_files.ITEM_IDS,
            popularity=bundle_files.POPULARITY,
            tokenizer=bundle_files.TOKENIZER,
            opset=cfg.opset,
            ir_version=cfg.ir_version,
            export=export_info,
            parity=parity,
        )

        if "int8" in cfg.precisions:  # the runtime warns on another architecture
            manifest["quantization_target"] = cfg.target
        if distillation is not None:
            manifest["distillation"] = distillation
        manifest["source"] = {
            "run": str(run_dir.resolve()),
            "dataset": ds.name,
            "fingerprint": ds.fingerprint(),
            "text_encoder": str(teacher_dir.name),
            "distilled": bool(cfg.distill),
        }
        # a complete manifest first, so the runtime can load the bundle for the metrics
        manifest = bundle_files.write_manifest(tmp, manifest)

        steps("test metrics per precision")
        built = cfg.built_precisions
        with warnings.catch_warnings():  # a target for another architecture, on purpose
            warnings.simplefilter("ignore", QuantizationTargetWarning)
            quality = (
                quality_mod.quality_report(tmp, manifest, split, built) if cfg.evaluate else {}
            )
        feed = tokenize(tokenizer, [texts[i] for i in text_idx], max_length)
        quality["text_encoder_agreement"] = quality_mod.text_agreement(tmp, manifest, feed, built)
        quality["training_run_test"] = _run_test_metrics(run_dir)
        manifest["quality"] = quality
        # graphs built only as the gate's and the metrics' fp32 reference leave now
        for precision in built:
            if precision not in cfg.precisions:
                for role in graphs:
                    name = graphs[role].pop(precision)
                    if name not in graphs[role].values():  # int8 may share the fp32 file
                        (tmp / name).unlink()
        manifest["precisions"] = list(cfg.precisions)

        steps("model card and manifest")
        sizes = {p.name: p.stat().st_size for p in tmp.iterdir() if p.name != "manifest.json"}
        atomic_write_text(tmp / bundle_files.CARD, model_card(manifest, sizes))
        manifest = bundle_files.write_manifest(tmp, manifest)

        steps("verifying the bundle")
        bundle_files.verify_bundle(tmp)
        _make_readable(tmp)
    steps.finish()
    return manifest
