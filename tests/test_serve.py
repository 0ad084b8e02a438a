"""``edgerec serve``: every endpoint, the errors, micro-batching and reload under traffic.

The server runs as a real ``edgerec serve`` process on a free loopback port, over small
hand-made bundles (tests/runtime_helpers.py), so each test takes a second or two.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from runtime_helpers import make_bundle  # noqa: E402

from edgerec.runtime import Recommender  # noqa: E402
from edgerec.serve.batcher import MicroBatcher  # noqa: E402

BUNDLE_HEADER = "x-edgerec-bundle"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ids(bundle: Path) -> list:
    return json.loads((bundle / "items.json").read_text())["ids"]


class Server:
    def __init__(self, bundle: Path, log: Path, *args: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        cmd = [sys.executable, "-m", "edgerec", "serve", str(bundle), "--port", str(self.port)]
        self.proc = subprocess.Popen([*cmd, *args], stdout=log.open("wb"), stderr=subprocess.STDOUT)
        self.client = httpx.Client(base_url=self.url, timeout=30)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"edgerec serve exited:\n{log.read_text()}")
            try:
                if self.client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"edgerec serve did not start:\n{log.read_text()}")
            time.sleep(0.1)

    def post(self, path: str, body=None, **kw) -> httpx.Response:
        if body is not None and not isinstance(body, bytes | str):
            body = json.dumps(body)
        return self.client.post(path, content=body, **kw)

    def metric(self, line_start: str) -> float:
        text = self.client.get("/metrics").text
        values = [float(x.rsplit(" ", 1)[1]) for x in text.splitlines() if x.startswith(line_start)]
        return sum(values)

    def close(self) -> None:
        self.client.close()
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    a = make_bundle(root / "a", n_items=40, max_len=10, seed=0)
    b = make_bundle(root / "b", n_items=40, max_len=10, seed=1)
    plain = make_bundle(root / "plain", n_items=40, max_len=10, seed=0, text=False)
    broken = root / "broken"
    shutil.copytree(a, broken)
    (broken / "items.npy").write_bytes((broken / "items.npy").read_bytes()[:-8] + b"\0" * 8)
    return {"a": a, "b": b, "plain": plain, "broken": broken, "root": root}


@pytest.fixture(scope="module")
def server(bundles):
    srv = Server(
        bundles["a"],
        bundles["root"] / "server.log",
        "--batch-window-ms",
        "5",
        "--max-history",
        "50",
        "--max-body-kb",
        "16",
        "--threads",
        "1",
    )
    yield srv
    srv.close()


def _same(got: dict, want: dict) -> bool:
    """The same answer: every field equal, scores within float32 rounding (a batched
    dot product may differ from a single one in the last bit)."""
    if {k: v for k, v in got.items() if k != "items"} != {
        k: v for k, v in want.items() if k != "items"
    }:
        return False
    if [(r["item_id"], r["title"]) for r in got["items"]] != [
        (r["item_id"], r["title"]) for r in want["items"]
    ]:
        return False
    return all(
        math.isclose(g["score"], w["score"], rel_tol=1e-5, abs_tol=1e-5)
        for g, w in zip(got["items"], want["items"], strict=True)
    )


def _histories(ids: list, n: int, seed: int = 0) -> list[dict]:
    import random

    rng = random.Random(seed)
    out = []
    for i in range(n):
        h = [rng.choice(ids) for _ in range(rng.randint(1, 14))]
        if i % 4 == 1:
            h.append(999_999)  # unknown ids are reported, not errors
        body = {"history": h, "k": 5}
        if i % 3 == 0:
            t0 = rng.randint(10**8, 10**9)
            body["timestamps"] = [t0 + 60 * j for j in range(len(h))]
            body["now"] = body["timestamps"][-1] + rng.randint(0, 10**5)
        if i % 5 == 2:
            body["behaviours"] = [rng.choice(["1", "3", "5", 4]) for _ in body["history"]]
        out.append(body)
    return out


def _in_process(rec: Recommender, body: dict) -> dict:
    args = {k: v for k, v in body.items() if k != "history"}
    return rec.recommend(body["history"], **args).to_dict()


# --- endpoints --------------------------------------------------------------------------


def test_healthz_metrics_openapi_docs(server, bundles):
    h = server.client.get("/healthz").json()
    assert h["status"] == "ok"
    assert h["bundle"]["path"] == str(bundles["a"].resolve())
    assert h["bundle"]["n_items"] == 40 and h["bundle"]["has_text_encoder"] is True
    assert len(h["bundle"]["version"]) == 12
    server.post("/recommend", {"history": _ids(bundles["a"])[:3]}).raise_for_status()
    metrics = server.client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    for name in (
        'edgerec_requests_total{endpoint="recommend",status="200"}',
        "edgerec_request_latency_seconds_bucket",
        "edgerec_batch_size_bucket",
        f'edgerec_bundle_info{{version="{h["bundle"]["version"]}"',
        "process_resident_memory_bytes",
    ):
        assert name in metrics.text, name
    spec = server.client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert {"/recommend", "/recommend/batch", "/items", "/admin/reload"} <= set(spec["paths"])
    docs = server.client.get("/docs")
    assert docs.status_code == 200 and "openapi.json" in docs.text


def test_recommend_answers_like_the_runtime(server, bundles):
    rec = Recommender.load(bundles["a"])
    ids = _ids(bundles["a"])
    bodies = _histories(ids, 60)
    bodies[7]["exclude"] = ids[:5]
    bodies[8]["candidates"] = ids[10:30]
    bodies[9]["exclude_seen"] = False
    bodies[10]["history"] = []  # popularity fallback
    batches_before = server.metric("edgerec_batch_size_count")
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda b: server.post("/recommend", b), bodies))
    calls = server.metric("edgerec_batch_size_count") - batches_before
    for body, r in zip(bodies, answers, strict=True):
        assert r.status_code == 200, r.text
        got, want = r.json(), _in_process(rec, body)
        assert _same(got, want), (body, got, want)
    assert answers[1].json()["unknown_items"] == [999_999]
    assert answers[10].json()["fallback"] == "popularity"
    assert calls < len(bodies), "concurrent requests were never batched"


def test_recommend_batch_endpoint(server, bundles):
    rec = Recommender.load(bundles["a"])
    ids = _ids(bundles["a"])
    hs = [ids[:3], ids[5:12], [999_999], ids[20:21]]
    r = server.post("/recommend/batch", {"histories": hs, "k": 4, "exclude": ids[:2]})
    assert r.status_code == 200, r.text
    assert r.headers[BUNDLE_HEADER]
    want = rec.recommend_batch(hs, k=4, exclude=ids[:2])
    got = r.json()["results"]
    assert len(got) == 4
    assert all(_same(g, w.to_dict()) for g, w in zip(got, want, strict=True))
    bad = server.post("/recommend/batch", {"histories": [ids[:3], [1.5]]})
    assert bad.status_code == 422 and bad.json()["field"] == "histories[1][0]"


BAD = [
    (b"{not json", 400, "body"),
    (b'{"history": [NaN]}', 400, "body"),
    (b"[1, 2]", 422, "body"),
    ({}, 422, "history"),
    ({"history": [1], "histroy": [2]}, 422, "histroy"),
    ({"history": "101,102"}, 422, "history"),
    ({"history": [101, 1.5]}, 422, "history[1]"),
    ({"history": [101, None]}, 422, "history[1]"),
    ({"history": [101], "k": 0}, 422, "k"),
    ({"history": [101], "k": 100_000}, 422, "k"),
    ({"history": [101], "k": True}, 422, "k"),
    ({"history": [101], "k": "5"}, 422, "k"),
    ({"history": [101], "exclude_seen": "no"}, 422, "exclude_seen"),
    ({"history": [101, 102], "behaviours": ["5"]}, 422, "behaviours"),
    ({"history": [101], "behaviours": [[5]]}, 422, "behaviours[0]"),
    ({"history": [101], "timestamps": ["monday"]}, 422, "timestamps[0]"),
    ({"history": [101], "timestamps": [1e30]}, 422, "timestamps[0]"),
    ({"history": [101], "now": "soon"}, 422, "now"),
    ({"history": [101], "candidates": [101, {}]}, 422, "candidates[1]"),
    ({"history": [101], "exclude": 101}, 422, "exclude"),
    ({"history": [101] * 51}, 422, "history"),  # --max-history 50
    ({"history": [101, 5_000_000], "strict": True}, 422, "history"),
    (b'{"history": [' + b"101," * 5000 + b"101]}", 413, "body"),  # --max-body-kb 16
]


@pytest.mark.parametrize(("body", "status", "field"), BAD)
def test_bad_requests_name_the_field(server, body, status, field):
    r = server.post("/recommend", body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert "\n" not in r.text and "Traceback" not in r.text
    got = r.json()
    assert got["field"] == field and got["error"]


def test_unknown_ids_in_strict_mode_are_listed(server):
    r = server.post("/recommend", {"history": [101, 5_000_000, "x"], "strict": True})
    assert r.status_code == 422 and r.json()["unknown_items"] == [5_000_000, "x"]


def test_routing_errors_are_json(server):
    for r, status in (
        (server.client.get("/nowhere"), 404),
        (server.client.get("/recommend"), 405),
        (server.client.put("/items", content=b"{}"), 405),
    ):
        assert r.status_code == status and r.json()["error"]
    assert server.metric('edgerec_errors_total{kind="not_found"}') >= 1


def test_add_and_remove_items(server, bundles):
    ids = _ids(bundles["a"])
    add = {
        "item_ids": [9001, 9002],
        "texts": ["space war story", "love music"],
        "titles": ["A", None],
    }
    r = server.post("/items", add)
    assert r.status_code == 200 and r.json() == {"added": 2, "n_items": 42}
    got = server.post("/recommend", {"history": ids[:3], "candidates": [9001, 9002], "k": 2})
    assert sorted(x["item_id"] for x in got.json()["items"]) == [9001, 9002]
    again = server.post("/items", add)
    assert again.status_code == 422 and again.json()["field"] == "item_ids"
    bad = server.post("/items", {"item_ids": [9003], "texts": [7]})
    assert bad.status_code == 422 and bad.json()["field"] == "texts[0]"
    r = server.client.request("DELETE", "/items", content=json.dumps({"item_ids": [9001, 9002]}))
    assert r.status_code == 200 and r.json() == {"removed": 2, "n_items": 40}
    r = server.client.request("DELETE", "/items", content=json.dumps({"item_ids": [424242]}))
    assert r.status_code == 422 and r.json()["unknown_items"] == [424242]


def test_items_need_a_text_encoder(bundles):
    from edgerec.serve import ServeConfig, create_app

    app = create_app(ServeConfig(str(bundles["plain"]), threads=1))

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            body = json.dumps({"item_ids": [1], "texts": ["x"]})
            return await client.post("/items", content=body), await client.get("/healthz")

    r, health = asyncio.run(main())
    app.state.service.close()
    assert r.status_code == 409 and "text encoder" in r.json()["error"]
    assert health.json()["bundle"]["has_text_encoder"] is False


# --- reload ---------------------------------------------------------------------------


def test_reload_under_traffic(server, bundles):
    recs = {}
    for name in ("a", "b"):
        rec = Recommender.load(bundles[name])
        recs[
            server.post("/admin/reload", {"path": str(bundles[name])}).json()["serving"]["version"]
        ] = rec
    bodies = _histories(_ids(bundles["a"]), 40, seed=1)
    stop = threading.Event()
    results: list = []

    def traffic(i: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            j = i
            while not stop.is_set():
                body = bodies[j % len(bodies)]
                r = c.post("/recommend", content=json.dumps(body))
                results.append((body, r.status_code, r.headers.get(BUNDLE_HEADER), r.text))
                j += 7

    threads = [threading.Thread(target=traffic, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        steps = [
            server.post("/admin/reload", {"path": str(bundles["a"])}),
            server.post("/admin/reload", {"path": str(bundles["broken"])}),
            server.post("/admin/reload"),  # the served path, read again
        ]
        time.sleep(0.3)
        server.proc.send_signal(signal.SIGHUP)  # reloads the served path too
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert [s.status_code for s in steps] == [200, 422, 200]
    failed = steps[1].json()
    assert failed["ok"] is False and "items.npy" in failed["error"]
    assert failed["serving"]["path"] == str(bundles["a"].resolve())
    assert "items.npy" in server.log.read_text()  # the error is logged too
    assert len(results) > 50
    assert [r for r in results if r[1] != 200] == []
    assert {r[2] for r in results} <= set(recs)
    wrong = [r for r in results if not _same(json.loads(r[3]), _in_process(recs[r[2]], r[0]))]
    assert wrong == []
    deadline = time.monotonic() + 10
    while server.metric('edgerec_reloads_total{result="ok"}') < 5:  # 2 + 2 + SIGHUP
        assert time.monotonic() < deadline, "SIGHUP did not reload"
        time.sleep(0.1)


def test_reload_keeps_items_added_through_the_api(server, bundles):
    r = server.post("/items", {"item_ids": [7001], "texts": ["night city crime"]})
    assert r.status_code == 200
    try:
        reload = server.post("/admin/reload", {"path": str(bundles["b"])}).json()
        assert reload["ok"] and reload["catalog_changes"]["skipped"] == 0
        got = server.post("/recommend", {"history": [101], "candidates": [7001], "k": 1}).json()
        assert [x["item_id"] for x in got["items"]] == [7001]
    finally:
        server.client.request("DELETE", "/items", content=json.dumps({"item_ids": [7001]}))
        server.post("/admin/reload", {"path": str(bundles["a"])})


# --- the micro-batcher alone ------------------------------------------------------------


def test_micro_batcher_groups_by_key_and_keeps_order():
    calls = []

    def run(key, payloads):
        calls.append((key, list(payloads)))
        time.sleep(0.01)
        return [(key, p) if p != "boom" else ValueError("boom") for p in payloads]

    async def main():
        with ThreadPoolExecutor(1) as pool:
            b = MicroBatcher(run, pool, workers=1, window_s=0.005, max_batch=4)
            jobs = [b.submit("x" if i % 2 else "y", i) for i in range(10)]
            jobs.append(b.submit("x", "boom"))
            return await asyncio.gather(*jobs, return_exceptions=True)

    out = asyncio.run(main())
    assert out[:10] == [("x" if i % 2 else "y", i) for i in range(10)]
    assert isinstance(out[10], ValueError)
    assert all(len(p) <= 4 for _, p in calls)
    assert all(all((p % 2 == 1) == (k == "x") for p in ps if p != "boom") for k, ps in calls)
    assert len(calls) < 11
