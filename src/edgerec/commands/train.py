"""``edgerec train``: train the long/short-term interest model into a run directory."""

from __future__ import annotations

from pathlib import Path

import typer

from edgerec.commands.data import DATASET_HELP


def train(
    dataset: str = typer.Option("synthetic", "--dataset", "-d", help=DATASET_HELP),
    data_dir: Path = typer.Option(None, "--data-dir", help="Folder with the data set's files."),
    out: Path = typer.Option(None, "--out", "-o", help="Run directory to create."),
    columns: str = typer.Option(None, help="csv/parquet column map."),
    kcore: int = typer.Option(0, help="Keep only the k-core (0: off)."),
    synthetic_users: int = typer.Option(None, help="Synthetic data: number of users."),
    synthetic_items: int = typer.Option(None, help="Synthetic data: number of items."),
    synthetic_seed: int = typer.Option(None, help="Synthetic data: generator seed."),
    epochs: int = typer.Option(None, help="Maximum epochs (early stopping may end sooner)."),
    dim: int = typer.Option(None, help="Scoring dimension d."),
    hidden: int = typer.Option(None, help="LSTM hidden size per direction."),
    max_len: int = typer.Option(
        None, help="Events of history the model reads (0: the median user's history)."
    ),
    window: int = typer.Option(None, help="Short-term window W (latest events)."),
    dropout: float = typer.Option(None, help="Dropout on the event inputs."),
    gate: str = typer.Option(
        None, help="vector (one long/short weight per dimension) or scalar (one per user)."
    ),
    short_term: str = typer.Option(
        None, help="bidirectional (window of Bi-LSTM outputs) or window (only the last W events)."
    ),
    long_term: str = typer.Option(
        None, help="all (attention over every output) or before_window (older events only)."
    ),
    request_time: bool = typer.Option(
        None,
        "--request-time/--no-request-time",
        help="The gate also reads the time from the last event to the request (runtime now=).",
    ),
    horizon_dropout: float = typer.Option(
        None,
        help="Share of training samples fused from one horizon alone (half long, half "
        "short), so the gate learns which one to trust.",
    ),
    lr: float = typer.Option(None, help="Peak learning rate (AdamW)."),
    batch_size: int = typer.Option(None, help="Training samples per step (per process)."),
    weight_decay: float = typer.Option(None, help="AdamW weight decay."),
    warmup_steps: int = typer.Option(
        None, help="Linear warm-up steps before the constant (or cosine) lr."
    ),
    patience: int = typer.Option(
        None,
        help="Epochs without a better valid NDCG@10 before the cool-down (plateau "
        "schedule) or the stop (cosine).",
    ),
    schedule: str = typer.Option(
        None,
        help="plateau (warm-up, constant lr, cool-down when valid NDCG@10 stops improving) "
        "or cosine (decay over --epochs).",
    ),
    cooldown: float = typer.Option(
        None, help="Cool-down length as a share of the steps trained before it (0: none)."
    ),
    time_budget: str = typer.Option(
        None,
        "--time-budget",
        help="Training time limit (600, 600s, 10m, 1.5h): cools down and stops within it, "
        "keeping the best weights.",
    ),
    id_prior: float = typer.Option(
        None,
        help="An item seen n times weighs its ID embedding n/(n+ID_PRIOR) against its "
        "text vector (0: full weight).",
    ),
    label_smoothing: float = typer.Option(None, help="Label smoothing of the retrieval loss."),
    behaviour_weight: float = typer.Option(None, help="Weight of the behaviour task."),
    interest_weight: float = typer.Option(None, help="Weight of the category tasks."),
    seed: int = typer.Option(None, help="Random seed (init, batch order, dropout)."),
    device: str = typer.Option(None, help="auto (CUDA when present), cpu or cuda."),
    threads: int = typer.Option(
        None, help="CPU threads per process (0: the cores shared among the processes)."
    ),
    text_encoder: str = typer.Option(
        None,
        "--text-encoder",
        help="Local Hugging Face model dir for item texts (default: bundled MiniLM); "
        "'random' uses fixed random vectors (tests).",
    ),
    finetune_layers: int = typer.Option(
        None, help="Top text-encoder layers to fine-tune (only 0 is supported)."
    ),
    ablate: list[str] = typer.Option(
        None, "--ablate", help="Drop a component: long, short, text, id or aux (repeatable)."
    ),
    uncertainty_weighting: bool = typer.Option(
        None, "--uncertainty-weighting/--fixed-weights", help="Learn the task weights."
    ),
    sampled_softmax: str = typer.Option(
        None, help="auto (by catalog size), on or off: sampled softmax for the main task."
    ),
    num_negatives: int = typer.Option(None, help="Uniform negatives of the sampled softmax."),
    resume: Path = typer.Option(
        None, "--resume", help="Continue the run in this directory from its last checkpoint."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    as_json: bool = typer.Option(False, "--json", help="Print metrics.json to stdout."),
) -> None:
    """Train the multi-task long/short-term interest model; write RUN_DIR.

    Unset options keep the defaults (or, with --resume, the run's saved settings).

    Examples:
      edgerec train --dataset synthetic --out runs/synth
      edgerec train --dataset movielens-100k --data-dir ../shared/data --out runs/ml100k
      edgerec train --dataset movielens-100k --data-dir ../shared/data --out runs/no-long --ablate long
      edgerec train --resume runs/ml100k
      torchrun --nproc_per_node 2 -m edgerec train --dataset synthetic --out runs/ddp
    """
    import json

    from edgerec.commands.data import load_for_training
    from edgerec.training.config import ModelConfig, TrainConfig
    from edgerec.training.evaluate_run import load_spec
    from edgerec.training.trainer import train as run_training
    from edgerec.training.trainer import validate_configs

    if resume is not None:
        if out is not None and out.absolute() != resume.absolute():
            raise typer.BadParameter("give either --out or --resume RUN_DIR, not both")
        out = resume
        cfg_file = out / "config.json"
        if not cfg_file.is_file():
            raise typer.BadParameter(f"{out}: nothing to resume (no config.json)")
        ds = load_spec(json.loads(cfg_file.read_text())["data"])
        metrics = run_training(ds, out, progress=not quiet, resume=True)
    elif out is None:
        raise typer.BadParameter("missing --out RUN_DIR (or --resume RUN_DIR)")
    else:
        mcfg, tcfg = ModelConfig(), TrainConfig()
        for obj, name, value in (
            (mcfg, "dim", dim),
            (mcfg, "hidden", hidden),
            (mcfg, "max_len", max_len),
            (mcfg, "window", window),
            (mcfg, "dropout", dropout),
            (mcfg, "gate", gate),
            (mcfg, "short_term", short_term),
            (mcfg, "long_term", long_term),
            (mcfg, "request_time", request_time),
            (mcfg, "horizon_dropout", horizon_dropout),
            (mcfg, "id_prior", id_prior),
            (tcfg, "epochs", epochs),
            (tcfg, "lr", lr),
            (tcfg, "batch_size", batch_size),
            (tcfg, "weight_decay", weight_decay),
            (tcfg, "warmup_steps", warmup_steps),
            (tcfg, "patience", patience),
            (tcfg, "schedule", schedule),
            (tcfg, "cooldown", cooldown),
            (tcfg, "label_smoothing", label_smoothing),
            (tcfg, "seed", seed),
            (tcfg, "device", device),
            (tcfg, "num_threads", threads),
            (tcfg, "text_encoder", text_encoder),
            (tcfg, "finetune_layers", finetune_layers),
            (tcfg, "uncertainty_weighting", uncertainty_weighting),
            (tcfg, "sampled_softmax", sampled_softmax),
            (tcfg, "num_negatives", num_negatives),
        ):
            if value is not None:
                setattr(obj, name, value)
        if time_budget is not None:
            from edgerec.training.trainer import parse_duration

            tcfg.time_budget = parse_duration(time_budget)
        if behaviour_weight is not None:
            tcfg.loss_weights = {**tcfg.loss_weights, "behaviour": behaviour_weight}
        if interest_weight is not None:
            tcfg.loss_weights = {**tcfg.loss_weights, "interest": interest_weight}
        if ablate:
            mcfg.ablate = tuple(dict.fromkeys(ablate))
        validate_configs(mcfg, tcfg)  # before loading data: fail fast
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
        metrics = run_training(ds, out, mcfg, tcfg, progress=not quiet, data_source=source)
    if not metrics:  # a non-zero DDP rank: rank 0 reports
        return
    if as_json:
        typer.echo(json.dumps({k: v for k, v in metrics.items() if k != "history"}, indent=2))
    else:
        from edgerec.commands.evaluate import print_metrics

        print_metrics(metrics, f"{out} (best epoch {metrics['best_epoch']})")


def _config_default(name: str):
    """What an unset option of ``train`` stands for, for ``--help``."""
    from edgerec.training.config import ModelConfig, TrainConfig  # dataclasses only

    model, train_cfg = ModelConfig(), TrainConfig()
    special = {
        "threads": train_cfg.num_threads,
        "behaviour_weight": train_cfg.loss_weights.get("behaviour"),
        "interest_weight": train_cfg.loss_weights.get("interest"),
        "text_encoder": "bundled MiniLM",
    }
    if name.startswith("synthetic_"):
        try:  # edgerec.data needs pandas, which a runtime-only install lacks
            from edgerec.data.synthetic import SyntheticConfig
        except ImportError:
            return None
        synthetic = SyntheticConfig()
        return {"users": synthetic.n_users, "items": synthetic.n_items, "seed": synthetic.seed}[
            name.removeprefix("synthetic_")
        ]
    if name in special:
        return special[name]
    for cfg in (model, train_cfg):
        if name in getattr(cfg, "__dataclass_fields__", {}):
            return getattr(cfg, name)
    return None


def register(app: typer.Typer) -> None:
    from edgerec.commands.helpfmt import show_defaults

    app.command("train")(show_defaults(train, _config_default))
