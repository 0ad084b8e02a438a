"""Issue 21, item 4: temporaries of killed exports are removed by the next write, with a word."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

from typer.testing import CliRunner

from edgerec.cli import app
from edgerec.io import atomic_directory, remove_stale_temporaries

_KILLED_MIDWAY = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from edgerec.io import atomic_directory
    with atomic_directory(Path(sys.argv[1])) as tmp:
        (tmp / "user_encoder.onnx").write_bytes(b"half written")
        print(tmp, flush=True)
        time.sleep(600)
    """
)


def _kill_midway(target: Path) -> Path:
    """A process killed with -9 inside atomic_directory (as a killed export is)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_MIDWAY, str(target)], stdout=subprocess.PIPE, text=True
    )
    tmp = Path(proc.stdout.readline().strip())
    proc.kill()
    proc.wait()
    proc.stdout.close()
    assert tmp.is_dir() and tmp.name.startswith(f".{target.name}.tmp-")
    return tmp


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_next_write_removes_a_killed_writers_temporary_and_says_so(tmp_path, caplog):
    target = tmp_path / "bundle"
    stale = _kill_midway(target)
    with caplog.at_level(logging.WARNING, logger="edgerec"), atomic_directory(target) as tmp:
        (tmp / "manifest.json").write_text("{}")
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    assert any(
        stale.name in r.getMessage() and "no longer running" in r.getMessage()
        for r in caplog.records
    )


def test_another_target_in_the_same_folder_cleans_up_too(tmp_path):
    stale = _kill_midway(tmp_path / "bundle")
    with atomic_directory(tmp_path / "other") as tmp:
        (tmp / "x").write_text("x")
    assert not stale.exists()


def test_a_running_writers_temporary_is_kept(tmp_path):
    target = tmp_path / "bundle"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_MIDWAY, str(target)], stdout=subprocess.PIPE, text=True
    )
    try:
        running = Path(proc.stdout.readline().strip())
        assert remove_stale_temporaries(tmp_path) == []
        with atomic_directory(target) as tmp:
            (tmp / "x").write_text("x")
        assert running.is_dir()
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_only_this_machines_dead_processes_folders_are_removed(tmp_path):
    from edgerec import io

    dead = _dead_pid()
    (tmp_path / "bundle").mkdir()
    names = {
        f".bundle.tmp-p{dead}h{io._HOST}-abc": False,  # removed
        f".bundle.old-p{dead}h{io._HOST}-def": False,  # bundle exists: a finished swap's
        f".gone.old-p{dead}h{io._HOST}-ghi": True,  # gone/ missing: its previous version
        f".bundle.tmp-p{dead}h{'0' * 6 if io._HOST != '0' * 6 else '1' * 6}-jkl": True,
        ".bundle.tmp-legacy": True,  # no owner recorded: left alone
        f".bundle.tmp-p{dead}h{io._HOST}-file": True,  # not a folder
    }
    for name in names:
        if name.endswith("-file"):
            (tmp_path / name).write_text("x")
        else:
            (tmp_path / name).mkdir()
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == sorted(n for n, kept in names.items() if not kept)
    for name, kept in names.items():
        assert (tmp_path / name).exists() == kept, name


def test_cli_says_which_stale_folder_it_removed(tmp_path):
    """Through the CLI (``data fetch`` writes with atomic_directory, as export does)."""
    src = tmp_path / "src" / "ml-100k"
    src.mkdir(parents=True)
    (src / "u.data").write_text("1\t1\t3\t1\n")
    archive = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(src / "u.data", "ml-100k/u.data")
    to = tmp_path / "data"
    stale = _kill_midway(to / "ml-100k")
    result = CliRunner().invoke(
        app, ["data", "fetch", "movielens-100k", "--to", str(to), "--url", archive.as_uri()]
    )
    assert result.exit_code == 0, result.output
    assert not stale.exists()
    assert f"warning: removed {stale}" in result.output
    assert (to / "ml-100k" / "u.data").is_file()
