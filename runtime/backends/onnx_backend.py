"""The ONNX Runtime backend: an exported DecodeGraph (``python -m export.onnx``) run by onnxruntime.

Torch-free: an edge box installs ``hrnet-deploy[edge]`` (onnxruntime) and nothing else. Everything the
pipeline needs (arch, input size, scales, decode parameters) comes from the file's ``metadata_props``,
and the session's own inputs and outputs are checked against that metadata when the file is opened.

Devices: ``"cpu"`` (CPUExecutionProvider) or ``"cuda"`` / ``"cuda:N"`` (CUDAExecutionProvider of the
``onnxruntime-gpu`` package). On CUDA:

* ``use_tf32=0``: ONNX Runtime's CUDA EP uses TF32 for float32 convolutions by default, which changes
  top-30 candidate sets against torch (measured on an H100); with it off the outputs match torch bit
  for bit.
* Inputs and outputs are bound to fixed device buffers, one set per input shape
  (``runtime.backends.device``), and the session computes on that ``DeviceIO``'s stream
  (``user_compute_stream``), so the CUDA grouping kernels read the outputs in place on the same stream.
* CUDA graphs (``enable_cuda_graph``), one captured graph per input shape (run option
  ``gpu_graph_id``): they need every compute node on the CUDA EP. If the session refuses them, the
  backend opens again without and says why in ``cuda_graph_refused``.

On the CPU, runs use IO binding too: outputs are written straight into NumPy arrays allocated from the
input shapes, so no copy is made after the run.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.backends.base import Backend, TensorSpec, io_specs
from runtime.errors import UserError, require
from runtime.metadata import read_props

REEXPORT = "re-export with python -m export.onnx"

_ORT_TYPES = {"tensor(uint8)": "uint8", "tensor(float)": "float32", "tensor(int64)": "int64",
              "tensor(float16)": "float16", "tensor(int32)": "int32"}


def _parse_device(device: str) -> tuple[str, int]:
    kind, _, index = str(device).partition(":")
    if kind not in ("cpu", "cuda") or (index and not index.isdigit()) or (kind == "cpu" and index):
        raise UserError(f"device {device!r}: use cpu, cuda or cuda:N")
    return kind, int(index or 0)


def open_with_cuda_graphs(ort, path: str, options, cuda_options: dict) -> tuple[object | None, str | None]:
    """``(session, None)`` with CUDA graphs on ``cuda_options``' user stream, or ``(None, why not)``.

    A refusal is seen either as an exception (every compute node must be on the CUDA EP; CUDA plugin
    EP builds before onnxruntime PR #29221 reject ``user_compute_stream`` with ``enable_cuda_graph``)
    or as a session that silently fell back: onnxruntime's Python layer retries a failed provider
    on the CPU, so the session's own providers and CUDA options are checked too (``enable_fallback=0``
    asks it not to retry, where the version knows that keyword).
    """
    wanted = {**cuda_options, "enable_cuda_graph": "1"}
    try:
        session = ort.InferenceSession(path, sess_options=options, providers=[("CUDAExecutionProvider", wanted)],
                                       enable_fallback=0)
    except Exception as exc:  # noqa: BLE001 - the plain CUDA session is opened next; it reports other errors
        text = " ".join(str(exc).split())[:300]
        if "user_compute_stream" in text or "user compute stream" in text:
            return None, f"this onnxruntime-gpu's CUDA EP does not take a user stream with CUDA graphs ({text})"
        return None, text if "graph capture" in text else f"opening with CUDA graphs failed: {text}"
    if "CUDAExecutionProvider" not in session.get_providers():
        return None, f"the CUDA EP did not start with CUDA graphs (session fell back to {session.get_providers()})"
    granted = session.get_provider_options().get("CUDAExecutionProvider", {})
    if str(granted.get("enable_cuda_graph", "1")) != "1":
        return None, "the CUDA EP ignored enable_cuda_graph with a user stream (this onnxruntime-gpu build)"
    return session, None


class OnnxBackend(Backend):
    """``OnnxBackend(path, device="cpu")``: an exported ``.onnx`` file in an ONNX Runtime session."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None,
                 cuda_graph: bool = True) -> None:
        ort = require("onnxruntime", "edge")
        self.path = Path(path)
        self.device, self.device_id = _parse_device(device)
        if not self.path.is_file():
            raise UserError(f"{self.path}: no such model file; export one with `python -m export.onnx`")
        self.cuda_graph = False
        self.cuda_graph_refused: str | None = None
        self._graph_ids = 0
        self._load(ort, threads, cuda_graph)

    # --------------------------------------------------------------------------------------------
    # Loading

    def _load(self, ort, threads: int | None, cuda_graph: bool) -> None:
        """Open the session on this device, read the file's metadata and check its I/O against it."""
        options = ort.SessionOptions()
        options.log_severity_level = 3  # warnings about our own graph are not the user's business
        if threads:
            options.intra_op_num_threads = int(threads)
        if self.device == "cpu":
            self.session = self._open(ort, options, ["CPUExecutionProvider"])
        else:
            self._open_cuda(ort, options, cuda_graph)
        if self.device == "cuda" and "CUDAExecutionProvider" not in self.session.get_providers():
            raise UserError(f"{self.path}: onnxruntime-gpu could not start its CUDA execution provider (the CUDA "
                            f"and cuDNN libraries it was built for were not found); install them, or use device cpu")
        facts = read_props(self.session.get_modelmeta().custom_metadata_map, str(self.path), REEXPORT)
        self.metadata, self.stride = facts.metadata, facts.input_multiple
        self.inputs, self.outputs = io_specs(self.metadata)
        self._check_session_io()

    def _open(self, ort, options, providers: list):
        try:
            return ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime reports unreadable files with several exception types
            text = " ".join(str(exc).split())[:200]
            raise UserError(f"{self.path}: not a readable ONNX model for onnxruntime ({text}); if it is an "
                            f"hrnet-deploy export, the file is truncated or corrupt: {REEXPORT}") from None

    def _open_cuda(self, ort, options, cuda_graph: bool) -> None:
        # CUDA/cuDNN from pip wheels (nvidia-*) are loaded first: a plugin build of the CUDA EP only
        # registers itself once they are found.
        preload = getattr(ort, "preload_dlls", None)
        if preload is not None:
            try:
                preload()
            except Exception:  # noqa: BLE001 - system libraries may still be found by the session
                pass
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise UserError(f"{self.path}: device {self.device!r} needs ONNX Runtime's CUDA execution provider: "
                            f"pip uninstall onnxruntime && pip install onnxruntime-gpu")
        from runtime.backends.device import DeviceIO

        self.device_io = DeviceIO(self.device_id)
        cuda_options = {"device_id": str(self.device_id), "use_tf32": "0",
                        "user_compute_stream": str(self.device_io.stream_pointer)}
        if cuda_graph:
            self.session, self.cuda_graph_refused = open_with_cuda_graphs(ort, str(self.path), options, cuda_options)
            if self.session is not None:
                self.cuda_graph = True
                return
        self.session = self._open(ort, options, [("CUDAExecutionProvider", cuda_options), "CPUExecutionProvider"])

    def _check_session_io(self) -> None:
        """The session's inputs and outputs, in order, must be the ones the metadata promises."""
        def described(values):
            return [TensorSpec(v.name, _ORT_TYPES.get(v.type, v.type),
                               tuple(d if isinstance(d, int) else None for d in v.shape)) for v in values]

        found = {"inputs": described(self.session.get_inputs()), "outputs": described(self.session.get_outputs())}
        self._check_io(found, "{kind} {found} do not match its metadata ({expected}): not an hrnet-deploy "
                              "export, or a damaged one", REEXPORT)

    # --------------------------------------------------------------------------------------------
    # Running

    def check_feed(self, feed: dict[str, np.ndarray]) -> None:
        try:
            super().check_feed(feed)
        except UserError as error:
            raise UserError(f"{self.path}: {error}") from None

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        binding = self.session.io_binding()
        for name in self.metadata.input_names:
            binding.bind_cpu_input(name, np.ascontiguousarray(feed[name]))
        outputs = {name: np.empty(shape, dtype=np.float32) for name, shape in self.output_shapes(feed).items()}
        for name, array in outputs.items():
            binding.bind_output(name, "cpu", 0, np.float32, list(array.shape), array.ctypes.data)
        self.session.run_with_iobinding(binding)
        return outputs

    def _run_device(self, feed: dict[str, np.ndarray]) -> dict[str, object]:
        """Upload into this shape's fixed buffers and run; the outputs stay in that slot's buffers."""
        from runtime.backends.device import device_pointer

        io = self.device_io
        slot = self.device_slot(feed)
        if "binding" not in slot.state:
            binding = self.session.io_binding()
            for group in (slot.inputs, slot.outputs):
                for name, array in group.items():
                    binding_call = binding.bind_input if group is slot.inputs else binding.bind_output
                    binding_call(name, "cuda", self.device_id, np.dtype(array.dtype), list(array.shape),
                                 device_pointer(array))
            slot.state["binding"] = binding
            # 1, 2, ... (ORT reserves 0), never reused: an evicted shape's id may still name a graph
            self._graph_ids += 1
            slot.state["run_options"] = self._run_options(self._graph_ids)
            slot.state["release"] = self._releaser(self._graph_ids, binding)
        return io.execute(slot, feed, lambda: self.session.run_with_iobinding(slot.state["binding"],
                                                                              slot.state["run_options"]))

    def _releaser(self, graph_id: int, binding):
        """What an evicted slot frees: its captured CUDA graph (``release_captured_graph``, a no-op in
        builds without it) and its IO binding."""
        def release() -> None:
            release_graph = getattr(self.session, "release_captured_graph", None)
            if self.cuda_graph and release_graph is not None:
                release_graph(graph_id)
            binding.clear_binding_inputs()
            binding.clear_binding_outputs()

        return release

    def _run_options(self, graph_id: int):
        """One captured CUDA graph per input shape: ONNX Runtime keys them by ``gpu_graph_id``."""
        import onnxruntime as ort

        options = ort.RunOptions()
        if self.cuda_graph:
            options.add_run_config_entry("gpu_graph_id", str(graph_id))
        return options

    def close(self) -> None:
        if self.device_io is not None:
            self.device_io.slots.clear()  # the IO bindings first: they belong to the session
        self.session = None
        if self.device_io is not None:
            self.device_io.close()
