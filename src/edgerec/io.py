"""Atomic file and directory writes (stdlib only, so the runtime may use them too).

A model or bundle is either complete at its path or absent: content goes to a temporary
sibling first, is flushed to disk, and is renamed into place in one step. A crash or a
kill -9 at any moment leaves the previous version intact.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once: os.umask is process-wide and not thread-safe to probe


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide models from other users
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None and e.errno is not None:
            # a full disk says only "No space left on device": name the file it stopped
            raise OSError(e.errno, e.strerror or str(e), str(path)) from None
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path | str, obj: object) -> None:
    atomic_write_text(
        path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"
    )


def _json_default(obj: object):
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def interrupted_swap(target: Path | str) -> Path | None:
    """The complete previous version of a missing ``target`` that a kill between the two
    renames of ``atomic_directory`` left in ``.NAME.old-*/prev`` (the newest), or None.
    Never a ``.NAME.tmp-*`` directory, which may be half written."""
    target = Path(target).absolute()
    if target.exists():
        return None
    try:
        olds = [p for p in target.parent.glob(f".{target.name}.old-*/prev") if p.is_dir()]
        return max(olds, key=lambda p: p.stat().st_mtime) if olds else None
    except OSError:
        return None


def recover_directory(target: Path | str) -> bool:
    """Put the previous version of ``target`` back if a kill hit ``atomic_directory``
    between its two renames (``target`` missing, ``.NAME.old-*/prev`` present).

    Returns whether something was restored.
    """
    target = Path(target).absolute()
    previous = interrupted_swap(target)
    if previous is None:
        return False
    os.replace(previous, target)
    shutil.rmtree(previous.parent, ignore_errors=True)
    _fsync_dir(target.parent)
    return True


@contextlib.contextmanager
def atomic_directory(target: Path | str) -> Iterator[Path]:
    """Yield a temporary directory next to ``target``; on success it replaces ``target``.

    On any exception (or a kill) the temporary directory is removed or left as an
    obviously temporary ``.name.tmp-*`` sibling, and ``target`` is untouched. Replacing
    an existing directory swaps it aside first, so the window where neither exists is
    two renames long.
    """
    target = Path(target).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_directory(target)  # an earlier swap killed between its renames: undo it first
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / "prev")
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
