"""Skeleton pictures of the people found in an image."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from runtime.files import write_atomic
from runtime.results import Person

# COCO skeleton, 0-based joint indices.
SKELETON = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
            (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6))
# A joint is drawn when its score passes the reference's detection threshold.
MIN_JOINT_SCORE = 0.1


def _color(index: int) -> tuple[int, int, int]:
    hue = int(index * 47) % 180
    bgr = cv2.cvtColor(np.array([[[hue, 220, 255]]], dtype=np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
    return tuple(int(c) for c in bgr)


def draw_people(image_rgb: np.ndarray, people: list[Person]) -> np.ndarray:
    """A BGR copy of the image with every person's skeleton drawn in its own colour."""
    canvas = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    thickness = max(1, round(max(canvas.shape[:2]) / 400))
    for index, person in enumerate(people):
        color = _color(index)
        points = person.keypoints
        visible = points[:, 2] > MIN_JOINT_SCORE
        for a, b in SKELETON:
            if visible[a] and visible[b]:
                cv2.line(canvas, (int(points[a, 0]), int(points[a, 1])), (int(points[b, 0]), int(points[b, 1])),
                         color, thickness, cv2.LINE_AA)
        for joint in np.flatnonzero(visible):
            cv2.circle(canvas, (int(points[joint, 0]), int(points[joint, 1])), thickness + 1, color, -1, cv2.LINE_AA)
    return canvas


def write_picture(path: str | Path, image_rgb: np.ndarray, people: list[Person]) -> None:
    path = Path(path)
    ok, encoded = cv2.imencode(path.suffix or ".jpg", draw_people(image_rgb, people))
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {path}")
    write_atomic(path, encoded.tobytes())
