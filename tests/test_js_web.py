"""``edgerec web``: the demo page, the JS runtime and the bundle over HTTP (the page
itself is tested in headless Chromium by js/test/browser.test.js)."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from runtime_helpers import make_bundle

from edgerec.commands.web import make_server

JS = Path(__file__).resolve().parents[1] / "js"


def test_web_serves_the_demo_runtime_and_bundle(tmp_path):
    if not (JS / "node_modules" / "onnxruntime-web").is_dir():
        pytest.skip("js/node_modules is missing: run `npm ci` in js/")
    bundle = make_bundle(tmp_path / "b", text=False)
    (tmp_path / "secret.txt").write_text("outside the bundle")
    server = make_server(bundle, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"

    def get(path: str):
        with urllib.request.urlopen(base + path, timeout=10) as r:
            return r.headers["Content-Type"], r.read()

    try:
        kind, page = get("")
        assert kind.startswith("text/html") and b"/web/demo.js" in page
        assert get("bundle/manifest.json")[1] == (bundle / "manifest.json").read_bytes()
        assert get("src/browser.js")[0] == "text/javascript"
        assert get("vendor/ort/ort-wasm-simd-threaded.wasm")[0] == "application/wasm"
        for bad in ("bundle/../pyproject.toml", "bundle/%2e%2e/secret.txt", "nothing"):
            with pytest.raises(urllib.error.HTTPError) as e:
                get(bad)
            assert e.value.code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_web_refuses_a_folder_that_is_not_a_bundle(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a bundle directory"):
        make_server(tmp_path, port=0)
