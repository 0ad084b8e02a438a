"""One Recommender shared by many threads: the short version of benchmarks/soak.py.

Against the exported bundle, 8 threads x 300 mixed requests (recommend with and without
timestamps/behaviours/candidates/exclusions, recommend_batch, user_vector, explain) give
exactly the answers of serial calls, on every scoring path; catalog updates running
alongside readers are seen all-or-nothing (every answer, and every batch as a whole,
matches the catalog before or after an update); and memory does not grow with requests.
"""

from __future__ import annotations

import random
import resource
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from reliability_helpers import answer, real_bundle

from edgerec.runtime import Recommender

N_ITEMS = 60  # the synthetic world's items: ids 1..60


def _requests(seed: int, n: int) -> list[tuple[str, dict]]:
    """Distinct requests of every kind, with the inputs real apps send."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        length = int(rng.integers(0, 30))
        history = rng.integers(1, N_ITEMS + 8, length).tolist()  # a few unknown ids
        kwargs: dict = {"history": history, "k": int(rng.integers(1, 25))}
        if i % 3 == 0:
            kwargs["timestamps"] = np.cumsum(rng.integers(0, 10**6, length)).tolist()
        if i % 4 == 0:
            kwargs["behaviours"] = [str(x) for x in rng.integers(0, 6, length)]
        if i % 5 == 0:
            kwargs["candidates"] = rng.integers(1, N_ITEMS + 1, 20).tolist()
        if i % 7 == 0:
            kwargs["exclude"] = rng.integers(1, N_ITEMS + 1, 5).tolist()
        kind = ("recommend", "recommend", "recommend", "batch", "user_vector", "explain")[i % 6]
        if kind == "batch":
            kwargs = {
                "histories": [rng.integers(1, N_ITEMS + 1, rng.integers(0, 25)).tolist()]
                * int(rng.integers(1, 6)),
                "k": kwargs["k"],
            }
        elif kind == "user_vector":
            kwargs = {"history": history or [1]}
        elif kind == "explain":
            kwargs = {"history": history, "k": kwargs["k"]}
        out.append((kind, kwargs))
    return out


@pytest.fixture(scope="module")
def bundle():
    return real_bundle()


@pytest.mark.parametrize(
    ("scoring", "threads", "per_thread"),
    [("auto", 8, 300), ("int8", 4, 100), ("topk", 4, 100)],
)
def test_threads_answer_exactly_like_serial_calls(bundle, scoring, threads, per_thread):
    rec = Recommender.load(bundle, providers="cpu", threads=1, scoring=scoring)
    pool = _requests(seed=7, n=120)
    serial = [answer(rec, kind, kw) for kind, kw in pool]
    order = [random.Random(t).choices(range(len(pool)), k=per_thread) for t in range(threads)]

    def worker(indices):
        return [(i, answer(rec, *pool[i])) for i in indices]

    with ThreadPoolExecutor(threads) as ex:
        results = [r for chunk in ex.map(worker, order) for r in chunk]
    assert len(results) == threads * per_thread
    mismatches = [i for i, got in results if got != serial[i]]
    assert mismatches == []


def _catalog_states(bundle, history, batch, ops):
    """Every answer the readers may see: the catalog before and after each update."""
    twin = Recommender.load(bundle, providers="cpu", threads=1, scoring="int8")
    single = [tuple(twin.recommend(history, k=1000).item_ids)]
    batches = [tuple(tuple(r.item_ids) for r in twin.recommend_batch(batch, k=1000))]
    for op, args in ops:
        getattr(twin, op)(*args)
        single.append(tuple(twin.recommend(history, k=1000).item_ids))
        batches.append(tuple(tuple(r.item_ids) for r in twin.recommend_batch(batch, k=1000)))
    return set(single), set(batches), single[-1]


def test_updates_during_reads_are_seen_all_or_nothing(bundle):
    history = [3, 17, 25, 3, 40]
    batch = [[1, 2, 3], [], [50, 51, 52, 53]]
    ops = []
    for start in range(1000, 1060, 10):
        ids = list(range(start, start + 10))
        texts = [f"space war story {i} music night" for i in ids]
        ops.append(("add_items", (ids, texts)))
        ops.append(("remove_items", ([start, (start - 1000) // 10 + 5],)))
    single_ok, batch_ok, final = _catalog_states(bundle, history, batch, ops)

    rec = Recommender.load(bundle, providers="cpu", threads=1, scoring="int8")
    stop = threading.Event()
    seen_single: list = []
    seen_batch: list = []
    errors: list = []

    def reader(kind):
        try:
            while not stop.is_set():
                if kind == "single":
                    seen_single.append(tuple(rec.recommend(history, k=1000).item_ids))
                elif kind == "batch":
                    out = rec.recommend_batch(batch, k=1000)
                    seen_batch.append(tuple(tuple(r.item_ids) for r in out))
                else:  # explain and user_vector read the same snapshots
                    rec.explain(history, k=20)
                    rec.user_vector(history)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    readers = [threading.Thread(target=reader, args=(k,)) for k in ("single", "batch", "other")]
    for t in readers:
        t.start()
    for op, args in ops:
        getattr(rec, op)(*args)
    stop.set()
    for t in readers:
        t.join()
    assert errors == []
    assert seen_single and seen_batch
    assert set(seen_single) <= single_ok
    assert set(seen_batch) <= batch_ok  # a batch never mixes two catalogs
    assert tuple(rec.recommend(history, k=1000).item_ids) == final


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # pragma: no cover


def test_memory_does_not_grow_with_requests(bundle):
    rec = Recommender.load(bundle, providers="cpu", threads=1)
    pool = _requests(seed=11, n=200)

    def run(n_per_thread: int) -> None:
        def worker(t):
            for i in random.Random(t).choices(range(len(pool)), k=n_per_thread):
                answer(rec, *pool[i])

        with ThreadPoolExecutor(8) as ex:
            list(ex.map(worker, range(8)))

    run(100)  # warm up: buffers, sessions' arenas, caches
    before = _rss_kib()
    run(400)  # 3,200 more requests
    growth_mib = (_rss_kib() - before) / 1024
    # measured: about 1 MiB (allocator arenas of new threads); a leak of 2.5 KB per
    # request would show as 8
    assert growth_mib < 8, f"RSS grew by {growth_mib:.1f} MiB over 3,200 requests"
