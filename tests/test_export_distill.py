"""Distillation on a tiny model: students shrink, learn, and export through the same gate.

The run uses the tiny random BERT as the text teacher so the test takes seconds; the
students' schedules come from ``export_fixtures.tiny_distill_config``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from export_fixtures import make_tiny_bundle, make_tiny_run, tiny_distill_config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_tiny_run(tmp_path_factory.mktemp("distill") / "run", text_encoder="tiny")


@pytest.fixture(scope="module")
def teacher(run):
    from edgerec.data import leave_one_out
    from edgerec.export.onnx_text import TextTower
    from edgerec.export.sources import load_run_dataset, run_text_encoder
    from edgerec.training.checkpoint import load_run
    from edgerec.training.text_encoder import load_encoder

    loaded = load_run(run)
    path, max_length = run_text_encoder(loaded)
    tokenizer, bert = load_encoder(path)
    tower = TextTower(bert, loaded.model.items.text_proj).eval()
    split = leave_one_out(load_run_dataset(loaded))
    return loaded, tower, tokenizer, split, max_length


def test_augmentations_shuffle_list_fields_and_drop_fields_but_keep_the_title():
    from edgerec.export.distill import augment_text

    rng = np.random.default_rng(0)
    text = "Toy Story (1995). Genres: Animation, Children's, Comedy."
    variants = {augment_text(text, rng) for _ in range(40)}
    assert len(variants) >= 3
    assert all(v.startswith("Toy Story (1995).") for v in variants)
    assert "Toy Story (1995)." in variants  # genres field dropped
    shuffled = [v for v in variants if "Genres:" in v and v != text]
    assert shuffled and all(
        sorted(v.split("Genres: ")[1].rstrip(".").split(", "))
        == ["Animation", "Children's", "Comedy"]
        for v in shuffled
    )
    assert augment_text("single", rng) == "single"


def test_text_student_starts_from_whole_teacher_heads_and_its_last_layer(teacher):
    from edgerec.export.distill import make_text_student

    _, tower, _, _, _ = teacher
    init = make_text_student(tower, tiny_distill_config(text_hidden=16))
    # the tiny teacher is 32 wide with heads of 16: the student keeps one whole head
    assert init.bert.config.num_attention_heads == 1
    kept = init.bert.encoder.layer[0].attention.self.query.weight
    source = tower.bert.encoder.layer[-1].attention.self.query.weight
    assert kept.shape == (16, 16) and torch_equal(kept, source[:16, :16])
    emb = init.bert.embeddings.word_embeddings.weight
    assert torch_equal(emb, tower.bert.embeddings.word_embeddings.weight[:, :16])
    with pytest.raises(ValueError, match="multiple of the teacher's head width"):
        make_text_student(tower, tiny_distill_config(text_hidden=24))


def test_user_student_halves_the_lstm_and_shares_the_teacher_item_tower(teacher):
    from edgerec.export.distill import make_user_student

    loaded, *_ = teacher
    student = make_user_student(loaded.model, tiny_distill_config())
    assert student.cfg.hidden == loaded.model.cfg.hidden // 2
    assert student.user.lstm_fwd.hidden_size == student.cfg.hidden
    for name, p in student.items.state_dict().items():
        assert torch_equal(p, loaded.model.items.state_dict()[name])
    assert not any(p.requires_grad for p in student.items.parameters())
    assert torch_equal(student.user.gap_emb.weight, loaded.model.user.gap_emb.weight)
    # a pruned teacher: each of the 4 gate blocks keeps the teacher's first units
    h_t, h_s = loaded.model.cfg.hidden, student.cfg.hidden
    t_hh, s_hh = loaded.model.user.lstm_fwd.weight_hh_l0, student.user.lstm_fwd.weight_hh_l0
    for gate in range(4):
        block = t_hh[gate * h_t : gate * h_t + h_s, :h_s]
        assert torch_equal(s_hh[gate * h_s : (gate + 1) * h_s], block)
    # a layer reading [fwd; bwd] outputs keeps the same units of both halves
    t_long, s_long = loaded.model.user.long_out.weight, student.user.long_out.weight
    assert torch_equal(s_long[:, h_s:], t_long[:, h_t : h_t + h_s])


@pytest.fixture(scope="module")
def distilled(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("distilled") / "bundle"
    manifest = make_tiny_bundle(
        out,
        run_dir=run,
        precisions=("int8",),
        distill=True,
        distill_config=tiny_distill_config(text_hidden=16),
    )
    return out, manifest


def test_distillation_reduces_both_students_losses_and_reports_their_quality(distilled):
    _, manifest = distilled
    text, user = manifest["distillation"]["text_encoder"], manifest["distillation"]["user_encoder"]
    for report in (text, user):
        assert report["student_parameters"] < report["teacher_parameters"]
        assert report["loss_last"] < report["loss_first"]
        for key in ("teacher_test_ndcg@10", "student_test_ndcg@10"):
            assert 0.0 <= report[key] <= 1.0
    assert text["hidden"] == 16 and text["layers"] == 1 and text["heldout_texts"] == 6
    assert -1.0 <= text["heldout_min_cosine"] <= text["heldout_mean_cosine"] <= 1.0
    assert user["hidden"] == 24 and user["teacher_hidden"] == 48
    assert user["test_users"] == 80 and user["test_min_cosine"] <= user["test_mean_cosine"]


def test_distilled_int8_only_bundle_passes_the_gate_and_ships_only_int8(distilled):
    import onnx

    bundle, manifest = distilled
    assert manifest["precisions"] == ["int8"] and manifest["default_precision"] == "int8"
    assert manifest["graphs"]["user_encoder"] == {"int8": "user_encoder.onnx"}  # kept fp32
    assert manifest["graphs"]["text_encoder"] == {"int8": "text_encoder.int8.onnx"}
    names = {p.name for p in bundle.iterdir()}
    assert "text_encoder.onnx" not in names and "text_encoder.int8.onnx" in names
    # the gate ran on the fp32 student graphs before they were dropped
    assert manifest["parity"]["user_encoder"]["max_abs_user"] <= 1e-4
    assert manifest["parity"]["text_encoder"]["max_abs_item_vector"] <= 1e-4
    assert "fp32" in manifest["quality"] and "ndcg@10_drop_vs_fp32" in manifest["quality"]["int8"]
    meta = {p.key: p.value for p in onnx.load(str(bundle / "user_encoder.onnx")).metadata_props}
    assert json.loads(meta["hidden"]) == 24
    assert "(reference, not shipped)" in (bundle / "README.md").read_text()


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))
