"""``edgerec demo``: the whole path on the embedded default, as the README's main job.

Synthetic data -> train -> evaluate against the baselines -> export (distilled, int8)
-> recommend for a few users through the torch-free runtime -> one latency line. It
touches every layer, so a fresh machine that runs it has a working install.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer


def demo(
    out: Path = typer.Option(
        Path("demo"), "--out", "-o", help="Folder for the run and the bundle."
    ),
    epochs: int = typer.Option(None, help="Maximum training epochs (default: the trainer's)."),
    time_budget: float = typer.Option(
        240.0,
        help="Seconds of training; early stopping may end it sooner (0: no budget). "
        "The demo is bounded so that it finishes in minutes on 2 cores.",
    ),
    distill: bool = typer.Option(True, "--distill/--no-distill", help="Distill both encoders."),
    users: int = typer.Option(3, help="Users to show recommendations for."),
    seed: int = typer.Option(0, help="Seed of the synthetic world and of training."),
) -> None:
    """Train, export and serve on the synthetic data set, printing each step's figures.

    Example: edgerec demo --out demo
    """
    from rich.console import Console

    console = Console(soft_wrap=True)  # lines in a log file are not cut at 80 columns
    console.rule(f"1. data: synthetic-{seed}")
    with console.status("loading torch, onnxruntime and the data generator"):
        import numpy as np
        from rich.table import Table

        from edgerec.commands.evaluate import print_metrics
        from edgerec.commands.progress import Progress
        from edgerec.data import leave_one_out
        from edgerec.data.synthetic import SyntheticConfig, generate_synthetic
        from edgerec.evaluation import evaluate_both, make_baseline
        from edgerec.export import export_bundle
        from edgerec.runtime import Recommender
        from edgerec.training.config import ModelConfig, TrainConfig
        from edgerec.training.trainer import train

        out = Path(out)
        dataset = generate_synthetic(SyntheticConfig(seed=seed))
        split = leave_one_out(dataset)
    console.print(
        f"{dataset.n_users} users, {dataset.n_items} items, {len(dataset.interactions)} events"
    )

    console.rule("2. train")
    train_cfg = TrainConfig(seed=seed, time_budget=time_budget)
    if epochs is not None:
        train_cfg.epochs = epochs
    t0 = time.perf_counter()
    metrics = train(dataset, out / "run", ModelConfig(), train_cfg)
    console.print(
        f"trained in {time.perf_counter() - t0:.0f} s (best epoch {metrics['best_epoch']})"
    )
    table = Table(title="test metrics (leave-one-out, full ranking)")
    for col in ("model", "HR@10", "NDCG@10", "MRR@10"):
        table.add_column(col, justify="right" if col != "model" else "left")
    for name in ("mostpop", "itemknn", "markov"):
        r = evaluate_both(make_baseline(name, split), split)["test"]
        table.add_row(name, f"{r['hr@10']:.4f}", f"{r['ndcg@10']:.4f}", f"{r['mrr@10']:.4f}")
    t = metrics["test"]
    table.add_row("edgerec", f"{t['hr@10']:.4f}", f"{t['ndcg@10']:.4f}", f"{t['mrr@10']:.4f}")
    console.print(table)
    print_metrics(metrics, "edgerec, validation and test")

    console.rule("3. export")
    t0 = time.perf_counter()
    with Progress() as bar:
        manifest = export_bundle(
            out / "run",
            out / "bundle",
            precisions=("fp32", "int8"),
            distill=distill,
            dataset=dataset,
            progress=bar.callback("export"),
        )
    sizes = sum(f["size"] for f in manifest["files"].values())
    console.print(
        f"bundle {out / 'bundle'}: {sizes / 1e6:.1f} MB, precisions {manifest['precisions']}, "
        f"default {manifest['default_precision']}, exported in {time.perf_counter() - t0:.0f} s"
    )

    console.rule("4. recommend (edgerec.runtime: numpy + onnxruntime)")
    rec = Recommender.load(out / "bundle", threads=1)
    seq = split.sequences
    for user in range(min(users, dataset.n_users)):
        start, end = seq.offsets[user], split.history_end("test")[user]
        history = [int(dataset.catalog.item_ids[i - 1]) for i in seq.items[start:end]]
        # the request comes when the held-out event happened: the gate reads that gap
        result = rec.recommend(
            history,
            k=5,
            timestamps=seq.timestamps[start:end].tolist(),
            now=int(seq.timestamps[end]),
        )
        recent = ", ".join(dataset.catalog.titles[i - 1] for i in seq.items[end - 3 : end])
        console.print(
            f"[bold]user {dataset.user_ids[user]}[/] (recent: {recent}); gate long={result.gate:.2f}"
        )
        for r in result:
            console.print(f"   {r.score:7.3f}  {r.title}")

    console.rule("5. latency")
    history = [int(x) for x in dataset.catalog.item_ids[seq.items[: rec.max_len] - 1]]
    for _ in range(20):
        rec.recommend(history, k=10)
    times = []
    for _ in range(300):
        t1 = time.perf_counter()
        rec.recommend(history, k=10)
        times.append(time.perf_counter() - t1)
    p50, p95 = np.percentile(times, [50, 95]) * 1000
    console.print(
        f"recommend(): p50 {p50:.3f} ms, p95 {p95:.3f} ms over 300 calls "
        f"(history {len(history)}, {rec.n_items} items, providers {rec.providers}, 1 thread)"
    )


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
