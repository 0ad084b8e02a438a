"""Issue 21, item 8: progress fits the terminal, plain lines elsewhere, export reports it."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from edgerec.commands.progress import Progress

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SRC = Path(__file__).resolve().parents[1] / "src" / "edgerec"


def _screen(buf: io.StringIO) -> list[str]:
    """The lines a terminal would show last (control sequences and redraws removed)."""
    text = _ANSI.sub("\n", buf.getvalue()).replace("\r", "\n")
    return [line for line in text.split("\n") if line.strip()]


def _terminal(width: int) -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=True, width=width, color_system=None), buf


@pytest.mark.parametrize("width", [100, 80, 60])
def test_a_terminal_line_fits_its_width_and_keeps_count_and_times(width):
    console, buf = _terminal(width)
    losses = " ".join(
        f"{name} {v:.3f}"
        for name, v in (
            ("retrieval", 6.123),
            ("behaviour", 1.234),
            ("interest", 0.456),
            ("future", 5.5),
            ("category", 0.25),
        )
    )
    with Progress(console=console) as bar:
        task = bar.add_task("epoch 12 (max 100)", total=1234)
        task.update(done=567, info=losses)
        task2 = bar.add_task("distilling the text encoder with a long description " * 3, 11)
        task2.update(done=3)
    lines = _screen(buf)
    assert lines, buf.getvalue()
    assert all(len(line) < width for line in lines), lines
    assert any("567/1234" in line and "eta" in line and "epoch 12" in line for line in lines)
    assert any("3/11" in line and "…" in line for line in lines)


def test_plain_output_has_no_control_characters_and_is_throttled():
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=False, width=80)
    with Progress(console=console, interval=3600) as bar:
        assert bar.plain
        report = bar.callback("export")
        for step, name in enumerate(["loading the run", "distilling the text encoder"]):
            for i in range(200):
                report(f"{name} ({i}/200)", step, 11)
        bar.print("x" * 150)  # an epoch line: never wrapped at 80 columns
    text = buf.getvalue()
    assert "\x1b" not in text and "\r" not in text
    lines = text.splitlines()
    assert lines == [
        "loading the run (0/200): 0/11, 0:00:00",
        "distilling the text encoder (0/200): 1/11, 0:00:00",
        "x" * 150,
    ]


def test_quiet_shows_nothing():
    console, buf = _terminal(100)
    with Progress(console=console, enabled=False) as bar:
        bar.callback("x")("step", 1, 2)
        bar.print("line")
    assert buf.getvalue() == ""


def test_one_progress_setup_is_used_by_every_command():
    """The rich progress set-up lives in one place (issue 20); the others use it."""
    users = []
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        if "rich.progress" in text:
            users.append(path.relative_to(SRC).as_posix())
    assert users == ["commands/progress.py"]
    for name in ("export.py", "demo.py", "bench.py"):
        assert "edgerec.commands.progress" in (SRC / "commands" / name).read_text()


def test_export_command_reports_progress_as_plain_lines(tmp_path):
    pytest.importorskip("torch")
    from export_fixtures import make_tiny_run
    from typer.testing import CliRunner

    from edgerec.cli import app

    run = make_tiny_run(tmp_path / "run", text_encoder="tiny")
    result = CliRunner().invoke(
        app, ["export", str(run), "--out", str(tmp_path / "bundle"), "--precision", "fp32"]
    )
    assert result.exit_code == 0, result.output
    progress_lines = [ln for ln in result.output.splitlines() if re.search(r": \d+/\d+, ", ln)]
    assert len(progress_lines) >= 5, result.output
    assert "\x1b" not in result.output and "\r" not in result.output
    assert progress_lines[-1].startswith("done: ")
