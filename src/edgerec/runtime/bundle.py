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
from edgerec.io import interrupted_swap
from edgerec.runtime.interfaces import check_interface
from edgerec.runtime.manifest import (
    MANIFEST,
    MAX_MANIFEST_BYTES,
    FileEntry,
    Manifest,
    QuantizationTargetWarning,
    fail,
    parse_manifest,
    target_mismatch,
)
from edgerec.runtime.onnxcheck import ProtoError, external_tensors

# --- files ----------------------------------------------------------------------------


def _open_checked(root: Path, name: str, limit: int | None = None) -> tuple[int, os.stat_result]:
    """Open ``root/name`` for reading after checking it is a regular file inside ``root``."""
    path = root / name
    try:
        lst = os.lstat(path)
    except FileNotFoundError:
        raise fail(name, "missing from the bundle") from None
    except OSError as e:
        raise fail(name, f"cannot read ({e.strerror})") from None
    if stat.S_ISLNK(lst.st_mode):
        target = os.path.realpath(path)
        if os.path.commonpath([target, str(root)]) != str(root):
            raise fail(name, f"symlink pointing outside the bundle ({target})")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise fail(name, f"cannot open ({e.strerror})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or (limit is not None and st.st_size > limit):
        os.close(fd)
        raise fail(
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
        raise fail(name, f"size is {st.st_size} bytes, manifest says {entry.size}")
    h, n, chunks = hashlib.sha256(), 0, []
    with os.fdopen(fd, "rb", closefd=True) as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            n += len(chunk)
            if keep:
                chunks.append(chunk)
    if n != entry.size:
        raise fail(name, f"size changed while reading ({n} bytes, manifest says {entry.size})")
    if h.hexdigest() != entry.sha256:
        raise fail(
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
        raise fail(name, f"not a valid .npy file ({type(e).__name__}: {e})") from None
    if dtype.hasobject:
        raise fail(name, "object arrays are refused (they would need pickle)")
    if dtype.byteorder == ">" or dtype.kind not in "biuf":
        raise fail(name, f"unsupported dtype {dtype}")
    count = math.prod(shape)
    if len(data) - buf.tell() != count * dtype.itemsize:
        raise fail(
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
        raise fail(name, f"not valid JSON ({e})") from None


def check_onnx(data: bytes, name: str) -> None:
    """Refuse graphs that do not parse or whose tensors live in external files."""
    try:
        external = external_tensors(data)
    except ProtoError as e:
        raise fail(name, f"not a valid ONNX model ({e})") from None
    if external:
        shown = ", ".join(external[:5])
        raise fail(name, f"references external data ({shown}); bundles must embed every tensor")


# --- the whole bundle -------------------------------------------------------------------


@dataclass(frozen=True)
class ItemIds:
    ids: tuple
    titles: tuple
    id_type: str  # "int" | "str"


def parse_item_ids(obj: object, name: str, n_items: int) -> ItemIds:
    if not isinstance(obj, dict):
        raise fail(name, "expected a JSON object with ids, titles and id_type")
    id_type = obj.get("id_type", "int")
    if id_type not in ("int", "str"):
        raise fail(name, f"id_type must be 'int' or 'str', got {id_type!r}")
    ids = obj.get("ids")
    if not isinstance(ids, list):
        raise fail(name, "ids must be a list")
    if len(ids) != n_items:
        raise fail(name, f"{len(ids)} ids but the manifest says n_items = {n_items}")
    kind = int if id_type == "int" else str
    for i, x in enumerate(ids):
        if isinstance(x, bool) or not isinstance(x, kind):
            raise fail(name, f"ids[{i}] is {x!r}, expected {id_type}")
    if len(set(ids)) != len(ids):
        raise fail(name, "ids are not unique")
    titles = obj.get("titles") or [None] * n_items
    if not isinstance(titles, list) or len(titles) != n_items:
        raise fail(name, f"titles must be a list of {n_items} strings")
    if not all(t is None or isinstance(t, str) for t in titles):
        raise fail(name, "titles must be strings (or null)")
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
    mismatch = target_mismatch(m)
    if mismatch and m.graphs["text_encoder"]["int8"] in wanted:
        warnings.warn(f"{root}: {mismatch}", QuantizationTargetWarning, stacklevel=3)
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
        raise fail(spec["file"], f"dtype is {items.dtype}, the manifest says {spec['dtype']}")
    if items.shape != (dims.n_items + 1, dims.dim):
        raise fail(
            spec["file"],
            f"shape is {items.shape}, expected (n_items + 1, dim) = "
            f"({dims.n_items + 1}, {dims.dim})",
        )
    if items.dtype.kind == "f" and not np.isfinite(items).all():
        raise fail(spec["file"], "contains NaN or infinite values")
    scale = None
    if spec["scale_file"]:
        scale = parse_npy(contents[spec["scale_file"]], spec["scale_file"])
        if scale.dtype != np.float32 or scale.shape != (dims.n_items + 1,):
            raise fail(
                spec["scale_file"],
                f"expected float32 of shape ({dims.n_items + 1},), got {scale.dtype} {scale.shape}",
            )
        if not np.isfinite(scale).all() or (scale < 0).any():
            raise fail(spec["scale_file"], "scales must be finite and non-negative")
    pop = parse_npy(contents[m.popularity], m.popularity)
    if pop.dtype.kind not in "fiu" or pop.shape != (dims.n_items + 1,):
        raise fail(
            m.popularity,
            f"expected a numeric array of shape ({dims.n_items + 1},), got {pop.dtype} {pop.shape}",
        )
    pop = pop.astype(np.float32)
    if not np.isfinite(pop).all():
        raise fail(m.popularity, "contains NaN or infinite values")
    item_ids = parse_item_ids(
        parse_json(contents[m.item_ids], m.item_ids), m.item_ids, dims.n_items
    )
    tokenizer_json = None
    if m.tokenizer:
        try:
            tokenizer_json = contents[m.tokenizer].decode("utf-8")
        except UnicodeDecodeError:
            raise fail(m.tokenizer, "not UTF-8 text") from None
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
