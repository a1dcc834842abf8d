"""Device memory for backends whose outputs stay on the GPU (TensorRT, ONNX Runtime's CUDA EP).

One ``DeviceIO`` per backend: a numba-cuda stream, and for every distinct set of input shapes one
``DeviceSlot`` of input and output buffers (numba device arrays) allocated the first time that shape
is seen and reused afterwards. Fixed addresses per shape are what CUDA graphs (ONNX Runtime's
``enable_cuda_graph``) and TensorRT's ``set_tensor_address`` want, and what lets the CUDA grouping
kernels (``runtime.cuda_grouping``) read the outputs in place: only people come back to the host.

numba-cuda, not torch or pycuda: the runtime installs on an edge box without torch.

The stream is a non-blocking one (``CU_STREAM_NON_BLOCKING``): it never waits for, nor makes wait,
work on the legacy default stream, which other libraries in the process may use — a blocking
stream would make such work part of (or break) ONNX Runtime's CUDA graph capture on it.

One thread owns a DeviceIO and the backend around it: slots, bindings and ONNX Runtime's captured
CUDA graphs (kept per thread by ONNX Runtime) are not shared between threads. At most ``max_slots``
input-shape sets are kept (default ``DEFAULT_MAX_SLOTS``): the least recently used one is evicted,
its buffers and whatever the backend bound to them (``DeviceSlot.state``: IO binding, captured graph
id) freed. A W32 slot at 512x704 holds about 73 MB; eight cover a service's usual sizes in
under 0.6 GB. ``evictions`` counts them, so the CLI can say when shapes thrash the slots.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


DEFAULT_MAX_SLOTS = 8


def non_blocking_stream(cuda):
    """A numba stream created with ``CU_STREAM_NON_BLOCKING`` (numba's ``cuda.stream()`` makes a
    blocking one), freed with its context like numba's own streams."""
    from numba.cuda.cudadrv import driver

    flags = driver.binding.CUstream_flags.CU_STREAM_NON_BLOCKING.value
    handle = driver.driver.cuStreamCreate(flags)
    context = cuda.current_context()
    return driver.Stream(handle, finalizer=driver._stream_finalizer(context.deallocations, handle))


def stream_pointer(stream) -> int:
    """The ``cudaStream_t`` of a numba stream as an integer (for TensorRT and ONNX Runtime)."""
    handle = stream.handle
    value = getattr(handle, "value", handle)  # ctypes c_void_p (numba's ctypes binding) or a CUstream
    return int(value or 0)


def device_pointer(array) -> int:
    """The device address of a numba device array (or anything with ``__cuda_array_interface__``)."""
    return int(array.__cuda_array_interface__["data"][0])


@dataclass
class DeviceSlot:
    """The buffers of one input-shape set; ``state`` holds what a backend binds to them once."""

    inputs: dict[str, object]
    outputs: dict[str, object]
    state: dict[str, object] = field(default_factory=dict)


@dataclass
class DeviceTimes:
    """Seconds of the last run: host → device copy of the inputs, and the graph itself."""

    upload: float = 0.0
    graph: float = 0.0


class DeviceIO:
    """Streams and buffers on CUDA device ``device_id``; ``close()`` (or ``with``) frees them."""

    def __init__(self, device_id: int = 0, max_slots: int = DEFAULT_MAX_SLOTS) -> None:
        from runtime.cuda_grouping import import_cuda, probe

        if max_slots < 1:
            raise ValueError(f"max_slots must be >= 1, got {max_slots}")
        self.cuda, simulator = import_cuda()
        if not simulator:
            self.cuda.select_device(int(device_id))
            probe()  # one line naming what is missing (driver, NVRTC, CUDA major), before any buffer
        self.device_id = int(device_id)
        self.stream = self.cuda.stream() if simulator else non_blocking_stream(self.cuda)
        self.max_slots = int(max_slots)
        self.slots: OrderedDict[tuple, DeviceSlot] = OrderedDict()
        self.evictions = 0
        self.times = DeviceTimes()

    @property
    def stream_pointer(self) -> int:
        return stream_pointer(self.stream)

    def slot(self, inputs: dict[str, tuple[tuple[int, ...], str]],
             outputs: dict[str, tuple[tuple[int, ...], str]]) -> DeviceSlot:
        """The buffers for these input and output ``name: (shape, dtype)``, allocated on first use."""
        key = tuple(sorted((name, tuple(shape), dtype) for name, (shape, dtype) in inputs.items()))
        slot = self.slots.get(key)
        if slot is not None:
            self.slots.move_to_end(key)
        else:
            while len(self.slots) >= self.max_slots:
                self.evict()
            def allocate(specs):
                return {name: self.cuda.device_array(tuple(shape), np.dtype(dtype), stream=self.stream)
                        for name, (shape, dtype) in specs.items()}

            slot = DeviceSlot(allocate(inputs), allocate(outputs))
            self.slots[key] = slot
        return slot

    def evict(self) -> None:
        """Free the least recently used slot: what the backend bound to it first, then its buffers."""
        _, slot = self.slots.popitem(last=False)
        release = slot.state.pop("release", None)
        if release is not None:
            release()
        slot.state.clear()
        slot.inputs.clear()
        slot.outputs.clear()
        self.evictions += 1

    def eviction_note(self, images: int) -> str | None:
        """One line when input shapes thrash the slots (as many evictions as slots, and one for at
        least every 4th image): every eviction costs a new allocation and, in ONNX Runtime, a new
        CUDA graph capture."""
        if self.evictions < self.max_slots or self.evictions * 4 < images:
            return None
        return (f"note: {self.evictions} device-buffer evictions over {images} images ({self.max_slots} input "
                f"shapes kept): many distinct input sizes; resize or pad images to fewer sizes, or open the "
                f"backend's DeviceIO with a larger max_slots")

    def upload(self, slot: DeviceSlot, feed: dict[str, np.ndarray]) -> None:
        """Copy the host feed into the slot's input buffers (timed into ``times.upload``)."""
        start = time.perf_counter()
        for name, array in feed.items():
            slot.inputs[name].copy_to_device(np.ascontiguousarray(array), stream=self.stream)
        self.stream.synchronize()
        self.times.upload = time.perf_counter() - start

    def execute(self, slot: DeviceSlot, feed: dict[str, np.ndarray], graph: Callable[[], None]) -> dict[str, object]:
        """Upload the feed into the slot, run ``graph`` (which computes on this stream into the slot's
        outputs), wait for it; ``times`` gets both durations. Returns the slot's output buffers."""
        self.upload(slot, feed)
        start = time.perf_counter()
        graph()
        self.stream.synchronize()
        self.times.graph = time.perf_counter() - start
        return slot.outputs

    def download(self, slot: DeviceSlot) -> dict[str, np.ndarray]:
        """Every output of the slot on the host (for tests and the host pipeline; the device path
        never needs it)."""
        host = {name: array.copy_to_host(stream=self.stream) for name, array in slot.outputs.items()}
        self.stream.synchronize()
        return host

    def close(self) -> None:
        self.slots.clear()
        self.stream = None
