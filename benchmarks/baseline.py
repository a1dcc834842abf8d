"""Plain NumPy transcription of SPEC §6-8: the host decode the way mmpose 0.29 runs it.

Two uses:

* the independent oracle of ``tests/test_grouping.py`` for ``runtime.grouping`` (this file
  never imports from ``runtime``);
* the "mmpose-style" baseline of the speed benchmark: dictionaries, ``np.linalg.norm``,
  ``np.round``, the pure-Python ``munkres`` 1.1.4 solver (imported lazily; it comes with the
  ``dev`` extra) and a dense NumPy refine of all 17 joints of every person.

One function per SPEC step, deliberately simple: nms -> top_k -> match_by_tag -> adjust ->
person_scores -> refine, chained by ``decode``.  All arrays are for one image (no batch axis):
heatmap float32 ``[17, H, W]``, tags float32 ``[17, H, W, 2]``.
"""

from __future__ import annotations

import numpy as np

NUM_JOINTS = 17
JOINT_ORDER = (0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13, 14, 15, 16)


def nms(heatmap: np.ndarray) -> np.ndarray:
    """SPEC §6: keep pixels equal to the max of their 5x5 neighbourhood, zero the others.

    The border is padded with -inf, like max-pooling with padding 2; every pixel of a flat
    plateau survives.
    """
    heatmap = np.asarray(heatmap, dtype=np.float32)
    _, height, width = heatmap.shape
    padded = np.pad(heatmap, ((0, 0), (2, 2), (2, 2)), constant_values=-np.inf)
    neighbourhood_max = np.full(heatmap.shape, -np.inf, dtype=np.float32)
    for dy in range(5):
        for dx in range(5):
            np.maximum(neighbourhood_max, padded[:, dy:dy + height, dx:dx + width],
                       out=neighbourhood_max)
    keep = heatmap == neighbourhood_max
    return heatmap * keep.astype(np.float32)


def top_k(nms_heatmap: np.ndarray, tags: np.ndarray, k: int = 30):
    """SPEC §6: the k largest values per joint, descending, equal values by lower flat index.

    Returns ``loc [17, k, 2]`` int64 as (x, y), ``val [17, k]`` float32 and
    ``tag [17, k, 2]`` float32 (the tag maps gathered at the same pixels).
    """
    joints, height, width = nms_heatmap.shape
    flat = nms_heatmap.reshape(joints, height * width)
    order = np.argsort(-flat, axis=1, kind="stable")[:, :k]
    val = np.take_along_axis(flat, order, axis=1).astype(np.float32)
    loc = np.stack((order % width, order // width), axis=2).astype(np.int64)
    flat_tags = np.asarray(tags, dtype=np.float32).reshape(joints, height * width, 2)
    tag = np.stack([flat_tags[j, order[j]] for j in range(joints)]).astype(np.float32)
    return loc, val, tag


def match_by_tag(loc: np.ndarray, val: np.ndarray, tag: np.ndarray,
                 detection_threshold: float = 0.1, tag_threshold: float = 1.0) -> np.ndarray:
    """SPEC §7: greedy joint-by-joint grouping with the munkres 1.1.4 assignment.

    Persons live in a dict keyed by the first tag component of the candidate that created
    them (insertion ordered); each holds a float32 ``[17, 5]`` block and a list of its tags.
    Returns float32 ``[P, 17, 5]`` (``[0, 17, 5]`` when nobody is found).
    """
    import munkres  # the oracle; only needed here

    empty_person = np.zeros((NUM_JOINTS, 5), dtype=np.float32)
    person_rows = {}  # key (tag0) -> [17, 5] float32
    person_tags = {}  # key (tag0) -> list of float32 [2] tags

    def start_person(key, joint, row, tag_row):
        if key not in person_rows:
            person_rows[key] = empty_person.copy()
        person_rows[key][joint] = row
        person_tags[key] = [tag_row]

    for joint in JOINT_ORDER:
        # float64 rows: integer x, y next to float32 val and tags promote to float64
        rows = np.concatenate((loc[joint], val[joint][:, None], tag[joint]), axis=1)
        tags = tag[joint]
        used = rows[:, 2] > detection_threshold
        rows = rows[used]
        tags = tags[used]
        if len(rows) == 0:
            continue

        if len(person_rows) == 0:
            for tag_row, row in zip(tags, rows):
                start_person(tag_row[0], joint, row, tag_row)
            continue

        keys = list(person_rows.keys())
        mean_tags = np.array([np.mean(person_tags[key], axis=0) for key in keys])
        diff = rows[:, None, 3:] - mean_tags[None, :, :]
        distance = np.linalg.norm(diff, ord=2, axis=2)
        cost = np.round(distance) * 100 - rows[:, 2:3]
        n_new, n_old = distance.shape
        if n_new > n_old:
            padding = np.zeros((n_new, n_new - n_old), dtype=np.float32) + 1e10
            cost = np.concatenate((cost, padding), axis=1)

        # mmpose passes the array itself; a list of the same float64 values pairs alike
        pairs = munkres.Munkres().compute(cost.tolist())
        for r, c in pairs:
            if r < n_new and c < n_old and distance[r][c] < tag_threshold:
                key = keys[c]
                person_rows[key][joint] = rows[r]
                person_tags[key].append(tags[r])
            else:
                start_person(tags[r][0], joint, rows[r], tags[r])

    if not person_rows:
        return np.zeros((0, NUM_JOINTS, 5), dtype=np.float32)
    return np.array([person_rows[key] for key in person_rows]).astype(np.float32)


def adjust(persons: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """SPEC §8: quarter-pixel shift towards the higher neighbour, then +0.5; in place.

    Applied to every joint with ``val > 0``; ties shift by -0.25.
    """
    _, height, width = heatmap.shape
    for person in persons:
        for joint in range(NUM_JOINTS):
            if person[joint, 2] > 0:
                x, y = person[joint, 0], person[joint, 1]
                xx, yy = int(x), int(y)
                hm = heatmap[joint]
                if hm[min(height - 1, yy + 1), xx] > hm[max(0, yy - 1), xx]:
                    y += 0.25
                else:
                    y -= 0.25
                if hm[yy, min(width - 1, xx + 1)] > hm[yy, max(0, xx - 1)]:
                    x += 0.25
                else:
                    x -= 0.25
                person[joint, 0] = x + 0.5
                person[joint, 1] = y + 0.5
    return persons


def person_scores(persons: np.ndarray) -> np.ndarray:
    """SPEC §8: mean of the 17 joint values of each person (missing joints count 0)."""
    return np.array([person[:, 2].mean() for person in persons], dtype=np.float32)


def refine(heatmap: np.ndarray, tags: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """SPEC §8: fill the missing joints of one person ``keypoints [17, 5]`` (in place).

    The person's tag is the float32 mean of the tag maps at its detected joints; every joint
    map is scored ``hm - round(||tag - person tag||)`` and its first maximum taken.
    """
    _, height, width = heatmap.shape
    seen = []
    for joint in range(NUM_JOINTS):
        if keypoints[joint, 2] > 0:
            x, y = keypoints[joint, :2].astype(int)
            x = np.clip(x, 0, width - 1)
            y = np.clip(y, 0, height - 1)
            seen.append(tags[joint, y, x])
    person_tag = np.mean(seen, axis=0)

    found = []
    for hm, tag_map in zip(heatmap, tags):
        distance = ((tag_map - person_tag[None, None, :]) ** 2).sum(axis=2) ** 0.5
        score = hm - np.round(distance)
        y, x = np.unravel_index(np.argmax(score), hm.shape)
        value = hm[y, x]
        fx = x + 0.5
        fy = y + 0.5
        if hm[y, min(width - 1, x + 1)] > hm[y, max(0, x - 1)]:
            fx += 0.25
        else:
            fx -= 0.25
        if hm[min(height - 1, y + 1), x] > hm[max(0, y - 1), x]:
            fy += 0.25
        else:
            fy -= 0.25
        found.append((fx, fy, value))
    found = np.array(found)

    for joint in range(NUM_JOINTS):
        if found[joint, 2] > 0 and keypoints[joint, 2] == 0:
            keypoints[joint, :3] = found[joint]
    return keypoints


def decode(heatmap: np.ndarray, tags: np.ndarray, k: int = 30,
           detection_threshold: float = 0.1, tag_threshold: float = 1.0):
    """nms -> top_k -> match_by_tag -> adjust -> person_scores -> refine for one image.

    Returns ``(persons [P, 17, 5] float32, scores [P] float32)``; scores are taken after adjust
    and before refine.
    """
    heatmap = np.asarray(heatmap, dtype=np.float32)
    tags = np.asarray(tags, dtype=np.float32)
    loc, val, tag = top_k(nms(heatmap), tags, k)
    persons = match_by_tag(loc, val, tag, detection_threshold, tag_threshold)
    persons = adjust(persons, heatmap)
    scores = person_scores(persons)
    for person in persons:
        refine(heatmap, tags, person)
    return persons, scores
