"""Every hyper-parameter of the model and its training, as plain values.

``ModelConfig`` is what an exported bundle and a checkpoint must agree on; ``TrainConfig``
is how it was trained. Both round-trip through JSON so a run directory says exactly
what produced it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

ABLATIONS = ("long", "short", "text", "id", "aux")
# the values of ModelConfig's architecture options (the trainer validates them, the ONNX
# graph builder refuses a model outside them)
CHOICES = {
    "gate": ("vector", "scalar"),
    "short_term": ("bidirectional", "window"),
    "long_term": ("all", "before_window"),
}


@dataclass
class ModelConfig:
    n_items: int = 0
    n_behaviours: int = 1
    n_categories: int = 0
    text_dim: int = 384
    dim: int = 64  # scoring dimension d
    hidden: int = 32  # LSTM hidden size per direction (32 beat 64 on ML-100K valid)
    max_len: int = 0  # history events read; 0: from the data (training/scaling.py)
    window: int = 5  # short-term window W
    dropout: float = 0.2
    id_dropout: float = 0.1  # items trained without their ID embedding, for cold start
    # an item seen n times adds its ID embedding scaled by n / (n + id_prior), so sparse
    # items lean on their text vector (training/scaling.py). Off (0): on a 10k-item long
    # tail, 5 cost more than half the test NDCG@10 (0.13 vs 0.34): a rare item's ID
    # embedding is what carries its low popularity (benchmarks/results/generalization.md)
    id_prior: float = 0.0
    learn_temperature: bool = True
    # The gate: one long/short weight per user ("scalar"; "vector": per dimension), reading
    # the time from the last event to the request (request_time), trained with a share of
    # samples fused from one horizon alone (horizon_dropout: half long, half short), so
    # that each horizon must predict on its own and the gate learns which to trust. On
    # the synthetic data this is what makes the gate lean long-term when a request opens
    # a session and short-term inside one; on MovieLens 100K it matched or beat the
    # previous default (vector gate, neither option) on validation NDCG@10 over 3 seeds.
    # benchmarks/results/ml100k_tuning.md, ablations_synthetic.md, gate_synthetic.md.
    gate: str = "scalar"
    short_term: str = "bidirectional"  # "window": built only from the last W events
    request_time: bool = True
    long_term: str = "all"  # "before_window": only forward outputs older than the window
    horizon_dropout: float = 0.2
    ablate: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ablate"] = list(self.ablate)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        values["ablate"] = tuple(values.get("ablate", ()))
        values.setdefault("gate", "vector")  # configs written before the options existed
        values.setdefault("short_term", "bidirectional")
        values.setdefault("long_term", "all")
        values.setdefault("request_time", False)
        values.setdefault("horizon_dropout", 0.0)
        values.setdefault("id_prior", 0.0)  # configs written before the per-item ID weight
        if d.get("gate_context"):
            # an option of earlier versions whose gate read the gap before the last event;
            # the request-time gate replaced it, and its weights mean something else
            from edgerec.errors import EdgerecError

            raise EdgerecError(
                "this model was trained with gate_context (a gate reading the gap before "
                "the last event), which this version replaced by request_time; retrain it"
            )
        return cls(**values)


@dataclass
class TrainConfig:
    # When training ends is decided by the validation curve, not by an epoch count.
    # schedule "plateau": linear warm-up over warmup_steps, then a constant lr until
    # valid NDCG@10 has not improved for `patience` evaluations (one per epoch), then a
    # cosine cool-down over `cooldown` x the steps trained so far, then stop; the best
    # evaluation's weights are kept. The cool-down also starts early enough to end by
    # the epochs ceiling or by time_budget (seconds of training; 0 = none), whichever
    # comes first. schedule "cosine" (the previous default): cosine decay spanning
    # `epochs`, stopped after `patience` evaluations without improvement.
    epochs: int = 100  # a ceiling: early stopping ends ML-100K runs after ~10-15
    schedule: str = "plateau"
    cooldown: float = 0.25  # cool-down length as a share of the steps before it (0: none)
    time_budget: float = 0.0  # seconds; the run cools down and stops within it
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 200
    clip_norm: float = 1.0
    min_lr_ratio: float = 0.0  # the cool-down (or cosine decay) ends at lr * min_lr_ratio
    label_smoothing: float = 0.0
    mask_seen: bool = True  # take a user's earlier items out of the softmax, as evaluation does
    future_targets: int = 3  # also predict the next K items after the target (0: off)
    future_weight: float = 0.5  # weight of those extra targets in the main task
    future_decay: float = 0.7  # the k-th extra target weighs decay**(k-1)
    patience: int = 3
    seed: int = 0
    loss_weights: dict = field(
        default_factory=lambda: {"retrieval": 1.0, "behaviour": 0.2, "interest": 0.2}
    )
    uncertainty_weighting: bool = False
    sampled_softmax: str = "auto"  # "auto" | "on" | "off"
    full_softmax_max_items: int = 50_000
    num_negatives: int = 2048
    eval_batch_size: int = 512
    length_buckets: bool = True  # batch histories of similar length together (speed)
    device: str = "auto"
    num_threads: int = 0  # torch threads per process on CPU; 0 = auto (cores / processes)
    text_encoder: str | None = None
    finetune_layers: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        if "epochs" in values and "schedule" not in values:
            values["schedule"] = "cosine"  # configs written before the plateau schedule
        return cls(**values)


def parse_overrides(pairs: list[str] | None) -> dict:
    """``--set`` values, ``model.dropout=0.3`` / ``train.lr=3e-3``, as {"model": {...},
    "train": {...}} (each value read as JSON, else kept as the string); ValueError names
    a malformed pair or a setting neither config has."""
    import json

    known = {
        "model": {f.name for f in fields(ModelConfig)},
        "train": {f.name for f in fields(TrainConfig)},
    }
    out: dict = {"model": {}, "train": {}}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        scope, _, name = key.partition(".")
        if not sep or scope not in out or not name or not raw:
            raise ValueError(f"--set {pair!r}: expected model.NAME=VALUE or train.NAME=VALUE")
        if name not in known[scope]:
            raise ValueError(
                f"--set {pair!r}: {scope} has no setting {name!r} "
                f"(settings: {', '.join(sorted(known[scope]))})"
            )
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[scope][name] = value
    return out
