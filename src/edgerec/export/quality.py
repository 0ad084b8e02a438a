"""Test metrics of each precision, computed from the bundle's own files.

Scores come from the runtime (``edgerec.runtime.Recommender``) loading the bundle,
given each test user's history as original ids; without the runtime installed, from
onnxruntime sessions doing what it does (user encoder graph of the precision, stored
item matrix, dot products). Either way the evaluation protocol masks seen items. ``text_agreement`` compares reduced-precision text encoders with
the fp32 graph on catalog texts (cosine), since cold-item vectors come from them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgerec.export.bundle import load_item_matrix
from edgerec.export.config import TEXT_INPUTS
from edgerec.export.parity import run_user_graph, session


def bundle_scorer(bundle: Path, manifest: dict, precision: str, split, *, threads: int = 2):
    from edgerec.training.inputs import stage_inputs, stage_request_gaps

    sess = session(bundle / manifest["graphs"]["user_encoder"][precision], threads)
    items = load_item_matrix(bundle, manifest["item_matrix"])
    max_len = int(manifest["dims"]["max_len"])

    def scorer(users: np.ndarray, stage: str) -> np.ndarray:
        inputs = stage_inputs(split, users, stage, max_len)
        request = stage_request_gaps(split, users, stage)
        user = run_user_graph(sess, *inputs, items, request)[0]
        return user @ items.T

    return scorer


def runtime_scorer(bundle: Path, manifest: dict, precision: str, split, *, threads: int = 2):
    """Scores through ``edgerec.runtime.Recommender``: original ids, behaviour labels and
    raw timestamps in, every catalog item's score out (the runtime's own encoding,
    item matrix and scoring)."""
    import json

    from edgerec.runtime import Recommender

    rec = Recommender.load(
        bundle, providers="cpu", threads=threads, precision=precision, scoring="numpy"
    )
    ids = json.loads((bundle / manifest["item_ids"]).read_text())["ids"]
    index = {item_id: i + 1 for i, item_id in enumerate(ids)}
    vocab = manifest["behaviour_vocab"]
    seq = split.sequences
    n = len(ids)

    def scorer(users: np.ndarray, stage: str) -> np.ndarray:
        starts, ends = seq.offsets[users], split.history_end(stage)[users]
        histories, behaviours, timestamps = [], [], []
        for s, e in zip(starts, ends, strict=True):
            histories.append([ids[i - 1] for i in seq.items[s:e]])
            behaviours.append([vocab[b] for b in seq.behaviours[s:e]])
            timestamps.append(seq.timestamps[s:e].tolist())
        now = seq.timestamps[ends].tolist()  # the request: when the held-out event happened
        results = rec.recommend_batch(
            histories,
            k=n,
            exclude_seen=False,
            behaviours=behaviours,
            timestamps=timestamps,
            now=now,
        )
        scores = np.full((len(users), n + 1), -np.inf, dtype=np.float32)
        for row, recs in enumerate(results):
            cols = [index[r.item_id] for r in recs]
            scores[row, cols] = [r.score for r in recs]
        return scores

    return scorer


def quality_report(
    bundle: Path, manifest: dict, split, precisions: tuple[str, ...], *, stage: str = "test"
) -> dict:
    """Metrics per precision, through ``edgerec.runtime`` when it is importable."""
    from edgerec.evaluation import evaluate

    try:
        import edgerec.runtime  # noqa: F401

        make_scorer, path = runtime_scorer, "edgerec.runtime.Recommender on the bundle"
    except ImportError:
        make_scorer, path = bundle_scorer, "onnxruntime sessions on the bundle files"
    out: dict = {"stage": stage, "path": path}
    for precision in precisions:
        metrics = evaluate(make_scorer(bundle, manifest, precision, split), split, stage)
        out[precision] = {k: round(float(v), 6) for k, v in metrics.items()}
    base = out.get("fp32", {}).get("ndcg@10")
    for precision in precisions:
        if precision != "fp32" and base:
            drop = (base - out[precision]["ndcg@10"]) / base
            out[precision]["ndcg@10_drop_vs_fp32"] = round(float(drop), 6)
    return out


def text_agreement(
    bundle: Path, manifest: dict, feed: dict[str, np.ndarray], precisions: tuple[str, ...]
) -> dict:
    """Mean/min cosine of each reduced-precision text encoder to the fp32 graph."""
    graphs = manifest["graphs"]["text_encoder"]
    ref = session(bundle / graphs["fp32"]).run(None, {n: feed[n] for n in TEXT_INPUTS})[0]
    out = {}
    for precision in precisions:
        if precision == "fp32":
            continue
        got = session(bundle / graphs[precision]).run(None, {n: feed[n] for n in TEXT_INPUTS})[0]
        cos = (got * ref).sum(1) / (
            np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1) + 1e-12
        )
        out[precision] = {
            "texts": int(len(ref)),
            "mean_cosine": round(float(cos.mean()), 6),
            "min_cosine": round(float(cos.min()), 6),
        }
    return out
