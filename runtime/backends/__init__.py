"""Backends behind one interface: a model file (or torch model) in, named arrays out.

``open_backend`` picks the backend from what it is given; heavy libraries are imported only by the
backend that needs them, so ``import runtime`` works on a box with only one of them installed.
"""
from __future__ import annotations

from pathlib import Path

from runtime.backends.base import Backend, TensorSpec
from runtime.errors import UserError

__all__ = ["Backend", "TensorSpec", "open_backend", "open_torch"]


def open_torch(arch: str, checkpoint: str, input_size: int, scales: tuple[float, ...] = (1.0,),
               device: str = "cpu") -> Backend:
    """The PyTorch reference: build the DecodeGraph from an architecture and a checkpoint."""
    from runtime.backends.torch_backend import TorchBackend

    return TorchBackend.from_checkpoint(arch, checkpoint, input_size, scales, device)


def open_backend(path: str | Path, device: str = "cpu") -> Backend:
    """Open an exported model file; its kind is told by the suffix.

    ``.onnx``: ONNX Runtime on ``device`` (cpu, cuda, cuda:N). ``.plan`` / ``.engine``: TensorRT, always
    on a GPU (cuda:N selects one; cpu means cuda:0), with the JSON sidecar ``export.trt`` wrote beside it.
    ``triton://HOST:PORT/MODEL``: a model served by Triton (``runtime.backends.triton_backend``).
    """
    if str(path).startswith("triton:"):
        from runtime.backends.triton_backend import TritonBackend

        return TritonBackend(str(path))
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not a model file; give the .onnx (python -m export.onnx) or "
                        f".plan (python -m export.trt) file itself")
    if not path.is_file():
        maker = ("build one from an ONNX file with `python -m export.trt --onnx FILE`"
                 if path.suffix.lower() in (".plan", ".engine") else "export one with `python -m export.onnx`")
        raise UserError(f"{path}: no such model file; {maker} or check the path")
    if path.suffix.lower() == ".onnx":
        from runtime.backends.onnx_backend import OnnxBackend

        return OnnxBackend(path, device=device)
    if path.suffix.lower() in (".plan", ".engine"):
        from runtime.backends.trt_backend import TrtBackend

        # A TensorRT engine runs only on the GPU: "cpu" (the CLI's default device) means the first GPU.
        return TrtBackend(path, device=device if str(device).startswith("cuda") else "cuda")
    raise UserError(f"{path}: unknown model file type {path.suffix!r}; give an exported .onnx file or a "
                    f"TensorRT .plan built by python -m export.trt")
