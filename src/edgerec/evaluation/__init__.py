"""The evaluation protocol, its metrics and the non-neural baselines (numpy only)."""

from edgerec.evaluation.baselines import BASELINES, make_baseline
from edgerec.evaluation.metrics import rank_metrics, top_k
from edgerec.evaluation.protocol import evaluate, evaluate_both, mask_seen

__all__ = [
    "BASELINES",
    "evaluate",
    "evaluate_both",
    "make_baseline",
    "mask_seen",
    "rank_metrics",
    "top_k",
]
