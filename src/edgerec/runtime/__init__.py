"""The torch-free runtime: load a bundle, recommend, add and remove items.

Depends only on numpy, onnxruntime (or onnxruntime-gpu) and tokenizers, plus edgerec's
dependency-free ``errors``, ``io`` and ``features`` modules -- never on torch, pandas,
transformers, optimum or onnx, so an app can embed it with a small install::

    pip install edgerec[cpu]

    from edgerec.runtime import Recommender
    rec = Recommender.load("bundle/")
    for r in rec.recommend([50, 172, 133], k=10):
        print(r.item_id, r.title, r.score)
"""

from edgerec.errors import BundleError, EdgerecError, UnknownItemError
from edgerec.runtime.providers import ProviderError
from edgerec.runtime.recommender import Recommender
from edgerec.runtime.results import (
    Driver,
    EventInfluence,
    Explanation,
    ItemExplanation,
    Recommendation,
    RecommendationList,
    UserVector,
)

__all__ = [
    "BundleError",
    "Driver",
    "EdgerecError",
    "EventInfluence",
    "Explanation",
    "ItemExplanation",
    "ProviderError",
    "Recommendation",
    "RecommendationList",
    "Recommender",
    "UnknownItemError",
    "UserVector",
]
