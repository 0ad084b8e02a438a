"""Training that stops on evidence: the step-based schedule, the cool-down on a plateau,
the epochs ceiling and the time budget, the validation curve, resume across a cool-down;
and the data-shape rules (max_len from the histories, the per-item ID weight)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgerec.data.split import leave_one_out  # noqa: E402
from edgerec.data.synthetic import SyntheticConfig, generate_synthetic  # noqa: E402
from edgerec.errors import EdgerecError  # noqa: E402
from edgerec.training import scaling  # noqa: E402
from edgerec.training.checkpoint import load_run  # noqa: E402
from edgerec.training.config import ModelConfig, TrainConfig  # noqa: E402
from edgerec.training.trainer import lr_lambda, parse_duration, train  # noqa: E402

TINY = SyntheticConfig(n_users=60, n_items=40, min_events=12, max_events=30, seed=5)
STEPS_PER_EPOCH = 9  # 1101 training samples / batches of 128


def configs(**train_kw) -> tuple[ModelConfig, TrainConfig]:
    mcfg = ModelConfig(dim=16, hidden=16, max_len=15, text_dim=16)
    base = dict(
        epochs=4,
        batch_size=128,
        lr=5e-3,
        warmup_steps=5,
        patience=10,
        text_encoder="random",
        num_threads=1,
        future_targets=2,
    )
    base.update(train_kw)
    return mcfg, TrainConfig(**base)


@pytest.fixture(scope="module")
def ds():
    return generate_synthetic(TINY)


def test_plateau_schedule_is_constant_until_the_cooldown_then_decays_to_the_floor():
    cfg = TrainConfig(warmup_steps=10, min_lr_ratio=0.1)
    phase = {"cooldown_start": -1, "cooldown_steps": 0}
    f = lr_lambda(cfg, total_steps=100, phase=phase)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert [f(s) for s in (10, 500, 10_000)] == [1.0, 1.0, 1.0]  # no epoch count assumed
    phase.update(cooldown_start=400, cooldown_steps=100)
    assert f(399) == 1.0 and f(400) == pytest.approx(1.0)
    assert f(450) == pytest.approx(0.1 + 0.9 * 0.5)
    assert f(500) == pytest.approx(0.1) and f(900) == pytest.approx(0.1)
    cosine = lr_lambda(TrainConfig(schedule="cosine", warmup_steps=0), total_steps=100)
    assert cosine(50) == pytest.approx(0.5) and cosine(100) == pytest.approx(0.0)


def test_the_cooldown_ends_at_the_epochs_ceiling_and_the_curve_is_recorded(ds, tmp_path):
    m = train(ds, tmp_path / "r", *configs(epochs=4, cooldown=1.0), progress=False)
    total = 4 * STEPS_PER_EPOCH
    assert m["stop_reason"] == "cooldown_done" and m["steps_run"] == total
    assert m["cooldown_start_step"] == math.ceil(total / 2)  # s * (1 + 1.0) >= total
    assert m["cooldown_trigger"] == "epochs"
    assert m["history"][-1]["lr"] == pytest.approx(0.0, abs=1e-9)
    curve = m["curve"]
    assert [c["step"] for c in curve] == [9, 18, 27, 36]
    assert all(set(c) >= {"epoch", "step", "valid_ndcg@10", "loss", "seconds"} for c in curve)
    assert [c["valid_ndcg@10"] for c in curve] == [h["valid"]["ndcg@10"] for h in m["history"]]
    assert all(a["seconds"] <= b["seconds"] for a, b in zip(curve, curve[1:], strict=False))
    best = max(range(4), key=lambda i: curve[i]["valid_ndcg@10"])
    assert m["best_epoch"] == best + 1 and m["valid"]["ndcg@10"] == curve[best]["valid_ndcg@10"]
    on_disk = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert on_disk["curve"] == curve


def test_a_plateau_starts_the_cooldown_and_its_end_stops_training_mid_epoch(ds, tmp_path):
    # lr so small that valid NDCG@10 never moves: epoch 2 is the first without improvement
    m = train(
        ds,
        tmp_path / "r",
        *configs(epochs=50, lr=1e-12, patience=1, cooldown=0.25),
        progress=False,
    )
    start = 2 * STEPS_PER_EPOCH
    assert m["cooldown_start_step"] == start and m["cooldown_trigger"] == "plateau"
    assert m["steps_run"] == start + math.ceil(0.25 * start)  # ends inside epoch 3
    assert m["stop_reason"] == "cooldown_done" and m["epochs_run"] == 3
    assert m["history"][-1]["partial"] and m["best_epoch"] == 1


def test_without_a_cooldown_patience_stops_training(ds, tmp_path):
    m = train(
        ds, tmp_path / "r", *configs(epochs=50, lr=1e-12, patience=2, cooldown=0.0), progress=False
    )
    assert m["stop_reason"] == "patience" and m["epochs_run"] == 3


def test_a_time_budget_stops_training_gracefully_with_the_best_weights(ds, tmp_path):
    m = train(ds, tmp_path / "r", *configs(epochs=50, time_budget=1e-3), progress=False)
    assert m["finished"] and m["stop_reason"] == "time_budget"
    assert m["steps_run"] <= 2 and m["epochs_run"] == 1
    assert m["cooldown_trigger"] == "time_budget"
    run = load_run(tmp_path / "r")  # the best (only) evaluation's weights were written
    assert run.model_config.max_len == 15


def test_resume_across_a_cooldown_replays_the_uninterrupted_run(ds, tmp_path):
    kw = dict(epochs=4, cooldown=1.0)  # the cool-down starts at the end of epoch 2
    full = train(ds, tmp_path / "full", *configs(**kw), progress=False)
    cut = train(ds, tmp_path / "cut", *configs(**kw), progress=False, stop_after_epochs=3)
    assert cut == {"interrupted": True, "epoch": 3}
    resumed = train(ds, tmp_path / "cut", progress=False, resume=True)
    assert [h["lr"] for h in resumed["history"]] == pytest.approx(
        [h["lr"] for h in full["history"]]
    )
    for a, b in zip(full["history"], resumed["history"], strict=True):
        assert a["valid"] == pytest.approx(b["valid"], rel=1e-6)
    assert resumed["test"] == pytest.approx(full["test"], rel=1e-6)
    assert resumed["stop_reason"] == full["stop_reason"] == "cooldown_done"


def test_durations_and_bad_schedule_settings():
    assert parse_duration("90") == 90 and parse_duration("90s") == 90
    assert parse_duration("10m") == 600 and parse_duration("1.5h") == 5400
    assert parse_duration(None) == 0
    for bad in ("ten", "-5m", "nan"):
        with pytest.raises(EdgerecError, match="time budget"):
            parse_duration(bad)
    from edgerec.training.trainer import validate_configs

    for kw, msg in (
        ({"schedule": "linear"}, "schedule"),
        ({"cooldown": 1.5}, "cooldown"),
        ({"time_budget": -1.0}, "time_budget"),
        ({"patience": 0}, "patience"),
    ):
        with pytest.raises(EdgerecError, match=msg):
            validate_configs(ModelConfig(), TrainConfig(**kw))


def test_configs_written_before_the_plateau_schedule_keep_their_cosine_schedule():
    old = TrainConfig().to_dict()
    del old["schedule"]
    assert TrainConfig.from_dict(old).schedule == "cosine"
    old_model = ModelConfig().to_dict()
    del old_model["id_prior"]
    assert ModelConfig.from_dict(old_model).id_prior == 0.0


# --------------------------------------------------------------------------- data rules


def test_max_len_reads_the_median_users_history_within_bounds():
    def rule(median):
        return scaling.max_len_rule({"median_history": median})

    assert rule(63) == 60  # MovieLens 100K
    assert rule(151) == 150 and rule(47) == 50
    assert rule(3) == scaling.MIN_LEN and rule(5_000) == scaling.MAX_LEN


def test_max_len_0_is_resolved_from_the_data_and_the_shape_recorded(ds, tmp_path):
    mcfg, tcfg = configs(epochs=1)
    mcfg.max_len = 0
    train(ds, tmp_path / "r", mcfg, tcfg, progress=False)
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    shape = config["training"]["data_shape"]
    assert shape == scaling.data_shape(leave_one_out(ds))
    assert config["model"]["max_len"] == scaling.max_len_rule(shape) == 20
    assert shape["items"] == 40 and shape["users"] == 60


def test_sparse_items_lean_on_their_text_vector(ds, tmp_path):
    scale = scaling.id_scale(np.array([7, 0, 1, 5, 95]), prior=5.0)
    np.testing.assert_allclose(scale, [0.0, 0.0, 1 / 6, 0.5, 0.95], rtol=1e-6)
    mcfg, tcfg = configs(epochs=1)
    mcfg.id_prior = 5.0
    train(ds, tmp_path / "r", mcfg, tcfg, progress=False)
    model = load_run(tmp_path / "r").model
    counts = scaling.item_counts(leave_one_out(ds), 40)
    np.testing.assert_allclose(
        model.items.id_scale.numpy(), counts / (counts + 5.0) * (np.arange(41) > 0), rtol=1e-6
    )
    with torch.no_grad():
        text_only = model.items.project_text(model.items.text_embeddings)
        table = model.items()
        ids = model.items.id_emb.weight * model.items.id_scale.unsqueeze(-1)
    torch.testing.assert_close(table, text_only + ids)
    rare = int(np.argmin(np.where(np.arange(41) > 0, counts, 10**9)))
    frequent = int(np.argmax(counts))
    assert model.items.id_scale[rare] < 0.5 < model.items.id_scale[frequent]


def test_the_quality_report_plots_a_runs_validation_curve(ds, tmp_path):
    from edgerec.benchmark import plots
    from edgerec.benchmark.quality import curve_plot

    if not plots.available():
        pytest.skip("matplotlib is not installed")
    m = train(ds, tmp_path / "r", *configs(epochs=2, cooldown=1.0), progress=False)
    png = curve_plot(m, tmp_path / "curve.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_takes_the_schedule_flags_and_a_time_budget(tmp_path):
    from typer.testing import CliRunner

    from edgerec.cli import app

    out = tmp_path / "cli-run"
    args = "train --dataset synthetic --synthetic-users 40 --synthetic-items 30 --dim 16 "
    args += "--hidden 16 --batch-size 128 --threads 1 --text-encoder random --quiet --json "
    args += "--epochs 30 --patience 2 --cooldown 0.5 --id-prior 2 --time-budget 0.001s --out"
    result = CliRunner().invoke(app, [*args.split(), str(out)])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["time_budget"] == 0.001 and config["train"]["cooldown"] == 0.5
    assert config["model"]["id_prior"] == 2.0 and config["model"]["max_len"] >= 20
    assert json.loads(result.stdout)["stop_reason"] == "time_budget"
    bad_args = args.replace("0.001s", "soon").split()
    bad = CliRunner().invoke(app, [*bad_args, str(tmp_path / "bad")])
    assert bad.exit_code != 0 and "time budget 'soon'" in str(bad.exception)
