"""The export's small pieces, without exporting a model (fast)."""

from __future__ import annotations

import numpy as np
import pytest

from edgerec.errors import BundleError, ParityError
from edgerec.export.config import ExportConfig, graph_file, parse_precisions


def test_precisions_accept_repeats_and_comma_lists_in_canonical_order():
    assert parse_precisions(["int8,fp32", "fp16", "int8"]) == ("fp32", "int8", "fp16")
    assert parse_precisions("INT8") == ("int8",)
    with pytest.raises(ValueError, match="unknown precision 'bf16'"):
        parse_precisions("fp32,bf16")
    with pytest.raises(ValueError, match="no precision given"):
        parse_precisions([" , "])


def test_fp32_is_always_built_but_only_requested_precisions_ship():
    cfg = ExportConfig(precisions=("int8",))
    assert cfg.precisions == ("int8",) and cfg.built_precisions == ("fp32", "int8")
    assert cfg.default_precision == "int8"
    assert ExportConfig(precisions=("fp16",)).default_precision == "fp16"
    assert ExportConfig(precisions=("fp32", "fp16")).default_precision == "fp32"


def test_ir_version_follows_the_opset_and_bad_settings_are_named():
    assert ExportConfig().ir_version == 9 and ExportConfig().opset == 18
    assert ExportConfig(opset=21).ir_version == 10
    with pytest.raises(ValueError, match="opset must be between 17 and 21"):
        ExportConfig(opset=16)
    with pytest.raises(ValueError, match="tolerance must be > 0"):
        ExportConfig(tolerance=0)
    with pytest.raises(ValueError, match="item dtype"):
        ExportConfig(item_dtype="bf16")


def test_graph_file_names_follow_the_bundle_format():
    assert graph_file("user_encoder", "fp32") == "user_encoder.onnx"
    assert graph_file("text_encoder", "int8") == "text_encoder.int8.onnx"
    with pytest.raises(ValueError):
        graph_file("scorer", "fp32")


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
def test_item_matrix_round_trips_within_its_precision(tmp_path, dtype):
    from edgerec.export.bundle import load_item_matrix, write_item_matrix

    rng = np.random.default_rng(0)
    table = (rng.standard_normal((50, 8)) * rng.uniform(0.01, 5, (50, 1))).astype(np.float32)
    table[0] = 0
    table[7] = 0  # an all-zero row must survive int8 (scale 0, no division by zero)
    entry = write_item_matrix(tmp_path, table, dtype)
    back = load_item_matrix(tmp_path, entry)
    assert back.dtype == np.float32 and back.shape == table.shape
    assert np.all(back[0] == 0) and np.all(back[7] == 0)
    rel = np.abs(back - table).max(axis=1) / np.maximum(np.abs(table).max(axis=1), 1e-12)
    limit = {"float32": 0, "float16": 1e-3, "int8": 0.5 / 127 + 1e-6}[dtype]
    assert rel.max() <= limit
    assert (entry["scale_file"] is not None) == (dtype == "int8")
    assert np.load(tmp_path / "items.npy", allow_pickle=False).dtype == np.dtype(dtype)


def test_item_matrix_with_a_nonzero_padding_row_is_refused(tmp_path):
    from edgerec.export.bundle import write_item_matrix

    with pytest.raises(BundleError, match="row 0"):
        write_item_matrix(tmp_path, np.ones((3, 2), np.float32), "float32")


def test_gate_lists_every_failed_check_and_passes_good_figures():
    from edgerec.export.parity import gate

    good = {
        "user_encoder": {
            "users": 10,
            "max_abs_user": 1e-6,
            "max_abs_gate": 1e-7,
            "max_abs_attention": 1e-7,
            "top10_identical": 1.0,
        },
        "text_encoder": {
            "max_abs_item_vector": 1e-6,
            "tokenizer_identical": 1.0,
            "max_abs_vs_training_vectors": 1e-6,
        },
    }
    gate(good, tolerance=1e-4, min_top10_agreement=0.995)
    bad = {
        "user_encoder": {**good["user_encoder"], "max_abs_gate": float("nan")},
        "text_encoder": {**good["text_encoder"], "tokenizer_identical": 0.9},
    }
    bad["user_encoder"]["top10_identical"] = 0.9
    with pytest.raises(ParityError) as info:
        gate(bad, tolerance=1e-4, min_top10_agreement=0.995)
    message = str(info.value)
    assert "max_abs_gate = nan" in message
    assert "identical top-10 lists for 90.00%" in message
    assert "tokenises 10.00% of texts differently" in message


def test_model_card_reports_shipped_and_reference_precisions():
    from edgerec.export.card import model_card

    manifest = {
        "edgerec_version": "0.1.0",
        "created_at": "2026-01-01T00:00:00Z",
        "dims": {"dim": 8, "n_items": 3},
        "behaviour_vocab": ["none", "click"],
        "default_behaviour": "click",
        "opset": 18,
        "ir_version": 9,
        "item_matrix": {"dtype": "float32"},
        "precisions": ["int8"],
        "quality": {
            "stage": "test",
            "fp32": {"hr@10": 0.5, "ndcg@10": 0.25},
            "int8": {"hr@10": 0.5, "ndcg@10": 0.2475, "ndcg@10_drop_vs_fp32": 0.01},
        },
        "source": {"dataset": "toy"},
    }
    card = model_card(manifest, {"items.npy": 2048})
    assert "# edgerec bundle: toy" in card and "| `items.npy` | 2.0 KB |" in card
    assert "| fp32 (reference, not shipped) | 0.5000 | 0.2500 | - |" in card
    assert "| int8 | 0.5000 | 0.2475 | 1.00% |" in card
