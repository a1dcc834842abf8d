"""The Decode part of the DecodeGraph against literal NumPy transcriptions of SPEC §5, §6, §8 and §11,
and its tile summary against the NumPy one of ``tests/tiles.py``."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from benchmarks import baseline  # noqa: E402
from export.graphs import Decode  # noqa: E402
from runtime.metadata import FLIP_INDEX, DecodeConfig  # noqa: E402
from tests.tiles import tiles_of  # noqa: E402


def resize_bilinear(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """Literal half-pixel bilinear resize of ``[C, h, w]`` (align_corners=False), float64."""
    _, h, w = maps.shape

    def axis(out: int, size: int):
        src = np.maximum((np.arange(out) + 0.5) * (size / out) - 0.5, 0.0)
        low = np.floor(src).astype(int)
        high = np.minimum(low + 1, size - 1)
        return low, high, src - low

    y0, y1, fy = axis(height, h)
    x0, x1, fx = axis(width, w)
    m = maps.astype(np.float64)
    top = m[:, y0][:, :, x0] * (1 - fx) + m[:, y0][:, :, x1] * fx
    bottom = m[:, y1][:, :, x0] * (1 - fx) + m[:, y1][:, :, x1] * fx
    return top * (1 - fy[:, None]) + bottom * fy[:, None]


def unflip(maps: np.ndarray) -> np.ndarray:
    """SPEC §5.1: flip back along width, then permute the 17 channels of each group."""
    flipped = maps[:, :, ::-1]
    return np.concatenate([flipped[g:g + 17][list(FLIP_INDEX)] for g in range(0, len(maps), 17)])


def aggregate_numpy(passes: list[dict], height: int, width: int, base: int):
    """SPEC §5 per scale (every stage straight to the base size) and §11 across scales, float64."""
    heatmaps = []
    for scale in passes:
        stage_avg = []
        for y0, y1 in ((scale["y0"], scale["y1"]), (unflip(scale["y0f"]), unflip(scale["y1f"]))):
            stage_avg.append((resize_bilinear(y0[:17], height, width) + resize_bilinear(y1, height, width)) / 2)
        heatmaps.append((stage_avg[0] + stage_avg[1]) / 2)
    s = passes[base]
    tags = np.stack([resize_bilinear(s["y0"][17:], height, width), resize_bilinear(unflip(s["y0f"])[17:], height, width)], -1)
    return np.mean(heatmaps, axis=0), tags


def random_raw(rng, height: int, width: int) -> dict:
    shape0, shape1 = (34, height // 4, width // 4), (17, height // 2, width // 2)
    return {"y0": rng.normal(size=shape0).astype(np.float32), "y1": rng.normal(size=shape1).astype(np.float32),
            "y0f": rng.normal(size=shape0).astype(np.float32), "y1f": rng.normal(size=shape1).astype(np.float32)}


def run_decode(config: DecodeConfig, passes: list[dict], height: int, width: int, with_tiles: bool = False):
    outputs = [(torch.from_numpy(np.stack([p["y0"], p["y0f"]])), torch.from_numpy(np.stack([p["y1"], p["y1f"]])))
               for p in passes]
    with torch.inference_mode():
        candidates, heatmap, tags, tiles = Decode(config)(outputs, height, width)
    found = candidates[0].numpy(), heatmap[0].numpy(), tags[0].numpy()
    return (*found, tiles[0].numpy()) if with_tiles else found


@pytest.mark.parametrize("scales", [(1.0,), (2.0, 1.0, 0.5)])
def test_tile_summary_is_the_maps_tile_by_tile(scales):
    """The ``tiles`` output equals the NumPy summary of the graph's own heatmap and tags, bit for bit
    (maxima and minima are exact), on maps of distinct random values, flip test on and off.

    Mutations tried in ``export.graphs``: ``amin`` and ``amax`` swapped for the tags; the two tile
    sides swapped in ``_tile_reduce``; the flipped pass's tag reduced in place of the original's:
    each fails here."""
    rng = np.random.default_rng(4)
    base = (64, 96)
    passes = [random_raw(rng, int(base[0] * s), int(base[1] * s)) for s in scales]
    _, heatmap, tags, tiles = run_decode(DecodeConfig(scales=scales), passes, *base, with_tiles=True)
    assert tiles.shape == (17, 8, 6, 5)
    assert tiles.tobytes() == tiles_of(heatmap, tags).tobytes()
    single = [(torch.from_numpy(p["y0"][None]), torch.from_numpy(p["y1"][None])) for p in passes]
    with torch.inference_mode():
        _, heatmap, tags, tiles = (t[0].numpy() for t in Decode(DecodeConfig(scales=scales, flip=False))(single, *base))
    assert tiles.tobytes() == tiles_of(heatmap, tags).tobytes() and not tiles[..., 3:].any()


@pytest.mark.parametrize("size", [(64, 96), (128, 64)])
def test_single_scale_aggregation(size):
    rng = np.random.default_rng(1)
    passes = [random_raw(rng, *size)]
    _, heatmap, tags = run_decode(DecodeConfig(), passes, *size)
    want_heatmap, want_tags = aggregate_numpy(passes, *size, base=0)
    # float32 bilinear + two averages vs float64: a few ulp of O(1) values.
    np.testing.assert_allclose(heatmap, want_heatmap, rtol=0, atol=2e-6)
    np.testing.assert_allclose(tags, want_tags, rtol=0, atol=2e-6)


def test_multi_scale_aggregation():
    """Scales [2, 1, 0.5] of a 128×192 base: every map projected straight to the base size."""
    rng = np.random.default_rng(2)
    base = (128, 192)
    passes = [random_raw(rng, base[0] * 2, base[1] * 2), random_raw(rng, *base), random_raw(rng, base[0] // 2, base[1] // 2)]
    candidates, heatmap, tags = run_decode(DecodeConfig(scales=(2, 1, 0.5)), passes, *base)
    want_heatmap, want_tags = aggregate_numpy(passes, *base, base=1)
    assert heatmap.shape == (17, *base) and tags.shape == (17, *base, 2) and candidates.shape == (17, 30, 5)
    np.testing.assert_allclose(heatmap, want_heatmap, rtol=0, atol=2e-6)
    np.testing.assert_allclose(tags, want_tags, rtol=0, atol=2e-6)


def test_flip_back_moves_left_joints_right():
    """A flipped-pass peak of joint 1 (left eye) at column c lands in joint 2 at column W-1-c."""
    height, width = 64, 64
    zeros = {"y0": np.zeros((34, 16, 16), np.float32), "y1": np.zeros((17, 32, 32), np.float32)}
    passes = [dict(zeros, y0f=zeros["y0"].copy(), y1f=zeros["y1"].copy())]
    passes[0]["y1f"][1, 10, 3] = 8.0
    _, heatmap, _ = run_decode(DecodeConfig(), passes, height, width)
    y, x = np.unravel_index(np.argmax(heatmap[2]), heatmap[2].shape)
    assert heatmap[1].max() == 0 and (y, x) in {(20, 56), (20, 57), (21, 56), (21, 57)}


def peak_maps(rng: np.random.Generator, height: int = 48, width: int = 64):
    """Per joint, 40 single-pixel peaks of distinct values over low noise, and random tags.

    The 40 values are distinct, so the top 30 are one well-defined set, compared in full. Peaks
    sit on a jittered grid at least 4 px apart (so each survives NMS), some on the first and last
    rows and columns (the clamped neighbour reads), and
    each peak's four neighbours are drawn so that the left/right and up/down comparisons of the
    ±0.25 rule come out both ways and as exact ties (which SPEC §8 sends to -0.25). Noise stays
    below every neighbour, so it never enters the top 30. The strongest peaks get a diagonal
    shoulder pixel higher than the weaker peaks: only NMS keeps it out of the top 30.
    """
    heatmap = rng.uniform(0.0, 0.05, (17, height, width)).astype(np.float32)
    tags = rng.normal(size=(17, height, width, 2)).astype(np.float32)
    rows, columns = (list(range(0, side - 5, 5)) + [side - 1] for side in (height, width))
    grid = [(y, x) for y in rows for x in columns]
    for joint in range(17):
        chosen = rng.choice(len(grid), 40, replace=False)
        values = rng.permutation(np.linspace(0.3, 1.0, 40, dtype=np.float32))
        for (y, x), value in zip((grid[i] for i in chosen), values):
            y += int(rng.integers(0, 2)) if 0 < y < height - 1 else 0
            x += int(rng.integers(0, 2)) if 0 < x < width - 1 else 0
            low = np.float32(rng.choice([0.1, 0.15, 0.2]))
            pair = [low, low] if rng.random() < 0.3 else list(rng.permutation([low, np.float32(0.25)]))
            for (dy, dx), level in zip(((0, -1), (0, 1), (-1, 0), (1, 0)), pair + pair[::-1]):
                if 0 <= y + dy < height and 0 <= x + dx < width:
                    heatmap[joint, y + dy, x + dx] = level
            heatmap[joint, y, x] = value
            if value > 0.85 and y + 1 < height and x + 1 < width:  # a shoulder above the weaker peaks
                heatmap[joint, y + 1, x + 1] = value - np.float32(0.005)
    return heatmap, tags


def transcribed_candidates(heatmap: np.ndarray, tags: np.ndarray, k: int) -> np.ndarray:
    """SPEC §6 + the §8 adjust in NumPy (``benchmarks.baseline``): ``[17, k, 5]`` float32."""
    loc, val, tag = baseline.top_k(baseline.nms(heatmap), tags, k)
    rows = np.concatenate([loc, val[..., None], tag], axis=2).astype(np.float32)
    baseline.adjust(rows.transpose(1, 0, 2), heatmap)  # adjust walks persons x joints: one "person" per rank
    return rows


def candidate_mismatches(ours: np.ndarray, want: np.ndarray) -> list[str]:
    """Joints whose candidates differ in any of x, y, val, tag0, tag1 (rows ordered by value)."""
    bad = []
    for joint in range(len(want)):
        a = ours[joint][np.argsort(-ours[joint, :, 2], kind="stable")]
        b = want[joint][np.argsort(-want[joint, :, 2], kind="stable")]
        if a.tobytes() != b.tobytes():
            column = int(np.flatnonzero((a != b).any(axis=0))[0])
            bad.append(f"joint {joint}: column {'x y val tag0 tag1'.split()[column]} differs")
    return bad


def graph_candidates(heatmap: np.ndarray, tags: np.ndarray, config: DecodeConfig) -> np.ndarray:
    with torch.inference_mode():
        return Decode(config).candidates(torch.from_numpy(heatmap[None]), torch.from_numpy(tags[None]))[0].numpy()


@pytest.mark.parametrize("seed", range(6))
def test_candidates_match_numpy_transcription(seed):
    """NMS, top-30, tag gather and the quarter-pixel adjust equal SPEC §6/§8 written in NumPy, bit for bit.

    Every candidate's x, y, val, tag0 and tag1 are compared. Mutations of ``Decode.candidates`` that
    this test catches (tried): the x-adjust's sign flipped (``right < left``), the tags zeroed, the
    border clamp of the right neighbour removed, top-k reading the unsuppressed heatmap.
    """
    rng = np.random.default_rng(seed)
    heatmap, tags = peak_maps(rng)
    config = DecodeConfig()
    want = transcribed_candidates(heatmap, tags, config.top_k)
    # The maps do what the docstring says: distinct top values, both adjust directions, ties.
    assert all(len(set(want[j, :, 2].tolist())) == config.top_k for j in range(17))
    fractions = want[..., :2] % 1
    assert {0.25, 0.75} <= set(fractions.ravel().tolist())
    assert (want[..., 0] < 1).any() and (want[..., 0] > heatmap.shape[2] - 1).any()
    assert candidate_mismatches(graph_candidates(heatmap, tags, config), want) == []


def test_candidate_comparison_catches_mutations():
    """The comparison above fails on candidates with a flipped x adjust or zeroed tags."""
    rng = np.random.default_rng(0)
    heatmap, tags = peak_maps(rng)
    want = transcribed_candidates(heatmap, tags, 30)
    flipped = want.copy()
    flipped[..., 0] = np.floor(flipped[..., 0]) + 1 - flipped[..., 0] % 1  # +0.25 <-> -0.25 around x + 0.5
    no_tags = want.copy()
    no_tags[..., 3:] = 0
    assert len(candidate_mismatches(flipped, want)) == 17
    assert len(candidate_mismatches(no_tags, want)) == 17


def reflipped(raw: dict) -> dict:
    """Raw outputs whose flipped pass, once flipped back (SPEC §5.1), equals the original pass."""
    def mirror(maps):
        return np.concatenate([maps[g:g + 17][list(FLIP_INDEX)] for g in range(0, len(maps), 17)])[:, :, ::-1].copy()

    return dict(raw, y0f=mirror(raw["y0"]), y1f=mirror(raw["y1"]))


@pytest.mark.parametrize("scales", [(1.0,), (2.0, 1.0, 0.5)])
def test_no_flip_decode_is_the_flip_decode_of_a_symmetric_pass(scales):
    """Without the flip test the heatmap is the one pass's stage average and tag1 is 0.

    Exact cross-check: the flip decode fed a flipped pass equal to the original pass averages two equal
    maps ((a + a) / 2 == a bit for bit), so its heatmap, x, y, val and tag0 must equal the no-flip
    decode's bit for bit, and its tag1 is tag0. Mutations tried in the no-flip branch of
    ``Decode.aggregate``: the stage-1 map alone as the heatmap; the tag repeated as the second component.
    """
    rng = np.random.default_rng(3)
    base = (64, 96)
    passes = [random_raw(rng, int(base[0] * s), int(base[1] * s)) for s in scales]
    config = DecodeConfig(scales=scales)
    candidates, heatmap, tags = run_decode(config, [reflipped(p) for p in passes], *base)
    single = [(torch.from_numpy(p["y0"][None]), torch.from_numpy(p["y1"][None])) for p in passes]
    with torch.inference_mode():
        out = Decode(DecodeConfig(scales=scales, flip=False))(single, *base)
    no_flip_candidates, no_flip_heatmap, no_flip_tags = (t[0].numpy() for t in out[:3])
    assert no_flip_heatmap.tobytes() == heatmap.tobytes()
    assert no_flip_tags[..., 0].tobytes() == tags[..., 0].tobytes() and not no_flip_tags[..., 1].any()
    assert no_flip_candidates[..., :4].tobytes() == candidates[..., :4].tobytes()
    assert not no_flip_candidates[..., 4].any()
    want_heatmap, _ = aggregate_numpy([reflipped(p) for p in passes], *base, base=config.base)
    np.testing.assert_allclose(no_flip_heatmap, want_heatmap, rtol=0, atol=2e-6)


def test_no_flip_graph_runs_the_network_once_per_image():
    """The DecodeGraph without the flip test hands the network the images alone."""
    from export.graphs import DecodeGraph

    batches = []

    class Network(torch.nn.Module):
        def forward(self, x):
            batches.append(x.shape[0])
            n, _, h, w = x.shape
            return torch.zeros(n, 34, h // 4, w // 4), torch.zeros(n, 17, h // 2, w // 2)

    image = torch.zeros(3, 64, 64, 3, dtype=torch.uint8)
    with torch.inference_mode():
        DecodeGraph(Network(), DecodeConfig(flip=False))(image)
        DecodeGraph(Network(), DecodeConfig())(image)
    assert batches == [3, 6]
