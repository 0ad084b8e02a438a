"""``recommend()`` and PyTorch eager under two Python interpreters, blocks alternating.

Why: about a third of a warm ``recommend()`` is Python, and CPython builds differ there
(pyenv's default build links libpython as a shared library and skips PGO/LTO; Debian's
``/usr/bin/python3.11`` is one static binary). This VM's speed drifts between states
within seconds, so two runs one after the other compare states as much as interpreters.
Here one worker process per interpreter loads everything once, then the two take turns:
each cycle every contender runs a block of ``--block`` consecutive calls in one worker,
then in the other (the order flips every cycle), and the per-cycle differences pair
blocks run seconds apart. Only one worker runs at a time: run side by side on this
VM's two cores they slowed each other unevenly. Nothing is asserted; medians are
reported.

Contenders (as in ``runtime_latency.py``'s "steady" table): the int8 bundle's
``recommend()``, the distilled bundle's, and the PyTorch model in eager mode (teacher,
and the student's architecture for the distilled bundle).

Usage (bundles and run as ``runtime_latency.py --work`` builds them; a second
environment on Debian's interpreter, which ships without ensurepip, filled by this
environment's pip):

    /usr/bin/python3.11 -m venv --without-pip /tmp/sys-venv
    python -m pip --python /tmp/sys-venv/bin/python install -e ".[train,cpu]" torch==2.13.0
    OPENBLAS_NUM_THREADS=1 python benchmarks/interpreters.py --python-b /tmp/sys-venv/bin/python \\
        --data-dir /work/shared/data/movielens/ml-100k --work /tmp/edgerec-bench

``--python-a`` defaults to the interpreter running this script.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

CONTENDERS = ("runtime_int8", "runtime_distilled_int8", "torch_eager", "torch_eager_student")


def worker(args: argparse.Namespace) -> None:
    """One interpreter's side: per cycle asked for on stdin, one block per contender; the
    block medians (CPU ms) go back as a JSON line."""
    import numpy as np
    import runtime_latency as RL
    import torch

    from edgerec.runtime import Recommender
    from edgerec.training.checkpoint import load_run

    torch.set_num_threads(1)
    histories, _ = RL.ml100k_histories(args.data_dir, 200, 50)
    recs = {
        "runtime_int8": Recommender.load(args.work / "bundle", providers="cpu", threads=1),
        "runtime_distilled_int8": Recommender.load(
            args.work / "bundle-distilled", providers="cpu", threads=1
        ),
    }
    model = load_run(args.work / "run").model.eval()
    with torch.inference_mode():
        table = model.items().contiguous()
    student = RL.student_model(model, recs["runtime_distilled_int8"])
    if student is None:
        raise SystemExit("the distilled bundle's manifest records no student LSTM width")
    prepared = RL.torch_requests(histories)

    def runtime(rec):
        def call(i: int):
            h = histories[i]
            return rec.recommend(h[0], k=10, behaviours=h[1], timestamps=h[2])

        return call

    def eager(m):
        fn = RL.eager_recommend(m, table)
        return lambda i: fn(prepared[i])

    calls = {name: runtime(rec) for name, rec in recs.items()}
    calls["torch_eager"] = eager(model)
    calls["torch_eager_student"] = eager(student)
    for fn in calls.values():  # warm-up
        for i in range(50):
            fn(i)
    print(json.dumps({"interpreter": RL.interpreter()}), flush=True)
    clock = time.process_time
    for line in sys.stdin:
        r = int(line)
        medians = {}
        for name, fn in calls.items():
            times = []
            for i in range(args.block):
                j = (r * args.block + i) % len(histories)
                t0 = clock()
                fn(j)
                times.append(clock() - t0)
            medians[name] = float(np.median(times)) * 1e3
        print(json.dumps(medians), flush=True)


def start_worker(args: argparse.Namespace, python: str) -> tuple[subprocess.Popen, dict]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    cmd = [python, str(Path(__file__).resolve()), "--worker", "--data-dir", str(args.data_dir)]
    cmd += ["--work", str(args.work), "--block", str(args.block)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
    first = proc.stdout.readline()
    if not first:
        raise SystemExit(f"{python}: the worker failed while loading (exit {proc.wait()})")
    return proc, json.loads(first)


def ask(proc: subprocess.Popen, cycle: int) -> dict:
    proc.stdin.write(f"{cycle}\n")
    proc.stdin.flush()
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"a worker failed (exit {proc.wait()})")
    return json.loads(line)


def summarize(cycles: dict[str, list[dict]]) -> dict:
    """Medians of block medians per interpreter, PyTorch ÷ runtime ratios, and the
    per-cycle difference (b - a) of blocks run one after the other."""
    out: dict = {"a": {}, "b": {}, "b_minus_a_ms": {}}
    for side in ("a", "b"):
        for name in CONTENDERS:
            out[side][name] = round(statistics.median(c[name] for c in cycles[side]), 4)
        out[side]["torch_eager_over_runtime_int8"] = round(
            out[side]["torch_eager"] / out[side]["runtime_int8"], 2
        )
        out[side]["student_over_runtime_distilled_int8"] = round(
            out[side]["torch_eager_student"] / out[side]["runtime_distilled_int8"], 2
        )
    for name in CONTENDERS:
        diffs = [b[name] - a[name] for a, b in zip(cycles["a"], cycles["b"], strict=True)]
        out["b_minus_a_ms"][name] = round(statistics.median(diffs), 4)
    return out


def markdown(res: dict, command: str) -> str:
    from runtime_latency import python_build

    a, b = res["summary"]["a"], res["summary"]["b"]
    ia, ib = res["interpreters"]["a"], res["interpreters"]["b"]
    lines = [
        "# recommend() under two Python interpreters, side by side",
        "",
        f"{res['date']}; blocks of {res['block']} calls per contender, the two workers "
        f"taking turns for {res['cycles']} cycles (order flipped every cycle); CPU time per "
        "call, medians of block medians (ms); b - a is the median per-cycle difference.",
        "",
        f"- a: {python_build(ia)}",
        f"- b: {python_build(ib)}",
        "",
        f"Command: `{command}`",
        "",
        "| contender | a | b | b - a (per cycle) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name in CONTENDERS:
        lines.append(
            f"| {name} | {a[name]} | {b[name]} | {res['summary']['b_minus_a_ms'][name]:+} |"
        )
    lines += [
        "",
        f"PyTorch eager ÷ runtime_int8: a {a['torch_eager_over_runtime_int8']}x, "
        f"b {b['torch_eager_over_runtime_int8']}x. Student architecture ÷ "
        f"runtime_distilled_int8: a {a['student_over_runtime_distilled_int8']}x, "
        f"b {b['student_over_runtime_distilled_int8']}x.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--python-a", default=sys.executable)
    ap.add_argument("--python-b")
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgerec-bench"))
    ap.add_argument("--block", type=int, default=200)
    ap.add_argument("--cycles", type=int, default=16)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args)
        return
    if not args.python_b:
        ap.error("--python-b is required")
    missing = [p for p in ("bundle", "bundle-distilled", "run") if not (args.work / p).exists()]
    if missing:
        raise SystemExit(f"{args.work} lacks {missing}: run runtime_latency.py --work first")
    workers = {
        side: start_worker(args, py) for side, py in (("a", args.python_a), ("b", args.python_b))
    }
    cycles: dict[str, list[dict]] = {"a": [], "b": []}
    for r in range(args.cycles):
        for side in ("a", "b") if r % 2 == 0 else ("b", "a"):
            cycles[side].append(ask(workers[side][0], r))
    for proc, _ in workers.values():
        proc.stdin.close()
        proc.wait()
    res = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "block": args.block,
        "cycles": args.cycles,
        "interpreters": {side: info for side, (_, info) in workers.items()},
        "summary": summarize(cycles),
        "raw": cycles,
    }
    command = "OPENBLAS_NUM_THREADS=1 python " + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    text = markdown(res, command)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "interpreters.json").write_text(json.dumps(res, indent=1) + "\n")
        (args.out / "interpreters.md").write_text(text)


if __name__ == "__main__":
    main()
