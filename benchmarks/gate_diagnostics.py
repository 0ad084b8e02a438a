"""Which horizon drives the fused user vector, against the synthetic generator's truth.

For trained runs on the synthetic data set, reports per group of held-out requests (see
``edgerec.training.diagnostics.gate_by_session_position``) the mean gate (weight of the
long-term vector) and the short-term share of the fused vector,
``|(1-g)*short| / (|g*long| + |(1-g)*short|)``. The share is the identifiable one: a
model can scale its long-term vector up and its gate down and score the same.

Usage:
  python benchmarks/gate_diagnostics.py LABEL=RUN_DIR [LABEL=RUN_DIR ...] \\
      --out benchmarks/results/gate_synthetic.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

GROUPS = (
    ("next_starts_session", "request opens a session"),
    ("strong_session_continues", "request inside a strong session"),
    ("session_start", "last event opened a session"),
    ("strong_session", "last event deep in a strong session"),
    ("all", "all"),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("runs", nargs="+", help="LABEL=RUN_DIR")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from edgerec.data.split import leave_one_out
    from edgerec.training.checkpoint import load_run
    from edgerec.training.diagnostics import gate_by_session_position
    from edgerec.training.evaluate_run import load_spec

    lines = [
        "# Gate against the synthetic generator's sessions\n",
        "Valid and test requests of every user, grouped by the generator's ground truth.",
        "Each cell: mean gate g (weight of the long-term vector) / short-term share of the",
        "fused vector. Runs and their configurations are named in the first column (one",
        "seed each; all other settings are the defaults).\n",
        "Command: `python benchmarks/gate_diagnostics.py "
        + " ".join(f"'{a}'" if " " in a else a for a in sys.argv[1:])
        + "`\n",
        "| run | " + " | ".join(title for _, title in GROUPS) + " |",
        "|---|" + "---|" * len(GROUPS),
    ]
    for item in args.runs:
        label, _, run_dir = item.rpartition("=")  # labels may hold "=", paths do not
        run = load_run(run_dir)
        ds = load_spec(run.config["data"])
        split = leave_one_out(ds)
        report = gate_by_session_position(run.model, ds, split, run.model_config.max_len)
        cells = []
        for key, _ in GROUPS:
            r = report[key]
            cells.append(f"{r['mean_gate']:.3f} / {r['short_share']:.3f} (n={r['n']})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
