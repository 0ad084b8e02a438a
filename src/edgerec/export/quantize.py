"""Reduced-precision variants of an exported fp32 graph, with onnxruntime's own tools.

int8 (CPU): dynamic quantization with one scale per output channel, weights signed or
not and full or 7-bit range as the hardware target asks (``edgerec.export.targets``).
Measured on MiniLM here: per-tensor scales gave min cosine 0.955 to fp32, per-channel
0.988; per target see ``benchmarks/results/text_quantization.md``. The graphs are
constant-folded before quantization (see ``onnx_user``): ``quantize_dynamic`` leaves an
LSTM in fp32 when its weights are not plain initializers.

fp16 (GPU): ``convert_float_to_float16`` with fp32 graph inputs/outputs and the
reductions/normalisations kept in fp32, where fp16 accumulation loses the most.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

from edgerec.errors import EdgerecError
from edgerec.export.onnx_graph import check_and_save, op_counts
from edgerec.export.targets import DEFAULT_TARGET, TARGETS, parse_target

# ops whose fp32 presence in an int8 graph means a weight-heavy op was not quantized
_HEAVY_FP32 = {"LSTM", "MatMul", "Gemm", "Attention"}
# kept in fp32 in fp16 graphs, on top of onnxruntime's default block list
FP16_KEEP_FP32 = ["Softmax", "LayerNormalization", "ReduceSum", "ReduceMean", "Div", "Sigmoid"]


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime.quantization advises pre-processing through the root logger, per call."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _restamp(model, precision: str, ir_version: int) -> None:
    """Carry the fp32 graph's metadata over, marking the precision."""
    model.ir_version = int(ir_version)
    for entry in model.metadata_props:
        if entry.key == "precision":
            entry.value = precision
            break
    else:
        entry = model.metadata_props.add()
        entry.key, entry.value = "precision", precision


def quantize_int8(
    src: Path | str, dst: Path | str, *, ir_version: int, target: str = DEFAULT_TARGET
) -> dict:
    """Dynamic int8 of ``src`` for a hardware ``target``; returns size, ops and target."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    spec = TARGETS[parse_target(target)]
    src, dst = Path(src), Path(dst)
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        out = Path(tmp) / "q.onnx"
        with warnings.catch_warnings(), _quiet_root_logger():
            warnings.simplefilter("ignore")
            quantize_dynamic(
                src,
                out,
                per_channel=spec.per_channel,
                reduce_range=spec.reduce_range,
                weight_type=QuantType.QInt8 if spec.signed_weights else QuantType.QUInt8,
                extra_options={
                    "MatMulConstBOnly": True,
                    # ONNX shape inference cannot type the outputs of fused com.microsoft
                    # ops (SkipLayerNormalization ...); every such tensor here is float32
                    "DefaultTensorType": onnx.TensorProto.FLOAT,
                },
            )
        model = onnx.load(str(out))
    _restamp(model, "int8", ir_version)
    left = fp32_weight_ops(model)
    if left:
        raise EdgerecError(
            f"{dst.name}: quantization left weight ops in fp32 ({left}); their weights are "
            "probably computed in the graph instead of stored as initializers"
        )
    size = check_and_save(model, dst)
    return {
        "size": size,
        "ops": op_counts(model),
        "fp32_weight_ops_left": left,
        "target": spec.name,
    }


def fp32_weight_ops(model) -> dict[str, int]:
    """Weight-heavy ops still computing in fp32 with a constant (weight) operand.

    A MatMul of two activations (attention scores) has no weight and is not counted.
    """
    inits = {i.name for i in model.graph.initializer}
    left: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type in _HEAVY_FP32 and any(x in inits for x in node.input[1:]):
            left[node.op_type] = left.get(node.op_type, 0) + 1
    return left


def convert_fp16(src: Path | str, dst: Path | str, *, role: str, ir_version: int) -> dict:
    import onnx

    from edgerec.export.config import TEXT_ROLE

    src, dst = Path(src), Path(dst)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if role == TEXT_ROLE:
            # the transformer tooling knows which fused BERT ops tolerate fp16
            from onnxruntime.transformers.onnx_model import OnnxModel

            wrapped = OnnxModel(onnx.load(str(src)))
            wrapped.convert_float_to_float16(keep_io_types=True, use_symbolic_shape_infer=True)
            model = wrapped.model
        else:
            from onnxruntime.transformers.float16 import (
                DEFAULT_OP_BLOCK_LIST,
                convert_float_to_float16,
            )

            model = convert_float_to_float16(
                onnx.load(str(src)),
                keep_io_types=True,
                op_block_list=list(DEFAULT_OP_BLOCK_LIST) + FP16_KEEP_FP32,
            )
    from onnxruntime.transformers.onnx_model import OnnxModel

    # the converter appends its input casts at the end of the node list
    OnnxModel(model).topological_sort()
    _restamp(model, "fp16", ir_version)
    size = check_and_save(model, dst)
    return {"size": size, "ops": op_counts(model)}
