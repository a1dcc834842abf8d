"""The PyTorch reference backend: the DecodeGraph run eagerly in float32, on the CPU or a CUDA GPU.

On CUDA, TF32 is switched off for convolutions and matmuls while the graph runs: float32 must mean
float32 for parity (ONNX Runtime's CUDA EP runs with ``use_tf32=0`` for the same reason). The two
global torch flags are restored after each run, so a caller's own torch work keeps its settings.
Outputs come back to the host; this backend is the reference and the mmpose-style baseline, not the
fast path.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

from runtime.backends.base import Backend, io_specs
from runtime.errors import UserError, require
from runtime.metadata import DecodeConfig, ModelMetadata


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, graph, metadata: ModelMetadata, device: str = "cpu") -> None:
        import torch

        if device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise UserError(f"torch: device {device!r} needs a CUDA build of torch and an NVIDIA GPU; "
                                f"none is usable here (use device cpu)")
        self.device = torch.device(device)
        self.graph = graph.eval().to(self.device)
        self.metadata = metadata
        self.inputs, self.outputs = io_specs(metadata)

    @classmethod
    def from_checkpoint(cls, arch: str, checkpoint: str, input_size: int, scales: tuple[float, ...],
                        device: str = "cpu") -> "TorchBackend":
        require("torch", "export")
        from export.checkpoint import load_model
        from export.graphs import DecodeGraph

        decode = DecodeConfig(scales=scales)
        network, provenance = load_model(arch, checkpoint)
        metadata = ModelMetadata(arch=arch, input_size=input_size, decode=decode, checkpoint=provenance)
        return cls(DecodeGraph(network, decode), metadata, device)

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        images = [torch.from_numpy(np.ascontiguousarray(feed[name])).to(self.device)
                  for name in self.metadata.input_names]
        with torch.inference_mode(), self._float32():
            outputs = self.graph(*images)
            return {spec.name: value.cpu().numpy() for spec, value in zip(self.outputs, outputs)}

    @contextlib.contextmanager
    def _float32(self) -> Iterator[None]:
        """TF32 off for cuDNN convolutions and CUDA matmuls inside the block, the caller's flags after it."""
        import torch

        if self.device.type != "cuda":
            yield
            return
        saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
