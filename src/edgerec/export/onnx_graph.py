"""Finishing touches every exported graph gets: interface names, versions, metadata.

The exporters name dynamic axes after internal symbols (``s0``, ``batch``) and sometimes
freeze an output axis to the example's size; the runtime and other languages read the
interface from the file, so it is rewritten here from ``edgerec.export.config``.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

from edgerec import __version__
from edgerec.io import atomic_write_bytes


def set_interface(model, inputs: dict, outputs: dict, dims: dict[str, int]) -> None:
    """Give each graph input/output the symbolic shape of the bundle contract."""
    from edgerec.errors import EdgerecError

    def apply(values, spec: dict, kind: str) -> None:
        by_name = {v.name: v for v in values}
        missing = [n for n in spec if n not in by_name]
        if missing:
            raise EdgerecError(f"exported graph lacks {kind}s {missing}; has {list(by_name)}")
        for name, shape in spec.items():
            tensor_type = by_name[name].type.tensor_type
            del tensor_type.shape.dim[:]
            for axis in shape:
                dim = tensor_type.shape.dim.add()
                if isinstance(axis, int):
                    dim.dim_value = axis
                elif axis in dims:
                    dim.dim_value = int(dims[axis])
                else:
                    dim.dim_param = axis

    apply(model.graph.input, inputs, "input")
    apply(model.graph.output, outputs, "output")
    # shapes the exporter recorded for intermediate values may carry the example's sizes
    del model.graph.value_info[:]


def set_metadata(model, *, role: str, precision: str, ir_version: int, extra: dict) -> None:
    model.ir_version = int(ir_version)
    model.producer_name = "edgerec"
    model.producer_version = __version__
    meta = {
        "edgerec_version": __version__,
        "role": role,
        "precision": precision,
        **{k: v if isinstance(v, str) else json.dumps(v) for k, v in extra.items()},
    }
    del model.metadata_props[:]
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def check_and_save(model, path: Path | str) -> int:
    """Validate (ONNX checker) and write; returns bytes.

    Fused onnxruntime ops live in the ``com.microsoft`` domain, which the transformer
    optimizer uses without always declaring it; the import is added here.
    """
    import onnx

    declared = {op.domain for op in model.opset_import}
    for domain in sorted({n.domain for n in model.graph.node} - declared - {"ai.onnx"}):
        model.opset_import.append(onnx.helper.make_opsetid(domain, 1))
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    atomic_write_bytes(path, data)
    return len(data)


def read_metadata(path: Path | str) -> dict[str, str]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def op_counts(path_or_model) -> dict[str, int]:
    import onnx

    model = (
        onnx.load(str(path_or_model), load_external_data=False)
        if isinstance(path_or_model, str | Path)
        else path_or_model
    )
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


@contextlib.contextmanager
def quiet_torch_onnx() -> Iterator[None]:
    """The dynamo exporter logs registry notes (e.g. torchvision absent) at WARNING."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def torch_to_onnx(
    module,
    args: tuple,
    *,
    exporter: str,
    opset: int,
    inputs: list[str],
    outputs: list[str],
    dynamic: dict,
    **options,
):
    """One ``torch.onnx.export`` call, quiet, returning the ``ModelProto``.

    ``exporter`` "dynamo" (torch.export; ``dynamic`` holds ``torch.export.Dim`` shapes,
    graph optimised by onnxscript) or "torchscript" (the legacy tracer; ``dynamic`` holds
    axis names). Kept in one place so both encoders export the same way."""
    import io
    import warnings

    import onnx
    import torch

    with warnings.catch_warnings(), quiet_torch_onnx():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            program = torch.onnx.export(
                module,
                args,
                dynamo=True,
                opset_version=opset,
                input_names=inputs,
                output_names=outputs,
                dynamic_shapes=dynamic,
                optimize=True,
                verbose=False,
                **options,
            )
            return program.model_proto
        buf = io.BytesIO()
        torch.onnx.export(
            module,
            args,
            buf,
            dynamo=False,
            opset_version=opset,
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic,
            **options,
        )
        return onnx.load_from_string(buf.getvalue())
