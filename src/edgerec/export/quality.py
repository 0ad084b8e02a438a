"""Test metrics of each precision, computed from the bundle's own files.

Scores come from the runtime (``edgerec.runtime.Recommender``) loading the bundle,
given each test user's history as original ids; the evaluation protocol masks seen
items. ``text_agreement`` compares reduced-precision text encoders with
the fp32 graph on catalog texts (cosine), since cold-item vectors come from them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgerec.export.config import TEXT_INPUTS
from edgerec.export.parity import session


def runtime_scorer(bundle: Path, manifest: dict, precision: str, split, *, threads: int = 2):
    """Scores through ``edgerec.runtime.Recommender`` on the bundle: original ids,
    behaviour labels and raw timestamps in, every catalog item's score out (the
    runtime's own encoding, item matrix and scoring)."""
    import json

    from edgerec.evaluation.protocol import recommender_scorer
    from edgerec.runtime import Recommender

    rec = Recommender.load(
        bundle, providers="cpu", threads=threads, precision=precision, scoring="graph"
    )
    ids = json.loads((bundle / manifest["item_ids"]).read_text())["ids"]
    return recommender_scorer(rec, ids, manifest["behaviour_vocab"], split)


def quality_report(
    bundle: Path, manifest: dict, split, precisions: tuple[str, ...], *, stage: str = "test"
) -> dict:
    """Metrics per precision, through ``edgerec.runtime`` on the bundle's files."""
    from edgerec.evaluation import evaluate

    out: dict = {"stage": stage, "path": "edgerec.runtime.Recommender on the bundle"}
    for precision in precisions:
        metrics = evaluate(runtime_scorer(bundle, manifest, precision, split), split, stage)
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
