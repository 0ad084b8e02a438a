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


def test_text_student_started_from_the_teacher_is_smaller_and_reduces_its_loss(teacher):
    from edgerec.export.distill import distill_text_encoder, make_text_student

    loaded, tower, tokenizer, split, max_length = teacher
    cfg = tiny_distill_config(text_hidden=16)  # the tiny teacher: 32 wide, heads of 16
    init = make_text_student(tower, cfg)
    # layer dropping keeps the teacher's last layer; truncation its leading features
    kept = init.bert.encoder.layer[0].attention.self.query.weight
    source = tower.bert.encoder.layer[-1].attention.self.query.weight
    assert kept.shape == (16, 16)
    assert torch_equal(kept, source[:16, :16])
    assert init.bert.config.num_attention_heads == 1  # whole teacher heads, width 16
    with pytest.raises(ValueError, match="multiple of the teacher's head width"):
        make_text_student(tower, tiny_distill_config(text_hidden=24))

    texts = json.loads((loaded.path / "catalog.json").read_text())["texts"]
    student, report = distill_text_encoder(
        tower, tokenizer, texts, max_length=max_length, config=cfg, model=loaded.model, split=split
    )
    assert report["student_parameters"] < report["teacher_parameters"]
    assert report["loss_last"] < report["loss_first"]
    assert report["heldout_texts"] == 6
    assert -1.0 <= report["heldout_min_cosine"] <= report["heldout_mean_cosine"] <= 1.0
    for key in ("teacher_test_ndcg@10", "student_test_ndcg@10"):
        assert 0.0 <= report[key] <= 1.0
    assert not student.training


def test_user_student_has_half_the_lstm_and_reduces_its_kd_loss(teacher):
    from edgerec.export.distill import distill_user_encoder

    loaded, _, _, split, _ = teacher
    cfg = tiny_distill_config()
    cfg.user_epochs = 3
    student, report = distill_user_encoder(loaded.model, split, config=cfg)
    assert student.cfg.hidden == loaded.model.cfg.hidden // 2
    assert report["student_parameters"] < report["teacher_parameters"]
    assert report["loss_last"] < report["loss_first"]
    assert report["test_users"] == split.sequences.n_users
    # the item tower is the teacher's, untouched: the bundle's item matrix serves both
    for name, p in student.items.state_dict().items():
        assert torch_equal(p, loaded.model.items.state_dict()[name])


def test_distilled_int8_only_bundle_passes_the_gate_and_ships_only_int8(run, tmp_path):
    manifest = make_tiny_bundle(
        tmp_path / "bundle",
        run_dir=run,
        precisions=("int8",),
        distill=True,
        distill_config=tiny_distill_config(text_hidden=16),
    )
    assert manifest["precisions"] == ["int8"] and manifest["default_precision"] == "int8"
    assert set(manifest["graphs"]["user_encoder"]) == {"int8"}
    names = {p.name for p in (tmp_path / "bundle").iterdir()}
    assert "user_encoder.onnx" not in names and "text_encoder.int8.onnx" in names
    # the gate ran on the fp32 student graphs before they were dropped
    assert manifest["parity"]["user_encoder"]["max_abs_user"] <= 1e-4
    assert manifest["parity"]["text_encoder"]["max_abs_item_vector"] <= 1e-4
    assert "fp32" in manifest["quality"] and "ndcg@10_drop_vs_fp32" in manifest["quality"]["int8"]
    d = manifest["distillation"]
    assert d["user_encoder"]["hidden"] == 8 and d["text_encoder"]["hidden"] == 16
    import onnx

    meta = {
        p.key: p.value
        for p in onnx.load(str(tmp_path / "bundle" / "user_encoder.int8.onnx")).metadata_props
    }
    assert json.loads(meta["hidden"]) == 8
    assert "(reference, not shipped)" in (tmp_path / "bundle" / "README.md").read_text()


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))
