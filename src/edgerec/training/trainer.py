"""The training loop: multi-task objective, early stopping, checkpoints, resume, DDP.

``train()`` is the one entry point (the CLI and benchmarks call it). A run directory is
self-describing from the first epoch on (config.json, catalog.json), holds the best
model so far (model.safetensors), and a checkpoint of the last finished epoch
(checkpoint/state.safetensors + checkpoint/state.json, swapped in atomically as one
directory) from which ``resume=True`` continues. Each epoch's batch order and dropout
randomness derive from (seed, epoch, rank), so a resumed run replays exactly what the
uninterrupted run would have done.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from edgerec.data.schema import Dataset
from edgerec.data.split import leave_one_out
from edgerec.errors import EdgerecError
from edgerec.io import atomic_directory, atomic_write_json, recover_directory
from edgerec.training import distributed, scaling
from edgerec.training.checkpoint import (
    CONFIG_FILE,
    METRICS_FILE,
    MODEL_FILE,
    RunError,
    catalog_dict,
    load_weights,
    save_weights,
    write_run_files,
)
from edgerec.training.config import ABLATIONS, CHOICES, ModelConfig, TrainConfig
from edgerec.training.evaluate_run import data_spec, model_scorer
from edgerec.training.samples import BatchBuilder, epoch_order, training_samples

CHECKPOINT_DIR = "checkpoint"
STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"
LOSS_NAMES = ("retrieval", "future", "behaviour", "next_category", "user_category")


def resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise EdgerecError(f"--device {name}: CUDA is not available on this machine")
    try:
        return torch.device(name)
    except RuntimeError:
        raise EdgerecError(f"--device {name!r}: not a device (use auto, cpu or cuda)") from None


def cpu_threads(requested: int, world: int) -> int:
    """Threads per process: auto shares the cores among the processes. On an idle 2-core
    machine 2 threads ran an ML-100K epoch in 0.8 min against 1.3 min with one; on a
    machine shared with other jobs, pass fewer (threads spinning on a busy core lose)."""
    if requested > 0:
        return requested
    return max(1, (os.cpu_count() or 1) // max(world, 1))


def validate_configs(model_cfg: ModelConfig, train_cfg: TrainConfig) -> None:
    bad = [a for a in model_cfg.ablate if a not in ABLATIONS]
    if bad:
        raise EdgerecError(f"unknown ablation {bad[0]!r}; choose from {', '.join(ABLATIONS)}")
    if {"long", "short"} <= set(model_cfg.ablate):
        raise EdgerecError("cannot ablate both the long- and the short-term vector")
    if {"text", "id"} <= set(model_cfg.ablate):
        raise EdgerecError("cannot ablate both the text features and the ID embedding")
    for name, allowed in CHOICES.items():
        value = getattr(model_cfg, name)
        if value not in allowed:
            raise EdgerecError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    if train_cfg.sampled_softmax not in ("auto", "on", "off"):
        raise EdgerecError(
            f"sampled_softmax must be auto, on or off, got {train_cfg.sampled_softmax!r}"
        )
    if train_cfg.finetune_layers:
        raise EdgerecError(
            "fine-tuning text encoder layers is not supported: the item tower uses "
            "precomputed (frozen) text embeddings; use --finetune-layers 0"
        )
    for name, value in (
        ("epochs", train_cfg.epochs),
        ("batch_size", train_cfg.batch_size),
        ("max_len", model_cfg.max_len or 1),  # 0: from the data
        ("window", model_cfg.window),
        ("dim", model_cfg.dim),
        ("hidden", model_cfg.hidden),
    ):
        if value < 1:
            raise EdgerecError(f"{name} must be >= 1, got {value}")
    if model_cfg.max_len < 0:
        raise EdgerecError(f"max_len must be >= 1 (or 0: from the data), got {model_cfg.max_len}")
    if model_cfg.id_prior < 0:
        raise EdgerecError(f"id_prior must be >= 0, got {model_cfg.id_prior}")
    if not 0.0 <= model_cfg.dropout < 1.0:
        raise EdgerecError(f"dropout must be in [0, 1), got {model_cfg.dropout}")
    if not 0.0 <= model_cfg.horizon_dropout < 1.0:
        raise EdgerecError(f"horizon_dropout must be in [0, 1), got {model_cfg.horizon_dropout}")
    if train_cfg.lr <= 0:
        raise EdgerecError(f"lr must be > 0, got {train_cfg.lr}")
    if train_cfg.schedule not in ("plateau", "cosine"):
        raise EdgerecError(f"schedule must be plateau or cosine, got {train_cfg.schedule!r}")
    if not 0.0 <= train_cfg.cooldown <= 1.0:
        raise EdgerecError(f"cooldown must be in [0, 1], got {train_cfg.cooldown}")
    if not train_cfg.time_budget >= 0:
        raise EdgerecError(f"time_budget must be >= 0 seconds, got {train_cfg.time_budget}")
    if train_cfg.patience < 1:
        raise EdgerecError(f"patience must be >= 1, got {train_cfg.patience}")


# --------------------------------------------------------------------------- text


def item_text_embeddings(
    dataset: Dataset, train_cfg: TrainConfig, model_cfg: ModelConfig, progress=None
) -> tuple[np.ndarray, dict]:
    """(n_items, text_dim) float32 embeddings of the catalog texts and their provenance."""
    texts = list(dataset.catalog.texts)
    if "text" in model_cfg.ablate:
        return np.zeros((len(texts), model_cfg.text_dim), np.float32), {"kind": "none"}
    if train_cfg.text_encoder == "random":
        # For tests and ablations that are not about text: fixed, content-free vectors.
        rng = np.random.default_rng(12345)
        emb = rng.normal(size=(len(texts), model_cfg.text_dim)).astype(np.float32)
        return emb, {"kind": "random", "dim": model_cfg.text_dim}
    from edgerec.training.text_encoder import encode_texts, resolve_text_encoder, weights_digest

    path = resolve_text_encoder(train_cfg.text_encoder)
    emb, key = encode_texts(texts, path, progress=progress)
    return emb.astype(np.float32), {
        "kind": "pretrained",
        "path": str(path),
        "digest": weights_digest(path),
        "cache_key": key,
        "pooling": "mean",
        "max_length": 64,
        "dim": int(emb.shape[1]),
    }


# --------------------------------------------------------------------------- model step


def _train_step_module(model, train_cfg: TrainConfig, log_popularity, sampled: bool):
    """An nn.Module whose forward returns the per-task losses (DDP hooks need a forward)."""
    import torch
    from torch import nn

    from edgerec.training import losses as L

    class TrainStep(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.register_buffer("log_popularity", log_popularity)

        def forward(
            self, items, behaviours, gaps, lengths, targets, tbeh, tcat, ucat, future, seen, rgaps
        ):
            m = self.model
            rows, cols = torch.nonzero(future, as_tuple=True)
            decay = train_cfg.future_decay ** cols.to(torch.float32)
            if sampled:  # large catalogs: no seen-item masking, no full table
                enc = m.encode_users(items, behaviours, gaps, lengths, request_gaps=rgaps)
                n_neg = min(train_cfg.num_negatives, m.cfg.n_items)

                def sampled_loss(user, tgt, reduction="mean"):
                    return L.sampled_softmax_loss(
                        user, m.items, tgt, self.log_popularity, m.cfg.n_items, n_neg, reduction
                    )

                out = {"retrieval": sampled_loss(enc.user, targets)}
                if len(rows):
                    per = sampled_loss(enc.user[rows], future[rows, cols], "none")
                    out["future"] = (per * decay).sum() / decay.sum()
                target_vecs = m.items(targets)
            else:
                table = m.items()
                enc = m.encode_users(
                    items, behaviours, gaps, lengths, item_table=table, request_gaps=rgaps
                )
                logp = L.catalog_log_probs(enc.user, table, seen)
                ls = train_cfg.label_smoothing
                out = {"retrieval": L.smoothed_nll(logp, targets, ls)}
                if len(rows):
                    # the items after the target: ML-style bursts make their order arbitrary
                    per = L.smoothed_nll(logp[rows], future[rows, cols], ls, "none")
                    out["future"] = (per * decay).sum() / decay.sum()
                target_vecs = table[targets]
            if "aux" not in m.cfg.ablate:
                heads = m.heads(enc.user, enc.long, enc.short, target_vecs)
                out["behaviour"] = L.behaviour_loss(heads["behaviour"], tbeh)
                out["next_category"] = L.next_category_loss(heads["next_category"], tcat)
                out["user_category"] = L.user_category_loss(heads["user_category"], ucat)
            return out

    return TrainStep()


def total_loss(parts: dict, train_cfg: TrainConfig, model):
    from edgerec.training import losses as L

    grouped = {"retrieval": parts["retrieval"]}
    if "future" in parts:
        grouped["retrieval"] = parts["retrieval"] + train_cfg.future_weight * parts["future"]
    if "behaviour" in parts:
        grouped["behaviour"] = parts["behaviour"]
        grouped["interest"] = parts["next_category"] + parts["user_category"]
    log_vars = model.task_log_vars if train_cfg.uncertainty_weighting else None
    return L.combine(grouped, train_cfg.loss_weights, log_vars)


def lr_lambda(train_cfg: TrainConfig, total_steps: int, phase: dict | None = None):
    """The lr multiplier at each optimizer step.

    "cosine": warm-up, then cosine decay over ``total_steps``. "plateau": warm-up, then
    constant until the trainer starts the cool-down (``phase["cooldown_start"]`` >= 0, a
    step), then cosine decay over ``phase["cooldown_steps"]``; the trainer decides when
    from the validation curve, so nothing here assumes a number of epochs.
    """
    warm = max(int(train_cfg.warmup_steps), 0)
    floor = float(train_cfg.min_lr_ratio)

    def decay(progress: float) -> float:
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    def f(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if train_cfg.schedule == "cosine":
            return decay((step - warm) / max(total_steps - warm, 1))
        start = -1 if phase is None else phase.get("cooldown_start", -1)
        if start < 0 or step < start:
            return 1.0
        return decay((step - start) / max(phase.get("cooldown_steps", 1), 1))

    return f


def parse_duration(text: str | float | int | None) -> float:
    """Seconds from ``600``, ``"600s"``, ``"10m"``, ``"1.5h"``; 0 for None/empty."""
    if text is None or text == "":
        return 0.0
    if isinstance(text, int | float):
        value = float(text)
    else:
        raw = str(text).strip().lower()
        unit = {"s": 1.0, "m": 60.0, "h": 3600.0}.get(raw[-1:], None)
        try:
            value = float(raw[:-1] if unit else raw) * (unit or 1.0)
        except ValueError:
            raise EdgerecError(
                f"time budget {text!r}: expected seconds, or a number with s, m or h"
            ) from None
    if not math.isfinite(value) or value < 0:
        raise EdgerecError(f"time budget {text!r}: must be >= 0")
    return value


def make_optimizer(model, train_cfg: TrainConfig):
    """AdamW; biases, norms, scalars and embeddings carry no weight decay."""
    import torch

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or name.endswith("_emb.weight"):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [
        {"params": decay, "weight_decay": train_cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=train_cfg.lr)


# --------------------------------------------------------------------------- checkpoints


def _optimizer_to_tensors(opt) -> tuple[dict, dict]:
    import torch

    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_from_tensors(opt, tensors: dict, meta: dict) -> None:
    state: dict = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, pid, k = key.split(".", 2)
            state.setdefault(int(pid), {})[k] = v
    for key, v in meta.get("scalars", {}).items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(run_dir: Path, model, opt, sched, state: dict) -> None:
    """Weights + optimizer + scheduler + RNG + loop state, as one atomic directory."""
    import torch
    from safetensors.torch import save

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt_tensors, opt_meta = _optimizer_to_tensors(opt)
    tensors.update(opt_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    sched_state = {k: v for k, v in sched.state_dict().items() if k != "lr_lambdas"}
    meta = {**state, "optimizer": opt_meta, "scheduler": sched_state}
    with atomic_directory(run_dir / CHECKPOINT_DIR) as tmp:
        (tmp / STATE_TENSORS).write_bytes(save(tensors))
        (tmp / STATE_JSON).write_text(json.dumps(meta, indent=1))


def load_checkpoint(run_dir: Path, model, opt, sched, device) -> dict | None:
    """Restore everything save_checkpoint wrote; None when the run has no checkpoint."""
    import torch
    from safetensors.torch import load_file

    ckpt = run_dir / CHECKPOINT_DIR
    recover_directory(ckpt)  # killed between the two renames of a checkpoint swap
    if not (ckpt / STATE_JSON).is_file() or not (ckpt / STATE_TENSORS).is_file():
        return None
    try:
        meta = json.loads((ckpt / STATE_JSON).read_text())
        tensors = load_file(str(ckpt / STATE_TENSORS))
    except Exception as e:
        raise RunError(f"{ckpt}: unreadable checkpoint ({e})") from None
    weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise RunError(f"{ckpt}: checkpoint does not match the model config")
    model.to(device)
    _optimizer_from_tensors(opt, tensors, meta["optimizer"])
    sched_state = dict(meta["scheduler"])
    sched.load_state_dict({**sched.state_dict(), **sched_state})
    torch.set_rng_state(tensors["rng.torch"])
    if torch.cuda.is_available():
        cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
    return meta


# --------------------------------------------------------------------------- progress


class _Progress:
    """Progress on the main process (edgerec.commands.progress); silent elsewhere."""

    def __init__(self, enabled: bool, epochs: int, steps: int) -> None:
        self.enabled, self.epochs = enabled, epochs
        if not enabled:
            return
        from edgerec.commands.progress import Progress

        self.bar = Progress()
        self.bar.start()
        self.batches = self.bar.add_task(f"epoch 1 (max {epochs})", total=steps)

    def start_epoch(self, epoch: int, done: int) -> None:
        if self.enabled:
            self.batches.reset(description=f"epoch {epoch + 1} (max {self.epochs})")

    def step(self, losses: dict) -> None:
        if self.enabled:
            info = " ".join(f"{k[:8]} {v:.3f}" for k, v in losses.items())
            self.batches.update(advance=1, info=info)

    def end_epoch(self, line: str, done: int) -> None:
        if self.enabled:
            self.bar.print(line)

    def close(self) -> None:
        if self.enabled:
            self.bar.stop()


@contextlib.contextmanager
def _text_progress(enabled: bool):
    """A ``progress(done, total)`` for encoding the item texts, or None."""
    if not enabled:
        yield None
        return
    from edgerec.commands.progress import Progress

    bar, tasks = Progress(transient=True), []

    def report(done: int, total: int) -> None:
        if not tasks:  # shown once encoding starts (not for cached or random vectors)
            bar.start()
            tasks.append(bar.add_task("encoding item texts", total))
        tasks[0].update(done=done, total=total)

    try:
        yield report
    finally:
        if tasks:
            bar.stop()


# --------------------------------------------------------------------------- train


def _prepare_configs(dataset, model_cfg, train_cfg, out_dir: Path, resume: bool):
    if resume and (out_dir / CONFIG_FILE).is_file():
        saved = json.loads((out_dir / CONFIG_FILE).read_text())
        want = saved.get("data", {}).get("fingerprint")
        if want is not None and want != dataset.fingerprint():
            raise RunError(
                f"{out_dir}: the run was trained on data with fingerprint {want}, "
                f"not {dataset.fingerprint()} ({dataset.name}); resume with the same data"
            )
        return ModelConfig.from_dict(saved["model"]), TrainConfig.from_dict(saved["train"])
    if resume:
        raise RunError(f"{out_dir}: nothing to resume (no {CONFIG_FILE})")
    model_cfg = ModelConfig.from_dict((model_cfg or ModelConfig()).to_dict())
    train_cfg = TrainConfig.from_dict((train_cfg or TrainConfig()).to_dict())
    model_cfg.n_items = int(dataset.n_items)
    model_cfg.n_behaviours = max(len(dataset.behaviour_vocab), 1)
    model_cfg.n_categories = len(dataset.catalog.category_names)
    return model_cfg, train_cfg


def train(
    dataset: Dataset,
    out_dir: Path | str,
    model_cfg: ModelConfig | None = None,
    train_cfg: TrainConfig | None = None,
    *,
    progress: bool = True,
    resume: bool = False,
    data_source: dict | None = None,
    stop_after_epochs: int | None = None,
) -> dict:
    """Train on ``dataset``, write the run directory, return its metrics.json content.

    ``data_source`` (loader name, data_dir, kcore, columns) lets ``evaluate --run``
    reload the data later; synthetic data sets are recorded automatically.
    ``resume=True`` continues from ``out_dir``'s checkpoint with the configs saved
    there. ``stop_after_epochs`` ends the process early (as an interruption would),
    leaving a resumable checkpoint; used by tests.
    """
    import torch

    out_dir = Path(out_dir)
    model_cfg, train_cfg = _prepare_configs(dataset, model_cfg, train_cfg, out_dir, resume)
    validate_configs(model_cfg, train_cfg)
    if resume and (out_dir / METRICS_FILE).is_file():
        metrics = json.loads((out_dir / METRICS_FILE).read_text())
        if metrics.get("finished"):
            return metrics
    device = resolve_device(train_cfg.device)
    dist = distributed.setup(device.type)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    threads_before = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads(train_cfg.num_threads, dist.world))
    try:
        return _train(
            dataset,
            out_dir,
            model_cfg,
            train_cfg,
            device=device,
            dist=dist,
            progress=progress,
            resume=resume,
            data_source=data_source or {},
            stop_after_epochs=stop_after_epochs,
        )
    finally:
        torch.set_num_threads(threads_before)
        distributed.teardown(dist)


def _train(
    dataset,
    out_dir,
    model_cfg,
    train_cfg,
    *,
    device,
    dist,
    progress,
    resume,
    data_source,
    stop_after_epochs,
) -> dict:
    import torch

    from edgerec.evaluation import evaluate, evaluate_both
    from edgerec.training.model import InterestModel

    t_start = time.perf_counter()
    split = leave_one_out(dataset)
    data_shape = scaling.data_shape(split)
    if model_cfg.max_len == 0:  # the rule in training/scaling.py
        model_cfg.max_len = scaling.max_len_rule(data_shape)
    samples = training_samples(split)
    if len(samples) == 0:
        raise EdgerecError(f"{dataset.name}: no training samples (users need >= 4 events)")
    builder = BatchBuilder(
        dataset,
        split,
        samples,
        model_cfg.max_len,
        future=train_cfg.future_targets,
        mask_seen=train_cfg.mask_seen,
    )
    show = progress and dist.is_main

    # Text embeddings: rank 0 fills the on-disk cache, the others then read it.
    if dist.is_main:
        with _text_progress(show) as text_progress:
            text_emb, text_info = item_text_embeddings(
                dataset, train_cfg, model_cfg, progress=text_progress
            )
    distributed.barrier(dist)
    if not dist.is_main:
        text_emb, text_info = item_text_embeddings(dataset, train_cfg, model_cfg)
    model_cfg.text_dim = int(text_emb.shape[1])

    torch.manual_seed(train_cfg.seed)
    np.random.seed(train_cfg.seed)
    model = InterestModel(model_cfg)
    with torch.no_grad():
        model.items.text_embeddings[1:] = torch.from_numpy(text_emb)
        if model_cfg.id_prior > 0:
            counts = scaling.item_counts(split, model_cfg.n_items)
            scale = scaling.id_scale(counts, model_cfg.id_prior)
            model.items.id_scale.copy_(torch.from_numpy(scale))
    model.task_log_vars.requires_grad_(train_cfg.uncertainty_weighting)
    model.to(device)

    n_items = model_cfg.n_items
    sampled = train_cfg.sampled_softmax == "on" or (
        train_cfg.sampled_softmax == "auto" and n_items > train_cfg.full_softmax_max_items
    )
    pop = np.bincount(split.sequences.items[split.train_events()], minlength=n_items + 1)
    log_pop = torch.from_numpy(np.log((pop + 1.0) / (pop + 1.0)[1:].sum())).float()
    step_module = _train_step_module(model, train_cfg, log_pop, sampled).to(device)
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        step_module = DDP(
            step_module,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=bool(model_cfg.ablate),
        )

    hist_lengths = samples.history_lengths(model_cfg.max_len)

    def batches_of(epoch: int) -> list[np.ndarray]:
        return epoch_order(
            len(samples),
            train_cfg.seed,
            epoch,
            dist.rank,
            dist.world,
            train_cfg.batch_size,
            lengths=hist_lengths if train_cfg.length_buckets else None,
        )

    batches_per_epoch = len(batches_of(0))
    total_steps = batches_per_epoch * train_cfg.epochs
    opt = make_optimizer(model, train_cfg)
    # the plateau schedule's cool-down, decided as training goes (checkpointed in state)
    phase = {"cooldown_start": -1, "cooldown_steps": 0}
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(train_cfg, total_steps, phase))

    config = {
        "model": model_cfg.to_dict(),
        "train": train_cfg.to_dict(),
        "data": data_spec(dataset, **data_source),
        "text_encoder": text_info,
        "training": {
            "samples": len(samples),
            "sampled_softmax": sampled,
            "world_size": dist.world,
            "device": device.type,
            "steps_per_epoch": batches_per_epoch,
            **({"data_shape": data_shape} if data_shape else {}),
        },
    }
    state = {
        "epoch": 0,
        "step": 0,
        "best_epoch": -1,
        "best_step": 0,
        "best_ndcg": -1.0,
        "bad_epochs": 0,
        "cooldown_start": -1,
        "cooldown_steps": 0,
        "cooldown_trigger": None,
        "stop_reason": None,
        "history": [],
    }
    if resume:
        loaded = load_checkpoint(out_dir, model, opt, sched, device)
        if loaded is not None:
            state = {k: loaded.get(k, v) for k, v in state.items()}
            if "step" not in loaded:  # checkpoints of whole epochs before steps were kept
                state["step"] = state["epoch"] * batches_per_epoch
    elif dist.is_main:
        if (out_dir / CHECKPOINT_DIR).exists() or (out_dir / MODEL_FILE).exists():
            raise RunError(f"{out_dir}: already holds a run; pass resume=True or a new folder")
        write_run_files(out_dir, config=config, catalog=catalog_dict(dataset))
    distributed.barrier(dist)
    phase.update(cooldown_start=state["cooldown_start"], cooldown_steps=state["cooldown_steps"])

    plateau = train_cfg.schedule == "plateau"
    budget = float(train_cfg.time_budget)
    share = float(train_cfg.cooldown)

    def start_cooldown(step: int, steps: int, trigger: str) -> None:
        steps = max(1, min(steps, total_steps - step))
        state.update(cooldown_start=step, cooldown_steps=steps, bad_epochs=0)
        state["cooldown_trigger"] = trigger  # "plateau", "epochs" or "time_budget"
        phase.update(cooldown_start=step, cooldown_steps=steps)

    bar = _Progress(show, train_cfg.epochs, batches_per_epoch)
    elapsed_before = sum(h.get("seconds", 0.0) for h in state["history"])
    t_loop = time.perf_counter()

    def elapsed() -> float:
        return elapsed_before + (time.perf_counter() - t_loop)

    try:
        for epoch in range(state["epoch"], train_cfg.epochs):
            if state["stop_reason"]:
                break
            t_epoch = time.perf_counter()
            cpu_epoch = time.process_time()
            torch.manual_seed(train_cfg.seed * 100_003 + epoch * 101 + dist.rank)
            bar.start_epoch(epoch, epoch)
            step_module.train()
            sums = dict.fromkeys(LOSS_NAMES, 0.0)
            counts = dict.fromkeys(LOSS_NAMES, 0)
            stop_now = None  # a reason to stop inside the epoch
            for index in batches_of(epoch):
                b = builder(index)
                tensors = [
                    torch.from_numpy(np.ascontiguousarray(a)).to(device)
                    for a in (
                        b.items,
                        b.behaviours,
                        b.gaps,
                        b.lengths,
                        b.targets,
                        b.target_behaviours,
                    )
                ]
                future = torch.from_numpy(b.future_targets).to(device)
                seen = None
                if b.seen is not None:
                    seen = tuple(torch.from_numpy(a).to(device) for a in b.seen)
                tcat = torch.from_numpy(b.target_categories).to(device)
                ucat = torch.from_numpy(b.user_categories).to(device)
                rgaps = torch.from_numpy(b.request_gaps).to(device)
                parts = step_module(*tensors, tcat, ucat, future, seen, rgaps)
                loss = total_loss(parts, train_cfg, model)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if train_cfg.clip_norm > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.clip_norm)
                opt.step()
                sched.step()
                if not math.isfinite(float(loss.detach())):
                    raise EdgerecError(f"training diverged at epoch {epoch + 1} (loss {loss})")
                for k, v in parts.items():
                    sums[k] += float(v.detach())
                    counts[k] += 1
                bar.step({k: sums[k] / counts[k] for k in parts})
                state["step"] += 1
                step = state["step"]
                # time: rank 0's clock decides for every rank
                spent = elapsed() if budget > 0 else 0.0
                if budget > 0 and dist.enabled:
                    spent = distributed.broadcast_floats(dist, [spent], device)[0]
                if plateau and state["cooldown_start"] < 0 and share > 0:
                    if step * (1.0 + share) >= total_steps:  # end the cool-down at the ceiling
                        start_cooldown(step, total_steps - step, "epochs")
                    elif budget > 0 and spent >= 0.95 * budget / (1.0 + share):
                        start_cooldown(step, math.ceil(share * step), "time_budget")
                cool = state["cooldown_start"]
                if plateau and cool >= 0 and step >= cool + state["cooldown_steps"]:
                    stop_now = "cooldown_done"
                elif budget > 0 and spent >= budget:
                    stop_now = "time_budget"
                if stop_now:
                    break
            names = [k for k in LOSS_NAMES if counts[k]]
            means = distributed.mean_floats(dist, [sums[k] / counts[k] for k in names], device)
            epoch_losses = dict(zip(names, means, strict=True))

            # Validation on rank 0; the decision is broadcast so all ranks stop together.
            valid = {}
            if dist.is_main:
                scorer = model_scorer(model, split, model_cfg.max_len, device)
                valid = evaluate(scorer, split, "valid", batch_size=train_cfg.eval_batch_size)
            ndcg = distributed.broadcast_floats(dist, [valid.get("ndcg@10", 0.0)], device)[0]
            improved = ndcg > state["best_ndcg"]
            if improved:
                state.update(best_ndcg=ndcg, best_epoch=epoch, best_step=state["step"])
                state["bad_epochs"] = 0
                if dist.is_main:
                    save_weights(out_dir / MODEL_FILE, model)
            else:
                state["bad_epochs"] += 1
            seconds = time.perf_counter() - t_epoch
            state["history"].append(
                {
                    "epoch": epoch + 1,
                    "step": state["step"],
                    "partial": stop_now is not None,
                    "losses": epoch_losses,
                    "valid": valid,
                    "lr": sched.get_last_lr()[0],
                    "cooldown": state["cooldown_start"] >= 0,
                    "seconds": seconds,
                    "elapsed": elapsed(),
                    "cpu_seconds": time.process_time() - cpu_epoch,
                }
            )
            state["epoch"] = epoch + 1
            if stop_now:
                state["stop_reason"] = stop_now
            elif state["bad_epochs"] >= train_cfg.patience:
                if plateau and share > 0 and state["cooldown_start"] < 0:
                    start_cooldown(state["step"], math.ceil(share * state["step"]), "plateau")
                elif not plateau or share == 0:
                    state["stop_reason"] = "patience"
            if not state["stop_reason"] and state["epoch"] >= train_cfg.epochs:
                state["stop_reason"] = "epochs"
            if dist.is_main:
                save_checkpoint(out_dir, model, opt, sched, state)
            distributed.barrier(dist)
            loss_txt = " ".join(f"{k} {v:.4f}" for k, v in epoch_losses.items())
            bar.end_epoch(
                f"epoch {epoch + 1:3d}  {loss_txt}  valid ndcg@10 {ndcg:.4f} "
                f"hr@10 {valid.get('hr@10', 0.0):.4f}  {seconds:.0f}s"
                + ("  *" if improved else "")
                + (f"  ({state['stop_reason']})" if state["stop_reason"] else ""),
                epoch + 1,
            )
            if state["stop_reason"]:
                break
            if stop_after_epochs is not None and state["epoch"] >= stop_after_epochs:
                return {"interrupted": True, "epoch": state["epoch"]}
    finally:
        bar.close()

    train_seconds = elapsed_before + (time.perf_counter() - t_start)
    metrics: dict = {}
    if dist.is_main:
        load_weights(out_dir / MODEL_FILE, model)
        model.to(device)
        scorer = model_scorer(model, split, model_cfg.max_len, device)
        result = evaluate_both(scorer, split, batch_size=train_cfg.eval_batch_size)
        metrics = {
            "finished": True,
            "dataset": dataset.name,
            "model": "edgerec",
            "best_epoch": state["best_epoch"] + 1,
            "best_step": state["best_step"],
            "epochs_run": state["epoch"],
            "steps_run": state["step"],
            "stopped_early": state["stop_reason"] != "epochs",
            "stop_reason": state["stop_reason"],
            "cooldown_start_step": state["cooldown_start"],
            "cooldown_trigger": state["cooldown_trigger"],
            **result,
            "curve": validation_curve(state["history"]),
            "history": state["history"],
            "train_seconds": train_seconds,
            "train_cpu_seconds": sum(h.get("cpu_seconds", 0.0) for h in state["history"]),
        }
        atomic_write_json(out_dir / METRICS_FILE, metrics)
    distributed.barrier(dist)
    return metrics


def validation_curve(history: list[dict]) -> list[dict]:
    """One row per evaluation: epoch, step, valid NDCG@10, main-task loss, seconds so far."""
    rows, total = [], 0.0
    for h in history:
        total += h.get("seconds", 0.0)
        rows.append(
            {
                "epoch": h["epoch"],
                "step": h.get("step"),
                "valid_ndcg@10": h["valid"].get("ndcg@10"),
                "loss": h["losses"].get("retrieval"),
                "seconds": round(h.get("elapsed", total), 2),
                "cooldown": h.get("cooldown", False),
            }
        )
    return rows
