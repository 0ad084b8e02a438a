"""``edgerec bench cold-start``: the item cold-start protocol for one seed.

A ``bench`` subcommand rather than ``evaluate --cold-items``: ``evaluate`` scores a model
that exists, while this one trains two models (without the cold items, and on the full
data for the warm comparison), exports bundles and runs the runtime, as ``bench
quality`` does.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from edgerec.commands.data import DATASET_HELP


def parse_sets(pairs: list[str] | None) -> dict:
    """``training.config.parse_overrides``, its errors as the CLI's."""
    from edgerec.training.config import parse_overrides

    try:
        return parse_overrides(pairs)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


def cold_start(
    out: Path = typer.Option(
        ..., "--out", "-o", help="Directory for runs, bundles, cold_start.json."
    ),
    dataset: str = typer.Option("synthetic", "--dataset", "-d", help=DATASET_HELP),
    data_dir: Path = typer.Option(None, "--data-dir", help="Folder with the data set's files."),
    columns: str = typer.Option(None, help="csv/parquet column map."),
    kcore: int = typer.Option(0, help="Keep only the k-core (0: off)."),
    synthetic_users: int = typer.Option(None, help="Synthetic data: number of users. [1200]"),
    synthetic_items: int = typer.Option(None, help="Synthetic data: number of items. [600]"),
    synthetic_seed: int = typer.Option(None, help="Synthetic data: generator seed. [0]"),
    cold_items: float = typer.Option(
        0.10, "--cold-items", help="Share of the catalog made cold, in (0, 1)."
    ),
    cold_choice: str = typer.Option(
        "recent",
        "--cold-choice",
        help="recent (the items whose first interaction is latest) or random.",
    ),
    seed: int = typer.Option(0, help="Training seed (and the draw of --cold-choice random)."),
    epochs: int = typer.Option(None, help="Maximum epochs (early stopping may end sooner)."),
    time_budget: str = typer.Option(
        None, "--time-budget", help="Training time limit per run (600, 10m, 1.5h)."
    ),
    threads: int = typer.Option(1, help="CPU threads for training and the runtime."),
    text_encoder: str = typer.Option(
        None, "--text-encoder", help="Local Hugging Face model dir (default: bundled MiniLM)."
    ),
    settings: list[str] = typer.Option(
        None, "--set", help="Any training setting: model.NAME=VALUE or train.NAME=VALUE (repeat)."
    ),
    distill: bool = typer.Option(
        True, "--distill/--no-distill", help="Also export and measure the distilled bundle."
    ),
    precision: str = typer.Option("fp32,int8", help="Bundle precisions to measure (fp32, int8)."),
    full_run: Path = typer.Option(
        None,
        "--full-run",
        help="A finished run on the full data with the same settings, instead of training one.",
    ),
    recent: int = typer.Option(10, help="Content kNN: latest history items in the profile."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No step lines."),
    as_json: bool = typer.Option(False, "--json", help="Print cold_start.json."),
) -> None:
    """Item cold start: hold out a share of the items, train without them, add them back
    from their text through the runtime's add_items, and measure NDCG@10 / HR@10 on the
    test events whose target is cold and on the warm ones (against a model trained on
    the full data), with popularity, content kNN and random on the same split.

    Examples:
      edgerec bench cold-start --dataset movielens-100k --data-dir ../shared/data --out cs/ml100k --time-budget 8m
      edgerec bench cold-start --out cs/synth --cold-choice random --seed 1 --no-distill
    """
    from edgerec.benchmark.cold_start import run_cold_start
    from edgerec.evaluation.cold_start import check_choice, check_fraction
    from edgerec.export.config import ExportConfig
    from edgerec.training.config import ModelConfig, TrainConfig
    from edgerec.training.trainer import parse_duration, validate_configs

    # bad arguments fail here, before any data is read or model trained
    for name, check, value in (
        ("--cold-items", check_fraction, cold_items),
        ("--cold-choice", check_choice, cold_choice),
    ):
        try:
            check(value)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint=name) from None
    if threads < 1:
        raise typer.BadParameter("--threads must be at least 1")
    if recent < 1:
        raise typer.BadParameter("--recent must be at least 1")
    precisions = tuple(p.strip() for p in precision.split(",") if p.strip())
    if not precisions or any(p not in ("fp32", "int8") for p in precisions):
        raise typer.BadParameter(f"--precision: fp32 and/or int8, got {precision!r}")
    ExportConfig(precisions=precisions)
    overrides = parse_sets(settings)
    mcfg = ModelConfig.from_dict({**ModelConfig().to_dict(), **overrides["model"]})
    tcfg = TrainConfig.from_dict({**TrainConfig().to_dict(), **overrides["train"]})
    tcfg.seed, tcfg.num_threads = seed, threads
    if epochs is not None:
        tcfg.epochs = epochs
    if time_budget is not None:
        tcfg.time_budget = parse_duration(time_budget)
    if text_encoder is not None:
        tcfg.text_encoder = text_encoder
    validate_configs(mcfg, tcfg)
    if tcfg.text_encoder == "random":
        raise typer.BadParameter(
            "cold start adds items from their text: it needs a pretrained text encoder, "
            "not 'random'",
            param_hint="--set train.text_encoder",
        )

    from edgerec.commands.data import load_for_training

    ds = load_for_training(
        dataset,
        data_dir,
        kcore=kcore,
        columns=columns,
        synthetic_users=synthetic_users,
        synthetic_items=synthetic_items,
        synthetic_seed=synthetic_seed,
    )
    source = {"loader": dataset, "data_dir": data_dir, "kcore": kcore, "columns": columns}
    result = run_cold_start(
        ds,
        out,
        mcfg,
        tcfg,
        fraction=cold_items,
        choice=cold_choice,
        distill=distill,
        precisions=precisions,
        full_run=full_run,
        recent=recent,
        threads=threads,
        data_source=source,
        log=None if quiet else lambda line: typer.echo(line, err=True),
    )
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    _print_table(result)
    typer.echo(f"wrote {out / 'cold_start.json'}")


def _print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    split = result["split"]
    t = Table(
        title=f"{result['dataset']}, seed {result['seed']}: {split['cold_items']} cold items "
        f"({split['choice']}); {split['cold_test_events']} cold / "
        f"{split['warm_test_events']} warm test events"
    )
    for col in ("model", "precision", "cold NDCG@10", "cold HR@10", "warm NDCG@10", "warm HR@10"):
        t.add_column(col, justify="left" if col in ("model", "precision") else "right")
    for row in result["rows"]:
        cells = []
        for group in ("cold", "warm"):
            m = row.get(group)
            cells += ["-", "-"] if m is None else [f"{m['ndcg@10']:.4f}", f"{m['hr@10']:.4f}"]
        t.add_row(row["model"], row["precision"] or "-", *cells)
    Console(soft_wrap=True).print(t)
