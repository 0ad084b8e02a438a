"""User encoder -> ONNX: history (items, behaviours, gaps, lengths) + item table -> user vector.

Written by ``edgerec.export.onnx_user_graph`` from the trained weights by default: one
bidirectional ONNX LSTM with ``sequence_lens`` and ~35 nodes instead of the ~120 the
exporters make of the model's masked two-LSTM formulation, which runs a request about
1.4x faster (see that module). A model the builder does not know goes through
``torch.onnx``, and whichever graph is written, the parity gate decides whether it ships.

``torch.onnx``: the torch.export-based ("dynamo") exporter. The TorchScript exporter was
tried on this model and produced a graph whose user vectors differed from PyTorch by
~0.04 (its LSTM export assumes the example's batch size), so it is only a fallback and
the parity gate decides whether its output ships.

The item table is a graph *input*, not an initializer: baking a large matrix into the
graph made onnxruntime pre-pack it and doubled the time per call in a measurement here
(measured when the scorers were chosen), and as an input the runtime can share one copy of
the matrix between the user encoder and scoring.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgerec.export.config import REQUEST_INPUT, USER_OUTPUTS, user_inputs
from edgerec.export.onnx_graph import set_interface, torch_to_onnx

FOLD_LIMIT = 1 << 26  # elements; the item table is an input, so nothing huge is folded


class UserEncoderGraph(nn.Module):
    """The part of the model the runtime calls per request, with bundle names and order."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, items, behaviours, gaps, lengths, item_table, request_gaps=None):
        enc = self.model.encode_users(
            items, behaviours, gaps, lengths, item_table, request_gaps=request_gaps
        )
        return enc.user, enc.gate, enc.attention


def example_inputs(
    n_items: int, n_behaviours: int, n_gap_buckets: int, seed: int = 0
) -> tuple[np.ndarray, ...]:
    """A batch of 3 right-padded histories of different lengths (sizes > 1 stay dynamic)."""
    rng = np.random.default_rng(seed)
    batch, seq = 3, 7
    lengths = np.array([seq, 4, 2], dtype=np.int64)
    valid = np.arange(seq)[None, :] < lengths[:, None]
    items = np.where(valid, rng.integers(1, n_items + 1, (batch, seq)), 0)
    behaviours = np.where(valid, rng.integers(0, max(n_behaviours, 1), (batch, seq)), 0)
    gaps = np.where(valid, rng.integers(1, n_gap_buckets, (batch, seq)), 0)
    return items.astype(np.int64), behaviours.astype(np.int64), gaps.astype(np.int64), lengths


def _clear_rnn_dispatch_cache() -> None:
    """Work around a torch 2.x bug: the exporter swaps in a while-loop LSTM decomposition
    for dynamic shapes and restores the old one afterwards, but the op's dispatch cache
    keeps whichever kernel it saw last. A second export in the same process then
    unrolls the LSTM over the example's sequence length and the graph only runs at that
    length. Clearing the cache around each export makes every export like the first."""
    for op in (torch.ops.aten.lstm.input, torch.ops.aten.gru.input):
        cache = getattr(op, "_dispatch_cache", None)
        if isinstance(cache, dict):
            cache.clear()


def _export_dynamo(wrapper, args, opset: int, inputs: dict):
    _clear_rnn_dispatch_cache()
    try:
        return _export_dynamo_once(wrapper, args, opset, inputs)
    finally:
        _clear_rnn_dispatch_cache()


def _export_dynamo_once(wrapper, args, opset: int, inputs: dict):
    batch = torch.export.Dim("batch")
    seq = torch.export.Dim("seq")
    rows = torch.export.Dim("n_rows")
    dynamic = {
        "items": {0: batch, 1: seq},
        "behaviours": {0: batch, 1: seq},
        "gaps": {0: batch, 1: seq},
        "lengths": {0: batch},
        "item_table": {0: rows},
    }
    if REQUEST_INPUT in inputs:
        dynamic[REQUEST_INPUT] = {0: batch}
    return torch_to_onnx(
        wrapper,
        args,
        exporter="dynamo",
        opset=opset,
        inputs=list(inputs),
        outputs=list(USER_OUTPUTS),
        dynamic=dynamic,
    )


def _export_torchscript(wrapper, args, opset: int, inputs: dict):
    axes = {name: dict(enumerate(shape)) for name, shape in inputs.items()}
    axes.update({name: dict(enumerate(shape)) for name, shape in USER_OUTPUTS.items()})
    axes = {n: {i: a for i, a in d.items() if a != "dim"} for n, d in axes.items()}
    return torch_to_onnx(
        wrapper,
        args,
        exporter="torchscript",
        opset=opset,
        inputs=list(inputs),
        outputs=list(USER_OUTPUTS),
        dynamic=axes,
    )


def export_user_encoder(
    model: nn.Module,
    *,
    item_table: np.ndarray,
    n_behaviours: int,
    n_gap_buckets: int,
    opset: int,
    ir_version: int,
    exporter: str = "auto",
):
    """The fp32 user encoder as a ``ModelProto`` (the core that ``edgerec.export.serving``
    builds the bundle's graphs around) and what the manifest records about it.

    ``exporter``: "auto" (the graph builder, else dynamo, else TorchScript), "builder",
    "dynamo" or "torchscript".
    """
    import onnxscript.optimizer

    from edgerec.errors import EdgerecError
    from edgerec.export.onnx_user_graph import build_user_encoder

    if exporter not in ("auto", "builder", "dynamo", "torchscript"):
        raise ValueError(f"unknown exporter {exporter!r}")
    model = model.eval()
    wrapper = UserEncoderGraph(model).eval()
    items, behaviours, gaps, lengths = example_inputs(
        item_table.shape[0] - 1, n_behaviours, n_gap_buckets
    )
    args = tuple(torch.from_numpy(a) for a in (items, behaviours, gaps, lengths)) + (
        torch.from_numpy(np.ascontiguousarray(item_table, dtype=np.float32)),
    )
    inputs = user_inputs(model.cfg.request_time)
    if REQUEST_INPUT in inputs:
        args += (torch.from_numpy(gaps[:, 0].copy()),)
    used, error = None, None
    proto = None
    if exporter in ("auto", "builder"):
        try:
            proto = build_user_encoder(model, opset=opset)
            used = "edgerec graph builder"
        except EdgerecError as e:  # a model variant it does not know: torch.onnx below
            if exporter == "builder":
                raise
            error = f"builder: {e}"
    if proto is None and exporter in ("auto", "dynamo"):
        try:
            proto = _export_dynamo(wrapper, args, opset, inputs)
            used = "torch.onnx dynamo"
        except Exception as e:  # the fallback below is judged by the parity gate
            if exporter == "dynamo":
                raise
            error = f"{type(e).__name__}: {e}"
    if proto is None:
        proto = _export_torchscript(wrapper, args, opset, inputs)
        used = "torch.onnx torchscript"
    if used != "edgerec graph builder":
        # Constant folding before anything else: the exporter reorders PyTorch's LSTM
        # gate blocks with Slice/Concat chains, and quantize_dynamic leaves an LSTM in
        # fp32 unless its W and R are plain initializers. onnxscript folds inputs of at
        # most 8192 elements by default, which a hidden size of 64 already exceeds.
        proto = onnxscript.optimizer.optimize(
            proto, input_size_limit=FOLD_LIMIT, output_size_limit=FOLD_LIMIT
        )
    set_interface(proto, inputs, USER_OUTPUTS, {"dim": int(item_table.shape[1])})
    proto.ir_version = int(ir_version)
    info = {"exporter": used, "opset": opset}
    if error:
        info["fallback_reason"] = error[:500]
    return proto, info
