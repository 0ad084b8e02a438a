"""The runtime works in a fresh virtual environment holding only ``pip install edgerec[cpu]``.

This is the proof that apps can embed ``edgerec.runtime`` without torch: the package is
built from this checkout into a wheel, installed with its declared ``cpu`` extra into an
empty venv (dependencies from PyPI, or pip's cache), and a script there loads a bundle,
recommends, adds an item and checks that no heavy library was imported -- or even is
installed. The venv is made without pip and driven by this interpreter's pip
(``pip --python``), which saves bootstrapping pip into it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from runtime_helpers import make_bundle

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "optimum", "onnx", "pandas", "onnxscript", "safetensors")

SCRIPT = textwrap.dedent(
    """
    import importlib.util, json, sys
    from edgerec.runtime import Recommender

    rec = Recommender.load(sys.argv[1], threads=1)
    recs = rec.recommend([101, 102, 999], k=5)
    assert len(recs) == 5 and recs.unknown_items == (999,), recs
    assert rec.recommend([], k=3).fallback == "popularity"
    assert rec.add_items([5000], ["space war story"]) == 1 and 5000 in rec
    ex = rec.explain([101, 102, 5000], k=2)
    loaded = sorted(m for m in {HEAVY} if m in sys.modules)
    installed = sorted(m for m in {HEAVY} if importlib.util.find_spec(m) is not None)
    print(json.dumps({{"loaded": loaded, "installed": installed, "top": recs.item_ids,
                      "horizon": ex.horizon}}))
    """
).format(HEAVY=repr(HEAVY))


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kw)


@pytest.mark.slow
def test_runtime_runs_in_a_fresh_venv_without_torch(tmp_path):
    bundle = make_bundle(tmp_path / "bundle")
    # build from a copy, so setuptools' build/ and egg-info never land in the checkout
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(
        REPO / "src" / "edgerec",
        source / "src" / "edgerec",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    wheels = tmp_path / "wheels"
    built = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(source),
        ]
    )
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next(wheels.glob("edgerec-*.whl"))

    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    assert made.returncode == 0, made.stderr
    py = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    installed = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "-q",
            "--disable-pip-version-check",
            f"{wheel}[cpu]",
        ],
        env=env,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]

    script = tmp_path / "check.py"
    script.write_text(SCRIPT)
    result = _run([str(py), str(script), str(bundle)], env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = __import__("json").loads(result.stdout.strip().splitlines()[-1])
    assert report["loaded"] == [] and report["installed"] == []
    assert len(report["top"]) == 5 and report["horizon"] in ("long-term", "short-term")

    # the CLI's runtime commands work there too
    cli = venv / "bin" / "edgerec"
    rec = _run([str(cli), "recommend", str(bundle), "--history", "101,102", "--json"], env=env)
    assert rec.returncode == 0, rec.stderr[-2000:]
    info = _run([str(cli), "info", "--json"], env=env)
    assert info.returncode == 0 and '"CPUExecutionProvider"' in info.stdout
