"""Bundle verification: every kind of broken or hostile bundle fails at load, naming the
file, and ``edgerec inspect`` fails on it with the same message (one verification)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from runtime_helpers import make_bundle, rehash

from edgerec.cli import main
from edgerec.errors import BundleError
from edgerec.runtime import Recommender
from edgerec.runtime.bundle import check_files, read_manifest


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("rt-bundle") / "b")


@pytest.fixture(scope="module")
def other(tmp_path_factory) -> Path:
    """A second bundle with another dimension (for swapped-file attacks)."""
    return make_bundle(tmp_path_factory.mktemp("rt-bundle-other") / "b", dim=12, seed=3)


@pytest.fixture
def bundle(base, tmp_path) -> Path:
    out = tmp_path / "bundle"
    shutil.copytree(base, out)
    return out


def edit_manifest(bundle: Path, fn) -> None:
    m = json.loads((bundle / "manifest.json").read_text())
    fn(m)
    (bundle / "manifest.json").write_text(json.dumps(m))


def inspect_json(bundle: Path, capsys) -> tuple[int, dict | None, str]:
    """``edgerec inspect --json``: exit status, the JSON (None if it printed none), stderr."""
    try:
        main(["inspect", str(bundle), "--json"])
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr()
    return code, json.loads(out.out) if out.out.strip() else None, out.err


@pytest.fixture
def load_fails(capsys):
    """Check that loading ``bundle`` raises a BundleError holding ``fragments`` -- and that
    ``edgerec inspect`` exits non-zero, not verified, with the same message."""

    def check(bundle: Path, *fragments: str, **load_options) -> str:
        with pytest.raises(BundleError) as e:
            Recommender.load(bundle, providers="cpu", **load_options)
        message = str(e.value)
        for f in fragments:
            assert f in message, message
        code, report, err = inspect_json(bundle, capsys)
        assert code == 2
        if report is not None:
            assert report["verified"] is False and report["problem"] == message
        else:  # the manifest itself is unreadable: the one-line error says the same
            assert message in " ".join(err.split()), err
        return message

    return check


def test_valid_bundle_loads_and_all_files_check_out(bundle, capsys):
    rec = Recommender.load(bundle, providers="cpu")
    assert rec.n_items == 40 and rec.dim == 8
    assert all(c.ok for c in check_files(bundle, read_manifest(bundle)))
    code, report, _ = inspect_json(bundle, capsys)
    assert code == 0 and report["verified"] is True and report["problem"] is None


def test_missing_manifest_and_missing_directory(bundle, tmp_path, load_fails):
    (bundle / "manifest.json").unlink()
    load_fails(bundle, "manifest.json", "missing")
    with pytest.raises(BundleError, match="not a bundle directory"):
        Recommender.load(tmp_path / "nope")


def test_manifest_not_json_or_not_a_bundle(bundle, load_fails):
    (bundle / "manifest.json").write_text("{not json")
    load_fails(bundle, "manifest.json", "not valid JSON")
    (bundle / "manifest.json").write_text(json.dumps({"format": "something-else"}))
    load_fails(bundle, "manifest.json", "not an edgerec bundle")
    (bundle / "manifest.json").write_text("[1, 2]")
    load_fails(bundle, "manifest.json", "not a JSON object")


def test_other_format_versions_are_refused(bundle, load_fails):
    edit_manifest(bundle, lambda m: m.update(format_version=3))
    load_fails(bundle, "manifest.json", "format version 3", "upgrade edgerec")
    edit_manifest(bundle, lambda m: m.update(format_version=1))
    load_fails(bundle, "manifest.json", "format version 1", "re-export it")


@pytest.mark.parametrize("key", ["dims", "files", "graphs", "item_matrix", "behaviour_vocab"])
def test_missing_manifest_key(bundle, key, load_fails):
    edit_manifest(bundle, lambda m: m.pop(key))
    load_fails(bundle, "manifest.json", key)


def test_missing_dims_key_and_bool_dims(bundle, load_fails):
    edit_manifest(bundle, lambda m: m["dims"].pop("max_len"))
    load_fails(bundle, "max_len")
    edit_manifest(bundle, lambda m: m["dims"].update(max_len=True))
    load_fails(bundle, "max_len", "bool")


@pytest.mark.parametrize(
    "name", ["../items.npy", "/etc/passwd", "sub/items.npy", "..", "C:\\items.npy", "a\\b"]
)
def test_paths_outside_the_bundle_are_rejected(bundle, name, load_fails):
    edit_manifest(bundle, lambda m: m["item_matrix"].update(file=name))
    load_fails(bundle, "manifest.json", "not a plain file name")


def test_listed_file_name_outside_is_rejected_even_if_unused(bundle, load_fails):
    def add(m):
        m["files"]["../../etc/passwd"] = {"sha256": "0" * 64, "size": 1}

    edit_manifest(bundle, add)
    load_fails(bundle, "not a plain file name")


def test_symlink_pointing_outside_is_rejected(bundle, tmp_path, load_fails):
    outside = tmp_path / "outside.npy"
    shutil.copy(bundle / "items.npy", outside)
    (bundle / "items.npy").unlink()
    os.symlink(outside, bundle / "items.npy")
    load_fails(bundle, "items.npy", "symlink pointing outside")


def test_symlink_inside_the_bundle_is_fine(bundle):
    shutil.move(bundle / "items.npy", bundle / "items-real.npy")
    os.symlink("items-real.npy", bundle / "items.npy")
    rehash(bundle)
    assert Recommender.load(bundle, providers="cpu").n_items == 40


def test_fifo_is_not_read(bundle, load_fails):
    (bundle / "items.json").unlink()
    os.mkfifo(bundle / "items.json")
    load_fails(bundle, "items.json", "not a regular file")


def test_file_not_in_manifest_files_is_refused(bundle, load_fails):
    edit_manifest(bundle, lambda m: m["files"].pop("popularity.npy"))
    load_fails(bundle, "popularity.npy", "not listed in files")


def test_bit_flip_is_caught_by_sha256(bundle, load_fails):
    data = bytearray((bundle / "recommend.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (bundle / "recommend.onnx").write_bytes(bytes(data))
    load_fails(bundle, "recommend.onnx", "sha256 mismatch")


def test_truncated_file_is_caught_by_size(bundle, load_fails):
    data = (bundle / "text_encoder.onnx").read_bytes()
    (bundle / "text_encoder.onnx").write_bytes(data[: len(data) // 2])
    load_fails(bundle, "text_encoder.onnx", "size is")


@pytest.mark.parametrize("graph", ["recommend.onnx", "user_encoder.onnx", "topk.onnx"])
def test_truncated_onnx_with_matching_checksum_is_invalid_onnx(bundle, load_fails, graph):
    data = (bundle / graph).read_bytes()
    (bundle / graph).write_bytes(data[: len(data) - 100])
    rehash(bundle)
    load_fails(bundle, graph)


def test_missing_listed_file(bundle, load_fails):
    (bundle / "README.md").unlink()
    load_fails(bundle, "README.md", "missing")


def test_items_npy_wrong_shape(bundle, load_fails):
    np.save(bundle / "items.npy", np.zeros((41, 9), np.float32))
    rehash(bundle)
    load_fails(bundle, "items.npy", "shape")


def test_items_npy_wrong_dtype(bundle, load_fails):
    np.save(bundle / "items.npy", np.zeros((41, 8), np.float64))
    rehash(bundle)
    load_fails(bundle, "items.npy", "dtype")


def test_items_npy_with_nan(bundle, load_fails):
    m = np.load(bundle / "items.npy")
    m[3, 2] = np.nan
    np.save(bundle / "items.npy", m)
    rehash(bundle)
    load_fails(bundle, "items.npy", "NaN")


def test_pickled_npy_is_never_unpickled(bundle, load_fails):
    np.save(bundle / "popularity.npy", np.array([{"x": 1}] * 41, dtype=object), allow_pickle=True)
    rehash(bundle)
    load_fails(bundle, "popularity.npy", "pickle")


def test_garbage_npy(bundle, load_fails):
    (bundle / "popularity.npy").write_bytes(b"\x93NUMPY garbage")
    rehash(bundle)
    load_fails(bundle, "popularity.npy", "not a valid .npy")


@pytest.mark.parametrize("graph", ["recommend.onnx", "user_encoder.onnx", "topk.onnx"])
def test_swapped_graph_from_a_bundle_of_other_dimensions(bundle, other, load_fails, graph):
    shutil.copy(other / graph, bundle / graph)
    rehash(bundle)
    load_fails(bundle, graph, "dimension", scoring="topk" if graph == "topk.onnx" else "auto")


def test_graph_of_another_role_is_refused(bundle, load_fails):
    shutil.copy(bundle / "user_encoder.onnx", bundle / "recommend.onnx")
    rehash(bundle)
    load_fails(bundle, "recommend.onnx", "a recommend graph has")


def test_swapped_text_encoder_from_another_bundle(bundle, other, load_fails):
    shutil.copy(other / "text_encoder.onnx", bundle / "text_encoder.onnx")
    rehash(bundle)
    load_fails(bundle, "text_encoder.onnx", "item_vector")


def test_onnx_with_external_data_is_refused_before_onnxruntime_reads_it(
    bundle, tmp_path, load_fails
):
    onnx = pytest.importorskip("onnx")
    from onnx import external_data_helper

    model = onnx.load(str(bundle / "user_encoder.onnx"))
    external_data_helper.convert_model_to_external_data(
        model, all_tensors_to_one_file=True, location="weights.bin", size_threshold=0
    )
    onnx.save_model(model, str(tmp_path / "user_encoder.onnx"))
    shutil.copy(tmp_path / "user_encoder.onnx", bundle / "user_encoder.onnx")
    shutil.copy(tmp_path / "weights.bin", bundle / "weights.bin")
    rehash(bundle)
    load_fails(bundle, "user_encoder.onnx", "external data")
    # the same graph pointing outside the bundle (its checksum updated to match)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../../outside.bin"
    (bundle / "user_encoder.onnx").write_bytes(model.SerializeToString())
    rehash(bundle)
    load_fails(bundle, "user_encoder.onnx", "external data")


def test_dims_disagree_with_graph(bundle, load_fails):
    def bump(m):
        m["dims"]["dim"] = 16

    edit_manifest(bundle, bump)
    load_fails(bundle, "items.npy", "shape")


def test_n_items_disagree_with_items_json(bundle, load_fails):
    ids = json.loads((bundle / "items.json").read_text())
    ids["ids"] = ids["ids"][:-1]
    ids["titles"] = ids["titles"][:-1]
    (bundle / "items.json").write_text(json.dumps(ids))
    rehash(bundle)
    load_fails(bundle, "items.json", "39 ids")


def test_duplicate_ids_in_items_json(bundle, load_fails):
    ids = json.loads((bundle / "items.json").read_text())
    ids["ids"][1] = ids["ids"][0]
    (bundle / "items.json").write_text(json.dumps(ids))
    rehash(bundle)
    load_fails(bundle, "items.json", "not unique")


def test_gap_bucket_count_must_match_the_runtime(bundle, load_fails):
    edit_manifest(bundle, lambda m: m["dims"].update(n_gap_buckets=33))
    load_fails(bundle, "n_gap_buckets")


def test_behaviour_vocab_must_match_dims(bundle, load_fails):
    edit_manifest(bundle, lambda m: m.update(behaviour_vocab=["none", "1"]))
    load_fails(bundle, "behaviour_vocab")


def test_int8_matrix_needs_scales(bundle, load_fails):
    edit_manifest(bundle, lambda m: m["item_matrix"].update(dtype="int8"))
    load_fails(bundle, "scale_file")


def test_a_training_run_folder_says_how_to_export_it(tmp_path, load_fails):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    load_fails(run, "training run", "edgerec export")


def test_a_graph_variant_not_loaded_is_still_verified_by_inspect(bundle, other, capsys):
    """``load`` verifies the graphs it runs; ``inspect`` every variant of every precision."""
    shutil.copy(other / "text_encoder.onnx", bundle / "text_encoder.fp16.onnx")

    def add(m):
        m["precisions"].append("fp16")
        for role in ("recommend", "user_encoder"):
            m["graphs"][role]["fp16"] = m["graphs"][role]["fp32"]
        m["graphs"]["text_encoder"]["fp16"] = "text_encoder.fp16.onnx"

    edit_manifest(bundle, add)
    rehash(bundle)
    assert Recommender.load(bundle, providers="cpu", precision="fp32").n_items == 40
    code, report, _ = inspect_json(bundle, capsys)
    assert code == 2 and not report["verified"]
    assert "text_encoder.fp16.onnx" in report["problem"] and "dimension" in report["problem"]


def test_unknown_precision_request_is_a_value_error(bundle):
    with pytest.raises(ValueError, match="not in this bundle"):
        Recommender.load(bundle, precision="int8")
    with pytest.raises(ValueError, match="precision"):
        Recommender.load(bundle, precision="fp64")


def test_check_files_reports_every_bad_file(bundle):
    (bundle / "README.md").write_text("changed")
    (bundle / "items.json").write_text("{}")
    checks = {c.name: c for c in check_files(bundle, read_manifest(bundle))}
    assert not checks["README.md"].ok and not checks["items.json"].ok
    assert checks["items.npy"].ok
