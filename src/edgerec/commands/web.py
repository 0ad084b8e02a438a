"""``edgerec web BUNDLE``: the in-browser demo (js/web/index.html) over a bundle.

It only serves files: the page, the JS runtime (js/src), onnxruntime-web's wasm build and
tokenizers.js from js/node_modules (``npm ci`` in js/), and the bundle under /bundle/.
Everything runs in the browser (onnxruntime-web, wasm, 1 thread): search the catalog,
click the items you liked, and the recommendations and the long/short-term gate update
on every click. The URL layout is js/scripts/serve.js's.
"""

from __future__ import annotations

import functools
import http.server
import mimetypes
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

import typer

_JS = Path(__file__).resolve().parents[3] / "js"
_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".wasm": "application/wasm",
    ".json": "application/json",
    ".css": "text/css",
    ".html": "text/html; charset=utf-8",
}


def mounts(bundle: Path, js: Path = _JS) -> dict[str, Path]:
    """URL prefix -> folder."""
    return {
        "bundle": bundle,
        "src": js / "src",
        "web": js / "web",
        "vendor/ort": js / "node_modules" / "onnxruntime-web" / "dist",
        "vendor/tokenizers": js / "node_modules" / "@huggingface" / "tokenizers" / "dist",
    }


class _Handler(http.server.BaseHTTPRequestHandler):
    def __init__(self, *args, mounts: dict[str, Path], **kwargs):
        self.mounts = mounts
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        rel = unquote(urlsplit(self.path).path).lstrip("/") or "web/index.html"
        for prefix in sorted(self.mounts, key=len, reverse=True):
            if rel.startswith(prefix + "/"):
                root = self.mounts[prefix].resolve()
                file = (root / rel[len(prefix) + 1 :]).resolve()
                if file.is_relative_to(root) and file.is_file():
                    return self._send(file)
                break
        self.send_error(404)

    def _send(self, file: Path) -> None:
        body = file.read_bytes()
        kind = _TYPES.get(file.suffix) or mimetypes.guess_type(file.name)[0]
        self.send_response(200)
        self.send_header("Content-Type", kind or "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # quiet
        pass


def make_server(bundle: Path, host: str = "127.0.0.1", port: int = 8000, js: Path = _JS):
    """A ThreadingHTTPServer for the demo (``server.server_address`` has the port)."""
    missing = [
        p
        for p in ("onnxruntime-web", "@huggingface/tokenizers")
        if not (js / "node_modules" / p).is_dir()
    ]
    if not (js / "web" / "index.html").is_file():
        raise FileNotFoundError(
            f"{js}: the demo page is missing (edgerec web runs from a checkout)"
        )
    if missing:
        raise FileNotFoundError(
            f"{js}/node_modules lacks {', '.join(missing)}: run `npm ci` in {js}"
        )
    if not (bundle / "manifest.json").is_file():
        raise FileNotFoundError(f"{bundle}: not a bundle directory (no manifest.json)")
    handler = functools.partial(_Handler, mounts=mounts(bundle.resolve(), js))
    return http.server.ThreadingHTTPServer((host, port), handler)


def web(
    bundle: Path = typer.Argument(..., help="Bundle directory (from `edgerec export`)."),
    port: int = typer.Option(8000, help="Port (0: any free one)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
) -> None:
    """Serve the in-browser demo: the JS runtime runs the bundle in the page."""
    try:
        server = make_server(bundle, host, port)
    except (FileNotFoundError, OSError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    url = f"http://{server.server_address[0]}:{server.server_address[1]}/"
    typer.echo(f"edgerec demo on {url} (bundle {bundle.resolve()}); Ctrl-C stops it", err=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        thread.join()
    except KeyboardInterrupt:
        server.shutdown()


def register(app: typer.Typer) -> None:
    app.command("web")(web)
