"""Execution-provider choice and session creation.

The GPU build of onnxruntime lists ``CUDAExecutionProvider`` as available on machines with
no GPU (or without the CUDA libraries) and then quietly runs the session on the CPU. So a
provider only counts once a real session reports it in ``get_providers()``: ``"auto"``
takes CUDA only then, and an explicit ``"cuda"`` that ends up on the CPU is an error
rather than a silent slowdown.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import onnxruntime as ort

from edgerec.errors import BundleError, EdgerecError

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
_ALIASES = {"cpu": CPU, "cuda": CUDA}


class ProviderError(EdgerecError, RuntimeError):
    """An execution provider that was asked for but cannot be used on this machine."""


@dataclass(frozen=True)
class ProviderPlan:
    requested: tuple[str, ...]  # passed to onnxruntime, in order
    require_cuda: bool  # "cuda" asked for explicitly: falling back is an error


def plan_providers(providers: str | Sequence[str] | None) -> ProviderPlan:
    """Turn the ``providers`` argument into what to ask onnxruntime for."""
    available = ort.get_available_providers()
    if providers is None or (isinstance(providers, str) and providers == "auto"):
        if CUDA in available:
            return ProviderPlan((CUDA, CPU), require_cuda=False)
        return ProviderPlan((CPU,), require_cuda=False)
    if isinstance(providers, str):
        if providers.lower() not in _ALIASES:
            raise ValueError(
                f"providers must be 'auto', 'cpu', 'cuda' or a list of onnxruntime provider "
                f"names, got {providers!r}"
            )
        name = _ALIASES[providers.lower()]
        if name == CUDA:
            if CUDA not in available:
                raise ProviderError(
                    "providers='cuda' but this onnxruntime has no CUDAExecutionProvider "
                    f"(onnxruntime {ort.__version__}, providers {available}); install the GPU "
                    "build (pip install edgerec[gpu]) or use providers='cpu'"
                )
            return ProviderPlan((CUDA, CPU), require_cuda=True)
        return ProviderPlan((CPU,), require_cuda=False)
    if not isinstance(providers, Sequence) or not providers:
        raise ValueError(f"providers must be a string or a non-empty list, got {providers!r}")
    names = []
    for p in providers:
        if not isinstance(p, str):
            raise ValueError(f"providers: each entry must be a string, got {p!r}")
        name = _ALIASES.get(p.lower(), p)
        if name not in available:
            raise ProviderError(
                f"provider {p!r} is not available in onnxruntime {ort.__version__} "
                f"(available: {available})"
            )
        names.append(name)
    if CPU not in names:
        names.append(CPU)
    return ProviderPlan(tuple(dict.fromkeys(names)), require_cuda=names[0] == CUDA)


MAX_THREADS = 1024  # more intra-op threads than this is a bug (onnxruntime would bad_alloc)


def session_options(threads: int | None) -> ort.SessionOptions:
    if threads is not None and (
        isinstance(threads, bool)
        or not isinstance(threads, int)
        or threads < 0
        or threads > MAX_THREADS
    ):
        raise ValueError(f"threads must be None or an int from 0 to {MAX_THREADS}, got {threads!r}")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.inter_op_num_threads = 1
    if threads:
        so.intra_op_num_threads = threads
    # provider fallbacks are reported through rec.providers, and the shortlist graph's
    # declared output shape is its placeholder's, not the catalog's
    so.log_severity_level = 3
    return so


# Full float32 on the GPU: onnxruntime's CUDA provider multiplies float32 in TF32 by
# default (10-bit mantissa), which moved scores by up to 4e-3 against the CPU on an H200
# (benchmarks/gpu_checks.py); this model is far too small for TF32 to save time.
CUDA_OPTIONS = {"use_tf32": "0"}


def create_session(
    model: bytes,
    name: str,
    providers: Sequence[str],
    threads: int | None,
    initializers: dict | None = None,
) -> ort.InferenceSession:
    """A session over in-memory bytes: no model path, so nothing is read from beside it.

    ``initializers``: name -> OrtValue replacing the graph's own (the shortlist graph's
    placeholder matrix), constants onnxruntime may prepack.
    """
    options = session_options(threads)
    for key, value in (initializers or {}).items():
        options.add_initializer(key, value)

    def new(requested: list) -> ort.InferenceSession:
        with warnings.catch_warnings():  # "provider not available": rec.providers says it
            warnings.simplefilter("ignore")
            return ort.InferenceSession(model, sess_options=options, providers=requested)

    try:
        try:
            return new([(p, CUDA_OPTIONS) if p == CUDA else p for p in providers])
        except Exception:
            if CUDA not in providers:
                raise
            return new(list(providers))  # an onnxruntime that does not know the CUDA option
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/... types
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BundleError(f"{name}: onnxruntime cannot load it ({message})") from None


def active_device(session: ort.InferenceSession, plan: ProviderPlan, name: str) -> str:
    """'cuda' when the session really runs on CUDA, else 'cpu'; raises if CUDA was required."""
    actual = session.get_providers()
    on_cuda = bool(actual) and actual[0] == CUDA
    if plan.require_cuda and not on_cuda:
        raise ProviderError(
            f"CUDA was requested but onnxruntime placed {name} on {actual}: no usable GPU or "
            "CUDA/cuDNN libraries were found; use providers='cpu' or 'auto'"
        )
    return "cuda" if on_cuda else "cpu"


def fast_run(session: ort.InferenceSession):
    """``session.run`` without the Python wrapper's per-call checks, on CPU sessions.

    ``InferenceSession.run`` re-validates the feed names, graph-capture settings and
    OrtValue ownership on every call before calling its C++ binding: ~25 us at one
    history per request, a tenth of a whole ``recommend`` (``benchmarks/
    runtime_latency.py``). The runtime's feeds are numpy arrays under names checked
    once at load (``check_user_encoder``), so on a CPU-only session it calls the binding
    directly. Sessions on other providers keep the wrapper, whose error handling can
    fall back from a failing execution provider; so does any onnxruntime whose wrapper
    lacks the binding attribute.
    """
    binding = getattr(getattr(session, "_sess", None), "run", None)
    if binding is None or list(session.get_providers()) != [CPU]:
        return session.run

    def run(output_names: list[str], feeds: dict) -> list:
        return binding(output_names, feeds, None)

    return run
