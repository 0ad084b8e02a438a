"""The HTTP service: a Starlette app over one ``Recommender`` at a time.

- ``POST /recommend`` requests are micro-batched (``MicroBatcher``): requests with the
  same options (k, exclude_seen, strict, candidates, exclude, and whether behaviours and
  timestamps are given) that arrive within the window are answered by one
  ``recommend_batch`` call, whose answers are those of single ``recommend`` calls. A
  batch that the runtime refuses (one bad request in it) is answered request by
  request, so each request gets its own answer or error.
- ``POST /admin/reload`` (and SIGHUP) verifies and loads a bundle next to the served
  one, replays the items added and removed through the API onto it, and swaps one
  reference: a call already running finishes on the bundle it started with, every
  later call uses the new one, and a bundle that fails to load leaves the old one
  serving.
- Errors are one-line JSON objects ``{"error": ..., "field": ...}``; a traceback goes
  to the log only.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import hashlib
import json
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from edgerec import __version__
from edgerec.errors import BundleError, EdgerecError, UnknownItemError
from edgerec.runtime import Recommender
from edgerec.serve import schema as S
from edgerec.serve.batcher import MicroBatcher
from edgerec.serve.metrics import Metrics
from edgerec.serve.openapi import DOCS_HTML, openapi_spec

log = logging.getLogger("edgerec.serve")
JSON = "application/json"
BUNDLE_HEADER = "x-edgerec-bundle"


@dataclass
class ServeConfig:
    bundle: str
    threads: int | None = None  # onnxruntime intra-op threads per session
    workers: int = 1  # threads running recommend calls at once
    batch_window_ms: float = 2.0
    max_batch: int = 64  # requests per micro-batch (1: one request per call)
    providers: str = "auto"
    precision: str | None = None
    limits: S.Limits = field(default_factory=S.Limits)


@dataclass(frozen=True)
class Served:
    """What is being served; replaced as a whole on reload."""

    rec: Recommender
    path: str
    version: str
    created_at: str
    loaded_at: float

    def info(self) -> dict:
        return {
            "version": self.version,
            "path": self.path,
            "created_at": self.created_at,
            "precision": self.rec.precision,
            "device": self.rec.device,
            "n_items": self.rec.n_items,
            "has_text_encoder": has_text_encoder(self.rec),
            "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.loaded_at)),
        }


def has_text_encoder(rec: Recommender) -> bool:
    """Whether the bundle can add items from their text (cold start)."""
    return "text_encoder" in rec.manifest.graphs


def bundle_version(rec: Recommender) -> str:
    """12 hex digits identifying the bundle's content (its files' checksums)."""
    h = hashlib.sha256()
    for name, entry in sorted(rec.manifest.files.items()):
        h.update(f"{name}\0{getattr(entry, 'sha256', entry)}\n".encode())
    return h.hexdigest()[:12]


def _release_memory() -> None:
    """After a reload: collect the old recommender (calls that held it have finished by
    now) and hand freed heap pages back to the OS (glibc keeps them otherwise, and RSS
    would climb by a bundle's size with every reload)."""
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _dumps(value) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


class Service:
    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.limits = config.limits
        self.metrics = Metrics()
        self.pool = ThreadPoolExecutor(config.workers, thread_name_prefix="edgerec-infer")
        self.admin = ThreadPoolExecutor(1, thread_name_prefix="edgerec-admin")
        self.batcher = MicroBatcher(
            self._run,
            self.pool,
            config.workers,
            config.batch_window_ms / 1000,
            config.max_batch,
            self._observe_batch,
        )
        self.served = self._load(config.bundle)
        self._journal: list[tuple] = []  # ("add", ids, texts, titles) / ("remove", ids)
        self._reload_lock = asyncio.Lock()
        self._catalog_lock = asyncio.Lock()
        self.started = time.time()
        self._publish_bundle()

    # --- loading ------------------------------------------------------------------------

    def _load(self, path: str) -> Served:
        c = self.config
        rec = Recommender.load(
            path, providers=c.providers, threads=c.threads, precision=c.precision
        )
        created = str(rec.manifest.raw.get("created_at", ""))
        return Served(rec, str(Path(path).resolve()), bundle_version(rec), created, time.time())

    def _publish_bundle(self) -> None:
        s = self.served
        self.metrics.bundle.clear()
        self.metrics.bundle.set(s.version, s.created_at, s.rec.precision, s.path, value=1)
        self.metrics.items.set(value=s.rec.n_items)

    def _replay(self, rec: Recommender) -> dict:
        """Apply the journal of API catalog changes to a freshly loaded recommender."""
        done = skipped = 0
        for entry in self._journal:
            try:
                if entry[0] == "add":
                    rec.add_items(entry[1], entry[2], entry[3])
                else:
                    try:
                        rec.remove_items(entry[1])
                    except UnknownItemError as e:  # ids this bundle does not have
                        unknown = set(map(repr, e.unknown))
                        rec.remove_items([x for x in entry[1] if repr(x) not in unknown])
                done += 1
            except (ValueError, EdgerecError) as e:
                skipped += 1
                log.warning("reload: catalog change %s skipped on the new bundle: %s", entry[0], e)
        return {"replayed": done, "skipped": skipped}

    async def reload(self, path: str | None = None, keep_items: bool = True) -> dict:
        """Load ``path`` (default: the served bundle's path, read again) and swap it in;
        on failure the old bundle keeps serving and the error is returned and logged."""
        loop = asyncio.get_running_loop()
        async with self._reload_lock:
            target = path or self.served.path
            t0 = time.perf_counter()
            try:
                new = await loop.run_in_executor(self.admin, self._load, target)
            except Exception as e:  # whatever fails to load: the old bundle keeps serving
                self.metrics.reloads.inc("error")
                msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                expected = isinstance(e, BundleError | EdgerecError | ValueError | OSError)
                log.error(
                    "reload of %s failed, still serving %s: %s",
                    target,
                    self.served.path,
                    msg,
                    exc_info=None if expected else e,
                )
                return {"ok": False, "error": msg, "serving": self.served.info()}
            async with self._catalog_lock:
                replay = (
                    await loop.run_in_executor(self.admin, self._replay, new.rec)
                    if keep_items and self._journal
                    else {"replayed": 0, "skipped": 0}
                )
                if not keep_items:
                    self._journal.clear()
                old, self.served = self.served, new
            self._publish_bundle()
            self.metrics.reloads.inc("ok")
            loop.call_later(1.0, loop.run_in_executor, self.admin, _release_memory)
            seconds = time.perf_counter() - t0
            log.info(
                "reloaded %s (version %s, was %s) in %.2f s",
                new.path,
                new.version,
                old.version,
                seconds,
            )
            return {
                "ok": True,
                "serving": new.info(),
                "previous": old.version,
                "seconds": round(seconds, 3),
                "catalog_changes": replay,
            }

    # --- recommending -------------------------------------------------------------------

    def _observe_batch(self, payloads: list) -> None:
        for p in payloads:
            if isinstance(p, S.Many):
                self.metrics.batch_size.observe(len(p.histories))
                return
        self.metrics.batch_size.observe(len(payloads))

    def _run(self, key, payloads: list) -> list:
        """Worker thread: answers (bundle version, JSON bytes) or exceptions, in order."""
        served = self.served
        rec = served.rec
        if isinstance(payloads[0], S.Many):
            return [self._run_many(served, payloads[0])]
        if len(payloads) == 1:
            return [self._run_one(served, payloads[0])]
        o: S.Options = payloads[0].options
        try:
            lists = rec.recommend_batch(
                [p.history for p in payloads],
                behaviours=None if key[1] is False else [p.behaviours for p in payloads],
                timestamps=None if key[2] is False else [p.timestamps for p in payloads],
                now=[p.now for p in payloads],
                **o.kwargs(),
            )
        except Exception:  # one request spoiled the batch: answer each on its own
            return [self._run_one(served, p) for p in payloads]
        return [(served.version, _dumps(r.to_dict())) for r in lists]

    @staticmethod
    def _run_one(served: Served, p: S.One):
        o = p.options
        try:
            r = served.rec.recommend(
                p.history, behaviours=p.behaviours, timestamps=p.timestamps, now=p.now, **o.kwargs()
            )
        except Exception as e:
            return e
        return served.version, _dumps(r.to_dict())

    @staticmethod
    def _run_many(served: Served, p: S.Many):
        o = p.options
        try:
            lists = served.rec.recommend_batch(
                p.histories,
                behaviours=p.behaviours,
                timestamps=p.timestamps,
                now=p.now,
                **o.kwargs(),
            )
        except Exception as e:
            return e
        return served.version, _dumps({"results": [r.to_dict() for r in lists]})

    # --- catalog ------------------------------------------------------------------------

    async def add_items(self, ids: list, texts: list, titles: list | None) -> dict:
        loop = asyncio.get_running_loop()
        async with self._catalog_lock:
            rec = self.served.rec
            n = await loop.run_in_executor(self.admin, rec.add_items, ids, texts, titles)
            self._journal.append(("add", ids, texts, titles))
        self.metrics.items.set(value=rec.n_items)
        return {"added": n, "n_items": rec.n_items}

    async def remove_items(self, ids: list) -> dict:
        loop = asyncio.get_running_loop()
        async with self._catalog_lock:
            rec = self.served.rec
            n = await loop.run_in_executor(self.admin, rec.remove_items, ids)
            self._journal.append(("remove", ids))
        self.metrics.items.set(value=rec.n_items)
        return {"removed": n, "n_items": rec.n_items}

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.admin.shutdown(wait=False, cancel_futures=True)


# --- HTTP ---------------------------------------------------------------------------------


def _error_response(e: Exception, fields: tuple[str, ...]) -> tuple[int, dict, str]:
    """(status, body, kind) of an exception raised while answering a request."""
    if isinstance(e, S.RequestError):
        return e.status, e.body(), e.kind
    if isinstance(e, UnknownItemError):
        field_ = next((f for f in ("history", "histories", "item_ids") if f in fields), None)
        return 422, {"error": str(e), "field": field_, "unknown_items": e.unknown}, "unknown_items"
    if isinstance(e, BundleError):  # e.g. adding items to a bundle without a text encoder
        return 409, {"error": str(e).splitlines()[0], "field": None}, "conflict"
    if isinstance(e, ValueError):
        msg = str(e).splitlines()[0] if str(e) else "invalid request"
        return 422, {"error": msg, "field": S.field_of(msg, fields)}, "invalid"
    return 500, {"error": "internal error (details in the server log)", "field": None}, "internal"


def create_app(config: ServeConfig, service: Service | None = None) -> Starlette:
    """The ASGI app; loads the bundle now (raises ``BundleError`` if it is bad)."""
    svc = service or Service(config)
    m = svc.metrics
    limits = svc.limits

    def endpoint(name: str, fields: tuple[str, ...] = ()):
        def wrap(handler):
            async def run(request: Request) -> Response:
                t0 = time.perf_counter()
                m.in_flight.inc(by=1)
                try:
                    response = await handler(request)
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    status, body, kind = _error_response(e, fields)
                    if status == 500:
                        log.exception("%s %s failed", request.method, request.url.path)
                    m.errors.inc(kind)
                    response = Response(_dumps(body), status, media_type=JSON)
                finally:
                    m.in_flight.inc(by=-1)
                m.requests.inc(name, response.status_code)
                m.latency.observe(time.perf_counter() - t0, name)
                return response

            return run

        return wrap

    async def body_of(request: Request, empty_ok: bool = False):
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limits.max_body_bytes:
            raise S.RequestError(
                f"the body is {length} bytes, more than this server's limit of "
                f"{limits.max_body_bytes}",
                "body",
                413,
                "too_large",
            )
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_body_bytes:
                raise S.RequestError(
                    f"the body is more than this server's limit of {limits.max_body_bytes} bytes",
                    "body",
                    413,
                    "too_large",
                )
            chunks.append(chunk)
        raw = b"".join(chunks)
        if empty_ok and not raw.strip():
            return None
        return S.parse_json(raw)

    def answer(result) -> Response:
        version, payload = result
        return Response(payload, media_type=JSON, headers={BUNDLE_HEADER: version})

    @endpoint("recommend", S.ONE_FIELDS)
    async def recommend(request: Request) -> Response:
        one = S.parse_one(await body_of(request), limits)
        return answer(await svc.batcher.submit(one.group, one))

    @endpoint("recommend_batch", S.BATCH_FIELDS)
    async def recommend_batch(request: Request) -> Response:
        many = S.parse_batch(await body_of(request), limits)
        return answer(await svc.batcher.submit(("many", id(many)), many, alone=True))

    @endpoint("items_add", ("item_ids", "texts", "titles"))
    async def items_add(request: Request) -> Response:
        ids, texts, titles = S.parse_add(await body_of(request), limits)
        if not has_text_encoder(svc.served.rec):
            raise S.RequestError(
                "this bundle has no text encoder, so items cannot be added", None, 409, "conflict"
            )
        return JSONResponse(await svc.add_items(ids, texts, titles))

    @endpoint("items_remove", ("item_ids",))
    async def items_remove(request: Request) -> Response:
        ids = S.parse_remove(await body_of(request), limits)
        return JSONResponse(await svc.remove_items(ids))

    @endpoint("reload", ("path", "keep_items"))
    async def reload(request: Request) -> Response:
        path, keep = S.parse_reload(await body_of(request, empty_ok=True))
        result = await svc.reload(path, keep)
        if not result["ok"]:
            m.errors.inc("reload_failed")
        return Response(_dumps(result), 200 if result["ok"] else 422, media_type=JSON)

    @endpoint("healthz")
    async def healthz(request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "edgerec_version": __version__,
                "bundle": svc.served.info(),
                "uptime_s": round(time.time() - svc.started, 1),
                "batching": {
                    "window_ms": svc.config.batch_window_ms,
                    "max_batch": svc.config.max_batch,
                    "workers": svc.config.workers,
                },
            }
        )

    @endpoint("metrics")
    async def metrics(request: Request) -> Response:
        return Response(m.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    spec = _dumps(openapi_spec(__version__, limits))

    @endpoint("openapi")
    async def openapi(request: Request) -> Response:
        return Response(spec, media_type=JSON)

    @endpoint("docs")
    async def docs(request: Request) -> Response:
        return HTMLResponse(DOCS_HTML)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http")
        m.errors.inc(kind)
        m.requests.inc("other", exc.status_code)
        body = {"error": f"{request.method} {request.url.path}: {exc.detail}", "field": None}
        return Response(_dumps(body), exc.status_code, media_type=JSON, headers=exc.headers)

    async def server_error(request: Request, exc: Exception) -> Response:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        m.errors.inc("internal")
        body = {"error": "internal error (details in the server log)", "field": None}
        return Response(_dumps(body), 500, media_type=JSON)

    @asynccontextmanager
    async def lifespan(app):
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task] = set()  # reloads started by SIGHUP, kept until done

        def on_sighup() -> None:
            log.info("SIGHUP: reloading %s", svc.served.path)
            task = loop.create_task(svc.reload())
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        try:  # only in the main thread (the CLI); tests may run the app elsewhere
            loop.add_signal_handler(signal.SIGHUP, on_sighup)
        except (ValueError, RuntimeError, NotImplementedError, AttributeError):
            pass
        try:
            yield
        finally:
            try:
                loop.remove_signal_handler(signal.SIGHUP)
            except (ValueError, RuntimeError, NotImplementedError, AttributeError):
                pass
            svc.close()

    routes = [
        Route("/recommend", recommend, methods=["POST"]),
        Route("/recommend/batch", recommend_batch, methods=["POST"]),
        Route("/items", items_add, methods=["POST"]),
        Route("/items", items_remove, methods=["DELETE"]),
        Route("/admin/reload", reload, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, Exception: server_error},
        lifespan=lifespan,
    )
    app.state.service = svc
    return app
