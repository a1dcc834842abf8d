"""tests/tie_explanation.py on hand-made scenes whose one differing decision is known.

Each scene is two people on small maps; the "other backend" is the reference with one decision's
inputs moved. Moved by one ulp at a tie of the reference, the difference must be explained, by that
decision alone and named; moved by more than the bound, or away from a tie, it must not be (these
are the mutations: an explanation that accepted any difference, or named another decision, fails
them).

Mutations of tests/tie_explanation.py tried, each failing one test here: the reference-gap check of
a top-k order flip removed (``test_top_k_order_tie``); the bound on a flipped map scalar removed
(``test_refine_argmax_tie``); the bound on a flipped candidate value removed
(``test_person_key_tie``); the search replaced by "flip everything"
(``test_two_decisions_are_both_named_and_noise_elsewhere_is_left_out``).
"""
from __future__ import annotations

import numpy as np
import pytest

from tests import tie_explanation
from tests.test_grouping import adjusted_candidates

HEIGHT, WIDTH = 16, 24
BOUND = {"heatmap": 1e-6, "tags": 1e-6}
# person 0 at x 2..8, person 1 at x 13..19; joint j of each at a distinct pixel and value
JOINTS = [(j, 2 + j // 4, 1 + (j % 4) * 3) for j in range(16)]  # (joint, dy, dx)


def scene() -> dict[str, np.ndarray]:
    """Two people, joints 0-15 each (joint 16 missing: refine fills it), tags 0.0 and 3.0."""
    heatmap = np.zeros((17, HEIGHT, WIDTH), np.float32)
    tags = np.zeros((17, HEIGHT, WIDTH, 2), np.float32)
    for person, (left, tag) in enumerate(((2, 0.0), (13, 3.0))):
        for joint, dy, dx in JOINTS:
            heatmap[joint, dy + 8 * person // 2, left + dx] = 0.9 - 0.01 * joint - 0.1 * person
            tags[joint, dy + 8 * person // 2, left + dx] = (tag, 0.5)
    # joint 16: two pixels of equal value, both at person 1's tag: refine takes the first (SPEC §8)
    for y, x in ((1, 5), (12, 20)):
        heatmap[16, y, x] = 0.05
        tags[16, y, x] = (3.0, 0.5)
    cand = adjusted_candidates(heatmap, tags)
    return {"candidates": cand[None], "heatmap": heatmap[None], "tags": tags[None]}


def pixel_row(outputs, joint: int, x: int, y: int) -> int:
    rows = outputs["candidates"][0, joint]
    return next(k for k, r in enumerate(rows) if (int(r[0]), int(r[1])) == (x, y))


def explained(reference, other):
    assert not tie_explanation.same_people(tie_explanation.decode(reference), tie_explanation.decode(other)), \
        "the scene must make the people differ"
    return tie_explanation.explain(reference, other, BOUND, max_flips=4)


def test_the_scene_decodes_to_two_refined_people():
    persons, _ = tie_explanation.decode(scene())
    assert len(persons) == 2 and (persons[:, :16, 2] > 0).all()
    assert (int(persons[1, 16, 0]), int(persons[1, 16, 1])) == (5, 1)  # the first of the two tied pixels


def test_person_key_tie():
    """Person 1's joint-0 key set bit-equal to person 0's in the reference (one key: grouped as one
    person), one ulp apart in the other: the key decision, with reference gap 0."""
    reference = scene()
    a, b = pixel_row(reference, 0, 3, 2), pixel_row(reference, 0, 14, 6)
    reference["candidates"][0, 0, b, 3] = reference["candidates"][0, 0, a, 3]
    other = {k: v.copy() for k, v in reference.items()}
    other["candidates"][0, 0, b, 3] = np.nextafter(np.float32(0.0), np.float32(1.0))
    result = explained(reference, other)
    assert result is not None and len(result.flips) == 1
    flip = result.flips[0]
    assert flip.output == "candidates" and "person key" in flip.decision and flip.reference_gap == 0.0
    far = {k: v.copy() for k, v in reference.items()}
    far["candidates"][0, 0, b, 3] = 0.01  # the same decision flipped by a change 1e4 times the bound
    assert explained(reference, far) is None


def test_top_k_order_tie():
    """Joint 0's two candidates made bit-equal in value and swapped in the other: the top-k order
    decision (people come out in the other order), gap 0; swapped with a gap of 0.05, unexplained."""
    reference = scene()
    a, b = pixel_row(reference, 0, 3, 2), pixel_row(reference, 0, 14, 6)
    reference["candidates"][0, 0, b, 2] = reference["candidates"][0, 0, a, 2]
    other = {k: v.copy() for k, v in reference.items()}
    other["candidates"][0, 0, [a, b]] = reference["candidates"][0, 0, [b, a]]
    result = explained(reference, other)
    assert result is not None and len(result.flips) == 1
    assert "swapped" in result.flips[0].decision and result.flips[0].reference_gap == 0.0
    untied = scene()
    swapped = {k: v.copy() for k, v in untied.items()}
    swapped["candidates"][0, 0, [a, b]] = untied["candidates"][0, 0, [b, a]]
    assert explained(untied, swapped) is None


def test_refine_argmax_tie():
    """The second of joint 16's two tied pixels one ulp higher in the other: refine's argmax, named
    as the pixel refine chose on the other side; 0.01 higher, unexplained."""
    reference = scene()
    other = {k: v.copy() for k, v in reference.items()}
    other["heatmap"][0, 16, 12, 20] = np.nextafter(np.float32(0.05), np.float32(1.0))
    result = explained(reference, other)
    assert result is not None and len(result.flips) == 1
    flip = result.flips[0]
    assert flip.output == "heatmap" and flip.index == (16, 12, 20) and "argmax refine chose" in flip.decision
    far = {k: v.copy() for k, v in reference.items()}
    far["heatmap"][0, 16, 12, 20] = 0.06
    assert explained(reference, far) is None


def test_two_decisions_are_both_named_and_noise_elsewhere_is_left_out():
    """A key tie and a refine tie at once, with one-ulp noise on every other heatmap pixel of the
    other side that decides nothing: exactly the two decisions are flipped."""
    reference = scene()
    a, b = pixel_row(reference, 0, 3, 2), pixel_row(reference, 0, 14, 6)
    reference["candidates"][0, 0, b, 3] = reference["candidates"][0, 0, a, 3]
    other = {k: v.copy() for k, v in reference.items()}
    other["heatmap"] = np.nextafter(other["heatmap"], np.float32(-1.0))
    other["heatmap"][0, 16, 12, 20] = np.nextafter(np.float32(0.05), np.float32(1.0))
    other["heatmap"][0, 16, 1, 5] = 0.05
    other["candidates"][0, 0, b, 3] = np.nextafter(np.float32(0.0), np.float32(1.0))
    result = explained(reference, other)
    assert result is not None
    assert sorted(f.output for f in result.flips) == ["candidates", "heatmap"], result.describe()


@pytest.mark.parametrize("needed", [[3], [0, 99], [5, 6, 70]])
def test_minimal_subset_finds_exactly_the_needed_items(needed):
    calls = []

    def passes(subset):
        calls.append(len(subset))
        return set(needed) <= set(subset.tolist())

    assert sorted(tie_explanation.minimal_subset(100, passes).tolist()) == needed
    assert len(calls) < 100  # a search, not one trial per item
