"""``edgerec convert-ort``: ORT-format graphs beside the ONNX ones, listed with checksums,
the bundle still verified by the Python runtime, the same outputs (the JS tests run the
.ort graphs in Node and Chromium against the Python runtime)."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
from runtime_helpers import make_bundle

from edgerec.commands.ort import OPS_CONFIG, convert
from edgerec.runtime.bundle import verify_all


def test_convert_ort_adds_graphs_config_and_checksums(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    manifest = convert(bundle)
    assert manifest["ort_graphs"] == {
        "recommend.onnx": "recommend.ort",
        "text_encoder.onnx": "text_encoder.ort",
        "user_encoder.onnx": "user_encoder.ort",
    }
    assert json.loads((bundle / "manifest.json").read_text())["files"].keys() >= {
        "recommend.ort",
        OPS_CONFIG,
    }
    assert (
        "com.microsoft;1;" in (bundle / OPS_CONFIG).read_text()
        or "ai.onnx;" in (bundle / OPS_CONFIG).read_text()
    )
    verify_all(bundle)  # every checksum, old and new
    feeds = {
        "history_rows": np.array([[1, 2, 3]]),
        "history_behaviours": np.array([[4, 4, 4]]),
        "history_times": np.array([[0, 10, 100]]),
        "now": np.array([200]),
        "item_matrix": np.load(bundle / "items.npy"),
    }
    a, b = (
        ort.InferenceSession(str(bundle / f), providers=["CPUExecutionProvider"]).run(None, feeds)
        for f in ("user_encoder.onnx", "user_encoder.ort")
    )
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
