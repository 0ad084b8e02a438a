"""Provider choice: 'auto' trusts only a session that really runs on CUDA; 'cuda' never
silently runs on the CPU. Covered on a CPU-only machine by changing nothing but the
provider lists onnxruntime reports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from runtime_helpers import make_bundle

from edgerec.runtime import ProviderError, Recommender
from edgerec.runtime.providers import CPU, CUDA, plan_providers

HISTORY = [103, 117, 125]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("rt-prov") / "b")


@pytest.fixture
def gpu_build(monkeypatch):
    """onnxruntime-gpu on a machine without a usable GPU: CUDA listed, sessions fall back."""
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])


def test_auto_on_the_cpu_build_uses_cpu(bundle):
    if CUDA in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    rec = Recommender.load(bundle)
    assert rec.providers == (CPU,) and rec.device == "cpu" and rec.scoring == "graph"


def test_auto_with_cuda_listed_but_not_working_falls_back_to_cpu_and_says_so(bundle, gpu_build):
    assert plan_providers("auto").requested == (CUDA, CPU)
    rec = Recommender.load(bundle, providers="auto")
    assert rec.providers == (CPU,) and rec.device == "cpu"
    assert (
        rec.recommend(HISTORY, k=3).item_ids
        == Recommender.load(bundle, providers="cpu").recommend(HISTORY, k=3).item_ids
    )


def test_cuda_requested_but_session_falls_back_raises(bundle, gpu_build):
    with pytest.raises(ProviderError, match="CUDA was requested but onnxruntime placed"):
        Recommender.load(bundle, providers="cuda")


def test_cuda_requested_without_the_gpu_build_raises(bundle, monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CPU])
    with pytest.raises(ProviderError, match="no CUDAExecutionProvider"):
        Recommender.load(bundle, providers="cuda")
    with pytest.raises(ProviderError, match="not available"):
        Recommender.load(bundle, providers=[CUDA])
    assert isinstance(ProviderError("x"), RuntimeError)


@pytest.mark.parametrize("bad", ["gpu", "", 5, [], [3], {"cpu"}])
def test_bad_providers_argument(bundle, bad):
    with pytest.raises((ValueError, ProviderError)):
        Recommender.load(bundle, providers=bad)


def test_explicit_cpu_list(bundle):
    rec = Recommender.load(bundle, providers=["cpu"])
    assert rec.providers == (CPU,)


def test_cuda_path_keeps_the_matrix_on_the_device_with_io_binding(bundle, gpu_build, monkeypatch):
    """With a session that reports CUDA, the runtime puts the item matrix in an OrtValue on
    'cuda' and scores through I/O binding. The CPU build cannot allocate on 'cuda', so the
    allocation is redirected to the CPU and the device it was asked for is recorded."""
    monkeypatch.setattr(ort.InferenceSession, "get_providers", lambda self: [CUDA, CPU])
    placed = []
    real = ort.OrtValue.ortvalue_from_numpy

    def on_device(array, device_type="cpu", device_id=0, *args):
        placed.append((device_type, array.shape))
        return real(array)

    monkeypatch.setattr(ort.OrtValue, "ortvalue_from_numpy", staticmethod(on_device))
    rec = Recommender.load(bundle, providers="cuda")
    assert rec.device == "cuda" and rec.providers[0] == CUDA and rec.scoring == "topk"
    assert ("cuda", (41, 8)) in placed  # the whole item matrix went to the device once
    n_placed = len(placed)
    got = rec.recommend_batch([HISTORY, [101], []], k=5)
    assert len(placed) == n_placed  # nothing is re-uploaded per call
    cpu = Recommender.load(bundle, providers="cpu")
    for g, h in zip(got, [HISTORY, [101], []], strict=True):
        assert g.item_ids == cpu.recommend(h, k=5).item_ids
    rec.add_items([900], ["space war"])  # a new snapshot uploads a new matrix
    assert ("cuda", (42, 8)) in placed and 900 in rec


def test_cuda_without_device_memory_is_a_clear_error(bundle, gpu_build, monkeypatch):
    monkeypatch.setattr(ort.InferenceSession, "get_providers", lambda self: [CUDA, CPU])
    if CUDA in ort.capi._pybind_state.get_available_providers():
        pytest.skip("a real CUDA build")
    with pytest.raises(Exception, match="cannot place the item matrix on cuda"):
        Recommender.load(bundle, providers="cuda")


def test_threads_setting_reaches_the_sessions(bundle):
    rec = Recommender.load(bundle, providers="cpu", threads=1)
    assert all(
        s.get_session_options().intra_op_num_threads == 1 for s in rec.sessions.values()
    )
    assert rec.threads == 1
    assert np.isfinite(rec.user_vector(HISTORY).vector).all()


def test_gpu_recommender_encodes_small_batches_on_the_cpu(bundle, gpu_build, monkeypatch):
    """user_encoder='auto' on CUDA: fewer than GPU_ENCODE_MIN_BATCH histories go to a CPU
    session (launch-bound on a GPU), larger batches to the device session; 'cpu' and
    'device' force one; the answers are the CPU recommender's either way."""
    from edgerec.runtime.recommender import GPU_ENCODE_MIN_BATCH

    monkeypatch.setattr(ort.InferenceSession, "get_providers", lambda self: [CUDA, CPU])
    real = ort.OrtValue.ortvalue_from_numpy
    monkeypatch.setattr(
        ort.OrtValue, "ortvalue_from_numpy", staticmethod(lambda array, *args: real(array))
    )
    cpu = Recommender.load(bundle, providers="cpu")
    histories = [HISTORY, [101], HISTORY[:2]] * (GPU_ENCODE_MIN_BATCH // 3 + 1)
    want = [cpu.recommend(h, k=5).item_ids for h in histories]

    auto = Recommender.load(bundle, providers="cuda")
    assert auto.device == "cuda" and auto.user_encoder == "auto"
    assert auto.encoder_device(1) == "cpu"
    assert auto.encoder_device(GPU_ENCODE_MIN_BATCH - 1) == "cpu"
    assert auto.encoder_device(GPU_ENCODE_MIN_BATCH) == "cuda"
    assert [r.item_ids for r in auto.recommend_batch(histories, k=5)] == want
    assert auto.recommend(HISTORY, k=5).item_ids == want[0]

    device = Recommender.load(bundle, providers="cuda", user_encoder="device")
    assert device.encoder_device(1) == "cuda"
    assert device.recommend(HISTORY, k=5).item_ids == want[0]
    forced = Recommender.load(bundle, providers="cuda", user_encoder="cpu")
    assert forced.encoder_device(10**6) == "cpu"
    assert [r.item_ids for r in forced.recommend_batch(histories, k=5)] == want


@pytest.mark.parametrize("bad", ["gpu", "", None, 1])
def test_bad_user_encoder_placement_is_a_value_error(bundle, bad):
    with pytest.raises(ValueError, match="user_encoder"):
        Recommender.load(bundle, user_encoder=bad)
