"""A failed, refused or killed export leaves no partial bundle and the previous one intact.

Runs use the tiny random BERT (``text_encoder="tiny"``) so each export costs seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from export_fixtures import make_tiny_bundle, make_tiny_run
from reliability_helpers import kill_export_midway
from typer.testing import CliRunner

from edgerec.errors import EdgerecError, ParityError

TESTS = Path(__file__).parent


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _visible_siblings(folder: Path) -> set[str]:
    return {p.name for p in folder.parent.iterdir() if not p.name.startswith(".")}


@pytest.fixture(scope="module")
def previous(tmp_path_factory):
    root = tmp_path_factory.mktemp("atomic")
    run = make_tiny_run(root / "run", text_encoder="tiny")
    make_tiny_bundle(root / "bundle", run_dir=run, precisions=("fp32",))
    return run, root / "bundle"


def test_an_exception_mid_export_keeps_the_previous_bundle(previous, monkeypatch):
    from edgerec.export import export_bundle, serving

    run, bundle = previous
    before = _snapshot(bundle)
    siblings = _visible_siblings(bundle)
    seen = {}

    def broken_export(encoder, folder, **kwargs):
        (Path(folder) / "recommend.onnx").write_bytes(b"half a graph")
        seen["tmp"] = Path(folder)
        raise RuntimeError("injected failure")

    monkeypatch.setattr(serving, "write_serving_graphs", broken_export)
    with pytest.raises(RuntimeError, match="injected failure"):
        export_bundle(run, bundle, precisions=("fp32",))
    assert seen["tmp"] != bundle and not seen["tmp"].exists()
    assert _snapshot(bundle) == before
    assert _visible_siblings(bundle) == siblings
    assert not list(bundle.parent.glob(f".{bundle.name}.*"))


def test_a_failed_first_export_creates_no_bundle_directory(previous, tmp_path, monkeypatch):
    from edgerec.export import export_bundle, onnx_user

    run, _ = previous
    monkeypatch.setattr(
        onnx_user, "export_user_encoder", lambda *a, **k: (_ for _ in ()).throw(OSError("disk"))
    )
    with pytest.raises(OSError):
        export_bundle(run, tmp_path / "new-bundle")
    assert list(tmp_path.iterdir()) == []


def test_parity_failure_through_the_cli_exits_2_and_keeps_the_previous_bundle(previous):
    from edgerec.cli import app

    run, bundle = previous
    before = _snapshot(bundle)
    result = CliRunner().invoke(
        app, ["export", str(run), "--out", str(bundle), "--tolerance", "1e-12", "-p", "fp32"]
    )
    assert isinstance(result.exception, ParityError)
    assert "max_abs_user" in str(result.exception) and "> 1e-12" in str(result.exception)
    assert _snapshot(bundle) == before
    assert not list(bundle.parent.glob(f".{bundle.name}.*"))


def test_cli_rejects_bad_options_before_loading_anything(previous, tmp_path, capsys):
    from edgerec.cli import main

    run, _ = previous
    base = ["export", str(run), "--out", str(tmp_path / "b")]
    for extra, message in (
        (["--precision", "int4"], "unknown precision 'int4'"),
        (["--opset", "12"], "opset must be between 17 and 21"),
        (["--item-dtype", "bf16"], "item dtype must be one of"),
        (["--tolerance", "0"], "tolerance must be > 0"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(base + extra)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(tmp_path / "no-run"), "--out", str(tmp_path / "b")])
    assert exit_info.value.code == 2
    assert "not a finished training run" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_sigkill_mid_export_keeps_the_previous_bundle(previous):
    run, bundle = previous
    before = _snapshot(bundle)
    siblings = _visible_siblings(bundle)
    kill_export_midway(run, bundle, "precisions=('fp32', 'int8')")
    assert _snapshot(bundle) == before
    # what a kill leaves is only an obviously temporary hidden sibling, never the bundle
    assert _visible_siblings(bundle) == siblings


def test_exporting_a_run_trained_without_text_features_is_refused(previous, tmp_path):
    import json
    import shutil

    from edgerec.export import export_bundle

    run, _ = previous
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    config = json.loads((copy / "config.json").read_text())
    config["text_encoder"] = {"kind": "random", "dim": 32}
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(EdgerecError, match="random text features"):
        export_bundle(copy, tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()


def test_exporting_against_other_data_than_the_run_was_trained_on_is_refused(previous, tmp_path):
    from export_fixtures import tiny_dataset

    from edgerec.errors import DataError
    from edgerec.export import export_bundle

    run, _ = previous
    with pytest.raises(DataError, match="fingerprint"):
        export_bundle(run, tmp_path / "bundle", dataset=tiny_dataset(seed=1))
    assert not (tmp_path / "bundle").exists()
