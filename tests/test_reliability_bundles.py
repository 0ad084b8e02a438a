"""Corrupted and hostile bundles: each is refused at load with a BundleError naming the file.

Works on copies of a bundle made by the real exporter (fp32 + int8 graphs, a real
tokenizer), complementing tests/test_runtime_bundle.py (hand-made bundles): every file of
the bundle is truncated and bit-flipped, graphs are swapped between roles and bundles,
every manifest key is removed, every path field is pointed outside. Where the manifest's
checksums are updated to match the damage, only the later checks can catch it. A bundle
that fails verification never reaches onnxruntime and nothing in it is unpickled.
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from reliability_helpers import (
    copy_bundle,
    manifest_of,
    raised_in_edgerec,
    real_bundle,
    rehash,
    write_manifest,
)

from edgerec.errors import BundleError, EdgerecError
from edgerec.runtime import Recommender

# every file the exporter writes, except the model card (any text is a valid card)
DATA_FILES = (
    "items.npy",
    "items.json",
    "popularity.npy",
    "tokenizer.json",
    "recommend.onnx",  # also the int8 variant's (the user side stays fp32)
    "user_encoder.onnx",
    "text_encoder.onnx",
    "text_encoder.int8.onnx",
    "shortlist.onnx",
    "topk.onnx",
    "topk.fp16.onnx",
)


@pytest.fixture
def bundle(tmp_path) -> Path:
    return copy_bundle(tmp_path / "bundle")


@pytest.fixture(scope="module")
def other(tmp_path_factory) -> Path:
    """A hand-made bundle with another dimension (8, not 16) to steal graphs from."""
    from runtime_helpers import make_bundle

    return make_bundle(tmp_path_factory.mktemp("other") / "b", dim=8, seed=3)


@pytest.fixture
def no_execution(monkeypatch):
    """Fail loudly if anything builds an onnxruntime session or unpickles."""
    calls = []

    def forbidden(what):
        def fn(*args, **kwargs):
            calls.append(what)
            raise AssertionError(f"{what} called while loading a bad bundle")

        return fn

    monkeypatch.setattr(onnxruntime, "InferenceSession", forbidden("InferenceSession"))
    monkeypatch.setattr(pickle, "loads", forbidden("pickle.loads"))
    monkeypatch.setattr(pickle, "load", forbidden("pickle.load"))
    monkeypatch.setattr(pickle, "Unpickler", forbidden("pickle.Unpickler"))
    monkeypatch.setattr(np, "load", forbidden("numpy.load"))
    return calls


def load_fails(bundle: Path, *fragments: str, **kwargs) -> str:
    with pytest.raises(BundleError) as e:
        Recommender.load(bundle, providers="cpu", threads=1, **kwargs)
    message = str(e.value)
    assert raised_in_edgerec(e.value), message
    for f in fragments:
        assert f in message, message
    return message


def test_the_shared_bundle_is_valid_and_answers():
    rec = Recommender.load(real_bundle(), providers="cpu", threads=1)
    assert rec.precision == "int8" and len(rec.recommend([1, 2, 3], k=5)) == 5
    assert set(DATA_FILES) | {"README.md"} == set(manifest_of(real_bundle())["files"])


# --- truncation and bit flips ---------------------------------------------------------


@pytest.mark.parametrize("name", DATA_FILES)
def test_truncated_file_is_refused_by_its_size(bundle, name, no_execution):
    data = (bundle / name).read_bytes()
    (bundle / name).write_bytes(data[: len(data) // 2])
    load_fails(bundle, name, "size is")
    assert not no_execution


@pytest.mark.parametrize("name", DATA_FILES)
def test_truncated_file_with_matching_checksums_is_refused_by_its_format(bundle, name):
    data = (bundle / name).read_bytes()
    (bundle / name).write_bytes(data[: len(data) // 2])
    rehash(bundle, name)
    load_fails(bundle, name)


@pytest.mark.parametrize("name", DATA_FILES)
def test_bit_flip_is_refused_by_the_checksum(bundle, name, no_execution):
    data = bytearray((bundle / name).read_bytes())
    data[len(data) // 3] ^= 0x10
    (bundle / name).write_bytes(bytes(data))
    load_fails(bundle, name, "sha256 mismatch")
    assert not no_execution


@pytest.mark.parametrize("name", DATA_FILES)
def test_bit_flips_with_matching_checksums_fail_cleanly_or_load_a_working_model(bundle, name):
    """A hostile bundle may flip weight bits and fix the checksums: the file is then
    still a valid model. Either it is refused naming the file, or it loads and every
    answer is well formed -- never a crash or an error from inside a library."""
    original = (bundle / name).read_bytes()
    precision = "fp32" if name in ("user_encoder.onnx", "text_encoder.onnx") else "int8"
    rng = random.Random(sum(name.encode()))
    outcomes = []
    for _ in range(4):
        data = bytearray(original)
        for _ in range(rng.choice((1, 2, 8))):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        (bundle / name).write_bytes(bytes(data))
        rehash(bundle, name)
        try:
            rec = Recommender.load(bundle, providers="cpu", threads=1, precision=precision)
            recs = rec.recommend([1, 2, 3], k=5)
            rec.add_items([10**9], ["space war story"])
        except EdgerecError as e:  # BundleError, or a graph that now computes NaN
            assert raised_in_edgerec(e), str(e)
            assert name in str(e) or "non-finite" in str(e), str(e)
            outcomes.append("refused")
            continue
        assert len(recs) == 5 and all(np.isfinite(x.score) for x in recs)
        outcomes.append("loaded")
    assert len(outcomes) == 4


def test_npy_header_that_does_not_parse_is_refused(bundle, no_execution):
    # a flipped bit inside the header's Python literal: numpy's tokenizer raises
    # TokenError (not a ValueError), which must still become a BundleError
    data = bytearray((bundle / "popularity.npy").read_bytes())
    header_end = data.index(b"\n")
    data[data.index(b"}") : header_end] = b" " * (header_end - data.index(b"}"))
    (bundle / "popularity.npy").write_bytes(bytes(data))
    rehash(bundle, "popularity.npy")
    load_fails(bundle, "popularity.npy", "not a valid .npy")
    assert not no_execution


# --- swapped graphs ----------------------------------------------------------------------


def loads(graph: str) -> dict:
    """Load options under which the recommender builds a session of ``graph`` (a load
    verifies the graphs it runs; ``edgerec inspect`` all of them)."""
    return {"precision": "fp32"} if graph == "text_encoder.onnx" else {}


@pytest.mark.parametrize(
    ("target", "source", "fragment"),
    [
        ("recommend.onnx", "user_encoder.onnx", "a recommend graph has"),
        ("user_encoder.onnx", "text_encoder.onnx", "a user_encoder graph has"),
        ("user_encoder.onnx", "text_encoder.int8.onnx", "a user_encoder graph has"),
        ("text_encoder.onnx", "user_encoder.onnx", "a text_encoder graph has"),
        ("text_encoder.int8.onnx", "recommend.onnx", "a text_encoder graph has"),
    ],
)
def test_graph_swapped_between_roles_is_refused(bundle, target, source, fragment):
    shutil.copy(bundle / source, bundle / target)
    rehash(bundle, target)
    load_fails(bundle, target, fragment, **loads(target))


@pytest.mark.parametrize(
    ("target", "source"),
    [
        ("recommend.onnx", "recommend.onnx"),  # fp32 and the default int8 variant
        ("user_encoder.onnx", "user_encoder.onnx"),
        ("text_encoder.onnx", "text_encoder.onnx"),
        ("text_encoder.int8.onnx", "text_encoder.onnx"),
    ],
)
def test_graph_swapped_in_from_another_bundle_is_refused(bundle, other, target, source):
    shutil.copy(other / source, bundle / target)
    rehash(bundle, target)
    load_fails(bundle, target, "the manifest says 16", **loads(target))


# --- arrays ----------------------------------------------------------------------------


def _save(path: Path, array: np.ndarray, **kwargs) -> None:
    with open(path, "wb") as f:
        np.lib.format.write_array(f, array, **kwargs)


@pytest.mark.parametrize(
    ("array", "fragment"),
    [
        (np.zeros((61, 17), np.float32), "shape"),
        (np.zeros((60, 16), np.float32), "shape"),
        (np.zeros((61 * 16,), np.float32), "shape"),
        (np.zeros((61, 16, 1), np.float32), "shape"),
        (np.zeros((61, 16), np.float64), "dtype"),
        (np.zeros((61, 16), np.int8), "dtype"),
        (np.zeros((61, 16), np.float16), "dtype"),
        (np.zeros((61, 16), np.dtype(">f4")), "unsupported dtype"),
        (np.zeros((61, 16), np.complex64), "unsupported dtype"),
        (np.full((61, 16), np.inf, np.float32), "NaN or infinite"),
    ],
)
def test_item_matrix_of_the_wrong_shape_dtype_or_values_is_refused(bundle, array, fragment):
    _save(bundle / "items.npy", array)
    rehash(bundle, "items.npy")
    load_fails(bundle, "items.npy", fragment)


@pytest.mark.parametrize("name", ["items.npy", "popularity.npy"])
def test_pickled_object_array_is_refused_without_unpickling(bundle, name, no_execution):
    class Boom:
        def __reduce__(self):  # would run on unpickling
            return (os.system, ("touch /tmp/edgerec-pwned",))

    _save(bundle / name, np.array([Boom()] * 61, dtype=object), allow_pickle=True)
    rehash(bundle, name)
    load_fails(bundle, name, "pickle")
    assert not no_execution and not Path("/tmp/edgerec-pwned").exists()


def test_a_valid_bundle_loads_without_pickle_or_numpy_load(monkeypatch):
    for target, attr in ((pickle, "loads"), (pickle, "load"), (np, "load")):
        monkeypatch.setattr(target, attr, lambda *a, **k: pytest.fail("unpickling"))
    assert len(Recommender.load(real_bundle(), providers="cpu").recommend([1], k=3)) == 3


def test_an_int8_matrix_without_scales_or_a_scale_file_of_the_wrong_shape(bundle):
    m = manifest_of(bundle)
    _save(bundle / "items.npy", np.zeros((61, 16), np.int8))
    _save(bundle / "items_scale.npy", np.ones((60,), np.float32))
    m["item_matrix"] = {"file": "items.npy", "dtype": "int8", "scale_file": None}
    write_manifest(bundle, m)
    rehash(bundle)
    load_fails(bundle, "scale_file")
    m = manifest_of(bundle)
    m["item_matrix"]["scale_file"] = "items_scale.npy"
    write_manifest(bundle, m)
    rehash(bundle)
    load_fails(bundle, "items_scale.npy", "(61,)")


# --- the manifest ----------------------------------------------------------------------

REQUIRED = (
    "format",
    "format_version",
    "dims",
    "behaviour_vocab",
    "precisions",
    "default_precision",
    "graphs",
    "item_matrix",
    "item_ids",
    "popularity",
    "files",
)


@pytest.mark.parametrize("key", REQUIRED)
def test_manifest_missing_a_required_key_is_refused(bundle, key, no_execution):
    m = manifest_of(bundle)
    del m[key]
    write_manifest(bundle, m)
    load_fails(bundle, "manifest.json")
    assert not no_execution


@pytest.mark.parametrize(
    "key", ["dim", "n_items", "max_len", "window", "n_behaviours", "n_gap_buckets"]
)
def test_manifest_missing_a_dims_key_is_refused(bundle, key):
    m = manifest_of(bundle)
    del m["dims"][key]
    write_manifest(bundle, m)
    load_fails(bundle, "manifest.json", key)


@pytest.mark.parametrize(
    ("key", "value"),
    [("dim", 0), ("dim", -3), ("dim", 2**40), ("dim", "16"), ("dim", 16.0), ("max_len", None)],
)
def test_manifest_with_impossible_dims_is_refused(bundle, key, value):
    m = manifest_of(bundle)
    m["dims"][key] = value
    write_manifest(bundle, m)
    load_fails(bundle, "manifest.json", key)


@pytest.mark.parametrize("version", [1, 3, 10**9, "2", 2.5, True, 0, None])
def test_manifest_with_an_unsupported_format_version_is_refused(bundle, version):
    m = manifest_of(bundle)
    m["format_version"] = version
    write_manifest(bundle, m)
    load_fails(bundle, "manifest.json")


def test_newer_format_version_says_upgrade_and_older_says_re_export(bundle):
    m = manifest_of(bundle)
    m["format_version"] = 3
    write_manifest(bundle, m)
    load_fails(bundle, "format version 3", "upgrade edgerec")
    m["format_version"] = 1
    write_manifest(bundle, m)
    load_fails(bundle, "format version 1", "re-export it")


@pytest.mark.parametrize(
    "text",
    ["", "null", "[]", "{", "\ufeff{}", "[" * 100_000 + "]" * 100_000, '{"format": 1}'],
)
def test_manifest_that_is_not_a_manifest_is_refused(bundle, text):
    (bundle / "manifest.json").write_text(text)
    load_fails(bundle, "manifest.json")


def test_oversized_manifest_is_not_read(bundle):
    with open(bundle / "manifest.json", "ab") as f:
        f.truncate(65 << 20)  # sparse: no disk used
    load_fails(bundle, "manifest.json", "too large")


# --- paths ---------------------------------------------------------------------------

PATH_FIELDS = {
    "item_matrix.file": lambda m, v: m["item_matrix"].update(file=v),
    "item_ids": lambda m, v: m.update(item_ids=v),
    "popularity": lambda m, v: m.update(popularity=v),
    "tokenizer": lambda m, v: m.update(tokenizer=v),
    "graphs.user_encoder.int8": lambda m, v: m["graphs"]["user_encoder"].update(int8=v),
    "graphs.text_encoder.fp32": lambda m, v: m["graphs"]["text_encoder"].update(fp32=v),
}
OUTSIDE = ["../items.npy", "/etc/passwd", "sub/items.npy", "..", ".", "~/x", "a\\..\\b", "x\x00"]


@pytest.mark.parametrize("field", list(PATH_FIELDS))
@pytest.mark.parametrize("value", OUTSIDE)
def test_manifest_path_outside_the_bundle_is_refused(bundle, field, value, no_execution):
    m = manifest_of(bundle)
    PATH_FIELDS[field](m, value)
    write_manifest(bundle, m)
    message = load_fails(bundle, "manifest.json")
    assert ("plain file name" in message) or ("not listed in files" in message), message
    assert not no_execution


@pytest.mark.parametrize("name", DATA_FILES)
def test_symlink_out_of_the_bundle_is_refused(bundle, tmp_path, name, no_execution):
    outside = tmp_path / "elsewhere" / name
    outside.parent.mkdir()
    shutil.move(bundle / name, outside)  # identical content: only the link is wrong
    os.symlink(outside, bundle / name)
    load_fails(bundle, name, "symlink pointing outside")
    assert not no_execution


def test_symlink_chain_leaving_the_bundle_is_refused(bundle, tmp_path):
    shutil.move(bundle / "items.json", tmp_path / "items.json")
    os.symlink(tmp_path / "items.json", bundle / "hop.json")
    os.symlink("hop.json", bundle / "items.json")  # relative, inside, then out
    load_fails(bundle, "items.json", "symlink pointing outside")


def test_manifest_itself_as_a_symlink_out_is_refused(bundle, tmp_path):
    shutil.move(bundle / "manifest.json", tmp_path / "manifest.json")
    os.symlink(tmp_path / "manifest.json", bundle / "manifest.json")
    load_fails(bundle, "manifest.json", "symlink pointing outside")


# --- external data ---------------------------------------------------------------------


def _point_a_tensor_outside(src: Path, dst: Path, location: str) -> None:
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(src))
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "64")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    dst.write_bytes(model.SerializeToString())


@pytest.mark.parametrize("location", ["/etc/passwd", "../../../../etc/shadow", "weights.bin"])
@pytest.mark.parametrize("name", ["user_encoder.onnx", "text_encoder.int8.onnx"])
def test_onnx_with_external_data_is_refused_before_onnxruntime_sees_it(
    bundle, name, location, no_execution
):
    _point_a_tensor_outside(real_bundle() / name, bundle / name, location)
    if location == "weights.bin":  # even inside the bundle and listed in files
        (bundle / "weights.bin").write_bytes(b"\0" * 64)
    rehash(bundle)
    if location == "weights.bin":
        m = manifest_of(bundle)
        assert "weights.bin" in m["files"]
    load_fails(bundle, name, "external data")
    assert not no_execution
