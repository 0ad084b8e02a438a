"""Atomic file and directory writes (stdlib only, so the runtime may use them too).

A model or bundle is either complete at its path or absent: content goes to a temporary
sibling first, is flushed to disk, and is renamed into place in one step. A crash or a
kill -9 at any moment leaves the previous version intact.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)


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


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:6]


_HOST = _host_tag()
# .NAME.tmp-p<pid>h<host>-<random> and .NAME.old-p<pid>h<host>-<random>: the process and
# the machine (a hash of the host name) that made the folder, so a later write can tell
# a dead process's leftovers from a running export's work in progress.
_OWNED_RE = re.compile(
    r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-p(?P<pid>\d+)h(?P<host>[0-9a-f]{6})-\w+$"
)


def _temp_prefix(name: str, kind: str) -> str:
    return f".{name}.{kind}-p{os.getpid()}h{_HOST}-"


def _process_is_gone(pid: int) -> bool:
    """True only when no process ``pid`` runs on this machine (POSIX); unsure -> False."""
    if os.name != "posix" or pid <= 0:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: it runs, as another user
        return False
    return False


def remove_stale_temporaries(parent: Path | str) -> list[Path]:
    """Remove the ``.NAME.tmp-*`` folders in ``parent`` (and ``.NAME.old-*`` ones whose
    ``NAME`` exists again) that ``atomic_directory`` calls of processes that are gone
    left behind (a killed export or checkpoint), logging a warning for each.

    Only folders made on this machine by a process that no longer runs are touched:
    a running export's temporary folder, one from another machine sharing the folder and
    folders named by older versions (no process id in the name) are left alone.
    Returns the removed paths.
    """
    parent = Path(parent)
    removed: list[Path] = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for path in entries:
        m = _OWNED_RE.match(path.name)
        if m is None or m["host"] != _HOST or not _process_is_gone(int(m["pid"])):
            continue
        if m["kind"] == "old" and not (parent / m["name"]).exists():
            continue  # the previous version of a swap killed between its renames: keep
        try:
            if not path.is_dir() or path.is_symlink():
                continue
            shutil.rmtree(path)
        except OSError as e:
            log.warning("could not remove %s, left by process %s: %s", path, m["pid"], e)
            continue
        removed.append(path)
        log.warning(
            "removed %s: a temporary folder left by process %s, which is no longer running "
            "(an interrupted export or checkpoint)",
            path,
            m["pid"],
        )
    return removed


@contextlib.contextmanager
def atomic_directory(target: Path | str) -> Iterator[Path]:
    """Yield a temporary directory next to ``target``; on success it replaces ``target``.

    On any exception (or a kill) the temporary directory is removed or left as an
    obviously temporary ``.name.tmp-*`` sibling, and ``target`` is untouched. Replacing
    an existing directory swaps it aside first, so the window where neither exists is
    two renames long. The temporary names carry the process id, and the next call in
    the same folder removes those of processes that are gone
    (:func:`remove_stale_temporaries`).
    """
    target = Path(target).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_directory(target)  # an earlier swap killed between its renames: undo it first
    remove_stale_temporaries(target.parent)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target.name, "tmp"), dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=_temp_prefix(target.name, "old"), dir=target.parent))
            os.replace(target, old / "prev")
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
