"""Downloading MovieLens archives for users with internet access.

The archive is streamed to a temporary file, its checksum compared with the one
GroupLens publishes (``.md5`` files next to each zip), its members checked for paths
that would escape the target folder, and the extracted folder renamed into place only
when complete. Tests exercise the same path with ``file://`` addresses.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from edgerec.errors import DataError
from edgerec.io import atomic_directory

BASE = "https://files.grouplens.org/datasets/movielens/"


@dataclass(frozen=True)
class Archive:
    url: str
    folder: str  # top-level folder inside the zip
    md5: str | None  # as published by GroupLens; None where the file changes over time


ARCHIVES = {
    "movielens-100k": Archive(BASE + "ml-100k.zip", "ml-100k", "0e33842e24a9c977be4e0107933c0723"),
    "movielens-1m": Archive(BASE + "ml-1m.zip", "ml-1m", "c4d9eecfca2ab87c1945afe126590906"),
    # the loader's name (data set "movielens-latest"); GroupLens calls it ml-latest-small
    "movielens-latest": Archive(BASE + "ml-latest-small.zip", "ml-latest-small", None),
}
ALIASES = {"movielens-latest-small": "movielens-latest"}  # the name earlier versions used


def _download(url: str, dest: Path, progress: bool) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(dest, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0)
            if progress:
                from edgerec.commands.progress import Progress

                with Progress() as bar:
                    task = bar.add_task(
                        f"downloading {url.rsplit('/', 1)[-1]}", total=total or None, unit="bytes"
                    )
                    for chunk in iter(lambda: resp.read(1 << 20), b""):
                        out.write(chunk)
                        task.update(advance=len(chunk))
            else:
                shutil.copyfileobj(resp, out, 1 << 20)
    except OSError as e:  # URLError is an OSError
        raise DataError(f"cannot download {url}: {e}") from None


def _digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def safe_extract(zip_path: Path, dest: Path) -> None:
    """Extract, refusing absolute paths, ``..`` components and symlinks in the archive."""
    try:
        zf = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile:
        raise DataError(f"{zip_path}: not a zip archive") from None
    with zf:
        for info in zf.infolist():
            name = PurePosixPath(info.filename)
            if name.is_absolute() or ".." in name.parts or "\\" in info.filename:
                raise DataError(
                    f"{zip_path}: member {info.filename!r} would escape the target folder"
                )
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise DataError(f"{zip_path}: member {info.filename!r} is a symbolic link")
        bad = zf.testzip()
        if bad is not None:
            raise DataError(f"{zip_path}: member {bad!r} is corrupt (CRC mismatch)")
        zf.extractall(dest)


def fetch_dataset(
    name: str,
    to: Path,
    *,
    url: str | None = None,
    sha256: str | None = None,
    progress: bool = False,
) -> Path:
    """Download ``name`` into ``to``/<folder>; returns that folder."""
    name = ALIASES.get(name, name)
    if name not in ARCHIVES:
        raise DataError(f"unknown archive {name!r}; choose one of {', '.join(ARCHIVES)}")
    archive = ARCHIVES[name]
    to = Path(to)
    target = to / archive.folder
    with tempfile.TemporaryDirectory(prefix="edgerec-fetch-") as tmp:
        zip_path = Path(tmp) / "archive.zip"
        _download(url or archive.url, zip_path, progress)
        if sha256 is not None:
            got = _digest(zip_path, "sha256")
            if got != sha256.lower():
                raise DataError(f"{name}: sha256 mismatch: expected {sha256}, got {got}")
        elif archive.md5 is not None and url is None:
            got = _digest(zip_path, "md5")
            if got != archive.md5:
                raise DataError(f"{name}: md5 mismatch: expected {archive.md5}, got {got}")
        extracted = Path(tmp) / "extracted"
        safe_extract(zip_path, extracted)
        inner = extracted / archive.folder
        if not inner.is_dir():
            raise DataError(f"{name}: the archive has no {archive.folder}/ folder")
        with atomic_directory(target) as staging:
            for item in inner.iterdir():
                shutil.move(str(item), staging / item.name)
    return target
