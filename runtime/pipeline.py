"""``PoseEstimator``: image in, people out, on any backend.

host: read → geometry + warp (SPEC §4, §11) → backend runs the DecodeGraph → grouping + refine
(SPEC §7–8, numba) → back to image pixels (SPEC §9).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime.backends import Backend
from runtime.grouping import decode_people
from runtime.preprocess import Prepared, prepare, read_image
from runtime.results import Person, people_in_image


@dataclass
class StageTimes:
    """Seconds spent per stage, summed over the images seen (for benchmarks and summaries)."""

    read_warp: float = 0.0
    graph: float = 0.0
    group_refine: float = 0.0
    images: int = 0

    def add(self, other: "StageTimes") -> None:
        self.read_warp += other.read_warp
        self.graph += other.graph
        self.group_refine += other.group_refine
        self.images += other.images


@dataclass
class PoseEstimator:
    """Runs one backend with the decode parameters its model file carries."""

    backend: Backend
    times: StageTimes = field(default_factory=StageTimes)

    @property
    def metadata(self):
        return self.backend.metadata

    def prepare(self, image: np.ndarray) -> Prepared:
        return prepare(image, self.metadata.input_size, self.metadata.decode)

    def run_graph(self, prepared: Prepared | list[Prepared]) -> dict[str, np.ndarray]:
        """The backend's outputs for prepared images of equal input sizes, batched (one image: batch 1)."""
        batch = prepared if isinstance(prepared, list) else [prepared]
        feed = {name: np.stack([p.inputs[i] for p in batch]) for i, name in enumerate(self.metadata.input_names)}
        return self.backend.run(feed)

    def group(self, outputs: dict[str, np.ndarray], index: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Grouping + refine of one image of the batch: persons ``[P, 17, 5]`` (map coordinates), scores."""
        decode = self.metadata.decode
        return decode_people(outputs["candidates"][index], outputs["heatmap"][index], outputs["tags"][index],
                             decode.detection_threshold, decode.tag_threshold)

    def __call__(self, image: np.ndarray) -> list[Person]:
        """People in one RGB uint8 image, in the reference's order."""
        return self.batch([image])[0]

    def batch(self, images: list[np.ndarray]) -> list[list[Person]]:
        """People in several images; images whose network inputs have equal sizes share one graph run."""
        start = time.perf_counter()
        prepared = [self.prepare(image) for image in images]
        warped = time.perf_counter()
        by_shape: dict[tuple, list[int]] = {}
        for index, item in enumerate(prepared):
            by_shape.setdefault(tuple(a.shape for a in item.inputs), []).append(index)
        people: list[list[Person]] = [[] for _ in images]
        graph = group = 0.0
        for indices in by_shape.values():
            began = time.perf_counter()
            outputs = self.run_graph([prepared[i] for i in indices])
            ran = time.perf_counter()
            for position, index in enumerate(indices):
                persons, scores = self.group(outputs, position)
                people[index] = people_in_image(persons, scores, prepared[index].base_geometry)
            graph += ran - began
            group += time.perf_counter() - ran
        self.times.add(StageTimes(warped - start, graph, group, len(images)))
        return people

    def estimate_file(self, path: str | Path) -> list[Person]:
        start = time.perf_counter()
        image = read_image(path)
        self.times.read_warp += time.perf_counter() - start
        return self(image)
