"""Bundle verification: every kind of broken or hostile bundle fails at load, naming the file."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from runtime_helpers import make_bundle, rehash

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


def load_fails(bundle: Path, *fragments: str) -> str:
    with pytest.raises(BundleError) as e:
        Recommender.load(bundle, providers="cpu")
    message = str(e.value)
    for f in fragments:
        assert f in message, message
    return message


def test_valid_bundle_loads_and_all_files_check_out(bundle):
    rec = Recommender.load(bundle, providers="cpu")
    assert rec.n_items == 40 and rec.dim == 8
    assert all(c.ok for c in check_files(bundle, read_manifest(bundle)))


def test_missing_manifest_and_missing_directory(bundle, tmp_path):
    (bundle / "manifest.json").unlink()
    load_fails(bundle, "manifest.json", "missing")
    with pytest.raises(BundleError, match="not a bundle directory"):
        Recommender.load(tmp_path / "nope")


def test_manifest_not_json_or_not_a_bundle(bundle):
    (bundle / "manifest.json").write_text("{not json")
    load_fails(bundle, "manifest.json", "not valid JSON")
    (bundle / "manifest.json").write_text(json.dumps({"format": "something-else"}))
    load_fails(bundle, "manifest.json", "not an edgerec bundle")
    (bundle / "manifest.json").write_text("[1, 2]")
    load_fails(bundle, "manifest.json", "not a JSON object")


def test_newer_format_version_is_refused(bundle):
    edit_manifest(bundle, lambda m: m.update(format_version=2))
    load_fails(bundle, "manifest.json", "format version 2 is newer")


@pytest.mark.parametrize("key", ["dims", "files", "graphs", "item_matrix", "behaviour_vocab"])
def test_missing_manifest_key(bundle, key):
    edit_manifest(bundle, lambda m: m.pop(key))
    load_fails(bundle, "manifest.json", key)


def test_missing_dims_key_and_bool_dims(bundle):
    edit_manifest(bundle, lambda m: m["dims"].pop("max_len"))
    load_fails(bundle, "max_len")
    edit_manifest(bundle, lambda m: m["dims"].update(max_len=True))
    load_fails(bundle, "max_len", "bool")


@pytest.mark.parametrize(
    "name", ["../items.npy", "/etc/passwd", "sub/items.npy", "..", "C:\\items.npy", "a\\b"]
)
def test_paths_outside_the_bundle_are_rejected(bundle, name):
    edit_manifest(bundle, lambda m: m["item_matrix"].update(file=name))
    load_fails(bundle, "manifest.json", "not a plain file name")


def test_listed_file_name_outside_is_rejected_even_if_unused(bundle):
    def add(m):
        m["files"]["../../etc/passwd"] = {"sha256": "0" * 64, "size": 1}

    edit_manifest(bundle, add)
    load_fails(bundle, "not a plain file name")


def test_symlink_pointing_outside_is_rejected(bundle, tmp_path):
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


def test_fifo_is_not_read(bundle):
    (bundle / "items.json").unlink()
    os.mkfifo(bundle / "items.json")
    load_fails(bundle, "items.json", "not a regular file")


def test_file_not_in_manifest_files_is_refused(bundle):
    edit_manifest(bundle, lambda m: m["files"].pop("popularity.npy"))
    load_fails(bundle, "popularity.npy", "not listed in files")


def test_bit_flip_is_caught_by_sha256(bundle):
    data = bytearray((bundle / "user_encoder.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (bundle / "user_encoder.onnx").write_bytes(bytes(data))
    load_fails(bundle, "user_encoder.onnx", "sha256 mismatch")


def test_truncated_file_is_caught_by_size(bundle):
    data = (bundle / "text_encoder.onnx").read_bytes()
    (bundle / "text_encoder.onnx").write_bytes(data[: len(data) // 2])
    load_fails(bundle, "text_encoder.onnx", "size is")


def test_truncated_onnx_with_matching_checksum_is_invalid_onnx(bundle):
    data = (bundle / "user_encoder.onnx").read_bytes()
    (bundle / "user_encoder.onnx").write_bytes(data[: len(data) - 100])
    rehash(bundle)
    load_fails(bundle, "user_encoder.onnx")


def test_missing_listed_file(bundle):
    (bundle / "README.md").unlink()
    load_fails(bundle, "README.md", "missing")


def test_items_npy_wrong_shape(bundle):
    np.save(bundle / "items.npy", np.zeros((41, 9), np.float32))
    rehash(bundle)
    load_fails(bundle, "items.npy", "shape")


def test_items_npy_wrong_dtype(bundle):
    np.save(bundle / "items.npy", np.zeros((41, 8), np.float64))
    rehash(bundle)
    load_fails(bundle, "items.npy", "dtype")


def test_items_npy_with_nan(bundle):
    m = np.load(bundle / "items.npy")
    m[3, 2] = np.nan
    np.save(bundle / "items.npy", m)
    rehash(bundle)
    load_fails(bundle, "items.npy", "NaN")


def test_pickled_npy_is_never_unpickled(bundle):
    np.save(bundle / "popularity.npy", np.array([{"x": 1}] * 41, dtype=object), allow_pickle=True)
    rehash(bundle)
    load_fails(bundle, "popularity.npy", "pickle")


def test_garbage_npy(bundle):
    (bundle / "popularity.npy").write_bytes(b"\x93NUMPY garbage")
    rehash(bundle)
    load_fails(bundle, "popularity.npy", "not a valid .npy")


def test_swapped_user_encoder_from_another_bundle(bundle, other):
    shutil.copy(other / "user_encoder.onnx", bundle / "user_encoder.onnx")
    rehash(bundle)
    load_fails(bundle, "user_encoder.onnx")


def test_swapped_text_encoder_from_another_bundle(bundle, other):
    shutil.copy(other / "text_encoder.onnx", bundle / "text_encoder.onnx")
    rehash(bundle)
    load_fails(bundle, "text_encoder.onnx", "item_vector")


def test_onnx_with_external_data_is_refused_before_onnxruntime_reads_it(bundle, tmp_path):
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


def test_dims_disagree_with_graph(bundle):
    def bump(m):
        m["dims"]["dim"] = 16

    edit_manifest(bundle, bump)
    load_fails(bundle, "items.npy", "shape")


def test_n_items_disagree_with_items_json(bundle):
    ids = json.loads((bundle / "items.json").read_text())
    ids["ids"] = ids["ids"][:-1]
    ids["titles"] = ids["titles"][:-1]
    (bundle / "items.json").write_text(json.dumps(ids))
    rehash(bundle)
    load_fails(bundle, "items.json", "39 ids")


def test_duplicate_ids_in_items_json(bundle):
    ids = json.loads((bundle / "items.json").read_text())
    ids["ids"][1] = ids["ids"][0]
    (bundle / "items.json").write_text(json.dumps(ids))
    rehash(bundle)
    load_fails(bundle, "items.json", "not unique")


def test_gap_bucket_count_must_match_the_runtime(bundle):
    edit_manifest(bundle, lambda m: m["dims"].update(n_gap_buckets=33))
    load_fails(bundle, "n_gap_buckets")


def test_behaviour_vocab_must_match_dims(bundle):
    edit_manifest(bundle, lambda m: m.update(behaviour_vocab=["none", "1"]))
    load_fails(bundle, "behaviour_vocab")


def test_int8_matrix_needs_scales(bundle):
    edit_manifest(bundle, lambda m: m["item_matrix"].update(dtype="int8"))
    load_fails(bundle, "scale_file")


def test_graph_inputs_must_match_the_manifest_table_mode(bundle):
    edit_manifest(bundle, lambda m: m.update(user_encoder_table="initializer"))
    load_fails(bundle, "user_encoder.onnx", "item_table")


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
