"""Strict explanation of a difference in people between two decodes of nearly equal outputs.

Two backends give dense outputs that agree to float32 rounding (torch and ONNX Runtime: convolution
sums in another order; torch's decode and the decode-only ONNX file: Resize rounding its last bit
another way), yet the decode takes discrete decisions on those values (SPEC §12: NMS, the threshold,
top-k order, exact-equality person keys, ``round(distance)``, the assignment, refine's argmax), and
where the reference's own values tie at such a decision the two sides may decide differently.

A difference in people counts as explained only by proof, per image:

1. **Only these inputs.** Delta debugging finds a 1-minimal set of flips such that the reference's
   outputs with exactly those flips decode to the other backend's people. A flip is one joint's
   candidate list put in the other's order (and membership), the reference's values kept; or one
   field of one candidate, or one heatmap or tag value, set to the other's. Everything else stays
   the reference's: those flips, and nothing else, reproduce the difference; dropping any one of
   them does not.
2. **At a tie.** Each flip is at most ``bound`` wide: a value changes by no more than it; an order
   swaps only values, and an NMS or top-k membership change only pixels, that lie within it in the
   reference (their window neighbour or the k-th value); an adjust flip only where the two
   neighbours it compares do. ``bound`` is the backends' own disagreement, so each flipped decision
   is one whose inputs tie in the reference to that precision; with ``bit_equal`` (the decode-only
   file, whose inputs are the reference's raw outputs) the order, NMS and adjust gaps must be zero.
3. **Named.** Each flip is named by the decision it feeds: NMS / top-k order, the threshold, an
   assignment cost (a candidate's value), a person key or a tag distance (a candidate's tags), or in
   refine a person's mean tag, the argmax, its adjust, or a competing pixel (a map value).

``explain`` returns ``None`` when no such set exists, when it holds more than ``max_flips``
flips besides top-k orders, or when a flip is wider than ``bound``; the tests then fail.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

FIELDS = ("x", "y", "val", "tag0", "tag1")
PEOPLE_TOL = 1e-4  # x, y, joint and person scores (the tolerance of the golden comparisons)

People = tuple[np.ndarray, np.ndarray]


def decode(outputs: dict[str, np.ndarray], index: int = 0) -> People:
    """The reference decode (SPEC §7-8, default thresholds) of one image of a backend's outputs."""
    from runtime.grouping import decode_people

    return decode_people(outputs["candidates"][index], outputs["heatmap"][index], outputs["tags"][index], 0.1, 1.0)


def same_people(a: People, b: People) -> bool:
    """The same people in the same order, coordinates and scores within ``PEOPLE_TOL``."""
    (pa, sa), (pb, sb) = a, b
    return (pa.shape == pb.shape and np.abs(pa[..., :3] - pb[..., :3]).max(initial=0) <= PEOPLE_TOL
            and np.abs(sa - sb).max(initial=0) <= PEOPLE_TOL)


def differing_people(a: People, b: People) -> int:
    """How many people of either side have no equal person (within ``PEOPLE_TOL``) on the other."""
    def rows(people: People) -> np.ndarray:
        persons, scores = people
        return np.concatenate([persons[..., :3].reshape(len(persons), -1), scores[:, None]], axis=1)

    ra, rb = rows(a), rows(b)
    if not len(ra) or not len(rb):
        return len(ra) + len(rb)
    close = np.abs(ra[:, None] - rb[None]).max(axis=2) <= PEOPLE_TOL
    return int((~close.any(axis=1)).sum() + (~close.any(axis=0)).sum())


@dataclass(frozen=True)
class Flip:
    """One output scalar taken from the other backend, and the decision it feeds."""

    output: str  # "candidates", "heatmap" or "tags"
    index: tuple[int, ...]  # without the batch index
    reference: float
    other: float
    decision: str
    reference_gap: float | None  # the reference's own margin at that decision, where it is named exactly

    @property
    def change(self) -> float:
        return abs(self.other - self.reference)

    def describe(self) -> str:
        gap = [] if self.reference_gap is None else [f"reference gap {self.reference_gap:.1e}"]
        if not np.isnan(self.reference):
            gap.insert(0, f"{self.reference:.9g} -> {self.other:.9g}, change {self.change:.1e}")
        return f"{self.decision} ({', '.join(gap)})" if gap else self.decision


@dataclass(frozen=True)
class Explanation:
    flips: list[Flip]
    people_differing: int
    decodes: int  # decodes the search took

    def describe(self) -> str:
        count = self.people_differing
        differ = ("the same people in another order" if not count
                  else "1 person differs" if count == 1 else f"{count} people differ")
        return (f"{differ}; flipping only " + "; ".join(f.describe() for f in self.flips)
                + " on the reference side gives the other backend's people")


def minimal_subset(count: int, passes: Callable[[np.ndarray], bool]) -> np.ndarray:
    """A 1-minimal subset of ``range(count)`` on which ``passes`` holds, given that it holds on all of it.

    Delta debugging (Zeller): try each of ``n`` chunks alone, then each complement; keep the first
    that passes and start again, otherwise cut finer, until the chunks are single items."""
    items = np.arange(count)
    chunks = 2
    while len(items) >= 2:
        parts = np.array_split(items, chunks)
        for part in parts:
            if passes(part):
                items, chunks = part, 2
                break
        else:
            for i in range(len(parts)):
                rest = np.concatenate(parts[:i] + parts[i + 1:])
                if chunks > 2 and passes(rest):
                    items, chunks = rest, max(chunks - 1, 2)
                    break
            else:
                if chunks >= len(items):
                    break
                chunks = min(len(items), 2 * chunks)
    return items


def _pixel(row: np.ndarray) -> tuple[int, int]:
    return int(row[0]), int(row[1])


@dataclass(frozen=True)
class _Unit:
    """A candidate flip: ``kind`` "order" (a joint's top-k list in the other's order, the reference's
    values kept) or "value" (one field of the candidate at one pixel). Map values are flipped by
    position (``_Search.positions``)."""

    kind: str
    joint: int
    key: tuple = ()


def _layouts(ref: np.ndarray, oth: np.ndarray) -> dict[int, np.ndarray]:
    """Per joint whose candidate pixels come in another order (or set): the other's pixel order with
    the reference's rows where the reference has the pixel, the other's rows where it has not."""
    out = {}
    for joint in range(ref.shape[0]):
        if [_pixel(r) for r in ref[joint]] == [_pixel(r) for r in oth[joint]]:
            continue
        mine = {_pixel(r): r for r in ref[joint]}
        out[joint] = np.stack([mine.get(_pixel(r), r) for r in oth[joint]])
    return out


def _membership_gap(heatmap: np.ndarray, pixel: tuple[int, int], kth: float, radius: int = 2) -> float:
    """How close a pixel that one side has among its candidates and the other has not comes to a tie
    in the reference: with another pixel of its NMS window (SPEC §6, kernel 5), or with the k-th
    candidate value (top-k membership)."""
    x, y = pixel
    window = heatmap[max(0, y - radius): y + radius + 1, max(0, x - radius): x + radius + 1].astype(np.float64)
    value = float(heatmap[y, x])
    others = np.sort(window.ravel())
    others = np.delete(others, np.searchsorted(others, value))
    return min(abs(float(others[-1]) - value) if others.size else np.inf, abs(value - kth))


def _order_flip(ref: np.ndarray, heatmap: np.ndarray, layout: np.ndarray, joint: int, threshold: float,
                bound: float, bit_equal: bool) -> Flip | None:
    """Name a top-k order or membership flip and check that the reference ties at every decision in it:
    two pixels it swaps have (bit-)equal values, a pixel it adds or drops ties in its NMS window or
    with the k-th value."""
    rows = ref[joint]
    value = {_pixel(r): float(r[2]) for r in rows}
    rank = {p: i for i, p in enumerate(value)}
    after = [_pixel(r) for r in layout]
    kth = float(rows[:, 2].min())
    gaps, named = [], []
    for i, p in enumerate(after):
        if p not in value:
            if layout[i, 2] > threshold:
                gaps.append(_membership_gap(heatmap[joint], p, kth))
                named.append(f"pixel {p} added")
            continue
        for q in after[i + 1:]:
            if q in rank and rank[q] < rank[p] and (value[p] > threshold or value[q] > threshold):
                gaps.append(abs(value[p] - value[q]))
                named.append(f"pixels {p} and {q} swapped")
    for p in value:
        if p not in after and value[p] > threshold:
            gaps.append(_membership_gap(heatmap[joint], p, kth))
            named.append(f"pixel {p} dropped")
    if not gaps or max(gaps) > (0.0 if bit_equal else bound):
        return None
    more = f", {len(named) - 1} more" if len(named) > 1 else ""
    return Flip("candidates", (joint,), float("nan"), float("nan"),
                f"joint {joint}: NMS / top-k order ({named[0]}{more})", max(gaps))


def _value_decision(ref: np.ndarray, new: np.ndarray, joint: int, pixel: tuple[int, int], field: int,
                    threshold: float) -> tuple[str, float | None]:
    """Name the decision a candidate's field feeds, from the reference's candidates of that joint."""
    rows, changed = ref[joint], new[joint]
    k = [_pixel(r) for r in changed].index(pixel)
    where = f"joint {joint} candidate at pixel {pixel}"
    if field == 2:
        if (rows[k, 2] > threshold) != (changed[k, 2] > threshold):
            return f"{where}: the {threshold} detection threshold", abs(float(rows[k, 2]) - threshold)
        return f"{where}: its value (assignment cost, person score)", None
    if field == 3:
        for m in range(len(changed)):
            equal_before, equal_after = rows[k, 3] == changed[m, 3], changed[k, 3] == changed[m, 3]
            if m != k and changed[m, 2] > threshold and equal_before != equal_after:
                keys = {_pixel(r): float(r[3]) for r in rows}
                partner = keys.get(_pixel(changed[m]), float(changed[m, 3]))
                return (f"{where}: person key (tag0) equal to that of pixel {_pixel(changed[m])} or not",
                        abs(keys[pixel] - partner))
        return f"{where}: tag0 (tag distance to a person: round() or the threshold)", None
    if field == 4:
        return f"{where}: tag1 (tag distance to a person: round() or the threshold)", None
    return f"{where}: quarter-pixel adjust of {FIELDS[field]} (its two neighbours tie)", None


def _grouped_and_refined(reference: dict[str, np.ndarray], flipped: dict[str, np.ndarray],
                         threshold: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """The grouped people (the flips leave them as the other backend's) and the refined people of
    both sides."""
    from runtime.grouping import group

    grouped = group(flipped["candidates"][0], threshold, 1.0)
    return grouped, [decode(reference)[0], decode(flipped)[0]]


def _map_role(index: tuple[int, ...], grouped: np.ndarray, refined: list[np.ndarray]) -> str:
    """What refine reads at a map pixel (SPEC §8): a person's tag at one of its grouped joints (their
    mean is the tag refine compares with), the pixel refine chose for a missing joint on either side,
    a neighbour of it (the quarter-pixel adjust reads the heatmap there), or another pixel it scored."""
    joint, y, x = index[:3]
    people = [p for p in range(len(grouped)) if grouped[p, joint, 2] > 0
              and (int(grouped[p, joint, 0]), int(grouped[p, joint, 1])) == (x, y)]
    if len(index) == 4 and people:
        return f"the tag of person {people[0]}'s grouped joint (its mean tag)"
    for side, persons in zip(("reference", "other"), refined):
        for p in range(min(len(persons), len(grouped))):
            if grouped[p, joint, 2] > 0 or persons[p, joint, 2] <= 0:
                continue
            px, py = int(persons[p, joint, 0]), int(persons[p, joint, 1])
            if (px, py) == (x, y):
                return f"the argmax refine chose for person {p} on the {side} side"
            if len(index) == 3 and abs(px - x) + abs(py - y) == 1:
                return f"a neighbour of the argmax refine chose for person {p} on the {side} side (its adjust)"
    return "a pixel refine scored (heatmap - round(distance)) against the argmax"


class _Search:
    """The flippable units of one image (a joint's candidate order, a candidate field, a map scalar)
    and the reference's outputs with any subset of them taken from the other backend."""

    MAPS = ("heatmap", "tags")

    def __init__(self, reference: dict[str, np.ndarray], other: dict[str, np.ndarray], threshold: float) -> None:
        self.reference, self.threshold = reference, threshold
        self.cand_ref, cand_oth = reference["candidates"][0], other["candidates"][0]
        self.layouts = _layouts(self.cand_ref, cand_oth)
        self.theirs = [{_pixel(r): r for r in rows} for rows in cand_oth]
        self.units = [_Unit("order", joint) for joint in sorted(self.layouts)]
        for joint, rows in enumerate(self.cand_ref):
            for mine in rows:
                theirs = self.theirs[joint].get(_pixel(mine))
                if theirs is not None:
                    differ = mine.view(np.uint32) != theirs.view(np.uint32)
                    self.units += [_Unit("value", joint, (_pixel(mine), int(f))) for f in np.flatnonzero(differ)]
        self.work = {name: np.array(reference[name][:1]) for name in self.MAPS}
        self.flat_ref = {name: np.ascontiguousarray(reference[name][0]).reshape(-1) for name in self.MAPS}
        self.flat_oth = {name: np.ascontiguousarray(other[name][0]).reshape(-1) for name in self.MAPS}
        self.positions = {name: np.flatnonzero(self.flat_ref[name].view(np.uint32)
                                               != self.flat_oth[name].view(np.uint32)) for name in self.MAPS}
        self.offsets = {"heatmap": len(self.units), "tags": len(self.units) + len(self.positions["heatmap"])}
        self.size = self.offsets["tags"] + len(self.positions["tags"])

    def locate(self, item: int) -> tuple[str, int]:
        """``("candidates", unit index)`` or ``(map name, flat position)``."""
        if item < len(self.units):
            return "candidates", item
        name = "tags" if item >= self.offsets["tags"] else "heatmap"
        return name, int(self.positions[name][item - self.offsets[name]])

    def candidates(self, subset: np.ndarray) -> np.ndarray:
        chosen = [self.units[i] for i in subset[subset < len(self.units)]]
        cand = self.cand_ref.copy()
        for unit in chosen:
            if unit.kind == "order":
                cand[unit.joint] = self.layouts[unit.joint]
        for unit in chosen:
            if unit.kind == "value":
                pixel, field = unit.key
                k = next(k for k, r in enumerate(cand[unit.joint]) if _pixel(r) == pixel)
                cand[unit.joint, k, field] = self.theirs[unit.joint][pixel][field]
        return cand[None]

    def picked(self, subset: np.ndarray, name: str) -> np.ndarray:
        """The flat positions of map ``name`` that ``subset`` flips."""
        start = self.offsets[name]
        return self.positions[name][subset[(subset >= start) & (subset < start + len(self.positions[name]))] - start]

    def decode(self, subset: np.ndarray) -> People:
        """Decode the reference with ``subset`` flipped; the map scalars are written into one working
        copy and put back after (copying ~100 MB of maps per trial would dominate the search)."""
        picked = {name: self.picked(subset, name) for name in self.MAPS}
        for name in self.MAPS:
            self.work[name].reshape(-1)[picked[name]] = self.flat_oth[name][picked[name]]
        try:
            return decode({"candidates": self.candidates(subset), **self.work})
        finally:
            for name in self.MAPS:
                self.work[name].reshape(-1)[picked[name]] = self.flat_ref[name][picked[name]]

    def outputs(self, subset: np.ndarray) -> dict[str, np.ndarray]:
        out = {"candidates": self.candidates(subset)}
        for name in self.MAPS:
            picked = self.picked(subset, name)
            array = self.flat_ref[name].copy()
            array[picked] = self.flat_oth[name][picked]
            out[name] = array.reshape(self.reference[name].shape[1:])[None]
        return out


def _candidate_flip(search: _Search, unit: _Unit, new_candidates: np.ndarray, bound: dict[str, float],
                    bit_equal: bool) -> Flip | None:
    """A flipped candidate unit, named, or ``None`` where the reference does not tie at it."""
    heatmap = search.reference["heatmap"][0, unit.joint]
    if unit.kind == "order":
        return _order_flip(search.cand_ref, search.reference["heatmap"][0], search.layouts[unit.joint], unit.joint,
                           search.threshold, bound["heatmap"], bit_equal)
    pixel, field = unit.key
    mine = next(r for r in search.cand_ref[unit.joint] if _pixel(r) == pixel)
    decision, gap = _value_decision(search.cand_ref, new_candidates, unit.joint, pixel, field, search.threshold)
    if field < 2:  # an adjust flip moves x or y by 0.5: the two neighbours it compares must tie
        x, y = pixel
        height, width = heatmap.shape
        pair = ((heatmap[y, min(x + 1, width - 1)], heatmap[y, max(x - 1, 0)]) if field == 0
                else (heatmap[min(y + 1, height - 1), x], heatmap[max(y - 1, 0), x]))
        gap = abs(float(pair[0]) - float(pair[1]))
        if gap > (0.0 if bit_equal else bound["heatmap"]):
            return None
    flip = Flip("candidates", (unit.joint, *pixel, field), float(mine[field]),
                float(search.theirs[unit.joint][pixel][field]), decision, gap)
    if field >= 2 and flip.change > (bound["tags"] if field >= 3 else bound["heatmap"]):
        return None
    return flip


def explain(reference: dict[str, np.ndarray], other: dict[str, np.ndarray], bound: dict[str, float],
            max_flips: int, bit_equal: bool = False, threshold: float = 0.1) -> Explanation | None:
    """Explain why ``other``'s people differ from ``reference``'s (image 0 of each), or ``None``.

    ``max_flips``: the most flips besides top-k orders (each of those is one joint's list, checked
    pair by pair, so at most 17).

    ``bound`` per map ("heatmap", "tags"): the largest change a flipped scalar may show, and for a
    candidate order or adjust, the largest reference gap at the values it compares. ``bit_equal``:
    those gaps must be zero (the decode-only file, whose inputs are the reference's raw outputs)."""
    target = decode(other)
    search = _Search(reference, other, threshold)
    decodes = 0

    def passes(subset: np.ndarray) -> bool:
        nonlocal decodes
        decodes += 1
        return same_people(search.decode(subset), target)

    if not search.size or not passes(np.arange(search.size)):
        return None
    subset = minimal_subset(search.size, passes)
    orders = sum(1 for item in subset if item < len(search.units) and search.units[item].kind == "order")
    if not passes(subset) or len(subset) - orders > max_flips:
        return None
    flipped = search.outputs(subset)
    grouped, refined = _grouped_and_refined(reference, flipped, threshold)
    flips = []
    for item in subset:
        name, where = search.locate(int(item))
        if name == "candidates":
            flip = _candidate_flip(search, search.units[where], flipped["candidates"][0], bound, bit_equal)
        else:
            index = tuple(int(i) for i in np.unravel_index(where, reference[name].shape[1:]))
            what = "heatmap" if name == "heatmap" else f"tag{index[3]}"
            flip = Flip(name, index, float(search.flat_ref[name][where]), float(search.flat_oth[name][where]),
                        f"refine of joint {index[0]}: {what} at pixel ({index[2]}, {index[1]}), "
                        + _map_role(index, grouped, refined), None)
            flip = flip if flip.change <= bound[name] else None
        if flip is None:
            return None
        flips.append(flip)
    return Explanation(flips, differing_people(decode(reference), target), decodes)
