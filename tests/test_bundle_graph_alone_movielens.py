"""A bundle's graphs answer a request with onnxruntime alone, on real data: for 200
MovieLens 100K histories, a bare ``onnxruntime.InferenceSession`` of ``recommend.onnx``
fed exactly as docs/bundle.md says gives ``Recommender.recommend``'s top-10 (what a
runtime in another language does: map ids to rows, run, map rows back)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
DATA = os.environ.get("EDGEREC_DATA_DIR")
pytestmark = pytest.mark.skipif(
    not DATA or not (Path(DATA) / "movielens" / "ml-100k" / "u.data").is_file(),
    reason="set EDGEREC_DATA_DIR to the folder holding movielens/ml-100k",
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from export_fixtures import TINY_MODEL, TINY_TRAIN, tiny_text_encoder

    from edgerec.data import leave_one_out, load_dataset
    from edgerec.export import export_bundle
    from edgerec.training.config import ModelConfig, TrainConfig
    from edgerec.training.trainer import train

    root = tmp_path_factory.mktemp("ml100k-alone")
    ds = load_dataset("movielens-100k", Path(DATA) / "movielens" / "ml-100k")
    encoder = str(tiny_text_encoder(root / "tiny-bert"))
    train_cfg = {**TINY_TRAIN, "epochs": 1, "batch_size": 512, "text_encoder": encoder}
    train(
        ds,
        root / "run",
        ModelConfig(**{**TINY_MODEL, "max_len": 50}),
        TrainConfig(**train_cfg),
        progress=False,
    )
    export_bundle(root / "run", root / "bundle", precisions=("fp32",), dataset=ds, evaluate=False)
    return ds, leave_one_out(ds), root / "bundle"


def test_recommend_graph_alone_gives_the_runtimes_top10_for_200_real_histories(world):
    import onnxruntime as ort

    from edgerec.runtime import Recommender

    ds, split, bundle = world
    manifest = json.loads((bundle / "manifest.json").read_text())
    ids = json.loads((bundle / "items.json").read_text())["ids"]
    row_of = {x: i + 1 for i, x in enumerate(ids)}
    vocab = manifest["behaviour_vocab"]
    matrix = np.load(bundle / "items.npy", allow_pickle=False).astype(np.float32)
    bias = np.zeros((1, matrix.shape[0]), np.float32)
    bias[0, 0] = -np.inf  # row 0 is padding
    session = ort.InferenceSession(
        str(bundle / "recommend.onnx"), providers=["CPUExecutionProvider"]
    )
    rec = Recommender.load(bundle, providers="cpu")
    seq = split.sequences
    ends = split.history_end("test")
    same = 0
    for user in range(200):
        events = slice(max(seq.offsets[user], ends[user] - 60), ends[user])
        history = [ds.catalog.item_ids[i - 1] for i in seq.items[events]]
        behaviours = [vocab[b] for b in seq.behaviours[events]]
        times = seq.timestamps[events].tolist()
        now = int(seq.timestamps[ends[user]])
        top_rows, top_scores, _, gate = session.run(
            None,
            {
                "history_rows": np.array([[row_of[x] for x in history]], np.int64),
                "history_behaviours": np.array([[vocab.index(b) for b in behaviours]], np.int64),
                "history_times": np.array([times], np.int64),
                "now": np.array([now], np.int64),
                "item_matrix": matrix,
                "row_bias": bias,
                "mask_seen": np.array([True]),
                "k": np.array([10], np.int64),
            },
        )
        alone = [ids[r - 1] for r, s in zip(top_rows[0], top_scores[0], strict=True) if s > -np.inf]
        got = rec.recommend(history, k=10, behaviours=behaviours, timestamps=times, now=now)
        same += got.item_ids == alone
        assert got.gate == pytest.approx(float(gate[0]), abs=1e-6)
    assert same == 200
