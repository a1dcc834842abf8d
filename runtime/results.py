"""People, COCO results and atomic file writes."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.files import check_output_file, write_atomic
from runtime.preprocess import Geometry, to_image_coordinates


@dataclass(frozen=True)
class Person:
    """One detected person in image pixels: ``keypoints [17, 3]`` (x, y, joint score), ``tags [17, 2]``
    (associative-embedding tags of grouped joints; 0 for refined or missing ones) and the person
    score (mean of the 17 joint scores before refine, as the reference reports it)."""

    keypoints: np.ndarray
    tags: np.ndarray
    score: float


def people_in_image(persons: np.ndarray, scores: np.ndarray, geometry: Geometry) -> list[Person]:
    """Persons ``[P, 17, 5]`` in base-size map coordinates → people in image pixels (SPEC §9)."""
    xy = to_image_coordinates(persons[:, :, :2], geometry)
    return [Person(np.concatenate([xy[p], persons[p, :, 2:3]], axis=1), persons[p, :, 3:5].copy(), float(scores[p]))
            for p in range(persons.shape[0])]


def image_id(path: str | Path, fallback: int) -> int:
    """The integer of a COCO file name (``000000000785.jpg`` → 785); ``fallback`` for other names."""
    digits = re.fullmatch(r"\D*?(\d+)", Path(path).stem)
    return int(digits.group(1)) if digits else fallback


def coco_results(image: int, people: list[Person]) -> list[dict]:
    """COCO keypoint results, one entry per person, in the given order."""
    return [{"image_id": int(image), "category_id": 1,
             "keypoints": [float(v) for v in person.keypoints.reshape(-1)], "score": float(person.score)}
            for person in people]


def write_json(path: str | Path, value) -> None:
    write_atomic(path, json.dumps(value).encode())


def check_writable(path: str | Path, flag: str = "") -> None:
    """Fail before any work if ``path`` cannot be written (``runtime.files.check_output_file``)."""
    check_output_file(path, flag)
