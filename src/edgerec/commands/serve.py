"""``edgerec serve``: the runtime behind an HTTP JSON API (needs ``edgerec[serve]``)."""

from __future__ import annotations

import logging
from pathlib import Path

import typer


def serve(
    bundle: Path = typer.Argument(..., help="Bundle directory (from `edgerec export`)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    threads: int = typer.Option(
        None, help="onnxruntime intra-op threads per session (default: onnxruntime's)."
    ),
    workers: int = typer.Option(1, help="Threads answering recommend calls at once."),
    batch_window_ms: float = typer.Option(
        2.0, help="How long a request waits for others to share its batch (0: no wait)."
    ),
    max_batch: int = typer.Option(
        64, help="Requests per micro-batch (1: one request per recommend call)."
    ),
    providers: str = typer.Option("auto", help="auto, cpu or cuda."),
    precision: str = typer.Option(None, help="fp32, int8 or fp16 (default: the bundle's)."),
    max_history: int = typer.Option(5000, help="Most events a history may have."),
    max_body_kb: int = typer.Option(4096, help="Largest request body, KiB."),
    max_batch_histories: int = typer.Option(
        1000, help="Most histories one /recommend/batch request may hold."
    ),
    access_log: bool = typer.Option(False, help="Log every request (uvicorn's access log)."),
) -> None:
    """Serve a bundle over HTTP: POST /recommend, /recommend/batch, /items (POST, DELETE),
    /admin/reload; GET /healthz, /metrics, /docs. SIGHUP reloads the bundle."""
    try:
        import uvicorn

        from edgerec.serve import Limits, ServeConfig, create_app
    except ModuleNotFoundError as e:
        raise ValueError(
            f"edgerec serve needs the serve extra ({e.name} is missing): "
            'pip install "edgerec[serve]"'
        ) from None
    for name, value, low in (
        ("--workers", workers, 1),
        ("--max-batch", max_batch, 1),
        ("--max-history", max_history, 1),
        ("--max-body-kb", max_body_kb, 1),
        ("--max-batch-histories", max_batch_histories, 1),
        ("--port", port, 0),
    ):
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    if not 0 <= batch_window_ms <= 1000:
        raise ValueError(f"--batch-window-ms must be in [0, 1000], got {batch_window_ms}")
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    limits = Limits(
        max_body_bytes=max_body_kb * 1024,
        max_history=max_history,
        max_batch=max_batch_histories,
    )
    config = ServeConfig(
        str(bundle),
        threads=threads,
        workers=workers,
        batch_window_ms=batch_window_ms,
        max_batch=max_batch,
        providers=providers,
        precision=precision,
        limits=limits,
    )
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log = logging.getLogger("edgerec.serve")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # not also through the CLI's one-line stderr handler
    app = create_app(config)  # loads and verifies the bundle: a bad one fails here
    s = app.state.service.served
    typer.echo(
        f"serving {s.path} (version {s.version}, {s.rec.n_items} items, {s.rec.precision}, "
        f"{s.rec.device}) on http://{host}:{port}  docs: /docs",
        err=True,
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        access_log=access_log,
        log_level="info",
        timeout_graceful_shutdown=5,
    )


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
