"""Issue 21, item 12: what ``--help`` and the small CLI corners say."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from edgerec.cli import app, main
from edgerec.errors import DataError

ROOT = Path(__file__).resolve().parents[1]


def _commands(group, path=()):
    """Every (path, click command) of the CLI."""
    import typer.main

    cmd = typer.main.get_command(group) if isinstance(group, typer.Typer) else group
    yield path, cmd
    for name, sub in (getattr(cmd, "commands", None) or {}).items():
        yield from _commands(sub, (*path, name))


def _help(*path: str) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_lists_flags_without_a_value_hint_and_arguments_in_upper_case():
    paths = [p for p, _ in _commands(app)]
    assert ("train",) in paths and ("bench", "report") in paths
    for path in paths:
        text = _help(*path)
        assert "<bool>" not in text, path
        usage = next(line for line in text.splitlines() if "Usage:" in line)
        assert "{" not in usage, (path, usage)
    assert "Usage: edgerec export [OPTIONS] RUN_DIR" in _help("export")
    assert "Usage: edgerec bench compare [OPTIONS] RESULTS..." in _help("bench", "compare")


def test_train_help_shows_the_defaults_unset_options_stand_for():
    from edgerec.training.config import ModelConfig, TrainConfig

    text = re.sub(r"[│\s]+", " ", _help("train"))
    model, train = ModelConfig(), TrainConfig()
    for option, value in (
        ("--dim", model.dim),
        ("--hidden", model.hidden),
        ("--window", model.window),
        ("--lr", train.lr),
        ("--batch-size", train.batch_size),
        ("--epochs", train.epochs),
        ("--seed", train.seed),
    ):
        assert re.search(rf"{option} .*?\[default: {re.escape(str(value))}\]", text), option
    assert "[default: request-time]" in text or "[default: no-request-time]" in text


def _bad_data(tmp_path: Path) -> Path:
    root = tmp_path / "ml-100k"
    root.mkdir()
    (root / "u.data").write_text("")
    return root


def test_debug_works_after_the_command_too(tmp_path, capsys):
    args = ["data", "info", "--dataset", "movielens-100k", "--data-dir", str(_bad_data(tmp_path))]
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
    assert "error:" in capsys.readouterr().err
    for debug_args in (["--debug", *args], [*args, "--debug"], [args[0], "--debug", *args[1:]]):
        with pytest.raises(DataError):  # the traceback, not "No such option: --debug"
            main(debug_args)


def _latest_zip(tmp_path: Path) -> Path:
    archive = tmp_path / "ml-latest-small.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ml-latest-small/ratings.csv", "userId,movieId,rating,timestamp\n1,1,4,1\n")
    return archive


@pytest.mark.parametrize("name", ["movielens-latest", "movielens-latest-small"])
def test_data_fetch_takes_the_loaders_name_and_the_old_one(tmp_path, name):
    archive = _latest_zip(tmp_path)
    result = CliRunner().invoke(
        app, ["data", "fetch", name, "--to", str(tmp_path / "d"), "--url", archive.as_uri()]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "d" / "ml-latest-small" / "ratings.csv").is_file()
    assert "movielens-latest" in _help("data", "fetch")


def test_bench_report_example_names_a_folder_that_exists_and_works(tmp_path):
    text = _help("bench", "report")
    example = re.search(r"edgerec bench report (benchmarks/\S+)", text)
    assert example, text
    folder = ROOT / example.group(1)
    assert (folder / "latency.json").is_file(), folder
    out = tmp_path / "new" / "report"  # --out may name a folder that does not exist yet
    result = CliRunner().invoke(app, ["bench", "report", str(folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = (out / "report.md").read_text()
    headers = [ln for ln in report.splitlines() if ln.startswith("| ") and "p50" in ln]
    assert headers
    for header in headers:  # every latency column says its unit
        for cell in header.strip("| ").split(" | "):
            if re.search(r"\bp(50|95|99)\b", cell):
                assert "(ms)" in cell, (cell, header)


def test_edgerec_log_warnings_reach_the_terminal_as_one_line(tmp_path):
    import logging

    @app.command("_log_probe", hidden=True)
    def _probe() -> None:
        logging.getLogger("edgerec.io").warning("something to say")

    try:
        result = CliRunner().invoke(app, ["_log_probe"])
    finally:
        app.registered_commands.pop()
    assert result.exit_code == 0, result.output
    assert "warning: something to say" in result.output


def test_typer_version_still_has_the_hooks_tidy_help_uses():
    """If typer drops them, tidy_help is a no-op; this says so instead of a silent regress."""
    from typer.core import TyperArgument, TyperOption

    assert hasattr(TyperOption, "display_type_rich")
    assert hasattr(TyperArgument, "_usage_display_name")
    assert typer.__version__
