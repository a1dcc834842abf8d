"""Skeleton pictures of the people found in an image, drawn to be read at a glance.

A picture shows the people a user would call detections, not every group the decoder formed:
people below ``PictureStyle.min_score`` are left out (results json keeps them, COCO evaluation
needs them), joints below ``min_joint_score`` are not drawn, and ``max_people`` keeps the best few.
Limbs of the person's left side are drawn in warm colours, the right side in cool ones, the head
and torso centre line in between, so a mirrored pose is visible. Each person carries its number
(its rank in the results, from 0) and score. A picture made with synthetic weights says so on a
banner across its top, since its "people" are not poses.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from runtime.files import publish, temporary_beside, write_atomic
from runtime.results import Person

# COCO joint indices: 0 nose, 1/2 eyes, 3/4 ears, 5/6 shoulders, 7/8 elbows, 9/10 wrists,
# 11/12 hips, 13/14 knees, 15/16 ankles; odd = the person's left, even = the person's right.
LEFT_LIMBS = ((15, 13), (13, 11), (5, 11), (5, 7), (7, 9), (1, 3), (3, 5))
RIGHT_LIMBS = ((16, 14), (14, 12), (6, 12), (6, 8), (8, 10), (2, 4), (4, 6))
CENTRE_LIMBS = ((11, 12), (5, 6), (0, 1), (0, 2), (1, 2))

# BGR: oranges for the left side, blues for the right, green for the centre line.
LEFT_COLOURS = ((0, 140, 255), (0, 90, 230), (40, 180, 255))
RIGHT_COLOURS = ((255, 140, 0), (230, 70, 40), (255, 200, 60))
CENTRE_COLOUR = (60, 200, 60)
BANNER_TEXT = "SYNTHETIC WEIGHTS - not a trained model, these are not real poses"


@dataclass(frozen=True)
class PictureStyle:
    """What a picture shows. ``min_score``: people with a lower person score are not drawn (the
    reference's score is the mean of 17 joint scores; 0.2 keeps real detections of a trained model
    and drops the faint groups that every bottom-up decode also forms). ``min_joint_score``: the
    reference's detection threshold. ``max_people``: at most this many, best scores first (None: all).
    ``synthetic``: put the synthetic-weights banner on the picture."""

    min_score: float = 0.2
    min_joint_score: float = 0.1
    max_people: int | None = None
    synthetic: bool = False


def shown_people(people: list[Person], style: PictureStyle) -> list[tuple[int, Person]]:
    """``(number in results, person)`` of the people a picture draws, best score first."""
    ranked = sorted(((i, p) for i, p in enumerate(people) if p.score >= style.min_score),
                    key=lambda item: -item[1].score)
    return ranked if style.max_people is None else ranked[:style.max_people]


def _family(index: int, colours: tuple[tuple[int, int, int], ...]) -> tuple[int, int, int]:
    return colours[index % len(colours)]


def draw_people(image_rgb: np.ndarray, people: list[Person], style: PictureStyle = PictureStyle()) -> np.ndarray:
    """A BGR copy of the image with the shown people's skeletons, numbers and scores."""
    canvas = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    side = max(canvas.shape[:2])
    thickness = max(1, round(side / 400))
    font_scale = max(0.4, side / 1600)
    for shade, (number, person) in enumerate(shown_people(people, style)):
        points = person.keypoints
        visible = points[:, 2] >= style.min_joint_score
        limbs = ((LEFT_LIMBS, _family(shade, LEFT_COLOURS)), (RIGHT_LIMBS, _family(shade, RIGHT_COLOURS)),
                 (CENTRE_LIMBS, CENTRE_COLOUR))
        for pairs, colour in limbs:
            for a, b in pairs:
                if visible[a] and visible[b]:
                    cv2.line(canvas, _pixel(points[a]), _pixel(points[b]), colour, thickness + 1, cv2.LINE_AA)
        for joint in np.flatnonzero(visible):
            cv2.circle(canvas, _pixel(points[joint]), thickness + 2, (255, 255, 255), -1, cv2.LINE_AA)
        if visible.any():
            top = points[visible][np.argmin(points[visible, 1])]
            _label(canvas, f"#{number} {person.score:.2f}", _pixel(top), font_scale, thickness)
    if style.synthetic:
        _banner(canvas, BANNER_TEXT, font_scale, thickness)
    return canvas


def _pixel(point: np.ndarray) -> tuple[int, int]:
    return int(round(float(point[0]))), int(round(float(point[1])))


def _label(canvas: np.ndarray, text: str, anchor: tuple[int, int], scale: float, thickness: int) -> None:
    """White text on a dark box just above ``anchor``, kept inside the picture."""
    (width, height), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    x = min(max(anchor[0] - width // 2, 0), max(canvas.shape[1] - width, 0))
    y = min(max(anchor[1] - 8, height + base), canvas.shape[0] - base)
    cv2.rectangle(canvas, (x - 2, y - height - 2), (x + width + 2, y + base), (30, 30, 30), -1)
    cv2.putText(canvas, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)


def _banner(canvas: np.ndarray, text: str, scale: float, thickness: int) -> None:
    """A red strip across the top of the picture carrying ``text`` (shrunk to fit the width)."""
    fitted = scale
    while fitted > 0.3 and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, fitted, thickness)[0][0] > canvas.shape[1] - 8:
        fitted *= 0.9
    (_, height), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, fitted, thickness)
    strip = height + base + 8
    cv2.rectangle(canvas, (0, 0), (canvas.shape[1], strip), (0, 0, 200), -1)
    cv2.putText(canvas, text, (4, strip - base - 4), cv2.FONT_HERSHEY_SIMPLEX, fitted, (255, 255, 255), thickness,
                cv2.LINE_AA)


def write_picture(path: str | Path, image_rgb: np.ndarray, people: list[Person],
                  style: PictureStyle = PictureStyle()) -> None:
    path = Path(path)
    ok, encoded = cv2.imencode(path.suffix or ".jpg", draw_people(image_rgb, people, style))
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {path}")
    write_atomic(path, encoded.tobytes())


VIDEO_FOURCC = "mp4v"  # MPEG-4 Part 2: written by every opencv-python(-headless) wheel, no extra codec


class VideoSink:
    """An annotated video written frame by frame to a temporary file beside ``target`` (MP4, ``mp4v``),
    renamed onto it by ``close(keep=True)``: an interrupted run keeps the frames it finished, a failed
    one leaves ``target`` untouched."""

    def __init__(self, target: str | Path, fps: float) -> None:
        self.target, self.fps = Path(target), fps if fps and fps > 0 else 25.0
        self.frames = 0
        self._writer = None
        self._temporary: Path | None = None

    def write(self, frame_bgr: np.ndarray) -> None:
        """Append one frame; odd sides get one black row or column (MPEG-4 codes even sizes only)."""
        height, width = frame_bgr.shape[:2]
        if height % 2 or width % 2:
            frame_bgr = cv2.copyMakeBorder(frame_bgr, 0, height % 2, 0, width % 2, cv2.BORDER_CONSTANT, value=0)
            height, width = frame_bgr.shape[:2]
        if self._writer is None:
            self._temporary = temporary_beside(self.target, self.target.suffix or ".mp4")
            self._writer = cv2.VideoWriter(str(self._temporary), cv2.VideoWriter_fourcc(*VIDEO_FOURCC), self.fps,
                                           (width, height))
            if not self._writer.isOpened():
                self.close(keep=False)
                raise RuntimeError(f"OpenCV cannot write {VIDEO_FOURCC} video to {self.target}")
            self._size = (width, height)
        if (width, height) != self._size:
            frame_bgr = cv2.resize(frame_bgr, self._size)
        self._writer.write(frame_bgr)
        self.frames += 1

    def close(self, keep: bool) -> bool:
        """Finish the file; ``keep``: publish it onto the target (when it has frames). True when published."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        temporary, self._temporary = self._temporary, None
        if temporary is None:
            return False
        if keep and self.frames:
            with open(temporary, "rb+") as handle:
                os.fsync(handle.fileno())
            publish(temporary, self.target)
            return True
        temporary.unlink(missing_ok=True)
        return False
