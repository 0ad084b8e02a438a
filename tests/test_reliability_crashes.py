"""Crashes and hostile file systems: kill -9, a read-only target, a full disk.

- ``kill -9`` during ``edgerec train`` -> ``edgerec train --resume`` continues from the
  last finished epoch (the epochs before the kill are kept, not redone) and reaches the
  quality of an uninterrupted run of the same configuration.
- ``kill -9`` during a first ``export_bundle`` -> nothing at the target path.
- A read-only target or a full disk (a real tmpfs, mounted when the tests run as root;
  otherwise those tests skip and the monkeypatched ENOSPC tests still run) -> a clear
  error, exit code 2 at the CLI, nothing half-written left, a previous version intact,
  and after space is freed ``--resume`` finishes the run.

Training runs use random text features and a few hundred synthetic users, so each
takes seconds.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from reliability_helpers import kill_export_midway, kill_when, real_run, run_cli

from edgerec.errors import BundleError
from edgerec.io import atomic_directory, atomic_write_bytes

TESTS = Path(__file__).parent
TRAIN = [
    "train",
    "--dataset",
    "synthetic",
    "--synthetic-users",
    "100",
    "--synthetic-items",
    "40",
    "--synthetic-seed",
    "3",
    "--epochs",
    "3",
    "--patience",
    "100",
    "--dim",
    "16",
    "--hidden",
    "16",
    "--max-len",
    "20",
    "--window",
    "3",
    "--batch-size",
    "32",
    "--warmup-steps",
    "5",
    "--text-encoder",
    "random",
    "--device",
    "cpu",
    "--threads",
    "1",
    "-q",
]


def _main(capsys, *args: str) -> tuple[int, str]:
    """``edgerec ARGS`` in this process: (exit code, stderr)."""
    code, _, err = run_cli(capsys, *args)
    return code, err


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "edgerec", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )


def _state(run: Path) -> dict | None:
    try:
        return json.loads((run / "checkpoint" / "state.json").read_text())
    except (OSError, ValueError):
        return None


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The same training, never interrupted."""
    from edgerec.cli import main

    out = tmp_path_factory.mktemp("ref") / "run"
    main([*TRAIN, "--out", str(out)])
    return json.loads((out / "metrics.json").read_text())


def _assert_same_quality(resumed: dict, reference: dict) -> None:
    # the batch order and dropout of an epoch derive from (seed, epoch): a resumed run
    # replays what the uninterrupted one did, so only float noise may differ
    assert resumed["finished"] and resumed["epochs_run"] == reference["epochs_run"] == 3
    for key in ("ndcg@10", "hr@10"):
        assert abs(resumed["test"][key] - reference["test"][key]) <= 0.02, (key, resumed["test"])


def test_kill_9_mid_training_then_resume_keeps_finished_epochs_and_quality(
    tmp_path, reference, capsys
):
    run = tmp_path / "run"
    proc = _start(*TRAIN, "--out", str(run))
    kill_when(proc, lambda: (s := _state(run)) is not None and s["epoch"] >= 1)
    before = _state(run)
    assert before is not None and not (run / "metrics.json").exists()

    code, err = _main(capsys, "train", "--resume", str(run), "-q")
    assert code == 0, err
    resumed = json.loads((run / "metrics.json").read_text())
    # the epochs finished before the kill were kept, not trained again
    done = before["epoch"]
    assert resumed["history"][:done] == before["history"]
    _assert_same_quality(resumed, reference)


def test_kill_9_before_the_first_checkpoint_then_resume_trains_from_the_start(
    tmp_path, reference, capsys
):
    run = tmp_path / "run"
    proc = _start(*TRAIN, "--out", str(run))
    kill_when(proc, lambda: (run / "config.json").is_file())
    assert _state(run) is None
    code, err = _main(capsys, "train", "--resume", str(run), "-q")
    assert code == 0, err
    _assert_same_quality(json.loads((run / "metrics.json").read_text()), reference)


def _kill_between_swap_renames(target: Path) -> Path:
    """What atomic_directory leaves when killed after its first rename: no target, the
    previous version in .NAME.old-*/prev, maybe a half-written .NAME.tmp-*."""
    old = target.parent / f".{target.name}.old-x"
    old.mkdir()
    os.replace(target, old / "prev")
    (target.parent / f".{target.name}.tmp-y").mkdir()
    return old / "prev"


def test_a_bundle_swap_killed_between_its_renames_still_loads_the_previous_bundle(tmp_path):
    from reliability_helpers import copy_bundle

    from edgerec.runtime import Recommender

    bundle = copy_bundle(tmp_path / "bundle")
    reference = Recommender.load(bundle, threads=1).recommend([1, 2, 3], k=5).item_ids
    _kill_between_swap_renames(bundle)
    with pytest.warns(UserWarning, match="loading the previous bundle"):
        rec = Recommender.load(bundle, threads=1)
    assert rec.recommend([1, 2, 3], k=5).item_ids == reference


def test_the_next_directory_write_puts_an_interrupted_swap_back_first(tmp_path):
    target = tmp_path / "bundle"
    target.mkdir()
    (target / "v").write_text("previous")
    _kill_between_swap_renames(target)
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "v").write_text("new, but the export fails")
        raise RuntimeError("parity gate failed")
    assert (target / "v").read_text() == "previous"
    assert not list(tmp_path.glob(".bundle.old-*"))


def test_kill_9_during_a_first_export_leaves_nothing_at_the_target(tmp_path):
    from edgerec.runtime import Recommender

    target = tmp_path / "bundle"
    kill_export_midway(real_run(), target, "precisions=('fp32',), evaluate=False")
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == []
    with pytest.raises(BundleError, match="not a bundle directory"):
        Recommender.load(target)


# --- atomic writes on a failing disk (monkeypatched: runs everywhere) --------------------


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_atomic_write_on_a_full_disk_keeps_the_old_file_and_names_the_new_one(
    tmp_path, monkeypatch
):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"previous")
    monkeypatch.setattr(os, "fsync", _enospc)  # data written, then the flush fails
    with pytest.raises(OSError) as e:
        atomic_write_bytes(target, b"x" * 1000)
    assert e.value.errno == errno.ENOSPC and str(target) in str(e.value)
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_atomic_directory_on_a_full_disk_keeps_the_previous_directory(tmp_path, monkeypatch):
    target = tmp_path / "bundle"
    target.mkdir()
    (target / "manifest.json").write_text("previous")
    monkeypatch.setattr(os, "fsync", _enospc)
    with pytest.raises(OSError), atomic_directory(target) as tmp:
        (tmp / "items.npy").write_bytes(b"new")
    assert (target / "manifest.json").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


# --- a real read-only / full file system (tmpfs; needs root) -----------------------------


@pytest.fixture
def tmpfs(tmp_path):
    """``mount(size, ro=False)`` -> a fresh tmpfs folder; unmounted afterwards."""
    mounted: list[Path] = []

    def mount(size: str, ro: bool = False) -> Path:
        if os.geteuid() != 0 or not shutil.which("mount"):
            pytest.skip("mounting a tmpfs needs root")
        point = tmp_path / f"fs{len(mounted)}"
        point.mkdir()
        opts = f"size={size}" + (",ro" if ro else "")
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(point)], capture_output=True
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({result.stderr.decode().strip()})")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def _remount(point: Path, size: str) -> None:
    result = subprocess.run(
        ["mount", "-o", f"remount,size={size}", str(point)], capture_output=True
    )
    assert result.returncode == 0, result.stderr


def test_export_to_a_read_only_file_system_is_one_clear_error(tmpfs, capsys):
    ro = tmpfs("1m", ro=True)
    code, err = _main(capsys, "export", str(real_run()), "--out", str(ro / "bundle"), "-p", "fp32")
    assert code == 2
    # the export's plain progress lines (stderr is not a terminal) may come first; the
    # error is one line, the last
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Read-only file system" in lines[-1]
    assert sum(line.startswith("error: ") for line in lines) == 1
    assert "Traceback" not in err
    assert list(ro.iterdir()) == []


def test_export_onto_a_full_disk_keeps_the_previous_bundle_and_leaves_no_debris(tmpfs, monkeypatch):
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    from edgerec.export import export_bundle, onnx_user, serving

    disk = tmpfs("256k")
    previous = disk / "bundle"
    previous.mkdir()
    (previous / "manifest.json").write_bytes(b"{}" * 1000)
    (previous / "items.npy").write_bytes(os.urandom(100_000))
    before = {p.name: p.read_bytes() for p in previous.iterdir()}

    def no_encoder(model, **kwargs):  # skips torch's slow export, not the write
        return None, {"exporter": "test"}

    def big_graph(encoder, **kwargs):  # a valid 1 MB graph, written by the export's writer
        weights = np.random.default_rng(0).standard_normal(1 << 18).astype(np.float32)
        out = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1 << 18])
        graph = helper.make_graph(
            [helper.make_node("Identity", ["w"], ["y"])],
            "big",
            [],
            [out],
            [numpy_helper.from_array(weights, "w")],
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])

    monkeypatch.setattr(onnx_user, "export_user_encoder", no_encoder)
    monkeypatch.setattr(serving, "serving_graph", big_graph)
    with pytest.raises(OSError) as e:
        export_bundle(real_run(), previous, precisions=("fp32",), evaluate=False)
    # the first serving graph the export writes
    assert e.value.errno == errno.ENOSPC and "recommend.onnx" in str(e.value)
    assert {p.name: p.read_bytes() for p in previous.iterdir()} == before
    assert sorted(p.name for p in disk.iterdir()) == ["bundle"]


def test_training_onto_a_full_disk_fails_cleanly_and_resumes_once_there_is_room(tmpfs, capsys):
    disk = tmpfs("48k")
    run = disk / "run"
    code, err = _main(capsys, *TRAIN, "--epochs", "1", "--out", str(run))
    assert code == 2, err
    assert err.startswith("error: ") and "No space left on device" in err
    assert "Traceback" not in err
    # whatever was written is whole: no temporary files, no half model file
    assert [p.name for p in run.rglob("*") if ".tmp" in p.name] == []
    if (run / "model.safetensors").exists():
        from safetensors import safe_open

        safe_open(str(run / "model.safetensors"), "np").keys()
    _remount(disk, "64m")
    code, err = _main(capsys, "train", "--resume", str(run), "-q")
    assert code == 0, err
    assert json.loads((run / "metrics.json").read_text())["finished"]


def test_a_kill_between_the_renames_of_a_checkpoint_swap_loses_no_finished_epoch(tmp_path):
    """atomic_directory swaps a directory with two renames; killed between them, the
    run holds no checkpoint/ but the previous one in .checkpoint.old-*/prev (and maybe a
    half-written .checkpoint.tmp-*). Resume must use the previous one, not start over."""
    from edgerec.data import SyntheticConfig, generate_synthetic
    from edgerec.training.config import ModelConfig, TrainConfig
    from edgerec.training.trainer import train

    ds = generate_synthetic(SyntheticConfig(n_users=60, n_items=40, seed=2))
    mcfg = ModelConfig(dim=8, hidden=8, max_len=10, window=3)
    tcfg = TrainConfig(
        epochs=3, batch_size=32, warmup_steps=2, device="cpu", num_threads=1, text_encoder="random"
    )
    run = tmp_path / "run"
    train(ds, run, mcfg, tcfg, progress=False, stop_after_epochs=2)
    kept = _state(run)
    old = tmp_path / "run" / ".checkpoint.old-x"
    old.mkdir()
    os.replace(run / "checkpoint", old / "prev")  # the first rename happened, not the second
    half = run / ".checkpoint.tmp-y"
    half.mkdir()
    (half / "state.json").write_text("{")
    resumed = train(ds, run, progress=False, resume=True)
    assert resumed["finished"] and resumed["epochs_run"] == 3
    assert resumed["history"][:2] == kept["history"]
