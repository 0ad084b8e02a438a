"""Export settings, kept apart from the conversion code so the bundle format is one place.

Names here are the contract with ``docs/bundle.md`` and the runtime: graph input and
output names, file names per precision, the ONNX versions a bundle is stamped with.

Versions: graphs are written with opset 18 and IR version 9. IR 9 / opset 18 loads in
every onnxruntime from 1.15 on (ORT 1.15-1.17 read IR <= 9, 1.18+ read IR 10), so the
GPU build, which lags the CPU build by a release or two, can load the files. The
exporters of torch 2.x stamp IR 10; nothing in these graphs needs IR 10 (no 4-bit
types, no function overloads), so the stamp is lowered and the checker re-run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

FORMAT = "edgerec-bundle"
FORMAT_VERSION = 2  # 2: every graph a runtime runs is in the bundle (recommend, scorers)
DEFAULT_OPSET = 18
IR_VERSION = 9
PRECISIONS = ("fp32", "int8", "fp16")
DEFAULT_PRECISIONS = ("fp32", "int8")

RECOMMEND_ROLE = "recommend"
USER_ROLE = "user_encoder"
TEXT_ROLE = "text_encoder"
ROLES = (RECOMMEND_ROLE, USER_ROLE, TEXT_ROLE)
# scoring graphs for large catalogs and devices (edgerec.export.serving), one per bundle
SCORER_FILES = {
    "shortlist": "shortlist.onnx",
    "topk": "topk.onnx",
    "topk_fp16": "topk.fp16.onnx",
}

# name -> symbolic shape; a string is a dynamic axis, an int a fixed size, "dim" the
# model's scoring dimension (filled in at export).
USER_INPUTS = {
    "items": ("batch", "seq"),
    "behaviours": ("batch", "seq"),
    "gaps": ("batch", "seq"),
    "lengths": ("batch",),
    "item_table": ("n_rows", "dim"),
}
# only in graphs of models whose gate reads the request time (ModelConfig.request_time):
# gap bucket from each history's last event to the request, 0 = unknown
REQUEST_INPUT = "request_gaps"


def user_inputs(request_time: bool) -> dict:
    """The user encoder's inputs: the contract above, plus ``request_gaps`` for a model
    whose gate reads the request time."""
    return {**USER_INPUTS, REQUEST_INPUT: ("batch",)} if request_time else dict(USER_INPUTS)


USER_OUTPUTS = {
    "user": ("batch", "dim"),
    "gate": ("batch",),
    "attention": ("batch", "seq"),
}
TEXT_INPUTS = {
    "input_ids": ("batch", "tokens"),
    "attention_mask": ("batch", "tokens"),
    "token_type_ids": ("batch", "tokens"),
}
TEXT_OUTPUTS = {"item_vector": ("batch", "dim")}

ITEM_DTYPES = ("float32", "float16", "int8")


def graph_file(role: str, precision: str) -> str:
    """``recommend.onnx``, ``user_encoder.fp16.onnx``, ``text_encoder.int8.onnx`` ..."""
    if role not in ROLES:
        raise ValueError(f"unknown graph role {role!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    return f"{role}.onnx" if precision == "fp32" else f"{role}.{precision}.onnx"


def parse_precisions(values: str | Iterable[str]) -> tuple[str, ...]:
    """Accept repeated options and comma lists; returns the precisions to ship, in order."""
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for value in values:
        for part in str(value).split(","):
            name = part.strip().lower()
            if not name:
                continue
            if name not in PRECISIONS:
                raise ValueError(f"unknown precision {name!r}; choose from {', '.join(PRECISIONS)}")
            if name not in out:
                out.append(name)
    if not out:
        raise ValueError("no precision given; choose from " + ", ".join(PRECISIONS))
    return tuple(sorted(out, key=PRECISIONS.index))


@dataclass
class DistillConfig:
    """Student sizes and the (short) training schedules of both students.

    The text student's defaults keep the int8 MovieLens bundle under 10 MB: its word
    embeddings (vocabulary x hidden) dominate, 30522 x 192 int8 values = 5.9 MB.
    Started from the teacher, its heads keep the teacher's head width, so ``text_hidden``
    must be a multiple of it (32 for MiniLM) and ``text_heads`` applies to "scratch" only.
    """

    text_layers: int = 2
    text_hidden: int = 192
    text_heads: int = 4
    text_intermediate: int = 768
    text_init: str = "teacher"  # "teacher" (layer dropping + truncated weights) or "scratch"
    text_steps: int = 400
    text_batch_size: int = 64
    text_lr: float = 5e-4
    text_augment: int = 2  # augmented copies of each catalog text in the training pool
    text_holdout: float = 0.1  # share of items held out to measure generalisation
    # on the projected item vectors: "centered" (cosine + norm of the offsets from the
    # mean vector: no shrinking of unseen titles) or "mse" (MSE + cosine, as before)
    text_loss: str = "centered"
    user_hidden_ratio: float = 0.5
    user_epochs: int = 3
    user_batch_size: int = 256
    user_lr: float = 2e-3
    temperature: float = 2.0
    kd_weight: float = 0.7  # KL share; 1 - kd_weight goes to the hard next-item loss
    # the shipped user encoder keeps this share of the teacher's validation NDCG@10: a
    # student that does not is replaced by a larger one, or by the teacher (distill.py)
    min_retention: float = 0.97
    max_train_prefixes: int = 200_000
    seed: int = 0


@dataclass
class ExportConfig:
    precisions: tuple[str, ...] = DEFAULT_PRECISIONS
    distill: bool = False
    opset: int = DEFAULT_OPSET
    ir_version: int | None = None  # None: 9, or 10 for opset 21 (the IR that opset needs)
    tolerance: float = 1e-4  # max abs difference between PyTorch and fp32 ONNX outputs
    min_top10_agreement: float = 0.995  # share of users whose top-10 lists must be identical
    parity_users: int = 2000  # validation users the gate runs (all when fewer)
    parity_texts: int = 256  # catalog texts the text-encoder gate runs
    item_dtype: str = "float32"
    evaluate: bool = True  # test metrics per precision through the bundle files
    distill_config: DistillConfig = field(default_factory=DistillConfig)
    target: str = "avx512_vnni"  # the int8 text encoder's hardware (edgerec.export.targets)

    def __post_init__(self) -> None:
        self.precisions = parse_precisions(self.precisions)
        if not (17 <= int(self.opset) <= 21):
            # 17 brings LayerNormalization; 21 is the newest IR-10 onnxruntime implements
            raise ValueError(f"opset must be between 17 and 21, got {self.opset}")
        self.opset = int(self.opset)
        if self.ir_version is None:
            self.ir_version = IR_VERSION if self.opset <= 20 else 10
        if not self.tolerance > 0:
            raise ValueError(f"tolerance must be > 0, got {self.tolerance}")
        if self.item_dtype not in ITEM_DTYPES:
            raise ValueError(
                f"item dtype must be one of {', '.join(ITEM_DTYPES)}, got {self.item_dtype!r}"
            )
        from edgerec.export.targets import parse_target

        self.target = parse_target(self.target)

    @property
    def built_precisions(self) -> tuple[str, ...]:
        """fp32 is always built: the parity gate and the quality baseline run on it."""
        return tuple(p for p in PRECISIONS if p == "fp32" or p in self.precisions)

    @property
    def default_precision(self) -> str:
        """What a runtime loads unless told otherwise: int8 (CPU) first, fp16 last."""
        for p in ("int8", "fp32", "fp16"):
            if p in self.precisions:
                return p
        raise AssertionError("no precision")
