"""The hardware target a benchmark ran on, recorded next to every number it produced.

Latency means little without the machine: the CPU model and its vector extensions decide
whether int8 kernels use VNNI/AMX, the core count bounds the thread sweep, and the load
average at the start and end says how contended a shared machine was. Everything here
reads files and package metadata only (no torch import), so it works in a runtime-only
install; a missing source gives ``None`` rather than an error.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

# flags that matter for the kernels onnxruntime and BLAS pick, x86 and ARM
ISA_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "asimdhp",
    "asimddp",
    "i8mm",
    "bf16",
    "sve",
    "sve2",
)
PACKAGES = (
    "edgerec",
    "numpy",
    "onnxruntime",
    "onnxruntime-gpu",
    "tokenizers",
    "torch",
    "matplotlib",
)


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def parse_cpuinfo(text: str) -> dict:
    """Model name, flags and physical core count from ``/proc/cpuinfo`` text (x86 or ARM)."""
    model = None
    flags: set[str] = set()
    cores: set[tuple[str, str]] = set()
    physical = core = None
    for line in text.splitlines():
        if ":" not in line:
            if physical is not None and core is not None:
                cores.add((physical, core))
            physical = core = None
            continue
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key in ("model name", "hardware", "cpu model") and model is None and value:
            model = value
        elif key in ("flags", "features"):
            flags.update(value.split())
        elif key == "physical id":
            physical = value
        elif key == "core id":
            core = value
    if physical is not None and core is not None:
        cores.add((physical, core))
    return {
        "model": model,
        "physical_cores": len(cores) or None,
        "flags": sorted(f for f in ISA_FLAGS if f in flags),
        "vnni": bool({"avx512_vnni", "avx_vnni", "asimddp"} & flags),
        "amx": bool({"amx_int8", "amx_tile"} & flags),
        "avx512": "avx512f" in flags,
        "avx2": "avx2" in flags,
    }


def cpu_record() -> dict:
    info = parse_cpuinfo(_read("/proc/cpuinfo") or "")
    if info["model"] is None:
        info["model"] = platform.processor() or platform.machine() or None
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    info["logical_cores"] = os.cpu_count()
    info["usable_cores"] = usable
    info["machine"] = platform.machine()
    return info


def memory_gib() -> float | None:
    text = _read("/proc/meminfo") or ""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            with contextlib.suppress(ValueError, IndexError):
                return round(int(line.split()[1]) / (1 << 20), 2)
    return None


def gpu_record(timeout: float = 10.0) -> list[dict]:
    """GPUs from ``nvidia-smi``, or a Jetson-class board from the device tree; [] if none."""
    gpus: list[dict] = []
    exe = shutil.which("nvidia-smi")
    if exe:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [
                    exe,
                    "--query-gpu=name,memory.total,driver_version,compute_cap",
                    "--format=csv,noheader,nounits",
                ],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=True,
            ).stdout
            for line in out.strip().splitlines():
                parts = [p.strip() for p in line.split(",")]
                if len(parts) < 3:
                    continue
                mem = None
                with contextlib.suppress(ValueError):
                    mem = round(float(parts[1]) / 1024, 2)
                gpus.append(
                    {
                        "name": parts[0],
                        "memory_gib": mem,
                        "driver": parts[2],
                        "compute_capability": parts[3] if len(parts) > 3 else None,
                    }
                )
    if not gpus:
        board = _read("/proc/device-tree/model")
        if board and "nvidia" in board.lower():
            gpus.append({"name": board.strip("\x00\n "), "memory_gib": None, "driver": None})
    return gpus


def package_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def onnxruntime_record() -> dict:
    try:
        import onnxruntime as ort
    except ImportError:
        return {"available": False}
    return {
        "available": True,
        "version": ort.__version__,
        "device": ort.get_device(),
        "available_providers": list(ort.get_available_providers()),
    }


def blas_record() -> dict:
    """numpy's BLAS library and how its threads are set (the numpy floor depends on it)."""
    import numpy as np

    info: dict = {}
    with contextlib.suppress(Exception):
        cfg = np.show_config(mode="dicts")  # numpy >= 1.25
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        info = {"name": blas.get("name"), "version": blas.get("version")}
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        if var in os.environ:
            info[var] = os.environ[var]
    return info


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def hardware_record(target: str | None = None) -> dict:
    """Everything about the machine a result file needs; ``target`` defaults to the host name."""
    host = socket.gethostname()
    return {
        "target": target or host,
        "host": host,
        "os": platform.platform(),
        "cpu": cpu_record(),
        "memory_gib": memory_gib(),
        "gpus": gpu_record(),
        "onnxruntime": onnxruntime_record(),
        "blas": blas_record(),
        "versions": package_versions(),
        "executable": sys.executable,
        "load_average_start": load_average(),
    }
