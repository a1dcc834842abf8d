"""The TensorRT backend: a serialized engine (``python -m export.trt``) run with ``execute_async_v3``.

A plan file holds kernels for one TensorRT version and one GPU model and nothing about the model it
computes, so every plan has a JSON sidecar beside it (``w32.plan`` → ``w32.plan.json``, written by
``export.trt``) that says what the engine is (``ModelMetadata`` props, input multiple, profile) and
what built it (TensorRT version, GPU name and compute capability, plan sha256, source ONNX).
The sidecar is read first: a missing or damaged sidecar, a plan it does not describe, or an engine
from another TensorRT version or another GPU each give one line naming the plan and the rebuild
command, before TensorRT is asked to deserialize anything.

Running: device memory comes from ``runtime.backends.device.DeviceIO`` (numba-cuda, no torch, no
pycuda). Every distinct set of input shapes gets one slot of fixed input and output buffers; the
execution context is given the slot's input shapes and tensor addresses when the slot changes, and
``execute_async_v3`` runs on the DeviceIO stream. ``run(feed, on_device=True)`` leaves the outputs in
the slot's buffers for the CUDA grouping (``runtime.cuda_grouping``) to read in place; ``run(feed)``
copies them to the host. A feed outside the engine's optimization profile is a UserError that names the profile and the
``--shapes`` / ``--max-batch`` rebuild.

TensorRT API used here (identical in TensorRT 10.x and 11.x): ``Logger``, ``Runtime``,
``deserialize_cuda_engine``, ``num_io_tensors``, ``get_tensor_name``, ``get_tensor_mode``,
``get_tensor_dtype``, ``get_tensor_shape``, ``num_optimization_profiles``, ``get_tensor_profile_shape``,
``create_execution_context``, ``set_input_shape``, ``get_tensor_shape`` (context),
``set_tensor_address``, ``execute_async_v3``, ``nptype``. TensorRT itself is imported only when an
engine is opened, so ``import runtime.backends.trt_backend`` works anywhere.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.backends.base import Backend, TensorSpec, io_specs
from runtime.errors import UserError
from runtime.metadata import ModelMetadata

TRT_INSTALL = ("pip install 'hrnet-deploy[trt]' on a machine with an NVIDIA GPU and its driver "
               "(TensorRT runs only there)")
MIN_TENSORRT_MAJOR = 10
SIDECAR_SUFFIX = ".json"
SIDECAR_FORMAT = "hrnet-deploy TensorRT engine"
SIDECAR_VERSION = 1
PLAN_SUFFIXES = (".plan", ".engine")
# Keys a sidecar must have for the backend to trust it (export.trt writes more, for people).
SIDECAR_KEYS = ("format", "format_version", "tensorrt_version", "gpu", "plan_sha256", "input_multiple",
                "profiles", "metadata", "source_onnx")


def rebuild_hint(sidecar: dict | None, plan: Path) -> str:
    """The command that rebuilds ``plan`` from the ONNX file it came from (named by the sidecar when known)."""
    source = ((sidecar or {}).get("source_onnx") or {}).get("path") or "MODEL.onnx"
    return f"rebuild it here with python -m export.trt --onnx {source} -o {plan}"


# ----------------------------------------------------------------------------------------------
# Facts about this machine


def import_tensorrt():
    """``tensorrt`` (10 or later), or a UserError naming what to install."""
    try:
        import tensorrt as trt
    except Exception as exc:  # noqa: BLE001 - ImportError, or a stub / broken wheel failing at import
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise UserError(f"TensorRT is not installed or cannot be loaded ({reason}): {TRT_INSTALL}") from None
    version = str(getattr(trt, "__version__", "0"))
    major = version.split(".")[0]
    if not major.isdigit() or int(major) < MIN_TENSORRT_MAJOR or not hasattr(trt, "Builder"):
        raise UserError(f"TensorRT {version} is installed; hrnet-deploy needs TensorRT {MIN_TENSORRT_MAJOR} or "
                        f"later: {TRT_INSTALL}")
    return trt


@dataclass(frozen=True)
class GpuFacts:
    """What a TensorRT engine is tied to besides the TensorRT version."""

    name: str
    compute_capability: str  # "9.0"


def gpu_facts(device_id: int = 0) -> GpuFacts:
    """Name and compute capability of CUDA device ``device_id`` (numba-cuda), or a UserError."""
    from runtime.cuda_grouping import import_cuda

    cuda, simulator = import_cuda()
    if simulator:
        raise UserError("TensorRT needs a real NVIDIA GPU, but NUMBA_ENABLE_CUDASIM=1 puts numba on its CPU "
                        "simulator; unset NUMBA_ENABLE_CUDASIM")
    try:
        count = len(cuda.gpus)
        if not 0 <= device_id < count:
            raise UserError(f"device cuda:{device_id}: this machine has {count} CUDA device(s) (cuda:0 .. "
                            f"cuda:{count - 1})")
        cuda.select_device(int(device_id))
        device = cuda.get_current_device()
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - CUDA driver errors come in several types
        raise UserError(f"device cuda:{device_id}: CUDA could not open it ({' '.join(str(exc).split())[:160]})") from None
    name = device.name.decode() if isinstance(device.name, bytes) else str(device.name)
    major, minor = tuple(device.compute_capability)[:2]
    return GpuFacts(name, f"{int(major)}.{int(minor)}")


# ----------------------------------------------------------------------------------------------
# The sidecar


def sidecar_path(plan: str | Path) -> Path:
    """``w32.plan`` → ``w32.plan.json``."""
    plan = Path(plan)
    return plan.with_name(plan.name + SIDECAR_SUFFIX)


def read_sidecar(plan: str | Path) -> dict:
    """The sidecar of ``plan`` as a dict (keys checked), or a UserError saying how to rebuild."""
    plan = Path(plan)
    path = sidecar_path(plan)
    if not path.is_file():
        raise UserError(f"{plan}: its sidecar {path.name} is missing (it holds the model metadata and what the "
                        f"engine was built for); keep the two files together, or {rebuild_hint(None, plan)}")
    try:
        sidecar = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable engine sidecar ({' '.join(str(exc).split())[:120]}); "
                        f"{rebuild_hint(None, plan)}") from None
    if not isinstance(sidecar, dict) or sidecar.get("format") != SIDECAR_FORMAT:
        raise UserError(f"{path}: not an hrnet-deploy engine sidecar; {rebuild_hint(None, plan)}")
    missing = [key for key in SIDECAR_KEYS if key not in sidecar]
    if missing or sidecar.get("format_version") != SIDECAR_VERSION:
        raise UserError(f"{path}: sidecar format {sidecar.get('format_version')!r} without {missing or 'nothing'} "
                        f"(this toolkit reads format {SIDECAR_VERSION}); {rebuild_hint(sidecar, plan)}")
    return sidecar


def sidecar_metadata(sidecar: dict, plan: Path) -> ModelMetadata:
    """The ModelMetadata the sidecar carries (``hrnet_deploy.*`` props, as in an ONNX file)."""
    try:
        return ModelMetadata.from_props(dict(sidecar["metadata"]))
    except (KeyError, ValueError, TypeError, json.JSONDecodeError) as exc:
        raise UserError(f"{sidecar_path(plan)}: its model metadata is incomplete or damaged ({exc}); "
                        f"{rebuild_hint(sidecar, plan)}") from None


def check_compatible(sidecar: dict, plan: Path, tensorrt_version: str, gpu: GpuFacts) -> None:
    """Raise a one-line UserError when the engine belongs to another TensorRT version or GPU.

    A pure comparison of the sidecar with the running TensorRT version and GPU: TensorRT engines run
    only on the TensorRT version that built them (unless built version-compatible, which export.trt
    does not do) and only on the GPU model they are tuned for, so name and compute capability must
    both match.
    """
    built = str(sidecar.get("tensorrt_version"))
    if built != str(tensorrt_version):
        raise UserError(f"{plan}: built with TensorRT {built}, this is TensorRT {tensorrt_version}; an engine runs "
                        f"only on the TensorRT version that built it: {rebuild_hint(sidecar, plan)}")
    want = sidecar.get("gpu") or {}
    want_name, want_cc = str(want.get("name")), str(want.get("compute_capability"))
    if want_name != gpu.name or want_cc != gpu.compute_capability:
        raise UserError(f"{plan}: built for {want_name} (compute capability {want_cc}), this is {gpu.name} "
                        f"(compute capability {gpu.compute_capability}); an engine runs only on the GPU model it "
                        f"was built for: {rebuild_hint(sidecar, plan)}")


def profile_ranges(profile: dict) -> dict[str, tuple[tuple[int, ...], ...]]:
    """``{input: (min, opt, max)}`` with tuple shapes, from one profile of a sidecar (``{input: {min, opt, max}}``)."""
    return {name: tuple(tuple(int(d) for d in value[key]) for key in ("min", "opt", "max"))
            for name, value in profile.items()}


def describe_profile(ranges: tuple[tuple[int, ...], ...]) -> str:
    """``batch 1..4, 512x512 .. 1024x1024 (HxW)`` for one NHWC input's (min, opt, max)."""
    low, _, high = ranges
    return f"batch {low[0]}..{high[0]}, {low[1]}x{low[2]} .. {high[1]}x{high[2]} (HxW)"


def outside_profile(shapes: dict[str, tuple[int, ...]],
                    profiles: dict[str, tuple[tuple[int, ...], ...]]) -> str | None:
    """Why input shapes fall outside the engine's profile (``None`` when every input fits)."""
    for name, shape in shapes.items():
        low, _, high = profiles[name]
        if len(shape) != len(low) or any(not lo <= s <= hi for s, lo, hi in zip(shape, low, high)):
            n, h, w = (list(shape) + [0, 0, 0])[:3]
            return (f"input {name!r} is batch {n}, {h}x{w} (HxW), outside the engine's profile "
                    f"({describe_profile(profiles[name])})")
    return None


# ----------------------------------------------------------------------------------------------
# The backend


def _parse_device(device: str) -> int:
    kind, _, index = str(device).partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise UserError(f"device {device!r}: a TensorRT engine runs on an NVIDIA GPU; use cuda or cuda:N")
    return int(index or 0)


class TrtBackend(Backend):
    """``TrtBackend(path, device="cuda")``: a TensorRT plan and its sidecar, run on the GPU."""

    name = "tensorrt"

    def __init__(self, path: str | Path, device: str = "cuda") -> None:
        self.path = Path(path)
        self.device_id = _parse_device(device)
        self.device = "cuda"
        self.context = self.engine = self._runtime = None
        self._bound = None
        if not self.path.is_file():
            raise UserError(f"{self.path}: no such engine file; build one with python -m export.trt --onnx MODEL.onnx")
        self.sidecar = read_sidecar(self.path)
        self.metadata = sidecar_metadata(self.sidecar, self.path)
        self.inputs, self.outputs = io_specs(self.metadata)
        self.stride = int(self.sidecar["input_multiple"])
        self._load()

    # --------------------------------------------------------------------------------------------
    # Loading

    def _load(self) -> None:
        """Check the plan against the sidecar and this machine, deserialize it, check its I/O, make a context."""
        trt = import_tensorrt()
        from runtime.backends.device import DeviceIO

        self.device_io = DeviceIO(self.device_id)
        try:
            check_compatible(self.sidecar, self.path, trt.__version__, gpu_facts(self.device_id))
            data = self.path.read_bytes()
            if hashlib.sha256(data).hexdigest() != self.sidecar["plan_sha256"]:
                raise UserError(f"{self.path}: the file is not the engine its sidecar describes (sha256 differs: "
                                f"replaced or truncated); {rebuild_hint(self.sidecar, self.path)}")
            self._logger = trt.Logger(trt.Logger.WARNING)
            self._runtime = trt.Runtime(self._logger)
            self.engine = self._runtime.deserialize_cuda_engine(data)
            del data
            if self.engine is None:
                raise UserError(f"{self.path}: TensorRT {trt.__version__} could not deserialize this engine (see its "
                                f"message above); {rebuild_hint(self.sidecar, self.path)}")
            self._check_engine_io(trt)
            self.profiles = self._read_profiles()
            self.max_batch = min(ranges[2][0] for ranges in self.profiles.values())
            self.context = self.engine.create_execution_context()
            if self.context is None:
                raise UserError(f"{self.path}: TensorRT could not create an execution context (GPU memory for the "
                                f"profile's largest shape, {self._profile_text()}); free GPU memory or rebuild with "
                                f"smaller --shapes / --max-batch")
        except BaseException:
            self.close()
            raise

    def _check_engine_io(self, trt) -> None:
        """The engine's named I/O tensors (looked up by name) must be the ones the metadata promises."""
        engine = self.engine
        found: dict[str, list[TensorSpec]] = {"inputs": [], "outputs": []}
        for index in range(engine.num_io_tensors):
            name = engine.get_tensor_name(index)
            kind = "inputs" if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else "outputs"
            try:
                dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name
            except TypeError:  # a TensorRT type with no NumPy equivalent
                dtype = str(engine.get_tensor_dtype(name))
            shape = tuple(None if int(d) < 0 else int(d) for d in engine.get_tensor_shape(name))
            found[kind].append(TensorSpec(name, dtype, shape))
        self._check_io(found, "engine {kind} {found} do not match its sidecar's model ({expected})",
                       rebuild_hint(self.sidecar, self.path), ordered=False)

    def _read_profiles(self) -> dict[str, tuple[tuple[int, ...], ...]]:
        """Profile 0's (min, opt, max) of every input, as the engine itself reports them."""
        if self.engine.num_optimization_profiles < 1:
            raise UserError(f"{self.path}: the engine has no optimization profile; {rebuild_hint(self.sidecar, self.path)}")
        return {name: tuple(tuple(int(d) for d in dims) for dims in self.engine.get_tensor_profile_shape(name, 0))
                for name in self.metadata.input_names}

    def _profile_text(self) -> str:
        return "; ".join(f"{name}: {describe_profile(ranges)}" for name, ranges in self.profiles.items())

    # --------------------------------------------------------------------------------------------
    # Running

    def check_feed(self, feed: dict[str, np.ndarray]) -> None:
        """The base checks, with the engine's profile first: for a plan, the fix for a too large input
        or batch is a rebuild with other --shapes / --max-batch (or smaller batches)."""
        names = self.metadata.input_names
        if sorted(feed) == sorted(names) and all(np.ndim(feed[name]) == 4 for name in names):
            self._check_profile(feed)
        try:
            super().check_feed(feed)
        except UserError as error:
            raise UserError(f"{self.path}: {error}") from None

    def _check_profile(self, feed: dict[str, np.ndarray]) -> None:
        problem = outside_profile({name: tuple(np.shape(feed[name])) for name in self.metadata.input_names},
                                  self.profiles)
        if problem:
            raise UserError(f"{self.path}: {problem}; run smaller batches (runtime.run --batch) or "
                            f"{rebuild_hint(self.sidecar, self.path)} --shapes MIN,OPT,MAX --max-batch N covering it")

    def _bind(self, slot, feed: dict[str, np.ndarray]) -> None:
        """Give the context this slot's input shapes and every tensor address (only when the slot changes)."""
        from runtime.backends.device import device_pointer

        if "addresses" not in slot.state:
            slot.state["shapes"] = [(name, tuple(int(d) for d in feed[name].shape)) for name in self.metadata.input_names]
            slot.state["addresses"] = [(name, device_pointer(array))
                                       for group in (slot.inputs, slot.outputs) for name, array in group.items()]
            slot.state["release"] = lambda: self._unbind(slot)
        if self._bound is slot:
            return
        self._bound = None
        for name, shape in slot.state["shapes"]:
            if not self.context.set_input_shape(name, shape):
                raise UserError(f"{self.path}: TensorRT refused input {name!r} of shape {list(shape)} "
                                f"({self._profile_text()}); rebuild with python -m export.trt --shapes covering it")
        if "checked" not in slot.state:
            for name, array in slot.outputs.items():
                shape = tuple(int(d) for d in self.context.get_tensor_shape(name))
                if shape != tuple(array.shape):
                    raise RuntimeError(f"{self.path}: engine output {name!r} is {list(shape)} for these inputs, "
                                       f"expected {list(array.shape)}")
            slot.state["checked"] = True
        for name, address in slot.state["addresses"]:
            if not self.context.set_tensor_address(name, address):
                raise RuntimeError(f"{self.path}: TensorRT refused the device address of {name!r}")
        self._bound = slot

    def _unbind(self, slot) -> None:
        """An evicted slot's addresses must not stay set on the context: the next run binds afresh."""
        if self._bound is slot:
            self._bound = None

    def _run_device(self, feed: dict[str, np.ndarray]) -> dict[str, object]:
        """Upload into this shape's fixed buffers and run (check_feed has checked the profile); the
        outputs stay in that slot's buffers."""
        slot = self.device_slot(feed)
        self._bind(slot, feed)
        return self.device_io.execute(slot, feed, self._execute)

    def _execute(self) -> None:
        if not self.context.execute_async_v3(self.device_io.stream_pointer):
            raise RuntimeError(f"{self.path}: TensorRT execute_async_v3 failed (see its message above)")

    def close(self) -> None:
        # The context before the engine before the runtime, then the buffers they wrote into.
        self._bound = None
        self.context = None
        self.engine = None
        self._runtime = None
        if self.device_io is not None:
            self.device_io.close()
