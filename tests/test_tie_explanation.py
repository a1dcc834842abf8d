"""tests/tie_explanation.py on hand-made scenes whose one differing decision is known.

Most scenes are two people on small maps; the "other backend" is the reference with one decision's
inputs moved. Moved by one ulp at a tie of the reference, the difference must be explained, by that
decision alone and named; moved by more than the bound, or away from a tie, it must not be (these
are the mutations: an explanation that accepted any difference, or named another decision, fails
them).

Mutations of tests/tie_explanation.py tried, each failing at least the test named: the gap check of
an order flip removed (``test_top_k_order_tie``); the bound on a flipped map value removed
(``test_refine_argmax_tie``); the bound on a flipped candidate value removed
(``test_person_key_tie``); the search replaced by "flip everything"
(``test_two_decisions_are_both_named_and_noise_elsewhere_is_left_out``); a dropped pixel's gap
taken against the k-th value (``test_top_k_membership``); order gaps allowed up to the bound under
``bit_equal`` (``test_an_order_of_values_one_ulp_apart_is_a_tie_only_without_bit_equal``); the adjust
check reduced to the neighbours' gap (``test_quarter_pixel_adjust_tie``). An added pixel's gap taken
as the smaller of its NMS and k-th gaps survives here: the pixel it displaces is checked too.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests import tie_explanation
from tests.test_grouping import adjusted_candidates

HEIGHT, WIDTH = 16, 24
BOUND = {"heatmap": 1e-6, "tags": 1e-6}
JOINTS = [(j, 2 + j // 4, 1 + (j % 4) * 3) for j in range(16)]  # (joint, dy, dx)


def scene() -> dict[str, np.ndarray]:
    """Two people, joints 0-15 each (joint 16 missing: refine fills it), tags 0.0 and 3.0; person 0
    at x 3..12, y 2..5, person 1 at x 14..23, y 6..9."""
    heatmap = np.zeros((17, HEIGHT, WIDTH), np.float32)
    tags = np.zeros((17, HEIGHT, WIDTH, 2), np.float32)
    for person, (left, tag) in enumerate(((2, 0.0), (13, 3.0))):
        for joint, dy, dx in JOINTS:
            heatmap[joint, dy + 4 * person, left + dx] = 0.9 - 0.01 * joint - 0.1 * person
            tags[joint, dy + 4 * person, left + dx] = (tag, 0.5)
    # joint 16: two pixels of equal value, both at person 1's tag: refine takes the first (SPEC §8)
    for y, x in ((1, 5), (12, 20)):
        heatmap[16, y, x] = 0.05
        tags[16, y, x] = (3.0, 0.5)
    cand = adjusted_candidates(heatmap, tags)
    return {"candidates": cand[None], "heatmap": heatmap[None], "tags": tags[None]}


def pixel_row(outputs, joint: int, x: int, y: int) -> int:
    rows = outputs["candidates"][0, joint]
    return next(k for k, r in enumerate(rows) if (int(r[0]), int(r[1])) == (x, y))


def explained(reference, other, bit_equal: bool = False):
    assert not tie_explanation.same_people(tie_explanation.decode(reference), tie_explanation.decode(other)), \
        "the scene must make the people differ"
    return tie_explanation.explain(reference, other, BOUND, max_flips=4, bit_equal=bit_equal)


def with_candidates(heatmap: np.ndarray, tags: np.ndarray) -> dict[str, np.ndarray]:
    return {"candidates": adjusted_candidates(heatmap, tags)[None], "heatmap": heatmap[None], "tags": tags[None]}


def dropped(outputs, joint: int, x: int, y: int) -> dict[str, np.ndarray]:
    """``outputs`` with the candidate at pixel (x, y) of ``joint`` left out of the top-k (the list
    closed up, a zero-valued row for the last pixel of the map at its end)."""
    other = {k: v.copy() for k, v in outputs.items()}
    rows = other["candidates"][0, joint]
    k = pixel_row(outputs, joint, x, y)
    rows[k:-1] = rows[k + 1:].copy()
    rows[-1] = [WIDTH - 0.75, HEIGHT - 0.75, 0.0, 0.0, 0.0]
    return other


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
    decision (people come out in the other order), gap 0; swapped with a gap of 0.1, unexplained."""
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


def test_an_order_of_values_one_ulp_apart_is_a_tie_only_without_bit_equal():
    """The decode-only file's rule: an order flip must swap bit-equal values of the reference."""
    reference = scene()
    a, b = pixel_row(reference, 0, 3, 2), pixel_row(reference, 0, 14, 6)
    reference["candidates"][0, 0, b, 2] = np.nextafter(reference["candidates"][0, 0, a, 2], np.float32(0.0))
    other = {k: v.copy() for k, v in reference.items()}
    other["candidates"][0, 0, [a, b]] = reference["candidates"][0, 0, [b, a]]
    assert explained(reference, other) is not None
    assert explained(reference, other, bit_equal=True) is None


def test_nms_plateau_pixel_dropped():
    """Person 0's joint-1 peak spread over two bit-equal pixels: both survive NMS in the reference
    (the second makes a one-joint person of its own); the other keeps one. Explained as that NMS
    decision with gap 0, also under ``bit_equal``. Two separate peaks 0.01 apart, one dropped: no
    tie, unexplained."""
    heatmap, tags = (scene()[name][0] for name in ("heatmap", "tags"))
    heatmap[1, 2, 7] = heatmap[1, 2, 6]
    tags[1, 2, 7] = tags[1, 2, 6]
    reference = with_candidates(heatmap, tags)
    result = explained(reference, dropped(reference, 1, 7, 2), bit_equal=True)
    assert result is not None and len(result.flips) == 1
    assert "dropped" in result.flips[0].decision and result.flips[0].reference_gap == 0.0
    heatmap[1, 2, 7] = 0.0
    heatmap[1, 12, 7] = heatmap[1, 2, 6] - np.float32(0.01)
    tags[1, 12, 7] = tags[1, 2, 6]
    apart = with_candidates(heatmap, tags)
    assert explained(apart, dropped(apart, 1, 7, 12)) is None


def test_quarter_pixel_adjust_tie():
    """Person 0's joint-2 x adjusted the other way (+0.25 for -0.25) where its two neighbours are
    bit-equal: the adjust decision, gap 0. The same flip with unequal neighbours, or an x moved by
    anything but the adjust, is unexplained."""
    reference = scene()
    k = pixel_row(reference, 2, 9, 2)
    x = float(reference["candidates"][0, 2, k, 0])
    assert x == 9.25  # both neighbours 0: right > left is false
    other = {key: v.copy() for key, v in reference.items()}
    other["candidates"][0, 2, k, 0] = 9.75
    result = explained(reference, other, bit_equal=True)
    assert result is not None and "adjust" in result.flips[0].decision and result.flips[0].reference_gap == 0.0
    moved = {key: v.copy() for key, v in reference.items()}
    moved["candidates"][0, 2, k, 0] = 9.99
    assert explained(reference, moved) is None
    heatmap, tags = (reference[name][0].copy() for name in ("heatmap", "tags"))
    heatmap[2, 2, 8] = 0.3  # the left neighbour larger: -0.25 by 0.3
    untied = with_candidates(heatmap, tags)
    turned = {key: v.copy() for key, v in untied.items()}
    turned["candidates"][0, 2, k, 0] = 9.75
    assert explained(untied, turned) is None


def crowd(last: float) -> dict[str, np.ndarray]:
    """31 one-joint people (joint 0 only, tags 0, 5, 10, ...): 31 peaks for a top-k of 30, the 30th
    at 0.21 and the 31st at ``last``."""
    heatmap = np.zeros((17, HEIGHT, WIDTH), np.float32)
    tags = np.zeros((17, HEIGHT, WIDTH, 2), np.float32)
    places = [(y, x) for y in range(0, HEIGHT, 3) for x in range(0, WIDTH, 3)][:31]
    for i, (y, x) in enumerate(places):
        heatmap[0, y, x] = 0.5 - 0.01 * i if i < 30 else last
        tags[0, y, x] = (5.0 * i, 0.0)
    return with_candidates(heatmap, tags)


def test_top_k_membership():
    """The 31st peak put in place of the 30th: a tie only where the reference gives both the same
    value (here bit-equal); 0.01 below the k-th value, or the 30th dropped with nothing in its
    place (the k-th candidate is itself the k-th value: that is no tie), unexplained."""
    for last, tie in ((0.21, True), (0.2, False)):
        reference = crowd(np.float32(last))
        other = {k: v.copy() for k, v in reference.items()}
        x, y = (int(v) for v in other["candidates"][0, 0, 29, :2])
        assert abs(float(other["candidates"][0, 0, 29, 2]) - 0.21) < 1e-6
        other["candidates"][0, 0, 29] = [18.25, 9.25, np.float32(last), 5.0 * 30, 0.0]  # the 31st at (18, 9)
        result = explained(reference, other, bit_equal=True)
        assert (result is not None) == tie, (last, result and result.describe())
        if tie:
            assert "added" in result.flips[0].decision and result.flips[0].reference_gap == 0.0
    reference = crowd(np.float32(0.1))
    assert explained(reference, dropped(reference, 0, x, y)) is None


@pytest.mark.parametrize("needed", [[3], [0, 99], [5, 6, 70]])
def test_minimal_subset_finds_exactly_the_needed_items(needed):
    calls = []

    def passes(subset):
        calls.append(len(subset))
        return set(needed) <= set(subset.tolist())

    assert sorted(tie_explanation.minimal_subset(100, passes).tolist()) == needed
    assert len(calls) < 100  # a search, not one trial per item
