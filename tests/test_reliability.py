"""Issue 14: every bad input and fault gets one clear line, nothing is lost, the rest of a batch is done.

Disk full runs on a 1 MiB tmpfs filled up (RLIMIT_FSIZE where no tmpfs can be mounted); the folder and
signal cases run the CLIs as a user does (subprocess), on small images with synthetic weights.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.errors import UserError
from runtime.files import check_output_dir, check_output_file, write_atomic, write_temporary, write_with
from tests.conftest import MINI, REPO, need
from tests.reliability_helpers import read_only_disk, small_disk
from tests.test_cli import assert_one_line_error, run

SAMPLE = REPO / "runtime" / "samples" / "000000000785.jpg"
DISK_FULL = ("No space left on device", "File too large")  # tmpfs, or the RLIMIT_FSIZE stand-in


def one_of(line: str, texts) -> bool:
    return any(text in line for text in texts)


def small_image(path: Path, width: int = 96, height: int = 64, shift: int = 0) -> Path:
    image = cv2.resize(cv2.imread(str(SAMPLE)), (width, height))
    cv2.imwrite(str(path), np.roll(image, shift, axis=1))
    return path


def no_temporaries(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


# ----------------------------------------------------------------------------------------------
# 1. Disk full: one line naming the file and the errno's meaning, target intact, nothing left behind


@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
def test_write_atomic_on_a_full_disk(tmp_path, existing):
    """Mutation tried: write_temporary without its OSError branch -> a raw OSError escapes."""
    with small_disk(tmp_path, free=8192, existing={"x.json": b"old"} if existing else None) as disk:
        with disk.limited(), pytest.raises(UserError) as caught:
            write_atomic(disk.path / "x.json", b"[" + b"1," * 100_000 + b"1]")
        assert str(disk.path / "x.json") in str(caught.value) and one_of(str(caught.value), DISK_FULL)
        assert disk.listing() == (["x.json"] if existing else [])
        if existing:
            assert (disk.path / "x.json").read_bytes() == b"old"


def test_a_folder_made_for_a_failed_write_is_removed(tmp_path):
    """Mutation tried: no _remove_empty after the failed write -> pics/ is left behind."""
    with small_disk(tmp_path, free=0) as disk:
        with disk.limited(), pytest.raises(UserError):
            write_atomic(disk.path / "pics" / "deep" / "a.jpg", b"x" * 200_000)
        assert disk.listing() == []


def test_library_writers_on_a_full_disk(tmp_path):
    """write_with (the calibration cache through ONNX Runtime's writer) and export.onnx.write_model (models).
    Mutation tried: write_model through onnx.save_model again -> OSError [Errno 28] escapes."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from export.onnx import write_model

    weight = numpy_helper.from_array(np.ones(100_000, np.float32), "w")
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "big",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [100_000])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [100_000])], [weight])
    model = helper.make_model(graph)
    with small_disk(tmp_path, free=8192, existing={"m.onnx": b"old model"}) as disk:
        with disk.limited():
            with pytest.raises(UserError, match="m.onnx: cannot write it"):
                write_model(model, disk.path / "m.onnx")
            with pytest.raises(UserError, match="cache.json: cannot write it"):
                write_with(disk.path / "cache.json", lambda path: path.write_bytes(b"0" * 200_000))
        assert disk.listing() == ["m.onnx"] and (disk.path / "m.onnx").read_bytes() == b"old model"


def test_write_temporary_keeps_nothing_when_interrupted(tmp_path, monkeypatch):
    """A KeyboardInterrupt inside the write removes the temporary file too."""
    def interrupted(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_temporary(tmp_path / "a.json", b"{}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
def test_run_out_on_a_full_disk(tmp_path, existing):
    """Refused before the model is opened (the probe write fails); an existing file stays as it was.
    On main: the run completed, then write_json raised OSError [Errno 28] with a traceback, exit 1."""
    with small_disk(tmp_path, free=0, existing={"x.json": b"[]"} if existing else None) as disk:
        done = subprocess.run([sys.executable, "-m", "runtime.run", "--image", str(SAMPLE), "--out",
                               str(disk.path / "x.json")], cwd=REPO, capture_output=True, text=True,
                              preexec_fn=disk.preexec(), timeout=300)
        assert_one_line_error(done, "--out", "x.json")
        assert one_of(done.stderr, DISK_FULL) or disk.limit
        assert disk.listing() == (["x.json"] if existing else [])
        if existing:
            assert (disk.path / "x.json").read_bytes() == b"[]"


def test_run_draw_on_a_full_disk_leaves_no_folder(tmp_path):
    """Refused before the model is opened (on main: after the first image, leaving an empty folder).
    The folder clean-up's mutation is run by test_a_folder_made_for_a_failed_write_is_removed."""
    with small_disk(tmp_path, free=0) as disk:
        out = tmp_path / "r.json"
        done = run("-m", "runtime.run", "--image", str(SAMPLE), "--out", str(out), "--draw", str(disk.path / "pics"))
        assert_one_line_error(done, "--draw", "pics")
        assert "model:" not in done.stdout  # before any work
        assert disk.listing() == [] and not out.exists()


def test_run_results_that_do_not_fit(tmp_path):
    """The probe passes (a few KB free), the results (~100 KB of synthetic-weights people) do not: one line,
    the old results stay, no temporary file. On main: OSError traceback, exit 1."""
    image = small_image(tmp_path / "a.jpg")
    with small_disk(tmp_path, free=16384, existing={"x.json": b"[]"}) as disk:
        done = subprocess.run([sys.executable, "-m", "runtime.run", "--image", str(image), "--out",
                               str(disk.path / "x.json")], cwd=REPO, capture_output=True, text=True,
                              preexec_fn=disk.preexec(), timeout=600)
        assert_one_line_error(done, "x.json", "cannot write it")
        assert one_of(done.stderr, DISK_FULL)
        assert disk.listing() == ["x.json"] and (disk.path / "x.json").read_bytes() == b"[]"


def test_export_onnx_on_a_small_disk(tmp_path):
    """-o where the 109 MiB file cannot fit: refused after loading the weights, before the export (which
    took 99 s on main and then died with OSError [Errno 28]); "[2/4]" absent proves no export ran."""
    pytest.importorskip("torch")
    with small_disk(tmp_path, free=200_000) as disk:
        if disk.limit:
            pytest.skip("the free-space check needs a real small file system (no tmpfs could be mounted)")
        done = run("-m", "export.onnx", "--arch", "w32", "--skip-verify", "-o", str(disk.path / "w32.onnx"))
        assert_one_line_error(done, "-o", "w32.onnx", "MiB free")
        assert "[2/4]" not in done.stdout
        assert disk.listing() == []


# ----------------------------------------------------------------------------------------------
# 2. --scales values: finite, in a documented range, refused while parsing


@pytest.mark.parametrize("text", ["1,nan", "1e308,1", "0.0001,1", "inf,1", "1,-2", ",", "1,1e-320"])
@pytest.mark.parametrize("tool", ["runtime.run", "export.onnx", "benchmarks.parity", "benchmarks.coco"])
def test_scales_values_are_refused_before_work(text, tool, capsys):
    """On main: 1,nan -> ValueError traceback, 1e308,1 -> OverflowError, 0.0001,1 -> a 2.4 TB allocation.
    Mutation tried: parse_scales without the range check -> these reach DecodeConfig / the geometry."""
    import importlib

    module = importlib.import_module(tool)
    extra = ["--arch", "w32"] if tool == "export.onnx" else []
    with pytest.raises(SystemExit) as stop:
        module.main([*extra, f"--scales={text}"])
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--scales" in lines[0], lines


# ----------------------------------------------------------------------------------------------
# 4. The user's files are never written over


def test_out_naming_an_input_is_refused(tmp_path):
    photo = small_image(tmp_path / "victim.jpg")
    before = photo.read_bytes()
    done = run("-m", "runtime.run", "--image", str(photo), "--out", str(photo))
    assert_one_line_error(done, "--out", "victim.jpg", "input")
    assert photo.read_bytes() == before


def test_draw_into_the_input_folder_is_refused(tmp_path):
    """On main --image-dir src --draw src replaced the JPEGs with drawings."""
    src = tmp_path / "src"
    src.mkdir()
    photos = [small_image(src / f"{name}.jpg") for name in ("a", "b")]
    before = [p.read_bytes() for p in photos]
    done = run("-m", "runtime.run", "--image-dir", str(src), "--out", str(tmp_path / "r.json"), "--draw", str(src))
    assert_one_line_error(done, "--draw", "folder of their own")
    assert [p.read_bytes() for p in photos] == before and sorted(os.listdir(src)) == ["a.jpg", "b.jpg"]


def test_picture_names_do_not_collide():
    from runtime.run import picture_name

    used: set[str] = set()
    assert [picture_name(n, used) for n in ("a.jpg", "a.png", "a.jpg", "b.jpg")] == \
        ["a.jpg", "a_png.jpg", "a_jpg.jpg", "b.jpg"]


# ----------------------------------------------------------------------------------------------
# 5. One bad file does not lose the call; --strict; signals


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory) -> Path:
    """Two good images among six bad ones: empty, a folder, text, a 1x1 picture, a damaged PNG, a 100:1
    strip (beyond what the model supports, found only when the batch runs)."""
    folder = tmp_path_factory.mktemp("mixed")
    small_image(folder / "a_good.jpg")
    (folder / "b_empty.jpg").write_bytes(b"")
    (folder / "c_folder.jpg").mkdir()
    cv2.imwrite(str(folder / "d_strip.png"), np.zeros((40, 4000, 3), np.uint8))
    small_image(folder / "e_good.jpg", shift=8)
    (folder / "f_text.png").write_text("no pixels here\n")
    cv2.imwrite(str(folder / "g_dot.png"), np.zeros((1, 1, 3), np.uint8))
    broken = bytearray(cv2.imencode(".png", np.zeros((40, 40, 3), np.uint8))[1].tobytes())
    broken[40] ^= 0xFF  # a CRC error: libpng complains on file descriptor 2 unless the reader silences it
    (folder / "h_crc.png").write_bytes(bytes(broken))
    return folder


BAD = ("b_empty.jpg", "c_folder.jpg", "d_strip.png", "f_text.png", "g_dot.png", "h_crc.png")


def test_folder_with_good_and_bad_images(mixed_folder, tmp_path):
    """Results for every good image, one line per bad one, exit 3, nothing else written.
    On main: the folder stopped the run before any result was written (exit 2). The retry's mutation is
    run by the in-process twin test_a_refused_image_does_not_take_its_batch_with_it."""
    out, pictures = tmp_path / "out" / "r.json", tmp_path / "pics"
    done = run("-m", "runtime.run", "--image-dir", str(mixed_folder), "--out", str(out), "--draw", str(pictures))
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == len(BAD) and all(line.startswith("error: ") and line.endswith("skipped") for line in lines)
    for name, line in zip(BAD, lines):
        assert name in line, (name, line)
    assert "a_good.jpg: " in done.stdout and "e_good.jpg: " in done.stdout
    assert f"{len(BAD)} skipped" in done.stdout
    results = json.loads(out.read_text())
    assert {entry["image_id"] for entry in results} == {0, 4}  # the good images' positions (no COCO number)
    assert sorted(os.listdir(pictures)) == ["a_good.jpg", "e_good.jpg"]
    assert sorted(os.listdir(out.parent)) == ["r.json"]


def test_strict_stops_at_the_first_bad_image(mixed_folder, tmp_path):
    """--strict: exit 2 at b_empty.jpg, one line; what was finished before it (a_good.jpg) is written."""
    out = tmp_path / "r.json"
    done = run("-m", "runtime.run", "--image-dir", str(mixed_folder), "--out", str(out), "--strict", "--batch", "1")
    assert_one_line_error(done, "b_empty.jpg", "--strict")
    assert "e_good.jpg" not in done.stdout and "stopped: the results of the 1 image " in done.stdout
    assert {entry["image_id"] for entry in json.loads(out.read_text())} == {0}
    assert sorted(os.listdir(tmp_path)) == ["r.json"]


def test_every_image_bad_writes_nothing(tmp_path):
    out = tmp_path / "r.json"
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    done = run("-m", "runtime.run", "--image", str(empty), str(tmp_path / "gone.jpg"), "--out", str(out))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 2 and not out.exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_mid_folder_keeps_the_finished_results(tmp_path, signum):
    """Kill runtime.run after its first image: exit 128 + signal, one line, the finished results written
    and valid. On main: SIGTERM left no results at all. The mutation (no KeyboardInterrupt branch in run())
    is run by the in-process twin test_interrupt_in_process_writes_the_finished."""
    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(8):
        small_image(folder / f"{index:012d}.jpg", shift=4 * index)
    out = tmp_path / "r.json"
    child = subprocess.Popen([sys.executable, "-m", "runtime.run", "--image-dir", str(folder), "--out", str(out),
                              "--batch", "1"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        for line in child.stdout:
            if " people (" in line:
                break
        child.send_signal(signum)
        stdout, stderr = child.communicate(timeout=300)
    finally:
        child.kill()
    assert child.returncode == 128 + signum, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"interrupted ({signal.Signals(signum).name}): ") and \
        "finished so far are written" in lines[0], stderr
    results = json.loads(out.read_text())
    finished = int(lines[0].split("the results of the ")[1].split()[0])
    assert 1 <= finished < 8 and len({entry["image_id"] for entry in results}) <= finished
    assert all(len(entry["keypoints"]) == 51 for entry in results)
    assert sorted(os.listdir(tmp_path)) == ["in", "r.json"]


# ----------------------------------------------------------------------------------------------
# 6. Output locations are checked before any long work


def test_unwritable_outputs_fail_before_work(tmp_path):
    """Read-only file system (root passes permission checks, EROFS it cannot): runtime.run --draw and
    export.onnx -o fail before the model is opened / the weights are loaded. On main: after the first
    image, and after 57 s of export."""
    with read_only_disk(tmp_path) as disk:
        done = run("-m", "runtime.run", "--image", str(SAMPLE), "--out", str(tmp_path / "r.json"),
                   "--draw", str(disk / "pics"))
        assert_one_line_error(done, "--draw", "read-only")
        assert "model:" not in done.stdout
        done = run("-m", "export.onnx", "--arch", "w32", "-o", str(disk / "w32.onnx"))
        assert_one_line_error(done, "-o", "read-only")
        assert "[1/4]" not in done.stdout
        with pytest.raises(UserError, match="read-only"):
            check_output_file(disk / "sub" / "x.json", "--out")
        with pytest.raises(UserError, match="read-only"):
            check_output_dir(disk / "pics", "--draw")


def test_a_file_where_a_folder_must_be(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="is a file, not a folder"):
        check_output_dir(blocker, "--draw")
    with pytest.raises(UserError, match="is a file, not a folder"):
        check_output_file(blocker / "x" / "r.json", "--out")
    assert sorted(os.listdir(tmp_path)) == ["file"]


# ----------------------------------------------------------------------------------------------
# 7. Wording for a directory


def test_directory_as_image_or_engine(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    done = run("-m", "runtime.run", "--image", str(folder), "--out", str(tmp_path / "r.json"))
    assert_one_line_error(done, "photos", "is a directory", "--image-dir")
    done = run("-m", "runtime.run", "--engine", str(folder), "--out", str(tmp_path / "r.json"))
    assert_one_line_error(done, "photos", "is a directory")
    assert not (tmp_path / "r.json").exists()


# ----------------------------------------------------------------------------------------------
# 8. SIGINT in benchmarks/parity.py: one line, the rerun resumes to an identical parity.json


def test_parity_interrupted_then_resumed(tmp_path):
    """On main: Python's KeyboardInterrupt traceback. run_cli's branch is mutation-tested by
    test_run_cli_turns_an_interrupt_into_one_line."""
    pytest.importorskip("torch")
    pytest.importorskip("pycocotools")
    need(MINI)
    from benchmarks import parity

    common = ["--rendered", "--backends", "torch", "--limit", "10", "--no-progress"]
    interrupted = tmp_path / "interrupted"
    child = subprocess.Popen([sys.executable, "benchmarks/parity.py", *common, "--out", str(interrupted)], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 600
        while not [p for p in interrupted.glob("cache/*/*.json") if p.name != "identity.json"]:
            assert child.poll() is None and time.monotonic() < deadline, "parity ended before its first image"
            time.sleep(0.05)
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=300)
    finally:
        child.kill()
    assert child.returncode == 130 and "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines()[-1].startswith("interrupted (SIGINT): a rerun of the same command resumes")
    cached = [p for p in interrupted.glob("cache/*/*.json") if p.name != "identity.json"]
    assert 1 <= len(cached) < 10 and no_temporaries(interrupted)

    assert parity.main([*common, "--out", str(interrupted)]) == 0
    assert parity.main([*common, "--out", str(tmp_path / "straight")]) == 0
    resumed, straight = (json.loads((tmp_path / name / "parity.json").read_text())
                         for name in ("interrupted", "straight"))
    for report in (resumed, straight):
        for row in report["backends"]:
            row.pop("speed", None)
    assert resumed == straight


# ----------------------------------------------------------------------------------------------
# The same policies in-process, with stand-in models (fast, so each mutation below was run)


class StandIn:
    """A model that finds nobody, refuses inputs wider than 1000 px as the real backends refuse inputs
    beyond their metadata, and raises ``fault`` (an exception) at call number ``fault_at``."""

    def __init__(self, fault: BaseException | None = None, fault_at: int = 0) -> None:
        from runtime.metadata import ModelMetadata

        self.metadata = ModelMetadata("w32", 512, checkpoint="stand-in")
        self.backend = type("Backend", (), {"name": "stand-in"})()
        self.refine = True  # PoseEstimator's switch, described on the model line
        self.fault, self.fault_at, self.calls = fault, fault_at, 0

    def batch(self, images):
        self.calls += 1
        if self.fault is not None and self.calls == self.fault_at:
            raise self.fault
        if any(image.shape[1] > 1000 for image in images):
            raise UserError("input beyond the 1000 px side this stand-in takes")
        return [[] for _ in images]


def run_in_process(monkeypatch, capsys, model: StandIn, *argv: str) -> tuple[int, str, list[str]]:
    """Exit code, stdout and stderr lines of runtime.run with ``model`` in place of the real one."""
    from runtime import run as cli

    monkeypatch.setattr(cli, "open_estimator", lambda args: model)
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip().splitlines()


def test_a_refused_image_does_not_take_its_batch_with_it(mixed_folder, tmp_path, monkeypatch, capsys):
    """Mutation tried: estimate() without the image-by-image retry -> a_good.jpg is skipped with d_strip.png."""
    out = tmp_path / "r.json"
    code, stdout, lines = run_in_process(monkeypatch, capsys, StandIn(), "--image-dir", str(mixed_folder), "--out",
                                         str(out))
    assert code == 3 and [Path(line.split(": ")[1]).name for line in lines] == list(BAD)
    assert "a_good.jpg: 0 people" in stdout and "e_good.jpg: 0 people" in stdout
    assert "wrote 0 people from 2 images" in stdout and json.loads(out.read_text()) == []


def test_interrupt_in_process_writes_the_finished(mixed_folder, tmp_path, monkeypatch, capsys):
    """SIGTERM (as run_cli's handler raises it) during the second batch: the first batch's image is
    written and the interruption carries the line. Mutation tried: no KeyboardInterrupt branch in run()
    -> no results file and the plain "nothing half-written" line."""
    from runtime.errors import Interrupted

    out = tmp_path / "r.json"
    model = StandIn(Interrupted(signal.SIGTERM), fault_at=2)
    code, _, lines = run_in_process(monkeypatch, capsys, model, "--image-dir", str(mixed_folder), "--out", str(out),
                                    "--batch", "1")
    assert code == 143 and lines[-1].startswith("interrupted (SIGTERM): the results of the 1 image finished so far")
    assert out.exists() and json.loads(out.read_text()) == []


def test_a_model_computing_nan_is_refused():
    """PoseEstimator on a backend whose candidates are NaN: a ModelFault, not "0 people".
    Mutation tried: check_finite removed from PoseEstimator.batch -> an empty list of people."""
    from runtime.errors import ModelFault
    from runtime.metadata import ModelMetadata
    from runtime.pipeline import PoseEstimator

    class NanBackend:
        name, device_io, max_batch = "nan-model", None, None
        metadata = ModelMetadata("w32", 512)

        def run(self, feed):
            n, h, w, _ = feed["image"].shape
            return {"candidates": np.full((n, 17, 30, 5), np.nan, np.float32),
                    "heatmap": np.full((n, 17, h, w), np.nan, np.float32),
                    "tags": np.zeros((n, 17, h, w, 2), np.float32),
                    "tiles": np.full((n, 17, h // 8, w // 16, 5), np.nan, np.float32)}

    with pytest.raises(ModelFault, match="nan-model: the model computes NaN"):
        PoseEstimator(NanBackend())(np.zeros((64, 96, 3), np.uint8))


def test_run_cli_turns_an_interrupt_into_one_line(capsys):
    """Mutation tried: run_cli without its KeyboardInterrupt branch -> the KeyboardInterrupt escapes."""
    import argparse

    from runtime.cli import run_cli

    def interrupted(_args):
        raise KeyboardInterrupt

    assert run_cli(argparse.ArgumentParser(prog="tool"), interrupted, [], interrupted="a rerun resumes") == 130
    assert capsys.readouterr().err == "interrupted (SIGINT): a rerun resumes\n"
