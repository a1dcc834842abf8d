"""Property tests (hypothesis): the CLIs' argument parsing and the image reader, driven with arbitrary
values and bytes. Every outcome is success or one line on stderr with exit code 2, never a traceback.

The CLIs run in-process; where a valid command would start real work (open a model, export, compute),
that step is replaced by a sentinel, so reaching it counts as success. Paths are relative names inside a
temporary working folder (what a command line can hold: no NUL byte).
Mutations tried: run_cli without its one-line usage error (argparse's usage block) and without collapsing
a message's line breaks (a name holding "\n") -> both fail here; read_image without its cv2.error
guards -> see the reader test below.
"""
from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from runtime.errors import UserError
from tests.conftest import REPO

SAMPLE_JPEG = (REPO / "runtime" / "samples" / "000000000785.jpg").read_bytes()[:6000]


class Reached(Exception):
    """The command was valid and got as far as its real work."""


def stop(*_args, **_kwargs):
    raise Reached


numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**400, 10**400),
                    st.sampled_from([0.0, -0.0, 1.0, 0.5, 2.0, 0.25, 4.0, 1e-320, 1e308, math.nan, math.inf]))
number_text = numbers.map(lambda v: repr(v) if isinstance(v, float) else str(v))
odd_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
scales_text = st.one_of(st.lists(number_text, min_size=0, max_size=4).map(",".join), odd_text)
# Relative names only (no leading / or ..), so the probes stay inside the temporary working folder.
names = st.one_of(odd_text, st.sampled_from(["", ".", "a\nb.jpg", "x y.png", "é.jpg", "a\rb.json", "sub/", "~",
                                             "dir/a.jpg", "img.jpg", "\u2028.jpg"])
                  ).filter(lambda s: not s.startswith(("/", "-")) and ".." not in s)


def outcome(main, argv: list[str]) -> None:
    """Run ``main(argv)``: success, the sentinel, or exit 2 with exactly one line on stderr."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
    except Reached:
        return
    except SystemExit as exit_:
        code = exit_.code
    lines = err.getvalue().strip().splitlines()
    if code == 0:
        return
    if code == 3:  # runtime.run: done, some images skipped with one line each
        assert lines and all(line.startswith("error: ") and line.endswith("skipped") for line in lines), argv
        return
    assert code == 2, (argv, code, err.getvalue())
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in err.getvalue(), (argv, err.getvalue())
    assert len(lines) == 1 or all(line.endswith("skipped") for line in lines), (argv, err.getvalue())


def flag_values(flags: dict[str, st.SearchStrategy]) -> st.SearchStrategy[list[str]]:
    """Any subset of ``flags``, each with a drawn value, in a drawn order."""
    pairs = st.lists(st.sampled_from(sorted(flags)), unique=True).flatmap(
        lambda chosen: st.tuples(*[flags[name].map(lambda v, n=name: [f"{n}={v}"]) for name in chosen]))
    return pairs.map(lambda groups: [arg for group in groups for arg in group])


PROPERTY = settings(max_examples=80, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@PROPERTY
@given(flag_values({"--scales": scales_text, "--batch": number_text, "--out": names, "--draw": names,
                    "--image": names, "--input-size": number_text, "--arch": odd_text, "--device": odd_text,
                    "--checkpoint": odd_text, "--video": names, "--image-dir": names, "--engine": names}))
@example(["--image-dir=a\nb"]).via("a name with a line break")
@example(["--scales=1,nan", "--batch=-1"]).via("values issue 14 found")
def test_runtime_run_arguments(workdir, monkeypatch, argv):
    """The model is a stand-in that finds nobody, so images are read, skipped and results written for real."""
    from runtime import run

    (workdir / "dir").mkdir(exist_ok=True)
    for name in ("img.jpg", "dir/a.jpg", "é.jpg"):
        (workdir / name).write_bytes(SAMPLE_JPEG if name != "é.jpg" else b"")
    monkeypatch.setattr(run, "open_estimator", lambda args: NobodyEstimator())
    outcome(run.main, argv)


class NobodyEstimator:
    """Accepts any image and finds no person (what the CLI does around the model is under test)."""

    def __init__(self) -> None:
        from runtime.metadata import ModelMetadata

        self.metadata = ModelMetadata("w32", 512, checkpoint="stand-in")
        self.backend = type("Backend", (), {"name": "stand-in"})()
        self.refine = True  # PoseEstimator's switch, described on the model line

    def batch(self, images):
        return [[] for _ in images]


@PROPERTY
@given(flag_values({"--arch": st.sampled_from(["w32", "w48", "w64", ""]), "--scales": scales_text,
                    "--opset": number_text, "--input-size": number_text, "--precision": odd_text,
                    "-o": names.map(lambda s: s + ".onnx"), "--verify-image": names}))
def test_export_onnx_arguments(workdir, monkeypatch, argv):
    pytest.importorskip("onnx")
    from export import onnx as exporter

    monkeypatch.setattr(exporter, "build", stop)
    outcome(exporter.main, argv)


@PROPERTY
@given(flag_values({"--onnx": names, "--shapes": odd_text, "--max-batch": number_text, "--workspace": number_text,
                    "-o": names, "--timing-cache": names}))
def test_export_trt_arguments(workdir, monkeypatch, argv):
    from export import trt

    monkeypatch.setattr(trt, "build_engine", stop)
    outcome(trt.main, argv)


@PROPERTY
@given(flag_values({"--onnx": names, "--method": odd_text, "--target": odd_text, "--images": number_text, "-o": names,
                    "--calib": names, "--cache-dir": names}))
def test_calib_arguments(workdir, monkeypatch, argv):
    pytest.importorskip("onnx")
    import calib.__main__ as calib_cli
    from calib import quantize

    monkeypatch.setattr(quantize, "open_source", stop)
    outcome(calib_cli.main, argv)


@PROPERTY
@given(flag_values({"--scales": scales_text, "--limit": number_text, "--backends": odd_text,
                    "--input-size": number_text, "--calib-images": number_text, "--out": names,
                    "--ann": names, "--coco-root": names}))
def test_parity_arguments(workdir, monkeypatch, argv):
    from benchmarks import parity

    monkeypatch.setattr(parity, "plan_backends", stop)
    outcome(parity.main, argv)


@PROPERTY
@given(flag_values({"--images": number_text, "--warmup": number_text, "--image-dir": names, "--json": names,
                    "--engine": names, "--input-size": number_text}))
def test_soak_arguments(workdir, monkeypatch, argv):
    from benchmarks import soak

    monkeypatch.setattr("runtime.backends.open_backend", stop)
    monkeypatch.setattr("runtime.backends.open_torch", stop)
    outcome(soak.main, argv)


@PROPERTY
@given(flag_values({"--fp32": names, "--int8": names, "--images": number_text, "--rounds": number_text}))
def test_int8_isa_arguments(workdir, monkeypatch, argv):
    from benchmarks import int8_isa

    monkeypatch.setattr("calib.ort_cpu.optimized_op_counts", stop)
    monkeypatch.setattr(int8_isa, "child", stop)
    outcome(int8_isa.main, argv)


# ----------------------------------------------------------------------------------------------
# The image reader


def mutated(data: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    buffer = bytearray(data[: max(1, cut)])
    for position, value in edits:
        buffer[position % len(buffer)] = value
    return bytes(buffer)


def png(height: int, width: int, channels: int, deep: bool) -> bytes:
    import cv2

    image = np.arange(height * width * channels, dtype=np.uint16 if deep else np.uint8).reshape(height, width, channels)
    return cv2.imencode(".png", image)[1].tobytes()


image_bytes = st.one_of(
    st.binary(max_size=512),
    st.builds(mutated, st.just(SAMPLE_JPEG), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                                      max_size=8), st.integers(0, len(SAMPLE_JPEG))),
    st.builds(lambda data, edits, cut: mutated(data, edits, cut),
              st.builds(png, st.integers(1, 40), st.integers(1, 40), st.sampled_from([1, 3, 4]), st.booleans()),
              st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4), st.integers(0, 4000)))


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=image_bytes, suffix=st.sampled_from([".jpg", ".png", ".bmp", "", ".webp"]))
def test_image_reader_on_arbitrary_bytes(tmp_path, data, suffix):
    from runtime.preprocess import MIN_IMAGE_SIDE, read_image

    path = tmp_path / f"input{suffix}"
    path.write_bytes(data)
    try:
        image = read_image(path)
    except UserError as error:
        assert "\n" not in str(error) and str(path) in str(error)
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert min(image.shape[:2]) >= MIN_IMAGE_SIDE


# ----------------------------------------------------------------------------------------------
# The other entry points: parsing alone (their work is replaced by the sentinel)


@pytest.mark.parametrize("module_name", ["benchmarks.coco", "benchmarks.speed", "benchmarks.precision",
                                         "export.decode_onnx"])
@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(tokens=st.lists(st.one_of(st.sampled_from(["--scales", "--images", "--limit", "--opset", "--repeat",
                                                  "--method", "--section", "--device", "--arch", "-o", "--out",
                                                  "--input-size", "--calib-images", "--help-me", "-x"]),
                                 number_text, names), max_size=6))
def test_other_entry_points_parse(workdir, monkeypatch, module_name, tokens):
    import importlib

    module = importlib.import_module(module_name)
    monkeypatch.setattr(module, "run", stop)
    outcome(module.main, tokens)
