"""``edgerec export --target``: the int8 text encoder quantized per hardware target.

One tiny run (the 2-layer random BERT, which exports in seconds) is exported once per
target, int8 + fp32, without the quality step; each bundle is loaded through the public
runtime API. ``platform.machine`` is patched so the architecture checks do not depend on
the machine running the tests.
"""

from __future__ import annotations

import json
import platform
import shutil
import warnings

import numpy as np
import pytest
from export_fixtures import make_tiny_bundle, make_tiny_run

from edgerec.errors import BundleError
from edgerec.export.targets import TARGETS, parse_target
from edgerec.runtime import Recommender
from edgerec.runtime.manifest import QuantizationTargetWarning

# docs/bundle.md: an int8 text encoder's item vectors keep this cosine to the fp32 graph's
MIN_COSINE = 0.95
MACHINE = {"x86_64": "x86_64", "arm64": "aarch64"}
TEXTS = [
    "a quiet space drama about a long war",
    "comedy night in the city",
    "Horror. Genres: Horror, Thriller.",
    "an action story with music and love, and a crime nobody solved",
]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("targets")
    run = make_tiny_run(root / "run", text_encoder="tiny")
    out = {}
    for target in TARGETS:
        manifest = make_tiny_bundle(
            root / target, run_dir=run, precisions=("fp32", "int8"), target=target, evaluate=False
        )
        out[target] = (root / target, manifest)
    return out


def _vectors(bundle, precision: str) -> np.ndarray:
    rec = Recommender.load(bundle, providers="cpu", threads=1, precision=precision)
    ids = [10_000 + i for i in range(len(TEXTS))]  # new items (the tiny catalog's ids are ints)
    rec.add_items(ids, TEXTS)
    return rec.item_vectors(ids)


def test_targets_parse_and_bad_values_name_the_choices():
    from edgerec.export import ExportConfig

    assert parse_target("avx2") == "avx2"
    assert parse_target(" AVX512-VNNI ") == "avx512_vnni"
    assert ExportConfig(target="ARM64").target == "arm64"
    assert ExportConfig().target == "avx512_vnni"  # earlier exports' int8 graph
    for bad in ("avx9", "", "x86", None, 3):
        with pytest.raises(ValueError, match="avx2, avx512, avx512_vnni, arm64"):
            parse_target(bad)
    with pytest.raises(ValueError, match="unknown quantization target 'sse4'"):
        ExportConfig(target="sse4")


def test_the_cli_refuses_a_bad_target_before_loading_anything(tmp_path, capsys):
    from edgerec.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["export", str(tmp_path / "no-run"), "--out", str(tmp_path / "b"), "--target", "neon"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown quantization target 'neon'" in err and "arm64" in err
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("target", list(TARGETS))
def test_each_target_loads_and_agrees_with_fp32(bundles, target, monkeypatch):
    bundle, manifest = bundles[target]
    assert manifest["quantization_target"] == target
    assert manifest["export"]["text_encoder"]["int8"]["target"] == target
    assert json.loads((bundle / "manifest.json").read_text())["quantization_target"] == target
    monkeypatch.setattr(platform, "machine", lambda: MACHINE[TARGETS[target].machine])
    with warnings.catch_warnings():
        warnings.simplefilter("error", QuantizationTargetWarning)  # its own architecture
        got = _vectors(bundle, "int8")
    ref = _vectors(bundle, "fp32")
    cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() >= MIN_COSINE, cos
    assert not np.array_equal(got, ref)  # the int8 graph is what ran


def test_targets_differ_in_their_weights_as_documented(bundles):
    import onnx

    def weight_types(target):
        bundle, manifest = bundles[target]
        model = onnx.load(str(bundle / manifest["graphs"]["text_encoder"]["int8"]))
        inits = {i.name: i for i in model.graph.initializer}
        types, peak = set(), 0
        for node in model.graph.node:
            if node.op_type == "MatMulInteger" and node.input[1] in inits:
                w = onnx.numpy_helper.to_array(inits[node.input[1]]).astype(np.int64)
                zero = onnx.numpy_helper.to_array(inits[node.input[3]]).astype(np.int64)
                types.add(inits[node.input[1]].data_type)
                peak = max(peak, int(np.abs(w - zero.reshape(-1)).max()))
        return types, peak

    u8, s8 = onnx.TensorProto.UINT8, onnx.TensorProto.INT8
    assert weight_types("avx2")[0] == {u8}
    for target in ("avx512", "avx512_vnni", "arm64"):
        assert weight_types(target)[0] == {s8}
    assert weight_types("avx512")[1] <= 64 < weight_types("avx512_vnni")[1]  # 7-bit range


def test_an_arm64_bundle_loads_on_x86_with_a_warning(bundles, monkeypatch):
    bundle, _ = bundles["arm64"]
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    with pytest.warns(QuantizationTargetWarning, match="quantized for arm64.*x86_64"):
        rec = Recommender.load(bundle, providers="cpu", threads=1)
    assert rec.precision == "int8"
    rec.add_items([10_000], [TEXTS[0]])
    assert len(rec.recommend([10_000], k=3)) == 3  # it serves, from the cold item's vector


def test_no_warning_on_the_targets_own_architecture_or_for_fp32_bundles(bundles, monkeypatch):
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    with warnings.catch_warnings():
        warnings.simplefilter("error", QuantizationTargetWarning)
        Recommender.load(bundles["arm64"][0], providers="cpu", threads=1)
    with pytest.warns(QuantizationTargetWarning, match="avx512_vnni.*aarch64.*--target arm64"):
        Recommender.load(bundles["avx512_vnni"][0], providers="cpu", threads=1)


def test_the_manifest_target_is_checked_and_optional(bundles, tmp_path, monkeypatch):
    from runtime_helpers import rehash

    bundle = tmp_path / "b"
    shutil.copytree(bundles["arm64"][0], bundle)
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["quantization_target"] = 5
    path.write_text(json.dumps(manifest))
    rehash(bundle)
    with pytest.raises(BundleError, match="quantization_target must be a short string"):
        Recommender.load(bundle, providers="cpu", threads=1)
    del manifest["quantization_target"]  # bundles of earlier exports: no target, no warning
    path.write_text(json.dumps(manifest))
    rehash(bundle)
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    with warnings.catch_warnings():
        warnings.simplefilter("error", QuantizationTargetWarning)
        assert Recommender.load(bundle, providers="cpu", threads=1).precision == "int8"
