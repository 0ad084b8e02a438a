"""The distilled user encoder keeps the retention bound or is replaced: a wider student,
then the teacher, and the report says which (``chosen``, ``retention``)."""

from __future__ import annotations

from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")

from edgerec.data.split import leave_one_out  # noqa: E402
from edgerec.data.synthetic import SyntheticConfig, generate_synthetic  # noqa: E402
from edgerec.export import distill  # noqa: E402
from edgerec.export.config import DistillConfig  # noqa: E402
from edgerec.training.checkpoint import load_run  # noqa: E402
from edgerec.training.config import ModelConfig, TrainConfig  # noqa: E402
from edgerec.training.trainer import train  # noqa: E402

TINY = SyntheticConfig(n_users=60, n_items=40, min_events=12, max_events=30, seed=5)
CONFIG = DistillConfig(user_epochs=1, user_batch_size=256)


@pytest.fixture(scope="module")
def teacher_and_split(tmp_path_factory):
    ds = generate_synthetic(TINY)
    out = tmp_path_factory.mktemp("distill") / "run"
    train(
        ds,
        out,
        ModelConfig(dim=16, hidden=16, max_len=15, text_dim=16),
        TrainConfig(epochs=2, batch_size=128, text_encoder="random", num_threads=1),
        progress=False,
    )
    return load_run(out).model, leave_one_out(ds)


def test_a_student_that_keeps_the_bound_is_chosen(teacher_and_split):
    teacher, split = teacher_and_split
    any_student = replace(CONFIG, min_retention=0.0)
    model, report = distill.distill_user_encoder(teacher, split, config=any_student)
    assert model is not teacher and model.cfg.hidden == 8 == report["hidden"]
    assert report["chosen"] == "student" and len(report["candidates"]) == 1
    assert report["retention"] == pytest.approx(
        report["student_valid_ndcg@10"] / report["teacher_valid_ndcg@10"]
    )
    assert report["test_retention"] == pytest.approx(
        report["student_test_ndcg@10"] / report["teacher_test_ndcg@10"]
    )
    assert report["student_parameters"] < report["teacher_parameters"]


def test_when_no_student_keeps_the_bound_the_teacher_is_returned(teacher_and_split):
    teacher, split = teacher_and_split
    no_student = replace(CONFIG, min_retention=2.0)  # no student can keep 200 %
    model, report = distill.distill_user_encoder(teacher, split, config=no_student)
    assert model is teacher and report["chosen"] == "teacher"
    assert [c["hidden"] for c in report["candidates"]] == [8, 12]  # 0.5x, then 0.75x
    assert report["retention"] == 1.0 and report["min_retention"] == 2.0
    assert report["student_test_ndcg@10"] == report["teacher_test_ndcg@10"]
    assert report["hidden"] == report["teacher_hidden"] == 16
    assert report["test_mean_cosine"] == pytest.approx(1.0)
