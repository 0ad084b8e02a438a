"""Round trip: tiny trained run -> export -> a bundle that passed the parity gate.

One bundle (fp32 + int8 + fp16) is built per module (~1 min on 2 cores) and shared.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from export_fixtures import make_tiny_bundle, make_tiny_run

from edgerec.errors import BundleError, ParityError


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    run = make_tiny_run(root / "run")
    manifest = make_tiny_bundle(root / "bundle", run_dir=run, precisions=("fp32", "int8", "fp16"))
    return run, root / "bundle", manifest


def _sessions(bundle, manifest, role):
    import onnxruntime as ort

    return {
        p: ort.InferenceSession(str(bundle / name), providers=["CPUExecutionProvider"])
        for p, name in manifest["graphs"][role].items()
    }


def _request_feed(bundle, manifest, batch=5, events=9, seed=0):
    """Request arrays as docs/bundle.md defines them: right-aligned histories of random
    lengths, times, request times, the bundle's item matrix."""
    rng = np.random.default_rng(seed)
    dims = manifest["dims"]
    lengths = rng.integers(1, events + 1, batch)
    lengths[0] = events
    real = np.arange(events)[None, :] >= (events - lengths)[:, None]
    times = np.cumsum(rng.integers(0, 10**5, (batch, events)), axis=1) + 10**9
    return {
        "history_rows": np.where(real, rng.integers(1, dims["n_items"] + 1, real.shape), 0),
        "history_behaviours": np.where(real, rng.integers(1, dims["n_behaviours"], real.shape), 0),
        "history_times": np.where(real, times, 0),
        "now": times[:, -1] + rng.integers(0, 10**6, batch),
        "item_matrix": np.load(bundle / "items.npy", allow_pickle=False),
    }, lengths


def test_bundle_has_exactly_the_documented_files_with_matching_checksums(built):
    from edgerec.export.bundle import sha256_file

    _, bundle, manifest = built
    expected = {
        "manifest.json",
        "README.md",
        "items.npy",
        "items.json",
        "popularity.npy",
        "tokenizer.json",
        "recommend.onnx",  # the int8 variant's too (the user side stays fp32)
        "recommend.fp16.onnx",
        "user_encoder.onnx",
        "user_encoder.fp16.onnx",
        "shortlist.onnx",
        "topk.onnx",
        "topk.fp16.onnx",
        "text_encoder.onnx",
        "text_encoder.int8.onnx",
        "text_encoder.fp16.onnx",
    }
    assert {p.name for p in bundle.iterdir()} == expected
    on_disk = json.loads((bundle / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest))
    for name, entry in manifest["files"].items():
        assert entry["size"] == (bundle / name).stat().st_size
        assert entry["sha256"] == sha256_file(bundle / name)
    assert manifest["format"] == "edgerec-bundle" and manifest["format_version"] == 2
    assert manifest["default_precision"] == "int8"
    assert not list(bundle.parent.glob(".bundle.tmp-*")), "temporary directory left behind"


def test_fp32_graphs_pass_the_parity_gate(built):
    _, _, manifest = built
    user, text = manifest["parity"]["user_encoder"], manifest["parity"]["text_encoder"]
    assert user["users"] == 80 and user["top10_identical"] >= 0.995
    assert user["max_abs_user"] <= 1e-4 and user["max_abs_gate"] <= 1e-4
    assert text["max_abs_item_vector"] <= 1e-4
    assert text["tokenizer_identical"] == 1.0
    # the graph encodes with the encoder the model was trained on
    assert text["max_abs_vs_training_vectors"] <= 1e-3


def test_graphs_carry_versions_metadata_and_dynamic_axes(built):
    import onnx

    _, bundle, manifest = built
    assert manifest["ir_version"] == 9 and manifest["opset"] == 18
    for role, graphs in manifest["graphs"].items():
        for precision, name in graphs.items():
            model = onnx.load(str(bundle / name))
            assert model.ir_version == 9
            default = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
            assert default == [18]
            meta = {p.key: p.value for p in model.metadata_props}
            # a variant that reuses the fp32 graph (int8 user encoder) says what it holds
            kept = manifest["export"][role].get(precision, {}).get("kept_fp32")
            assert meta["role"] == role and meta["precision"] == ("fp32" if kept else precision)
            assert meta["edgerec_version"] == manifest["edgerec_version"]
            assert json.loads(meta["dims"])["dim"] == manifest["dims"]["dim"]
            first = model.graph.input[0].type.tensor_type.shape.dim
            assert [d.dim_param for d in first] == [
                "batch",
                "tokens" if role == "text_encoder" else "events",
            ]


def test_user_encoder_variants_agree_with_fp32_on_new_batch_and_sequence_sizes(built):
    _, bundle, manifest = built
    sessions = _sessions(bundle, manifest, "user_encoder")
    max_len = manifest["dims"]["max_len"]
    for batch, events in ((1, 3), (7, 20), (4, max_len + 7)):
        feed, lengths = _request_feed(bundle, manifest, batch, events, seed=batch)
        ref_user, ref_gate, ref_att = sessions["fp32"].run(None, feed)
        read = min(events, max_len)
        assert ref_user.shape == (batch, manifest["dims"]["dim"]) and ref_att.shape == (batch, read)
        assert np.all((ref_gate >= 0) & (ref_gate <= 1))
        # attention is a distribution over each user's events read, zero past them
        np.testing.assert_allclose(ref_att.sum(1), 1.0, atol=1e-5)
        assert np.all(ref_att[np.arange(read)[None, :] >= np.minimum(lengths, read)[:, None]] == 0)
        for precision in ("int8", "fp16"):
            user, gate, _ = sessions[precision].run(None, feed)
            assert user.dtype == np.float32 and np.isfinite(user).all()
            cos = (user * ref_user).sum(1) / (
                np.linalg.norm(user, axis=1) * np.linalg.norm(ref_user, axis=1)
            )
            assert cos.min() > (0.95 if precision == "int8" else 0.999), (precision, cos)


def test_int8_quantizes_the_text_encoder_and_keeps_the_small_user_encoder_fp32(built):
    from edgerec.export.onnx_graph import op_counts

    _, bundle, manifest = built
    text = manifest["export"]["text_encoder"]
    assert text["int8"]["fp32_weight_ops_left"] == {}
    assert text["int8"]["size"] < text["size"]
    # dynamic int8 made the Bi-LSTM slower and batch-dependent: int8 reuses the fp32 graph
    for role in ("recommend", "user_encoder"):
        assert manifest["graphs"][role]["int8"] == f"{role}.onnx"
        assert "kept_fp32" in manifest["export"][role]["int8"]
    ops = op_counts(bundle / "recommend.onnx")
    assert ops.get("LSTM") == 1 and "DynamicQuantizeLinear" not in ops  # one bidirectional
    text_ops = op_counts(bundle / "text_encoder.int8.onnx")
    assert "Attention" not in text_ops and text_ops.get("QAttention", 0) > 0


def test_text_encoder_variants_give_the_fp32_item_vectors(built):
    from tokenizers import Tokenizer

    _, bundle, manifest = built
    tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    texts = ["Kamornox brilo | genre01", "a brand new item nobody has seen | genre02, genre03"]
    enc = tok.encode_batch(texts)
    feed = {
        "input_ids": np.array([e.ids for e in enc], np.int64),
        "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
        "token_type_ids": np.array([e.type_ids for e in enc], np.int64),
    }
    sessions = _sessions(bundle, manifest, "text_encoder")
    ref = sessions["fp32"].run(None, feed)[0]
    assert ref.shape == (2, manifest["dims"]["dim"])
    for precision in ("int8", "fp16"):
        got = sessions[precision].run(None, feed)[0]
        cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
        assert cos.min() > 0.98, (precision, cos)
    agreement = manifest["quality"]["text_encoder_agreement"]
    assert agreement["int8"]["min_cosine"] > 0.98


def test_bundle_quality_per_precision_matches_the_training_run(built):
    _, _, manifest = built
    quality = manifest["quality"]
    assert quality["stage"] == "test"
    # fp32 through the bundle reproduces the trainer's own PyTorch test figures
    assert quality["fp32"]["ndcg@10"] == pytest.approx(
        quality["training_run_test"]["ndcg@10"], abs=1e-6
    )
    for precision in ("int8", "fp16"):
        assert quality[precision]["ndcg@10_drop_vs_fp32"] < 0.1


def test_data_files_hold_ids_titles_popularity_and_a_zero_padding_row(built):
    _, bundle, manifest = built
    catalog = json.loads((built[0] / "catalog.json").read_text())
    items = np.load(bundle / "items.npy", allow_pickle=False)
    assert items.dtype == np.float32 and items.shape == (61, manifest["dims"]["dim"])
    assert np.all(items[0] == 0) and np.abs(items[1:]).sum(1).min() > 0
    ids = json.loads((bundle / "items.json").read_text())
    assert ids["ids"] == catalog["item_ids"] and ids["titles"] == catalog["titles"]
    pop = np.load(bundle / "popularity.npy", allow_pickle=False)
    np.testing.assert_array_equal(pop, np.asarray(catalog["popularity"], np.float32))
    assert manifest["behaviour_vocab"] == catalog["behaviour_vocab"]
    assert manifest["default_behaviour"] in manifest["behaviour_vocab"][1:]
    assert "# edgerec bundle" in (bundle / "README.md").read_text()


def test_every_serving_graph_passed_the_gate_against_pytorch(built):
    _, _, manifest = built
    user = manifest["parity"]["user_encoder"]
    assert set(user["top10_identical_by_graph"]) == {"recommend", "user_encoder"}
    assert all(v >= 0.995 for v in user["top10_identical_by_graph"].values())
    assert user["history_widths"][0] == "all"  # whole histories: the graphs cut the window


def test_recommend_graph_alone_answers_like_the_runtime(built):
    """Another language's runtime needs only the graph and docs/bundle.md: a bare
    onnxruntime session fed as documented gives the Recommender's top-10."""
    import onnxruntime as ort

    from edgerec.runtime import Recommender

    _, bundle, manifest = built
    rec = Recommender.load(bundle, providers="cpu")
    session = ort.InferenceSession(
        str(bundle / "recommend.onnx"), providers=["CPUExecutionProvider"]
    )
    ids = json.loads((bundle / "items.json").read_text())["ids"]
    rng = np.random.default_rng(3)
    for _ in range(20):
        rows = rng.integers(1, len(ids) + 1, int(rng.integers(1, 30)))
        times = np.sort(rng.integers(10**9, 10**9 + 10**7, len(rows)))
        now = int(times[-1]) + 600
        bias = np.zeros((1, len(ids) + 1), np.float32)
        bias[0, 0] = -np.inf
        top_rows, top_scores, _, gate = session.run(
            None,
            {
                "history_rows": rows[None, :],
                "history_behaviours": np.zeros((1, len(rows)), np.int64),
                "history_times": times[None, :],
                "now": np.array([now]),
                "item_matrix": np.load(bundle / "items.npy"),
                "row_bias": bias,
                "mask_seen": np.array([True]),
                "k": np.array([10]),
            },
        )
        got = rec.recommend(
            [ids[r - 1] for r in rows],
            k=10,
            timestamps=times.tolist(),
            now=now,
            behaviours=[manifest["behaviour_vocab"][0]] * len(rows),
        )
        keep = top_scores[0] > -np.inf
        assert got.item_ids == [ids[r - 1] for r in top_rows[0][keep]]
        assert got.gate == pytest.approx(float(gate[0]), abs=1e-6)


def test_a_perturbed_weight_in_the_exported_graph_fails_the_gate(built, tmp_path):
    import onnx
    from onnx import numpy_helper

    from edgerec.data import leave_one_out
    from edgerec.export.parity import gate, user_parity
    from edgerec.export.sources import load_run_dataset
    from edgerec.training.checkpoint import load_run

    run_dir, bundle, manifest = built
    model = onnx.load(str(bundle / "user_encoder.onnx"))
    # a weight that reaches the user vector: the built graph's short-term projection
    target = next(i for i in model.graph.initializer if i.name == "short_w")
    w = numpy_helper.to_array(target).copy()
    w[0, 0] += 0.05
    target.CopyFrom(numpy_helper.from_array(w, target.name))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))

    run = load_run(run_dir)
    split = leave_one_out(load_run_dataset(run))
    table = np.load(bundle / "items.npy", allow_pickle=False)
    users = np.arange(split.sequences.n_users)
    good = user_parity(
        run.model, {"user_encoder": bundle / "user_encoder.onnx"}, table, split, users, 20
    )
    bad = user_parity(run.model, {"user_encoder": broken}, table, split, users, 20)
    gate({"user_encoder": good}, tolerance=1e-4, min_top10_agreement=0.995)
    assert bad["max_abs_user"] > 1e-4
    with pytest.raises(ParityError, match="max_abs_user"):
        gate({"user_encoder": bad}, tolerance=1e-4, min_top10_agreement=0.995)


def test_a_model_changed_after_export_fails_the_gate(built):
    import torch

    from edgerec.data import leave_one_out
    from edgerec.export.parity import gate, user_parity
    from edgerec.export.sources import load_run_dataset
    from edgerec.training.checkpoint import load_run

    run_dir, bundle, _ = built
    run = load_run(run_dir)
    split = leave_one_out(load_run_dataset(run))
    with torch.no_grad():
        run.model.user.gate[2].bias.add_(0.5)
    table = np.load(bundle / "items.npy", allow_pickle=False)
    users = np.arange(split.sequences.n_users)
    report = user_parity(
        run.model, {"recommend": bundle / "recommend.onnx"}, table, split, users, 20
    )
    with pytest.raises(ParityError, match="parity gate failed"):
        gate({"user_encoder": report}, tolerance=1e-4, min_top10_agreement=0.995)


def test_verify_rejects_a_tampered_file_a_stray_file_and_a_path_outside(built, tmp_path):
    from edgerec.export.bundle import verify_bundle

    _, bundle, _ = built
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    verify_bundle(copy)

    data = bytearray((copy / "items.npy").read_bytes())
    data[-1] ^= 0xFF
    (copy / "items.npy").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="items.npy: sha256"):
        verify_bundle(copy)

    shutil.copy(bundle / "items.npy", copy / "items.npy")
    (copy / "extra.bin").write_bytes(b"x")
    with pytest.raises(BundleError, match="differ from the manifest"):
        verify_bundle(copy)
    (copy / "extra.bin").unlink()

    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["item_ids"] = "../items.json"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="not a plain file name"):
        verify_bundle(copy)


def test_the_runtime_loads_each_precision_and_recommends(built):
    runtime = pytest.importorskip("edgerec.runtime")
    _, bundle, manifest = built
    ids = json.loads((bundle / "items.json").read_text())["ids"]
    for precision in manifest["precisions"]:
        rec = runtime.Recommender.load(bundle, providers="cpu", precision=precision)
        recs = rec.recommend(ids[:6], k=5)
        assert len(recs) == 5 and not set(r.item_id for r in recs) & set(ids[:6])
