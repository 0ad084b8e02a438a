"""Hardware targets of the int8 text encoder: the integer products each CPU family runs best.

Dynamic int8 multiplies uint8 activations by int8 or uint8 weights, and which pair is
fast and exact depends on the instruction set onnxruntime's kernels use:

- ``avx512_vnni``: VPDPBUSD accumulates u8 x s8 products in int32, so full-range signed
  weights lose nothing and run fastest (the default, and the int8 graph of earlier exports).
- ``avx512``: without VNNI, u8 x s8 goes through VPMADDUBSW, whose pairwise int16 sums
  can saturate (255 * 127 * 2 > 32767); 7-bit weights (``reduce_range``) cannot.
- ``avx2``: u8 x u8, which onnxruntime computes without the saturating instruction.
- ``arm64``: u8 x s8, full range (optimum's note: faster than u8 x u8 on lower-end
  ARM64 cores, the same on higher-end ones).

These are the choices of optimum's ``AutoQuantizationConfig`` presets (signedness and
per-channel scales), with ``reduce_range`` on for ``avx512`` as their documentation
advises for AVX-512 without VNNI; applied through onnxruntime's ``quantize_dynamic``
(see ``benchmarks/results/text_quantization.md`` for why not through optimum).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    name: str
    signed_weights: bool  # int8 weights (u8 x s8 products), else uint8 (u8 x u8)
    reduce_range: bool  # 7-bit weights
    machine: str  # the architecture it is meant for, as the runtime names it
    per_channel: bool = True  # one scale per output channel (see quantize.py)


TARGETS: dict[str, Target] = {
    "avx2": Target("avx2", signed_weights=False, reduce_range=False, machine="x86_64"),
    "avx512": Target("avx512", signed_weights=True, reduce_range=True, machine="x86_64"),
    "avx512_vnni": Target("avx512_vnni", signed_weights=True, reduce_range=False, machine="x86_64"),
    "arm64": Target("arm64", signed_weights=True, reduce_range=False, machine="arm64"),
}
DEFAULT_TARGET = "avx512_vnni"


def parse_target(value: object) -> str:
    """The target's canonical name; anything else is a ValueError listing the choices."""
    name = value.strip().lower().replace("-", "_") if isinstance(value, str) else value
    if name not in TARGETS:
        raise ValueError(f"unknown quantization target {value!r}; choose from {', '.join(TARGETS)}")
    return name
