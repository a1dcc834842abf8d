"""benchmarks/parity.py: golden decode metrics, cached against uncached people, resuming after an interruption,
cache keys, skipped backends.

The runs use --rendered (GT-rendered network outputs through each backend's own decode): no network,
so they are fast. One run covers the whole mini set, for torch and the decode-only ONNX file at once.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests import tie_explanation
from tests.conftest import GOLDEN, MINI, TERMINAL_REPORT, need

pytest.importorskip("torch")
pytest.importorskip("pycocotools")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from benchmarks import parity, parity_agreement, parity_cache, parity_compute, parity_identity, parity_report
from benchmarks.coco import METRICS, MMPOSE_NAMES
from runtime.metadata import DecodeConfig


def run_parity(out: Path, *extra: str) -> dict:
    need(MINI)
    code = parity.main(["--rendered", "--no-progress", "--out", str(out), *extra])
    assert code == 0
    return json.loads((out / "parity.json").read_text())


def without_speed(report: dict) -> dict:
    """parity.json less the timings (they are measured, so they differ from run to run)."""
    report = json.loads(json.dumps(report))
    for row in report["backends"]:
        row.pop("speed", None)
    return report


def cached_files(out: Path, key: str) -> dict[str, int]:
    """Per-image cache files of one backend key (identity.json left out), name -> mtime."""
    return {p.name: p.stat().st_mtime_ns for p in (out / "cache" / key).glob("*.json") if p.name != "identity.json"}


def test_rendered_full_mini_set_through_each_decode(tmp_path, capsys):
    """torch reproduces decode_mini.json; the ONNX rows are one run of the decode-only file, whose
    people must equal torch's on every image, or differ only where ``tests.tie_explanation`` proves
    an exact tie: the same raw outputs go into both decodes, so their maps differ by Resize's last-bit
    rounding alone (checked: at most 4 ulps of each map's peak), and every decision the proof flips
    must compare bit-equal values of torch's maps (two candidates in another order, an NMS plateau,
    a pixel at the k-th value), its other flips within those 4 ulps. The explained images are listed
    in the run's summary ("people that differ at an exact tie").

    Mutation tried: the ONNX decode's first two joint-0 candidates of 000000233771.jpg swapped (values
    0.015 apart): its people differ and no explanation holds, so the test fails. That image itself
    needs ten joints' top-k orders of bit-equal pairs flipped and two refine pixels 1-2 ulps apart.
    """
    from benchmarks.coco import CocoSet, rendered_outputs
    from export.decode_onnx import DecodeOnlySession, torch_outputs

    decode_mini = json.loads(need(GOLDEN / "decode_mini.json").read_text())
    golden = decode_mini["metrics"]
    report = run_parity(tmp_path, "--backends", "torch,onnx,onnx-fp16,onnx-int8")
    assert "157 images x 2 backend runs" in capsys.readouterr().err  # the three ONNX rows share one run
    rows = {row["name"]: row for row in report["backends"]}
    assert report["dataset"]["images"] == len(decode_mini["images"])
    for ours, theirs in zip(METRICS, MMPOSE_NAMES):
        assert abs(rows["torch"]["metrics"][ours] - golden[theirs]) <= 1e-9, ours
    assert report["golden"]["ok"] and report["golden"]["max_abs_diff"]["torch"] <= 1e-9
    assert (tmp_path / "parity.png").stat().st_size > 0

    onnx_rows = [rows[name] for name in ("onnx", "onnx-fp16", "onnx-int8")]
    assert all(row["status"] == "run" for row in onnx_rows)
    assert len({(row["key"], row["model"], row["note"]) for row in onnx_rows}) == 1
    assert "decode-only" in rows["onnx"]["note"] and "same FP32" in rows["onnx"]["note"]

    coco = CocoSet.open()
    annotations = coco.annotations()
    config = DecodeConfig()
    torch_cache = parity_cache.load_results("torch", rows["torch"]["key"], tmp_path, coco.images)
    onnx_cache = parity_cache.load_results("onnx", rows["onnx"]["key"], tmp_path, coco.images)
    differing = [im for im in coco.images
                 if not parity_agreement.identical_people(torch_cache[im.id]["people"], onnx_cache[im.id]["people"])]
    assert rows["onnx"]["agreement"]["identical_images"] == len(coco.images) - len(differing)
    if not differing:
        assert report["golden"]["max_abs_diff"]["onnx"] <= 1e-9
        return
    explained = []
    with DecodeOnlySession(tmp_path / rows["onnx"]["model"]) as session:
        for image in differing:
            raw = rendered_outputs(image, annotations.get(image.id, []))
            ours, theirs = torch_outputs(config, raw), session.run(raw)
            bound = {}
            for name in ("heatmap", "tags"):  # the same bilinear sums rounded another way: a few ulps
                bound[name] = 4 * float(np.spacing(np.abs(ours[name]).max()))
                assert np.abs(ours[name] - theirs[name]).max() <= bound[name], (image.path.name, name)
            explanation = tie_explanation.explain(ours, theirs, bound, bit_equal=True)
            assert explanation is not None, (f"{image.path.name}: people differ and no flip of exact ties of "
                                             f"torch's maps reproduces the ONNX decode's people")
            explained.append(f"{image.path.name}: {explanation.describe()}")
    TERMINAL_REPORT.append(("people that differ at an exact tie (decode-only ONNX vs torch, rendered maps)",
                            explained))


def test_cached_people_equal_uncached_people(tmp_path):
    """The report is built from the per-image cache; here its people are compared with people computed
    straight from each backend's people function for the same settings, with no cache in between:
    torch, and onnx-int8, whose row reads the run the onnx row cached (they share one key). Every
    coordinate and score must be equal (float32 values survive the JSON round trip exactly).
    Mutations tried: parity_cache.person_entries storing the person score rounded to 3 decimals, and
    storing x and y swapped: each fails this test (the comparison of the onnx-int8 row's metrics with
    the onnx row's, which read one cached run, passes with either)."""
    from benchmarks.coco import CocoSet
    from benchmarks.parity_plan import BackendRun

    report = run_parity(tmp_path, "--limit", "3", "--backends", "torch,onnx,onnx-int8")
    rows = {row["name"]: row for row in report["backends"]}
    assert rows["onnx-int8"]["key"] == rows["onnx"]["key"]
    args = parity.build_parser().parse_args(["--rendered", "--limit", "3", "--out", str(tmp_path)])
    coco = CocoSet.open()
    images = coco.images[:3]
    for name in ("torch", "onnx-int8"):
        row = rows[name]
        model = tmp_path / row["model"] if row["model"] else None
        people_of = parity_compute.people_function(BackendRun(name, key=row["key"], model=model), args, coco)
        cached = parity_cache.load_results(name, row["key"], tmp_path, images)
        computed = 0
        for image in images:
            people = people_of(image)
            computed += len(people)
            got = cached[image.id]["people"]
            assert [p["keypoints"] for p in got] == [np.asarray(q.keypoints).reshape(-1).tolist() for q in people], \
                (name, image.path.name)
            assert [p["score"] for p in got] == [float(q.score) for q in people], (name, image.path.name)
        assert computed > 0 and row["people"] == computed, name


def test_interrupted_run_resumes_to_the_same_report(tmp_path, monkeypatch, capsys):
    """An interruption (Ctrl-C) right after the first image is cached: exit 130, no parity.json; the
    rerun computes only the other two and gives the uninterrupted run's report."""
    whole = without_speed(run_parity(tmp_path / "whole", "--limit", "3", "--backends", "torch"))

    resumed = tmp_path / "resumed"
    store = parity_compute.store_result

    def store_then_interrupt(*args, **kwargs):
        store(*args, **kwargs)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(parity_compute, "store_result", store_then_interrupt)
        code = parity.main(["--rendered", "--no-progress", "--out", str(resumed), "--limit", "3",
                            "--backends", "torch"])
    assert code == 130 and "a rerun of the same command resumes" in capsys.readouterr().err
    assert not (resumed / "parity.json").exists()
    key = whole["backends"][0]["key"]
    assert len(cached_files(resumed, key)) == 1

    capsys.readouterr()
    report = run_parity(resumed, "--limit", "3", "--backends", "torch")
    assert "1 cached, 2 to compute" in capsys.readouterr().err
    assert without_speed(report) == whole


def test_settings_change_invalidates_only_what_it_affects(tmp_path, capsys):
    first = run_parity(tmp_path, "--limit", "2", "--backends", "torch", "--input-size", "512")
    key_512 = first["backends"][0]["key"]
    before = cached_files(tmp_path, key_512)
    assert len(before) == 2

    second = run_parity(tmp_path, "--limit", "2", "--backends", "torch", "--input-size", "640")
    assert second["backends"][0]["key"] != key_512
    assert cached_files(tmp_path, key_512) == before  # untouched

    capsys.readouterr()
    again = run_parity(tmp_path, "--limit", "2", "--backends", "torch", "--input-size", "512")
    assert "2 cached, 0 to compute" in capsys.readouterr().err
    assert without_speed(again) == without_speed(first)


def test_backend_keys_depend_only_on_their_own_settings():
    from benchmarks.parity_identity import backend_identity, identity_key

    base = {"format": parity_identity.CACHE_FORMAT, "mode": "network", "arch": "w32", "input_size": 512,
            "checkpoint": "synthetic:0", "scales": [1.0]}
    shas = {"onnx": "a" * 64, "onnx-fp16": "b" * 64, "onnx-int8": "c" * 64}

    def keys(settings=base, shas=shas, calib=8):
        return {name: identity_key(backend_identity(name, settings, shas.get(name), calib))
                for name in ("torch", "onnx", "onnx-fp16", "onnx-int8")}

    reference = keys()
    assert len(set(reference.values())) == 4
    changed = {name for name, key in keys(calib=16).items() if key != reference[name]}
    assert changed == {"onnx-int8"}
    changed = {name for name, key in keys(shas={**shas, "onnx-fp16": "d" * 64}).items() if key != reference[name]}
    assert changed == {"onnx-fp16"}
    for setting, value in (("scales", [2.0, 1.0, 0.5]), ("checkpoint", "synthetic:1"), ("arch", "w48")):
        changed = {name for name, key in keys({**base, setting: value}).items() if key != reference[name]}
        assert changed == set(reference), setting


def test_int8_runs_leave_the_calibration_images_out(tmp_path, capsys):
    """A run with an INT8 backend (onnx-int8, onnx-int8-tensorrt, trt-int8) evaluates every backend
    without the images ``python -m calib --images N`` calibrates on, by file name; a run without one,
    or --rendered (no INT8 network), keeps every image. An INT8 file that records an image the run
    evaluates is refused. Mutations tried: ``evaluation_images`` returning its images unchanged, and
    ``check_held_out`` comparing with an empty set: each fails this test."""
    import onnx

    from benchmarks.coco import CocoSet
    from benchmarks.parity_models import calibration_names, check_held_out
    from calib.dataset import list_images
    from runtime.errors import UserError

    images = CocoSet.open().images
    names = {path.name for path in list_images(need(MINI / "images"), 8)}
    assert calibration_names(8) == names and len(names) == 8

    def evaluated(*flags: str) -> list[str]:
        args = parity.build_parser().parse_args(["--out", str(tmp_path), *flags])
        return [image.path.name for image in parity.evaluation_images(images, args)]

    every = [image.path.name for image in images]
    for backend in ("onnx-int8", "onnx-int8-tensorrt", "trt-int8"):
        assert evaluated("--backends", f"torch,{backend}") == [name for name in every if name not in names]
    assert "are not among the INT8 files' 8 calibration images" in capsys.readouterr().err
    assert len(evaluated("--backends", "torch,onnx-int8", "--calib-images", "4")) == len(every) - 4
    assert evaluated("--backends", "torch,onnx,onnx-fp16") == every
    assert evaluated("--rendered", "--backends", "torch,onnx-int8") == every

    model = onnx.helper.make_model(onnx.helper.make_graph([], "empty", [], []))
    onnx.helper.set_model_props(model, {"calib.image_names": json.dumps(sorted(names))})
    path = tmp_path / "int8.onnx"
    onnx.save(model, str(path))
    check_held_out(path, names)
    with pytest.raises(UserError, match=f"calibrated on {sorted(names)[0]}, which this run evaluates on"):
        check_held_out(path, names - {sorted(names)[0]})


def test_unavailable_backends_are_listed_with_the_reason(tmp_path, capsys):
    report = run_parity(tmp_path, "--limit", "1", "--backends", "torch,onnx,trt-fp32,trt-int8")
    rows = {row["name"]: row for row in report["backends"]}
    assert rows["torch"]["status"] == "run" and rows["onnx"]["status"] == "run"
    for name in ("trt-fp32", "trt-int8"):
        assert rows[name]["status"] == "skipped" and rows[name]["reason"]
        assert "TensorRT" in rows[name]["reason"]
    printed = capsys.readouterr()
    assert "trt-fp32: skipped: " in printed.out and "exporting the decode-only file" in printed.err

    model = tmp_path / rows["onnx"]["model"]
    written = model.stat().st_mtime_ns
    again = run_parity(tmp_path, "--limit", "1", "--backends", "torch,onnx")
    assert "exporting the decode-only file" not in capsys.readouterr().err  # made once, then reused
    assert model.stat().st_mtime_ns == written and again["backends"][1]["key"] == rows["onnx"]["key"]
    assert not list(model.parent.glob(".*.tmp")), "temporary files left beside the models"


def test_rendered_is_single_scale(tmp_path, capsys):
    assert parity.main(["--rendered", "--scales", "2,1,0.5", "--out", str(tmp_path)]) == 2
    assert "--rendered: single scale only" in capsys.readouterr().err


def test_oks_matching_and_identity():
    rng = np.random.default_rng(0)
    a = [{"keypoints": np.c_[rng.uniform(0, 300, (17, 2)), np.full(17, 0.9)].reshape(-1).tolist(), "score": 0.9}
         for _ in range(3)]
    b = [dict(p) for p in reversed(a)] + [{"keypoints": [0.0] * 51, "score": 0.1}]
    oks = parity_agreement.oks_matrix(parity_agreement.keypoint_array(a), parity_agreement.keypoint_array(b))
    pairs = parity_agreement.greedy_pairs(oks)
    assert sorted((i, j) for i, j, _ in pairs) == [(0, 2), (1, 1), (2, 0)]
    assert all(value == pytest.approx(1.0) for *_, value in pairs)
    summary = parity_agreement.agreement({1: {"people": a}}, {1: {"people": b}})
    assert (summary["matched"], summary["missed"], summary["added"], summary["identical_images"]) == (3, 0, 1, 0)
    assert summary["median_px"] == 0.0
    assert parity_agreement.identical_people(a, [dict(p) for p in a])


def test_published_numbers_only_for_a_zoo_checkpoint_on_a_real_tree():
    import argparse

    measured = {m: 0.5 for m in METRICS}
    args = argparse.Namespace(rendered=False, checkpoint="w32_512", arch="w32", input_size=512, scales=(1.0,))
    published = parity_report.published_numbers(args, False, measured)
    assert published["metrics"]["AP"]["published"] == pytest.approx(0.677)
    assert published["metrics"]["AP"]["delta"] == pytest.approx(0.5 - 0.677)
    assert "13" in published["note"]
    assert parity_report.published_numbers(args, True, measured) is None  # the mini set
    assert parity_report.published_numbers(argparse.Namespace(**{**vars(args), "checkpoint": "synthetic:0"}), False,
                                    measured) is None
