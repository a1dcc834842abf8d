"""benchmarks/parity.py: golden decode metrics, resuming after an interruption, cache keys, skipped backends.

The runs use --rendered (GT-rendered network outputs, torch decode): no network, so they are fast.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import GOLDEN, MINI, need

pytest.importorskip("torch")
pytest.importorskip("pycocotools")

from benchmarks import parity
from benchmarks.coco import METRICS, MMPOSE_NAMES


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


@pytest.fixture(autouse=True)
def no_stop_hook(monkeypatch):
    monkeypatch.delenv(parity.STOP_ENV, raising=False)


def test_rendered_full_mini_set_reproduces_decode_golden(tmp_path):
    decode_mini = json.loads(need(GOLDEN / "decode_mini.json").read_text())
    golden = decode_mini["metrics"]
    report = run_parity(tmp_path, "--backends", "torch")
    torch_row = report["backends"][0]
    assert torch_row["name"] == "torch" and torch_row["status"] == "run"
    assert report["dataset"]["images"] == len(decode_mini["images"])
    for ours, theirs in zip(METRICS, MMPOSE_NAMES):
        assert abs(torch_row["metrics"][ours] - golden[theirs]) <= 1e-9, ours
    assert report["golden"]["ok"] and report["golden"]["max_abs_diff"] <= 1e-9
    assert (tmp_path / "parity.png").stat().st_size > 0


def test_interrupted_run_resumes_to_the_same_report(tmp_path, monkeypatch, capsys):
    whole = without_speed(run_parity(tmp_path / "whole", "--limit", "3", "--backends", "torch"))

    resumed = tmp_path / "resumed"
    monkeypatch.setenv(parity.STOP_ENV, "1")
    with pytest.raises(SystemExit) as stopped:
        run_parity(resumed, "--limit", "3", "--backends", "torch")
    assert stopped.value.code == parity.STOP_EXIT_CODE
    assert not (resumed / "parity.json").exists()
    key = whole["backends"][0]["key"]
    assert len(cached_files(resumed, key)) == 1
    monkeypatch.delenv(parity.STOP_ENV)

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
    base = {"format": parity.CACHE_FORMAT, "mode": "network", "arch": "w32", "input_size": 512,
            "checkpoint": "synthetic:0", "scales": [1.0]}
    shas = {"onnx": "a" * 64, "onnx-fp16": "b" * 64, "onnx-int8": "c" * 64}

    def keys(settings=base, shas=shas, calib=8):
        return {name: parity.identity_key(parity.backend_identity(name, settings, shas.get(name), calib))
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


def test_unavailable_backends_are_listed_with_the_reason(tmp_path, capsys):
    report = run_parity(tmp_path, "--limit", "1", "--backends", "torch,onnx,trt-fp32,trt-int8")
    rows = {row["name"]: row for row in report["backends"]}
    assert rows["torch"]["status"] == "run"
    assert rows["onnx"]["status"] == "same-decode" and "same decode as torch" in rows["onnx"]["reason"]
    for name in ("trt-fp32", "trt-int8"):
        assert rows[name]["status"] == "skipped" and rows[name]["reason"]
        assert "TensorRT" in rows[name]["reason"]
    assert "trt-fp32: skipped: " in capsys.readouterr().out


def test_oks_matching_and_identity():
    rng = np.random.default_rng(0)
    a = [{"keypoints": np.c_[rng.uniform(0, 300, (17, 2)), np.full(17, 0.9)].reshape(-1).tolist(), "score": 0.9}
         for _ in range(3)]
    b = [dict(p) for p in reversed(a)] + [{"keypoints": [0.0] * 51, "score": 0.1}]
    oks = parity.oks_matrix(parity._keypoints(a), parity._keypoints(b))
    pairs = parity.greedy_pairs(oks)
    assert sorted((i, j) for i, j, _ in pairs) == [(0, 2), (1, 1), (2, 0)]
    assert all(value == pytest.approx(1.0) for *_, value in pairs)
    summary = parity.agreement({1: {"people": a}}, {1: {"people": b}})
    assert (summary["matched"], summary["missed"], summary["added"], summary["identical_images"]) == (3, 0, 1, 0)
    assert summary["median_px"] == 0.0
    assert parity.identical_people(a, [dict(p) for p in a])


def test_published_numbers_only_for_a_zoo_checkpoint_on_a_real_tree():
    import argparse

    measured = {m: 0.5 for m in METRICS}
    args = argparse.Namespace(rendered=False, checkpoint="w32_512", arch="w32", input_size=512, scales=(1.0,))
    published = parity.published_numbers(args, False, measured)
    assert published["metrics"]["AP"]["published"] == pytest.approx(0.677)
    assert published["metrics"]["AP"]["delta"] == pytest.approx(0.5 - 0.677)
    assert "13" in published["note"]
    assert parity.published_numbers(args, True, measured) is None  # the mini set
    assert parity.published_numbers(argparse.Namespace(**{**vars(args), "checkpoint": "synthetic:0"}), False,
                                    measured) is None
