"""The hand-built user-encoder graph computes what the PyTorch model computes."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from edgerec.errors import EdgerecError  # noqa: E402
from edgerec.export.onnx_graph import op_counts  # noqa: E402
from edgerec.export.onnx_user import export_user_encoder  # noqa: E402
from edgerec.export.onnx_user_graph import build_user_encoder, position_tables  # noqa: E402
from edgerec.features import N_GAP_BUCKETS  # noqa: E402
from edgerec.training.config import ModelConfig  # noqa: E402
from edgerec.training.model import InterestModel  # noqa: E402

MAX_LEN = 12


def trained_looking_model(**kw) -> InterestModel:
    """Random weights large enough that every part (gate, both horizons, LayerNorm
    affine, attention) moves the output, unlike a fresh init where some barely do."""
    torch.manual_seed(0)
    cfg = ModelConfig(
        n_items=40,
        n_behaviours=6,
        n_categories=5,
        text_dim=8,
        dim=16,
        hidden=8,
        max_len=MAX_LEN,
        window=4,
        **kw,
    )
    model = InterestModel(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
        model.items.text_embeddings.normal_()
    return model


def histories(batch: int, width: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, width + 1, batch)
    lengths[0], lengths[-1] = width, 1
    valid = np.arange(width)[None, :] < lengths[:, None]
    items = np.where(valid, rng.integers(1, 41, (batch, width)), 0)
    behaviours = np.where(valid, rng.integers(1, 6, (batch, width)), 0)
    gaps = np.where(valid, rng.integers(1, N_GAP_BUCKETS, (batch, width)), 0)
    return items, behaviours, gaps, lengths.astype(np.int64)


def run_both(model: InterestModel, width: int, batch: int = 9, seed: int = 0):
    proto = build_user_encoder(model, opset=18)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    items, behaviours, gaps, lengths = histories(batch, width, seed)
    request = np.random.default_rng(seed).integers(0, N_GAP_BUCKETS, batch)
    with torch.no_grad():
        table = model.items()
        enc = model.encode_users(
            *(torch.from_numpy(a) for a in (items, behaviours, gaps, lengths)),
            item_table=table,
            request_gaps=torch.from_numpy(request),
        )
    feeds = {
        "items": items,
        "behaviours": behaviours,
        "gaps": gaps,
        "lengths": lengths,
        "item_table": table.numpy(),
    }
    if model.cfg.request_time:
        feeds["request_gaps"] = request
    return session.run(["user", "gate", "attention"], feeds), enc


VARIANTS = [
    {},
    {"short_term": "window"},
    {"gate": "scalar"},
    {"request_time": True},
    {"short_term": "window", "request_time": True, "gate": "scalar"},
    {"long_term": "before_window"},
    {"long_term": "before_window", "short_term": "window", "request_time": True},
    {"ablate": ("long",)},
    {"ablate": ("short",)},
    {"ablate": ("aux", "text")},
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: ",".join(f"{k}={v[k]}" for k in v))
@pytest.mark.parametrize("width", [MAX_LEN, 5, 1])
def test_built_graph_matches_pytorch_for_every_model_variant_and_width(variant, width):
    model = trained_looking_model(**variant)
    (user, gate, attention), enc = run_both(model, width)
    np.testing.assert_allclose(user, enc.user.numpy(), atol=2e-5, rtol=1e-4)
    np.testing.assert_allclose(gate, enc.gate.numpy(), atol=1e-5)
    np.testing.assert_allclose(attention, enc.attention.numpy(), atol=1e-6)
    assert np.abs(enc.user.numpy()).max() > 0.1  # the comparison is not between zeros


def test_padding_rows_of_a_batch_do_not_change_a_history_vector():
    model = trained_looking_model()
    proto = build_user_encoder(model, opset=18)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    items, behaviours, gaps, lengths = histories(6, MAX_LEN, seed=4)
    table = model.items().detach().numpy()
    request = np.random.default_rng(4).integers(0, 20, 6).astype(np.int64)
    takes_request = "request_gaps" in {i.name for i in session.get_inputs()}

    def run(sl, width):
        feed = {
            "items": items[sl, :width],
            "behaviours": behaviours[sl, :width],
            "gaps": gaps[sl, :width],
            "lengths": lengths[sl],
            "item_table": table,
        }
        if takes_request:
            feed["request_gaps"] = request[sl]
        return session.run(["user"], feed)[0]

    batch = run(slice(None), MAX_LEN)
    for row in range(6):
        alone = run(slice(row, row + 1), int(lengths[row]))
        np.testing.assert_allclose(batch[row], alone[0], atol=1e-6)


def test_built_graph_is_one_bidirectional_lstm_and_few_nodes():
    """The point of the builder: no per-direction LSTMs and reversal gathers, and a
    small node count (each node costs microseconds per request on CPU)."""
    proto = build_user_encoder(trained_looking_model(), opset=18)
    counts = op_counts(proto)
    assert counts["LSTM"] == 1
    lstm = next(n for n in proto.graph.node if n.op_type == "LSTM")
    attrs = {a.name: a for a in lstm.attribute}
    assert attrs["direction"].s == b"bidirectional"
    assert len(lstm.input) >= 5 and lstm.input[4]  # sequence_lens is wired
    assert sum(counts.values()) <= 40


def test_position_tables_mask_padding_and_average_the_last_window():
    attention_mask, short_masks = position_tables(6, 3, "end")
    assert np.isneginf(attention_mask[2, 2:]).all() and (attention_mask[2, :2] == 0).all()
    np.testing.assert_allclose(short_masks[5, 0], [0, 0, 1 / 3, 1 / 3, 1 / 3, 0])
    np.testing.assert_allclose(short_masks[2, 0], [0.5, 0.5, 0, 0, 0, 0])
    assert short_masks[5, 1].argmax() == 4
    _, window_start = position_tables(6, 3, "window_start")
    assert window_start[5, 1].argmax() == 2 and window_start[2, 1].argmax() == 0


@pytest.mark.parametrize("variant", [{}, {"request_time": True}], ids=["default", "request"])
def test_export_uses_the_builder_and_falls_back_to_torch_onnx_for_unknown_models(
    monkeypatch, variant
):
    model = trained_looking_model(**variant)
    table = model.items().detach().numpy()
    kwargs = dict(item_table=table, n_behaviours=6, n_gap_buckets=N_GAP_BUCKETS, opset=18)
    built, info = export_user_encoder(model, ir_version=9, **kwargs)
    assert info["exporter"] == "edgerec graph builder"

    model.cfg.short_term = "something new"  # a variant the builder cannot write
    with pytest.raises(EdgerecError, match="short_term"):
        build_user_encoder(model, opset=18)
    model.cfg.short_term = "bidirectional"
    monkeypatch.setattr(
        "edgerec.export.onnx_user_graph._check_supported",
        lambda tower: (_ for _ in ()).throw(EdgerecError("graph builder: not this one")),
    )
    exported, info = export_user_encoder(model, ir_version=9, **kwargs)
    assert info["exporter"].startswith("torch.onnx")
    assert "not this one" in info["fallback_reason"]
    cpu = ["CPUExecutionProvider"]
    a = ort.InferenceSession(built.SerializeToString(), providers=cpu)
    b = ort.InferenceSession(exported.SerializeToString(), providers=cpu)
    items, behaviours, gaps, lengths = histories(4, MAX_LEN, seed=2)
    feeds = dict(items=items, behaviours=behaviours, gaps=gaps, lengths=lengths, item_table=table)
    if model.cfg.request_time:
        feeds["request_gaps"] = np.array([0, 3, 17, 30], np.int64)
        assert {i.name for i in b.get_inputs()} == set(feeds)
    np.testing.assert_allclose(a.run(["user"], feeds)[0], b.run(["user"], feeds)[0], atol=2e-5)
