"""Streaming calibration: statistics folded image by image (calib.statistics) from a graph run piece by
piece (calib.pieces) must equal what one pass over all values of one whole-graph run gives.

References are independent of the code under test: ``np.bincount`` of ``floor(|x| * bins / 2**e)`` over
the concatenated values for the histograms, NumPy one-liners and hand-made histograms for the
thresholds, a vectorized NumPy transcription of the module docstring's divergence search, and ONNX
Runtime running the whole toy graph with every measured tensor as an output for the pieces.

Mutations tried (each fails a test here): ``merged`` returning the old histogram unshifted
(test_streamed_histogram_equals_one_pass); the percentile index off by one bin
(test_minmax_and_percentile_thresholds_by_hand); the 8-bit distribution built from the saturated reference
(test_divergence_search_against_numpy, test_entropy_keeps_a_uniform_range_and_clips_a_far_outlier); a piece dropping the tensors
carried to later pieces (test_pieces_equal_one_whole_run).
"""
from __future__ import annotations

import numpy as np
import pytest

from calib.statistics import StreamingStatistics, TensorStatistics, _divergence_search, merged, range_exponent

BINS = 256


def _one_pass(values: np.ndarray, exponent: int, bins: int = BINS) -> np.ndarray:
    magnitudes = np.abs(values.astype(np.float64))  # float64: an independent rounding of the bin index
    return np.bincount(np.floor(magnitudes * bins / 2.0 ** exponent).astype(np.int64), minlength=bins)


def test_range_exponent_is_the_smallest_power_of_two_above():
    for amax, expected in [(0.0, 0), (0.3, -1), (0.5, 0), (1.0, 1), (1.5, 1), (2.0, 2), (1000.0, 10), (1024.0, 11)]:
        assert range_exponent(amax) == expected, amax
        assert 2.0 ** expected > amax


def test_merged_sums_whole_bins():
    counts = np.arange(8, dtype=np.int64)
    assert merged(counts, 0).tolist() == counts.tolist()
    assert merged(counts, 1).tolist() == [1, 5, 9, 13, 0, 0, 0, 0]
    assert merged(counts, 2).tolist() == [6, 22, 0, 0, 0, 0, 0, 0]
    assert merged(counts, 5).tolist() == [28, 0, 0, 0, 0, 0, 0, 0]


@pytest.mark.parametrize("seed", range(6))
def test_streamed_histogram_equals_one_pass(seed):
    """Batches whose maxima grow (and shrink), with zeros, negatives, exact powers of two and values just
    below a bin edge: the streamed histogram equals the one-pass histogram at the final range."""
    rng = np.random.default_rng(seed)
    batches = []
    for scale in rng.permutation([0.01, 0.3, 1.0, 7.5, 100.0, 0.0]):
        values = (rng.standard_normal(rng.integers(1, 5000)) * scale).astype(np.float32)
        values[: len(values) // 4] = 0.0
        if len(values) > 3:
            values[1] = np.float32(2.0) ** int(rng.integers(-4, 5))
            values[2] = np.nextafter(np.float32(values[1]), np.float32(0))
        batches.append(values.reshape(-1, 1) if seed % 2 else values)
    stats = StreamingStatistics(["t"], BINS)
    for values in batches:
        stats.add("t", values)
    every = np.concatenate([b.reshape(-1) for b in batches])
    got = stats.tensors["t"]
    assert got.amax == float(np.abs(every).max())
    assert got.exponent == range_exponent(got.amax)
    np.testing.assert_array_equal(got.counts, _one_pass(every, got.exponent))
    assert got.counts.sum() == every.size


def test_non_finite_values_are_refused():
    from runtime.errors import UserError

    stats = StreamingStatistics(["t"], BINS)
    with pytest.raises(UserError, match="tensor t has non-finite values"):
        stats.add("t", np.array([1.0, np.nan, 2.0], np.float32))


def test_minmax_and_percentile_thresholds_by_hand():
    counts = np.zeros(BINS, np.int64)
    counts[[0, 10, 202]] = [90, 9, 1]  # 100 values; range [0, 2): bin width 2/256; 1.58 lies in bin 202
    stats = TensorStatistics(amax=1.58, exponent=1, counts=counts)
    width = 2.0 / BINS
    assert stats.threshold("minmax") == 1.58
    assert stats.threshold("percentile", percentile=90.0) == pytest.approx(1 * width)  # 90 values in bin 0
    assert stats.threshold("percentile", percentile=99.0) == pytest.approx(11 * width)  # 99 by bin 10
    assert stats.threshold("percentile", percentile=99.5) == pytest.approx(1.58)  # bin 202 ends at 1.586: capped at amax
    zero = TensorStatistics(amax=0.0, exponent=0, counts=np.eye(1, BINS, dtype=np.int64)[0] * 7)
    assert zero.threshold("percentile") == zero.threshold("entropy") == 0.0


def test_percentile_threshold_by_hand():
    """Against NumPy's own percentile of the values: the threshold is the edge of the bin that holds it."""
    rng = np.random.default_rng(3)
    values = np.abs(rng.standard_normal(100_000)).astype(np.float32)
    stats = StreamingStatistics(["t"], 2048)
    stats.add("t", values)
    t = stats.thresholds("percentile", percentile=99.9)["t"]
    width = stats.tensors["t"].width
    exact = np.quantile(values, 0.999, method="inverted_cdf")
    assert t - width <= exact <= t


def _numpy_divergence_search(counts: np.ndarray, levels: int) -> int:
    """The module docstring's search, written with NumPy arrays (no loops over bins)."""
    used = int(np.nonzero(counts)[0][-1]) + 1
    if used <= levels:
        return used
    total = counts.sum()
    scores = []
    for i in range(levels, used + 1):
        p = counts[:i].astype(np.float64).copy()
        p[-1] += counts[i:].sum()
        raw = counts[:i].astype(np.float64)
        edges = (np.arange(levels + 1) * i) // levels  # group g: bins [g*i//levels, (g+1)*i//levels)
        group = np.searchsorted(edges, np.arange(i), side="right") - 1
        mass = np.bincount(group, raw, levels)
        filled = np.bincount(group, raw > 0, levels)
        q = np.where(raw > 0, (mass / np.maximum(filled, 1))[group], 0.0)
        if np.any((p > 0) & (q == 0)):
            scores.append(np.inf)
            continue
        pn, qn = p / total, q / raw.sum()
        keep = p > 0
        scores.append(float(np.sum(pn[keep] * np.log(pn[keep] / qn[keep]))))
    return levels + int(np.argmin(scores))


@pytest.mark.parametrize("seed", range(4))
def test_divergence_search_against_numpy(seed):
    rng = np.random.default_rng(seed)
    values = np.abs(rng.standard_normal(20_000) * rng.uniform(0.5, 3)) ** rng.uniform(1, 3)
    counts = np.bincount(np.minimum((values / values.max() * 200).astype(np.int64), 199), minlength=BINS)
    counts[rng.integers(0, 200, 20)] = 0  # empty bins inside the range
    assert _divergence_search(counts.astype(np.int64), 16) == _numpy_divergence_search(counts, 16)


def test_group_boundaries_cover_every_bin():
    """Each group of the 8-bit distribution is ``[g*i//levels, (g+1)*i//levels)``: together they tile [0, i)."""
    for i in range(16, 300):
        edges = [(g * i) // 16 for g in range(17)]
        assert edges[0] == 0 and edges[-1] == i and all(b > a for a, b in zip(edges, edges[1:]))


def test_entropy_keeps_a_uniform_range_and_clips_a_far_outlier():
    uniform = np.zeros(BINS, np.int64)
    uniform[:200] = 50
    assert _divergence_search(uniform, 16) == 200  # nothing to gain by clipping
    skewed = np.zeros(BINS, np.int64)
    skewed[:40] = np.linspace(5000, 10, 40).astype(np.int64)
    skewed[250] = 1  # one value far out
    assert 16 <= _divergence_search(skewed, 16) < 250


# ----------------------------------------------------------------------------------------------
# Pieces


def _toy_model():
    """A small branchy float graph: two branches, a residual Add, ReLUs, a nearest Resize, a Concat."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def weight(name, shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["c0"], name="c0", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c0"], ["r0"], name="r0"),
        helper.make_node("Conv", ["r0", "w1"], ["c1"], name="c1", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["r0", "w2"], ["c2"], name="c2", strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="r2"),
        helper.make_node("Resize", ["r2", "", "scales"], ["u2"], name="u2", mode="nearest"),
        helper.make_node("Add", ["c1", "u2"], ["a0"], name="a0"),
        helper.make_node("Add", ["a0", "r0"], ["a1"], name="a1"),
        helper.make_node("Relu", ["a1"], ["r1"], name="r1"),
        helper.make_node("Concat", ["r1", "c0"], ["y"], name="cat", axis=1),
    ]
    initializers = [weight("w0", (4, 3, 3, 3)), weight("w1", (4, 4, 3, 3)), weight("w2", (4, 4, 3, 3)),
                    numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")]
    graph = helper.make_graph(nodes, "toy", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


MEASURED = ["c0", "r0", "c1", "c2", "u2", "a0", "a1", "r1"]


def _whole_run(model, feed, optimize: bool) -> dict[str, np.ndarray]:
    import onnxruntime as ort
    from onnx import helper

    everything = type(model)()
    everything.CopyFrom(model)
    everything.graph.output.extend(helper.make_tensor_value_info(name, 1, None) for name in MEASURED)
    options = ort.SessionOptions()
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    session = ort.InferenceSession(everything.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return dict(zip(MEASURED, session.run(MEASURED, feed)))


@pytest.mark.parametrize("per_piece", [1, 2, 3, 100])
@pytest.mark.parametrize("optimize", [False, True])
def test_pieces_equal_one_whole_run(per_piece, optimize):
    """Every measured tensor exactly once, with the values of one whole-graph run. Without graph
    optimizations both sides run the same kernels: bit-equal. With them (what calibration uses) kernels
    may be chosen differently on either side: equal to float32 rounding, 1e-5 of the tensor's largest
    value (a few ulp of sums of 36-108 products)."""
    pytest.importorskip("onnxruntime")
    from calib.pieces import PieceRunner, cut

    model = _toy_model()
    feed = {"x": np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)}
    pieces = cut(model, MEASURED, per_piece)
    assert len(pieces) == (len(MEASURED) + per_piece - 1) // per_piece
    seen: dict[str, np.ndarray] = {}

    def fold(name, values):
        assert name not in seen
        seen[name] = values.copy()

    with PieceRunner(pieces, optimize=optimize) as runner:
        runner.measure(feed, fold)
    expected = _whole_run(model, feed, optimize)
    assert sorted(seen) == sorted(MEASURED)
    for name in MEASURED:
        if optimize:
            np.testing.assert_allclose(seen[name], expected[name], rtol=0,
                                       atol=1e-5 * float(np.abs(expected[name]).max()), err_msg=name)
        else:
            np.testing.assert_array_equal(seen[name], expected[name], err_msg=name)


def test_pieces_skip_what_nothing_measured_needs():
    """The Concat after the last measured tensor is in no piece; every initializer a piece needs is inside it."""
    from calib.pieces import cut

    onnx = pytest.importorskip("onnx")
    pieces = cut(_toy_model(), MEASURED, 3)
    names = [node.name for piece in pieces for node in onnx.load_from_string(piece.model).graph.node]
    assert sorted(names) == sorted(["c0", "r0", "c1", "c2", "r2", "u2", "a0", "a1", "r1"])
    assert all(name not in ("w0", "w1", "w2", "scales") for piece in pieces for name in piece.inputs)
