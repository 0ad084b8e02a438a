"""Shared pieces of the reliability tests (tests/test_reliability_*.py).

``real_bundle()`` is a bundle made by the real trainer and exporter (tiny synthetic world,
the 2-layer random BERT of ``export_fixtures.tiny_text_encoder``, fp32 + int8 graphs),
built once per test process and shared read-only by every reliability file: fuzzing,
corruption and concurrency then run against exactly what ``edgerec export`` writes.
Tests that change a bundle work on a copy (``copy_bundle``).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import tempfile
import traceback
from pathlib import Path

_CACHE: dict[str, Path] = {}


def _root() -> Path:
    if "root" not in _CACHE:
        root = Path(tempfile.mkdtemp(prefix="edgerec-reliability-"))
        atexit.register(shutil.rmtree, root, True)
        _CACHE["root"] = root
    return _CACHE["root"]


def real_run() -> Path:
    """A finished training run with real text features (the tiny random BERT)."""
    if "run" not in _CACHE:
        from export_fixtures import make_tiny_run

        _CACHE["run"] = make_tiny_run(_root() / "run", text_encoder="tiny")
    return _CACHE["run"]


def real_bundle() -> Path:
    """The shared exported bundle (a run and an export, ~30-90 s on 2 cores, once)."""
    if "bundle" not in _CACHE:
        from export_fixtures import make_tiny_bundle

        out = _root() / "bundle"
        make_tiny_bundle(out, run_dir=real_run(), precisions=("fp32", "int8"), evaluate=False)
        _CACHE["bundle"] = out
    return _CACHE["bundle"]


def copy_bundle(dest: Path) -> Path:
    """A writable copy of the shared bundle (the export makes its files read-only)."""
    shutil.copytree(real_bundle(), dest)
    os.chmod(dest, 0o755)
    for p in dest.iterdir():
        os.chmod(p, 0o644)
    return dest


def manifest_of(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def write_manifest(bundle: Path, manifest: dict) -> None:
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2))


def rehash(bundle: Path, *names: str) -> None:
    """Make the manifest's sha256 and size agree with files edited on purpose, so only
    the checks after the checksums can catch the edit (no names: every file, new ones
    included)."""
    m = manifest_of(bundle)
    every = [p.name for p in sorted(bundle.iterdir()) if p.is_file() and p.name != "manifest.json"]
    for name in names or every:
        data = (bundle / name).read_bytes()
        m["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    write_manifest(bundle, m)


def raised_in_edgerec(exc: BaseException) -> bool:
    """True when the innermost frame that raised ``exc`` is edgerec's own code.

    An error that edgerec raises on purpose comes from a ``raise`` in edgerec; one that
    escaped from numpy, onnxruntime or tokenizers has its innermost frame there (or in C,
    which leaves the last Python frame at the call into the library -- so that frame's
    line must itself be a ``raise``).
    """
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return False
    last = frames[-1]
    return (
        f"{os.sep}edgerec{os.sep}" in last.filename
        and last.line is not None
        and last.line.lstrip().startswith("raise")
    )


def answer(rec, kind: str, kwargs: dict):
    """A comparable value of the whole answer (ids, scores, gate, flags)."""
    if kind == "recommend":
        r = rec.recommend(**kwargs)
        return (tuple(r.item_ids), tuple(x.score for x in r), r.gate, r.unknown_items)
    if kind == "batch":
        return tuple(
            (tuple(r.item_ids), tuple(x.score for x in r), r.gate)
            for r in rec.recommend_batch(**kwargs)
        )
    if kind == "user_vector":
        v = rec.user_vector(**kwargs)
        return (v.vector.tobytes(), v.gate)
    e = rec.explain(**kwargs)
    return (e.gate, tuple((x.item_id, x.score, x.drivers) for x in e.items), e.events)


def _stderr(proc) -> str:
    return proc.stderr.read() if proc.stderr else ""


def kill_when(proc, ready, timeout: float = 240) -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` holds; fail if it ended first."""
    import signal
    import time

    deadline = time.monotonic() + timeout
    try:
        while not ready():
            # (the message reads stderr only once the process has ended)
            assert proc.poll() is None, f"ended before it could be killed: {_stderr(proc)}"
            assert time.monotonic() < deadline, "never reached the point to kill at"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL


def kill_export_midway(run: Path, target: Path, options: str = "") -> None:
    """Start ``export_bundle(run, target, <options>)`` in a subprocess and ``kill -9`` it
    while its temporary bundle directory is being filled (checked to exist)."""
    import subprocess
    import sys
    import time

    tests = Path(__file__).parent
    script = (
        "import sys\n"
        f"sys.path.insert(0, {str(tests)!r})\n"
        "from edgerec.export import export_bundle\n"
        "def progress(step, done, total):\n"
        "    print(step, flush=True)\n"
        f"export_bundle({str(run)!r}, {str(target)!r}, progress=progress, {options})\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    deadline = time.monotonic() + 240
    for line in proc.stdout:  # the temporary directory exists once the graphs are written
        if line.startswith("exporting the user encoder") or time.monotonic() > deadline:
            break
    kill_when(proc, lambda: bool(list(target.parent.glob(f".{target.name}.tmp-*"))), timeout=30)


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """``edgerec ARGS`` in this process (no interpreter start-up): (exit code, stdout, stderr)."""
    from edgerec.cli import main

    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err
