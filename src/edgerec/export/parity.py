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
from edgerec.export.config import REQUEST_INPUT, TEXT_INPUTS
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


def run_user_graph(
    sess, items, behaviours, gaps, lengths, item_table, request_gaps=None
) -> list[np.ndarray]:
    """Outputs of a user-encoder session; ``request_gaps`` is fed to graphs that take it."""
    feeds = {
        "items": items,
        "behaviours": behaviours,
        "gaps": gaps,
        "lengths": lengths,
        "item_table": item_table,
    }
    if any(i.name == REQUEST_INPUT for i in sess.get_inputs()):
        feeds[REQUEST_INPUT] = (
            np.zeros(len(lengths), np.int64) if request_gaps is None else request_gaps
        )
    return sess.run(None, feeds)


def user_parity(
    model,
    graph: Path | str,
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
    """Max abs differences of user/gate/attention and the share of identical top-10 lists.

    Besides the histories at the model's ``max_len``, a subset of users is also run
    with histories cut to ``short_widths`` events, so a graph whose sequence axis was
    frozen at export (or a batch axis) fails here rather than in production.
    """
    import torch

    from edgerec.training.inputs import stage_inputs, stage_request_gaps

    sess = session(graph)
    table_t = torch.from_numpy(item_table)
    worst = {"user": 0.0, "gate": 0.0, "attention": 0.0}
    same = 0
    runs = [(users, max_len, True)]
    runs += [(users[:short_users], w, False) for w in short_widths if w < max_len]
    for run_users, width, count_top10 in runs:
        for start in range(0, len(run_users), batch_size):
            batch = run_users[start : start + batch_size]
            inputs = stage_inputs(split, batch, stage, width)
            request = stage_request_gaps(split, batch, stage)
            with torch.inference_mode():
                enc = model.encode_users(
                    *(torch.from_numpy(a) for a in inputs),
                    item_table=table_t,
                    request_gaps=torch.from_numpy(request),
                )
            ref = {
                "user": enc.user.numpy(),
                "gate": enc.gate.numpy(),
                "attention": enc.attention.numpy(),
            }
            try:
                outputs = run_user_graph(sess, *inputs, item_table, request)
            except Exception as e:  # onnxruntime raises its own types for shape errors
                raise ParityError(
                    f"{Path(graph).name} fails on histories of shape {inputs[0].shape}: {e}"
                ) from None
            got = dict(zip(("user", "gate", "attention"), outputs, strict=True))
            for name in worst:
                if got[name].shape != ref[name].shape:
                    raise ParityError(
                        f"{Path(graph).name}: output {name} has shape {got[name].shape}, "
                        f"PyTorch gives {ref[name].shape}"
                    )
                worst[name] = max(worst[name], float(np.abs(got[name] - ref[name]).max()))
            if count_top10:
                ref_scores = ref["user"] @ item_table.T
                got_scores = got["user"] @ item_table.T
                _mask_history(ref_scores, split, stage, batch)
                _mask_history(got_scores, split, stage, batch)
                same += int((_top10(ref_scores) == _top10(got_scores)).all(axis=1).sum())
    return {
        "graph": Path(graph).name,
        "users": int(len(users)),
        "stage": stage,
        "history_widths": [w for _, w, _ in runs],
        "max_abs_user": worst["user"],
        "max_abs_gate": worst["gate"],
        "max_abs_attention": worst["attention"],
        "top10_identical": same / max(len(users), 1),
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
