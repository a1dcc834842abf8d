"""runtime.grouping against munkres==1.1.4 and the NumPy transcription in benchmarks.baseline.

Every comparison is bit for bit: persons, their order, coordinates, values, tags and scores.
Random cases are tie-heavy on purpose (few distinct distances and values) because ties are
where assignment solvers and float orders disagree.  A failing case names its seed.
"""

from __future__ import annotations

import numpy as np
import pytest

munkres = pytest.importorskip("munkres")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from benchmarks import baseline  # noqa: E402
from runtime import grouping  # noqa: E402
from tests.tiles import tiles_of  # noqa: E402

VALS = np.array([0.05, 0.1, 0.1000001, 0.25, 0.3, 0.5, 0.75, 1.0], dtype=np.float32)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a = np.ascontiguousarray(a, dtype=np.float32)
    b = np.ascontiguousarray(b, dtype=np.float32)
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def munkres_pairs(cost: np.ndarray) -> list[tuple[int, int]]:
    return [tuple(p) for p in munkres.Munkres().compute(cost.tolist())]


def our_pairs(cost: np.ndarray) -> list[tuple[int, int]]:
    return [tuple(p) for p in grouping.assign(cost).tolist()]


def tie_cost(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """Costs shaped like the grouping's: round(distance) * 100 - val, sometimes 1e10 padded."""
    top = int(rng.integers(1, 6))
    cost = rng.integers(0, top, (rows, cols)).astype(np.float64) * 100
    cost -= rng.choice(VALS[1:], size=(rows, 1)).astype(np.float64)
    if rows > cols and rng.random() < 0.5:
        cost = np.concatenate((cost, np.full((rows, rows - cols), 1e10)), axis=1)
    return cost


# ---------------------------------------------------------------------------------------------
# assign == munkres 1.1.4
# ---------------------------------------------------------------------------------------------


def test_assign_hand_worked_tie():
    # Two candidates, both at tag distance 0 from person 1 and 1 from person 0:
    #   [[99.5, -0.5], [99.25, -0.75]]  -> step 1 -> [[100, 0], [100, 0]]
    # step 2 stars (0, 1); step 3 covers column 1; step 4 finds no uncovered zero; step 6
    # subtracts 100 from column 0 -> [[0, 0], [0, 0]].  Step 4 again from (0, 0): primes (0, 0),
    # row 0 has its star in column 1, so row 0 is covered and column 1 uncovered; the search
    # resumes at (0, 1): row 1 meets the zeros (1, 1) then (1, 0) and keeps the LAST one,
    # (1, 0), which has no star in its row -> step 5 stars it.  Answer: (0, 1), (1, 0).
    # (A solver that took the first zero, (1, 1), would answer (0, 0), (1, 1).)
    cost = np.array([[99.5, -0.5], [99.25, -0.75]])
    assert munkres_pairs(cost) == [(0, 1), (1, 0)]
    assert our_pairs(cost) == [(0, 1), (1, 0)]


def test_assign_shapes_and_padding():
    assert grouping.assign(np.zeros((0, 3))).shape == (0, 2)
    wide = np.array([[3.0, 1.0, 2.0]])
    assert our_pairs(wide) == munkres_pairs(wide) == [(0, 1)]
    tall = np.array([[3.0], [1.0], [2.0]])
    assert our_pairs(tall) == munkres_pairs(tall) == [(1, 0)]


@pytest.mark.parametrize("block", range(10))
def test_assign_matches_munkres_random(block):
    for case in range(500):
        seed = block * 1000 + case
        rng = np.random.default_rng(seed)
        rows, cols = (int(v) for v in rng.integers(1, 31, 2))
        if rng.random() < 0.3:  # small matrices are the common case at run time
            rows, cols = (int(v) for v in rng.integers(1, 6, 2))
        cost = tie_cost(rng, rows, cols)
        expected = munkres_pairs(cost)
        got = our_pairs(cost)
        assert got == expected, f"seed {seed}, cost=\n{cost.tolist()}"


def test_assign_step6_rounding_order():
    # Step 6 must add m to covered rows and then subtract it from uncovered columns, entry by
    # entry.  In the second step 6 here, m = 0.09999999999999998 and the covered-row /
    # uncovered-column entry C[3, 1] = 0.49999999999999994 becomes 0.4999999999999999 (not
    # itself); leaving such entries alone answers (0, 3), (1, 2), (3, 0), (4, 1) instead.
    cost = np.array([[3.0, 3.0, 0.3, 0.3], [0.3, 1e10, 0.3, 1e10], [0.3, 3.0, 3.0, 0.3],
                     [0.2, 0.7, 0.2, 3.0], [1e10, 0.7, 3.0, 0.2]])
    assert munkres_pairs(cost) == [(1, 2), (2, 0), (3, 1), (4, 3)]
    assert our_pairs(cost) == [(1, 2), (2, 0), (3, 1), (4, 3)]


def test_assign_rounding_sensitive_costs():
    # Costs far apart in magnitude, where (c + m) - m != c in float64.
    for seed in range(300):
        rng = np.random.default_rng(10_000 + seed)
        rows, cols = (int(v) for v in rng.integers(1, 12, 2))
        cost = rng.choice([0.1, 0.3, 1e10, 1e10 - 0.7, 100.2, 3.3e-7], size=(rows, cols))
        assert our_pairs(cost) == munkres_pairs(cost), f"seed {seed}, cost=\n{cost.tolist()}"


@st.composite
def tie_matrices(draw):
    rows = draw(st.integers(1, 30))
    cols = draw(st.integers(1, 30))
    levels = draw(st.integers(1, 5))
    dist = draw(st.lists(st.integers(0, levels - 1), min_size=rows * cols,
                         max_size=rows * cols))
    vals = draw(st.lists(st.sampled_from(VALS[1:].tolist()), min_size=rows, max_size=rows))
    cost = np.array(dist, np.float64).reshape(rows, cols) * 100
    cost -= np.array(vals, np.float32).astype(np.float64)[:, None]
    if rows > cols and draw(st.booleans()):
        cost = np.concatenate((cost, np.full((rows, rows - cols), 1e10)), axis=1)
    return cost


@settings(max_examples=300, deadline=None, derandomize=True)
@given(tie_matrices())
def test_assign_property(cost):
    assert our_pairs(cost) == munkres_pairs(cost), f"cost=\n{cost.tolist()}"


# ---------------------------------------------------------------------------------------------
# group == baseline.match_by_tag
# ---------------------------------------------------------------------------------------------


def as_candidates(loc, val, tag) -> np.ndarray:
    return np.concatenate((loc.astype(np.float32), val[..., None], tag), axis=2).astype(
        np.float32)


def random_topk(rng: np.random.Generator):
    """Tie-heavy (loc, val, tag) as top_k would give them: duplicate keys, empty joints."""
    k = int(rng.integers(1, 31)) if rng.random() < 0.3 else int(rng.integers(1, 9))
    loc = rng.integers(0, 64, (17, k, 2)).astype(np.int64)
    val = rng.choice(VALS, size=(17, k))
    val[rng.random(17) < 0.4] = 0.0  # many joints without any usable candidate
    val = -np.sort(-val, axis=1)
    centres = rng.choice([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, -1.0], size=int(rng.integers(1, 6)))
    tag0 = rng.choice(centres, size=(17, k)) + rng.choice([0.0, 0.0, 0.25, -0.5], size=(17, k))
    tag1 = rng.choice([0.0, 0.0, -0.0, 0.5, 0.75], size=(17, k))
    tag = np.stack((tag0, tag1), axis=2).astype(np.float32)
    return loc, val.astype(np.float32), tag


@pytest.mark.parametrize("block", range(4))
def test_group_matches_baseline(block):
    for case in range(300):
        seed = 100_000 + block * 1000 + case
        rng = np.random.default_rng(seed)
        loc, val, tag = random_topk(rng)
        expected = baseline.match_by_tag(loc, val, tag)
        got = grouping.group(as_candidates(loc, val, tag))
        assert got.shape == expected.shape, f"seed {seed}: {got.shape} != {expected.shape}"
        assert same_bits(got, expected), f"seed {seed}"


def test_group_many_persons():
    # Widely spread tags: most candidates start a person, far beyond 30 persons (no cap), and
    # the assignment matrices get wide (30 candidates x hundreds of persons).
    counts = []
    for case in range(10):
        seed = 150_000 + case
        rng = np.random.default_rng(seed)
        spread = [45.0, 200.0, 45.0, 200.0, 1000.0][case % 5]
        loc = rng.integers(0, 64, (17, 30, 2)).astype(np.int64)
        val = -np.sort(-rng.choice(VALS[1:], size=(17, 30)), axis=1)
        tag0 = np.round(rng.uniform(0, spread, (17, 30)) * 4) / 4
        tag = np.stack((tag0, rng.choice([0.0, 0.5], (17, 30))), axis=2).astype(np.float32)
        expected = baseline.match_by_tag(loc, val, tag)
        got = grouping.group(as_candidates(loc, val, tag))
        assert same_bits(got, expected), f"seed {seed}"
        counts.append(len(got))
    assert max(counts) > 300 and min(counts) > 30


@pytest.mark.parametrize("thresholds", [(0.3, 1.0), (0.1, 0.6), (0.0, 2.5)])
def test_group_thresholds(thresholds):
    for case in range(60):
        seed = 200_000 + case
        rng = np.random.default_rng(seed)
        loc, val, tag = random_topk(rng)
        expected = baseline.match_by_tag(loc, val, tag, *thresholds)
        got = grouping.group(as_candidates(loc, val, tag), *thresholds)
        assert same_bits(got, expected), f"seed {seed}, thresholds {thresholds}"


def test_group_hand_worked_tie():
    # Joint 0 creates person A (tag 0.0) and person B (tag 1.0).  Joint 1 has two candidates
    # with tags 0.9 (val 0.5) and 1.1 (val 0.75): distance 0.1 to B (rounds to 0) and 0.9 / 1.1
    # to A (round to 1), i.e. the cost matrix of test_assign_hand_worked_tie.  munkres 1.1.4
    # pairs candidate 0 with B and candidate 1 with A; 1.1 >= 1, so candidate 1 starts person C.
    cand = np.zeros((17, 2, 5), np.float32)
    cand[0] = [[10, 20, 0.9, 0.0, 0.0], [30, 40, 0.8, 1.0, 0.0]]
    cand[1] = [[11, 21, 0.5, 0.9, 0.0], [31, 41, 0.75, 1.1, 0.0]]
    persons = grouping.group(cand)
    assert persons.shape == (3, 17, 5)
    assert persons[0, 0].tolist() == cand[0, 0].tolist() and persons[0, 1].tolist() == [0] * 5
    assert persons[1, 0].tolist() == cand[0, 1].tolist()
    assert persons[1, 1].tolist() == cand[1, 0].tolist()
    assert persons[2, 1].tolist() == cand[1, 1].tolist() and persons[2, 0].tolist() == [0] * 5
    loc, val, tag = cand[..., :2].astype(np.int64), cand[..., 2], cand[..., 3:]
    assert same_bits(baseline.match_by_tag(loc, val, tag), persons)


def test_group_duplicate_key_resets_person():
    # Joint 0: two candidates with the same tag0 -> one person; its row is the second one.
    # Joint 1: a candidate far from it (distance 5) whose tag0 equals the existing key (-0.0 ==
    # 0.0) reuses the person: row overwritten, tag list restarted.
    cand = np.zeros((17, 2, 5), np.float32)
    cand[0] = [[1, 1, 0.5, 0.0, 0.0], [2, 2, 0.6, 0.0, 1.0]]
    cand[1] = [[3, 3, 0.7, -0.0, 5.5], [0, 0, 0.0, 0.0, 0.0]]
    persons = grouping.group(cand)
    assert persons.shape == (1, 17, 5)
    assert persons[0, 0].tolist() == [2, 2, np.float32(0.6), 0.0, 1.0]
    assert same_bits(persons[0, 1], cand[1, 0])
    loc, val, tag = cand[..., :2].astype(np.int64), cand[..., 2], cand[..., 3:]
    assert same_bits(baseline.match_by_tag(loc, val, tag), persons)


def test_group_empty():
    assert grouping.group(np.zeros((17, 30, 5), np.float32)).shape == (0, 17, 5)
    assert baseline.match_by_tag(np.zeros((17, 3, 2), np.int64), np.zeros((17, 3), np.float32),
                                 np.zeros((17, 3, 2), np.float32)).shape == (0, 17, 5)


# ---------------------------------------------------------------------------------------------
# float32 means and scores
# ---------------------------------------------------------------------------------------------


def test_mean_tags_equals_numpy_mean():
    # Claim: np.mean(list of float32 [2] arrays, axis=0) adds the rows one after another in
    # float32 and divides by n in float32 (no pairwise summation along axis 0).
    rng = np.random.default_rng(7)
    for case in range(3000):
        n = int(rng.integers(1, 41))
        scale = rng.choice([1e-3, 1.0, 10.0, 1e3])
        tags = (rng.standard_normal((n, 2)) * scale).astype(np.float32)
        expected = np.mean(list(tags), axis=0)
        sequential = tags[0].copy()
        for row in tags[1:]:
            sequential = sequential + row
        sequential = sequential / np.float32(n)
        assert same_bits(sequential, expected), f"case {case}"
        assert same_bits(grouping.mean_tags(tags), expected), f"case {case}"


def test_person_scores_equal_numpy_mean():
    # numpy's float32 mean over 17 values uses pairwise summation (8 lanes); a sequential sum
    # differs in the last bit for about a third of these cases, the reproduction must not.
    rng = np.random.default_rng(8)
    persons = np.zeros((4000, 17, 5), np.float32)
    persons[:, :, 2] = rng.random((4000, 17)) * (rng.random((4000, 17)) < 0.6)
    persons[:, :, 0] = rng.random((4000, 17)) * 100
    expected = np.array([p[:, 2].mean() for p in persons], np.float32)
    assert same_bits(grouping.person_scores(persons), expected)
    assert same_bits(baseline.person_scores(persons), expected)
    assert grouping.person_scores(np.zeros((0, 17, 5), np.float32)).shape == (0,)


# ---------------------------------------------------------------------------------------------
# refine and the whole decode == baseline
# ---------------------------------------------------------------------------------------------


def random_maps(rng: np.random.Generator, height: int = 24, width: int = 32):
    """Quantized blob heatmaps (plateaus, equal neighbours) and stepwise tag maps."""
    heatmap = np.zeros((17, height, width), np.float32)
    tags = np.zeros((17, height, width, 2), np.float32)
    yy, xx = np.mgrid[0:height, 0:width]
    n_people = int(rng.integers(1, 7))
    person_tag = rng.choice([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0], size=n_people)
    for p in range(n_people):
        cy, cx = rng.integers(0, height), rng.integers(0, width)
        for j in range(17):
            if rng.random() < 0.25:
                continue
            y = np.clip(cy + rng.integers(-6, 7), 0, height - 1)
            x = np.clip(cx + rng.integers(-6, 7), 0, width - 1)
            sigma = rng.choice([0.7, 1.5, 2.5])
            blob = np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma ** 2))
            blob = blob * rng.choice([0.3, 0.6, 1.0])
            levels = rng.choice([8, 16, 1000])
            blob = np.round(blob * levels) / levels
            near = blob > 0.05
            heatmap[j] = np.maximum(heatmap[j], blob.astype(np.float32))
            tags[j, near, 0] = person_tag[p] + rng.choice([0.0, 0.25, 0.5])
            tags[j, near, 1] = rng.choice([0.0, 0.25])
    heatmap += (rng.integers(0, 3, heatmap.shape) * 0.04).astype(np.float32)
    tags += (rng.integers(-2, 3, tags.shape) * 0.25).astype(np.float32)
    return heatmap, tags


def adjusted_candidates(heatmap, tags, k: int = 30) -> np.ndarray:
    """What the DecodeGraph hands over: top-k peaks with the quarter-pixel adjust applied to
    each candidate (before grouping)."""
    loc, val, tag = baseline.top_k(baseline.nms(heatmap), tags, k)
    cand = as_candidates(loc, val, tag)
    _, height, width = heatmap.shape
    for j in range(17):
        hm = heatmap[j]
        for c in cand[j]:
            xx, yy = int(c[0]), int(c[1])
            dy = 0.25 if hm[min(height - 1, yy + 1), xx] > hm[max(0, yy - 1), xx] else -0.25
            dx = 0.25 if hm[yy, min(width - 1, xx + 1)] > hm[yy, max(0, xx - 1)] else -0.25
            c[0] = c[0] + np.float32(dx) + np.float32(0.5)
            c[1] = c[1] + np.float32(dy) + np.float32(0.5)
    return cand


def test_decode_people_matches_baseline():
    # Adjusting every candidate before grouping gives the same persons as adjusting persons
    # after it: grouping never reads x, y and copies candidate rows verbatim, the adjust of a
    # joint depends only on (x, y, joint), and every grouped joint has val > 0 (so mmpose
    # adjusts all of them).  This test checks it on tie-heavy maps, end to end.
    total_people = 0
    for case in range(120):
        seed = 300_000 + case
        rng = np.random.default_rng(seed)
        heatmap, tags = random_maps(rng)
        expected_persons, expected_scores = baseline.decode(heatmap, tags)
        persons, scores = grouping.decode_people(adjusted_candidates(heatmap, tags), heatmap,
                                                 tags, tiles_of(heatmap, tags))
        assert persons.shape == expected_persons.shape, f"seed {seed}"
        assert same_bits(scores, expected_scores), f"seed {seed}"
        assert same_bits(persons, expected_persons), f"seed {seed}"
        total_people += len(persons)
    assert total_people > 300


def test_refine_matches_baseline():
    for case in range(60):
        seed = 400_000 + case
        rng = np.random.default_rng(seed)
        heatmap, tags = random_maps(rng, 20, 28)
        loc, val, tag = baseline.top_k(baseline.nms(heatmap), tags)
        persons = baseline.adjust(baseline.match_by_tag(loc, val, tag), heatmap)
        ours = persons.copy()
        grouping.refine(ours, heatmap, tags, tiles_of(heatmap, tags))
        for person in persons:
            baseline.refine(heatmap, tags, person)
        assert same_bits(ours, persons), f"seed {seed}"


def variant_maps(rng, kind: str, height: int, width: int):
    """Tie-heavy ``random_maps``, then one of a few harder variants (shared with the CUDA tests)."""
    heatmap, tags = random_maps(rng, height, width)
    if kind == "continuous":
        tags = tags + rng.standard_normal(tags.shape).astype(np.float32) * 0.2
    elif kind == "negative":
        heatmap = heatmap * 3 - rng.random(heatmap.shape).astype(np.float32)
    elif kind == "far_tags":
        tags = tags * 40 + rng.integers(-3, 4, tags.shape).astype(np.float32) * 1e6
    elif kind == "flat":  # one value everywhere but the centre
        heatmap = np.full_like(heatmap, 0.5)
        heatmap[:, height // 2, width // 2] = 0.75
    elif kind == "plateau":  # equal scores everywhere but a few pixels: first index must win
        levels = rng.choice([0.25, 0.5], size=(17, 1, 1)).astype(np.float32)
        heatmap = np.where(heatmap > 0.5, heatmap, levels).astype(np.float32)
        tags = np.round(tags).astype(np.float32)
    elif kind == "one_tag":  # every tag equal: duplicate keys in grouping, ties in refine
        tags = np.full_like(tags, 1.0)
    return heatmap, tags


@pytest.mark.parametrize("kind", ["continuous", "negative", "far_tags", "flat"])
def test_refine_matches_baseline_varied_maps(kind):
    # Odd map sizes (partial tiles), continuous or far-apart tags, negative heatmaps, flat
    # maps: the exact pruning of the fast refine must never change the first maximum.
    # Mutation tried: tiles of equal value out of row-major order (np.argsort's default
    # quicksort in _tag_buckets) fails the flat maps.
    for case in range(6):
        seed = 500_000 + case
        rng = np.random.default_rng(seed)
        height, width = int(rng.integers(9, 70)), int(rng.integers(17, 90))
        heatmap, tags = variant_maps(rng, kind, height, width)
        loc, val, tag = baseline.top_k(baseline.nms(heatmap), tags)
        persons = baseline.adjust(baseline.match_by_tag(loc, val, tag), heatmap)
        ours = persons.copy()
        grouping.refine(ours, heatmap, tags, tiles_of(heatmap, tags))
        for person in persons:
            baseline.refine(heatmap, tags, person)
        assert same_bits(ours, persons), f"{kind}, seed {seed}"


def test_refine_hand_worked_tie():
    height, width = 4, 5
    heatmap = np.zeros((17, height, width), np.float32)
    tags = np.zeros((17, height, width, 2), np.float32)
    tags[0, 1, 1] = (2.0, 0.0)  # the person's only joint -> person tag (2, 0)
    tags[1] = (2.0, 0.0)
    heatmap[1, 0, 0] = 1.0
    tags[1, 0, 0] = (5.0, 0.0)  # higher, but 3 tag units away: score 1 - 3 = -2
    heatmap[1, 2, 3] = 0.75  # three equal scores 0.75: (y=2, x=3) comes first row-major
    heatmap[1, 3, 1] = 0.75
    heatmap[1, 3, 2] = 1.75  # higher, 1 tag unit away: 1.75 - 1 = 0.75, later -> loses
    tags[1, 3, 2] = (3.0, 0.0)
    persons = np.zeros((1, 17, 5), np.float32)
    persons[0, 0] = (1.75, 1.25, 0.9, 2.0, 0.0)
    expected = persons.copy()
    # x: hm[2, 4] > hm[2, 2]? no (0 vs 0) -> 3 + 0.5 - 0.25; y: hm[3, 3] > hm[1, 3]? no.
    expected[0, 1, :3] = (3.25, 2.25, 0.75)
    grouping.refine(persons, heatmap, tags, tiles_of(heatmap, tags))
    assert same_bits(persons, expected)
    oracle = np.zeros((17, 5), np.float32)
    oracle[0] = (1.75, 1.25, 0.9, 2.0, 0.0)
    assert same_bits(baseline.refine(heatmap, tags, oracle), expected[0])


def test_refine_keeps_detected_joints_and_scores():
    rng = np.random.default_rng(5)
    heatmap, tags = random_maps(rng)
    persons = grouping.group(adjusted_candidates(heatmap, tags))
    before = persons.copy()
    scores = grouping.person_scores(persons)
    grouping.refine(persons, heatmap, tags, tiles_of(heatmap, tags))
    detected = before[:, :, 2] > 0
    assert same_bits(persons[detected], before[detected])
    assert np.all(persons[~detected][:, 3:] == 0)
    assert (persons[:, :, 2] > 0).sum() > detected.sum()
    assert same_bits(scores, grouping.person_scores(before))


# ---------------------------------------------------------------------------------------------
# The plain (uncompiled) sources compute the same thing: what a CUDA build wraps
# ---------------------------------------------------------------------------------------------


def test_plain_python_cores_agree():
    plain = grouping.cores("python")
    rng = np.random.default_rng(11)
    for case in range(20):
        cost = tie_cost(rng, int(rng.integers(1, 8)), int(rng.integers(1, 8)))
        assert grouping._assign_with(plain, cost).tolist() == grouping.assign(cost).tolist()
    for case in range(3):
        loc, val, tag = random_topk(rng)
        cand = as_candidates(loc, val, tag)
        assert same_bits(grouping._group_with(plain, cand, 0.1, 1.0), grouping.group(cand))
    heatmap, tags = random_maps(rng, 9, 19)
    persons = grouping.group(adjusted_candidates(heatmap, tags))
    assert same_bits(grouping._person_scores_with(plain, persons),
                     grouping.person_scores(persons))
    ours, theirs = persons.copy(), persons.copy()
    grouping._refine_with(plain, ours, heatmap, tags, tiles_of(heatmap, tags))
    grouping.refine(theirs, heatmap, tags, tiles_of(heatmap, tags))
    assert same_bits(ours, theirs)


def test_refine_search_order_keeps_first_pixel_on_ties():
    """The host refine searches tiles by decreasing heatmap value, not in row-major order, so
    an equal score met later must still win when its pixel comes first.  Here pixel (0, 0)
    (heatmap 0.5, same tag as the person: score 0.5) comes first in row-major order, and a
    pixel in a later tile (heatmap 1.5, one tag unit away: score 0.5) is searched first (its
    tile also holds the person's tag, so its bound 1.5 beats the first tile's 0.5).
    Mutations tried: dropping ``or (score == best and at < best_at)`` in
    ``grouping._wins`` (the later pixel wins) and breaking on ``reach <= best``
    instead of ``< best`` in ``_search_person`` (the first pixel's tile is never searched): both fail here.
    """
    height, width = 24, 40
    heatmap = np.zeros((17, height, width), np.float32)
    tags = np.full((17, height, width, 2), 9.0, np.float32)
    tags[0, 1, 1] = (2.0, 0.0)  # the person's only joint -> person tag (2, 0)
    heatmap[1, 0, 0] = 0.5
    tags[1, 0, 0] = (2.0, 0.0)
    heatmap[1, 20, 35] = 1.5
    tags[1, 20, 35] = (3.0, 0.0)
    tags[1, 20, 34] = (2.0, 0.0)  # heatmap 0 there: the later tile's bound is 1.5, searched first
    persons = np.zeros((1, 17, 5), np.float32)
    persons[0, 0] = (1.75, 1.25, 0.9, 2.0, 0.0)
    oracle = persons[0].copy()
    grouping.refine(persons, heatmap, tags, tiles_of(heatmap, tags))
    assert same_bits(baseline.refine(heatmap, tags, oracle), persons[0])
    assert persons[0, 1, 2] == np.float32(0.5)  # pixel (0, 0), not (20, 35)


def test_refine_reads_nan_tile_fields_as_unknown():
    """A tile holding a NaN pixel may be summarised as NaN (``np.max``, torch and ONNX Runtime
    propagate it) or by its other pixels (``np.fmax``); refine finds the same maximum from either.
    Here the person's maximum (0.8) shares a tile with a NaN pixel: a NaN summary taken as it is
    would sort that tile last, after a tile whose 0.5 ends the search. A NaN pixel scores NaN and
    never wins a comparison, so the maximum is the 0.8 pixel (mmpose's ``np.argmax`` would return
    the NaN; the pipeline refuses NaN candidates before refine, ``pipeline.check_finite``).

    Mutation tried: ``_unknown_if_nan`` returning the field as it is fails on the NaN summary."""
    height, width = 16, 48
    heatmap = np.zeros((17, height, width), np.float32)
    tags = np.zeros((17, height, width, 2), np.float32)
    heatmap[1, 2, 3] = 0.5  # tile (0, 0)
    heatmap[1, 9, 40] = 0.8  # tile (1, 2) ...
    heatmap[1, 10, 41] = np.nan  # ... which also holds a NaN
    tags[1, 11, 33] = (np.nan, 0.0)
    person = np.zeros((1, 17, 5), np.float32)
    person[0, 0] = (1.75, 1.25, 0.9, 0.0, 0.0)  # tag (0, 0): every tag of joint 1 is at distance 0
    propagated = tiles_of(heatmap, tags)
    assert np.isnan(propagated[1, 1, 2]).any()
    with np.errstate(invalid="ignore"):
        left_out = tiles_of(np.nan_to_num(heatmap, nan=-np.inf), np.nan_to_num(tags, nan=0.0))
    for tiles in (propagated, left_out):
        persons = person.copy()
        grouping.refine(persons, heatmap, tags, tiles)
        assert persons[0, 1, :3].tolist() == [40.25, 9.25, np.float32(0.8)]  # pixel (40, 9), its adjust


def test_refine_refuses_a_summary_of_other_maps():
    heatmap, tags = random_maps(np.random.default_rng(6), 20, 28)
    persons = grouping.group(adjusted_candidates(heatmap, tags))
    with pytest.raises(ValueError, match=r"tile summary \(17, 3, 2, 5\)"):
        grouping.refine(persons, heatmap, tags, tiles_of(heatmap[:, :16], tags[:, :16]))


def test_refine_skips_only_tiles_of_the_same_value():
    """Far from the person's tag, float32 rounding makes different heatmap values score alike:
    ``0.49 - 1e6`` and ``0.5 - 1e6`` are both -999999.5. The search skips the rest of a run of
    tiles of one value once their bound equals the best score and they start after the best pixel;
    a later tile of a lower value can still tie and come first. Here the maximum is the 0.49 pixel
    (2, 3), tied with two 0.5 pixels later in row-major order and searched after them.

    Mutation tried: ``run_end`` reaching the end of the bucket (every tile after the skipped one
    taken as of the same value) fails here."""
    height, width = 24, 48
    heatmap = np.zeros((17, height, width), np.float32)
    tags = np.zeros((17, height, width, 2), np.float32)
    tags[1] = (1e6, 0.0)
    heatmap[1, 2, 3] = 0.49  # tile 0
    heatmap[1, 9, 5] = 0.5  # tile 3: searched first
    heatmap[1, 17, 40] = 0.5  # tile 8: starts after the best pixel, bound equal: its run is skipped
    person = np.zeros((1, 17, 5), np.float32)
    person[0, 0] = (1.75, 1.25, 0.9, 0.0, 0.0)
    oracle = person[0].copy()
    grouping.refine(person, heatmap, tags, tiles_of(heatmap, tags))
    assert person[0, 1, 2] == np.float32(0.49)
    assert same_bits(baseline.refine(heatmap, tags, oracle), person[0])


@pytest.mark.parametrize("kind", ["plain", "plateau", "far_tags"])
def test_refine_is_exact_for_any_summary_that_bounds_the_maps(kind):
    """Refine's search only prunes by bounds, so a summary that over-states each tile (a larger
    heatmap maximum, wider tag ranges) gives the same people, bit for bit; only the search grows.
    ``tests/tie_explanation.py`` relies on it (one summary bounding both backends' maps).

    Mutation tried: ``_nearest`` returning the middle of a tag range that holds the person's tag (no
    longer a bound) fails all three."""
    for case in range(4):
        seed = 520_000 + case
        rng = np.random.default_rng(seed)
        heatmap, tags = variant_maps(rng, kind, 24, 40)
        persons = grouping.group(adjusted_candidates(heatmap, tags))
        exact, loose = persons.copy(), persons.copy()
        tiles = tiles_of(heatmap, tags)
        grouping.refine(exact, heatmap, tags, tiles)
        slack = rng.choice([0.0, 0.25, 3.0], size=tiles.shape).astype(np.float32)
        slack[..., 1::2] *= -1  # fields 1 and 3 are lower bounds
        grouping.refine(loose, heatmap, tags, tiles + slack)
        assert same_bits(loose, exact), f"{kind}, seed {seed}"
