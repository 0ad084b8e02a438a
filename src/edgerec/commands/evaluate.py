"""``edgerec evaluate``: baselines and trained runs under the one protocol."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from edgerec.commands.data import DATASET_HELP, load_for_cli


def print_metrics(result: dict, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("stage")
    names = list(result["test"].keys())
    for name in names:
        table.add_column(name, justify="right")
    for stage in ("valid", "test"):
        table.add_row(stage, *(f"{result[stage][n]:.4f}" for n in names))
    Console().print(table)


def evaluate(
    dataset: str = typer.Option("synthetic", "--dataset", "-d", help=DATASET_HELP),
    data_dir: Path = typer.Option(None, "--data-dir", help="Folder with the data set's files."),
    model: str = typer.Option("mostpop", "--model", "-m", help="mostpop, itemknn or markov."),
    run: Path = typer.Option(None, "--run", help="Evaluate a trained run directory instead."),
    columns: str = typer.Option(None, help="csv/parquet column map."),
    kcore: int = typer.Option(0, help="Keep only the k-core (0: off)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Leave-one-out, full-ranking evaluation (HR, NDCG, MRR @10/@20, coverage@10).

    Examples:
      edgerec evaluate --dataset movielens-100k --data-dir ../shared/data --model mostpop --json
      edgerec evaluate --run runs/ml100k --json
    """
    from edgerec.data import leave_one_out
    from edgerec.evaluation import evaluate_both, make_baseline

    if run is not None:
        from edgerec.training.evaluate_run import evaluate_run

        result = evaluate_run(run)
        label = str(run)
    else:
        ds = load_for_cli(dataset, data_dir, strict=False, kcore=kcore, columns=columns)
        split = leave_one_out(ds)
        result = {
            "dataset": ds.name,
            "model": model,
            **evaluate_both(make_baseline(model, split), split),
        }
        label = f"{model} on {ds.name}"
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        print_metrics(result, label)


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
