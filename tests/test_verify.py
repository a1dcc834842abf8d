"""export.verify.compare_candidates on hand-made maps: which one-sided candidates a tie explains.

Mutations tried: accepting a refill whatever its rank (the ``< lost`` bound dropped) fails
``test_a_peak_two_places_below_is_not_a_refill``; dropping the refill rule (every unexplained pixel a
mismatch) fails ``test_a_place_freed_at_an_nms_tie_is_refilled_by_the_next_peak``.
"""
from __future__ import annotations

import numpy as np

from export.verify import compare_candidates

K = 3


def _maps(values: dict[tuple[int, int], float]) -> np.ndarray:
    heatmap = np.zeros((1, 17, 20, 40), np.float32)
    for (x, y), value in values.items():
        heatmap[0, 0, y, x] = value
    return heatmap


def _candidates(pixels: list[tuple[int, int]], heatmap: np.ndarray) -> np.ndarray:
    """Top-k rows ``(x + 0.5, y + 0.5, val, 0, 0)`` of joint 0; the other joints hold nothing above 0.1."""
    out = np.zeros((1, 17, K, 5), np.float32)
    for i, (x, y) in enumerate(pixels):
        out[0, 0, i] = (x + 0.5, y + 0.5, heatmap[0, 0, y, x], 0.0, 0.0)
    return out


def _outputs(heatmap, pixels):
    return {"heatmap": heatmap, "tags": np.zeros((*heatmap.shape, 2), np.float32),
            "candidates": _candidates(pixels, heatmap)}


# Peaks far apart (no NMS window holds two); (30, 10) has a neighbour of exactly its value: an NMS tie.
PEAKS = {(2, 10): 0.9, (10, 10): 0.8, (30, 10): 0.7, (31, 10): 0.7, (18, 10): 0.5, (24, 10): 0.4}


def test_a_place_freed_at_an_nms_tie_is_refilled_by_the_next_peak():
    heatmap = _maps(PEAKS)
    reference = _outputs(heatmap, [(2, 10), (10, 10), (30, 10)])
    other = _outputs(heatmap, [(2, 10), (10, 10), (18, 10)])  # lost (30, 10) at the tie, took the next peak
    mismatches, ties = compare_candidates(reference, other)
    assert mismatches == []
    assert any("(18, 10) other only" in line and "place left at a tie" in line for line in ties)


def test_a_peak_two_places_below_is_not_a_refill():
    heatmap = _maps(PEAKS)
    reference = _outputs(heatmap, [(2, 10), (10, 10), (30, 10)])
    other = _outputs(heatmap, [(2, 10), (10, 10), (24, 10)])  # skipped (18, 10): no tie explains that
    mismatches, _ = compare_candidates(reference, other)
    assert any("(24, 10) other only" in line for line in mismatches)


def test_no_refill_without_a_tie():
    heatmap = _maps({**PEAKS, (31, 10): 0.0, (10, 10): 0.6})  # (30, 10) a clear peak above the k-th value
    reference = _outputs(heatmap, [(2, 10), (10, 10), (30, 10)])
    other = _outputs(heatmap, [(2, 10), (10, 10), (18, 10)])
    mismatches, _ = compare_candidates(reference, other)
    assert any("(30, 10) reference only" in line for line in mismatches)
    assert any("(18, 10) other only" in line for line in mismatches)
