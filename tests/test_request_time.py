"""A model whose gate reads the request time, end to end: train, export, runtime ``now``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from edgerec.runtime import Recommender  # noqa: E402

DAY = 86_400


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from export_fixtures import make_tiny_bundle, make_tiny_run, tiny_dataset

    from edgerec.data.split import leave_one_out
    from edgerec.training.checkpoint import load_run

    root = tmp_path_factory.mktemp("request-time")
    run = make_tiny_run(
        root / "run",
        text_encoder="tiny",
        model={"request_time": True, "gate": "scalar", "short_term": "window"},
    )
    make_tiny_bundle(root / "bundle", run_dir=run, precisions=("fp32",), distill=False)
    ds = tiny_dataset()
    return root / "bundle", ds, leave_one_out(ds), load_run(run)


def a_history(ds, split, user: int = 3):
    seq = split.sequences
    sl = slice(seq.offsets[user], split.history_end("test")[user])
    ids = [int(ds.catalog.item_ids[i - 1]) for i in seq.items[sl]]
    behaviours = [ds.behaviour_vocab[b] for b in seq.behaviours[sl]]
    return ids, behaviours, seq.timestamps[sl].tolist()


def test_exported_graph_takes_the_request_gap_and_passed_parity(world):
    bundle, *_ = world
    rec = Recommender.load(bundle, providers="cpu")
    assert rec.manifest.request_time
    assert "now" in {i.name for i in rec.sessions["recommend"].get_inputs()}
    parity = rec.manifest.raw["parity"]["user_encoder"]
    assert parity["max_abs_user"] < 1e-4


def test_runtime_user_vector_with_now_matches_pytorch_with_the_request_gap(world):
    import torch

    from edgerec.features import request_gap_buckets
    from edgerec.training.inputs import stage_inputs

    bundle, ds, split, run = world
    rec = Recommender.load(bundle, providers="cpu")
    ids, behaviours, ts = a_history(ds, split)
    for later in (30, 3 * DAY):
        got = rec.user_vector(ids, behaviours=behaviours, timestamps=ts, now=ts[-1] + later)
        arrays = stage_inputs(split, np.array([3]), "test", run.model_config.max_len)
        bucket = request_gap_buckets(np.array([ts[-1]]), np.array([ts[-1] + later]))
        with torch.no_grad():
            enc = run.model.eval().encode_users(
                *(torch.from_numpy(a) for a in arrays),
                item_table=run.model.items(),
                request_gaps=torch.from_numpy(bucket),
            )
        np.testing.assert_allclose(got.vector, enc.user[0].numpy(), atol=1e-4)
        assert got.gate == pytest.approx(float(enc.gate[0]), abs=1e-5)


def test_the_request_time_moves_the_gate_and_unknown_time_is_its_own_case(world):
    bundle, ds, split, _ = world
    rec = Recommender.load(bundle, providers="cpu")
    ids, behaviours, ts = a_history(ds, split)
    soon = rec.recommend(ids, behaviours=behaviours, timestamps=ts, now=ts[-1] + 60)
    later = rec.recommend(ids, behaviours=behaviours, timestamps=ts, now=ts[-1] + 4 * DAY)
    unknown = rec.recommend(ids, behaviours=behaviours, timestamps=ts)
    assert soon.gate != later.gate
    # no timestamps: the gap cannot be known, whatever ``now`` says
    no_times = rec.recommend(ids, behaviours=behaviours, now=ts[-1] + 60)
    assert no_times.gate == pytest.approx(rec.recommend(ids, behaviours=behaviours).gate, abs=1e-7)
    assert unknown.gate not in (soon.gate, later.gate)


def test_batch_with_one_now_per_history_equals_single_calls(world):
    bundle, ds, split, _ = world
    rec = Recommender.load(bundle, providers="cpu")
    hs = [a_history(ds, split, u) for u in (1, 2, 5)]
    nows = [h[2][-1] + d for h, d in zip(hs, (10, DAY, 7 * DAY), strict=True)]
    batch = rec.recommend_batch(
        [h[0] for h in hs],
        behaviours=[h[1] for h in hs],
        timestamps=[h[2] for h in hs],
        now=nows,
    )
    for h, now, got in zip(hs, nows, batch, strict=True):
        one = rec.recommend(h[0], behaviours=h[1], timestamps=h[2], now=now)
        assert got.item_ids == one.item_ids
        assert got.gate == pytest.approx(one.gate, abs=1e-6)


@pytest.mark.parametrize(
    "now, message",
    [(float("nan"), "now is nan"), ("soon", "now: expected seconds"), (True, "got bool")],
)
def test_bad_now_is_a_value_error_naming_it(world, now, message):
    bundle, ds, split, _ = world
    rec = Recommender.load(bundle, providers="cpu")
    ids, behaviours, ts = a_history(ds, split)
    with pytest.raises(ValueError, match=message):
        rec.recommend(ids, timestamps=ts, now=now)
    with pytest.raises(ValueError, match=message):
        rec.recommend_batch([ids], timestamps=[ts], now=now)


def test_bundles_without_the_request_input_ignore_now(tmp_path: Path):
    from export_fixtures import make_tiny_bundle, make_tiny_run

    run = make_tiny_run(tmp_path / "run", text_encoder="tiny", model={"request_time": False})
    bundle = tmp_path / "plain"
    make_tiny_bundle(bundle, run_dir=run, precisions=("fp32",), distill=False)
    rec = Recommender.load(bundle, providers="cpu")
    assert not rec.manifest.request_time
    ids = rec.item_ids[:5]
    a = rec.recommend(ids, timestamps=[0, 10, 20, 30, 40], now=50)
    b = rec.recommend(ids, timestamps=[0, 10, 20, 30, 40], now=50 + 30 * DAY)
    assert a.item_ids == b.item_ids and a.gate == b.gate


def test_user_distillation_feeds_the_request_times_to_teacher_and_student(world, monkeypatch):
    """The student of a request-time model learns (and is evaluated) with the time from
    the last event to each training target, as its teacher was trained; without them
    it would only learn the 'unknown time' case its gate is never asked in serving."""
    from export_fixtures import tiny_distill_config

    from edgerec.export.distill import distill_user_encoder
    from edgerec.training.model import InterestModel

    _, _, split, loaded = world
    calls: list[bool] = []
    real = InterestModel.encode_users

    def spy(self, *args, **kwargs):
        rg = kwargs.get("request_gaps")
        calls.append(rg is not None and bool((rg > 0).any()))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(InterestModel, "encode_users", spy)
    student, report = distill_user_encoder(loaded.model, split, config=tiny_distill_config())
    assert student.cfg.request_time and calls and all(calls)
    assert report["student_test_ndcg@10"] >= 0.0


def test_single_batch_and_scorer_paths_agree_with_the_request_time(world):
    """The recommend graph for one history and for a batch, and the user-encoder graph
    with the device scorer, give the same items and scores within float rounding."""
    bundle, ds, *_ = world
    one = Recommender.load(bundle, providers="cpu", threads=1)
    other = Recommender.load(bundle, providers="cpu", threads=1, scoring="topk")
    ids = [int(i) for i in ds.catalog.item_ids]
    rng = np.random.default_rng(7)
    requests = []
    for _ in range(60):
        n = int(rng.integers(1, 45))
        history = [ids[j] for j in rng.integers(0, len(ids), n)]
        ts = np.sort(rng.integers(0, 10**7, n)).tolist()
        requests.append((history, ts, ts[-1] + int(rng.integers(0, 10 * DAY))))
    batch = one.recommend_batch(
        [h for h, _, _ in requests],
        k=10,
        timestamps=[t for _, t, _ in requests],
        now=[w for _, _, w in requests],
    )
    for (history, ts, now), together in zip(requests, batch, strict=True):
        alone = one.recommend(history, k=10, timestamps=ts, now=now)
        scored = other.recommend(history, k=10, timestamps=ts, now=now)
        for got in (together, scored):
            assert got.item_ids == alone.item_ids
            np.testing.assert_allclose(
                [r.score for r in got], [r.score for r in alone], rtol=0, atol=1e-5
            )
            assert got.gate == pytest.approx(alone.gate, abs=1e-6)
