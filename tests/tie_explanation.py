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
   swaps only values that lie within it in the reference; a pixel added to a joint's list must lie
   within it of the neighbour that suppressed it and of the k-th value it passed, a pixel dropped
   within it of a neighbour or of a pixel added in its place; an adjust flip (x or y turned from
   ``+0.25`` to ``-0.25`` or back) is taken only where the two neighbours it compares lie within
   it. ``bound`` is the backends' own disagreement, so each flipped decision is one whose inputs
   tie in the reference to that precision; with ``bit_equal`` (the decode-only file, whose inputs
   are the reference's raw outputs) the order, NMS and adjust gaps must be zero.
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

from tests.tiles import tiles_of

FIELDS = ("x", "y", "val", "tag0", "tag1")
PEOPLE_TOL = 1e-4  # x, y, joint and person scores (the tolerance of the golden comparisons)
# Flips one image may need besides top-k orders; more would not be a few ties but a drift of the maps.
MAX_FLIPS = 8

People = tuple[np.ndarray, np.ndarray]


def summary(outputs: dict[str, np.ndarray], index: int = 0) -> np.ndarray:
    """The tile summary of one image: the backend's ``tiles`` output, or (for maps made by hand, which
    come without one) computed here from the maps."""
    if "tiles" in outputs:
        return outputs["tiles"][index]
    return tiles_of(outputs["heatmap"][index], outputs["tags"][index])


def bounding_summary(reference: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> np.ndarray:
    """A tile summary ``[1, 17, down, across, 5]`` that bounds every mix of the two sides' maps: the
    larger heatmap maximum and the wider tag range of each tile. Refine's search is exact for any
    summary that bounds the maps (a loose one only makes it search more; ``tests/test_grouping.py``),
    so the explanation's trial decodes need no new summary for each mix of the maps."""
    a, b = summary(reference), summary(other)
    out = np.maximum(a, b)
    for lower in (1, 3):
        out[..., lower] = np.minimum(a[..., lower], b[..., lower])
    return out[None]


def decode(outputs: dict[str, np.ndarray], index: int = 0) -> People:
    """The reference decode (SPEC §7-8, default thresholds) of one image of a backend's outputs."""
    from runtime.grouping import decode_people

    return decode_people(outputs["candidates"][index], outputs["heatmap"][index], outputs["tags"][index],
                         summary(outputs, index), 0.1, 1.0)


def same_people(a: People, b: People) -> bool:
    """The same people in the same order, coordinates and scores within ``PEOPLE_TOL``."""
    (pa, sa), (pb, sb) = a, b
    return (pa.shape == pb.shape and np.abs(pa[..., :3] - pb[..., :3]).max(initial=0) <= PEOPLE_TOL
            and np.abs(sa - sb).max(initial=0) <= PEOPLE_TOL)


def differing_people(a: People, b: People) -> int:
    """How many people of one side (the side with more) have no equal person (within ``PEOPLE_TOL``) on the other."""
    def rows(people: People) -> np.ndarray:
        persons, scores = people
        return np.concatenate([persons[..., :3].reshape(len(persons), -1), scores[:, None]], axis=1)

    ra, rb = rows(a), rows(b)
    if not len(ra) or not len(rb):
        return len(ra) + len(rb)
    close = np.abs(ra[:, None] - rb[None]).max(axis=2) <= PEOPLE_TOL
    return int(max((~close.any(axis=1)).sum(), (~close.any(axis=0)).sum()))


@dataclass(frozen=True)
class Flip:
    """One output scalar taken from the other backend, and the decision it feeds."""

    output: str  # "candidates", "heatmap" or "tags"
    index: tuple[int, ...]  # without the batch index
    reference: float | None  # None for a top-k order flip (a list, not one value)
    other: float | None
    decision: str
    reference_gap: float | None  # the reference's own margin at that decision, where it is named exactly

    @property
    def change(self) -> float | None:
        return None if self.reference is None else abs(self.other - self.reference)

    def describe(self) -> str:
        gap = [] if self.reference_gap is None else [f"reference gap {self.reference_gap:.1e}"]
        if self.reference is not None:
            gap.insert(0, f"{self.reference:.9g} -> {self.other:.9g}, change {self.change:.1e}")
        return f"{self.decision} ({', '.join(gap)})" if gap else self.decision


@dataclass(frozen=True)
class Explanation:
    flips: list[Flip]
    people_differing: int

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


def _neighbours(heatmap: np.ndarray, pixel: tuple[int, int], axis: int) -> tuple[float, float]:
    """The two values the quarter-pixel adjust of x (``axis`` 0) or y (1) compares (SPEC §6): the next
    and the previous pixel along that axis, clamped to the map."""
    x, y = pixel
    height, width = heatmap.shape
    if axis == 0:
        return float(heatmap[y, min(x + 1, width - 1)]), float(heatmap[y, max(x - 1, 0)])
    return float(heatmap[min(y + 1, height - 1), x]), float(heatmap[max(y - 1, 0), x])


def _reference_row(heatmap: np.ndarray, tags: np.ndarray, joint: int, pixel: tuple[int, int]) -> np.ndarray:
    """The candidate row the reference's maps give a pixel (SPEC §6): its value, tags and the
    quarter-pixel adjust towards the larger neighbour."""
    x, y = pixel
    adjusted = []
    for axis, at in enumerate(pixel):
        after, before = _neighbours(heatmap[joint], pixel, axis)
        adjusted.append(np.float32(at) + np.float32(0.25 if after > before else -0.25) + np.float32(0.5))
    return np.array([*adjusted, heatmap[joint, y, x], tags[joint, y, x, 0], tags[joint, y, x, 1]], np.float32)


def _layouts(ref: np.ndarray, oth: np.ndarray, heatmap: np.ndarray, tags: np.ndarray) -> dict[int, np.ndarray]:
    """Per joint whose candidate pixels come in another order (or set): the other's pixel order, each
    row as the reference has it, or (a pixel only the other has) as the reference's maps give it."""
    out = {}
    for joint in range(ref.shape[0]):
        if [_pixel(r) for r in ref[joint]] == [_pixel(r) for r in oth[joint]]:
            continue
        mine = {_pixel(r): r for r in ref[joint]}
        out[joint] = np.stack([mine[p] if p in mine else _reference_row(heatmap, tags, joint, p)
                               for p in (_pixel(r) for r in oth[joint])])
    return out


def _nms_gap(heatmap: np.ndarray, pixel: tuple[int, int], radius: int = 2) -> float:
    """The pixel's value minus the largest other value of its NMS window (SPEC §6, kernel 5): below 0
    it was suppressed, at or above 0 it survives; inf where a NaN leaves nothing to compare."""
    x, y = pixel
    window = heatmap[max(0, y - radius): y + radius + 1, max(0, x - radius): x + radius + 1].astype(np.float64)
    window[y - max(0, y - radius), x - max(0, x - radius)] = -np.inf
    gap = float(heatmap[y, x]) - float(window.max())
    return gap if np.isfinite(gap) or gap == np.inf else np.inf


def _order_gaps(rows: np.ndarray, layout: np.ndarray, heatmap: np.ndarray, threshold: float) -> list[tuple[float, str]]:
    """Each decision a joint's new candidate list flips, with the reference's gap there: two
    above-threshold candidates in another order (their values), a pixel added (it must have tied with
    the neighbour that suppressed it and with the k-th value it passed), a pixel dropped (tied with a
    neighbour that suppressed it, or with a pixel added in its place)."""
    value = {_pixel(r): float(r[2]) for r in rows}
    rank = {p: i for i, p in enumerate(value)}
    after = [_pixel(r) for r in layout]
    new_value = {p: float(r[2]) for p, r in zip(after, layout)}
    kth = float(rows[:, 2].min())
    added = [p for p in after if p not in value and new_value[p] > threshold]
    found = []
    for i, p in enumerate(after):
        for q in after[i + 1:]:
            if min(new_value[p], new_value[q]) <= threshold:
                continue  # grouping reads only candidates above the threshold, in order
            if p in rank and q in rank:
                if rank[q] < rank[p]:
                    found.append((abs(value[p] - value[q]), f"pixels {p} and {q} swapped"))
            elif new_value[p] < new_value[q]:
                found.append((new_value[q] - new_value[p], f"pixels {p} and {q} swapped"))
    for p in added:
        found.append((max(0.0, -_nms_gap(heatmap, p), kth - new_value[p]), f"pixel {p} added"))
    for q in value:
        if q not in new_value and value[q] > threshold:
            displaced = min((max(0.0, value[q] - new_value[p]) for p in added), default=np.inf)
            found.append((min(max(0.0, _nms_gap(heatmap, q)), displaced), f"pixel {q} dropped"))
    return found


def _order_flip(search: "_Search", joint: int, bound: float, bit_equal: bool) -> Flip | None:
    """A joint's top-k order or membership flip, named, or ``None`` where the reference does not tie
    at every decision in it (bit-equal values with ``bit_equal``)."""
    found = _order_gaps(search.cand_ref[joint], search.layouts[joint], search.reference["heatmap"][0, joint],
                        search.threshold)
    limit = 0.0 if bit_equal else bound
    if not found or any(not g <= limit for g, _ in found):  # NaN gaps are no tie either
        return None
    gap = max(g for g, _ in found)
    more = f", {len(found) - 1} more" if len(found) > 1 else ""
    return Flip("candidates", (joint,), None, None, f"joint {joint}: NMS / top-k order ({found[0][1]}{more})", gap)


def _value_decision(search: "_Search", new: np.ndarray, joint: int, pixel: tuple[int, int], field: int
                    ) -> tuple[str, float | None]:
    """Name the decision a candidate's field feeds, comparing the pixel's row before and after the flips."""
    threshold = search.threshold
    before = search.reference_row(joint, pixel)
    after = {_pixel(r): r for r in new[joint]}
    where = f"joint {joint} candidate at pixel {pixel}"
    if field == 2:
        if (before[2] > threshold) != (after[pixel][2] > threshold):
            return f"{where}: the {threshold} detection threshold", abs(float(before[2]) - threshold)
        return f"{where}: its value (assignment cost, person score)", None
    if field == 3:
        for partner, row in after.items():
            if partner == pixel or row[2] <= threshold:
                continue
            partner_before = search.reference_row(joint, partner)
            if (before[3] == partner_before[3]) != (after[pixel][3] == row[3]):
                return (f"{where}: person key (tag0) equal to that of pixel {partner} or not",
                        abs(float(before[3]) - float(partner_before[3])))
        return f"{where}: tag0 (tag distance to a person: round() or the threshold)", None
    if field == 4:
        return f"{where}: tag1 (tag distance to a person: round() or the threshold)", None
    return f"{where}: quarter-pixel adjust of {FIELDS[field]} (its two neighbours tie)", None


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
        for name in ("candidates", *self.MAPS):
            if reference[name].dtype != np.float32 or other[name].dtype != np.float32:
                raise TypeError(f"{name}: float32 outputs expected (bits are compared)")
        self.reference, self.threshold = reference, threshold
        self.cand_ref, cand_oth = reference["candidates"][0], other["candidates"][0]
        self.layouts = _layouts(self.cand_ref, cand_oth, reference["heatmap"][0], reference["tags"][0])
        self.mine = [{_pixel(r): r for r in rows} for rows in self.cand_ref]
        for joint, layout in self.layouts.items():  # pixels only the other has: the reference maps' rows
            self.mine[joint] = {**{_pixel(r): r for r in layout}, **self.mine[joint]}
        self.theirs = [{_pixel(r): r for r in rows} for rows in cand_oth]
        self.units = [_Unit("order", joint) for joint in sorted(self.layouts)]
        for joint, rows in enumerate(self.theirs):
            for pixel, theirs in rows.items():
                differ = self.mine[joint][pixel].view(np.uint32) != theirs.view(np.uint32)
                self.units += [_Unit("value", joint, (pixel, int(f))) for f in np.flatnonzero(differ)]
        self.work = {name: np.array(reference[name][:1]) for name in self.MAPS}
        self.work["tiles"] = bounding_summary(reference, other)
        self.flat_ref = {name: np.ascontiguousarray(reference[name][0]).reshape(-1) for name in self.MAPS}
        self.flat_oth = {name: np.ascontiguousarray(other[name][0]).reshape(-1) for name in self.MAPS}
        self.positions = {name: np.flatnonzero(self.flat_ref[name].view(np.uint32)
                                               != self.flat_oth[name].view(np.uint32)) for name in self.MAPS}
        self.offsets = {"heatmap": len(self.units), "tags": len(self.units) + len(self.positions["heatmap"])}
        self.size = self.offsets["tags"] + len(self.positions["tags"])

    def reference_row(self, joint: int, pixel: tuple[int, int]) -> np.ndarray:
        """The pixel's candidate row on the reference side (from its maps where it is not a candidate)."""
        return self.mine[joint][pixel]

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
                rows = [k for k, r in enumerate(cand[unit.joint]) if _pixel(r) == pixel]
                if rows:  # a pixel only the other has is in the list once its order flip is
                    cand[unit.joint, rows[0], field] = self.theirs[unit.joint][pixel][field]
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
        out["tiles"] = self.work["tiles"]
        return out


def _adjust_gap(heatmap: np.ndarray, pixel: tuple[int, int], field: int, before: float, after: float) -> float:
    """An x (field 0) or y (1) flip must be the quarter-pixel adjust turning round (``pixel + 0.5 ±
    0.25`` on both sides): then the reference's gap between the two neighbours it compares; inf otherwise."""
    if abs(after - before) != 0.5 or {before % 1, after % 1} != {0.25, 0.75}:
        return np.inf
    gap = abs(np.subtract(*_neighbours(heatmap, pixel, field)))
    return gap if np.isfinite(gap) else np.inf


def _candidate_flip(search: _Search, unit: _Unit, new_candidates: np.ndarray, bound: dict[str, float],
                    bit_equal: bool) -> Flip | None:
    """A flipped candidate unit, named, or ``None`` where the reference does not tie at it."""
    if unit.kind == "order":
        return _order_flip(search, unit.joint, bound["heatmap"], bit_equal)
    pixel, field = unit.key
    before = float(search.reference_row(unit.joint, pixel)[field])
    after = float(search.theirs[unit.joint][pixel][field])
    decision, gap = _value_decision(search, new_candidates, unit.joint, pixel, field)
    if field < 2:
        gap = _adjust_gap(search.reference["heatmap"][0, unit.joint], pixel, field, before, after)
        if not gap <= (0.0 if bit_equal else bound["heatmap"]):
            return None
    elif not abs(after - before) <= (bound["tags"] if field >= 3 else bound["heatmap"]):
        return None
    return Flip("candidates", (unit.joint, *pixel, field), before, after, decision, gap)


def explain(reference: dict[str, np.ndarray], other: dict[str, np.ndarray], bound: dict[str, float],
            max_flips: int = MAX_FLIPS, bit_equal: bool = False, threshold: float = 0.1) -> Explanation | None:
    """Explain why ``other``'s people differ from ``reference``'s (image 0 of each), or ``None``.

    ``max_flips``: the most flips besides top-k orders (each of those is one joint's list, checked
    pair by pair, so at most 17).

    ``bound`` per map ("heatmap", "tags"): the largest change a flipped scalar may show, and for a
    candidate order or adjust, the largest reference gap at the values it compares. ``bit_equal``:
    those gaps must be zero (the decode-only file, whose inputs are the reference's raw outputs)."""
    from runtime.grouping import group

    target, people_ref = decode(other), decode(reference)
    if same_people(people_ref, target):
        return None  # nothing to explain
    search = _Search(reference, other, threshold)

    def passes(subset: np.ndarray) -> bool:
        return same_people(search.decode(subset), target)

    if not search.size or not passes(np.arange(search.size)):
        return None
    subset = minimal_subset(search.size, passes)
    orders = sum(1 for item in subset if item < len(search.units) and search.units[item].kind == "order")
    if len(subset) - orders > max_flips:
        return None
    flipped = search.outputs(subset)
    # the grouped people of the flipped side (the other backend's), and the refined people of both sides
    grouped, refined = group(flipped["candidates"][0], threshold, 1.0), [people_ref[0], target[0]]
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
            flip = flip if flip.change <= bound[name] else None  # NaN changes are no tie either
        if flip is None:
            return None
        flips.append(flip)
    return Explanation(flips, differing_people(people_ref, target))
