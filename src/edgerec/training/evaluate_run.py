"""Evaluating a trained model under the protocol: the scorer and ``evaluate --run``.

The scorer is the one bridge between the PyTorch model and ``edgerec.evaluation``: it
builds each user's stage history with ``stage_inputs`` (the runtime's encoding) and
scores the whole catalog, so training-time validation, ``evaluate --run`` and the export
parity checks measure the same thing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgerec.data.schema import Dataset
from edgerec.data.split import LeaveOneOut, leave_one_out
from edgerec.errors import DataError
from edgerec.training.checkpoint import RunError, load_run
from edgerec.training.inputs import stage_inputs, stage_request_gaps


def model_scorer(model, split: LeaveOneOut, max_len: int, device="cpu"):
    """``scorer(users, stage) -> (len(users), n_items+1)`` float32 scores of ``model``.

    The item table is computed once per scorer; build a new scorer after the weights
    change. The model is put in eval mode.
    """
    import torch

    device = torch.device(device)
    model.eval()
    cache: dict[str, torch.Tensor] = {}

    def scorer(users: np.ndarray, stage: str) -> np.ndarray:
        with torch.no_grad():
            if "table" not in cache:
                cache["table"] = model.items().to(device)
            table = cache["table"]
            arrays = stage_inputs(split, np.asarray(users), stage, max_len)
            items, behaviours, gaps, lengths = (torch.from_numpy(a).to(device) for a in arrays)
            rgaps = torch.from_numpy(stage_request_gaps(split, users, stage)).to(device)
            enc = model.encode_users(
                items, behaviours, gaps, lengths, item_table=table, request_gaps=rgaps
            )
            return model.score_all(enc.user, table).float().cpu().numpy()

    return scorer


def data_spec(dataset: Dataset, data_dir=None, **loader) -> dict:
    """What config.json records so a run can reload exactly its data set."""
    spec = {
        "name": dataset.name,
        "data_dir": str(Path(data_dir).absolute()) if data_dir is not None else None,
        "fingerprint": dataset.fingerprint(),
        "users": int(dataset.n_users),
        "items": int(dataset.n_items),
        "interactions": int(len(dataset.interactions)),
    }
    if dataset.ground_truth is not None and "config" in dataset.ground_truth:
        spec["synthetic"] = dict(dataset.ground_truth["config"])
    spec.update({k: v for k, v in loader.items() if v not in (None, 0, "")})
    return spec


def load_spec(spec: dict) -> Dataset:
    """Reload the data set a run was trained on, refusing anything with another content."""
    from edgerec.data import load_dataset
    from edgerec.data.synthetic import SyntheticConfig, generate_synthetic

    if "synthetic" in spec:
        ds = generate_synthetic(SyntheticConfig(**spec["synthetic"]))
    else:
        if spec.get("name") is None:
            raise RunError("config.json does not say which data set the run was trained on")
        loader_name = spec.get("loader", spec["name"])
        ds = load_dataset(
            loader_name,
            spec.get("data_dir"),
            kcore=int(spec.get("kcore", 0) or 0),
            columns=spec.get("columns"),
            strict=bool(spec.get("strict", False)),
        )
    want = spec.get("fingerprint")
    if want is not None and ds.fingerprint() != want:
        raise DataError(
            f"data set {spec.get('name')!r} at {spec.get('data_dir')} has fingerprint "
            f"{ds.fingerprint()}, but the run was trained on {want}: the data changed"
        )
    return ds


def evaluate_run(
    run_dir: Path | str, *, device: str = "cpu", dataset: Dataset | None = None
) -> dict:
    """The ``edgerec evaluate --json`` object for a trained run directory."""
    from edgerec.evaluation import evaluate_both

    run = load_run(run_dir)
    spec = run.config.get("data", {})
    ds = dataset if dataset is not None else load_spec(spec)
    if dataset is not None and spec.get("fingerprint") not in (None, ds.fingerprint()):
        raise DataError(
            f"the given data set has fingerprint {ds.fingerprint()}, "
            f"but the run was trained on {spec.get('fingerprint')}"
        )
    split = leave_one_out(ds)
    model = run.model.to(device)
    scorer = model_scorer(model, split, run.model_config.max_len, device)
    return {
        "dataset": ds.name,
        "model": "edgerec",
        "run": str(run_dir),
        **evaluate_both(scorer, split, batch_size=run.train_config.eval_batch_size),
    }
