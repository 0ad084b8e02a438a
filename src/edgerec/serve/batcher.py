"""Dynamic micro-batching on an asyncio loop.

Requests are grouped by a key (requests of one group may share one call). A group is
dispatched to a worker thread when it is full (``max_batch``), or when its oldest
request has waited ``window`` seconds and a worker is free. While every worker is busy,
requests keep joining their groups, so the batch size follows the load: one request
alone waits at most ``window``, and under load each call takes what arrived during the
previous one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from concurrent.futures import Executor
from typing import Any


class _Group:
    __slots__ = ("t0", "items")

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.items: list[tuple[Any, asyncio.Future]] = []


class MicroBatcher:
    def __init__(
        self,
        run: Callable[[Hashable, list], list],
        executor: Executor,
        workers: int,
        window_s: float = 0.002,
        max_batch: int = 64,
        on_batch: Callable[[list], None] | None = None,
    ) -> None:
        """``run(key, payloads)`` runs in ``executor`` and returns one result per payload
        (a result may be an exception object, which ``submit`` raises); ``on_batch`` sees
        the payloads of each call as it is dispatched (on the loop's thread)."""
        if workers < 1 or max_batch < 1 or window_s < 0:
            raise ValueError("workers and max_batch must be >= 1 and window_s >= 0")
        self.run = run
        self.executor = executor
        self.workers = workers
        self.window = window_s
        self.max_batch = max_batch
        self.on_batch = on_batch
        self._pending: dict[Hashable, _Group] = {}
        self._busy = 0
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def busy(self) -> int:
        return self._busy

    async def submit(self, key: Hashable, payload: Any, alone: bool = False) -> Any:
        """The result of ``payload``, run with the other payloads of ``key`` that are
        pending when its group is dispatched; ``alone``: a call of its own, due at once
        (``key`` must then be unique)."""
        loop = self._loop = asyncio.get_running_loop()
        fut = loop.create_future()
        group = self._pending.get(key)
        if group is None:
            group = self._pending[key] = _Group(-float("inf") if alone else loop.time())
        group.items.append((payload, fut))
        if alone or len(group.items) >= self.max_batch or self.window == 0:
            self._dispatch()
        elif self._timer is None and self._busy < self.workers:
            self._arm()
        result = await fut
        if isinstance(result, BaseException):
            raise result
        return result

    def _dispatch(self) -> None:
        loop = self._loop
        now = loop.time()
        while self._busy < self.workers and self._pending:
            key = next(
                (
                    k
                    for k, g in self._pending.items()
                    if len(g.items) >= self.max_batch or now - g.t0 >= self.window
                ),
                None,
            )
            if key is None:
                break
            group = self._pending.pop(key)
            items = group.items[: self.max_batch]
            if len(group.items) > self.max_batch:  # the rest goes next, still due
                group.items = group.items[self.max_batch :]
                self._pending[key] = group
            self._busy += 1
            if self.on_batch is not None:
                self.on_batch([p for p, _ in items])
            done = loop.run_in_executor(self.executor, self.run, key, [p for p, _ in items])
            done.add_done_callback(lambda f, items=items: self._done(items, f))
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending and self._busy < self.workers:
            t0 = max(min(g.t0 for g in self._pending.values()), self._loop.time() - 1)
            self._timer = self._loop.call_at(t0 + self.window, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _done(self, items: list, f: asyncio.Future) -> None:
        self._busy -= 1
        error = f.exception() if not f.cancelled() else asyncio.CancelledError()
        results = [error] * len(items) if error is not None else f.result()
        for (_, fut), result in zip(items, results, strict=True):
            if not fut.done():
                fut.set_result(result)
        self._dispatch()
