"""``edgerec recommend``, ``inspect`` and ``info``: output, errors and exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from runtime_helpers import make_bundle

from edgerec.cli import main


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("rt-cli") / "b")


def run(args, capsys) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def test_recommend_table_shows_titles_scores_and_gate(bundle, capsys):
    code, out, _ = run(["recommend", str(bundle), "--history", "101,102,999", "--k", "3"], capsys)
    assert code == 0
    assert "Item " in out and "gate" in out and "ignored 1 unknown item id(s): 999" in out


def test_recommend_json(bundle, capsys):
    code, out, _ = run(
        ["recommend", str(bundle), "-H", "101,102", "-k", "4", "--behaviours", "5,4", "--json"],
        capsys,
    )
    data = json.loads(out)
    assert code == 0 and len(data["items"]) == 4 and 0 <= data["gate"] <= 1
    assert {"item_id", "score", "title"} <= set(data["items"][0])
    assert data["providers"] == ["CPUExecutionProvider"]


def test_recommend_empty_history_is_the_popularity_fallback(bundle, capsys):
    code, out, _ = run(["recommend", str(bundle), "--history", "", "--json"], capsys)
    assert code == 0 and json.loads(out)["fallback"] == "popularity"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--history", "101", "--k", "0"], "--k must be a positive integer"),
        (["--history", "101,999", "--strict"], "unknown item ids: '999'"),
        (["--history", "101", "--timestamps", "abc"], "--timestamps: 'abc' is not a number"),
        (["--history", "101,102", "--timestamps", "1,nan"], "timestamps[1]"),
        (["--history", "101", "--providers", "tpu"], "providers must be"),
    ],
)
def test_recommend_bad_input_is_one_error_line_and_exit_2(bundle, capsys, args, message):
    code, _, err = run(["recommend", str(bundle), *args], capsys)
    assert code == 2 and message in err and "Traceback" not in err


def test_recommend_missing_bundle(tmp_path, capsys):
    code, _, err = run(["recommend", str(tmp_path / "none"), "--history", "1"], capsys)
    assert code == 2 and "not a bundle directory" in err


def test_inspect_lists_the_manifest_and_verifies_files(bundle, capsys):
    code, out, _ = run(["inspect", str(bundle)], capsys)
    assert code == 0 and "user_encoder.onnx" in out and "dim 8, 40 items" in out and "ok" in out


def test_inspect_reports_a_corrupt_file_and_fails(bundle, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(bundle, broken)
    (broken / "items.json").write_text("{}")
    code, out, err = run(["inspect", str(broken), "--json"], capsys)
    data = json.loads(out)
    assert code == 2 and data["verified"] is False
    bad = [f for f in data["files"] if not f["ok"]]
    assert [f["name"] for f in bad] == ["items.json"] and "size" in bad[0]["problem"]
    assert "items.json" in err


def test_info_reports_versions_working_providers_and_cpu(capsys):
    code, out, _ = run(["info", "--json"], capsys)
    data = json.loads(out)
    assert code == 0
    assert data["providers"]["CPUExecutionProvider"]["works"] is True
    assert set(data["cpu"]["flags"]) >= {"avx2", "avx512", "avx512_vnni", "amx"}
    assert data["onnxruntime"] and data["numpy"] and data["edgerec"]
    code, out, _ = run(["info"], capsys)
    assert code == 0 and "CPUExecutionProvider" in out


@pytest.mark.parametrize("command", ["recommend", "inspect", "info"])
def test_help_has_examples(command, capsys):
    code, out, _ = run([command, "--help"], capsys)
    assert code == 0 and "Example" in out
