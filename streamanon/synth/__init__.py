"""Conditional face generator G (paper sec. 3.3-3.4): networks, losses, training, runtimes.

Inference needs only ``runtime`` (ONNX Runtime / TensorRT / torch behind one ``Runtime``
interface); ``networks``, ``losses``, ``data``, ``train`` need torch. See docs/generator.md.
"""

from streamanon.synth.runtime import (
    DEFAULT_MODEL,
    Runtime,
    RuntimeInputError,
    RuntimeUnavailable,
    load_runtime,
)

__all__ = ["DEFAULT_MODEL", "Runtime", "RuntimeInputError", "RuntimeUnavailable", "load_runtime"]
