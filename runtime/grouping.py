"""Grouping (SPEC §7) and refine (SPEC §8) of bottom-up candidates into persons.

What this module computes
-------------------------
The DecodeGraph hands over, per joint, the top-K peaks as ``(x, y, val, tag0, tag1)`` with ``x, y``
already quarter-pixel adjusted.  ``group`` turns them into persons exactly like mmpose 0.29
``_match_by_tag`` (``use_detection_val=True``, ``ignore_too_much=False``), ``person_scores`` takes
the mean joint value, and ``refine`` fills missing joints from the dense heatmap and tag maps like
mmpose's ``HeatmapParser.refine``.  ``decode_people`` chains the three.

Why the assignment reproduces ``munkres==1.1.4`` step by step
--------------------------------------------------------------
Grouping costs are ``round(distance) * 100 - val``: a handful of distinct values, so most
assignment problems have several optimal pairings.  Which one a solver returns depends on the
exact order in which it scans for zeros, and the pairing decides which candidate joins which
person (a pair whose tag distance is >= 1 starts a new person instead).  Any other solver
(``scipy``, ``munkres`` 3.x) gives equally cheap but different pairings and so different
people.  ``_assign`` therefore follows the step sequence of the pure-Python ``munkres`` 1.1.4
release, including its peculiarities:

* the matrix is padded to a square with zeros and every row of the padded square has its
  minimum subtracted (step 1);
* the zero search of step 4 resumes at the last primed position, walks rows cyclically and, in
  the first row that holds an uncovered zero, keeps the *last* such zero met while walking the
  columns cyclically (its inner loop never stops early);
* every entry into step 4 starts that search at ``(0, 0)``;
* step 6 first adds the minimum to covered rows and then subtracts it from uncovered columns,
  element by element; in float64 ``(c + m) - m`` is not always ``c``, so both operations are
  performed, in that order;
* all tests for zero are exact (``== 0``).

Why plain functions over preallocated buffers
---------------------------------------------
The same source is compiled for two targets: with ``numba.njit`` for the host and, in
``runtime.cuda_grouping``, with ``numba.cuda.jit(device=True)`` so the kernels read the engine's
output buffers in place.  The core functions (names starting with ``_``) therefore use only
scalar arithmetic, ``math`` functions and array indexing: no Python objects, no lists or dicts,
no exceptions and no allocation; every work buffer is created by the Python wrappers and passed
in.  The cores call one another by their plain names.  :func:`link` compiles a set of them for
one target so that those names reach the compiled versions; :func:`cores` gives the host build
(``cores("host")``, compiled at first use and cached) and the uncompiled one
(``cores("python")``); ``SHARED_CORES`` lists what the device build compiles too.

Floating point
--------------
Grouping distances and costs are float64 (mmpose assembles candidates in float64).  Mean tags
are float32: NumPy's ``np.mean(list_of_float32_pairs, axis=0)`` adds the rows one after another
in float32 and divides by the count in float32.  The person score reproduces NumPy's float32
pairwise summation of the 17 joint values.  Refine works in float32 like the maps; where a value
is computed in float64 and rounded to float32 after each operation the result is the same as a
float32 operation (one rounding of an exact or correctly rounded float64 result).  Rounding to
an integer is round-half-to-even, like ``np.round``.

Parity rests on every multiply and add being rounded separately.  The host build gets that by
default (numba does not contract ``a * b + c`` without fastmath).  NVVM does contract them into
FMAs even without fastmath, which would change the squared distances of grouping and refine in
the last bit.  So every product that feeds an addition goes through ``_mul32`` / ``_mul64``:
plain products here, and products rounded on their own (``__fmul_rn`` / ``__dmul_rn``, which
are never fused) in the device build of ``runtime.cuda_grouping``, which swaps in its own
versions of these two functions.

Refine
------
mmpose scores every pixel of every joint map for every person.  The host computes the same
first maximum (highest score, then lowest row-major pixel) with a search whose cost per person
does not depend on the map or the crowd (``_refine_joint``): the DecodeGraph summarises each
joint's maps in tiles (its ``tiles`` output: largest heatmap value, tag ranges; the dense pass
stays next to the network), the host buckets the tiles by tag value, and each person visits
buckets and tiles by decreasing exact upper bound of their scores
(``_bound``: a score never exceeds its heatmap value and falls with the rounded distance) and
stops at the first one that cannot reach its best score.  Since the rounded distance is an
integer and a joint's heatmap spans a range below 1 on trained or rendered maps, the maximum
lies among the highest values at the one or two smallest rounded distances: a few tiles, and
the host reads the dense maps only there.
These search functions (``HOST_REFINE``) are compiled for the host only: the device build
scores every (pixel, person) pair in one dense pass instead (``runtime.cuda_grouping`` says why
and which tests prove the two searches equal); it shares ``_tag_distance``, ``_prev_tag``,
``_misses_joint`` and ``_write_refined`` with the host.  The host
driver runs the 17 joints in parallel; each writes only its own joint of every person, so the
result does not depend on the number of threads.
"""

from __future__ import annotations

import functools
import math
import types

import numba
import numpy as np

from runtime.metadata import TILE_SHAPE, tile_grid

__all__ = [
    "NUM_JOINTS",
    "assign",
    "cores",
    "decode_people",
    "group",
    "mean_tags",
    "person_scores",
    "refine",
]

NUM_JOINTS = 17

# 2**52: adding and subtracting it rounds a float64 in [0, 2**52) to an integer, ties to even.
_TWO52 = 4503599627370496.0
# munkres 1.1.4 starts its minimum search at sys.maxsize (2**63 - 1); as a float that is 2**63,
# and comparisons against floats give the same answers either way.
_MUNKRES_START_MIN = 9223372036854775808.0
# Cost of the columns added when there are more candidates than persons (mmpose: 1e10).
_PAD_COST = 1e10
# Refine buckets the tiles of the graph's summary (TILE_SHAPE pixels each) on a grid in tag
# space of cells of _BUCKET_SIZE tag units, at most _MAX_BUCKETS per axis.
_BUCKET_SIZE = 0.25
_MAX_BUCKETS = 16


# ---------------------------------------------------------------------------------------------
# Core functions (plain Python, compiled by link)
# ---------------------------------------------------------------------------------------------


def _mul32(a, b):
    """Float32 product ``a * b``, rounded before any addition that uses it (never fused)."""
    return np.float32(a * b)


def _mul64(a, b):
    """Float64 product ``a * b``, rounded before any addition that uses it (never fused)."""
    return a * b


def _round_half_even(x):
    """Round a float64 to the nearest integer, halves to even, like ``np.round``.

    NaN passes through; a zero result is +0.0 (``np.round`` keeps the sign), which no caller
    can tell apart: the rounded values are distances.
    """
    if x >= 0.0:
        if x < _TWO52:
            return (x + _TWO52) - _TWO52
        return x
    if x > -_TWO52:
        return (x - _TWO52) + _TWO52
    return x


def _joint_at(i):
    """COCO joint index visited at step ``i`` of the grouping order (SPEC §7)."""
    # order: 0 1 2 3 4 5 6 11 12 7 8 9 10 13 14 15 16
    if i < 7:
        return i
    if i < 9:
        return i + 4
    if i < 13:
        return i - 2
    return i


def _find_zero(C, n, row_cov, col_cov, i0, j0):
    """Step 4 zero search of munkres 1.1.4, see the module docstring; (-1, -1) if none."""
    row = -1
    col = -1
    i = i0
    while True:
        if row_cov[i] == 0:
            j = j0
            while True:
                if C[i, j] == 0.0 and col_cov[j] == 0:
                    row = i
                    col = j
                j += 1
                if j == n:
                    j = 0
                if j == j0:
                    break
        i += 1
        if i == n:
            i = 0
        if row >= 0 or i == i0:
            break
    return row, col


def _find_mark(marked, n, line, along_row, mark):
    """First index along row ``line`` (``along_row``) or column ``line`` whose entry of ``marked``
    is ``mark`` (1 star, 2 prime); -1 if none."""
    for k in range(n):
        if (marked[line, k] if along_row else marked[k, line]) == mark:
            return k
    return -1


def _clear_covers(n, row_cov, col_cov):
    for i in range(n):
        row_cov[i] = 0
        col_cov[i] = 0


def _reduce_rows(C, n):
    """Step 1: subtract each row's minimum from the row."""
    for i in range(n):
        low = C[i, 0]
        for j in range(1, n):
            if C[i, j] < low:
                low = C[i, j]
        for j in range(n):
            C[i, j] = C[i, j] - low


def _star_first_zeros(C, n, marked, row_cov, col_cov):
    """Step 2: star the first zero of each row whose column holds no star yet; returns step 3."""
    for i in range(n):
        for j in range(n):
            if C[i, j] == 0.0 and col_cov[j] == 0 and row_cov[i] == 0:
                marked[i, j] = 1
                col_cov[j] = 1
                row_cov[i] = 1
                break
    _clear_covers(n, row_cov, col_cov)
    return 3


def _cover_starred_columns(n, marked, col_cov):
    """Step 3: cover every column holding a star; returns 0 (done) when all n are covered, else 4."""
    count = 0
    for i in range(n):
        for j in range(n):
            if marked[i, j] == 1 and col_cov[j] == 0:
                col_cov[j] = 1
                count += 1
    return 0 if count >= n else 4


def _prime_zeros(C, n, marked, row_cov, col_cov, path):
    """Step 4: prime uncovered zeros; one without a star in its row starts the path of step 5
    (written to ``path[0]``; returns 5); when no uncovered zero is left, returns 6."""
    row = 0
    col = 0
    while True:
        row, col = _find_zero(C, n, row_cov, col_cov, row, col)
        if row < 0:
            return 6
        marked[row, col] = 2
        star = _find_mark(marked, n, row, True, 1)
        if star < 0:
            path[0, 0] = row
            path[0, 1] = col
            return 5
        col = star
        row_cov[row] = 1
        col_cov[star] = 0


def _flip_path(n, marked, row_cov, col_cov, path):
    """Step 5: from the prime in ``path[0]``, alternate star in its column / prime in that star's
    row; unstar the stars and star the primes of that path, then erase primes and covers.
    Returns step 3."""
    count = 0
    while True:
        r = _find_mark(marked, n, path[count, 1], False, 1)
        if r < 0:
            break
        count += 1
        path[count, 0] = r
        path[count, 1] = path[count - 1, 1]
        count += 1
        path[count, 0] = r
        path[count, 1] = _find_mark(marked, n, r, True, 2)
    for q in range(count + 1):
        marked[path[q, 0], path[q, 1]] = 0 if marked[path[q, 0], path[q, 1]] == 1 else 1
    _clear_covers(n, row_cov, col_cov)
    for i in range(n):
        for j in range(n):
            if marked[i, j] == 2:
                marked[i, j] = 0
    return 3


def _shift_by_minimum(C, n, row_cov, col_cov):
    """Step 6: add the smallest uncovered value to covered rows, then subtract it from uncovered
    columns (both on the doubly affected entries, in this order); returns step 4, or 0 (stop)
    when there is no uncovered value below munkres' start value (NaN, or costs that large)."""
    low = _MUNKRES_START_MIN
    for i in range(n):
        if row_cov[i] == 0:
            for j in range(n):
                if col_cov[j] == 0 and low > C[i, j]:
                    low = C[i, j]
    if not low < _MUNKRES_START_MIN:
        return 0
    for i in range(n):
        for j in range(n):
            if row_cov[i] != 0:
                C[i, j] = C[i, j] + low
            if col_cov[j] == 0:
                C[i, j] = C[i, j] - low
    return 4


def _assign(C, n, n_rows, n_cols, marked, row_cov, col_cov, path, pairs):
    """Solve the assignment for the padded square ``C[:n, :n]`` like munkres 1.1.4.

    This reproduces, by necessity, the step order of the ``munkres`` package, version 1.1.4, by
    Brian Clapper (Apache License 2.0; https://software.clapper.org/munkres/), the pure-Python
    solver mmpose 0.29 pairs candidates with: among equally cheap pairings (the rule with these
    costs) only its own order of steps and zero searches yields mmpose's people (SPEC §7), so that
    order is the specification here. ``tests/test_grouping.py`` holds it to the package itself.
    Each step is a function returning the number of the next step (0: finished).

    ``C`` holds the caller's ``n_rows x n_cols`` costs in its top-left corner and zeros in the
    rest of the ``n x n`` square (munkres' own padding); it is overwritten.  ``marked`` (n x n),
    ``row_cov``/``col_cov`` (n) and ``path`` (2n x 2) are work buffers.  The starred pairs inside
    the caller's region are written to ``pairs`` in row-major order; returns their count.
    A matrix without any finite uncovered value below 2**63 (NaN, or costs that large) stops
    the search early; munkres itself would loop forever on NaN.
    """
    _clear_covers(n, row_cov, col_cov)
    for i in range(n):
        for j in range(n):
            marked[i, j] = 0
    _reduce_rows(C, n)
    step = _star_first_zeros(C, n, marked, row_cov, col_cov)
    while step != 0:
        if step == 3:
            step = _cover_starred_columns(n, marked, col_cov)
        elif step == 4:
            step = _prime_zeros(C, n, marked, row_cov, col_cov, path)
        elif step == 5:
            step = _flip_path(n, marked, row_cov, col_cov, path)
        else:
            step = _shift_by_minimum(C, n, row_cov, col_cov)

    n_pairs = 0
    for i in range(n_rows):
        for j in range(n_cols):
            if marked[i, j] == 1:
                pairs[n_pairs, 0] = i
                pairs[n_pairs, 1] = j
                n_pairs += 1
    return n_pairs


def _mean_tag(tag_list, tag_len, p, c):
    """Float32 mean of component ``c`` over person ``p``'s stored tags (NumPy's order)."""
    total = tag_list[p, 0, c]
    for t in range(1, tag_len[p]):
        total = total + tag_list[p, t, c]
    return total / np.float32(tag_len[p])


def _place(cand, j, k, persons, keys, tag_list, tag_len, n_persons):
    """Give candidate ``k`` of joint ``j`` a person keyed by its tag0; returns the new count.

    An existing person with exactly that key is reused: its joint row is overwritten and its
    tag list restarts with this tag.  Otherwise a new person is appended.
    """
    key = cand[j, k, 3]
    p = n_persons
    for q in range(n_persons):
        if keys[q] == key:
            p = q
            break
    if p == n_persons:
        for jj in range(persons.shape[1]):
            for f in range(5):
                persons[p, jj, f] = 0.0
        keys[p] = key
        n_persons += 1
    for f in range(5):
        persons[p, j, f] = cand[j, k, f]
    tag_list[p, 0, 0] = cand[j, k, 3]
    tag_list[p, 0, 1] = cand[j, k, 4]
    tag_len[p] = 1
    return n_persons


def _group(cand, det_thr, tag_thr, persons, keys, tag_list, tag_len, means, sel, dist, C,
           marked, row_cov, col_cov, path, pairs):
    """Group candidates ``cand [17, K, 5]`` into ``persons``; returns the number of persons.

    Buffers (P = 17*K, N >= max(K, P)): persons [P, 17, 5] f4, keys [P] f4, tag_list
    [P, 17, 2] f4, tag_len [P] int, means [P, 2] f4, sel [K] int, dist [K, P] f8, C [N, N] f8,
    marked [N, N] int, row_cov/col_cov [N] int, path [2N, 2] int, pairs [N, 2] int.
    """
    n_k = cand.shape[1]
    n_persons = 0
    for step in range(cand.shape[0]):
        j = _joint_at(step)
        n_sel = 0
        for k in range(n_k):
            # float32 value against the float64 threshold, like mmpose's float64 joints
            if np.float64(cand[j, k, 2]) > det_thr:
                sel[n_sel] = k
                n_sel += 1
        if n_sel == 0:
            continue
        if n_persons == 0:
            for r in range(n_sel):
                n_persons = _place(cand, j, sel[r], persons, keys, tag_list, tag_len, n_persons)
            continue

        n_grouped = n_persons
        for p in range(n_grouped):
            means[p, 0] = _mean_tag(tag_list, tag_len, p, 0)
            means[p, 1] = _mean_tag(tag_list, tag_len, p, 1)
        n = n_sel if n_sel > n_grouped else n_grouped
        for r in range(n_sel):
            k = sel[r]
            t0 = np.float64(cand[j, k, 3])
            t1 = np.float64(cand[j, k, 4])
            val = np.float64(cand[j, k, 2])
            for p in range(n_grouped):
                d0 = t0 - np.float64(means[p, 0])
                d1 = t1 - np.float64(means[p, 1])
                d = math.sqrt(_mul64(d0, d0) + _mul64(d1, d1))
                dist[r, p] = d
                C[r, p] = _mul64(_round_half_even(d), 100.0) - val
            for p in range(n_grouped, n):
                C[r, p] = _PAD_COST
        for r in range(n_sel, n):
            for p in range(n):
                C[r, p] = 0.0
        n_pairs = _assign(C, n, n_sel, n, marked, row_cov, col_cov, path, pairs)

        for q in range(n_pairs):
            r = pairs[q, 0]
            p = pairs[q, 1]
            k = sel[r]
            if p < n_grouped and dist[r, p] < tag_thr:
                for f in range(5):
                    persons[p, j, f] = cand[j, k, f]
                t = tag_len[p]
                tag_list[p, t, 0] = cand[j, k, 3]
                tag_list[p, t, 1] = cand[j, k, 4]
                tag_len[p] = t + 1
            else:
                n_persons = _place(cand, j, k, persons, keys, tag_list, tag_len, n_persons)
    return n_persons


def _person_score(persons, p):
    """Mean of the joint values of person ``p`` as NumPy's float32 ``mean`` computes it.

    NumPy sums with pairwise summation: below 8 values a plain loop; otherwise 8 running sums
    seeded with the first 8 values, whole blocks of 8 added lane by lane, the sums combined as
    ((s0+s1)+(s2+s3))+((s4+s5)+(s6+s7)), then the remaining values added one by one.  Exact for
    up to 128 values (NumPy splits longer runs recursively); a person has 17.
    """
    n = persons.shape[1]
    if n < 8:
        total = np.float32(0.0)
        for i in range(n):
            total = total + persons[p, i, 2]
        return total / np.float32(n)
    s0 = persons[p, 0, 2]
    s1 = persons[p, 1, 2]
    s2 = persons[p, 2, 2]
    s3 = persons[p, 3, 2]
    s4 = persons[p, 4, 2]
    s5 = persons[p, 5, 2]
    s6 = persons[p, 6, 2]
    s7 = persons[p, 7, 2]
    i = 8
    while i < n - n % 8:
        s0 = s0 + persons[p, i, 2]
        s1 = s1 + persons[p, i + 1, 2]
        s2 = s2 + persons[p, i + 2, 2]
        s3 = s3 + persons[p, i + 3, 2]
        s4 = s4 + persons[p, i + 4, 2]
        s5 = s5 + persons[p, i + 5, 2]
        s6 = s6 + persons[p, i + 6, 2]
        s7 = s7 + persons[p, i + 7, 2]
        i += 8
    total = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
    while i < n:
        total = total + persons[p, i, 2]
        i += 1
    return total / np.float32(n)


def _prev_tag(persons, p, tags, prev):
    """Float32 mean of the tag maps at person ``p``'s detected joints into ``prev[p]``.

    Joints in index order, pixel ``(clip(int(x)), clip(int(y)))``; returns the joint count.
    """
    height = tags.shape[1]
    width = tags.shape[2]
    count = 0
    s0 = np.float32(0.0)
    s1 = np.float32(0.0)
    for j in range(persons.shape[1]):
        if persons[p, j, 2] > 0.0:
            x = int(persons[p, j, 0])
            y = int(persons[p, j, 1])
            x = min(max(x, 0), width - 1)
            y = min(max(y, 0), height - 1)
            if count == 0:
                s0 = tags[j, y, x, 0]
                s1 = tags[j, y, x, 1]
            else:
                s0 = s0 + tags[j, y, x, 0]
                s1 = s1 + tags[j, y, x, 1]
            count += 1
    if count > 0:
        prev[p, 0] = s0 / np.float32(count)
        prev[p, 1] = s1 / np.float32(count)
    return count


def _tag_distance(t0, t1, p0, p1):
    """``||(t0, t1) - (p0, p1)||`` with every operation in float32 (the refine distance)."""
    d0 = np.float32(t0 - p0)
    d1 = np.float32(t1 - p1)
    return np.float32(math.sqrt(np.float32(_mul32(d0, d0) + _mul32(d1, d1))))


def _refine_score(h, t0, t1, p0, p1):
    """``h - round(||(t0, t1) - (p0, p1)||)`` in float32 (the distance rounded in float64)."""
    return np.float32(np.float64(h) - _round_half_even(np.float64(_tag_distance(t0, t1, p0, p1))))


def _nearest(lo, hi, v):
    """The value of the range [lo, hi] nearest to ``v``: its tag distance to ``v`` is the
    smallest of the range's (float32 subtraction is monotone)."""
    if v < lo:
        return lo
    if v > hi:
        return hi
    return v


def _misses_joint(persons, p, j, has_prev):
    """True when refine looks for joint ``j`` of person ``p``: it is missing (val == 0) and the
    person has a tag (``has_prev[p]``: at least one detected joint)."""
    return persons[p, j, 2] == 0.0 and has_prev[p] != 0


def _write_refined(j, p, at, persons, heatmap):
    """Joint ``j`` of person ``p`` from the refine maximum at flat pixel ``at`` (row-major):
    pixel centre plus the quarter-pixel shift towards the higher neighbour, written only when
    the heatmap value there is > 0."""
    height = heatmap.shape[1]
    width = heatmap.shape[2]
    y = at // width
    x = at - y * width
    val = heatmap[j, y, x]
    if val > 0.0:
        fx = np.float64(x) + 0.5
        fy = np.float64(y) + 0.5
        if heatmap[j, y, min(width - 1, x + 1)] > heatmap[j, y, max(0, x - 1)]:
            fx += 0.25
        else:
            fx -= 0.25
        if heatmap[j, min(height - 1, y + 1), x] > heatmap[j, max(0, y - 1), x]:
            fy += 0.25
        else:
            fy -= 0.25
        persons[p, j, 0] = fx
        persons[p, j, 1] = fy
        persons[p, j, 2] = val


def _unknown_if_nan(v, unknown):
    return v if v == v else unknown


def _tile_bounds(j, tiles, tile):
    """Joint ``j`` of the graph's tile summary (``tiles [17, down, across, 5]``) into
    ``tile [down * across, 5]`` in row-major tile order, each NaN field made unknown (largest
    heatmap value +inf, tag bound -inf or +inf).

    Backends reduce NaN differently (a tile holding one may summarise to NaN or to the extreme
    of its other pixels); a NaN pixel scores NaN and never wins, so with unknown fields every
    bound still bounds the pixels that can."""
    k = 0
    for ty in range(tiles.shape[1]):
        for tx in range(tiles.shape[2]):
            tile[k, 0] = _unknown_if_nan(tiles[j, ty, tx, 0], np.inf)
            tile[k, 1] = _unknown_if_nan(tiles[j, ty, tx, 1], -np.inf)
            tile[k, 2] = _unknown_if_nan(tiles[j, ty, tx, 2], np.inf)
            tile[k, 3] = _unknown_if_nan(tiles[j, ty, tx, 3], -np.inf)
            tile[k, 4] = _unknown_if_nan(tiles[j, ty, tx, 4], np.inf)
            k += 1


def _cell_of(v, low, size, count):
    """Bucket of tag value ``v`` on an axis cut into ``count`` buckets of ``size`` from ``low``
    (clipped; NaN or infinite values go to bucket 0)."""
    c = (np.float64(v) - low) / size
    if not (c >= 0.0):
        return 0
    if c >= count - 1:
        return count - 1
    return int(c)


def _tag_buckets(tile, n_tiles, order, run_end, cell_start, cell_box, cell_cap, bucket_size,
                 max_cells):
    """Tiles organised by tag value: each tile goes to the bucket of its tag ranges' centre on
    a grid in tag space (``bucket_size`` tag units, at most ``max_cells`` per axis), and
    ``order`` lists the tiles bucket by bucket, each bucket's by decreasing largest heatmap
    value, tiles of equal value in row-major order.  ``run_end[i]`` is the position after the
    last tile of ``order[i]``'s bucket with the same largest value.  Per bucket ``cell_box``
    holds the union of its tiles' tag ranges and ``cell_cap`` their largest heatmap value.
    Returns the number of buckets.
    """
    low0 = np.inf
    high0 = -np.inf
    low1 = np.inf
    high1 = -np.inf
    for k in range(n_tiles):
        if tile[k, 1] <= tile[k, 2] and tile[k, 3] <= tile[k, 4]:
            low0 = min(low0, np.float64(tile[k, 1]))
            high0 = max(high0, np.float64(tile[k, 2]))
            low1 = min(low1, np.float64(tile[k, 3]))
            high1 = max(high1, np.float64(tile[k, 4]))
    n0 = 1
    n1 = 1
    size0 = bucket_size
    size1 = bucket_size
    if low0 <= high0 and low1 <= high1 and high0 - low0 < np.inf and high1 - low1 < np.inf:
        n0 = min(max_cells, int((high0 - low0) / bucket_size) + 1)
        n1 = min(max_cells, int((high1 - low1) / bucket_size) + 1)
        size0 = max(bucket_size, (high0 - low0) / n0)
        size1 = max(bucket_size, (high1 - low1) / n1)
    n_cells = n0 * n1
    by_height = np.argsort(-tile[:n_tiles, 0], kind="mergesort")
    cell = np.empty(n_tiles, np.int64)
    for c in range(n_cells + 1):
        cell_start[c] = 0
    for k in range(n_tiles):
        centre0 = (np.float64(tile[k, 1]) + np.float64(tile[k, 2])) * 0.5
        centre1 = (np.float64(tile[k, 3]) + np.float64(tile[k, 4])) * 0.5
        cell[k] = _cell_of(centre0, low0, size0, n0) * n1 + _cell_of(centre1, low1, size1, n1)
        cell_start[cell[k] + 1] += 1
    for c in range(n_cells):
        cell_start[c + 1] += cell_start[c]
        cell_box[c, 0] = np.inf
        cell_box[c, 1] = -np.inf
        cell_box[c, 2] = np.inf
        cell_box[c, 3] = -np.inf
        cell_cap[c] = -np.inf
    fill = cell_start[:n_cells].copy()
    for i in range(n_tiles):
        k = by_height[i]
        c = cell[k]
        order[fill[c]] = k
        fill[c] += 1
        cell_box[c, 0] = min(cell_box[c, 0], tile[k, 1])
        cell_box[c, 1] = max(cell_box[c, 1], tile[k, 2])
        cell_box[c, 2] = min(cell_box[c, 2], tile[k, 3])
        cell_box[c, 3] = max(cell_box[c, 3], tile[k, 4])
        cell_cap[c] = max(cell_cap[c], tile[k, 0])
    for c in range(n_cells):
        end = cell_start[c + 1]
        for i in range(end - 1, cell_start[c] - 1, -1):
            if i + 1 < end and tile[order[i + 1], 0] == tile[order[i], 0]:
                run_end[i] = run_end[i + 1]
            else:
                run_end[i] = i + 1
    return n_cells


def _bound(h, box, i, p0, p1):
    """Largest score any pixel with heatmap value <= ``h`` and tags in the ranges ``box[i]``
    (lo0, hi0, lo1, hi1) can reach: the score of ``h`` at the point of the ranges nearest to
    ``p`` (every step of the score is monotone in the distance and in ``h``)."""
    return _refine_score(h, _nearest(box[i, 0], box[i, 1], p0),
                         _nearest(box[i, 2], box[i, 3], p1), p0, p1)


def _may_win(bound, first_at, best, best_at):
    """False when nothing bounded by ``bound`` whose first pixel is ``first_at`` can replace the
    best ``(score, pixel)`` so far: the bound is below the best score, or equal to it with every
    pixel later in row-major order.  A NaN bound may always win (it bounds nothing)."""
    return not (bound < best or (bound == best and first_at > best_at))


def _wins(score, at, best, best_at):
    """True when ``(score, pixel at)`` replaces the best pair: a higher score, or an equal one at
    a pixel before ``best_at`` in row-major order (SPEC §8's first row-major maximum)."""
    return score > best or (score == best and at < best_at)


def _rank_buckets(cell_start, cell_box, cell_cap, n_cells, p0, p1, cell_bound):
    """The non-empty buckets by decreasing bound for the person tag ``(p0, p1)``: fills
    ``cell_bound[:n] = (-bound, bucket)`` and returns the visiting order (indices into it).
    A NaN bound (inf - inf) bounds nothing and is visited first."""
    n_used = 0
    for c in range(n_cells):
        if cell_start[c + 1] > cell_start[c]:
            bound = _bound(cell_cap[c], cell_box, c, p0, p1)
            if bound != bound:
                bound = np.inf
            cell_bound[n_used, 0] = -bound
            cell_bound[n_used, 1] = c
            n_used += 1
    return np.argsort(cell_bound[:n_used, 0])


def _search_tile(j, k, p0, p1, heatmap, tags, tile_rows, tile_cols, best, best_at):
    """The best ``(score, pixel)`` after scoring the pixels of tile ``k`` in row-major order,
    skipping those whose heatmap value (the bound of their score) cannot win."""
    width = heatmap.shape[2]
    band_tiles = (width + tile_cols - 1) // tile_cols
    ty = k // band_tiles
    y0 = ty * tile_rows
    x0 = (k - ty * band_tiles) * tile_cols
    for y in range(y0, min(y0 + tile_rows, heatmap.shape[1])):
        for x in range(x0, min(x0 + tile_cols, width)):
            h = heatmap[j, y, x]
            at = y * width + x
            if _may_win(h, at, best, best_at):
                score = _refine_score(h, tags[j, y, x, 0], tags[j, y, x, 1], p0, p1)
                if _wins(score, at, best, best_at):
                    best = score
                    best_at = at
    return best, best_at


def _search_person(j, p0, p1, heatmap, tags, tile, order, run_end, cell_start, cell_box,
                   cell_cap, n_cells, cell_bound, tile_rows, tile_cols):
    """Flat pixel index of the first row-major maximum of ``hm[j] - round(||tags[j] - p||)``.

    The search visits the tag buckets by decreasing bound (``_rank_buckets``) and, inside a
    bucket, tiles by decreasing largest heatmap value, so it meets the maximum early; it keeps
    the best ``(score, pixel)`` pair (``_wins``).  A bucket, tile or pixel is skipped when its
    bound cannot win (``_may_win``).  Buckets are visited by decreasing bound, so the first one
    below the best score ends the search.  Inside a bucket the bound of a tile's largest value
    at the bucket's tag box bounds that tile and every later one (their values are no larger):
    below the best score it ends the bucket; equal to it, with the tile's first pixel after the
    best pixel, it skips the tiles of the same value (they come later in row-major order), which
    keeps maps of one repeated value (a joint nobody was seen with) from being walked tile by
    tile.  Without any score above -inf the answer is pixel 0, as for a row-major scan with a
    strict comparison.
    """
    width = heatmap.shape[2]
    band_tiles = (width + tile_cols - 1) // tile_cols
    visit = _rank_buckets(cell_start, cell_box, cell_cap, n_cells, p0, p1, cell_bound)
    best = -np.inf
    best_at = heatmap.shape[1] * width
    for v in range(len(visit)):
        if -cell_bound[visit[v], 0] < best:
            break
        c = int(cell_bound[visit[v], 1])
        i = cell_start[c]
        while i < cell_start[c + 1]:
            k = order[i]
            reach = _bound(tile[k, 0], cell_box, c, p0, p1)
            if reach < best:
                break
            ty = k // band_tiles
            first_at = ty * tile_rows * width + (k - ty * band_tiles) * tile_cols
            if reach == best and first_at > best_at:
                i = run_end[i]
                continue
            if _may_win(_bound(tile[k, 0], tile[:, 1:], k, p0, p1), first_at, best, best_at):
                best, best_at = _search_tile(j, k, p0, p1, heatmap, tags, tile_rows, tile_cols,
                                             best, best_at)
            i += 1
    if best == -np.inf:
        return 0
    return best_at


def _refine_joint(j, persons, n_persons, heatmap, tags, tiles, prev, has_prev, tile_rows, tile_cols,
                  bucket_size, max_cells):
    """Refine joint ``j`` of every person that misses it (val == 0), writing ``persons``.

    Per pixel the score is ``hm - round(||tag - prev_tag||)`` in float32 and the first
    row-major maximum wins (SPEC §8).  The graph's summary of the joint's tiles
    (``_tile_bounds``) is organised by tag value (``_tag_buckets``); each person
    then searches only what can still hold its maximum (``_search_person``).  The rounded
    distance is an integer and the heatmap spans a known range (below 1 for a trained or
    rendered map), so a person's maximum lies at the smallest one or two rounded distances
    among the highest heatmap values: a few buckets and tiles, whatever the crowd.  Work
    buffers are allocated here, once per joint.
    """
    n_who = 0
    for p in range(n_persons):
        if _misses_joint(persons, p, j, has_prev):
            n_who += 1
    if n_who == 0:
        return
    n_tiles = tiles.shape[1] * tiles.shape[2]
    tile = np.empty((n_tiles, 5), np.float32)
    _tile_bounds(j, tiles, tile)
    order = np.empty(n_tiles, np.int64)
    run_end = np.empty(n_tiles, np.int64)
    cell_start = np.empty(max_cells * max_cells + 1, np.int64)
    cell_box = np.empty((max_cells * max_cells, 4), np.float32)
    cell_cap = np.empty(max_cells * max_cells, np.float32)
    cell_bound = np.empty((max_cells * max_cells, 2), np.float64)
    n_cells = _tag_buckets(tile, n_tiles, order, run_end, cell_start, cell_box, cell_cap,
                           bucket_size, max_cells)
    for p in range(n_persons):
        if _misses_joint(persons, p, j, has_prev):
            at = _search_person(j, prev[p, 0], prev[p, 1], heatmap, tags, tile, order, run_end,
                                cell_start, cell_box, cell_cap, n_cells, cell_bound,
                                tile_rows, tile_cols)
            _write_refined(j, p, at, persons, heatmap)


# ---------------------------------------------------------------------------------------------
# Host drivers (loops over the cores; compiled with njit only)
# ---------------------------------------------------------------------------------------------


def _scores_host(persons, n_persons, out):
    for p in range(n_persons):
        out[p] = _person_score(persons, p)


def _refine_host(persons, n_persons, heatmap, tags, tiles, prev, has_prev, tile_rows, tile_cols,
                 bucket_size, max_cells):
    for p in range(n_persons):
        has_prev[p] = 1 if _prev_tag(persons, p, tags, prev) > 0 else 0
    # Joints are independent (each writes only its own column of persons): parallel and still
    # deterministic.
    for j in numba.prange(persons.shape[1]):
        _refine_joint(j, persons, n_persons, heatmap, tags, tiles, prev, has_prev, tile_rows,
                      tile_cols, bucket_size, max_cells)


def _mean_tags_host(tag_list, tag_len, out):
    for p in range(tag_list.shape[0]):
        out[p, 0] = _mean_tag(tag_list, tag_len, p, 0)
        out[p, 1] = _mean_tag(tag_list, tag_len, p, 1)


# The functions each build compiles, in dependency order (a function after those it calls).
# SHARED_CORES is what the host and the device builds have in common; HOST_REFINE is the host's
# refine search and HOST_DRIVERS the host's loops over the cores (see the module docstring).
SHARED_CORES = (
    _mul32, _mul64, _round_half_even, _joint_at, _find_zero, _find_mark, _clear_covers,
    _reduce_rows, _star_first_zeros, _cover_starred_columns, _prime_zeros, _flip_path,
    _shift_by_minimum, _assign, _mean_tag, _place, _group, _person_score, _prev_tag,
    _tag_distance, _misses_joint, _write_refined,
)
HOST_REFINE = (
    _refine_score, _nearest, _unknown_if_nan, _tile_bounds, _cell_of, _tag_buckets, _bound, _may_win,
    _wins, _rank_buckets,
    _search_tile, _search_person, _refine_joint,
)
HOST_DRIVERS = (_scores_host, _mean_tags_host, _refine_host)


def core_namespace() -> dict:
    """The globals the cores read besides one another: math, NumPy, numba and the constants."""
    return {"math": math, "np": np, "numba": numba, "_TWO52": _TWO52,
            "_MUNKRES_START_MIN": _MUNKRES_START_MIN, "_PAD_COST": _PAD_COST}


def link(functions, decorate, namespace: dict) -> dict:
    """Compile ``functions`` (``{name: plain function}``, callees first) with ``decorate`` into
    ``namespace`` and return it.

    numba resolves a function's global names when it compiles it, so each function is re-bound
    to ``namespace`` (same code, those globals) and its compiled version stored there under
    ``name``: a core calling another by name then calls the compiled one, on the same target.
    A name may be given another function (the device's products), and ``namespace`` can be
    extended by further calls.
    """
    for name, fn in functions.items():
        bound = types.FunctionType(fn.__code__, namespace, name, fn.__defaults__, fn.__closure__)
        bound.__qualname__ = fn.__qualname__
        bound.__module__ = fn.__module__
        bound.__doc__ = fn.__doc__
        namespace[name] = decorate(bound)
    return namespace


def by_name(functions) -> dict:
    return {fn.__name__: fn for fn in functions}


TARGETS = ("host", "python")


@functools.cache
def cores(target: str = "host") -> types.SimpleNamespace:
    """The grouping and refine functions built for ``target``, as a namespace of callables named
    without their leading underscore (``cores().assign``, ``cores().refine_host``, ...).

    ``host``: ``numba.njit`` (cached on disk, GIL released), the refine driver with
    ``parallel=True``; numba compiles each at its first call.  ``python``: the same functions
    uncompiled (slow; what a CUDA build wraps, for tests and debugging).  The device build is
    ``runtime.cuda_grouping``'s, from ``SHARED_CORES`` with the same ``link``.
    """
    if target == "host":
        njit = numba.njit(cache=True, nogil=True)
        namespace = link(by_name(SHARED_CORES + HOST_REFINE + HOST_DRIVERS[:2]), njit,
                         core_namespace())
        link(by_name(HOST_DRIVERS[2:]), numba.njit(cache=True, nogil=True, parallel=True),
             namespace)
    elif target == "python":
        namespace = link(by_name(SHARED_CORES + HOST_REFINE + HOST_DRIVERS), lambda fn: fn,
                         core_namespace())
    else:
        raise ValueError(f"cores: target must be one of {TARGETS}, got {target!r}")
    return types.SimpleNamespace(**{fn.__name__.lstrip("_"): namespace[fn.__name__]
                                    for fn in SHARED_CORES + HOST_REFINE + HOST_DRIVERS})


# ---------------------------------------------------------------------------------------------
# Public API (allocate the work buffers, call a build of the cores)
# ---------------------------------------------------------------------------------------------


def _assign_buffers(n):
    return (np.zeros((n, n), np.int8), np.zeros(n, np.int8), np.zeros(n, np.int8),
            np.zeros((2 * n, 2), np.int64), np.zeros((n, 2), np.int64))


def _assign_with(impl, cost):
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise ValueError(f"assign: cost must be 2-D, got shape {cost.shape}")
    rows, cols = cost.shape
    if rows == 0 or cols == 0:
        return np.zeros((0, 2), np.int64)
    n = max(rows, cols)
    work = np.zeros((n, n), np.float64)
    work[:rows, :cols] = cost
    marked, row_cov, col_cov, path, pairs = _assign_buffers(n)
    n_pairs = impl.assign(work, n, rows, cols, marked, row_cov, col_cov, path, pairs)
    return pairs[:n_pairs].copy()


def assign(cost: np.ndarray) -> np.ndarray:
    """Pairs ``[(row, col), ...]`` exactly as ``munkres.Munkres().compute`` (1.1.4) returns them.

    ``cost`` is any rectangular matrix of finite numbers below 2**63 (converted to float64); it
    is padded to a square with zeros like munkres does.  Returns an int64 array
    ``[n_pairs, 2]`` in row-major order over the original ``rows x cols`` region.
    """
    return _assign_with(cores(), cost)


def _group_with(impl, candidates, detection_threshold, tag_threshold):
    cand = np.ascontiguousarray(candidates, dtype=np.float32)
    if cand.ndim != 3 or cand.shape[0] != NUM_JOINTS or cand.shape[2] != 5:
        raise ValueError(f"group: candidates must be [17, K, 5], got shape {cand.shape}")
    n_k = cand.shape[1]
    max_persons = NUM_JOINTS * n_k
    if max_persons == 0:
        return np.zeros((0, NUM_JOINTS, 5), np.float32)
    n = max(n_k, max_persons)
    persons = np.zeros((max_persons, NUM_JOINTS, 5), np.float32)
    keys = np.zeros(max_persons, np.float32)
    tag_list = np.zeros((max_persons, NUM_JOINTS, 2), np.float32)
    tag_len = np.zeros(max_persons, np.int64)
    means = np.zeros((max_persons, 2), np.float32)
    sel = np.zeros(n_k, np.int64)
    dist = np.zeros((n_k, max_persons), np.float64)
    work = np.zeros((n, n), np.float64)
    marked, row_cov, col_cov, path, pairs = _assign_buffers(n)
    n_persons = impl.group(cand, float(detection_threshold), float(tag_threshold), persons,
                           keys, tag_list, tag_len, means, sel, dist, work, marked, row_cov,
                           col_cov, path, pairs)
    return persons[:n_persons].copy()


def group(candidates: np.ndarray, detection_threshold: float = 0.1,
          tag_threshold: float = 1.0) -> np.ndarray:
    """Group per-joint candidates into persons (SPEC §7).

    ``candidates``: float32 ``[17, K, 5]``, per COCO joint the top-K peaks as
    ``(x, y, val, tag0, tag1)``; x, y are copied to the persons unchanged.  A candidate is used
    when ``val > detection_threshold``.  Returns float32 ``[P, 17, 5]`` (zeros for missing
    joints) in the order persons are created; P <= 17 * K.
    """
    return _group_with(cores(), candidates, detection_threshold, tag_threshold)


def _person_scores_with(impl, persons):
    persons = np.ascontiguousarray(persons, dtype=np.float32)
    if persons.ndim != 3 or persons.shape[2] < 3:
        raise ValueError(f"person_scores: persons must be [P, J, 5], got shape {persons.shape}")
    out = np.zeros(persons.shape[0], np.float32)
    impl.scores_host(persons, persons.shape[0], out)
    return out


def person_scores(persons: np.ndarray) -> np.ndarray:
    """Float32 ``[P]``: mean of each person's 17 joint values, as ``persons[i, :, 2].mean()``."""
    return _person_scores_with(cores(), persons)


def _mean_tags_with(impl, tags):
    tags = np.ascontiguousarray(tags, dtype=np.float32)
    if tags.ndim != 2 or tags.shape[1] != 2 or tags.shape[0] == 0:
        raise ValueError(f"mean_tags: tags must be [n, 2] with n >= 1, got shape {tags.shape}")
    tag_len = np.array([tags.shape[0]], np.int64)
    out = np.zeros((1, 2), np.float32)
    impl.mean_tags_host(tags[None], tag_len, out)
    return out[0]


def mean_tags(tags: np.ndarray) -> np.ndarray:
    """Float32 mean of ``tags [n, 2]`` computed like the grouping does (equals ``np.mean``)."""
    return _mean_tags_with(cores(), tags)


def _refine_with(impl, persons, heatmap, tags, tiles):
    if not isinstance(persons, np.ndarray) or persons.ndim != 3 or persons.shape[1:] != (
            NUM_JOINTS, 5):
        raise ValueError("refine: persons must be a [P, 17, 5] array")
    heatmap = np.ascontiguousarray(heatmap, dtype=np.float32)
    tags = np.ascontiguousarray(tags, dtype=np.float32)
    if heatmap.ndim != 3 or heatmap.shape[0] != NUM_JOINTS or 0 in heatmap.shape:
        raise ValueError(f"refine: heatmap must be [17, H, W], got shape {heatmap.shape}")
    if tags.shape != heatmap.shape + (2,):
        raise ValueError(f"refine: tags must be {heatmap.shape + (2,)}, got shape {tags.shape}")
    tiles = np.ascontiguousarray(tiles, dtype=np.float32)
    grid = (NUM_JOINTS, *tile_grid(*heatmap.shape[1:]), 5)
    if tiles.shape != grid:
        raise ValueError(f"refine: tiles must be the maps' tile summary {grid}, got shape {tiles.shape}")
    n_persons = persons.shape[0]
    if n_persons == 0:
        return
    work = np.ascontiguousarray(persons, dtype=np.float32)
    prev = np.zeros((n_persons, 2), np.float32)
    has_prev = np.zeros(n_persons, np.int8)
    impl.refine_host(work, n_persons, heatmap, tags, tiles, prev, has_prev, *TILE_SHAPE,
                     _BUCKET_SIZE, _MAX_BUCKETS)
    if work is not persons:
        persons[...] = work


def refine(persons: np.ndarray, heatmap: np.ndarray, tags: np.ndarray, tiles: np.ndarray) -> None:
    """Fill missing joints of every person from the dense maps, in place (SPEC §8).

    ``persons`` float32 ``[P, 17, 5]``, ``heatmap`` float32 ``[17, H, W]``, ``tags`` float32
    ``[17, H, W, 2]``, ``tiles`` their summary ``[17, ceil(H / 8), ceil(W / 16), 5]`` (the graph's
    ``tiles`` output; ``runtime.metadata.TILE_FIELDS``).  Only joints with ``val == 0`` can change,
    and only to a refined ``val > 0``; their tag columns stay 0.  A person without any joint
    ``val > 0`` is left as is.
    """
    _refine_with(cores(), persons, heatmap, tags, tiles)


def decode_people(candidates: np.ndarray, heatmap: np.ndarray, tags: np.ndarray, tiles: np.ndarray,
                  detection_threshold: float = 0.1,
                  tag_threshold: float = 1.0,
                  with_refine: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Group, score and refine: returns ``(persons [P, 17, 5], scores [P])``, both float32.

    The scores are taken after the quarter-pixel adjust (already in the candidates) and
    before refine (SPEC §8).  ``with_refine=False`` returns the grouped people as they are
    (``--no-refine``: the maps and tiles are then not read).
    """
    persons = group(candidates, detection_threshold, tag_threshold)
    scores = person_scores(persons)
    if with_refine:
        refine(persons, heatmap, tags, tiles)
    return persons, scores
