"""Comparison of people against golden records with the tolerances of ../shared/golden/README.md.

x, y within 1e-3 px; joint and person scores within 1e-4 (values are stored rounded to 6 decimals and
float32 summation order is the only other difference; anything larger is a different decision).
"""
from __future__ import annotations

import numpy as np

XY_TOL = 1e-3
SCORE_TOL = 1e-4


def assert_same_people(name: str, people: np.ndarray, scores: np.ndarray, record: dict) -> None:
    """``people [P, 17, 5]`` in image pixels (x, y, score, tag0, tag1) and ``scores [P]`` vs a golden record."""
    expected = np.asarray(record["people"], dtype=np.float64).reshape(-1, 17, 5)
    expected_scores = np.asarray(record["scores"], dtype=np.float64)
    assert len(people) == len(expected), f"{name}: {len(people)} people, golden has {len(expected)}"
    for p, (got, want) in enumerate(zip(people, expected)):
        xy = np.abs(got[:, :2] - want[:, :2]).max(axis=1)
        sc = np.abs(got[:, 2] - want[:, 2])
        bad = np.flatnonzero((xy > XY_TOL) | (sc > SCORE_TOL))
        assert bad.size == 0, (f"{name}: person {p}, joint {bad[0]}: got {got[bad[0], :3].tolist()}, "
                               f"golden {want[bad[0], :3].tolist()}")
        assert abs(scores[p] - expected_scores[p]) <= SCORE_TOL, (
            f"{name}: person {p} score {scores[p]} vs golden {expected_scores[p]}")
