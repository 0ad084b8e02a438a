"""The parity gate: an exported fp32 graph ships only if it reproduces PyTorch.

User encoder: the validation users' histories go through the PyTorch model and the ONNX
graph; user vectors (and gate, attention) must agree within ``tolerance`` max abs, and
each user's top-10 list (padding and seen items excluded) must be identical for at least
``min_top10_agreement`` of users. Text encoder: catalog texts, tokenised by the bundle's
own ``tokenizer.json`` (the runtime's path) and by the Hugging Face tokenizer (the
training path), must give the same token ids, and the graph's item vectors must agree
with PyTorch within ``tolerance``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgerec.errors import ParityError
from edgerec.export.config import TEXT_INPUTS
from edgerec.export.onnx_text import TextTower, encode_torch, tokenize


def session(path: Path | str, threads: int = 2):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # shape-annotation warnings are expected for dynamic axes
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _top10(scores: np.ndarray) -> np.ndarray:
    from edgerec.evaluation.metrics import top_k

    return top_k(scores, 10)


def _mask_history(scores: np.ndarray, split, stage: str, users: np.ndarray) -> None:
    scores[:, 0] = -np.inf
    rows, items = split.history_matrix_rows(stage, users)
    scores[rows, items] = -np.inf


def request_arrays(split, users: np.ndarray, stage: str, width: int | None = None) -> dict:
    """The serving graphs' request inputs for each user's ``stage`` prediction: the
    history before the target (its latest ``width`` events; None: all of it),
    right-aligned, and the target event's time as ``now`` (known when a user asks)."""
    from edgerec.export.serving import BEHAVIOURS, NOW, ROWS, TIMESTAMPS

    seq = split.sequences
    users = np.asarray(users)
    ends = split.history_end(stage)[users]
    starts = seq.offsets[users]
    if width is not None:
        starts = np.maximum(starts, ends - width)
    lengths = ends - starts
    cols = int(lengths.max())
    offset = np.arange(cols)[None, :] - (cols - lengths)[:, None]  # event index within history
    valid = offset >= 0
    idx = np.where(valid, starts[:, None] + offset, 0)
    return {
        ROWS: np.where(valid, seq.items[idx], 0).astype(np.int64),
        BEHAVIOURS: np.where(valid, seq.behaviours[idx], 0).astype(np.int64),
        TIMESTAMPS: np.where(valid, seq.timestamps[idx], 0).astype(np.int64),
        NOW: seq.timestamps[ends].astype(np.int64),
    }


def _recommend_feeds(request: dict, item_table: np.ndarray, k: int) -> dict:
    from edgerec.export.serving import ITEM_MATRIX, MASK_SEEN, ROW_BIAS, K

    bias = np.zeros((1, item_table.shape[0]), np.float32)
    bias[0, 0] = -np.inf
    return {
        **request,
        ITEM_MATRIX: item_table,
        ROW_BIAS: bias,
        MASK_SEEN: np.array([True]),
        K: np.array([k], np.int64),
    }


def user_parity(
    model,
    graphs: dict[str, Path],
    item_table: np.ndarray,
    split,
    users: np.ndarray,
    max_len: int,
    *,
    stage: str = "valid",
    batch_size: int = 256,
    short_widths: tuple[int, ...] = (5, 1),
    short_users: int = 256,
) -> dict:
    """Max abs differences of user/gate/attention and the share of identical top-10 lists,
    for each serving graph (``{"recommend": path, "user_encoder": path}``).

    The graphs read whole histories (the window is theirs to cut) and, besides, a subset
    of users with histories cut to ``short_widths`` events, so a graph whose sequence
    axis was frozen at export (or a batch axis) fails here rather than in production.
    """
    import torch

    from edgerec.export.serving import RECOMMEND_OUTPUTS, USER_OUTPUTS
    from edgerec.training.inputs import stage_inputs, stage_request_gaps

    sessions = {role: session(path) for role, path in graphs.items()}
    table_t = torch.from_numpy(item_table)
    worst = {"user": 0.0, "gate": 0.0, "attention": 0.0}
    same = {role: 0 for role in graphs}
    runs = [(users, None, True)]
    runs += [(users[:short_users], w, False) for w in short_widths if w < max_len]
    for run_users, width, count_top10 in runs:
        for start in range(0, len(run_users), batch_size):
            batch = run_users[start : start + batch_size]
            inputs = stage_inputs(split, batch, stage, min(width or max_len, max_len))
            with torch.inference_mode():
                enc = model.encode_users(
                    *(torch.from_numpy(a) for a in inputs),
                    item_table=table_t,
                    request_gaps=torch.from_numpy(stage_request_gaps(split, batch, stage)),
                )
            ref = {"user": enc.user.numpy(), "gate": enc.gate.numpy()}
            ref["attention"] = enc.attention.numpy()
            ref_scores = ref["user"] @ item_table.T
            _mask_history(ref_scores, split, stage, batch)
            request = request_arrays(split, batch, stage, width)
            for role, sess in sessions.items():
                name = Path(graphs[role]).name
                recommend = role == "recommend"
                feeds = (
                    _recommend_feeds(request, item_table, 10)
                    if recommend
                    else {**request, "item_matrix": item_table}
                )
                try:
                    outputs = sess.run(None, feeds)
                except Exception as e:  # onnxruntime raises its own types for shape errors
                    raise ParityError(
                        f"{name} fails on requests of shape {request['history_rows'].shape}: {e}"
                    ) from None
                got = dict(
                    zip(RECOMMEND_OUTPUTS if recommend else USER_OUTPUTS, outputs, strict=True)
                )
                for key in worst:
                    if key not in got:
                        continue
                    if got[key].shape != ref[key].shape:
                        raise ParityError(
                            f"{name}: output {key} has shape {got[key].shape}, "
                            f"PyTorch gives {ref[key].shape}"
                        )
                    worst[key] = max(worst[key], float(np.abs(got[key] - ref[key]).max()))
                if count_top10:
                    if recommend:
                        top = got["top_rows"]
                    else:
                        scores = got["user"] @ item_table.T
                        _mask_history(scores, split, stage, batch)
                        top = _top10(scores)
                    same[role] += int((_top10(ref_scores) == top).all(axis=1).sum())
    n = max(len(users), 1)
    return {
        "graphs": [Path(p).name for p in graphs.values()],
        "users": int(len(users)),
        "stage": stage,
        "history_widths": ["all" if w is None else w for _, w, _ in runs],
        "max_abs_user": worst["user"],
        "max_abs_gate": worst["gate"],
        "max_abs_attention": worst["attention"],
        "top10_identical": min(same.values()) / n,
        "top10_identical_by_graph": {role: count / n for role, count in same.items()},
    }


def text_parity(
    tower: TextTower,
    graph: Path | str,
    hf_tokenizer,
    bundle_tokenizer: Path | str,
    texts: list[str],
    max_length: int,
    *,
    reference: np.ndarray | None = None,
    batch_size: int = 64,
) -> dict:
    """Tokenisation agreement and max abs item-vector difference over ``texts``.

    ``reference`` (optional, rows aligned with ``texts``) are the vectors training used
    for these items' text part; their distance shows the graph encodes with the same
    encoder the model was trained on.
    """
    from tokenizers import Tokenizer

    sess = session(graph)
    rt_tok = Tokenizer.from_file(str(bundle_tokenizer))
    worst, worst_ref, same_tokens = 0.0, 0.0, 0
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        feed = tokenize(hf_tokenizer, chunk, max_length)
        encs = rt_tok.encode_batch(chunk)
        rt_ids = np.array([e.ids for e in encs], dtype=np.int64)
        if rt_ids.shape == feed["input_ids"].shape:
            same_tokens += int((rt_ids == feed["input_ids"]).all(axis=1).sum())
        ref = encode_torch(tower, feed)
        got = sess.run(None, {n: feed[n] for n in TEXT_INPUTS})[0]
        worst = max(worst, float(np.abs(got - ref).max()))
        if reference is not None:
            worst_ref = max(
                worst_ref, float(np.abs(got - reference[start : start + batch_size]).max())
            )
    report = {
        "graph": Path(graph).name,
        "texts": int(len(texts)),
        "max_abs_item_vector": worst,
        "tokenizer_identical": same_tokens / max(len(texts), 1),
    }
    if reference is not None:
        report["max_abs_vs_training_vectors"] = worst_ref
    return report


def gate(report: dict, *, tolerance: float, min_top10_agreement: float) -> None:
    """Raise ``ParityError`` listing every check that failed, with the figures."""
    failures = []
    user = report.get("user_encoder")
    if user is not None:
        for key in ("max_abs_user", "max_abs_gate", "max_abs_attention"):
            if not user[key] <= tolerance:  # NaN fails too
                failures.append(f"user encoder {key} = {user[key]:.3g} > {tolerance:g}")
        if not user["top10_identical"] >= min_top10_agreement:
            failures.append(
                f"user encoder: identical top-10 lists for {user['top10_identical']:.2%} of "
                f"{user['users']} users < {min_top10_agreement:.2%}"
            )
    text = report.get("text_encoder")
    if text is not None:
        if not text["max_abs_item_vector"] <= tolerance:
            failures.append(
                f"text encoder max_abs_item_vector = {text['max_abs_item_vector']:.3g} "
                f"> {tolerance:g}"
            )
        if text["tokenizer_identical"] < 1.0:
            failures.append(
                f"tokenizer.json tokenises {1 - text['tokenizer_identical']:.2%} of texts "
                "differently from the training tokenizer"
            )
        ref = text.get("max_abs_vs_training_vectors")
        if ref is not None and not ref <= max(tolerance * 10, 1e-3):
            failures.append(
                f"text encoder disagrees with the vectors the model was trained on "
                f"(max abs {ref:.3g}): is the run's text encoder the one it was trained with?"
            )
    if failures:
        raise ParityError("parity gate failed:\n  " + "\n  ".join(failures))
