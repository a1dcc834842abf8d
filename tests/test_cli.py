"""The CLIs as a user runs them: help, clear one-line errors with exit code 2, nothing half-written."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("command", [["-m", "runtime.run"], ["benchmarks/coco.py"], ["benchmarks/speed.py"]])
def test_help(command):
    done = run(*command, "--help")
    assert done.returncode == 0, done.stderr
    assert "Examples:" in done.stdout


def test_run_help_names_every_flag():
    text = run("-m", "runtime.run", "--help").stdout
    for flag in ("--arch", "--input-size", "--checkpoint", "--image", "--out", "--scales", "--draw"):
        assert flag in text


def assert_one_line_error(done: subprocess.CompletedProcess, *needles: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_missing_checkpoint(tmp_path):
    out = tmp_path / "r.json"
    done = run("-m", "runtime.run", "--checkpoint", str(tmp_path / "nope.pth"), "--out", str(out))
    assert_one_line_error(done, "nope.pth")
    assert not out.exists()


def test_checkpoint_of_the_other_arch(tmp_path):
    done = run("-m", "runtime.run", "--arch", "w32", "--checkpoint", "w48_512", "--out", str(tmp_path / "r.json"))
    assert_one_line_error(done, "w48", "--arch w48")


def test_bad_scales(tmp_path):
    done = run("-m", "runtime.run", "--scales", "2,0.5", "--out", str(tmp_path / "r.json"))
    assert_one_line_error(done, "scale")


def test_missing_image_writes_nothing(tmp_path):
    out = tmp_path / "r.json"
    done = run("-m", "runtime.run", "--image", str(tmp_path / "missing.jpg"), "--out", str(out))
    assert_one_line_error(done, "missing.jpg")
    assert not out.exists() and not list(tmp_path.iterdir())


def test_unwritable_output(tmp_path):
    target = tmp_path / "folder"
    target.mkdir()
    done = run("-m", "runtime.run", "--out", str(target))
    assert_one_line_error(done, str(target))


def test_readme_commands_are_what_ci_runs():
    """`.ci/run` installs and tests exactly as README's two commands say."""
    readme = (REPO / "README.md").read_text()
    block = re.search(r"## Two commands.*?```bash\n(.*?)```", readme, re.S).group(1)
    commands = [line for line in block.splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert commands == [line for line in ci if line in commands] == ci[-2:]


def test_video_frames_are_images(tmp_path):
    """--video: every frame is one image, image_id = frame number, one summary line per frame."""
    import json

    import cv2
    import numpy as np

    path = tmp_path / "clip.avi"
    frame = cv2.resize(cv2.imread(str(REPO / "runtime" / "samples" / "000000000785.jpg")), (128, 85))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (128, 85))
    for shift in range(3):
        writer.write(np.roll(frame, 4 * shift, axis=1))
    writer.release()
    out = tmp_path / "video.json"
    done = run("-m", "runtime.run", "--video", str(path), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert [line.split(":")[0] for line in done.stdout.splitlines() if line.startswith("clip_")] == [
        "clip_000000", "clip_000001", "clip_000002"]
    assert {entry["image_id"] for entry in json.loads(out.read_text())} <= {0, 1, 2}
    # the annotated video beside the results (--out with .mp4): every frame, at the decoded input's size
    # and rate, the synthetic banner drawn in red across the top
    source = cv2.VideoCapture(str(path)).read()[1]
    video = cv2.VideoCapture(str(tmp_path / "video.mp4"))
    assert video.get(cv2.CAP_PROP_FPS) == 5
    frames = []
    while (read := video.read())[0]:
        frames.append(read[1])
    assert len(frames) == 3 and {f.shape for f in frames} == {source.shape}
    assert all(f[2, :, 2].mean() > 150 > f[2, :, 0].mean() for f in frames)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.avi", "video.json", "video.mp4"]  # no temporary left
    assert "annotated video" in done.stdout


def test_unreadable_video(tmp_path):
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"not a video at all")
    done = run("-m", "runtime.run", "--video", str(path), "--out", str(tmp_path / "r.json"))
    assert_one_line_error(done, "broken.mp4")


def test_missing_plan_points_at_the_engine_builder(tmp_path):
    done = run("-m", "runtime.run", "--engine", str(tmp_path / "w32.plan"), "--image",
               str(REPO / "runtime" / "samples" / "000000000785.jpg"), "--out", str(tmp_path / "r.json"))
    assert_one_line_error(done, "w32.plan: no such model file", "python -m export.trt")


@pytest.mark.parametrize("flags, needle", [(["--max-people", "0"], "--max-people 0"),
                                           (["--min-score", "1.5"], "--min-score 1.5")])
def test_people_filters_are_checked(tmp_path, flags, needle):
    done = run("-m", "runtime.run", *flags, "--image", str(REPO / "runtime" / "samples" / "000000000785.jpg"),
               "--out", str(tmp_path / "r.json"))
    assert_one_line_error(done, needle)
    assert not (tmp_path / "r.json").exists()


def test_kept_people_threshold_then_best_in_results_order():
    """Mutation tried: returning the best people sorted by score instead of in results order fails this."""
    import numpy as np

    from runtime.results import Person
    from runtime.run import kept_people

    people = [Person(np.zeros((17, 3)), np.zeros((17, 2)), s) for s in (0.3, 0.05, 0.9, 0.5, 0.2)]
    scores = lambda kept: [p.score for p in kept]  # noqa: E731
    assert scores(kept_people(people, None, None)) == [0.3, 0.05, 0.9, 0.5, 0.2]
    assert scores(kept_people(people, 0.2, None)) == [0.3, 0.9, 0.5, 0.2]
    assert scores(kept_people(people, None, 3)) == [0.3, 0.9, 0.5]
    assert scores(kept_people(people, 0.25, 3)) == [0.3, 0.9, 0.5]


def _parsers():
    from benchmarks import modes, parity
    from export import trt
    from runtime import run as runtime_run

    return {"runtime.run": runtime_run.build_parser(), "export.trt": trt.build_parser(),
            "parity.py": parity.build_parser(), "modes.py": modes.build_parser()}


def test_help_gives_every_default_and_a_few_examples():
    """Every flag's help says its default (or that it is required), the epilog is 2-3 examples and a
    pointer to README, and no test hook shows. Mutations tried: dropping "(default: 8)" from modes.py's
    --images; the old parity epilog (whole docstring, with HRNET_PARITY_STOP_AFTER)."""
    import argparse

    for name, parser in _parsers().items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
                continue
            assert "default" in action.help or action.required, f"{name} {action.option_strings}: no default"
        text = parser.format_help()
        examples = text.split("Examples:\n", 1)[1].split("\n\n")[0].splitlines()
        assert 2 <= len(examples) <= 3 and "Details: README.md" in text, name
        assert "HRNET_PARITY_STOP_AFTER" not in text and "hook" not in text.lower(), name


def test_real_weights_hint_names_the_files_own_arch():
    """A synthetic w48 file: the hint exports w48 with its own zoo checkpoint, never w32's; the PyTorch
    path is told to pass the checkpoint (mutation tried: zoo_entry_for("w32", ...) fails it)."""
    from runtime.metadata import ModelMetadata
    from runtime.run import real_weights_hint

    class File:
        path = "w48.onnx"

    class Torch:
        path = None

    meta = ModelMetadata("w48", 512, checkpoint="synthetic:0")
    hint = real_weights_hint(File(), meta)
    assert "python -m export.onnx --arch w48 --input-size 512 --checkpoint w48_512" in hint and "w32" not in hint
    assert real_weights_hint(Torch(), meta) == "Pass --checkpoint w48_512 (or a .pth file) for real results."


def test_missing_onnx_points_at_the_exporter(tmp_path):
    done = run("-m", "runtime.run", "--engine", str(tmp_path / "w32.onnx"), "--image",
               str(REPO / "runtime" / "samples" / "000000000785.jpg"), "--out", str(tmp_path / "r.json"))
    assert_one_line_error(done, "w32.onnx: no such model file", "python -m export.onnx")
    assert "export.trt" not in done.stderr


def test_a_run_in_a_log_shows_progress_and_says_what_each_time_is(tmp_path):
    """Not a terminal: the first batch (model run + numba compilation) has its start and end lines on
    stdout, with the run's other lines (stderr keeps only errors); each image's line says its time is the batch's average; the summary counts "2 images".
    Mutation tried: the ``working`` block removed from ``process`` fails the stderr check."""
    samples = sorted((REPO / "runtime" / "samples").glob("*.jpg"))[:2]
    done = run("-m", "runtime.run", "--no-refine", "--batch", "2", "--image", *map(str, samples),
               "--out", str(tmp_path / "r.json"))
    assert done.returncode == 0, done.stderr
    assert "first batch (2 images): compiling the grouping kernels (first run only)" in done.stdout
    assert re.search(r"first batch \(2 images\).*: done in \d", done.stdout) and not done.stderr.strip()
    lines = [line for line in done.stdout.splitlines() if line.startswith(tuple(p.name for p in samples))]
    assert len(lines) == 2 and all("the average of a batch of 2" in line for line in lines)
    assert "refine off" in done.stdout and " from 2 images to " in done.stdout
