"""The text student's held-out items, its loss and its cold-item report.

Uses the tiny random BERT as the teacher (``export_fixtures``), so each test takes
seconds; the MovieLens figures are in benchmarks/results/text_student.md.
"""

from __future__ import annotations

import numpy as np
import pytest
from export_fixtures import make_tiny_run, tiny_distill_config


def test_text_holdout_is_a_seeded_disjoint_share_of_the_texts():
    from edgerec.export.config import DistillConfig
    from edgerec.export.distill import text_holdout

    held, train = text_holdout(200, DistillConfig(text_holdout=0.1, seed=3))
    assert len(held) == 20 and len(train) == 180
    assert sorted(np.concatenate([held, train]).tolist()) == list(range(200))
    again, _ = text_holdout(200, DistillConfig(text_holdout=0.1, seed=3))
    other, _ = text_holdout(200, DistillConfig(text_holdout=0.1, seed=4))
    assert np.array_equal(held, again) and not np.array_equal(held, other)
    assert len(text_holdout(5, DistillConfig())[0]) == 0  # too few texts to hold any out


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    from edgerec.data import leave_one_out
    from edgerec.export.onnx_text import TextTower
    from edgerec.export.sources import load_run_dataset, run_text_encoder
    from edgerec.training.checkpoint import load_run
    from edgerec.training.text_encoder import load_encoder

    run = make_tiny_run(tmp_path_factory.mktemp("text-student") / "run", text_encoder="tiny")
    loaded = load_run(run)
    path, max_length = run_text_encoder(loaded)
    tokenizer, bert = load_encoder(path)
    tower = TextTower(bert, loaded.model.items.text_proj).eval()
    return loaded, tower, tokenizer, leave_one_out(load_run_dataset(loaded)), max_length


def test_the_teachers_own_text_vectors_score_exactly_as_the_teacher(teacher):
    import torch

    from edgerec.export.config import DistillConfig
    from edgerec.export.distill import text_holdout, text_student_quality

    loaded, _, _, split, _ = teacher
    model = loaded.model
    with torch.no_grad():
        own = model.items.project_text(model.items.text_embeddings)[1:].numpy()
    held, _ = text_holdout(model.cfg.n_items, DistillConfig(text_holdout=0.5))
    same = text_student_quality(model, split, own, held)
    assert same["cold_events"] > 0
    assert same["student_cold_ndcg@10"] == pytest.approx(same["teacher_cold_ndcg@10"])
    assert same["student_test_ndcg@10"] == pytest.approx(same["teacher_test_ndcg@10"])
    # the cold items' rows are the ones replaced: scrambling only them changes the cold
    # figure and not the teacher's
    noisy = own.copy()
    noisy[held] = np.random.default_rng(0).normal(size=noisy[held].shape) * 10
    other = text_student_quality(model, split, noisy, held)
    assert other["teacher_cold_ndcg@10"] == same["teacher_cold_ndcg@10"]
    assert other["student_cold_hr@10"] != same["student_cold_hr@10"]


def test_distillation_reports_the_cold_items_of_its_held_out_texts(teacher):
    from edgerec.export.distill import distill_text_encoder

    loaded, tower, tokenizer, split, max_length = teacher
    texts = list(loaded.catalog["texts"])
    cfg = tiny_distill_config(text_hidden=16, text_holdout=0.5, text_augment=1)
    _, report = distill_text_encoder(
        tower, tokenizer, texts, max_length=max_length, config=cfg, model=loaded.model, split=split
    )
    assert report["heldout_texts"] == len(texts) // 2
    assert report["train_texts"] == 2 * (len(texts) - report["heldout_texts"])
    assert report["cold_events"] > 0
    for key in ("teacher_cold_ndcg@10", "student_cold_ndcg@10", "student_warm_test_ndcg@10"):
        assert 0.0 <= report[key] <= 1.0


def test_both_losses_train_the_student_and_an_unknown_one_is_refused(teacher):
    from edgerec.export.config import DistillConfig
    from edgerec.export.distill import distill_text_encoder

    assert DistillConfig().text_loss == "centered"
    loaded, tower, tokenizer, _, max_length = teacher
    texts = list(loaded.catalog["texts"])
    reports = {}
    for loss in ("centered", "mse"):
        cfg = tiny_distill_config(text_hidden=16, text_loss=loss)
        _, reports[loss] = distill_text_encoder(
            tower, tokenizer, texts, max_length=max_length, config=cfg
        )
        assert reports[loss]["loss_last"] < reports[loss]["loss_first"]
    # the same student, data and steps: only the loss differs
    assert reports["centered"]["loss_first"] != reports["mse"]["loss_first"]
    cfg = tiny_distill_config(text_hidden=16, text_loss="huber")
    with pytest.raises(ValueError, match="text_loss must be"):
        distill_text_encoder(tower, tokenizer, texts, max_length=max_length, config=cfg)
