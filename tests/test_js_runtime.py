"""The JavaScript runtime (js/): its node tests -- Node (onnxruntime-node) and headless
Chromium (onnxruntime-web, wasm) against ``edgerec.runtime`` on bundles made here --
run by ``node --test``, so the README's test command covers them.

Skipped only when Node is not installed; ``js/node_modules`` comes from ``npm ci`` in
js/ (.ci/run does it). Without Chromium the browser tests skip themselves, saying so.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from runtime_helpers import real_tiny_bundle

JS = Path(__file__).resolve().parents[1] / "js"
TESTS = ["test/node.test.js", "test/browser.test.js"]


def _expected():
    spec = importlib.util.spec_from_file_location("js_expected", JS / "test" / "expected.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_js_runtime_node_and_browser(tmp_path_factory):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node not found: the JS runtime tests (js/) need Node.js 20+")
    assert (JS / "node_modules").is_dir(), "js/node_modules is missing: run `npm ci` in js/"
    out = tmp_path_factory.mktemp("js-fixtures")
    real = real_tiny_bundle(tmp_path_factory.mktemp("js-real"))
    _expected().fixtures(out / "fx", real)
    env = {**os.environ, "EDGEREC_JS_FIXTURES": str(out / "fx"), "EDGEREC_PYTHON": sys.executable}
    proc = subprocess.run(
        [node, "--test", "--test-concurrency=1", "--test-reporter=spec", *TESTS],
        cwd=JS,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    report = proc.stdout + proc.stderr
    print(report[-4000:])
    assert proc.returncode == 0, report[-8000:]
