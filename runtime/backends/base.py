"""The backend interface (after Polygraphy's runners): load (open and check I/O), check inputs, run, close."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtime.errors import UserError
from runtime.metadata import ModelMetadata, tile_grid


@dataclass(frozen=True)
class TensorSpec:
    """Name, dtype and shape of one input or output; ``None`` marks a dynamic dimension."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]


class Backend:
    """A loaded model: ``run({input name: uint8 [N, H, W, 3]}) -> {output name: array}``.

    Loading and running are separate steps (as in Polygraphy's runners). A subclass's constructor
    loads: it opens the model, sets ``metadata``, ``inputs`` and ``outputs`` and checks the file's own
    I/O against them with ``_check_io``. Running is ``run``: it checks the feed against the specs and
    calls the subclass's ``_run`` (outputs on the host) or ``_run_device``. ``close`` (or leaving the
    ``with`` block) frees what loading took.

    Backends that run on a GPU also set ``device_io`` (``runtime.backends.device.DeviceIO``) and
    implement ``_run_device``: ``run(feed, on_device=True)`` returns the outputs as device arrays that
    stay where the engine wrote them (valid until the next run with the same input shapes), for the
    CUDA grouping to read in place; ``run(feed)`` on such a backend copies them to the host.
    """

    metadata: ModelMetadata
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    name: str = "backend"
    # Input sides must be multiples of this (the network downsamples by 32).
    stride: int = 32
    device_io = None
    # Largest batch a run takes (a TensorRT profile's limit); None: any.
    max_batch: int | None = None

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release what the backend holds (sessions, device memory)."""

    def check_feed(self, feed: dict[str, np.ndarray]) -> None:
        expected = [spec.name for spec in self.inputs]
        if sorted(feed) != sorted(expected):
            raise UserError(f"{self.name}: inputs {sorted(feed)} given, the model takes {expected}")
        batch = None
        for spec, scale in zip(self.inputs, self.metadata.decode.scales):
            array = feed[spec.name]
            if array.dtype != np.dtype(spec.dtype) or array.ndim != len(spec.shape) or array.shape[-1] != 3:
                raise UserError(f"{self.name}: input {spec.name!r} must be {spec.dtype} [N, H, W, 3], "
                                f"got {array.dtype} {list(array.shape)}")
            height, width = array.shape[1:3]
            if height % self.stride or width % self.stride:
                raise UserError(f"{self.name}: input {spec.name!r} is {width}x{height}; sides must be multiples "
                                f"of {self.stride} (use runtime.preprocess.prepare)")
            limit = int(self.metadata.max_input_side * scale)
            if max(height, width) > limit:
                raise UserError(f"{self.name}: input {width}x{height} is beyond the {limit} px side this model "
                                f"supports; crop the image or resize it to a less extreme aspect ratio")
            if batch is not None and array.shape[0] != batch:
                raise UserError(f"{self.name}: every scale's input must have the same batch size")
            batch = array.shape[0]

    def run(self, feed: dict[str, np.ndarray], on_device: bool = False) -> dict[str, object]:
        """The outputs of one checked feed: NumPy arrays, or with ``on_device`` the device arrays the
        engine wrote (only for backends with a ``device_io``)."""
        if on_device and self.device_io is None:
            raise UserError(f"{self.name}: this backend keeps its outputs on the host; use run(feed) without on_device")
        self.check_feed(feed)
        if self.device_io is None:
            return self._run(feed)
        outputs = self._run_device(feed)
        return outputs if on_device else self.device_io.download(self.device_slot(feed))

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _run_device(self, feed: dict[str, np.ndarray]) -> dict[str, object]:
        raise NotImplementedError

    def _check_io(self, found: dict[str, list[TensorSpec]], names_differ: str, fix: str,
                  ordered: bool = True) -> None:
        """The model file's own inputs and outputs (``found["inputs"]``, ``found["outputs"]``) must be the
        ones ``self.inputs`` / ``self.outputs`` promise: the same names (in the same order when
        ``ordered``), and for each the dtype, the rank and every dimension both sides fix.

        A mismatch is a one-line UserError naming ``self.path`` and ending with ``fix``; for differing
        names its text is ``names_differ`` with ``{kind}``, ``{found}`` and ``{expected}`` filled in.
        """
        for kind, expected in (("inputs", self.inputs), ("outputs", self.outputs)):
            names = [spec.name for spec in found[kind]]
            wanted = [spec.name for spec in expected]
            if (names != wanted) if ordered else (sorted(names) != sorted(wanted)):
                text = names_differ.format(kind=kind, found=names if ordered else sorted(names), expected=wanted)
                raise UserError(f"{self.path}: {text}; {fix}")
            actual = {spec.name: spec for spec in found[kind]}
            for want in expected:
                got = actual[want.name]
                fixed_mismatch = any(w is not None and g is not None and g != w for g, w in zip(got.shape, want.shape))
                if got.dtype != want.dtype or len(got.shape) != len(want.shape) or fixed_mismatch:
                    raise UserError(f"{self.path}: {kind[:-1]} {got.name!r} is {got.dtype} {list(got.shape)}, "
                                    f"expected {want.dtype} {list(want.shape)} (None = any size); {fix}")

    def device_slot(self, feed: dict[str, np.ndarray]):
        """The fixed device buffers of this feed's shapes (``device_io.slot``), typed by the backend's specs."""
        shapes = self.output_shapes(feed)
        return self.device_io.slot({spec.name: (feed[spec.name].shape, spec.dtype) for spec in self.inputs},
                                   {spec.name: (shapes[spec.name], spec.dtype) for spec in self.outputs})

    def output_shapes(self, feed: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
        """Shapes of the outputs for a feed: they follow from the base scale's input."""
        base = feed[self.metadata.input_names[self.metadata.decode.base]]
        batch, height, width = base.shape[:3]
        k = self.metadata.decode.top_k
        return {"candidates": (batch, 17, k, 5), "heatmap": (batch, 17, height, width),
                "tags": (batch, 17, height, width, 2), "tiles": (batch, 17, *tile_grid(height, width), 5)}


def io_specs(metadata: ModelMetadata) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The I/O every DecodeGraph has, whatever runs it."""
    k = metadata.decode.top_k
    inputs = [TensorSpec(name, "uint8", (None, None, None, 3)) for name in metadata.input_names]
    outputs = [TensorSpec("candidates", "float32", (None, 17, k, 5)),
               TensorSpec("heatmap", "float32", (None, 17, None, None)),
               TensorSpec("tags", "float32", (None, 17, None, None, 2)),
               TensorSpec("tiles", "float32", (None, 17, None, None, 5))]
    return inputs, outputs
