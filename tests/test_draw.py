"""Pictures: who is drawn, in which colours, with which label, and the synthetic-weights banner.

Mutations tried: drawing every person regardless of ``min_score`` (fails the threshold test), the
left and right colour families swapped (fails the colour test), no banner for synthetic weights
(fails the banner test), ``max_people`` keeping the first people instead of the best (fails the
ranking test).
"""
from __future__ import annotations

import numpy as np

from runtime.draw import LEFT_COLOURS, RIGHT_COLOURS, PictureStyle, draw_people, shown_people
from runtime.results import Person

HEIGHT, WIDTH = 480, 640


def standing(x: float, y: float, score: float) -> Person:
    """A person facing the camera: its left side (odd joints) at larger x, 100 px tall from ``y``."""
    rows = [(0, 0, 0)] * 17
    points = {0: (0, 0), 1: (6, -4), 2: (-6, -4), 3: (12, 0), 4: (-12, 0), 5: (20, 20), 6: (-20, 20),
              7: (28, 45), 8: (-28, 45), 9: (30, 70), 10: (-30, 70), 11: (14, 60), 12: (-14, 60),
              13: (16, 85), 14: (-16, 85), 15: (16, 110), 16: (-16, 110)}
    rows = [(x + dx, y + dy, 0.9) for dx, dy in (points[j] for j in range(17))]
    return Person(np.array(rows, np.float32), np.zeros((17, 2), np.float32), score)


def canvas(people, **style) -> np.ndarray:
    return draw_people(np.zeros((HEIGHT, WIDTH, 3), np.uint8), people, PictureStyle(**style))


def region(picture: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    return picture[y0:y1, x0:x1].reshape(-1, 3).astype(int)


def test_people_below_min_score_are_not_drawn():
    picture = canvas([standing(150, 150, 0.6), standing(450, 150, 0.1)], min_score=0.2)
    assert region(picture, 100, 130, 200, 270).any(axis=1).sum() > 200  # the confident person
    assert not region(picture, 400, 130, 500, 270).any()  # the faint one: nothing at all
    everyone = canvas([standing(150, 150, 0.6), standing(450, 150, 0.1)], min_score=0.0)
    assert region(everyone, 400, 130, 500, 270).any(axis=1).sum() > 200


def test_invisible_joints_are_not_drawn():
    person = standing(300, 150, 0.6)
    person.keypoints[[9, 10], 2] = 0.05  # both wrists below the joint threshold
    picture = canvas([person])
    assert not region(picture, 326, 216, 335, 225).any()  # around the left wrist at (330, 220)
    assert region(picture, 326, 191, 332, 200).any()  # the left elbow at (328, 195) is drawn


def test_left_and_right_limbs_in_two_colour_families():
    picture = canvas([standing(300, 150, 0.6)])
    left_shin = region(picture, 312, 240, 321, 256)  # between left knee (316, 235) and ankle (316, 260)
    right_shin = region(picture, 280, 240, 289, 256)
    lit_left = left_shin[left_shin.any(axis=1)]
    lit_right = right_shin[right_shin.any(axis=1)]
    assert len(lit_left) and len(lit_right)
    # BGR: the left family is orange (red channel over blue), the right family blue (blue over red).
    assert (lit_left[:, 2] > lit_left[:, 0]).mean() > 0.8 and (lit_right[:, 0] > lit_right[:, 2]).mean() > 0.8
    assert all(c[2] > c[0] for c in LEFT_COLOURS) and all(c[0] > c[2] for c in RIGHT_COLOURS)


def test_ranking_numbers_and_labels():
    people = [standing(100, 150, 0.3), standing(300, 150, 0.9), standing(500, 150, 0.5)]
    assert [n for n, _ in shown_people(people, PictureStyle())] == [1, 2, 0]
    assert [n for n, _ in shown_people(people, PictureStyle(max_people=2))] == [1, 2]
    assert [n for n, _ in shown_people(people, PictureStyle(min_score=0.4))] == [1, 2]
    picture = canvas(people, max_people=2)
    assert not region(picture, 60, 120, 140, 270).any()  # person 0 dropped by max_people
    # Each drawn person's label sits on a dark box above its highest joint (the eyes at y = 146).
    label = region(picture, 270, 100, 330, 146)
    assert (label == 255).all(axis=1).sum() > 20 and (label == 30).all(axis=1).sum() > 50


def test_banner_only_for_synthetic_weights():
    plain = canvas([standing(300, 150, 0.6)])
    marked = canvas([standing(300, 150, 0.6)], synthetic=True)
    top = region(marked, 0, 0, WIDTH, 2)
    assert (top == (0, 0, 200)).all(axis=1).mean() > 0.9  # a red strip across the top
    assert (region(marked, 0, 0, WIDTH, 30) == 255).all(axis=1).sum() > 100  # with white text on it
    assert not region(plain, 0, 0, WIDTH, 30).any()


def test_video_sink_writes_every_frame_atomically(tmp_path):
    """The annotated video: nothing at the target until ``close(keep=True)``; then every frame, read back
    by OpenCV at the written size (odd sides padded to even) and rate; ``keep=False`` leaves no file.

    Mutations tried: no padding of odd sides (MPEG-4 drops the odd row: the shape check fails);
    writing straight to the target (the "old video" check fails)."""
    import cv2

    from runtime.draw import VideoSink

    target = tmp_path / "people.mp4"
    target.write_bytes(b"old video")
    sink = VideoSink(target, fps=12)
    for shade in (0, 80, 160, 240):
        sink.write(np.full((85, 127, 3), shade, np.uint8))
    assert target.read_bytes() == b"old video"
    assert sink.close(keep=True)
    capture = cv2.VideoCapture(str(target))
    frames = []
    while (read := capture.read())[0]:
        frames.append(read[1])
    assert capture.get(cv2.CAP_PROP_FPS) == 12
    assert len(frames) == 4 and {f.shape for f in frames} == {(86, 128, 3)}
    assert [round(float(f[:84, :126].mean()) / 80) for f in frames] == [0, 1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["people.mp4"]

    dropped = VideoSink(tmp_path / "dropped.mp4", fps=0)
    dropped.write(np.zeros((64, 64, 3), np.uint8))
    assert not dropped.close(keep=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["people.mp4"]
