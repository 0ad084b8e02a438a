"""The bundle's manifest (docs/bundle.md), parsed without trusting it: every key's
presence, type and range, every file name a plain name inside the bundle, every used
file listed with its sha256 and size. Failures are ``BundleError`` naming the key."""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from edgerec.errors import BundleError
from edgerec.features import N_GAP_BUCKETS

FORMAT = "edgerec-bundle"
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 64 << 20
ITEM_DTYPES = ("float32", "float16", "int8")
PRECISIONS = ("fp32", "fp16", "int8")
ROLES = ("recommend", "user_encoder", "text_encoder")
SCORERS = ("shortlist", "topk", "topk_fp16")
# the int8 text encoder's hardware target (edgerec.export.targets) -> its architecture
QUANTIZATION_TARGETS = {
    "avx2": "x86_64",
    "avx512": "x86_64",
    "avx512_vnni": "x86_64",
    "arm64": "arm64",
}
_MACHINES = {"x86_64": "x86_64", "amd64": "x86_64", "arm64": "arm64", "aarch64": "arm64"}


class QuantizationTargetWarning(UserWarning):
    """The bundle's int8 text encoder was quantized for another architecture than this one."""


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
    quantization_target: str | None = None  # the int8 text encoder's hardware target

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


def fail(where: str, problem: str) -> BundleError:
    return BundleError(f"{where}: {problem}")


def _req(d: Mapping, key: str, kind: type, where: str = MANIFEST):
    if key not in d:
        raise fail(where, f"missing key {key!r}")
    value = d[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise fail(where, f"{key!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


def _positive(d: Mapping, key: str, where: str) -> int:
    value = _req(d, key, int, where)
    if value < 1 or value > 2**31 - 1:
        raise fail(where, f"{key!r} out of range ({value})")
    return value


def check_name(name: object, what: str) -> str:
    """A manifest path must be a plain file name: no directories, no '..', not absolute."""
    if not isinstance(name, str) or not name:
        raise fail(MANIFEST, f"{what}: file name must be a non-empty string, got {name!r}")
    bad = name in (".", "..") or any(c in name for c in "/\\\x00") or os.path.isabs(name)
    if bad or (len(name) >= 2 and name[1] == ":") or name == MANIFEST:
        raise fail(MANIFEST, f"{what}: {name!r} is not a plain file name inside the bundle")
    return name


def _file_map(obj: object, what: str, keys: tuple[str, ...]) -> dict[str, str]:
    if not isinstance(obj, dict) or not obj:
        raise fail(MANIFEST, f"{what} must map names to file names")
    for key, name in obj.items():
        if key not in keys:
            raise fail(MANIFEST, f"{what}: unknown entry {key!r} (expected one of {keys})")
        check_name(name, f"{what}.{key}")
    return dict(obj)


def parse_manifest(obj: object) -> Manifest:
    if not isinstance(obj, dict):
        raise fail(MANIFEST, "not a JSON object")
    if obj.get("format") != FORMAT:
        raise fail(MANIFEST, f"not an edgerec bundle (format {obj.get('format')!r})")
    version = _req(obj, "format_version", int)
    if version != FORMAT_VERSION:
        hint = (
            "re-export it with this edgerec (edgerec export RUN --out BUNDLE)"
            if version < FORMAT_VERSION
            else "upgrade edgerec"
        )
        raise fail(
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
        raise fail(w, f"n_gap_buckets is {dims.n_gap_buckets}, this runtime's is {N_GAP_BUCKETS}")
    vocab = _req(obj, "behaviour_vocab", list)
    if not all(isinstance(v, str) for v in vocab) or len(set(vocab)) != len(vocab):
        raise fail(MANIFEST, "behaviour_vocab must be a list of distinct strings")
    if len(vocab) != dims.n_behaviours:
        raise fail(
            MANIFEST, f"behaviour_vocab has {len(vocab)} entries, dims say {dims.n_behaviours}"
        )
    default_behaviour = _req(obj, "default_behaviour", str)
    if default_behaviour not in vocab:
        raise fail(MANIFEST, f"default_behaviour {default_behaviour!r} is not in behaviour_vocab")
    precisions = _req(obj, "precisions", list)
    if not precisions or any(p not in PRECISIONS for p in precisions):
        raise fail(MANIFEST, f"precisions must be a non-empty subset of {PRECISIONS}")
    default_precision = _req(obj, "default_precision", str)
    if default_precision not in precisions:
        raise fail(MANIFEST, f"default_precision {default_precision!r} is not in precisions")
    graphs_raw = _req(obj, "graphs", dict)
    graphs = {}
    for role, variants in graphs_raw.items():
        if role not in ROLES:
            raise fail(MANIFEST, f"unknown graph role {role!r} (expected {ROLES})")
        graphs[role] = MappingProxyType(_file_map(variants, f"graphs.{role}", PRECISIONS))
    for role in ("recommend", "user_encoder"):
        if role not in graphs:
            raise fail(MANIFEST, f"graphs.{role} is missing")
    scorers = _file_map(_req(obj, "scorers", dict), "scorers", SCORERS)
    request_time = _req(obj, "request_time", bool)
    im = _req(obj, "item_matrix", dict)
    dtype = _req(im, "dtype", str, f"{MANIFEST} item_matrix")
    if dtype not in ITEM_DTYPES:
        raise fail(MANIFEST, f"item_matrix.dtype must be one of {ITEM_DTYPES}, got {dtype!r}")
    scale_file = im.get("scale_file")
    if (dtype == "int8") != bool(scale_file):
        raise fail(MANIFEST, "item_matrix: an int8 matrix needs a scale_file, others none")
    item_matrix = {
        "file": check_name(im.get("file"), "item_matrix.file"),
        "dtype": dtype,
        "scale_file": check_name(scale_file, "item_matrix.scale_file") if scale_file else None,
    }
    tokenizer = obj.get("tokenizer")
    if tokenizer is not None:
        check_name(tokenizer, "tokenizer")
    if "text_encoder" in graphs and not tokenizer:
        raise fail(MANIFEST, "a text_encoder graph needs a tokenizer file")
    files = {}
    for name, entry in _req(obj, "files", dict).items():
        check_name(name, "files")
        sha = entry.get("sha256") if isinstance(entry, dict) else None
        size = entry.get("size") if isinstance(entry, dict) else None
        if not isinstance(sha, str) or len(sha) != 64 or set(sha) - set("0123456789abcdef"):
            raise fail(MANIFEST, f"files.{name}: sha256 must be 64 lowercase hex digits")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise fail(MANIFEST, f"files.{name}: size must be a non-negative integer")
        files[name] = FileEntry(sha, size)
    target = obj.get("quantization_target")
    if target is not None and (not isinstance(target, str) or not 0 < len(target) <= 64):
        raise fail(MANIFEST, f"quantization_target must be a short string, got {target!r}")
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
        quantization_target=target,
    )
    for name in referenced_files(manifest):
        if name not in files:
            raise fail(MANIFEST, f"{name} is used but not listed in files (no checksum)")
    return manifest


def referenced_files(m: Manifest) -> list[str]:
    names = [m.item_matrix["file"], m.item_ids, m.popularity, *m.scorers.values()]
    names += [x for x in (m.item_matrix["scale_file"], m.tokenizer) if x]
    for variants in m.graphs.values():
        names.extend(variants.values())
    return list(dict.fromkeys(names))


def target_mismatch(m: Manifest, machine: str | None = None) -> str | None:
    """Why the bundle's int8 text encoder may run slower or less exactly on ``machine``
    (default: this one) -- it was quantized for another architecture -- else None."""
    meant = QUANTIZATION_TARGETS.get(m.quantization_target or "")
    machine = machine or platform.machine()
    here = _MACHINES.get(machine.lower())
    if "int8" not in m.graphs.get("text_encoder", {}) or not meant or not here or meant == here:
        return None
    fit = "arm64`" if here == "arm64" else "avx512_vnni` (`avx2` or `avx512` without VNNI)"
    return (
        f"the int8 text encoder was quantized for {m.quantization_target} ({meant}) and this "
        f"machine is {machine}: it works, but its integer products were chosen for another "
        f"instruction set and may run slower or less exactly here; re-export with "
        f"`--target {fit}, or load with precision='fp32'"
    )


def choose_precision(m: Manifest, precision: str | None, device: str) -> str:
    """The precision asked for, else the bundle's default (fp16 only on a GPU)."""
    if precision is not None:
        if precision not in m.precisions:
            raise ValueError(
                f"precision {precision!r} is not in this bundle (it has {', '.join(m.precisions)})"
            )
        return precision
    if m.default_precision == "fp16" and device != "cuda":  # fp16 runs slowly on CPUs
        return next((p for p in ("int8", "fp32") if p in m.precisions), "fp16")
    return m.default_precision
