"""Reading and verifying a bundle (format in docs/bundle.md) without trusting it.

A bundle arrives from elsewhere -- a download, a shared drive, an app update -- so every
byte is checked before it is used: the manifest's shape and versions, each file's name
(a plain name inside the bundle, no symlink out of it), size and sha256, that no ONNX
graph refers to external data, that the arrays have the shapes and dtypes the manifest
promises, and that each graph's interface is the one its role needs. Files are read
once; what is hashed is exactly what gets used, and ``.npy`` files are parsed
header-first with no pickle support at all. Every failure is a ``BundleError`` naming
the file and the problem. ``Recommender.load`` and ``edgerec inspect`` both go through
``verify`` (inspect for every graph of every precision).
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
from edgerec.runtime.onnxcheck import ProtoError, external_tensors

FORMAT = "edgerec-bundle"
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 64 << 20
ITEM_DTYPES = ("float32", "float16", "int8")
PRECISIONS = ("fp32", "fp16", "int8")
ROLES = ("recommend", "user_encoder", "text_encoder")
SCORERS = ("shortlist", "topk", "topk_fp16")

# graph interfaces (docs/bundle.md): name -> (onnxruntime type, rank); "dim" checked too
_I64, _F32 = "tensor(int64)", "tensor(float)"
_REQUEST = {
    "history_rows": (_I64, 2),
    "history_behaviours": (_I64, 2),
    "history_times": (_I64, 2),
    "now": (_I64, 1),
    "item_matrix": (_F32, 2),
}
INTERFACES = {
    "recommend": (
        {**_REQUEST, "row_bias": (_F32, 2), "mask_seen": ("tensor(bool)", 1), "k": (_I64, 1)},
        {"top_rows": (_I64, 2), "top_scores": (_F32, 2), "user": (_F32, 2), "gate": (_F32, 1)},
    ),
    "user_encoder": (
        _REQUEST,
        {"user": (_F32, 2), "gate": (_F32, 1), "attention": (_F32, 2)},
    ),
    "text_encoder": (
        {"input_ids": (_I64, 2), "attention_mask": (_I64, 2), "token_type_ids?": (_I64, 2)},
        {"item_vector": (_F32, 2)},
    ),
    "shortlist": ({"user_q": ("tensor(uint8)", 2)}, {"scores": (_F32, 2)}),
    "topk": (
        {
            "user": (_F32, 2),
            "items": (_F32, 2),
            "bias": (_F32, 2),
            "excluded": (_I64, 2),
            "k": (_I64, 1),
        },
        {"values": (_F32, 2), "indices": (_I64, 2)},
    ),
}
_F16 = "tensor(float16)"
INTERFACES["topk_fp16"] = (
    {**INTERFACES["topk"][0], "items": (_F16, 2), "bias": (_F16, 2)},
    INTERFACES["topk"][1],
)
# the inputs and outputs whose last axis is the scoring dimension, per role
_DIM_VALUES = {
    "recommend": ("item_matrix", "user"),
    "user_encoder": ("item_matrix", "user"),
    "text_encoder": ("item_vector",),
    "shortlist": ("user_q",),
    "topk": ("user", "items"),
    "topk_fp16": ("user", "items"),
}


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
class FileEntry:
    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    """The parsed manifest; ``raw`` keeps the export's figures (parity, quality, ...)."""

    format_version: int
    edgerec_version: str
    dims: Dims
    behaviour_vocab: tuple[str, ...]
    default_behaviour: str
    precisions: tuple[str, ...]
    default_precision: str
    graphs: Mapping[str, Mapping[str, str]]  # role -> precision -> file
    scorers: Mapping[str, str]  # scorer -> file
    request_time: bool
    item_matrix: Mapping[str, str | None]  # file, dtype, scale_file
    item_ids: str
    popularity: str
    tokenizer: str | None
    files: Mapping[str, FileEntry]
    raw: Mapping[str, object]

    def graph_file(self, role: str, precision: str) -> str | None:
        """The role's file for ``precision`` (the bundle's default, then fp32, else any
        variant when that one is not shipped); None when the bundle lacks the role."""
        variants = self.graphs.get(role)
        if not variants:
            return None
        for p in (precision, self.default_precision, "fp32"):
            if p in variants:
                return variants[p]
        return next(iter(variants.values()))


def _fail(where: str, problem: str) -> BundleError:
    return BundleError(f"{where}: {problem}")


def _req(d: Mapping, key: str, kind: type, where: str = MANIFEST):
    if key not in d:
        raise _fail(where, f"missing key {key!r}")
    value = d[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise _fail(where, f"{key!r} must be {kind.__name__}, got {type(value).__name__}")
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
    bad = name in (".", "..") or any(c in name for c in "/\\\x00") or os.path.isabs(name)
    if bad or (len(name) >= 2 and name[1] == ":") or name == MANIFEST:
        raise _fail(MANIFEST, f"{what}: {name!r} is not a plain file name inside the bundle")
    return name


def _file_map(obj: object, what: str, keys: tuple[str, ...]) -> dict[str, str]:
    if not isinstance(obj, dict) or not obj:
        raise _fail(MANIFEST, f"{what} must map names to file names")
    for key, name in obj.items():
        if key not in keys:
            raise _fail(MANIFEST, f"{what}: unknown entry {key!r} (expected one of {keys})")
        check_name(name, f"{what}.{key}")
    return dict(obj)


def parse_manifest(obj: object) -> Manifest:
    if not isinstance(obj, dict):
        raise _fail(MANIFEST, "not a JSON object")
    if obj.get("format") != FORMAT:
        raise _fail(MANIFEST, f"not an edgerec bundle (format {obj.get('format')!r})")
    version = _req(obj, "format_version", int)
    if version != FORMAT_VERSION:
        hint = (
            "re-export it with this edgerec (edgerec export RUN --out BUNDLE)"
            if version < FORMAT_VERSION
            else "upgrade edgerec"
        )
        raise _fail(
            MANIFEST,
            f"bundle format version {version}, this runtime reads version {FORMAT_VERSION}: {hint}",
        )
    d = _req(obj, "dims", dict)
    w = f"{MANIFEST} dims"
    dims = Dims(
        *(_positive(d, k, w) for k in ("dim", "n_items", "max_len", "window", "n_behaviours")),
        n_gap_buckets=_positive(d, "n_gap_buckets", w),
        text_max_length=_positive(d, "text_max_length", w),
    )
    if dims.n_gap_buckets != N_GAP_BUCKETS:
        raise _fail(w, f"n_gap_buckets is {dims.n_gap_buckets}, this runtime's is {N_GAP_BUCKETS}")
    vocab = _req(obj, "behaviour_vocab", list)
    if not all(isinstance(v, str) for v in vocab) or len(set(vocab)) != len(vocab):
        raise _fail(MANIFEST, "behaviour_vocab must be a list of distinct strings")
    if len(vocab) != dims.n_behaviours:
        raise _fail(
            MANIFEST, f"behaviour_vocab has {len(vocab)} entries, dims say {dims.n_behaviours}"
        )
    default_behaviour = _req(obj, "default_behaviour", str)
    if default_behaviour not in vocab:
        raise _fail(MANIFEST, f"default_behaviour {default_behaviour!r} is not in behaviour_vocab")
    precisions = _req(obj, "precisions", list)
    if not precisions or any(p not in PRECISIONS for p in precisions):
        raise _fail(MANIFEST, f"precisions must be a non-empty subset of {PRECISIONS}")
    default_precision = _req(obj, "default_precision", str)
    if default_precision not in precisions:
        raise _fail(MANIFEST, f"default_precision {default_precision!r} is not in precisions")
    graphs_raw = _req(obj, "graphs", dict)
    graphs = {}
    for role, variants in graphs_raw.items():
        if role not in ROLES:
            raise _fail(MANIFEST, f"unknown graph role {role!r} (expected {ROLES})")
        graphs[role] = MappingProxyType(_file_map(variants, f"graphs.{role}", PRECISIONS))
    for role in ("recommend", "user_encoder"):
        if role not in graphs:
            raise _fail(MANIFEST, f"graphs.{role} is missing")
    scorers = _file_map(_req(obj, "scorers", dict), "scorers", SCORERS)
    request_time = _req(obj, "request_time", bool)
    im = _req(obj, "item_matrix", dict)
    dtype = _req(im, "dtype", str, f"{MANIFEST} item_matrix")
    if dtype not in ITEM_DTYPES:
        raise _fail(MANIFEST, f"item_matrix.dtype must be one of {ITEM_DTYPES}, got {dtype!r}")
    scale_file = im.get("scale_file")
    if (dtype == "int8") != bool(scale_file):
        raise _fail(MANIFEST, "item_matrix: an int8 matrix needs a scale_file, others none")
    item_matrix = {
        "file": check_name(im.get("file"), "item_matrix.file"),
        "dtype": dtype,
        "scale_file": check_name(scale_file, "item_matrix.scale_file") if scale_file else None,
    }
    tokenizer = obj.get("tokenizer")
    if tokenizer is not None:
        check_name(tokenizer, "tokenizer")
    if "text_encoder" in graphs and not tokenizer:
        raise _fail(MANIFEST, "a text_encoder graph needs a tokenizer file")
    files = {}
    for name, entry in _req(obj, "files", dict).items():
        check_name(name, "files")
        sha = entry.get("sha256") if isinstance(entry, dict) else None
        size = entry.get("size") if isinstance(entry, dict) else None
        if not isinstance(sha, str) or len(sha) != 64 or set(sha) - set("0123456789abcdef"):
            raise _fail(MANIFEST, f"files.{name}: sha256 must be 64 lowercase hex digits")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise _fail(MANIFEST, f"files.{name}: size must be a non-negative integer")
        files[name] = FileEntry(sha, size)
    manifest = Manifest(
        format_version=version,
        edgerec_version=str(obj.get("edgerec_version", "?")),
        dims=dims,
        behaviour_vocab=tuple(vocab),
        default_behaviour=default_behaviour,
        precisions=tuple(precisions),
        default_precision=default_precision,
        graphs=MappingProxyType(graphs),
        scorers=MappingProxyType(scorers),
        request_time=request_time,
        item_matrix=MappingProxyType(item_matrix),
        item_ids=check_name(_req(obj, "item_ids", str), "item_ids"),
        popularity=check_name(_req(obj, "popularity", str), "popularity"),
        tokenizer=tokenizer,
        files=MappingProxyType(files),
        raw=MappingProxyType(obj),
    )
    for name in referenced_files(manifest):
        if name not in files:
            raise _fail(MANIFEST, f"{name} is used but not listed in files (no checksum)")
    return manifest


def referenced_files(m: Manifest) -> list[str]:
    names = [m.item_matrix["file"], m.item_ids, m.popularity, *m.scorers.values()]
    names += [x for x in (m.item_matrix["scale_file"], m.tokenizer) if x]
    for variants in m.graphs.values():
        names.extend(variants.values())
    return list(dict.fromkeys(names))


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
    if not stat.S_ISREG(st.st_mode) or (limit is not None and st.st_size > limit):
        os.close(fd)
        raise _fail(
            name,
            "not a regular file"
            if not stat.S_ISREG(st.st_mode)
            else f"too large ({st.st_size} bytes, limit {limit})",
        )
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


def read_manifest(path: Path | str) -> Manifest:
    root = bundle_root(path)
    if not (root / MANIFEST).exists() and (root / "config.json").is_file():
        raise BundleError(
            f"{root}: this is a training run, not a bundle; export it with "
            f"`edgerec export {root} --out BUNDLE` and load the bundle"
        )
    fd, st = _open_checked(root, MANIFEST, MAX_MANIFEST_BYTES)
    return parse_manifest(parse_json(_read_fd(fd, st.st_size), MANIFEST))


def read_verified(root: Path, name: str, entry: FileEntry, keep: bool = True) -> bytes | None:
    """The file's bytes after checking its size and sha256 against the manifest (streamed
    and not kept when ``keep`` is False)."""
    fd, st = _open_checked(root, name)
    if st.st_size != entry.size:
        os.close(fd)
        raise _fail(name, f"size is {st.st_size} bytes, manifest says {entry.size}")
    h, n, chunks = hashlib.sha256(), 0, []
    with os.fdopen(fd, "rb", closefd=True) as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            n += len(chunk)
            if keep:
                chunks.append(chunk)
    if n != entry.size:
        raise _fail(name, f"size changed while reading ({n} bytes, manifest says {entry.size})")
    if h.hexdigest() != entry.sha256:
        raise _fail(
            name, f"sha256 mismatch (file {h.hexdigest()[:12]}..., manifest {entry.sha256[:12]}...)"
        )
    return b"".join(chunks) if keep else None


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
    if len(data) - buf.tell() != count * dtype.itemsize:
        raise _fail(
            name,
            f"data is {len(data) - buf.tell()} bytes but shape {shape} of {dtype} "
            f"needs {count * dtype.itemsize}",
        )
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=buf.tell())
    return arr.reshape(shape, order="F" if fortran else "C")


def parse_json(data: bytes, name: str) -> object:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise _fail(name, f"not valid JSON ({e})") from None


def check_onnx(data: bytes, name: str) -> None:
    """Refuse graphs that do not parse or whose tensors live in external files."""
    try:
        external = external_tensors(data)
    except ProtoError as e:
        raise _fail(name, f"not a valid ONNX model ({e})") from None
    if external:
        shown = ", ".join(external[:5])
        raise _fail(name, f"references external data ({shown}); bundles must embed every tensor")


def check_interface(session, role: str, name: str, dim: int) -> None:
    """The session's inputs and outputs are exactly what ``role`` needs (docs/bundle.md),
    so a graph swapped in from another bundle (checksums updated) is caught here."""
    want_in, want_out = INTERFACES[role]
    for kind, values, want in (
        ("input", session.get_inputs(), want_in),
        ("output", session.get_outputs(), want_out),
    ):
        got = {v.name: v for v in values}
        optional = {k.rstrip("?") for k in want if k.endswith("?")}
        names = {k.rstrip("?") for k in want}
        if not set(names) - optional <= set(got) <= set(names):
            raise _fail(
                name, f"graph {kind}s are {sorted(got)}, a {role} graph has {sorted(names)}"
            )
        for key, value in got.items():
            dtype, rank = want.get(key, want.get(key + "?"))
            if value.type != dtype or len(value.shape) != rank:
                raise _fail(
                    name,
                    f"{kind} {key!r} is {value.type} of rank {len(value.shape)}, "
                    f"expected {dtype} of rank {rank}",
                )
    shapes = {v.name: v.shape for v in (*session.get_inputs(), *session.get_outputs())}
    for key in _DIM_VALUES[role]:
        last = shapes[key][-1]
        if isinstance(last, int) and last != dim:
            raise _fail(name, f"{key!r} has dimension {last}, the manifest says {dim}")


# --- the whole bundle -------------------------------------------------------------------


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
    titles = obj.get("titles") or [None] * n_items
    if not isinstance(titles, list) or len(titles) != n_items:
        raise _fail(name, f"titles must be a list of {n_items} strings")
    if not all(t is None or isinstance(t, str) for t in titles):
        raise _fail(name, "titles must be strings (or null)")
    return ItemIds(tuple(ids), tuple(titles), id_type)


@dataclass(frozen=True)
class BundleData:
    """Everything verified and parsed; sessions are built from ``graphs`` elsewhere."""

    root: Path
    manifest: Manifest
    items: np.ndarray  # (n_items + 1, dim) float32 | float16 | int8, read-only
    scale: np.ndarray | None  # (n_items + 1,) float32 for int8
    popularity: np.ndarray  # (n_items + 1,) float32
    item_ids: ItemIds
    graphs: Mapping[str, bytes]  # file name -> verified ONNX bytes (the graphs asked for)
    tokenizer_json: str | None


def verify(path: Path | str, graph_files: set[str] | None = None) -> BundleData:
    """Verify the manifest, every file's size and sha256, the data files' shapes and
    dtypes, and that the graphs in ``graph_files`` (None: every graph) hold no external
    data; returns their bytes. Interfaces are checked on the sessions built from them."""
    root = bundle_root(path)
    m = read_manifest(root)
    dims = m.dims
    graphs = {f for v in m.graphs.values() for f in v.values()} | set(m.scorers.values())
    wanted = graphs if graph_files is None else graph_files & graphs
    data_files = {
        m.item_matrix["file"],
        m.item_ids,
        m.popularity,
        m.item_matrix["scale_file"],
        m.tokenizer,
    }
    contents = {}
    for name, entry in m.files.items():
        contents[name] = read_verified(root, name, entry, keep=name in wanted | data_files)
    for name in wanted:
        check_onnx(contents[name], name)
    spec = m.item_matrix
    items = parse_npy(contents[spec["file"]], spec["file"])
    if items.dtype != np.dtype(spec["dtype"]):
        raise _fail(spec["file"], f"dtype is {items.dtype}, the manifest says {spec['dtype']}")
    if items.shape != (dims.n_items + 1, dims.dim):
        raise _fail(
            spec["file"],
            f"shape is {items.shape}, expected (n_items + 1, dim) = "
            f"({dims.n_items + 1}, {dims.dim})",
        )
    if items.dtype.kind == "f" and not np.isfinite(items).all():
        raise _fail(spec["file"], "contains NaN or infinite values")
    scale = None
    if spec["scale_file"]:
        scale = parse_npy(contents[spec["scale_file"]], spec["scale_file"])
        if scale.dtype != np.float32 or scale.shape != (dims.n_items + 1,):
            raise _fail(
                spec["scale_file"],
                f"expected float32 of shape ({dims.n_items + 1},), got {scale.dtype} {scale.shape}",
            )
        if not np.isfinite(scale).all() or (scale < 0).any():
            raise _fail(spec["scale_file"], "scales must be finite and non-negative")
    pop = parse_npy(contents[m.popularity], m.popularity)
    if pop.dtype.kind not in "fiu" or pop.shape != (dims.n_items + 1,):
        raise _fail(
            m.popularity,
            f"expected a numeric array of shape ({dims.n_items + 1},), got {pop.dtype} {pop.shape}",
        )
    pop = pop.astype(np.float32)
    if not np.isfinite(pop).all():
        raise _fail(m.popularity, "contains NaN or infinite values")
    item_ids = parse_item_ids(
        parse_json(contents[m.item_ids], m.item_ids), m.item_ids, dims.n_items
    )
    tokenizer_json = None
    if m.tokenizer:
        try:
            tokenizer_json = contents[m.tokenizer].decode("utf-8")
        except UnicodeDecodeError:
            raise _fail(m.tokenizer, "not UTF-8 text") from None
    return BundleData(
        root=root,
        manifest=m,
        items=items,
        scale=scale,
        popularity=pop,
        item_ids=item_ids,
        graphs=MappingProxyType({f: contents[f] for f in wanted}),
        tokenizer_json=tokenizer_json,
    )


@dataclass(frozen=True)
class FileCheck:
    name: str
    size: int
    ok: bool
    problem: str


def check_files(root: Path | str, manifest: Manifest) -> list[FileCheck]:
    """Size and sha256 of every listed file, without stopping at the first failure (the
    per-file table of ``edgerec inspect``)."""
    root = bundle_root(root)
    out = []
    for name, entry in manifest.files.items():
        try:
            read_verified(root, name, entry, keep=False)
            out.append(FileCheck(name, entry.size, True, ""))
        except BundleError as e:
            out.append(FileCheck(name, entry.size, False, str(e).split(": ", 1)[-1]))
    return out


def verify_all(path: Path | str) -> BundleData:
    """``verify`` of every graph of every precision, each also loaded by onnxruntime and
    its interface checked: what ``edgerec inspect`` and the export's last step run."""
    from edgerec.runtime.providers import CPU, create_session

    data = verify(path)
    for name, role in graph_roles(data.manifest).items():
        session = create_session(data.graphs[name], name, [CPU], 1)
        check_interface(session, role, name, data.manifest.dims.dim)
    return data


def graph_roles(m: Manifest) -> dict[str, str]:
    """file -> role of every graph in the bundle (a file shared by precisions once)."""
    roles = {f: role for role, v in m.graphs.items() for f in v.values()}
    roles.update({f: scorer for scorer, f in m.scorers.items()})
    return roles
