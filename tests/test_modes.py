"""The speed/accuracy modes against the reference's own decode in those modes (benchmarks/baseline.py).

``--no-refine``: people straight from grouping + adjust; ``--no-flip``: the flip test off, so the
heatmap is the one pass's stage average and the tags have one component (SPEC §5). Both are checked on
the images of ``../shared/golden/decode_mini.json``: the mini set's GT-rendered network outputs (the
8 images with the most annotated people, where grouping is hardest), through the torch ``Decode`` and
``runtime.grouping`` on one side and the NumPy + ``munkres`` transcription of SPEC on the other.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import MINI, need

IMAGES = 8


@pytest.fixture(scope="module")
def rendered():
    """``[(file name, [y0, y1] of batch 2: the image, then its flipped copy)]`` of the most crowded images."""
    pytest.importorskip("torch")
    from benchmarks.coco import CocoSet, rendered_outputs

    coco = CocoSet.open(need(MINI / "images"), need(MINI / "person_keypoints.json"))
    annotations = coco.annotations()
    crowded = sorted(coco.images, key=lambda im: (-len(annotations.get(im.id, [])), im.id))[:IMAGES]
    return [(im.path.name, rendered_outputs(im, annotations.get(im.id, []))) for im in crowded]


def graph_outputs(raw: list[np.ndarray], flip: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Candidates, heatmap, tags and tiles of one image from the torch ``Decode`` (the flip test on or off)."""
    from export.decode_onnx import torch_outputs
    from runtime.metadata import DecodeConfig

    if not flip:
        raw = [maps[:1] for maps in raw]
    outputs = torch_outputs(DecodeConfig(flip=flip), raw)
    return outputs["candidates"][0], outputs["heatmap"][0], outputs["tags"][0], outputs["tiles"][0]


def oracle_people(candidates: np.ndarray, heatmap: np.ndarray, tags: np.ndarray, refine: bool):
    """The baseline's grouping, adjust, scores (and refine) on the graph's own top-30 candidates.

    The graph adjusted each candidate by +0.5 and ±0.25, so ``floor`` gives back its pixel; the graph's
    order among equal values is kept (SPEC §6 leaves it to the implementation; grouping depends on it).
    ``tags`` may have one component, as the reference's without the flip test.
    """
    from benchmarks import baseline

    loc = np.floor(candidates[..., :2]).astype(np.int64)
    tag = candidates[..., 3:3 + tags.shape[-1]]
    persons = baseline.adjust(baseline.match_by_tag(loc, candidates[..., 2], tag), heatmap)
    scores = baseline.person_scores(persons)
    for person in persons if refine else ():
        baseline.refine(heatmap, tags, person)
    return persons, scores


def assert_identical(name: str, ours: tuple[np.ndarray, np.ndarray], oracle: tuple[np.ndarray, np.ndarray]) -> None:
    """The same people in the same order, every number bit for bit (columns the oracle lacks are 0)."""
    persons, scores = ours
    want, want_scores = oracle
    assert persons.shape[:2] == want.shape[:2], f"{name}: {len(persons)} people, the oracle has {len(want)}"
    width = want.shape[2]
    assert np.array_equal(persons[..., :width], want), f"{name}: people differ"
    assert not persons[..., width:].any(), f"{name}: a tag component the oracle does not have"
    assert np.array_equal(scores, want_scores), f"{name}: scores differ"


def test_no_refine_is_the_reference_decode_without_refine(rendered):
    """``decode_people(with_refine=False)`` gives the oracle's people of grouping + adjust on every image,
    and refine does change the people of these images (the mode is not the full decode renamed).

    Mutation tried: ``decode_people`` refining whatever ``with_refine`` says fails the first assert."""
    from runtime.grouping import decode_people

    refined_joints = 0
    for name, raw in rendered:
        candidates, heatmap, tags, tiles = graph_outputs(raw, flip=True)
        plain = decode_people(candidates, heatmap, tags, tiles, with_refine=False)
        assert_identical(name, plain, oracle_people(candidates, heatmap, tags, refine=False))
        full = decode_people(candidates, heatmap, tags, tiles)
        assert np.array_equal(full[1], plain[1]), f"{name}: refine changed a person score"
        refined_joints += int((full[0][..., 2] > 0).sum() - (plain[0][..., 2] > 0).sum())
    assert refined_joints > 0


def test_pose_estimator_no_refine_reaches_the_decode(rendered):
    """``PoseEstimator(refine=False)`` returns the no-refine people, ``refine=True`` the refined ones.

    Mutation tried: ``PoseEstimator.group`` dropping ``with_refine=self.refine`` fails it."""
    from runtime.grouping import decode_people
    from runtime.metadata import ModelMetadata
    from runtime.pipeline import PoseEstimator

    name, raw = rendered[0]
    candidates, heatmap, tags, tiles = graph_outputs(raw, flip=True)

    class Maps:
        """A backend whose one output is the rendered image's decode."""
        name, device_io, max_batch, metadata = "rendered", None, 1, ModelMetadata("w32", 512)

    outputs = {"candidates": candidates[None], "heatmap": heatmap[None], "tags": tags[None], "tiles": tiles[None]}
    for refine in (False, True):
        persons, scores = PoseEstimator(Maps(), refine=refine).group(outputs)
        want = decode_people(candidates, heatmap, tags, tiles, with_refine=refine)
        assert np.array_equal(persons, want[0]) and np.array_equal(scores, want[1]), (name, refine)
    assert not np.array_equal(decode_people(candidates, heatmap, tags, tiles)[0],
                              decode_people(candidates, heatmap, tags, tiles, with_refine=False)[0])


def aggregate_without_flip(raw: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """SPEC §5 for one pass, written here from the text: each stage's heatmap resized directly to the
    input size (bilinear, ``align_corners=False``), the two averaged; the tags of stage 0 resized the
    same way, with one component: the reference's ``[17, H, W, 1]`` without the flip test."""
    import torch
    import torch.nn.functional as F

    y0, y1 = (torch.from_numpy(maps[:1]) for maps in raw)
    size = (y0.shape[2] * 4, y0.shape[3] * 4)
    up = lambda maps: F.interpolate(maps, size=size, mode="bilinear", align_corners=False)  # noqa: E731
    heatmap = (up(y0[:, :17]) + up(y1)) / 2
    tags = up(y0[:, 17:])[..., None]
    return heatmap[0].numpy(), tags[0].numpy()


def test_no_flip_is_the_reference_decode_without_flip(rendered):
    """The no-flip graph's maps equal SPEC §5 for the one pass bit for bit (tag component 2 is 0), its
    top-30 values are the oracle's NMS + top-k (the usable ones with their pixels, as sets), and its people (grouping, adjust, refine
    with one tag component) are the oracle's on every image.

    Mutations tried: in ``Decode.aggregate``'s no-flip branch, the stage-1 map alone as the heatmap;
    the tags' second component set to the first instead of 0."""
    from benchmarks import baseline
    from runtime.grouping import decode_people

    for name, raw in rendered:
        candidates, heatmap, tags, tiles = graph_outputs(raw, flip=False)
        want_heatmap, want_tags = aggregate_without_flip(raw)
        assert heatmap.tobytes() == want_heatmap.tobytes(), f"{name}: heatmap"
        assert tags[..., :1].tobytes() == want_tags.tobytes() and not tags[..., 1].any(), f"{name}: tags"
        loc, val, _ = baseline.top_k(baseline.nms(want_heatmap), want_tags)
        for joint in range(17):  # the values as lists; the usable ones (> 0.1) with their pixels as sets
            assert sorted(candidates[joint, :, 2].tolist()) == sorted(val[joint].tolist()), f"{name}: joint {joint}"
            mine = {(int(x), int(y), v) for x, y, v in zip(np.floor(candidates[joint, :, 0]),
                                                           np.floor(candidates[joint, :, 1]), candidates[joint, :, 2])
                    if v > 0.1}
            theirs = {(int(x), int(y), v) for (x, y), v in zip(loc[joint], val[joint]) if v > 0.1}
            assert mine == theirs, f"{name}: joint {joint} candidates"
        ours = decode_people(candidates, heatmap, tags, tiles)
        assert_identical(name, ours, oracle_people(candidates, want_heatmap, want_tags, refine=True))


def device_no_refine() -> dict:
    """(Run under NUMBA_ENABLE_CUDASIM=1.) ``PoseEstimator(refine=False)`` on a backend whose outputs stay
    on the device (simulated), grouping on the host and on the device: the people of the CPU path."""
    from runtime.backends.device import DeviceIO
    from runtime.pipeline import PoseEstimator
    from tests.test_cuda_grouping import _MapsBackend

    images = [np.full((48 + 8 * i, 64, 3), 10 * i, np.uint8) for i in range(3)]
    want = PoseEstimator(_MapsBackend(None, seed=7), refine=False).batch(images)
    refined = PoseEstimator(_MapsBackend(None, seed=7)).batch(images)
    assert any(len(a) and not all(np.array_equal(p.keypoints, q.keypoints) for p, q in zip(a, b))
               for a, b in zip(want, refined)), "refine changes nothing on these maps"
    people = 0
    for grouping in ("host", "device"):
        got = PoseEstimator(_MapsBackend(DeviceIO(0), seed=7), grouping=grouping, refine=False).batch(images)
        for a, b in zip(got, want, strict=True):
            assert len(a) == len(b), grouping
            assert all(np.array_equal(p.keypoints, q.keypoints) and p.score == q.score for p, q in zip(a, b)), grouping
            people += len(a)
    return {"people": people}


def test_no_refine_on_a_device_backend_matches_the_cpu_path():
    """The GPU path of ``--no-refine`` (numba's CUDA simulator; a subprocess, since the simulator is
    chosen at import). Mutation tried: ``_device_people`` ignoring ``refine`` (the device refines) fails it."""
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    done = subprocess.run([sys.executable, "-m", "tests.test_modes"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["people"] > 0


if __name__ == "__main__":
    import json

    print(json.dumps(device_no_refine()))
