"""Each graph role's interface (docs/bundle.md), checked on the onnxruntime session built
from the graph: input and output names, element types, ranks and the scoring dimension.
A graph swapped in from another bundle or another role fails here, naming the file."""

from __future__ import annotations

from edgerec.runtime.manifest import fail

# graph interfaces (docs/bundle.md): name -> (onnxruntime type, rank); "dim" checked too
_I64, _F32 = "tensor(int64)", "tensor(float)"
_REQUEST = {
    "history_rows": (_I64, 2),
    "history_behaviours": (_I64, 2),
    "history_times": (_I64, 2),
    "now": (_I64, 1),
    "item_matrix": (_F32, 2),
}
INTERFACES = {
    "recommend": (
        {**_REQUEST, "row_bias": (_F32, 2), "mask_seen": ("tensor(bool)", 1), "k": (_I64, 1)},
        {"top_rows": (_I64, 2), "top_scores": (_F32, 2), "user": (_F32, 2), "gate": (_F32, 1)},
    ),
    "user_encoder": (
        _REQUEST,
        {"user": (_F32, 2), "gate": (_F32, 1), "attention": (_F32, 2)},
    ),
    "text_encoder": (
        {"input_ids": (_I64, 2), "attention_mask": (_I64, 2), "token_type_ids?": (_I64, 2)},
        {"item_vector": (_F32, 2)},
    ),
    "shortlist": ({"user_q": ("tensor(uint8)", 2)}, {"scores": (_F32, 2)}),
    "topk": (
        {
            "user": (_F32, 2),
            "items": (_F32, 2),
            "bias": (_F32, 2),
            "excluded": (_I64, 2),
            "k": (_I64, 1),
        },
        {"values": (_F32, 2), "indices": (_I64, 2)},
    ),
}
_F16 = "tensor(float16)"
INTERFACES["topk_fp16"] = (
    {**INTERFACES["topk"][0], "items": (_F16, 2), "bias": (_F16, 2)},
    INTERFACES["topk"][1],
)
# the inputs and outputs whose last axis is the scoring dimension, per role
_DIM_VALUES = {
    "recommend": ("item_matrix", "user"),
    "user_encoder": ("item_matrix", "user"),
    "text_encoder": ("item_vector",),
    "shortlist": ("user_q",),
    "topk": ("user", "items"),
    "topk_fp16": ("user", "items"),
}


def check_interface(session, role: str, name: str, dim: int) -> None:
    """The session's inputs and outputs are exactly what ``role`` needs (docs/bundle.md),
    so a graph swapped in from another bundle (checksums updated) is caught here."""
    want_in, want_out = INTERFACES[role]
    for kind, values, want in (
        ("input", session.get_inputs(), want_in),
        ("output", session.get_outputs(), want_out),
    ):
        got = {v.name: v for v in values}
        optional = {k.rstrip("?") for k in want if k.endswith("?")}
        names = {k.rstrip("?") for k in want}
        if not set(names) - optional <= set(got) <= set(names):
            raise fail(name, f"graph {kind}s are {sorted(got)}, a {role} graph has {sorted(names)}")
        for key, value in got.items():
            dtype, rank = want.get(key, want.get(key + "?"))
            if value.type != dtype or len(value.shape) != rank:
                raise fail(
                    name,
                    f"{kind} {key!r} is {value.type} of rank {len(value.shape)}, "
                    f"expected {dtype} of rank {rank}",
                )
    shapes = {v.name: v.shape for v in (*session.get_inputs(), *session.get_outputs())}
    for key in _DIM_VALUES[role]:
        last = shapes[key][-1]
        if isinstance(last, int) and last != dim:
            raise fail(name, f"{key!r} has dimension {last}, the manifest says {dim}")
