"""The PyTorch reference backend: the DecodeGraph run eagerly on the CPU in float32."""
from __future__ import annotations

import numpy as np

from runtime.backends.base import Backend, io_specs
from runtime.errors import require
from runtime.metadata import DecodeConfig, ModelMetadata


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, graph, metadata: ModelMetadata) -> None:
        self.graph = graph.eval()
        self.metadata = metadata
        self.inputs, self.outputs = io_specs(metadata)

    @classmethod
    def from_checkpoint(cls, arch: str, checkpoint: str, input_size: int, scales: tuple[float, ...]) -> "TorchBackend":
        require("torch", "export")
        from export.checkpoint import load_model
        from export.graphs import DecodeGraph

        decode = DecodeConfig(scales=scales)
        network, provenance = load_model(arch, checkpoint)
        metadata = ModelMetadata(arch=arch, input_size=input_size, decode=decode, checkpoint=provenance)
        return cls(DecodeGraph(network, decode), metadata)

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        images = [torch.from_numpy(np.ascontiguousarray(feed[name])) for name in self.metadata.input_names]
        with torch.inference_mode():
            outputs = self.graph(*images)
        return {spec.name: value.numpy() for spec, value in zip(self.outputs, outputs)}
