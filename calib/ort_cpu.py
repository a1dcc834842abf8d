"""What ONNX Runtime's CPU provider makes of a Q/DQ file: the operators of its optimized graph.

A Q/DQ file only says where values are rounded to int8; whether ONNX Runtime then computes in integers
is decided by its graph optimizer, which replaces ``DQ → Conv → Q`` by ``QLinearConv``, ``DQ, DQ →
Add → Q`` by ``QLinearAdd`` and drops the Q/DQ around a nearest-neighbour Resize. A convolution left
as ``Conv`` between DQ and Q nodes runs in float. The optimized graph is written by ONNX Runtime
itself (``SessionOptions.optimized_model_filepath``, default optimization level, as the runtime
opens files) into a temporary folder and counted here.
"""
from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path


def optimized_op_counts(path: Path) -> Counter:
    """Operator types (``QLinearConv``, ``Conv``, ...) of ``path`` after ONNX Runtime's CPU graph optimization."""
    import onnx
    import onnxruntime

    with tempfile.TemporaryDirectory(prefix="hrnet-ort-") as folder:
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # it warns that the file is tied to this CPU: that is what is measured
        options.optimized_model_filepath = str(Path(folder) / "optimized.onnx")
        onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        model = onnx.load(options.optimized_model_filepath, load_external_data=False)
    return Counter(node.op_type for node in model.graph.node)
