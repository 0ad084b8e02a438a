"""The README's main job, ``edgerec demo``, end to end on a fresh install (short run)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")


def test_demo_trains_evaluates_exports_and_recommends(tmp_path):
    from typer.testing import CliRunner

    from edgerec.cli import app
    from edgerec.runtime import Recommender

    out = tmp_path / "demo"
    result = CliRunner().invoke(
        app, ["demo", "--out", str(out), "--epochs", "1", "--no-distill", "--users", "1"]
    )
    assert result.exit_code == 0, result.output
    text = result.output
    for step in ("1. data", "2. train", "3. export", "4. recommend", "5. latency"):
        assert step in text
    for model in ("mostpop", "itemknn", "markov", "edgerec"):
        assert model in text
    assert "recommend(): p50" in text
    assert (out / "run" / "metrics.json").is_file()
    rec = Recommender.load(out / "bundle", threads=1)
    assert len(rec.recommend([1, 2, 3], k=5)) == 5
