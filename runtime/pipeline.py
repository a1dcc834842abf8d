"""``PoseEstimator``: image in, people out, on any backend.

host: read → geometry + warp (SPEC §4, §11) → backend runs the DecodeGraph → grouping + refine
(SPEC §7–8, numba) → back to image pixels (SPEC §9).

With a GPU backend (one that has a ``device_io``: TensorRT, ONNX Runtime CUDA) the outputs stay on
the device. ``grouping="host"`` (the default) copies back only the candidates (≈10 KB per image),
groups them with the njit build and runs score + refine on the device on the maps in place;
``grouping="device"`` runs grouping there too, on one GPU thread (``runtime.cuda_grouping``). Both
give the people of the CPU path, bit for bit; only the people come back.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime.backends import Backend
from runtime.errors import ModelFault, UserError
from runtime.grouping import decode_people
from runtime.preprocess import Prepared, prepare, read_image
from runtime.results import Person, people_in_image
from runtime.serving import unpad_people


@dataclass
class StageTimes:
    """Seconds spent per stage, summed over the images seen (for benchmarks and summaries)."""

    read_warp: float = 0.0
    graph: float = 0.0
    group_refine: float = 0.0
    images: int = 0
    upload: float = 0.0  # host → device copy of the inputs (GPU backends)
    download: float = 0.0  # device → host copy of the people (GPU backends)

    def add(self, other: "StageTimes") -> None:
        for name in ("read_warp", "graph", "group_refine", "images", "upload", "download"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


GROUPINGS = ("host", "device")


def check_finite(outputs: dict[str, np.ndarray], backend: Backend) -> None:
    """A ModelFault when the candidates (or, from a server that groups, the people) hold NaN or infinity:
    the file's weights are damaged (or its precision overflowed), and its people would be silently wrong
    or missing."""
    first = outputs["candidates"] if "candidates" in outputs else outputs["persons"]
    if not np.isfinite(first).all():
        where = getattr(backend, "path", None) or backend.name
        raise ModelFault(f"{where}: the model computes NaN or infinite values, so its weights are damaged; export "
                         f"the file again (python -m export.onnx) from a good checkpoint")


@dataclass
class PoseEstimator:
    """Runs one backend with the decode parameters its model file carries.

    ``grouping``: where a GPU backend groups the candidates, ``"host"`` (njit; refine stays on the
    device) or ``"device"`` (one GPU thread). CPU backends always group on the host.
    ``refine=False`` (``--no-refine``): the people of grouping + adjust, without SPEC §8's refine
    (the dense maps are not read); scores are the same, since they are taken before refine.
    """

    backend: Backend
    times: StageTimes = field(default_factory=StageTimes)
    grouping: str = "host"
    refine: bool = True
    decoder: object = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.grouping not in GROUPINGS:
            raise UserError(f"grouping {self.grouping!r}: use host or device")
        if self.grouping == "device" and self.backend.device_io is None:
            raise UserError(f"--grouping device needs a GPU backend (--device cuda or a TensorRT plan); "
                            f"{self.backend.name} keeps its outputs on the host")
        if self.backend.device_io is not None:
            from runtime.cuda_grouping import DeviceDecoder

            self.decoder = DeviceDecoder(stream=self.backend.device_io.stream)

    @property
    def metadata(self):
        return self.backend.metadata

    def prepare(self, image: np.ndarray) -> Prepared:
        return prepare(image, self.metadata.input_size, self.metadata.decode)

    def feed(self, batch: list[Prepared]) -> dict[str, np.ndarray]:
        """The backend's inputs for prepared images of equal input sizes, stacked into one batch."""
        return {name: np.stack([p.inputs[i] for p in batch]) for i, name in enumerate(self.metadata.input_names)}

    def run_graph(self, prepared: Prepared | list[Prepared]) -> dict[str, np.ndarray]:
        """The backend's outputs for prepared images of equal input sizes, batched (one image: batch 1)."""
        return self.backend.run(self.feed(prepared if isinstance(prepared, list) else [prepared]))

    def group(self, outputs: dict[str, np.ndarray], index: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Grouping + refine of one image of the batch: persons ``[P, 17, 5]`` (map coordinates), scores.

        A backend that groups itself (a Triton server, ``runtime.serving``) returns the people instead
        of the maps; they are read as they are."""
        if "persons" in outputs:
            if not self.refine:
                raise UserError(f"{self.backend.name} groups and refines on the server, so --no-refine cannot "
                                f"apply; drop --no-refine, or run the model file itself (--engine FILE)")
            return unpad_people(outputs, index)
        decode = self.metadata.decode
        return decode_people(outputs["candidates"][index], outputs["heatmap"][index], outputs["tags"][index],
                             outputs["tiles"][index], decode.detection_threshold, decode.tag_threshold,
                             with_refine=self.refine)

    def __call__(self, image: np.ndarray) -> list[Person]:
        """People in one RGB uint8 image, in the reference's order."""
        return self.batch([image])[0]

    def batch(self, images: list[np.ndarray]) -> list[list[Person]]:
        """People in several images; images whose network inputs have equal sizes share one graph run
        (up to the backend's ``max_batch``)."""
        start = time.perf_counter()
        prepared = [self.prepare(image) for image in images]
        warped = time.perf_counter()
        by_shape: dict[tuple, list[int]] = {}
        for index, item in enumerate(prepared):
            by_shape.setdefault(tuple(a.shape for a in item.inputs), []).append(index)
        limit = self.backend.max_batch or len(images)
        runs = [indices[i:i + limit] for indices in by_shape.values() for i in range(0, len(indices), limit)]
        people: list[list[Person]] = [[] for _ in images]
        times = StageTimes(read_warp=warped - start, images=len(images))
        for indices in runs:
            found = self.decode_batch([prepared[i] for i in indices], times)
            for (persons, scores), index in zip(found, indices):
                people[index] = people_in_image(persons, scores, prepared[index].base_geometry)
        self.times.add(times)
        return people

    def decode_batch(self, batch: list[Prepared], times: StageTimes) -> list[tuple[np.ndarray, np.ndarray]]:
        """Graph, grouping and refine of prepared images of equal input sizes (at most ``max_batch``):
        ``(persons [P, 17, 5] in map coordinates, scores [P])`` per image, each stage timed into ``times``."""
        if self.decoder is not None:
            return self._device_people(batch, times)
        began = time.perf_counter()
        outputs = self.run_graph(batch)
        check_finite(outputs, self.backend)
        ran = time.perf_counter()
        found = [self.group(outputs, position) for position in range(len(batch))]
        times.graph += ran - began
        times.group_refine += time.perf_counter() - ran
        return found

    def _device_people(self, batch: list[Prepared], times: StageTimes) -> list[tuple[np.ndarray, np.ndarray]]:
        """Graph, grouping and refine on the GPU for one batch; each stage timed on its own."""
        outputs = self.backend.run(self.feed(batch), on_device=True)
        times.upload += self.backend.device_io.times.upload
        times.graph += self.backend.device_io.times.graph
        decode = self.metadata.decode
        found = []
        for position in range(len(batch)):
            began = time.perf_counter()
            if not self.refine:
                found.append(self._device_grouped(outputs["candidates"][position]))
                times.group_refine += time.perf_counter() - began
                continue
            launch = self.decoder.launch if self.grouping == "device" else self.decoder.launch_host_grouped
            job = launch(outputs["candidates"][position], outputs["heatmap"][position], outputs["tags"][position],
                         decode.detection_threshold, decode.tag_threshold)
            self.decoder.synchronize()
            launched = time.perf_counter()
            found.append(self.decoder.collect(job))
            times.group_refine += launched - began
            times.download += time.perf_counter() - launched
        return found

    def _device_grouped(self, candidates) -> tuple[np.ndarray, np.ndarray]:
        """``--no-refine`` on a GPU backend: grouping where ``grouping`` says, scores on the host."""
        from runtime.grouping import group, person_scores

        decode = self.metadata.decode
        if self.grouping == "device":
            persons = self.decoder.group(candidates, decode.detection_threshold, decode.tag_threshold)
        else:
            self.decoder.synchronize()
            persons = group(np.ascontiguousarray(candidates.copy_to_host(), dtype=np.float32),
                            decode.detection_threshold, decode.tag_threshold)
        return persons, person_scores(persons)

    def estimate_file(self, path: str | Path) -> list[Person]:
        start = time.perf_counter()
        image = read_image(path)
        self.times.read_warp += time.perf_counter() - start
        return self(image)
