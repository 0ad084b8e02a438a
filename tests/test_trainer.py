"""The trainer end to end on tiny synthetic data: run dir, reload, resume, DDP, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgerec.data.split import leave_one_out  # noqa: E402
from edgerec.data.synthetic import SyntheticConfig, generate_synthetic  # noqa: E402
from edgerec.errors import DataError, EdgerecError  # noqa: E402
from edgerec.training.checkpoint import RunError, load_run  # noqa: E402
from edgerec.training.config import ModelConfig, TrainConfig  # noqa: E402
from edgerec.training.evaluate_run import evaluate_run, model_scorer  # noqa: E402
from edgerec.training.trainer import train  # noqa: E402

TINY_DATA = SyntheticConfig(n_users=60, n_items=40, min_events=12, max_events=30, seed=5)
METRIC_KEYS = {"hr@10", "ndcg@10", "mrr@10", "hr@20", "ndcg@20", "mrr@20", "coverage@10"}


def tiny_configs(**train_kw) -> tuple[ModelConfig, TrainConfig]:
    mcfg = ModelConfig(dim=16, hidden=16, max_len=15, text_dim=16)
    base = dict(
        epochs=3,
        batch_size=128,
        lr=5e-3,
        warmup_steps=5,
        patience=10,
        text_encoder="random",
        num_threads=1,
        mask_seen=True,
        future_targets=2,
    )
    base.update(train_kw)
    return mcfg, TrainConfig(**base)


@pytest.fixture(scope="module")
def tiny_ds():
    return generate_synthetic(TINY_DATA)


@pytest.fixture(scope="module")
def tiny_run(tiny_ds, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    metrics = train(tiny_ds, out, *tiny_configs(), progress=False)
    return out, metrics


def test_run_directory_holds_model_config_catalog_and_metrics(tiny_run, tiny_ds):
    out, metrics = tiny_run
    for name in ("model.safetensors", "config.json", "catalog.json", "metrics.json"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert set(config) >= {"model", "train", "data", "text_encoder"}
    assert config["data"]["fingerprint"] == tiny_ds.fingerprint()
    assert config["model"]["n_items"] == 40
    assert config["text_encoder"]["kind"] == "random"
    catalog = json.loads((out / "catalog.json").read_text())
    assert len(catalog["item_ids"]) == 40
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["best_epoch"] == metrics["best_epoch"]
    assert set(on_disk["valid"]) == METRIC_KEYS == set(on_disk["test"])
    assert len(on_disk["history"]) == 3
    assert on_disk["train_seconds"] > 0
    best = max(h["valid"]["ndcg@10"] for h in on_disk["history"])
    assert on_disk["valid"]["ndcg@10"] == pytest.approx(best)


def test_every_loss_falls_during_training(tiny_run):
    history = json.loads((tiny_run[0] / "metrics.json").read_text())["history"]
    first, last = history[0]["losses"], history[-1]["losses"]
    assert set(first) == {"retrieval", "future", "behaviour", "next_category", "user_category"}
    for task in first:
        assert last[task] < first[task], task


def test_trained_model_beats_popularity(tiny_run, tiny_ds):
    from edgerec.evaluation import evaluate, make_baseline

    split = leave_one_out(tiny_ds)
    pop = evaluate(make_baseline("mostpop", split), split, "valid")
    assert tiny_run[1]["valid"]["ndcg@10"] > pop["ndcg@10"]


def test_save_load_round_trip_gives_identical_scores(tiny_run, tiny_ds):
    out, metrics = tiny_run
    run = load_run(out)
    split = leave_one_out(tiny_ds)
    users = np.arange(20)
    a = model_scorer(run.model, split, run.model_config.max_len)(users, "test")
    again = load_run(out)
    b = model_scorer(again.model, split, again.model_config.max_len)(users, "test")
    np.testing.assert_array_equal(a, b)
    result = evaluate_run(out)
    assert result["test"] == pytest.approx(metrics["test"])
    assert result["valid"] == pytest.approx(metrics["valid"])
    assert (result["users"], result["items"]) == (60, 40)


def test_evaluate_run_refuses_data_that_changed(tiny_run):
    out, _ = tiny_run
    other = generate_synthetic(SyntheticConfig(n_users=60, n_items=40, seed=6))
    with pytest.raises(DataError, match="fingerprint"):
        evaluate_run(out, dataset=other)


def test_training_into_an_existing_run_is_refused(tiny_run, tiny_ds):
    with pytest.raises(RunError, match="already holds a run"):
        train(tiny_ds, tiny_run[0], *tiny_configs(), progress=False)


def test_resume_after_interruption_matches_an_uninterrupted_run(tiny_ds, tmp_path):
    full = train(tiny_ds, tmp_path / "full", *tiny_configs(epochs=3), progress=False)
    partial = train(
        tiny_ds, tmp_path / "cut", *tiny_configs(epochs=3), progress=False, stop_after_epochs=2
    )
    assert partial == {"interrupted": True, "epoch": 2}
    assert not (tmp_path / "cut" / "metrics.json").exists()
    resumed = train(tiny_ds, tmp_path / "cut", progress=False, resume=True)
    assert len(resumed["history"]) == 3
    for a, b in zip(full["history"], resumed["history"], strict=True):
        assert a["losses"] == pytest.approx(b["losses"], rel=1e-6)
        assert a["valid"] == pytest.approx(b["valid"], rel=1e-6)
    assert resumed["test"] == pytest.approx(full["test"], rel=1e-6)
    # resuming a finished run changes nothing
    assert train(tiny_ds, tmp_path / "cut", progress=False, resume=True)["test"] == resumed["test"]


def test_resume_without_a_run_is_a_clear_error(tiny_ds, tmp_path):
    with pytest.raises(RunError, match="nothing to resume"):
        train(tiny_ds, tmp_path / "none", progress=False, resume=True)


def test_resume_on_other_data_is_refused(tiny_run):
    other = generate_synthetic(SyntheticConfig(n_users=60, n_items=40, seed=6))
    with pytest.raises(RunError, match="fingerprint"):
        train(other, tiny_run[0], progress=False, resume=True)


@pytest.mark.parametrize(
    ("model_kw", "train_kw", "message"),
    [
        ({"ablate": ("long", "short")}, {}, "both the long- and the short-term"),
        ({"ablate": ("nope",)}, {}, "unknown ablation"),
        ({}, {"finetune_layers": 2}, "fine-tuning"),
        ({}, {"sampled_softmax": "maybe"}, "sampled_softmax"),
    ],
)
def test_bad_configurations_are_rejected(tiny_ds, tmp_path, model_kw, train_kw, message):
    mcfg, tcfg = tiny_configs(**train_kw)
    for k, v in model_kw.items():
        setattr(mcfg, k, v)
    with pytest.raises(EdgerecError, match=message):
        train(tiny_ds, tmp_path / "bad", mcfg, tcfg, progress=False)


@pytest.mark.parametrize("ablation", ["long", "aux"])
def test_ablated_runs_train_and_record_the_ablation(tiny_ds, tmp_path, ablation):
    mcfg, tcfg = tiny_configs(epochs=1)
    mcfg.ablate = (ablation,)
    metrics = train(tiny_ds, tmp_path / ablation, mcfg, tcfg, progress=False)
    config = json.loads((tmp_path / ablation / "config.json").read_text())
    assert config["model"]["ablate"] == [ablation]
    losses = metrics["history"][0]["losses"]
    assert ("behaviour" in losses) == (ablation != "aux")
    assert load_run(tmp_path / ablation).model_config.ablate == (ablation,)


def test_sampled_softmax_trains(tiny_ds, tmp_path):
    mcfg, tcfg = tiny_configs(sampled_softmax="on", num_negatives=16)
    metrics = train(tiny_ds, tmp_path / "sampled", mcfg, tcfg, progress=False)
    config = json.loads((tmp_path / "sampled" / "config.json").read_text())
    assert config["training"]["sampled_softmax"] is True
    h = metrics["history"]
    assert h[-1]["losses"]["retrieval"] < h[0]["losses"]["retrieval"]


def test_real_minilm_text_embeddings_fill_the_item_tower(tmp_path):
    ds = generate_synthetic(SyntheticConfig(n_users=30, n_items=20, min_events=8, max_events=12))
    mcfg, tcfg = tiny_configs(epochs=1, text_encoder=None)
    train(ds, tmp_path / "minilm", mcfg, tcfg, progress=False)
    config = json.loads((tmp_path / "minilm" / "config.json").read_text())
    info = config["text_encoder"]
    assert info["kind"] == "pretrained" and info["dim"] == 384
    assert len(info["digest"]) == 64 and info["cache_key"]
    run = load_run(tmp_path / "minilm")
    from edgerec.training.text_encoder import encode_texts

    emb, key = encode_texts(list(ds.catalog.texts), info["path"])
    assert key == info["cache_key"]
    np.testing.assert_allclose(run.model.items.text_embeddings[1:].numpy(), emb, rtol=1e-6)
    assert float(run.model.items.text_embeddings[0].abs().sum()) == 0.0


def test_cli_trains_and_evaluates_a_synthetic_run_with_the_gate_options(tmp_path):
    from typer.testing import CliRunner

    from edgerec.cli import app

    out = tmp_path / "cli-run"
    args = [
        "train",
        "--dataset",
        "synthetic",
        "--synthetic-users",
        "50",
        "--synthetic-items",
        "30",
        "--epochs",
        "2",
        "--dim",
        "16",
        "--hidden",
        "16",
        "--max-len",
        "12",
        "--batch-size",
        "128",
        "--threads",
        "1",
        "--text-encoder",
        "random",
        "--gate",
        "scalar",
        "--request-time",
        "--short-term",
        "window",
        "--quiet",
        "--json",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert set(printed["test"]) == METRIC_KEYS
    model_cfg = json.loads((out / "config.json").read_text())["model"]
    assert (model_cfg["gate"], model_cfg["request_time"], model_cfg["short_term"]) == (
        "scalar",
        True,
        "window",
    )
    assert (out / "model.safetensors").is_file()
    ev = CliRunner().invoke(app, ["evaluate", "--run", str(out), "--json"])
    assert ev.exit_code == 0, ev.output
    assert json.loads(ev.stdout)["test"] == pytest.approx(printed["test"])
    again = CliRunner().invoke(app, ["train", "--resume", str(out), "--quiet", "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["test"] == pytest.approx(printed["test"])


def test_cli_rejects_a_bad_ablation_with_a_one_line_error(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgerec",
            "train",
            "--ablate",
            "nope",
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "unknown ablation 'nope'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_ddp_with_two_cpu_processes_trains_and_writes_a_run(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "edgerec",
        "train",
        "--dataset",
        "synthetic",
        "--synthetic-users",
        "60",
        "--synthetic-items",
        "40",
        "--epochs",
        "3",
        "--dim",
        "16",
        "--hidden",
        "16",
        "--max-len",
        "15",
        "--batch-size",
        "64",
        "--lr",
        "0.005",
        "--warmup-steps",
        "5",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--text-encoder",
        "random",
        "--quiet",
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    assert config["training"]["world_size"] == 2
    metrics = json.loads(Path(out / "metrics.json").read_text())
    history = metrics["history"]
    assert history[-1]["losses"]["retrieval"] < history[0]["losses"]["retrieval"]
    assert metrics["valid"]["ndcg@10"] > 0
    assert (out / "model.safetensors").is_file()


def test_device_auto_picks_cuda_only_when_present():
    from edgerec.training.trainer import resolve_device

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(EdgerecError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(EdgerecError, match="not a device"):
        resolve_device("tpu-please")
