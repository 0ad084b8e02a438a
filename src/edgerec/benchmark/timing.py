"""Timing one operation: warm-up, then repetitions until the median settles.

Each measurement is a series of individual call times (``perf_counter_ns``), so the
tails (p95, p99) are real per-call latencies, not averages of loops. The series stops
when the median of its second half agrees with the first half's within ``rel_tol``
after ``min_reps`` calls and ``min_time_s`` seconds, or at ``max_time_s`` / ``max_reps``
whichever comes first; ``stable`` says which. A slow call (a 1M-item catalog) gets
``min_reps`` calls even past ``max_time_s``, up to ``hard_time_s``. Time bounds rather
than fixed counts keep a sweep's duration predictable from 10 µs calls to 100 ms ones.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class TimingPolicy:
    warmup_reps: int = 3
    warmup_s: float = 0.05
    min_reps: int = 20
    max_reps: int = 20_000
    min_time_s: float = 0.2
    max_time_s: float = 0.8
    rel_tol: float = 0.05
    hard_time_s: float = 3.0

    def __post_init__(self) -> None:
        if self.min_reps < 1 or self.max_reps < self.min_reps:
            raise ValueError(
                f"need 1 <= min_reps <= max_reps, got {self.min_reps}, {self.max_reps}"
            )
        if self.min_time_s < 0 or self.max_time_s < self.min_time_s:
            raise ValueError(
                f"need 0 <= min_time_s <= max_time_s, got {self.min_time_s}, {self.max_time_s}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT_POLICY = TimingPolicy()
QUICK_POLICY = TimingPolicy(
    warmup_reps=1,
    warmup_s=0.0,
    min_reps=3,
    max_reps=200,
    min_time_s=0.0,
    max_time_s=0.05,
    hard_time_s=0.5,
)


def _settled(times: list[int], rel_tol: float) -> bool:
    half = len(times) // 2
    if half == 0:
        return False
    a = float(np.median(times[:half]))
    b = float(np.median(times[half:]))
    return abs(a - b) <= rel_tol * max(b, 1.0)


def summarize(times_ns: list[int] | np.ndarray, units: int = 1) -> dict:
    """Percentiles in ms and throughput (``units`` per call, e.g. users in the batch)."""
    t = np.asarray(times_ns, dtype=np.float64) / 1e6
    if t.size == 0:
        raise ValueError("no timings to summarize")
    p50, p95, p99 = np.percentile(t, [50, 95, 99])
    total_s = float(t.sum()) / 1e3
    return {
        "n": int(t.size),
        "p50_ms": round(float(p50), 5),
        "p95_ms": round(float(p95), 5),
        "p99_ms": round(float(p99), 5),
        "mean_ms": round(float(t.mean()), 5),
        "min_ms": round(float(t.min()), 5),
        "max_ms": round(float(t.max()), 5),
        "total_s": round(total_s, 5),
        "units_per_call": int(units),
        # sustained rate over the whole series (what a loop of calls achieves)
        "per_s": round(units * t.size / total_s, 3) if total_s > 0 else None,
    }


def measure(
    fn: Callable[[], object], policy: TimingPolicy = DEFAULT_POLICY, *, units: int = 1
) -> dict:
    """Time ``fn()`` per call under ``policy``; returns ``summarize`` plus ``stable``."""
    clock = time.perf_counter_ns
    start = clock()
    for i in range(max(policy.warmup_reps, 1) * 1000):
        fn()
        if i + 1 >= policy.warmup_reps and clock() - start >= policy.warmup_s * 1e9:
            break
    times: list[int] = []
    start = clock()
    min_ns, max_ns = policy.min_time_s * 1e9, policy.max_time_s * 1e9
    hard_ns = max(policy.hard_time_s, policy.max_time_s) * 1e9
    stable = False
    next_check = policy.min_reps
    while True:
        t0 = clock()
        fn()
        t1 = clock()
        times.append(t1 - t0)
        n = len(times)
        elapsed = t1 - start
        out_of_time = elapsed >= max_ns and (n >= policy.min_reps or elapsed >= hard_ns)
        if n >= policy.max_reps or out_of_time:
            stable = n >= policy.min_reps and _settled(times, policy.rel_tol)
            break
        if n >= next_check and elapsed >= min_ns:
            if _settled(times, policy.rel_tol):
                stable = True
                break
            next_check = n + max(policy.min_reps // 2, n // 4)
    out = summarize(times, units)
    out["stable"] = bool(stable)
    return out


def blas_control_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("threadpoolctl") is not None


@contextlib.contextmanager
def blas_threads(n: int | None) -> Iterator[bool]:
    """Limit numpy's BLAS to ``n`` threads while timing (yields whether it could).

    The runtime scores with BLAS, so a 1-thread cell must pin BLAS too; ``threadpoolctl``
    does that portably when installed. Without it BLAS keeps its own default and the
    result file says so.
    """
    if n is None or not blas_control_available():
        yield False
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=int(n), user_api="blas"):
        yield True
