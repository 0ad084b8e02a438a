"""The runtime on a bundle made by the real export pipeline, checked against the PyTorch model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from runtime_helpers import real_tiny_bundle

from edgerec.runtime import Recommender


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    return real_tiny_bundle(tmp_path_factory.mktemp("rt-real"))


@pytest.fixture(scope="module")
def world(bundle):
    """The tiny run's data set, split and trained model."""
    from export_fixtures import tiny_dataset

    from edgerec.data.split import leave_one_out
    from edgerec.training.checkpoint import load_run

    ds = tiny_dataset()
    return ds, leave_one_out(ds), load_run(bundle.parent / f"{bundle.name}-run")


def histories_as_an_app_has_them(ds, split, users):
    """Original ids, behaviour names and timestamps of each user's test-stage history."""
    seq = split.sequences
    end = split.history_end("test")
    ids = ds.catalog.item_ids
    out = []
    for u in users:
        sl = slice(seq.offsets[u], end[u])
        out.append(
            (
                [
                    ids[i - 1].item() if hasattr(ids[i - 1], "item") else ids[i - 1]
                    for i in seq.items[sl]
                ],
                [ds.behaviour_vocab[b] for b in seq.behaviours[sl]],
                seq.timestamps[sl].tolist(),
            )
        )
    return out


def test_fp32_runtime_ranks_like_the_pytorch_model(bundle, world):
    """Same top-10 as the trained model in eager mode, from original ids/behaviours/times."""
    import torch

    from edgerec.training.inputs import stage_inputs

    ds, split, run = world
    rec = Recommender.load(bundle, providers="cpu", precision="fp32", threads=1)
    users = np.arange(ds.n_users)
    items, beh, gaps, lengths = stage_inputs(split, users, "test", rec.max_len)
    with torch.no_grad():
        enc = run.model.encode_users(*(torch.from_numpy(a) for a in (items, beh, gaps, lengths)))
        scores = run.model.score_all(enc.user).numpy()
    scores[:, 0] = -np.inf
    apps = histories_as_an_app_has_them(ds, split, users)
    got = rec.recommend_batch(
        [h for h, _, _ in apps],
        k=10,
        exclude_seen=False,
        behaviours=[b for _, b, _ in apps],
        timestamps=[t for _, _, t in apps],
    )
    ids = ds.catalog.item_ids
    same = 0
    for u, recs in zip(users, got, strict=True):
        want = np.argsort(-scores[u], kind="stable")[:10]
        same += recs.item_ids == [ids[i - 1] for i in want]
        np.testing.assert_allclose(
            [r.score for r in recs], np.sort(scores[u])[::-1][:10], rtol=1e-4, atol=1e-4
        )
        assert recs.gate == pytest.approx(float(enc.gate[u]), abs=1e-4)
    assert same / len(users) >= 0.98


def test_default_int8_bundle_agrees_with_fp32(bundle, world):
    ds, split, _ = world
    fp32 = Recommender.load(bundle, providers="cpu", precision="fp32")
    int8 = Recommender.load(bundle, providers="cpu")
    assert int8.precision == json.loads((bundle / "manifest.json").read_text())["default_precision"]
    apps = histories_as_an_app_has_them(ds, split, np.arange(40))
    overlap = [
        len(
            set(fp32.recommend(h, 10, behaviours=b, timestamps=t).item_ids)
            & set(int8.recommend(h, 10, behaviours=b, timestamps=t).item_ids)
        )
        for h, b, t in apps
    ]
    assert np.mean(overlap) >= 8


def test_cold_item_gets_the_trained_text_vector(bundle, world):
    """add_items through tokenizer.json + text_encoder.onnx reproduces the item tower's text
    projection for a catalog text, so a cold item lands where the model would put it."""
    import torch

    ds, _, run = world
    rec = Recommender.load(bundle, providers="cpu", precision="fp32")
    text = ds.catalog.texts[4]
    new_id = "cold-copy-of-5" if isinstance(rec.item_ids[0], str) else 10_005
    rec.add_items([new_id], [text])
    got = rec.item_vectors([new_id])[0]
    with torch.no_grad():
        want = run.model.items.project_text(run.model.items.text_embeddings[5]).numpy()
    cos = float(got @ want / (np.linalg.norm(got) * np.linalg.norm(want)))
    assert cos > 0.999


def test_add_items_int8_text_encoder_and_explain(bundle, world):
    ds, split, _ = world
    rec = Recommender.load(bundle, providers="cpu")
    n = rec.n_items
    texts = [f"{t} (new edition)" for t in ds.catalog.texts[:20]]
    assert rec.add_items(list(range(50_000, 50_020)), texts) == 20
    assert rec.n_items == n + 20
    h, b, t = histories_as_an_app_has_them(ds, split, [3])[0]
    ex = rec.explain(h, k=5, behaviours=b, timestamps=t)
    assert len(ex.items) == 5 and ex.events and ex.horizon in ("long-term", "short-term")


def test_cli_on_the_exported_bundle(bundle, capsys):
    from edgerec.cli import main

    main(["recommend", str(bundle), "--history", "1,2,3", "--k", "4", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert len(out["items"]) == 4 and out["fallback"] is None
    main(["inspect", str(bundle), "--json"])
    assert json.loads(capsys.readouterr().out)["verified"] is True
