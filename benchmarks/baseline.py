"""The host decode of SPEC §6-8 written as plainly as NumPy allows: an oracle and a speed baseline.

It serves twice:

* as the independent oracle that ``tests/test_grouping.py`` holds ``runtime.grouping`` to (this
  module never imports ``runtime``), and that reproduces ``../shared/golden/decode_mini.json``
  (``tests/test_golden.py``);
* as the "mmpose-style" side of ``benchmarks/speed.py``: Python dictionaries of persons, NumPy
  distances, the pure-Python ``munkres`` 1.1.4 solver (imported when first needed; it comes with
  the ``dev`` extra) and a refine that scores every pixel of all 17 joint maps for every person.

Written from SPEC alone, one function per step: ``nms``, ``top_k``, ``match_by_tag``, ``adjust``,
``person_scores``, ``refine``; ``decode`` runs them in that order.  Arrays describe one image:
heatmap float32 ``[17, H, W]``, tags float32 ``[17, H, W, 2]``.

Dtypes follow SPEC §7: a candidate row ``(x, y, val, tag0, tag1)`` is float64 (integer location
joined to float32 values), so distances and costs are float64; the tag vectors a person remembers
are the float32 ones, so their mean is a float32 ``np.mean``.  Refine works on the float32 maps.
"""

from __future__ import annotations

import numpy as np

NUM_JOINTS = 17
# SPEC §7: the order in which joints are matched to the persons found so far.
JOINT_ORDER = (0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13, 14, 15, 16)
NMS_WINDOW = 5
# Cost of the columns that stand for "no person yet" when candidates outnumber persons.
NO_PERSON_COST = 1e10


def nms(heatmap: np.ndarray) -> np.ndarray:
    """SPEC §6: a pixel keeps its value if no pixel of its 5x5 window is larger, else becomes 0.

    Outside the map counts as -inf, so border pixels compete only with real pixels.  The window
    maximum is taken along rows, then along columns (max is exact, so the order is free).  Every
    pixel of a flat plateau survives.  The mask multiplies, as max-pooling and ``eq`` would.
    """
    half = NMS_WINDOW // 2
    _, height, width = heatmap.shape
    padded = np.full((heatmap.shape[0], height + 2 * half, width + 2 * half), -np.inf, np.float32)
    padded[:, half:half + height, half:half + width] = heatmap
    across = padded[:, :, 0:width].copy()
    for shift in range(1, NMS_WINDOW):
        np.maximum(across, padded[:, :, shift:shift + width], out=across)
    window_max = across[:, 0:height].copy()
    for shift in range(1, NMS_WINDOW):
        np.maximum(window_max, across[:, shift:shift + height], out=window_max)
    keep = (heatmap == window_max).astype(np.float32)
    return heatmap * keep


def top_k(nms_heatmap: np.ndarray, tags: np.ndarray, k: int = 30):
    """SPEC §6: per joint, the k largest suppressed values in descending order.

    Equal values come lower flat index first (a stable sort of the negated values): SPEC leaves
    that order to the implementation, and tests compare candidate sets where it matters.
    Returns ``loc [17, k, 2]`` int64 as (x, y), ``val [17, k]`` float32, ``tag [17, k, 2]`` float32.
    """
    joints, height, width = nms_heatmap.shape
    flat = nms_heatmap.reshape(joints, height * width)
    chosen = np.argsort(-flat, axis=1, kind="stable")[:, :k]
    val = np.take_along_axis(flat, chosen, axis=1)
    loc = np.stack((chosen % width, chosen // width), axis=2).astype(np.int64)
    tag_planes = tags.reshape(joints, height * width, tags.shape[-1])
    tag = np.take_along_axis(tag_planes, chosen[:, :, None], axis=1)
    return loc, val, tag


class _Person:
    """One person while grouping: its joint rows (float64) and the float32 tags it was given.

    A row is ``(x, y, val, tag...)``: 5 numbers with the flip test's two tag components, 4 with one."""

    __slots__ = ("rows", "tags")

    def __init__(self, width: int) -> None:
        self.rows = np.zeros((NUM_JOINTS, width), np.float64)
        self.tags: list[np.ndarray] = []

    def mean_tag(self) -> np.ndarray:
        return np.mean(self.tags, axis=0)


def match_by_tag(loc: np.ndarray, val: np.ndarray, tag: np.ndarray,
                 detection_threshold: float = 0.1, tag_threshold: float = 1.0) -> np.ndarray:
    """SPEC §7: joint by joint, candidates join the person whose mean tag is near, or start one.

    ``loc [17, k, 2]`` int, ``val [17, k]`` and ``tag [17, k, 2]`` float32 as ``top_k`` gives them.
    Pairings come from ``munkres==1.1.4`` on ``round(distance) * 100 - val`` (costs are multiples
    of 100 apart, so ties are everywhere and only that package's pairing reproduces mmpose).
    Persons are keyed by the first tag component of the candidate that founded them; a later
    founder with an equal key takes that person over: its row is written, its tag list restarts.
    Returns ``[P, 17, 3 + tag components]`` float32 in founding order.
    """
    from munkres import Munkres

    persons: dict[float, _Person] = {}

    def found(key: float, joint: int, row: np.ndarray, tag32: np.ndarray) -> None:
        person = persons.get(key)
        if person is None:
            person = persons[key] = _Person(3 + tag.shape[-1])
        person.rows[joint] = row
        person.tags = [tag32]

    for joint in JOINT_ORDER:
        rows = np.concatenate((loc[joint], val[joint][:, None], tag[joint]), axis=1)
        usable = rows[:, 2] > detection_threshold
        if not usable.any():
            continue
        rows, tags32 = rows[usable], tag[joint][usable]
        if not persons:
            for row, tag32 in zip(rows, tags32):
                found(row[3], joint, row, tag32)
            continue
        members = list(persons.values())
        centres = np.array([member.mean_tag() for member in members])
        offsets = rows[:, None, 3:] - centres[None, :, :]
        distance = np.sqrt((offsets * offsets).sum(axis=2))
        cost = np.round(distance) * 100 - rows[:, 2:3]
        n_rows, n_members = cost.shape
        if n_rows > n_members:
            filler = np.full((n_rows, n_rows - n_members), NO_PERSON_COST)
            cost = np.concatenate((cost, filler), axis=1)
        for r, c in Munkres().compute(cost):
            joins = c < n_members and distance[r, c] < tag_threshold
            if joins:
                members[c].rows[joint] = rows[r]
                members[c].tags.append(tags32[r])
            else:
                found(rows[r, 3], joint, rows[r], tags32[r])

    if not persons:
        return np.zeros((0, NUM_JOINTS, 3 + tag.shape[-1]), np.float32)
    return np.stack([person.rows for person in persons.values()]).astype(np.float32)


def _quarter_step(heatmap_2d: np.ndarray, xx: int, yy: int) -> tuple[float, float]:
    """SPEC §8: +0.25 towards the strictly higher neighbour along each axis, else -0.25."""
    height, width = heatmap_2d.shape
    below, above = heatmap_2d[min(height - 1, yy + 1), xx], heatmap_2d[max(0, yy - 1), xx]
    right, left = heatmap_2d[yy, min(width - 1, xx + 1)], heatmap_2d[yy, max(0, xx - 1)]
    return (0.25 if right > left else -0.25), (0.25 if below > above else -0.25)


def adjust(persons: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """SPEC §8: every joint with ``val > 0`` moves a quarter pixel, then half a pixel; in place."""
    for person in persons:
        for joint in np.flatnonzero(person[:, 2] > 0):
            x, y = person[joint, 0], person[joint, 1]
            step_x, step_y = _quarter_step(heatmap[joint], int(x), int(y))
            person[joint, 0] = x + step_x + 0.5
            person[joint, 1] = y + step_y + 0.5
    return persons


def person_scores(persons: np.ndarray) -> np.ndarray:
    """SPEC §8: each person's mean joint value, missing joints counting 0 (NumPy's float32 mean)."""
    return np.array([person[:, 2].mean() for person in persons], dtype=np.float32)


def refine(heatmap: np.ndarray, tags: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """SPEC §8: fill the missing joints of one person ``keypoints [17, 5]`` from the maps, in place.

    The person's tag is the float32 mean of the tag maps at its detected joints.  Every joint map
    is then scored against it; a joint the person lacks takes the first best pixel, if the heatmap
    is positive there.  A person with no detected joint has no tag and stays as it is.
    """
    _, height, width = heatmap.shape
    detected = np.flatnonzero(keypoints[:, 2] > 0)
    if detected.size == 0:
        return keypoints
    seen = []
    for joint in detected:
        column = min(max(int(keypoints[joint, 0]), 0), width - 1)
        row = min(max(int(keypoints[joint, 1]), 0), height - 1)
        seen.append(tags[joint, row, column])
    person_tag = np.mean(seen, axis=0)

    for joint in range(NUM_JOINTS):
        offsets = tags[joint] - person_tag
        distance = np.sqrt((offsets * offsets).sum(axis=2))
        score = heatmap[joint] - np.round(distance)
        best_row, best_column = divmod(int(np.argmax(score)), width)
        value = heatmap[joint, best_row, best_column]
        if keypoints[joint, 2] != 0 or not value > 0:
            continue
        step_x, step_y = _quarter_step(heatmap[joint], best_column, best_row)
        keypoints[joint, 0] = best_column + 0.5 + step_x
        keypoints[joint, 1] = best_row + 0.5 + step_y
        keypoints[joint, 2] = value
    return keypoints


def decode(heatmap: np.ndarray, tags: np.ndarray, k: int = 30,
           detection_threshold: float = 0.1, tag_threshold: float = 1.0, with_refine: bool = True):
    """SPEC §6-8 for one image: ``(persons [P, 17, 5], scores [P])``, both float32.

    Scores are taken after adjust and before refine, as SPEC §8 says.  ``with_refine=False`` is the
    reference's decode with refine turned off: the people of grouping + adjust.  ``tags`` may have
    one component (``[17, H, W, 1]``, the reference without the flip test) or two.
    """
    loc, val, tag = top_k(nms(heatmap), tags, k)
    persons = adjust(match_by_tag(loc, val, tag, detection_threshold, tag_threshold), heatmap)
    scores = person_scores(persons)
    if with_refine:
        for person in persons:
            refine(heatmap, tags, person)
    return persons, scores
