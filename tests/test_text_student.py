"""The text student's training texts, its held-out items and its cold-item report.

Uses the tiny random BERT as the teacher (``export_fixtures``), so each test takes
seconds; the MovieLens figures are in benchmarks/results/text_student.md.
"""

from __future__ import annotations

import numpy as np
import pytest
from export_fixtures import make_tiny_run, tiny_distill_config

CATALOG = [
    "Toy Story (1995). Genres: Animation, Children's, Comedy.",
    "Heat (1995). Genres: Action, Crime, Thriller.",
    "Wallace & Gromit: The Best of Aardman Animation (1996). Genres: Animation.",
    "Untitled",
]


def test_recombined_texts_pair_titles_with_other_items_fields_or_keep_a_field_alone():
    from edgerec.export.distill import recombine_texts

    titles = [t.split(". Genres:")[0] + "." for t in CATALOG[:3]]
    genres = {"Genres: " + t.split(". Genres: ")[1] for t in CATALOG[:3]}
    out = recombine_texts(CATALOG, 400, np.random.default_rng(0))
    assert len(out) == 400
    phrases = [t for t in out if t in genres]  # a genre field alone
    single = [t for t in out if t == "Untitled"]
    paired = [t for t in out if t not in genres and t != "Untitled"]
    assert phrases and single and paired
    for text in paired:
        title = next(x for x in titles if text.startswith(x))  # colon titles stay titles
        assert text[len(title) + 1 :] in genres
    new_pairs = {t for t in paired if t not in CATALOG}
    assert len(new_pairs) >= 5  # titles with another item's genres
    assert recombine_texts(CATALOG, 0, np.random.default_rng(0)) == []


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


def test_distillation_reports_cold_items_and_trains_on_recombined_texts(teacher):
    from edgerec.export.distill import distill_text_encoder

    loaded, tower, tokenizer, split, max_length = teacher
    texts = list(loaded.catalog["texts"])
    cfg = tiny_distill_config(text_hidden=16, text_holdout=0.5, text_augment=1)
    _, plain = distill_text_encoder(
        tower, tokenizer, texts, max_length=max_length, config=cfg, model=loaded.model, split=split
    )
    cfg.text_recombined = 2
    _, report = distill_text_encoder(
        tower, tokenizer, texts, max_length=max_length, config=cfg, model=loaded.model, split=split
    )
    n_train = len(texts) - report["heldout_texts"]
    assert plain["train_texts"] == 2 * n_train and report["train_texts"] == 4 * n_train
    assert report["cold_events"] > 0
    for key in ("teacher_cold_ndcg@10", "student_cold_ndcg@10", "student_cold_hr@10"):
        assert 0.0 <= report[key] <= 1.0


def test_a_centered_loss_trains_and_an_unknown_loss_is_refused(teacher):
    from edgerec.export.distill import distill_text_encoder

    loaded, tower, tokenizer, _, max_length = teacher
    texts = list(loaded.catalog["texts"])
    cfg = tiny_distill_config(text_hidden=16, text_loss="centered")
    _, report = distill_text_encoder(tower, tokenizer, texts, max_length=max_length, config=cfg)
    assert report["loss_last"] < report["loss_first"]
    assert report["heldout_norm_ratio"] > 0
    cfg.text_loss = "huber"
    with pytest.raises(ValueError, match="text_loss must be"):
        distill_text_encoder(tower, tokenizer, texts, max_length=max_length, config=cfg)


def test_projected_word_embeddings_move_every_row_of_the_table_alike(teacher):
    import torch

    from edgerec.export.distill import distill_text_encoder

    loaded, tower, tokenizer, _, max_length = teacher
    texts = list(loaded.catalog["texts"])
    cfg = tiny_distill_config(text_hidden=16, text_word_embeddings="projected")
    student, report = distill_text_encoder(
        tower, tokenizer, texts, max_length=max_length, config=cfg
    )
    assert report["loss_last"] < report["loss_first"]
    t_words = tower.bert.embeddings.word_embeddings.weight.detach()
    s_words = student.bert.embeddings.word_embeddings.weight.detach()
    assert not torch.allclose(s_words, t_words[:, :16])  # trained, not the truncation
    # one matrix maps the teacher's table onto the student's, rows no text holds included
    fit = torch.linalg.lstsq(t_words, s_words).solution
    assert torch.allclose(t_words @ fit, s_words, atol=1e-4)
