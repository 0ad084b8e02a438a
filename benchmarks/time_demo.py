"""Time the README's main command, ``edgerec demo --out DIR``, as a newcomer runs it.

    python benchmarks/time_demo.py --out /tmp/demo-x [-- more demo options]

Runs the demo once in a child process (its output passes through), then prints one line:
wall time, CPU time of the child, peak memory, usable cores and the load average before
and after (on a shared machine the load says how much of the wall time was waiting).
``--json FILE`` also writes those figures. The README's demo time comes from this script.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="A folder that does not exist.")
    parser.add_argument("--json", type=Path, help="Also write the figures to this file.")
    parser.add_argument("demo_args", nargs="*", help="More options for edgerec demo (after --).")
    args = parser.parse_args()
    if args.out.exists():
        parser.error(f"{args.out} exists: the demo needs a fresh folder")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load_before = os.getloadavg()
    command = [sys.executable, "-m", "edgerec", "demo", "--out", str(args.out), *args.demo_args]
    t0 = time.perf_counter()
    code = subprocess.call(command)
    wall = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    figures = {
        "command": "edgerec demo --out " + " ".join([str(args.out), *args.demo_args]).strip(),
        "exit_code": code,
        "wall_s": round(wall, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 0),  # KiB on Linux
        "usable_cores": cores,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }
    print(
        f"\n{figures['command']}: {wall / 60:.1f} min wall, {figures['cpu_s'] / 60:.1f} min CPU, "
        f"peak {figures['peak_rss_mb']:.0f} MB, {cores} usable cores, load average "
        f"{load_before[0]:.1f} before / {figures['load_after'][0]:.1f} after (exit {code})",
        file=sys.stderr,
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
