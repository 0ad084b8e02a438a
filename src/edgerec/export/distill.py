"""Smaller students for both encoders, trained to imitate the trained model (the teacher).

Text student: a BERT with fewer, narrower layers and the teacher's tokenizer, started
from the teacher by layer dropping (evenly spaced layers kept) and weight truncation
(the first ``text_hidden`` features of every matrix; heads keep the teacher's head
width so a truncated head is a whole teacher head), or from scratch. It learns the
teacher's *projected* item vectors on catalog texts and cheap augmentations of them (a
field dropped, a genre list shuffled), so it also serves items that are not in the
catalog: a share of items is held out of training to measure that, and the report
scores those items as cold ones (text-only vectors) against the teacher's.

User student: the same architecture with a narrower Bi-LSTM (``user_hidden_ratio``),
trained by knowledge distillation: KL between the teacher's and the student's score
distributions over the whole catalog at temperature T, plus the hard next-item loss, on
the run's training prefixes. It shares the teacher's item table (frozen), so the
bundle's item matrix serves both.
"""

from __future__ import annotations

import math
import re
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgerec.export.config import DistillConfig
from edgerec.export.onnx_text import TextTower, encode_torch, tokenize

# ----------------------------------------------------------------------- text student

_FIELD_SPLIT = re.compile(r"(?<=[.|;])\s+")
_LIST_FIELD = re.compile(r"^(?P<label>[^:]{1,40}:\s*)(?P<items>.+?)(?P<end>[.]?)$")


def augment_text(text: str, rng: np.random.Generator) -> str:
    """One cheap variant: shuffle the entries of a ``Label: a, b, c`` field, and/or drop
    one field other than the first (the title), or drop one word of a one-field text."""
    fields = [f for f in _FIELD_SPLIT.split(text.strip()) if f]
    changed = False
    for i, field in enumerate(fields):
        m = _LIST_FIELD.match(field)
        if m and "," in m["items"] and rng.random() < 0.7:
            entries = [e.strip() for e in m["items"].split(",")]
            rng.shuffle(entries)
            fields[i] = m["label"] + ", ".join(entries) + m["end"]
            changed = True
    if len(fields) > 1 and (rng.random() < 0.5 or not changed):
        del fields[int(rng.integers(1, len(fields)))]
        changed = True
    if not changed:
        words = text.split()
        if len(words) > 1:
            del words[int(rng.integers(len(words)))]
            return " ".join(words)
    return " ".join(fields)


def _kept_layers(n_teacher: int, n_student: int) -> list[int]:
    """Evenly spaced teacher layers, always including the first and the last."""
    if n_student >= n_teacher:
        return list(range(n_teacher))
    if n_student == 1:
        return [n_teacher - 1]
    return [round(i * (n_teacher - 1) / (n_student - 1)) for i in range(n_student)]


def _truncate_into(student: nn.Module, teacher: nn.Module) -> None:
    """Copy every teacher tensor into the student's tensor of the same name, keeping the
    leading slice of each axis (where the student is wider, the rest keeps its init)."""
    t_state = teacher.state_dict()
    with torch.no_grad():
        for name, param in student.state_dict().items():
            src = t_state.get(name)
            if src is None or src.dim() != param.dim():
                continue
            common = tuple(slice(0, min(a, b)) for a, b in zip(param.shape, src.shape, strict=True))
            param[common].copy_(src[common])


def make_text_student(teacher: TextTower, config: DistillConfig) -> TextTower:
    from transformers import BertConfig, BertModel

    tcfg = teacher.bert.config
    head_dim = tcfg.hidden_size // tcfg.num_attention_heads
    hidden = int(config.text_hidden)
    if config.text_init == "teacher":
        if hidden > tcfg.hidden_size or hidden % head_dim:
            raise ValueError(
                f"text_hidden {hidden} must be a multiple of the teacher's head width "
                f"{head_dim} and at most {tcfg.hidden_size} to start from the teacher"
            )
        heads = hidden // head_dim
    elif config.text_init == "scratch":
        heads = int(config.text_heads)
        if hidden % heads:
            raise ValueError(f"text_hidden {hidden} is not divisible by text_heads {heads}")
    else:
        raise ValueError(f"text_init must be 'teacher' or 'scratch', got {config.text_init!r}")
    scfg = BertConfig(
        vocab_size=tcfg.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=int(config.text_layers),
        num_attention_heads=heads,
        intermediate_size=int(config.text_intermediate),
        max_position_embeddings=tcfg.max_position_embeddings,
        type_vocab_size=tcfg.type_vocab_size,
        pad_token_id=tcfg.pad_token_id,
        layer_norm_eps=tcfg.layer_norm_eps,
        hidden_act=tcfg.hidden_act,
    )
    torch.manual_seed(config.seed)
    bert = BertModel(scfg, add_pooling_layer=False)
    proj = nn.Linear(hidden, teacher.proj.out_features)
    if config.text_init == "teacher":
        t_bert = teacher.bert
        kept = _kept_layers(tcfg.num_hidden_layers, scfg.num_hidden_layers)
        _truncate_into(bert.embeddings, t_bert.embeddings)
        for s_layer, t_index in zip(bert.encoder.layer, kept, strict=True):
            _truncate_into(s_layer, t_bert.encoder.layer[t_index])
        with torch.no_grad():
            proj.weight.copy_(teacher.proj.weight[:, :hidden])
            proj.bias.copy_(teacher.proj.bias)
    return TextTower(bert, proj)


def _param_count(module: nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def _encode_batches(tower: TextTower, tokenizer, texts: list[str], max_length: int, bs=64):
    out = [
        encode_torch(tower, tokenize(tokenizer, texts[i : i + bs], max_length))
        for i in range(0, len(texts), bs)
    ]
    return np.concatenate(out) if out else np.zeros((0, tower.proj.out_features), np.float32)


def text_holdout(n_texts: int, config: DistillConfig) -> tuple[np.ndarray, np.ndarray]:
    """(held-out, training) text indices: the share ``text_holdout`` the student never
    sees, chosen by ``config.seed``, so its quality on unseen items can be measured."""
    order = np.random.default_rng([config.seed, 1]).permutation(n_texts)
    n_hold = int(round(n_texts * config.text_holdout)) if n_texts >= 10 else 0
    return np.sort(order[:n_hold]), np.sort(order[n_hold:])


def _vector_loss(pred: torch.Tensor, target: torch.Tensor, config, scale: float, center):
    """The student's loss. "centered": cosine distance plus the squared relative error
    of the norm, on the vectors' offsets from the catalog's mean text vector. Unlike MSE
    it does not pay a student unsure of an unseen title to shrink the offset, and a cold
    item's rank among the warm ones hangs on that offset's length
    (benchmarks/results/text_student.md). "mse": MSE relative to the vectors' size plus
    cosine distance, as before."""
    if config.text_loss == "mse":
        return F.mse_loss(pred, target) / scale + (1 - F.cosine_similarity(pred, target)).mean()
    pred, target = pred - center, target - center
    ratio = pred.norm(dim=-1) / target.norm(dim=-1).clamp(min=1e-8)
    return (1 - F.cosine_similarity(pred, target)).mean() + (ratio - 1).pow(2).mean()


def distill_text_encoder(
    teacher: TextTower,
    tokenizer,
    texts: list[str],
    *,
    max_length: int,
    config: DistillConfig,
    model=None,
    split=None,
    progress=None,
) -> tuple[TextTower, dict]:
    """Train a text student; returns it (eval mode) and the report for the manifest."""
    t0 = time.perf_counter()
    if config.text_loss not in ("centered", "mse"):
        raise ValueError(f"text_loss must be 'centered' or 'mse', got {config.text_loss!r}")
    rng = np.random.default_rng(config.seed)
    held, train_idx = text_holdout(len(texts), config)

    # the training pool: each training text plus augmented copies; teacher targets once
    train_texts = [texts[i] for i in train_idx]
    pool = list(train_texts)
    for _ in range(config.text_augment):
        pool += [augment_text(t, rng) for t in train_texts]
    teacher = teacher.eval()
    targets = torch.from_numpy(_encode_batches(teacher, tokenizer, pool, max_length))

    student = make_text_student(teacher, config)
    student.train()
    opt = torch.optim.AdamW(student.parameters(), lr=config.text_lr, weight_decay=0.01)
    steps = int(config.text_steps)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)),
    )
    scale = float(targets.pow(2).mean().clamp(min=1e-8))  # MSE relative to the vectors' size
    center = targets[: len(train_texts)].mean(0)  # the catalog's mean item text vector
    losses = []
    for step in range(steps):
        batch = rng.choice(len(pool), size=min(config.text_batch_size, len(pool)), replace=False)
        feed = tokenize(tokenizer, [pool[i] for i in batch], max_length)
        pred = student(
            *(torch.from_numpy(feed[k]) for k in ("input_ids", "attention_mask", "token_type_ids"))
        )
        loss = _vector_loss(pred, targets[batch], config, scale, center)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(step + 1, steps)
    student.eval()

    report = {
        "init": config.text_init,
        "layers": int(config.text_layers),
        "hidden": int(config.text_hidden),
        "student_parameters": _param_count(student),
        "teacher_parameters": _param_count(teacher),
        "steps": steps,
        "train_texts": len(pool),
        "loss_first": float(np.mean(losses[: max(1, steps // 10)])),
        "loss_last": float(np.mean(losses[-max(1, steps // 10) :])),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    eval_idx = held if len(held) else train_idx
    eval_texts = [texts[i] for i in eval_idx]
    s_eval = _encode_batches(student, tokenizer, eval_texts, max_length)
    t_eval = _encode_batches(teacher, tokenizer, eval_texts, max_length)
    cos = _cosines(s_eval, t_eval)
    report["heldout_texts"] = int(len(held))
    report["heldout_mean_cosine"] = float(cos.mean())
    report["heldout_min_cosine"] = float(cos.min())
    report["heldout_norm_ratio"] = float(
        (np.linalg.norm(s_eval, axis=1) / np.linalg.norm(t_eval, axis=1)).mean()
    )
    aug = [augment_text(t, rng) for t in eval_texts]
    cos_aug = _cosines(
        _encode_batches(student, tokenizer, aug, max_length),
        _encode_batches(teacher, tokenizer, aug, max_length),
    )
    report["heldout_augmented_mean_cosine"] = float(cos_aug.mean())
    if model is not None and split is not None:
        student_vecs = _encode_batches(student, tokenizer, texts, max_length)
        report.update(text_student_quality(model, split, student_vecs, held))
    return student, report


def text_student_quality(model, split, student_vecs: np.ndarray, held: np.ndarray) -> dict:
    """NDCG@10/HR@10 with the student's text vectors, against the teacher's, two ways.

    Whole model (test): the student's text vectors replace the teacher's in every item
    vector (the ID embeddings stay): the worst case, as if every item's text part came
    from the student. Cold items (valid + test events whose target is a held-out text):
    those items get text-only vectors, the teacher's projection or the student's, as a
    new item added by its text gets; the others keep their trained vectors. Warm: the
    other test events, with those cold vectors in the catalog.
    """
    from edgerec.evaluation import evaluate

    with torch.no_grad():
        table = model.items().float().clone()
        teacher_text = model.items.project_text(model.items.text_embeddings)
    table[0] = 0.0
    student_text = torch.from_numpy(student_vecs)
    swapped = table.clone()
    use_text = "text" not in model.cfg.ablate
    if use_text:
        swapped[1:] += student_text - teacher_text[1:]
    teacher_m = evaluate(_scorer(model, split, table), split, "test")
    student_m = evaluate(_scorer(model, split, swapped), split, "test")
    out = {
        "teacher_test_ndcg@10": float(teacher_m["ndcg@10"]),
        "teacher_test_hr@10": float(teacher_m["hr@10"]),
        "student_test_ndcg@10": float(student_m["ndcg@10"]),
        "student_test_hr@10": float(student_m["hr@10"]),
    }
    cold = torch.from_numpy(np.asarray(held, dtype=np.int64) + 1)
    if not use_text or not len(cold):
        return out
    tables = {"teacher": table.clone(), "student": table.clone()}
    tables["teacher"][cold] = teacher_text[cold]
    tables["student"][cold] = student_text[cold - 1]
    for name, t in tables.items():
        sums, events = np.zeros(2), 0
        for stage in ("valid", "test"):
            users = np.flatnonzero(np.isin(split.targets(stage), cold.numpy()))
            if len(users):
                m = evaluate(_scorer(model, split, t), split, stage, users=users)
                sums += len(users) * np.array([m["ndcg@10"], m["hr@10"]])
                events += len(users)
        out["cold_events"] = int(events)
        out[f"{name}_cold_ndcg@10"] = float(sums[0] / max(events, 1))
        out[f"{name}_cold_hr@10"] = float(sums[1] / max(events, 1))
        # the other test events: cold items that score too high push warm targets down
        warm = np.flatnonzero(~np.isin(split.targets("test"), cold.numpy()))
        out[f"{name}_warm_test_ndcg@10"] = float(
            evaluate(_scorer(model, split, t), split, "test", users=warm)["ndcg@10"]
        )
    return out


def _request_gaps(model, split, ends) -> torch.Tensor | None:
    """The request-time gap of each prediction, for models whose gate reads it."""
    from edgerec.training.inputs import request_gaps

    if not model.cfg.request_time:
        return None
    return torch.from_numpy(request_gaps(split, np.asarray(ends)))


def _scorer(model, split, table: torch.Tensor):
    from edgerec.training.inputs import stage_inputs

    max_len = model.cfg.max_len

    def scorer(users: np.ndarray, stage: str) -> np.ndarray:
        inputs = stage_inputs(split, users, stage, max_len)
        rgaps = _request_gaps(model, split, split.history_end(stage)[np.asarray(users)])
        with torch.inference_mode():
            enc = model.encode_users(
                *(torch.from_numpy(a) for a in inputs), item_table=table, request_gaps=rgaps
            )
            return (enc.user @ table.T).numpy()

    return scorer


# ----------------------------------------------------------------------- user student


def _block_index(teacher_size: int, student_size: int, h_t: int, h_s: int) -> torch.Tensor:
    """Indices of the teacher axis a student axis keeps.

    An axis made of k blocks of the hidden size (an LSTM's 4 gates, a Linear reading
    [fwd; bwd] outputs) keeps the first ``h_s`` units of every block, so each student
    unit is a whole teacher unit in the same role; any other axis keeps a leading slice.
    """
    k = teacher_size // h_t if teacher_size % h_t == 0 else 0
    if k and student_size == k * h_s:
        return torch.cat([torch.arange(b * h_t, b * h_t + h_s) for b in range(k)])
    return torch.arange(min(teacher_size, student_size))


def make_user_student(teacher, config: DistillConfig):
    """Teacher architecture with a narrower LSTM, started from the teacher: tensors of
    equal shape are copied (embeddings, norm, gate, the whole item tower -- frozen), the
    narrower ones keep the teacher's first hidden units of each block (see
    ``_block_index``), so the student starts as a pruned teacher, not from noise."""
    from edgerec.training.config import ModelConfig
    from edgerec.training.model import InterestModel

    cfg = ModelConfig.from_dict(teacher.cfg.to_dict())
    h_t = int(teacher.cfg.hidden)
    cfg.hidden = h_s = max(4, int(round(h_t * config.user_hidden_ratio)))
    torch.manual_seed(config.seed)
    student = InterestModel(cfg)
    t_state = teacher.state_dict()
    with torch.no_grad():
        for name, tensor in student.state_dict().items():
            src = t_state.get(name)
            if src is None or src.dim() != tensor.dim():
                continue
            for axis, size in enumerate(tensor.shape):
                idx = _block_index(src.shape[axis], size, h_t, h_s)
                src = src.index_select(axis, idx)
            if src.shape == tensor.shape:
                tensor.copy_(src)
    for p in student.items.parameters():
        p.requires_grad_(False)
    return student


def _user_params(model) -> int:
    return _param_count(model.user) + 1  # + temperature


# A distilled user encoder must keep ``DistillConfig.min_retention`` of the teacher's
# validation NDCG@10 (validation, so the choice does not select on the test set). When
# the configured student misses it, wider students are tried (hidden ratios below, the
# ones above the configured ratio), then the teacher itself is kept.
LARGER_HIDDEN_RATIOS = (0.75,)


def _train_user_student(teacher, split, config, ratio: float, table, progress=None):
    """One KD run of a student with ``ratio`` x the teacher's hidden size."""
    from dataclasses import replace

    from edgerec.training.inputs import window_inputs
    from edgerec.training.samples import epoch_order, training_samples

    if hasattr(config, "__dataclass_fields__"):
        config = replace(config, user_hidden_ratio=ratio)
    student = make_user_student(teacher, config)
    samples = training_samples(split)
    rng = np.random.default_rng(config.seed)
    if len(samples) > config.max_train_prefixes:
        keep = np.sort(rng.choice(len(samples), config.max_train_prefixes, replace=False))
    else:
        keep = np.arange(len(samples))
    T = float(config.temperature)
    seq = split.sequences
    trainable = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=config.user_lr, weight_decay=0.01)
    batches_per_epoch = math.ceil(len(keep) / config.user_batch_size)
    total = max(1, batches_per_epoch * int(config.user_epochs))
    warm = max(1, total // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)),
    )
    lengths = np.minimum(samples.end[keep] - samples.start[keep], student.cfg.max_len)
    losses, step = [], 0
    for epoch in range(int(config.user_epochs)):
        student.train()
        for batch in epoch_order(
            len(keep), config.seed, epoch, batch_size=config.user_batch_size, lengths=lengths
        ):
            idx = keep[batch]
            inputs = window_inputs(split, samples.start[idx], samples.end[idx], student.cfg.max_len)
            tensors = [torch.from_numpy(a) for a in inputs]
            targets = torch.from_numpy(seq.items[samples.end[idx]])
            rgaps = _request_gaps(teacher, split, samples.end[idx])  # teacher and student alike
            with torch.no_grad():
                t_enc = teacher.encode_users(*tensors, item_table=table, request_gaps=rgaps)
                t_logits = t_enc.user @ table.T
            s_enc = student.encode_users(*tensors, item_table=table, request_gaps=rgaps)
            s_logits = s_enc.user @ table.T
            t_logits[:, 0] = -1e9
            s_logits = s_logits.clone()
            s_logits[:, 0] = -1e9
            kd = F.kl_div(
                F.log_softmax(s_logits / T, dim=1),
                F.log_softmax(t_logits / T, dim=1),
                log_target=True,
                reduction="batchmean",
            ) * (T * T)
            hard = F.cross_entropy(s_logits, targets)
            loss = config.kd_weight * kd + (1 - config.kd_weight) * hard
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            step += 1
            if progress is not None:
                progress(step, total)
    student.eval()
    tenth = max(1, len(losses) // 10)
    info = {
        "hidden": int(student.cfg.hidden),
        "student_parameters": _user_params(student),
        "epochs": int(config.user_epochs),
        "steps": len(losses),
        "train_prefixes": int(len(keep)),
        "loss_first": float(np.mean(losses[:tenth])),
        "loss_last": float(np.mean(losses[-tenth:])),
    }
    return student, info


def _ndcg(model, split, table, stage: str) -> dict:
    from edgerec.evaluation import evaluate

    m = evaluate(_scorer(model, split, table), split, stage)
    return {"ndcg@10": float(m["ndcg@10"]), "hr@10": float(m["hr@10"])}


def _ratio(student: float, teacher: float) -> float:
    return float(student / teacher) if teacher > 0 else 1.0


def distill_user_encoder(teacher, split, *, config: DistillConfig, progress=None):
    """Train a user student by KD; returns the encoder to ship (eval mode) and the report.

    The student must keep ``config.min_retention`` of the teacher's validation NDCG@10. If it
    does not, wider students are trained (``LARGER_HIDDEN_RATIOS``), and if none does,
    the teacher itself is returned. The report says which (``chosen``: "student",
    "larger student" or "teacher"), with the retention (valid and test) of the returned
    encoder and every candidate tried; its ``student_*`` keys describe the returned one.
    """
    from edgerec.training.inputs import stage_inputs

    t0 = time.perf_counter()
    teacher = teacher.eval()
    with torch.no_grad():
        table = teacher.items().float().clone()
    table[0] = 0.0
    bound = float(config.min_retention)
    teacher_valid = _ndcg(teacher, split, table, "valid")
    teacher_test = _ndcg(teacher, split, table, "test")
    h_t = int(teacher.cfg.hidden)
    base = float(config.user_hidden_ratio)
    ratios = [base] + [r for r in LARGER_HIDDEN_RATIOS if r > base]
    candidates, chosen, chosen_info = [], None, None
    for i, ratio in enumerate(ratios):
        if max(4, int(round(h_t * ratio))) >= h_t:
            break  # no smaller than the teacher: keep the teacher
        student, info = _train_user_student(teacher, split, config, ratio, table, progress)
        valid = _ndcg(student, split, table, "valid")
        test = _ndcg(student, split, table, "test")
        row = {
            **info,
            "hidden_ratio": ratio,
            "valid_ndcg@10": valid["ndcg@10"],
            "test_ndcg@10": test["ndcg@10"],
            "test_hr@10": test["hr@10"],
            "retention": _ratio(valid["ndcg@10"], teacher_valid["ndcg@10"]),
            "test_retention": _ratio(test["ndcg@10"], teacher_test["ndcg@10"]),
        }
        candidates.append(row)
        if row["retention"] >= bound:
            chosen = student
            chosen_info = {**row, "chosen": "student" if i == 0 else "larger student"}
            break
    if chosen is None:
        chosen = teacher
        chosen_info = {
            "chosen": "teacher",
            "hidden": h_t,
            "student_parameters": _user_params(teacher),
            "valid_ndcg@10": teacher_valid["ndcg@10"],
            "test_ndcg@10": teacher_test["ndcg@10"],
            "test_hr@10": teacher_test["hr@10"],
            "retention": 1.0,
            "test_retention": 1.0,
        }
        if candidates:  # the losses of the last student tried, for the record
            for k in ("epochs", "steps", "train_prefixes", "loss_first", "loss_last"):
                chosen_info[k] = candidates[-1][k]

    seq = split.sequences
    users = np.arange(seq.n_users)
    t_vecs, s_vecs = [], []
    for start in range(0, len(users), 512):
        block = users[start : start + 512]
        inputs = stage_inputs(split, block, "test", chosen.cfg.max_len)
        rgaps = _request_gaps(teacher, split, split.history_end("test")[block])
        with torch.inference_mode():
            tensors = [torch.from_numpy(a) for a in inputs]
            for model, out in ((teacher, t_vecs), (chosen, s_vecs)):
                enc = model.encode_users(*tensors, item_table=table, request_gaps=rgaps)
                out.append(enc.user.numpy())
    cos = _cosines(np.concatenate(s_vecs), np.concatenate(t_vecs))
    report = {
        "chosen": chosen_info["chosen"],
        "retention": chosen_info["retention"],  # valid NDCG@10, student / teacher
        "test_retention": chosen_info["test_retention"],
        "min_retention": bound,
        "hidden": int(chosen_info["hidden"]),
        "teacher_hidden": h_t,
        "student_parameters": int(chosen_info["student_parameters"]),
        "teacher_parameters": _user_params(teacher),
        "epochs": int(chosen_info.get("epochs", config.user_epochs)),
        "steps": int(chosen_info.get("steps", 0)),
        "train_prefixes": int(chosen_info.get("train_prefixes", 0)),
        "temperature": float(config.temperature),
        "kd_weight": float(config.kd_weight),
        "test_users": int(len(users)),
        "test_mean_cosine": float(cos.mean()),
        "test_min_cosine": float(cos.min()),
        "teacher_valid_ndcg@10": teacher_valid["ndcg@10"],
        "student_valid_ndcg@10": float(chosen_info["valid_ndcg@10"]),
        "teacher_test_ndcg@10": teacher_test["ndcg@10"],
        "teacher_test_hr@10": teacher_test["hr@10"],
        "student_test_ndcg@10": float(chosen_info["test_ndcg@10"]),
        "student_test_hr@10": float(chosen_info["test_hr@10"]),
        "candidates": candidates,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    for k in ("loss_first", "loss_last"):  # absent when no student was trained
        if k in chosen_info:
            report[k] = float(chosen_info[k])
    return chosen, report
