"""Reading and verifying a bundle (format in docs/bundle.md) without trusting it.

A bundle arrives from elsewhere -- a download, a shared drive, an app update -- so every
byte is checked before it is used: the manifest's shape and versions, each file's name
(a plain name inside the bundle, no symlink out of it), size and sha256, that no ONNX
graph refers to external data (onnxruntime would open whatever path it names), and that
the arrays have the shapes and dtypes the manifest promises. Files are read once; what
is hashed is exactly what gets used, and ``.npy`` files are parsed header-first with no
pickle support at all. Every failure is a ``BundleError`` naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import stat
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from edgerec.errors import BundleError
from edgerec.features import N_GAP_BUCKETS
from edgerec.io import interrupted_swap
from edgerec.runtime.onnxproto import OnnxSummary, ProtoError, scan_model

FORMAT = "edgerec-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 64 << 20
MAX_JSON_BYTES = 1 << 30  # items.json of a very large catalog
ITEM_DTYPES = ("float32", "float16", "int8")
PRECISIONS = ("fp32", "fp16", "int8")
ROLES = ("user_encoder", "text_encoder")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Dims:
    dim: int
    n_items: int
    max_len: int
    window: int
    n_behaviours: int
    n_gap_buckets: int
    text_max_length: int


@dataclass(frozen=True)
class ItemMatrixSpec:
    file: str
    dtype: str
    scale_file: str | None


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    """The parsed manifest; ``raw`` keeps the export's figures (parity, quality, ...)."""

    format_version: int
    edgerec_version: str
    created_at: str
    dims: Dims
    behaviour_vocab: tuple[str, ...]
    default_behaviour: str
    precisions: tuple[str, ...]
    default_precision: str
    graphs: Mapping[str, Mapping[str, str]]
    user_encoder_table: str
    request_time: bool  # the user encoder takes request_gaps (its gate reads the time)
    item_matrix: ItemMatrixSpec
    item_ids: str
    popularity: str
    tokenizer: str | None
    opset: int | None
    ir_version: int | None
    files: Mapping[str, FileEntry]
    raw: Mapping[str, object]

    def referenced_files(self) -> list[str]:
        names = [self.item_matrix.file, self.item_ids, self.popularity]
        if self.item_matrix.scale_file:
            names.append(self.item_matrix.scale_file)
        if self.tokenizer:
            names.append(self.tokenizer)
        for variants in self.graphs.values():
            names.extend(variants.values())
        return names


def _fail(where: str, problem: str) -> BundleError:
    return BundleError(f"{where}: {problem}")


def _req(d: Mapping, key: str, kind, where: str = MANIFEST):
    if key not in d:
        raise _fail(where, f"missing key {key!r}")
    value = d[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise _fail(where, f"{key!r} must be {'/'.join(k.__name__ for k in kinds)}, got bool")
    if not isinstance(value, kinds):
        names = "/".join(k.__name__ for k in kinds)
        raise _fail(where, f"{key!r} must be {names}, got {type(value).__name__}")
    return value


def _positive(d: Mapping, key: str, where: str) -> int:
    value = _req(d, key, int, where)
    if value < 1 or value > 2**31 - 1:
        raise _fail(where, f"{key!r} out of range ({value})")
    return value


def check_name(name: object, what: str) -> str:
    """A manifest path must be a plain file name: no directories, no '..', not absolute."""
    if not isinstance(name, str) or not name:
        raise _fail(MANIFEST, f"{what}: file name must be a non-empty string, got {name!r}")
    bad = (
        name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\x00" in name
        or os.path.isabs(name)
        or (len(name) >= 2 and name[1] == ":")
    )
    if bad or name == MANIFEST:
        raise _fail(MANIFEST, f"{what}: {name!r} is not a plain file name inside the bundle")
    return name


def parse_manifest(obj: object) -> Manifest:
    if not isinstance(obj, dict):
        raise _fail(MANIFEST, "not a JSON object")
    fmt = obj.get("format")
    if fmt != FORMAT:
        raise _fail(MANIFEST, f"not an edgerec bundle (format {fmt!r}, expected {FORMAT!r})")
    version = _req(obj, "format_version", int)
    if version > FORMAT_VERSION:
        raise _fail(
            MANIFEST,
            f"format version {version} is newer than this runtime supports "
            f"({FORMAT_VERSION}); upgrade edgerec",
        )
    if version < 1:
        raise _fail(MANIFEST, f"invalid format version {version}")

    d = _req(obj, "dims", dict)
    w = f"{MANIFEST} dims"
    dims = Dims(
        dim=_positive(d, "dim", w),
        n_items=_positive(d, "n_items", w),
        max_len=_positive(d, "max_len", w),
        window=_positive(d, "window", w),
        n_behaviours=_positive(d, "n_behaviours", w),
        n_gap_buckets=_positive(d, "n_gap_buckets", w),
        text_max_length=_positive(d, "text_max_length", w) if "text_max_length" in d else 64,
    )
    if dims.n_gap_buckets != N_GAP_BUCKETS:
        raise _fail(
            w,
            f"n_gap_buckets is {dims.n_gap_buckets} but this runtime encodes time gaps in "
            f"{N_GAP_BUCKETS} buckets",
        )

    vocab = _req(obj, "behaviour_vocab", list)
    if not vocab or not all(isinstance(v, str) for v in vocab) or len(set(vocab)) != len(vocab):
        raise _fail(MANIFEST, "behaviour_vocab must be a non-empty list of distinct strings")
    if len(vocab) != dims.n_behaviours:
        raise _fail(
            MANIFEST,
            f"behaviour_vocab has {len(vocab)} entries but dims.n_behaviours is "
            f"{dims.n_behaviours}",
        )
    default_behaviour = obj.get("default_behaviour", vocab[0])
    if default_behaviour not in vocab:
        raise _fail(MANIFEST, f"default_behaviour {default_behaviour!r} is not in behaviour_vocab")

    precisions = _req(obj, "precisions", list)
    if not precisions or any(p not in PRECISIONS for p in precisions):
        raise _fail(MANIFEST, f"precisions must be a non-empty subset of {PRECISIONS}")
    default_precision = _req(obj, "default_precision", str)
    if default_precision not in precisions:
        raise _fail(MANIFEST, f"default_precision {default_precision!r} is not in precisions")

    graphs_raw = _req(obj, "graphs", dict)
    graphs: dict[str, Mapping[str, str]] = {}
    for role, variants in graphs_raw.items():
        if role not in ROLES:
            raise _fail(MANIFEST, f"unknown graph role {role!r} (expected {ROLES})")
        if not isinstance(variants, dict) or not variants:
            raise _fail(MANIFEST, f"graphs.{role} must map precisions to file names")
        for prec, name in variants.items():
            if prec not in PRECISIONS:
                raise _fail(MANIFEST, f"graphs.{role}: unknown precision {prec!r}")
            check_name(name, f"graphs.{role}.{prec}")
        graphs[role] = MappingProxyType(dict(variants))
    if "user_encoder" not in graphs:
        raise _fail(MANIFEST, "graphs.user_encoder is missing")

    table_mode = obj.get("user_encoder_table", "input")
    if table_mode not in ("input", "initializer"):
        raise _fail(
            MANIFEST, f"user_encoder_table must be 'input' or 'initializer', got {table_mode!r}"
        )
    request_time = obj.get("request_time", False)  # bundles before the option: False
    if not isinstance(request_time, bool):
        raise _fail(MANIFEST, f"request_time must be true or false, got {request_time!r}")

    im = _req(obj, "item_matrix", dict)
    dtype = _req(im, "dtype", str, f"{MANIFEST} item_matrix")
    if dtype not in ITEM_DTYPES:
        raise _fail(MANIFEST, f"item_matrix.dtype must be one of {ITEM_DTYPES}, got {dtype!r}")
    scale_file = im.get("scale_file")
    if dtype == "int8" and not scale_file:
        raise _fail(MANIFEST, "item_matrix: an int8 matrix needs a scale_file")
    if dtype != "int8" and scale_file:
        raise _fail(MANIFEST, f"item_matrix: scale_file given for a {dtype} matrix")
    item_matrix = ItemMatrixSpec(
        file=check_name(_req(im, "file", str, f"{MANIFEST} item_matrix"), "item_matrix.file"),
        dtype=dtype,
        scale_file=check_name(scale_file, "item_matrix.scale_file") if scale_file else None,
    )

    tokenizer = obj.get("tokenizer")
    if tokenizer is not None:
        check_name(tokenizer, "tokenizer")
    if "text_encoder" in graphs and not tokenizer:
        raise _fail(MANIFEST, "a text_encoder graph needs a tokenizer file")

    files_raw = _req(obj, "files", dict)
    files: dict[str, FileEntry] = {}
    for name, entry in files_raw.items():
        check_name(name, "files")
        if not isinstance(entry, dict):
            raise _fail(MANIFEST, f"files.{name}: expected an object with sha256 and size")
        sha = entry.get("sha256")
        size = entry.get("size")
        if (
            not isinstance(sha, str)
            or len(sha) != 64
            or any(c not in "0123456789abcdef" for c in sha)
        ):
            raise _fail(MANIFEST, f"files.{name}: sha256 must be 64 lowercase hex digits")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise _fail(MANIFEST, f"files.{name}: size must be a non-negative integer")
        files[name] = FileEntry(sha, size)

    opset = obj.get("opset")
    ir_version = obj.get("ir_version")
    manifest = Manifest(
        format_version=version,
        edgerec_version=str(obj.get("edgerec_version", "?")),
        created_at=str(obj.get("created_at", "?")),
        dims=dims,
        behaviour_vocab=tuple(vocab),
        default_behaviour=default_behaviour,
        precisions=tuple(precisions),
        default_precision=default_precision,
        graphs=MappingProxyType(graphs),
        user_encoder_table=table_mode,
        request_time=request_time,
        item_matrix=item_matrix,
        item_ids=check_name(_req(obj, "item_ids", str), "item_ids"),
        popularity=check_name(_req(obj, "popularity", str), "popularity"),
        tokenizer=tokenizer,
        opset=opset if isinstance(opset, int) and not isinstance(opset, bool) else None,
        ir_version=ir_version
        if isinstance(ir_version, int) and not isinstance(ir_version, bool)
        else None,
        files=MappingProxyType(files),
        raw=MappingProxyType(obj),
    )
    for name in manifest.referenced_files():
        if name not in files:
            raise _fail(MANIFEST, f"{name} is used but not listed in files (no checksum)")
    return manifest


# --- files ----------------------------------------------------------------------------


def _open_checked(root: Path, name: str, limit: int | None = None) -> tuple[int, os.stat_result]:
    """Open ``root/name`` for reading after checking it is a regular file inside ``root``."""
    path = root / name
    try:
        lst = os.lstat(path)
    except FileNotFoundError:
        raise _fail(name, "missing from the bundle") from None
    except OSError as e:
        raise _fail(name, f"cannot read ({e.strerror})") from None
    if stat.S_ISLNK(lst.st_mode):
        target = os.path.realpath(path)
        if os.path.commonpath([target, str(root)]) != str(root):
            raise _fail(name, f"symlink pointing outside the bundle ({target})")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise _fail(name, f"cannot open ({e.strerror})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise _fail(name, "not a regular file")
    if limit is not None and st.st_size > limit:
        os.close(fd)
        raise _fail(name, f"too large ({st.st_size} bytes, limit {limit})")
    return fd, st


def _read_fd(fd: int, size: int) -> bytes:
    with os.fdopen(fd, "rb", closefd=True) as f:
        return f.read(size + 1)  # one byte more reveals a file that grew after fstat


def bundle_root(path: object) -> Path:
    """The bundle directory, resolved; a path that is not one is an error naming it."""
    if isinstance(path, bytes | bytearray) or not isinstance(path, str | os.PathLike):
        raise ValueError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    try:
        root = Path(os.path.realpath(path))
        is_dir = root.is_dir()
    except (OSError, ValueError) as e:  # a NUL byte, a name too long, a loop ...
        raise BundleError(f"{str(path)[:200]!r}: cannot open the bundle directory ({e})") from None
    if not is_dir:
        previous = interrupted_swap(root)  # read only: the runtime never writes near a bundle
        if previous is None:
            raise BundleError(f"{root}: not a bundle directory")
        warnings.warn(
            f"{root} is missing: an export was killed while swapping bundles; loading the "
            f"previous bundle from {previous} (the next export puts it back in place)",
            stacklevel=3,
        )
        root = previous
    return root


def read_manifest(root: Path | str) -> Manifest:
    root = bundle_root(root)
    fd, st = _open_checked(root, MANIFEST, MAX_MANIFEST_BYTES)
    data = _read_fd(fd, st.st_size)
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise _fail(MANIFEST, f"not valid JSON ({e})") from None
    return parse_manifest(obj)


def read_verified(root: Path, name: str, entry: FileEntry) -> bytes:
    """The file's bytes, after checking its size and sha256 against the manifest."""
    fd, st = _open_checked(root, name)
    if st.st_size != entry.size:
        os.close(fd)
        raise _fail(name, f"size is {st.st_size} bytes, manifest says {entry.size}")
    data = _read_fd(fd, entry.size)
    if len(data) != entry.size:
        raise _fail(
            name, f"size changed while reading ({len(data)} bytes, manifest says {entry.size})"
        )
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry.sha256:
        raise _fail(
            name, f"sha256 mismatch (file {digest[:12]}..., manifest {entry.sha256[:12]}...)"
        )
    return data


def hash_verified(root: Path, name: str, entry: FileEntry) -> None:
    """Like ``read_verified`` but streaming, for files this process will not use."""
    fd, st = _open_checked(root, name)
    if st.st_size != entry.size:
        os.close(fd)
        raise _fail(name, f"size is {st.st_size} bytes, manifest says {entry.size}")
    h = hashlib.sha256()
    n = 0
    with os.fdopen(fd, "rb", closefd=True) as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            n += len(chunk)
    if n != entry.size:
        raise _fail(name, f"size changed while reading ({n} bytes, manifest says {entry.size})")
    if h.hexdigest() != entry.sha256:
        raise _fail(
            name, f"sha256 mismatch (file {h.hexdigest()[:12]}..., manifest {entry.sha256[:12]}...)"
        )


@dataclass(frozen=True)
class FileCheck:
    name: str
    size: int
    ok: bool
    problem: str


def check_files(root: Path | str, manifest: Manifest) -> list[FileCheck]:
    """Check every listed file without stopping at the first failure (for ``inspect``)."""
    root = Path(os.path.realpath(root))
    out = []
    for name, entry in manifest.files.items():
        try:
            hash_verified(root, name, entry)
        except BundleError as e:
            out.append(FileCheck(name, entry.size, False, str(e).split(": ", 1)[-1]))
        else:
            out.append(FileCheck(name, entry.size, True, ""))
    return out


def parse_npy(data: bytes, name: str) -> np.ndarray:
    """A read-only array over ``data``; refuses object dtypes and anything malformed."""
    buf = io.BytesIO(data)
    try:
        major, _minor = np.lib.format.read_magic(buf)
        if major == 1:
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(buf)
        elif major in (2, 3):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(buf)
        else:
            raise ValueError(f"unsupported .npy version {major}")
    except Exception as e:  # the header is a Python literal: tokenize/ast errors of any type
        raise _fail(name, f"not a valid .npy file ({type(e).__name__}: {e})") from None
    if dtype.hasobject:
        raise _fail(name, "object arrays are refused (they would need pickle)")
    if dtype.byteorder == ">" or dtype.kind not in "biuf":
        raise _fail(name, f"unsupported dtype {dtype}")
    count = math.prod(shape)
    offset = buf.tell()
    if len(data) - offset != count * dtype.itemsize:
        raise _fail(
            name,
            f"data is {len(data) - offset} bytes but shape {shape} of {dtype} needs "
            f"{count * dtype.itemsize}",
        )
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    return arr.reshape(shape, order="F" if fortran else "C")


def parse_json(data: bytes, name: str) -> object:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise _fail(name, f"not valid JSON ({e})") from None


def check_onnx(data: bytes, name: str) -> OnnxSummary:
    """Refuse graphs that do not parse or whose tensors live in external files."""
    try:
        summary = scan_model(data)
    except ProtoError as e:
        raise _fail(name, f"not a valid ONNX model ({e})") from None
    if summary.external_tensors:
        shown = ", ".join(summary.external_tensors[:5])
        raise _fail(
            name,
            f"references external data ({shown}); bundles must embed every tensor",
        )
    return summary


_ONNX_INT64, _ONNX_FLOAT = 7, 1


def _check_text_names(name: str, inputs: set[str], outputs: set[str]) -> None:
    """A text encoder takes the tokenizer's tensors (token_type_ids optional) and gives
    the item vector; checked on the file at load and again on the session built from it."""
    for key in TEXT_INPUTS:
        if key not in inputs:
            raise _fail(name, f"graph has no input {key!r} (inputs: {sorted(inputs)})")
    extra = inputs - set(TEXT_INPUTS) - {"token_type_ids"}
    if extra:
        raise _fail(name, f"unexpected graph inputs {sorted(extra)}")
    if TEXT_OUTPUT not in outputs:
        raise _fail(name, f"graph has no output {TEXT_OUTPUT!r} (outputs: {sorted(outputs)})")


def check_graph_interface(summary: OnnxSummary, name: str, role: str, manifest: Manifest) -> None:
    """The graph's declared inputs and outputs fit its role and the manifest's dims.

    Run on every variant at load, so a graph swapped in from another bundle (checksums
    updated) is caught even when this process will not build a session for it.
    """
    dim = manifest.dims.dim
    inputs, outputs = summary.inputs, summary.outputs

    def rank2_with_dim(info, what: str) -> None:
        if info.shape is None or len(info.shape) != 2 or not _dim_ok(info.shape[1], dim):
            raise _fail(name, f"{what} has shape {info.shape}, expected [batch, {dim}]")

    if role == "user_encoder":
        for key in USER_INPUTS:
            if key not in inputs:
                raise _fail(name, f"graph has no input {key!r} (inputs: {sorted(inputs)})")
            if inputs[key].elem_type != _ONNX_INT64:
                raise _fail(name, f"input {key!r} is not int64")
        allowed = set(USER_INPUTS)
        if manifest.user_encoder_table == "input":
            if "item_table" not in inputs:
                raise _fail(
                    name,
                    "manifest says user_encoder_table = 'input' but the graph has no item_table input",
                )
            table = inputs["item_table"]
            if table.elem_type != _ONNX_FLOAT:
                raise _fail(name, "input 'item_table' is not float32")
            rank2_with_dim(table, "input 'item_table'")
            allowed.add("item_table")
        if manifest.request_time != (REQUEST_INPUT in inputs):
            raise _fail(
                name,
                f"manifest says request_time = {str(manifest.request_time).lower()} but the "
                f"graph {'lacks' if manifest.request_time else 'takes'} a {REQUEST_INPUT} input",
            )
        if REQUEST_INPUT in inputs:
            if inputs[REQUEST_INPUT].elem_type != _ONNX_INT64:
                raise _fail(name, f"input {REQUEST_INPUT!r} is not int64")
            allowed.add(REQUEST_INPUT)
        extra = set(inputs) - allowed
        if extra:
            raise _fail(name, f"unexpected graph inputs {sorted(extra)}")
        for key in USER_OUTPUTS:
            if key not in outputs:
                raise _fail(name, f"graph has no output {key!r} (outputs: {sorted(outputs)})")
        rank2_with_dim(outputs["user"], "output 'user'")
    else:
        _check_text_names(name, set(inputs), set(outputs))
        rank2_with_dim(outputs[TEXT_OUTPUT], f"output {TEXT_OUTPUT!r}")


# --- catalog files ---------------------------------------------------------------------


@dataclass(frozen=True)
class ItemIds:
    ids: tuple
    titles: tuple
    id_type: str  # "int" | "str"


def parse_item_ids(obj: object, name: str, n_items: int) -> ItemIds:
    if not isinstance(obj, dict):
        raise _fail(name, "expected a JSON object with ids, titles and id_type")
    id_type = obj.get("id_type", "int")
    if id_type not in ("int", "str"):
        raise _fail(name, f"id_type must be 'int' or 'str', got {id_type!r}")
    ids = obj.get("ids")
    if not isinstance(ids, list):
        raise _fail(name, "ids must be a list")
    if len(ids) != n_items:
        raise _fail(name, f"{len(ids)} ids but the manifest says n_items = {n_items}")
    kind = int if id_type == "int" else str
    for i, x in enumerate(ids):
        if isinstance(x, bool) or not isinstance(x, kind):
            raise _fail(name, f"ids[{i}] is {x!r}, expected {id_type}")
    if len(set(ids)) != len(ids):
        raise _fail(name, "ids are not unique")
    titles = obj.get("titles")
    if titles is None:
        titles = [None] * n_items
    if not isinstance(titles, list) or len(titles) != n_items:
        raise _fail(name, f"titles must be a list of {n_items} strings")
    if not all(t is None or isinstance(t, str) for t in titles):
        raise _fail(name, "titles must be strings (or null)")
    return ItemIds(tuple(ids), tuple(titles), id_type)


@dataclass(frozen=True)
class BundleData:
    """Everything verified and parsed; sessions are made from ``graph_bytes`` elsewhere."""

    root: Path
    manifest: Manifest
    precision: str
    items: np.ndarray  # (n_items + 1, dim) float32 | float16 | int8, read-only
    scale: np.ndarray | None  # (n_items + 1,) float32 for int8
    popularity: np.ndarray  # (n_items + 1,) float32
    item_ids: ItemIds
    graph_bytes: Mapping[str, bytes]  # role -> ONNX bytes of the chosen precision
    graph_files: Mapping[str, str]  # role -> file name
    graph_metadata: Mapping[str, Mapping[str, str]]  # file name -> metadata_props, every variant
    tokenizer_json: str | None


def choose_precision(manifest: Manifest, precision: str | None, device: str) -> str:
    """The user encoder's precision: asked for, else the bundle's default (fp16 only on GPU)."""
    available = tuple(manifest.graphs["user_encoder"])
    if precision is not None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS} or None, got {precision!r}")
        if precision not in available:
            raise ValueError(
                f"precision {precision!r} is not in this bundle (it has {', '.join(available)})"
            )
        return precision
    chosen = manifest.default_precision
    if chosen not in available:
        chosen = available[0]
    if chosen == "fp16" and device != "cuda":  # fp16 graphs run slowly on CPUs
        for alt in ("int8", "fp32"):
            if alt in available:
                return alt
    return chosen


def _graph_file(manifest: Manifest, role: str, precision: str) -> str | None:
    variants = manifest.graphs.get(role)
    if not variants:
        return None
    for p in (precision, manifest.default_precision, "fp32"):
        if p in variants:
            return variants[p]
    return next(iter(variants.values()))


def load_bundle(
    path: Path | str, *, precision: str | None = None, device: str = "cpu"
) -> BundleData:
    """Verify the whole bundle and return its parsed parts (no onnxruntime session yet)."""
    root = bundle_root(path)
    manifest = read_manifest(root)
    prec = choose_precision(manifest, precision, device)
    graph_files = {
        role: f for role in ROLES if (f := _graph_file(manifest, role, prec)) is not None
    }
    keep = set(manifest.referenced_files())
    contents: dict[str, bytes] = {}
    for name, entry in manifest.files.items():
        if name in keep:
            contents[name] = read_verified(root, name, entry)
        else:  # README.md and the like: checked, not kept
            hash_verified(root, name, entry)
    summaries = {}
    for role, variants in manifest.graphs.items():  # every variant, so inspect and load agree
        for f in set(variants.values()):
            summaries[f] = (role, check_onnx(contents[f], f))

    dims = manifest.dims
    spec = manifest.item_matrix
    items = parse_npy(contents[spec.file], spec.file)
    if items.dtype != np.dtype(spec.dtype):
        raise _fail(spec.file, f"dtype is {items.dtype}, manifest says {spec.dtype}")
    if items.shape != (dims.n_items + 1, dims.dim):
        raise _fail(
            spec.file,
            f"shape is {items.shape}, expected (n_items + 1, dim) = "
            f"({dims.n_items + 1}, {dims.dim})",
        )
    if items.dtype.kind == "f" and not np.isfinite(items).all():
        raise _fail(spec.file, "contains NaN or infinite values")
    scale = None
    if spec.scale_file:
        scale = parse_npy(contents[spec.scale_file], spec.scale_file)
        if scale.dtype != np.float32 or scale.shape != (dims.n_items + 1,):
            raise _fail(
                spec.scale_file,
                f"expected float32 of shape ({dims.n_items + 1},), got {scale.dtype} {scale.shape}",
            )
        if not np.isfinite(scale).all() or (scale < 0).any():
            raise _fail(spec.scale_file, "scales must be finite and non-negative")

    pop = parse_npy(contents[manifest.popularity], manifest.popularity)
    if pop.dtype.kind not in "fiu" or pop.shape != (dims.n_items + 1,):
        raise _fail(
            manifest.popularity,
            f"expected a numeric array of shape ({dims.n_items + 1},), got {pop.dtype} {pop.shape}",
        )
    pop = pop.astype(np.float32)
    if not np.isfinite(pop).all():
        raise _fail(manifest.popularity, "contains NaN or infinite values")

    item_ids = parse_item_ids(
        parse_json(contents[manifest.item_ids], manifest.item_ids), manifest.item_ids, dims.n_items
    )
    for f, (role, summary) in summaries.items():
        check_graph_interface(summary, f, role, manifest)
    tokenizer_json = None
    if manifest.tokenizer:
        try:
            tokenizer_json = contents[manifest.tokenizer].decode("utf-8")
        except UnicodeDecodeError:
            raise _fail(manifest.tokenizer, "not UTF-8 text") from None
    return BundleData(
        root=root,
        manifest=manifest,
        precision=prec,
        items=items,
        scale=scale,
        popularity=pop,
        item_ids=item_ids,
        graph_bytes=MappingProxyType({r: contents[f] for r, f in graph_files.items()}),
        graph_files=MappingProxyType(graph_files),
        graph_metadata=MappingProxyType({f: s.metadata for f, (_, s) in summaries.items()}),
        tokenizer_json=tokenizer_json,
    )


# --- graph interfaces -------------------------------------------------------------------

USER_INPUTS = ("items", "behaviours", "gaps", "lengths")
USER_OUTPUTS = ("user", "gate", "attention")
REQUEST_INPUT = "request_gaps"  # optional: graphs whose gate reads the request time
TEXT_INPUTS = ("input_ids", "attention_mask")
TEXT_OUTPUT = "item_vector"


def _dim_ok(actual, expected: int) -> bool:
    return not isinstance(actual, int) or actual == expected


def check_user_encoder(session, name: str, manifest: Manifest) -> bool:
    """Check the graph's inputs and outputs; returns whether ``item_table`` is an input."""
    dim = manifest.dims.dim
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    for key in USER_INPUTS:
        if key not in inputs:
            raise _fail(name, f"graph has no input {key!r} (inputs: {sorted(inputs)})")
        if inputs[key].type != "tensor(int64)":
            raise _fail(name, f"input {key!r} is {inputs[key].type}, expected tensor(int64)")
    table = manifest.user_encoder_table == "input"
    if table:
        if "item_table" not in inputs:
            raise _fail(
                name,
                "manifest says user_encoder_table = 'input' but the graph has no item_table input",
            )
        shape = inputs["item_table"].shape
        if (
            inputs["item_table"].type != "tensor(float)"
            or len(shape) != 2
            or not _dim_ok(shape[1], dim)
        ):
            raise _fail(
                name,
                f"item_table input is {inputs['item_table'].type} {shape}, expected float [n, {dim}]",
            )
    elif "item_table" in inputs:
        raise _fail(name, "graph takes an item_table input but the manifest says 'initializer'")
    if REQUEST_INPUT in inputs and inputs[REQUEST_INPUT].type != "tensor(int64)":
        raise _fail(
            name, f"input {REQUEST_INPUT!r} is {inputs[REQUEST_INPUT].type}, expected tensor(int64)"
        )
    extra = set(inputs) - set(USER_INPUTS) - {"item_table", REQUEST_INPUT}
    if extra:
        raise _fail(name, f"unexpected graph inputs {sorted(extra)}")
    for key in USER_OUTPUTS:
        if key not in outputs:
            raise _fail(name, f"graph has no output {key!r} (outputs: {sorted(outputs)})")
    ushape = outputs["user"].shape
    if len(ushape) != 2 or not _dim_ok(ushape[1], dim):
        raise _fail(name, f"output 'user' has shape {ushape}, expected [batch, {dim}]")
    return table


def check_text_encoder(session, name: str, manifest: Manifest) -> tuple[str, ...]:
    """Check the text graph; returns the token inputs it takes, in the order it wants them."""
    outputs = {o.name: o for o in session.get_outputs()}
    _check_text_names(name, {i.name for i in session.get_inputs()}, set(outputs))
    shape = outputs[TEXT_OUTPUT].shape
    if len(shape) != 2 or not _dim_ok(shape[1], manifest.dims.dim):
        raise _fail(
            name, f"output {TEXT_OUTPUT!r} has shape {shape}, expected [batch, {manifest.dims.dim}]"
        )
    return tuple(i.name for i in session.get_inputs())
