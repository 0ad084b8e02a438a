"""Trained run -> verified bundle: ONNX graphs, quantized variants, optional distillation.

``export_bundle`` is the one entry point; ``docs/bundle.md`` is the format it writes.
"""

from edgerec.export.config import DistillConfig, ExportConfig
from edgerec.export.pipeline import export_bundle

__all__ = ["DistillConfig", "ExportConfig", "export_bundle"]
