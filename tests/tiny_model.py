"""A small exported DecodeGraph for tests of the serving path (seconds to export, milliseconds to run).

The whole real DecodeGraph — normalize, flip, decode with NMS, top-k and adjust — around a two-layer
seeded convolutional stand-in for HigherHRNet that has the same output layout (``y0``: 34 channels
at 1/4, ``y1``: 17 channels at 1/2). Serving tests are about moving inputs and people between
processes, not about the network, and a W32 export costs minutes of CPU. Input size 256 keeps the
maps (and so refine) small.
"""
from __future__ import annotations

from pathlib import Path

TINY_INPUT_SIZE = 256


def export_tiny(path: Path, seed: int = 0) -> Path:
    """Write the tiny DecodeGraph as an ONNX file with the metadata every export carries."""
    import torch
    from torch import nn

    from export import onnx as exporter
    from export.graphs import DecodeGraph
    from runtime.metadata import DecodeConfig, ModelMetadata

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 34, kernel_size=4, stride=4)
            self.up = nn.ConvTranspose2d(34, 17, kernel_size=2, stride=2)

        def forward(self, x):
            y0 = self.stem(x)
            return y0, self.up(torch.relu(y0))

    torch.manual_seed(seed)
    network = Tiny().eval()
    with torch.no_grad():  # heatmap channels mostly below the 0.1 threshold: a handful of people per image
        network.stem.bias[:17] -= 0.7
        network.up.bias -= 0.4
    decode = DecodeConfig()
    metadata = ModelMetadata(arch="w32", input_size=TINY_INPUT_SIZE, decode=decode,
                             checkpoint=f"synthetic:tiny-test-network-{seed}")
    graph = DecodeGraph(network, decode).eval()
    model = exporter.trace(graph, tuple(exporter.trace_inputs(metadata, 128)), exporter.OPSET, metadata.input_names,
                           exporter._dynamic_axes(metadata))
    exporter._fix_output_shapes(model, metadata)
    exporter.set_metadata(model, {**metadata.to_props(), "export.input_multiple": "64"})
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
