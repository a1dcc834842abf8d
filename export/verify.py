"""How close one backend's outputs are to the reference's: the checks behind every export and precision.

Two kinds of comparison, one per question:

* ``compare_outputs`` — the same precision on another backend (ONNX Runtime vs PyTorch, FP32): dense
  errors relative to each output's magnitude, and candidate sets that must be identical except where
  the reference's own heatmap ties at the decision (threshold, NMS window, top-k boundary, adjust).
* ``compare_precision`` — a lower precision (FP16, INT8) against FP32: SQNR per output and the
  agreement of the candidate sets, with no tie analysis, because rounding noise of that size moves
  every near-tie.

``export.onnx``, ``calib``, ``benchmarks`` and the tests all use these functions, so a tolerance or a
tie rule is defined here once.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.metadata import OUTPUT_NAMES, ModelMetadata

# ONNX Runtime (MLAS) vs torch (oneDNN), float32, same weights: BatchNorm folded into the convolution
# weights by the exporter, convolution sums of up to 3·3·256 products accumulated in another order,
# through ~100 layers. Measured with synthetic:0 weights (w32, 512) on 40 mini-COCO images: heatmap
# max |Δ| 2.7e-7 = 1.4e-6 of its peak, tags 1.7e-6 = 1.5e-6 of their peak — the same size as torch
# against itself at 1 vs 2 threads (1.6e-7 .. 1.9e-7 on the heatmap). REL_TOLERANCE leaves ~7x headroom.
REL_TOLERANCE = 1e-5
# Discrete decisions (the 0.1 threshold, NMS equality, top-k membership, the ±0.25 adjust
# comparisons) flip when the values they compare are closer than that noise. A candidate that one
# backend has and the other has not is accepted only if the reference heatmap shows such a tie: two
# values within TIE_BAND · max|heatmap| of each other (SPEC §12).
TIE_BAND = 1e-5
DETECTION_THRESHOLD = 0.1
# Lowest per-output SQNR an FP16 file may show against the FP32 reference. One FP16 rounding (11-bit
# significand, relative error RMS 2^-11/sqrt(3)) has an SQNR of ~71 dB; ~100 layers that each round
# their output add their noise powers (at most ~20 dB lost). Measured with synthetic:0 weights on 20
# mini-set images in ONNX Runtime (CPU): 67.9-68.7 dB (benchmarks/precision.py; torch's own eager FP16
# on the CPU, which rounds every intermediate, ~59 dB). Below 40 dB (noise RMS 1% of the signal RMS)
# it is not rounding but a defect: an overflow to inf, a missing cast, a layer computing the wrong thing.
FP16_SQNR_FLOOR_DB = 40.0



@dataclass(frozen=True)
class OutputError:
    name: str
    max_abs: float
    max_rel: float  # max |other - reference| / max |reference|: the error relative to the output's magnitude


@dataclass(frozen=True)
class Comparison:
    """One backend against the reference on one input: per-output errors and candidate-set agreement."""

    errors: list[OutputError]
    candidate_mismatches: list[str]  # differences no float-noise tie explains: each one fails the check
    candidate_ties: list[str]  # differences explained by a tie in the reference heatmap (reported only)

    def ok(self, rel_tolerance: float = REL_TOLERANCE) -> bool:
        return not self.candidate_mismatches and all(e.max_rel <= rel_tolerance for e in self.errors)

    def lines(self) -> list[str]:
        out = [f"  {e.name:<10} max abs {e.max_abs:.3e}  max rel {e.max_rel:.3e}" for e in self.errors]
        if not self.candidate_mismatches and not self.candidate_ties:
            out.append("  candidates above threshold: identical sets for every joint")
        else:
            out.append(f"  candidates above threshold: {len(self.candidate_mismatches)} unexplained differences, "
                       f"{len(self.candidate_ties)} at float-noise ties")
        out.extend(f"    {line}" for line in (self.candidate_mismatches + self.candidate_ties)[:6])
        return out


def candidate_set(candidates: np.ndarray, threshold: float = DETECTION_THRESHOLD) -> dict[tuple[int, int], np.ndarray]:
    """One joint's candidates with ``val > threshold``, keyed by their pixel ``(int(x), int(y))``.

    The adjusted ``x, y`` are ``pixel + 0.5 ± 0.25``, so ``int`` recovers the pixel whatever the adjust did.
    """
    rows = candidates[candidates[:, 2] > threshold]
    return {(int(r[0]), int(r[1])): r for r in rows}


def _window_tie(heatmap: np.ndarray, x: int, y: int, band: float, radius: int) -> bool:
    """Is the NMS decision at ``(x, y)`` a tie: another pixel of its window within ``band`` of it?"""
    height, width = heatmap.shape
    window = heatmap[max(0, y - radius): y + radius + 1, max(0, x - radius): x + radius + 1].astype(np.float64)
    centre = float(heatmap[y, x])
    others = np.sort(window.ravel())
    # Drop one copy of the centre value; what remains are the neighbours.
    others = np.delete(others, np.searchsorted(others, centre))
    return others.size > 0 and abs(float(others[-1]) - centre) <= band


def _peak_values(heatmap: np.ndarray, radius: int) -> np.ndarray:
    """Values of the pixels that equal the maximum of their NMS window (the peaks top-k ranks)."""
    padded = np.pad(heatmap, radius, constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (2 * radius + 1, 2 * radius + 1))
    return heatmap[heatmap == windows.max(axis=(2, 3))].astype(np.float64)


def compare_candidates(reference: dict[str, np.ndarray], other: dict[str, np.ndarray],
                       rel_tolerance: float = REL_TOLERANCE, tie_band: float = TIE_BAND,
                       threshold: float = DETECTION_THRESHOLD, nms_kernel: int = 5) -> tuple[list[str], list[str]]:
    """Compare the candidate sets of every image and joint: ``(unexplained differences, tie differences)``.

    Order among equal values is implementation-defined (SPEC §6), so sets of pixels are compared.
    A pixel found by one side only must sit at a tie of the reference heatmap (its value within the
    band of 0.1, of a neighbour in its NMS window, or of the k-th value), or, when a full top-k lost
    (gained) d pixels at such ties, be one of the d reference peaks ranked next below (d lowest values
    of) the reference's top-k, the places those ties freed (took); a shared pixel must have val and
    tags within tolerance, and adjusted x, y equal unless its two neighbours tie.
    """
    mismatches, ties = [], []
    heatmaps = reference["heatmap"]
    band = tie_band * max(float(np.abs(heatmaps).max()), 1e-12)
    val_tol = rel_tolerance * max(float(np.abs(heatmaps).max()), 1e-12)
    tag_tol = rel_tolerance * max(float(np.abs(reference["tags"]).max()), 1e-12)
    radius = (nms_kernel - 1) // 2
    want_all, got_all = reference["candidates"], other["candidates"]
    for image in range(want_all.shape[0]):
        for joint in range(want_all.shape[1]):
            heatmap = heatmaps[image, joint]
            height, width = heatmap.shape
            kth = float(want_all[image, joint, :, 2].min())
            want, got = candidate_set(want_all[image, joint], threshold), candidate_set(got_all[image, joint], threshold)
            where = f"image {image} joint {joint}"
            unexplained = {"reference only": [], "other only": []}
            left = {"reference only": 0, "other only": 0}  # pixels one side lost (or gained) at a tie
            for pixel in sorted(set(want) ^ set(got)):
                x, y = pixel
                value = float(heatmap[y, x])
                side = "reference only" if pixel in want else "other only"
                if abs(value - threshold) <= band:
                    ties.append(f"{where} {pixel} {side}: value {value:.7f} at the {threshold} threshold")
                elif _window_tie(heatmap, x, y, band, radius):
                    ties.append(f"{where} {pixel} {side}: NMS tie with a neighbour")
                elif abs(value - kth) <= band:
                    ties.append(f"{where} {pixel} {side}: value {value:.7f} at the top-k boundary {kth:.7f}")
                else:
                    unexplained[side].append((pixel, value))
                    continue
                left[side] += 1
            # A full top-k that loses d pixels at ties takes the next d peaks instead (and one that gains
            # d drops its d lowest): such a pixel is explained only by its rank in the reference's order.
            full = int((want_all[image, joint, :, 2] > threshold).sum()) == want_all.shape[2]
            lost, gained = left["reference only"], left["other only"]
            peaks = _peak_values(heatmap, radius) if full and lost and unexplained["other only"] else None
            for pixel, value in unexplained["other only"]:
                if peaks is not None and int(((peaks > value) & (peaks < kth - band)).sum()) < lost:
                    ties.append(f"{where} {pixel} other only: value {value:.7f}, a peak next below the "
                                f"reference's top-k, taking a place left at a tie")
                else:
                    mismatches.append(f"{where} {pixel} other only: value {value:.7f}, no tie explains it")
            for pixel, value in unexplained["reference only"]:
                if full and sum(float(v[2]) < value for v in want.values()) < gained:
                    ties.append(f"{where} {pixel} reference only: value {value:.7f}, among the reference's "
                                f"lowest top-k values, pushed out by a pixel gained at a tie")
                else:
                    mismatches.append(f"{where} {pixel} reference only: value {value:.7f}, no tie explains it")
            for pixel in sorted(set(want) & set(got)):
                a, b = want[pixel], got[pixel]
                x, y = pixel
                if abs(float(a[2]) - float(b[2])) > val_tol or np.abs(a[3:5] - b[3:5]).max() > tag_tol:
                    mismatches.append(f"{where} {pixel}: val/tags {a[2:].tolist()} vs {b[2:].tolist()}")
                for axis, (lo, hi) in ((0, ((y, max(0, x - 1)), (y, min(width - 1, x + 1)))),
                                       (1, ((max(0, y - 1), x), (min(height - 1, y + 1), x)))):
                    if a[axis] != b[axis]:
                        gap = abs(float(heatmap[hi]) - float(heatmap[lo]))
                        (ties if gap <= band else mismatches).append(
                            f"{where} {pixel}: adjusted {'xy'[axis]} {a[axis]} vs {b[axis]}, neighbours differ by {gap:.2e}")
    return mismatches, ties


def compare_outputs(reference: dict[str, np.ndarray], other: dict[str, np.ndarray],
                    rel_tolerance: float = REL_TOLERANCE, tie_band: float = TIE_BAND) -> Comparison:
    """Dense errors of every output and the candidate-set check (candidates' errors over shared pixels)."""
    errors = []
    for name in OUTPUT_NAMES:
        want, got = reference[name], other[name]
        if want.shape != got.shape:
            raise AssertionError(f"{name}: shape {list(got.shape)}, the reference has {list(want.shape)}")
        if name == "candidates":
            diff = 0.0
            for w, g in zip(want.reshape(-1, *want.shape[-2:]), got.reshape(-1, *got.shape[-2:])):
                ws, gs = candidate_set(w), candidate_set(g)
                for pixel in set(ws) & set(gs):
                    diff = max(diff, float(np.abs(ws[pixel][2:] - gs[pixel][2:]).max()))
            magnitude = float(np.abs(want[..., 2:]).max())
        else:
            diff = float(np.abs(want.astype(np.float64) - got).max())
            magnitude = float(np.abs(want).max())
        errors.append(OutputError(name, diff, diff / max(magnitude, 1e-12)))
    mismatches, ties = compare_candidates(reference, other, rel_tolerance, tie_band)
    return Comparison(errors, mismatches, ties)


def sqnr_db(reference: np.ndarray, other: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio ``10 log10(Σ ref² / Σ (ref - other)²)`` in dB (float64 sums).

    ``inf`` when equal; ``-inf`` when ``other`` holds NaN or inf (a defect, whatever the tolerance).
    """
    ref = np.asarray(reference, dtype=np.float64)
    got = np.asarray(other, dtype=np.float64)
    if not np.isfinite(got).all():
        return float("-inf")
    noise = float(np.square(ref - got).sum())
    signal = float(np.square(ref).sum())
    if noise == 0.0:
        return float("inf")
    return 10.0 * float(np.log10(max(signal, 1e-300) / noise))


@dataclass(frozen=True)
class CandidateAgreement:
    """Above-threshold candidate pixels of every image and joint, reference vs other."""

    shared: int  # pixels both have
    reference_only: int
    other_only: int

    @property
    def jaccard(self) -> float:
        """|shared| / |union| over all images and joints (1.0 when neither side has a candidate)."""
        union = self.shared + self.reference_only + self.other_only
        return 1.0 if union == 0 else self.shared / union

    def __add__(self, other: CandidateAgreement) -> CandidateAgreement:
        return CandidateAgreement(self.shared + other.shared, self.reference_only + other.reference_only,
                                  self.other_only + other.other_only)


def candidate_agreement(reference: np.ndarray, other: np.ndarray,
                        threshold: float = DETECTION_THRESHOLD) -> CandidateAgreement:
    """Count shared and one-sided candidate pixels of two ``candidates [N, 17, k, 5]`` outputs."""
    shared = only_ref = only_other = 0
    for want, got in zip(reference.reshape(-1, *reference.shape[-2:]), other.reshape(-1, *other.shape[-2:])):
        a, b = set(candidate_set(want, threshold)), set(candidate_set(got, threshold))
        shared += len(a & b)
        only_ref += len(a - b)
        only_other += len(b - a)
    return CandidateAgreement(shared, only_ref, only_other)


@dataclass(frozen=True)
class PrecisionComparison:
    """A lower-precision file against the FP32 reference on one input: SQNR per output, candidate agreement."""

    sqnr: dict[str, float]  # heatmap, tags, and candidates (val and tags of the shared pixels)
    max_rel: dict[str, float]  # max |other - reference| / max |reference| of the dense outputs
    agreement: CandidateAgreement

    def ok(self, floor_db: float) -> bool:
        return all(value >= floor_db for value in self.sqnr.values())

    def lines(self) -> list[str]:
        out = [f"  {name:<10} SQNR {value:6.1f} dB" + (f"  max rel {self.max_rel[name]:.2e}" if name in self.max_rel else
                                                       "  (val, tags of shared candidate pixels)")
               for name, value in self.sqnr.items()]
        a = self.agreement
        out.append(f"  candidates above threshold: {a.jaccard:.1%} agree ({a.shared} shared, {a.reference_only} "
                   f"reference only, {a.other_only} other only; discrete steps flip at near-ties, reported only)")
        return out


def compare_precision(reference: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> PrecisionComparison:
    """SQNR of each output and candidate-set agreement (no tie analysis: lower precision moves every tie)."""
    sqnr, max_rel = {}, {}
    for name in ("heatmap", "tags"):
        want, got = reference[name], other[name]
        if want.shape != got.shape:
            raise AssertionError(f"{name}: shape {list(got.shape)}, the reference has {list(want.shape)}")
        sqnr[name] = sqnr_db(want, got)
        diff = np.abs(want.astype(np.float64) - got).max() if np.isfinite(got).all() else np.inf
        max_rel[name] = float(diff) / max(float(np.abs(want).max()), 1e-12)
    pairs = []
    want_all, got_all = reference["candidates"], other["candidates"]
    for want, got in zip(want_all.reshape(-1, *want_all.shape[-2:]), got_all.reshape(-1, *got_all.shape[-2:])):
        a, b = candidate_set(want), candidate_set(got)
        pairs.extend((a[p][2:], b[p][2:]) for p in set(a) & set(b))
    if pairs:
        sqnr["candidates"] = sqnr_db(np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]))
    return PrecisionComparison(sqnr, max_rel, candidate_agreement(want_all, got_all))


def prepared_feed(metadata: ModelMetadata, image_path: Path) -> dict[str, np.ndarray]:
    """The batch-1 inputs of one image file, as the pipeline makes them."""
    from runtime.preprocess import prepare, read_image

    prepared = prepare(read_image(image_path), metadata.input_size, metadata.decode)
    return {name: array[None] for name, array in zip(metadata.input_names, prepared.inputs)}


def torch_outputs(built, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The reference: the FP32 torch DecodeGraph on ``feed``."""
    import torch

    with torch.inference_mode():
        outputs = built.reference(*[torch.from_numpy(feed[name]) for name in built.metadata.input_names])
    return {name: value.numpy() for name, value in zip(OUTPUT_NAMES, outputs)}


def onnxruntime_outputs(path: Path, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from runtime.backends.onnx_backend import OnnxBackend

    with OnnxBackend(path) as backend:
        return backend.run(feed)
