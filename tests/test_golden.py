"""The PyTorch path against mmpose 0.29.0's own outputs (../shared/golden)."""
from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import GOLDEN, MINI, REPO, load_golden, need
from tests.golden_compare import assert_same_people

E2E = load_golden("e2e_w32_512_seed0.json") if (GOLDEN / "e2e_w32_512_seed0.json").exists() else {"records": []}
DECODE = load_golden("decode_mini.json") if (GOLDEN / "decode_mini.json").exists() else {"records": []}

def _people_array(people) -> np.ndarray:
    return np.array([np.concatenate([p.keypoints, p.tags], axis=1) for p in people]).reshape(-1, 17, 5)


@pytest.mark.parametrize("record", E2E["records"], ids=lambda r: r["file_name"])
def test_e2e_record(record, w32_synthetic, golden_cpu):
    """Input tensor sha256 bit-identical; the aggregated maps' float64 sums bit-level where this CPU
    rounds the convolutions as the golden's machine did (``golden_cpu``), else within float32
    reassociation (tests/conftest.py); the same people in every case.

    (Raw network outputs are checked bit for bit by tests/test_model.py from an independent
    transcription of the preprocessing.)"""
    import torch

    from runtime.pipeline import PoseEstimator
    from runtime.preprocess import read_image
    from runtime.results import people_in_image

    estimator = PoseEstimator(w32_synthetic)
    prepared = estimator.prepare(read_image(need(MINI / "images" / record["file_name"])))
    geometry = prepared.base_geometry
    assert list(geometry.input_size) == record["base_size"]
    assert list(geometry.center) == record["center"] and list(geometry.scale) == record["scale"]

    graph = w32_synthetic.graph
    image = torch.from_numpy(prepared.inputs[0][None])
    with torch.inference_mode():
        normalized = graph.normalize(image)
    assert hashlib.sha256(normalized.numpy().tobytes()).hexdigest() == record["inputs"][0]["sha256"]

    outputs = estimator.run_graph(prepared)
    assert list(outputs["heatmap"].shape) == record["aggregated_shape"]
    # float64 sums of bit-identical float32 maps differ only by summation order (~1e-15); one
    # float32 ulp anywhere would move them by far more than 1e-12.
    from tests.conftest import SUM_RTOL

    rtol = 1e-12 if golden_cpu else SUM_RTOL
    assert math.isclose(outputs["heatmap"].astype(np.float64).sum(), record["heatmap_sum"], rel_tol=rtol)
    assert math.isclose(outputs["tags"].astype(np.float64).sum(), record["tags_sum"], rel_tol=rtol)

    persons, scores = estimator.group(outputs)
    people = people_in_image(persons, scores, geometry)
    assert_same_people(record["file_name"], _people_array(people), scores, record)


@pytest.mark.slow
def test_e2e_through_cli(tmp_path):
    """`python -m runtime.run` writes the golden people, images in the order given."""
    if not E2E["records"]:
        pytest.skip("golden e2e file absent")
    paths = [str(need(MINI / "images" / r["file_name"])) for r in E2E["records"]]
    out = tmp_path / "results.json"
    pictures = tmp_path / "pictures"
    cmd = [sys.executable, "-m", "runtime.run", "--arch", "w32", "--input-size", "512", "--checkpoint", "synthetic:0",
           "--image", *paths, "--out", str(out), "--draw", str(pictures)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    position = 0
    for record in E2E["records"]:
        count = len(record["people"])
        mine = results[position: position + count]
        position += count
        assert all(entry["image_id"] == record["image_id"] and entry["category_id"] == 1 for entry in mine)
        people = np.array([np.concatenate([np.reshape(e["keypoints"], (17, 3)), np.zeros((17, 2))], axis=1)
                           for e in mine]).reshape(-1, 17, 5)
        assert_same_people(record["file_name"], people, np.array([e["score"] for e in mine]), record)
    assert position == len(results), "more people written than the golden has"
    assert sorted(p.name for p in pictures.iterdir()) == sorted(r["file_name"] for r in E2E["records"])


@pytest.fixture(scope="module")
def mini_set():
    from benchmarks.coco import CocoSet

    return CocoSet.open(need(MINI / "images"), need(MINI / "person_keypoints.json"))


@pytest.fixture(scope="module")
def decoded_mini(mini_set):
    """GT-rendered network outputs of all 157 images through Decode, then two host decodes.

    ``{file name: (image, people of runtime.grouping, people of benchmarks.baseline)}``. The
    baseline (the NumPy + munkres transcription of SPEC §7-8) groups the Decode's own top-30
    candidates: their order among equal values is torch's, which the golden has (SPEC §6).
    """
    pytest.importorskip("torch")
    from benchmarks.coco import rendered_decode
    from runtime.grouping import decode_people
    from runtime.preprocess import scale_geometry
    from runtime.results import people_in_image

    annotations = mini_set.annotations()
    decoded = {}
    for im in mini_set.images:
        outputs = rendered_decode(im, annotations.get(im.id, []))
        candidates, heatmap, tags = outputs["candidates"][0], outputs["heatmap"][0], outputs["tags"][0]
        geometry = scale_geometry(im.width, im.height, 512)
        ours = people_in_image(*decode_people(candidates, heatmap, tags, outputs["tiles"][0]), geometry)
        oracle = people_in_image(*baseline_people(candidates, heatmap, tags), geometry)
        decoded[im.path.name] = (im, ours, oracle)
    return decoded


def baseline_people(candidates: np.ndarray, heatmap: np.ndarray, tags: np.ndarray):
    """``benchmarks.baseline`` grouping, adjust, scores and refine from the graph's candidates.

    The graph has adjusted each candidate by +0.5 and ±0.25, so ``floor`` gives back its pixel.
    """
    from benchmarks import baseline

    loc = np.floor(candidates[..., :2]).astype(np.int64)
    persons = baseline.adjust(baseline.match_by_tag(loc, candidates[..., 2], candidates[..., 3:5]), heatmap)
    scores = baseline.person_scores(persons)
    for person in persons:
        baseline.refine(heatmap, tags, person)
    return persons, scores


@pytest.mark.parametrize("record", DECODE["records"], ids=lambda r: r["file_name"])
def test_decode_record(record, decoded_mini):
    image, people, _ = decoded_mini[record["file_name"]]
    assert image.id == record["image_id"]
    assert_same_people(record["file_name"], _people_array(people), np.array([p.score for p in people]), record)


@pytest.mark.parametrize("record", DECODE["records"], ids=lambda r: r["file_name"])
def test_decode_record_through_baseline(record, decoded_mini):
    """The oracle itself reproduces mmpose's people (mutation tried: ``np.floor`` for ``np.round``
    in ``match_by_tag``'s cost changes the people of 3 of the 10 most crowded images)."""
    _, _, people = decoded_mini[record["file_name"]]
    assert_same_people(record["file_name"], _people_array(people), np.array([p.score for p in people]), record)


def test_decode_metrics(mini_set, decoded_mini):
    """Our COCO evaluation of the decoded people gives mmpose's ten numbers (equal to 1e-9)."""
    from benchmarks.coco import METRICS, MMPOSE_NAMES, evaluate
    from runtime.results import coco_results

    results = [entry for image, people, _ in decoded_mini.values() for entry in coco_results(image.id, people)]
    metrics = evaluate(mini_set.ann, results)
    for ours, theirs in zip(METRICS, MMPOSE_NAMES):
        assert abs(metrics[ours] - DECODE["metrics"][theirs]) <= 1e-9, (ours, metrics[ours], DECODE["metrics"][theirs])
