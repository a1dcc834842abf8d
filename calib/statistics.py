"""Activation statistics streamed image by image, and the clipping threshold each method takes from them.

Calibration measures ~740 tensors of the network; for one 512×832 image with the flipped pass they
hold about 1e9 float32 values (4 GB). Nothing here keeps them: each tensor, as it is produced,
updates its running maximum of |x| and a histogram of |x|, and is dropped.

The histogram of a tensor has ``bins`` equal bins over ``[0, 2**exponent)``, where ``2**exponent`` is
the smallest power of two above every |x| seen so far. A value's bin is ``floor(|x| * bins / 2**exponent)``:
a product by a power of two, exact in float32, so the bin is exact. When a later image brings a larger
value, the exponent grows by ``s`` and bin ``i`` of the old histogram lies entirely in bin ``i >> s`` of the
new one; summing groups of ``2**s`` old bins is exact. So the histogram after N images equals the
histogram of all N images' values taken at once with the final range, whatever the order of the
images — which the tests check against ``np.bincount`` over the concatenated values. Half of the bins
or more cover observed values (the maximum lies in the upper half of the range).

From ``(amax, histogram)`` every method's threshold ``t`` on |x| (the quantized range is ``[-t, t]``, or
``[0, t]`` for the tensors around a folded ReLU, calib.quantize):

* ``minmax``: ``amax``;
* ``percentile``: the upper edge of the first bin at which at least ``percentile`` % of all values have
  been counted, capped at ``amax``;
* ``entropy``: the threshold whose 8-bit quantization keeps the histogram's distribution closest in
  Kullback-Leibler divergence (the search TensorRT's entropy calibrator is known for, written here
  from its description): for each candidate ``i`` bins, the reference distribution is the first ``i``
  bins with every value beyond folded into bin ``i - 1`` (saturation); the 8-bit distribution takes
  the first ``i`` bins as they are, cut into ``levels`` groups (group ``g``: bins ``g*i//levels`` up to
  ``(g+1)*i//levels``), and spreads each group's count
  evenly over its non-empty bins (so clipping costs divergence in the last bin). Both are normalized;
  the ``i`` with the smallest divergence wins and ``t = i`` bin widths, capped at ``amax``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numba
import numpy as np

from runtime.errors import UserError
from runtime.files import write_with

DEFAULT_BINS = 2048
FORMAT = 1  # what a saved statistics file holds; bump when its meaning changes


@numba.njit(cache=True, nogil=True)
def _abs_max(values: np.ndarray) -> float:
    """max |x| of a flat float32 array; NaN as soon as a value is NaN (a broken model or image)."""
    peak = np.float32(0.0)
    for value in values:
        magnitude = abs(value)
        if not magnitude <= peak:  # larger, or NaN
            if magnitude != magnitude:
                return magnitude
            peak = magnitude
    return peak


@numba.njit(cache=True, nogil=True)
def _count_bins(values: np.ndarray, scale: np.float32, counts: np.ndarray) -> None:
    """``counts[floor(|x| * scale)] += 1`` for every value; ``scale`` is a power of two in float32.

    Four partial histograms take turns, so that runs of equal bins (the zeros after a ReLU) do not
    wait on one counter."""
    lanes = np.zeros((4, counts.size), np.int64)
    whole = values.size - values.size % 4
    for i in range(0, whole, 4):
        lanes[0, np.int64(abs(values[i]) * scale)] += 1
        lanes[1, np.int64(abs(values[i + 1]) * scale)] += 1
        lanes[2, np.int64(abs(values[i + 2]) * scale)] += 1
        lanes[3, np.int64(abs(values[i + 3]) * scale)] += 1
    for i in range(whole, values.size):
        lanes[0, np.int64(abs(values[i]) * scale)] += 1
    for b in range(counts.size):
        counts[b] += lanes[0, b] + lanes[1, b] + lanes[2, b] + lanes[3, b]


@numba.njit(cache=True, nogil=True)
def _divergence_search(counts: np.ndarray, levels: int) -> int:
    """The number of bins ``i`` (``levels <= i <= used``) whose 8-bit version diverges least from the data."""
    used = counts.size
    while used > 0 and counts[used - 1] == 0:
        used -= 1
    if used <= levels:
        return used
    total = counts.sum()
    best, best_i = np.inf, used
    candidate = np.empty(used, np.float64)
    inside = 0.0
    for b in range(levels - 1):
        inside += counts[b]
    for i in range(levels, used + 1):
        inside += counts[i - 1]  # values in the first i bins; the rest saturate into bin i - 1 of the reference
        for g in range(levels):
            start, stop = (g * i) // levels, ((g + 1) * i) // levels
            mass, filled = 0.0, 0
            for b in range(start, stop):
                mass += counts[b]
                filled += counts[b] > 0
            share = mass / filled if filled else 0.0
            for b in range(start, stop):
                candidate[b] = share if counts[b] > 0 else 0.0
        divergence = 0.0
        for b in range(i):
            p = counts[b] + (total - inside if b == i - 1 else 0.0)
            if p > 0:
                if candidate[b] == 0.0:  # the reference has values where the 8-bit version has none
                    divergence = np.inf
                    break
                divergence += (p / total) * np.log((p / total) / (candidate[b] / inside))
        if divergence < best:
            best, best_i = divergence, i
    return best_i


def range_exponent(amax: float) -> int:
    """The smallest ``e`` with ``2**e > amax`` (``amax >= 0``)."""
    return int(np.frexp(np.float32(amax))[1])


def merged(counts: np.ndarray, shift: int) -> np.ndarray:
    """``counts`` over a range ``2**shift`` times wider, same number of bins (exact: whole bins are summed)."""
    if shift <= 0:
        return counts
    bins = counts.size
    if (1 << shift) >= bins:
        out = np.zeros_like(counts)
        out[0] = counts.sum()
        return out
    out = np.zeros_like(counts)
    out[:bins >> shift] = counts.reshape(bins >> shift, 1 << shift).sum(axis=1)
    return out


@dataclass
class TensorStatistics:
    """What is kept of one tensor: its largest |x| and the histogram of |x| over ``[0, 2**exponent)``."""

    amax: float
    exponent: int
    counts: np.ndarray  # int64 [bins]

    @property
    def width(self) -> float:
        return 2.0 ** self.exponent / self.counts.size

    def threshold(self, method: str, percentile: float = 99.999, levels: int = 128) -> float:
        """The symmetric clipping threshold of ``method`` (see the module docstring)."""
        if method == "minmax" or self.amax == 0.0:
            return self.amax
        if method == "percentile":
            cumulative = np.cumsum(self.counts)
            # the rank of the percentile value, in exact arithmetic on the percentile as written (99.9, not
            # the binary 0.99900000000000011 that would ask for one value more)
            rank = math.ceil(int(cumulative[-1]) * Fraction(repr(float(percentile))) / 100)
            index = int(np.searchsorted(cumulative, rank, side="left"))
            return min((index + 1) * self.width, self.amax)
        if method == "entropy":
            return min(_divergence_search(self.counts, levels) * self.width, self.amax)
        raise ValueError(f"unknown calibration method {method!r}")


class StreamingStatistics:
    """Running statistics of named tensors; ``add`` one tensor of one image at a time."""

    def __init__(self, names: list[str], bins: int = DEFAULT_BINS):
        if bins & (bins - 1):
            raise ValueError(f"bins must be a power of two, not {bins}")
        self.bins = bins
        self.tensors = {name: TensorStatistics(0.0, range_exponent(0.0), np.zeros(bins, np.int64)) for name in names}
        self.images = 0

    def add(self, name: str, values: np.ndarray) -> None:
        """Fold one tensor's values (any shape, float32) into its statistics."""
        flat = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
        if flat.size == 0:
            return
        peak = float(_abs_max(flat))
        if not np.isfinite(peak):
            raise UserError(f"tensor {name} has non-finite values (NaN or inf): the model or a calibration image "
                            f"is broken; check the FP32 file with python -m export.onnx's check")
        stats = self.tensors[name]
        exponent = max(stats.exponent, range_exponent(peak))
        stats.counts = merged(stats.counts, exponent - stats.exponent)
        stats.exponent = exponent
        stats.amax = max(stats.amax, peak)
        _count_bins(flat, np.float32(self.bins / 2.0 ** exponent), stats.counts)

    def thresholds(self, method: str, **options) -> dict[str, float]:
        return {name: stats.threshold(method, **options) for name, stats in self.tensors.items()}

    def save(self, path: Path) -> None:
        """Write atomically as .npz (names, maxima, exponents, histograms)."""
        names = list(self.tensors)
        arrays = {"format": np.array(FORMAT), "images": np.array(self.images), "names": np.array(names),
                  "amax": np.array([self.tensors[n].amax for n in names], np.float64),
                  "exponent": np.array([self.tensors[n].exponent for n in names], np.int64),
                  "counts": np.stack([self.tensors[n].counts for n in names])}

        def write(target: Path) -> None:
            with open(target, "wb") as file:
                np.savez(file, **arrays)

        write_with(Path(path), write)

    @classmethod
    def load(cls, path: Path) -> StreamingStatistics:
        """Read what ``save`` wrote; a damaged or foreign file is a one-line UserError."""
        try:
            with np.load(path, allow_pickle=False) as data:
                if int(data["format"]) != FORMAT:
                    raise ValueError(f"format {int(data['format'])}, expected {FORMAT}")
                names, counts = [str(n) for n in data["names"]], data["counts"]
                out = cls(names, counts.shape[1])
                out.images = int(data["images"])
                for row, name in enumerate(names):
                    out.tensors[name] = TensorStatistics(float(data["amax"][row]), int(data["exponent"][row]),
                                                         counts[row].astype(np.int64))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"calibration cache {path} is unreadable ({type(exc).__name__}: {exc}); "
                            f"delete it and run again") from None
        return out
