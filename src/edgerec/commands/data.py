"""``edgerec data info`` and ``edgerec data fetch``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

DATASET_HELP = "Data set: synthetic, movielens-100k, movielens-1m, movielens-latest, csv, parquet."


def load_for_cli(
    dataset: str,
    data_dir: Path | None,
    *,
    strict: bool,
    kcore: int,
    columns: str | None,
    seed: int = 0,
):
    """Load and print what cleaning dropped, as warnings on stderr."""
    from edgerec.data import load_dataset

    ds = load_dataset(dataset, data_dir, strict=strict, kcore=kcore, columns=columns, seed=seed)
    for issue in ds.report.issues:
        typer.echo(f"warning: {issue}", err=True)
    return ds


def load_for_training(
    dataset: str,
    data_dir: Path | None,
    *,
    kcore: int,
    columns: str | None,
    synthetic_users: int | None,
    synthetic_items: int | None,
    synthetic_seed: int | None,
):
    """``load_for_cli`` (not strict), or the synthetic data of the sizes and seed given
    (the generator's defaults where not)."""
    if dataset == "synthetic" and (synthetic_users or synthetic_items or synthetic_seed):
        from edgerec.data.synthetic import SyntheticConfig, generate_synthetic

        base = SyntheticConfig()
        return generate_synthetic(
            SyntheticConfig(
                n_users=synthetic_users or base.n_users,
                n_items=synthetic_items or base.n_items,
                seed=synthetic_seed if synthetic_seed is not None else base.seed,
            )
        )
    return load_for_cli(dataset, data_dir, strict=False, kcore=kcore, columns=columns)


def info(
    dataset: str = typer.Option("synthetic", "--dataset", "-d", help=DATASET_HELP),
    data_dir: Path = typer.Option(None, "--data-dir", help="Folder with the data set's files."),
    columns: str = typer.Option(
        None, help="csv/parquet column map, e.g. user=uid,item=sku,timestamp=ts"
    ),
    kcore: int = typer.Option(0, help="Keep only the k-core (0: off)."),
    strict: bool = typer.Option(
        False, help="Fail on the first malformed row instead of skipping it."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Counts, split sizes and cleaning report of a data set.

    Example: edgerec data info --dataset movielens-100k --data-dir ../shared/data
    """
    import numpy as np

    from edgerec.data import leave_one_out

    ds = load_for_cli(dataset, data_dir, strict=strict, kcore=kcore, columns=columns)
    split = leave_one_out(ds)
    lengths = split.sequences.lengths
    out = {
        "dataset": ds.name,
        "users": ds.n_users,
        "items": ds.n_items,
        "interactions": len(ds.interactions),
        "categories": len(ds.catalog.category_names),
        "behaviours": list(ds.behaviour_vocab),
        "split": {
            "train": int(split.train_events().sum()),
            "valid": ds.n_users,
            "test": ds.n_users,
        },
        "history_length": {
            "min": int(lengths.min()),
            "median": float(np.median(lengths)),
            "max": int(lengths.max()),
        },
        "dropped": ds.report.dropped,
        "fingerprint": ds.fingerprint(),
    }
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{ds.name}", show_header=False)
    for key, value in out.items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict | list) else str(value))
    Console().print(table)


def fetch(
    name: str = typer.Argument(
        ...,
        help="movielens-100k, movielens-1m or movielens-latest (the data set names; "
        "movielens-latest-small is accepted too).",
    ),
    to: Path = typer.Option(..., "--to", help="Folder to extract into."),
    url: str = typer.Option(None, help="Override the download address (file:// works)."),
    sha256: str = typer.Option(None, help="Override the expected sha256 of the archive."),
) -> None:
    """Download a MovieLens archive, verify its checksum and extract it safely.

    Example: edgerec data fetch movielens-1m --to ~/data
    (then: edgerec data info --dataset movielens-1m --data-dir ~/data)
    """
    from edgerec.data.fetch import fetch_dataset

    path = fetch_dataset(name, Path(to), url=url, sha256=sha256, progress=True)
    typer.echo(f"extracted to {path}")


def register(app: typer.Typer) -> None:
    data_app = typer.Typer(help="Inspect and download data sets.", no_args_is_help=True)
    data_app.command("info")(info)
    data_app.command("fetch")(fetch)
    app.add_typer(data_app, name="data")
