"""How far a backend's people are from the reference's, image by image.

In each image, reference and backend people are paired greedily by OKS (COCO sigmas, the area of the
reference person's keypoint box), highest OKS first, pairs below OKS 0.5 left unpaired. An image is
"identical" when both lists have the same people in the same order (keypoints within 0.01 px, joint
and person scores within 1e-4). Displacement: pixel distance of each joint that both people of a pair
have (score > 0). Missed: reference people left unpaired; added: backend people left unpaired.
People are the cache's dicts (benchmarks/parity_cache.py): ``{"keypoints": [x, y, score] * 17, "score"}``.
"""
from __future__ import annotations

import numpy as np

# COCO keypoint sigmas (pycocotools), nose … right ankle.
COCO_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]) / 10.0
MATCH_OKS = 0.5
IDENTICAL_PX = 0.01
IDENTICAL_SCORE = 1e-4


def keypoint_array(people: list[dict]) -> np.ndarray:
    """The people's keypoints as one ``[people, 17, 3]`` float64 array (x, y, score)."""
    return np.array([p["keypoints"] for p in people], dtype=np.float64).reshape(-1, 17, 3)


def oks_matrix(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """OKS of every (reference person, other person) pair, over the joints the reference person has."""
    variances = (2 * COCO_SIGMAS) ** 2
    result = np.zeros((len(reference), len(other)))
    for i, ref in enumerate(reference):
        visible = ref[:, 2] > 0
        if not visible.any():
            continue
        xy = ref[visible, :2]
        area = max(float(np.prod(xy.max(axis=0) - xy.min(axis=0))), 1.0)
        for j, person in enumerate(other):
            d2 = ((person[visible, :2] - xy) ** 2).sum(axis=1)
            result[i, j] = float(np.exp(-d2 / variances[visible] / (area * 2)).mean())
    return result


def greedy_pairs(oks: np.ndarray, threshold: float = MATCH_OKS) -> list[tuple[int, int, float]]:
    """Pairs (reference, other, OKS), highest OKS first, each person used once, OKS ≥ threshold."""
    pairs = []
    if oks.size == 0:
        return pairs
    order = np.argsort(-oks, axis=None, kind="stable")
    used_ref, used_other = set(), set()
    for flat in order:
        i, j = divmod(int(flat), oks.shape[1])
        if oks[i, j] < threshold:
            break
        if i in used_ref or j in used_other:
            continue
        used_ref.add(i), used_other.add(j)
        pairs.append((i, j, float(oks[i, j])))
    return pairs


def identical_people(reference: list[dict], other: list[dict]) -> bool:
    """The same people in the same order, within IDENTICAL_PX and IDENTICAL_SCORE."""
    if len(reference) != len(other):
        return False
    a, b = keypoint_array(reference), keypoint_array(other)
    return bool(np.all(np.abs(a[..., :2] - b[..., :2]) <= IDENTICAL_PX)
                and np.all(np.abs(a[..., 2] - b[..., 2]) <= IDENTICAL_SCORE)
                and all(abs(p["score"] - q["score"]) <= IDENTICAL_SCORE for p, q in zip(reference, other)))


def agreement(reference: dict[int, dict], other: dict[int, dict]) -> dict:
    """The agreement summary of one backend's results with the reference's (both by image id)."""
    identical = reference_people = matched = missed = added = 0
    oks_values, distances = [], []
    for image_id, ref_entry in reference.items():
        ref, got = ref_entry["people"], other[image_id]["people"]
        identical += identical_people(ref, got)
        a, b = keypoint_array(ref), keypoint_array(got)
        pairs = greedy_pairs(oks_matrix(a, b))
        reference_people += len(ref)
        matched += len(pairs)
        missed += len(ref) - len(pairs)
        added += len(got) - len(pairs)
        for i, j, value in pairs:
            oks_values.append(value)
            both = (a[i, :, 2] > 0) & (b[j, :, 2] > 0)
            distances.extend(np.hypot(*(a[i, both, :2] - b[j, both, :2]).T).tolist())
    images = len(reference)
    return {"images": images, "identical_images": identical,
            "identical_pct": 100.0 * identical / images if images else None,
            "reference_people": reference_people, "matched": matched, "missed": missed, "added": added,
            "mean_oks": float(np.mean(oks_values)) if oks_values else None,
            "median_px": float(np.median(distances)) if distances else None,
            "p95_px": float(np.percentile(distances, 95)) if distances else None}
