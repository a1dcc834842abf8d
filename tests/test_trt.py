"""The TensorRT engine builder (``python -m export.trt``) and backend (``runtime.backends.trt_backend``).

Two kinds of tests, kept apart on purpose:

* CPU-only tests of our own code around TensorRT, which run everywhere: the CLI's help and its one-line
  error without TensorRT, ``open_backend`` on a ``.plan`` without TensorRT or without its sidecar,
  and the pure functions (``--shapes`` parsing and validation, default and multi-scale profiles,
  the sidecar's contents and the compatibility check against a TensorRT version and GPU given by
  hand, the backends' I/O check on specs given by hand). None of them runs, imitates or stands in for TensorRT; they say nothing about whether
  TensorRT accepts the graph.
* TensorRT tests (marker ``gpu`` and ``tensorrt`` importable, skipped with the reason otherwise):
  export a W32 ONNX file with synthetic weights, build an FP32 engine, and check it against ONNX
  Runtime on the CPU, the device grouping against the host grouping on the engine's own outputs,
  the profile error and ``runtime.run --engine x.plan``.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from export import trt as builder
from runtime.backends.trt_backend import (
    GpuFacts,
    check_compatible,
    outside_profile,
    profile_ranges,
    read_sidecar,
    sidecar_metadata,
    sidecar_path,
)
from runtime.errors import UserError
from runtime.metadata import DecodeConfig, ModelMetadata
from tests.conftest import MINI, REPO


def _tensorrt_importable() -> bool:
    if importlib.util.find_spec("tensorrt") is None:
        return False
    try:
        import tensorrt  # noqa: F401
    except Exception:  # noqa: BLE001 - a stub or broken wheel: not usable, whatever it raises
        return False
    return True


HAVE_TENSORRT = _tensorrt_importable()
W32 = ModelMetadata("w32", 512)
W32_640 = ModelMetadata("w32", 640)
MULTI = ModelMetadata("w32", 512, DecodeConfig(scales=(2.0, 1.0, 0.5)))
GPU = GpuFacts("NVIDIA H100 80GB HBM3", "9.0")


def _onnx_facts(metadata: ModelMetadata = W32, path: str = "/models/w32.onnx") -> builder.OnnxFacts:
    props = {**metadata.to_props(), "export.input_multiple": "64", "export.opset": "17"}
    return builder.OnnxFacts(Path(path), metadata, props, 64, "ab" * 32)


def _sidecar(plan: Path, metadata: ModelMetadata = W32, version: str = "10.13.3.9", gpu: GpuFacts = GPU,
             plan_bytes: bytes = b"not an engine") -> dict:
    import hashlib

    shapes = builder.default_shapes(metadata, 64)
    profiles = builder.input_profiles(metadata, shapes, 4, 64)
    return builder.make_sidecar(plan, hashlib.sha256(plan_bytes).hexdigest(), _onnx_facts(metadata), shapes, 4,
                                profiles, version, gpu, 4.0)


def _write_plan(folder: Path, sidecar: bool = True, **kwargs) -> Path:
    plan = folder / "w32.plan"
    plan.write_bytes(b"not an engine")
    if sidecar:
        sidecar_path(plan).write_text(json.dumps(_sidecar(plan, **kwargs)))
    return plan


# ----------------------------------------------------------------------------------------------
# The CLI without TensorRT


def test_cli_help_documents_every_flag_without_tensorrt():
    """``--help`` exits 0 and names every flag with its default, whether or not TensorRT is installed."""
    done = subprocess.run([sys.executable, "-m", "export.trt", "--help"], cwd=REPO, capture_output=True, text=True,
                          check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    for flag in ("--onnx", "--shapes", "--max-batch", "--workspace", "--timing-cache", "-o FILE, --output FILE"):
        assert flag in done.stdout, flag
    section = "TensorRT engines and the GPU path"
    for text in ("default: 4, as runtime.run --batch", "512x512,512x704,1024x1024", "strongly typed", section):
        assert text in done.stdout, text
    # The details the help points to are in that README section.
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    details = readme[readme.index(f"## {section}"):]
    details = details[:details.find("\n## ", 4)]
    for text in ("STRONGLY_TYPED", "TF32", "hrnet-deploy[trt]"):
        assert text in details, text


def test_importing_the_builder_and_backend_does_not_import_tensorrt():
    """TensorRT is imported only inside the functions that build or open an engine."""
    code = ("import sys, export.trt, runtime.backends, runtime.backends.trt_backend; "
            "print('tensorrt' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.skipif(HAVE_TENSORRT, reason="tensorrt is importable here: the missing-TensorRT message cannot be shown")
def test_cli_build_without_tensorrt_is_one_line_exit_2(tmp_path):
    model = tmp_path / "w32.onnx"
    model.write_bytes(b"whatever: TensorRT is asked for before the file is read")
    done = subprocess.run([sys.executable, "-m", "export.trt", "--onnx", str(model)], cwd=REPO,
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "pip install 'hrnet-deploy[trt]'" in lines[0] and "NVIDIA GPU" in lines[0]
    assert not list(tmp_path.glob("*.plan*")), "nothing may be written"


def test_cli_flag_errors_are_one_line(tmp_path):
    """Bad -o suffix and --workspace/--max-batch values are refused before TensorRT is needed."""
    model = tmp_path / "w32.onnx"
    model.write_bytes(b"x")
    for extra, text in ((["-o", str(tmp_path / "w32.bin")], "must end in .plan or .engine"),
                        (["--workspace", "0"], "--workspace 0"), (["--max-batch", "0"], "--max-batch 0")):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = builder.main(["--onnx", str(model), *extra])
        assert code == 2 and text in err.getvalue() and len(err.getvalue().strip().splitlines()) == 1, err.getvalue()


# ----------------------------------------------------------------------------------------------
# open_backend on a plan file, without TensorRT


def test_plan_without_sidecar_is_a_user_error(tmp_path):
    from runtime.backends import open_backend

    plan = _write_plan(tmp_path, sidecar=False)
    with pytest.raises(UserError, match=r"w32\.plan\.json is missing.*python -m export\.trt --onnx"):
        open_backend(plan)


def test_damaged_sidecar_is_a_user_error(tmp_path):
    from runtime.backends import open_backend

    plan = _write_plan(tmp_path, sidecar=False)
    sidecar_path(plan).write_text("{not json")
    with pytest.raises(UserError, match="not a readable engine sidecar"):
        open_backend(plan)
    sidecar_path(plan).write_text(json.dumps({"format": "something else"}))
    with pytest.raises(UserError, match="not an hrnet-deploy engine sidecar"):
        open_backend(plan)


@pytest.mark.skipif(HAVE_TENSORRT, reason="tensorrt is importable here: the missing-TensorRT message cannot be shown")
def test_plan_without_tensorrt_is_a_user_error(tmp_path):
    """open_backend routes .plan to TensorRT whatever the device default ("cpu") and names what to install."""
    from runtime.backends import open_backend

    plan = _write_plan(tmp_path)
    for device in ("cpu", "cuda", "cuda:1"):
        with pytest.raises(UserError, match=r"pip install 'hrnet-deploy\[trt\]'"):
            open_backend(plan, device=device)


def test_trt_backend_refuses_a_cpu_device(tmp_path):
    from runtime.backends.trt_backend import TrtBackend

    with pytest.raises(UserError, match="use cuda or cuda:N"):
        TrtBackend(_write_plan(tmp_path), device="cpu")


# ----------------------------------------------------------------------------------------------
# Shapes and profiles (pure functions, hand-made values)


def test_parse_shapes():
    shapes = builder.parse_shapes("512x512, 512X768 ,1024x1024")
    assert shapes == builder.BaseShapes((512, 512), (512, 768), (1024, 1024))
    assert shapes.text() == "512x512,512x768,1024x1024"
    for bad in ("512x512,1024x1024", "512x512,512*768,1024x1024", "axb,512x512,512x512", "512x512,,1024x1024"):
        with pytest.raises(UserError, match="--shapes"):
            builder.parse_shapes(bad)


def test_check_shapes():
    good = builder.BaseShapes((512, 512), (512, 704), (1024, 1024))
    assert builder.check_shapes(good, 64, 4096) == good
    with pytest.raises(UserError, match="multiple of 64"):
        builder.check_shapes(builder.BaseShapes((512, 500), (512, 704), (1024, 1024)), 64)
    with pytest.raises(UserError, match="widths must satisfy MIN <= OPT <= MAX"):
        builder.check_shapes(builder.BaseShapes((512, 768), (512, 704), (1024, 1024)), 64)
    with pytest.raises(UserError, match="heights must satisfy MIN <= OPT <= MAX"):
        builder.check_shapes(builder.BaseShapes((512, 512), (1088, 704), (1024, 1024)), 64)
    with pytest.raises(UserError, match="beyond the 768 px"):
        builder.check_shapes(good, 64, 768)


def test_default_shapes_from_metadata():
    assert builder.default_shapes(W32, 64).text() == "512x512,512x704,1024x1024"
    assert builder.default_shapes(W32_640, 64).text() == "640x640,640x896,1280x1280"
    capped = ModelMetadata("w32", 512, max_input_side=800)
    assert builder.default_shapes(capped, 64).text() == "512x512,512x704,768x768"
    for metadata in (W32, W32_640):
        builder.check_shapes(builder.default_shapes(metadata, 64), 64, metadata.max_input_side)


def test_single_scale_profile():
    shapes = builder.default_shapes(W32, 64)
    assert builder.input_profiles(W32, shapes, 4, 64) == {
        "image": {"min": [1, 512, 512, 3], "opt": [1, 512, 704, 3], "max": [4, 1024, 1024, 3]}}
    with pytest.raises(UserError, match="--max-batch 0"):
        builder.input_profiles(W32, shapes, 0, 64)


def test_multi_scale_profiles():
    shapes = builder.BaseShapes((512, 512), (512, 704), (1024, 1024))
    profiles = builder.input_profiles(MULTI, shapes, 2, 64)
    assert list(profiles) == ["image_0", "image_1", "image_2"]  # scales 2, 1, 0.5
    assert profiles["image_0"] == {"min": [1, 1024, 1024, 3], "opt": [1, 1024, 1408, 3], "max": [2, 2048, 2048, 3]}
    assert profiles["image_1"] == {"min": [1, 512, 512, 3], "opt": [1, 512, 704, 3], "max": [2, 1024, 1024, 3]}
    # 0.5 x 704 = 352 is not a multiple of 64: OPT rounds to the nearest multiple inside [MIN, MAX].
    assert profiles["image_2"] == {"min": [1, 256, 256, 3], "opt": [1, 256, 384, 3], "max": [2, 512, 512, 3]}


@pytest.mark.parametrize("scales", [(2.0, 1.0, 0.5), (1.5, 1.0), (1.0, 0.75)])
def test_multi_scale_profiles_cover_the_preprocessing(scales):
    """Every image whose scale-1 input lies in the base profile has every other scale inside its own
    profile, for the sizes ``runtime.preprocess`` really makes (a range of aspect ratios)."""
    from runtime.preprocess import multi_scale_geometry

    metadata = ModelMetadata("w32", 512, DecodeConfig(scales=scales))
    shapes = builder.default_shapes(metadata, 64)
    ranges = profile_ranges(builder.input_profiles(metadata, shapes, 4, 64))
    base = metadata.decode.base
    inside = 0
    for width, height in [(640, 480), (480, 640), (640, 427), (500, 333), (1000, 510), (333, 640), (640, 640),
                          (1920, 1080), (300, 599), (2000, 1000), (640, 200)]:
        geometries = multi_scale_geometry(width, height, metadata.input_size, metadata.decode.scales)
        feed = {name: (1, g.input_size[1], g.input_size[0], 3) for name, g in zip(metadata.input_names, geometries)}
        base_name = metadata.input_names[base]
        if outside_profile({base_name: feed[base_name]}, ranges) is None:
            inside += 1
            assert outside_profile(feed, ranges) is None, (width, height, feed)
    assert inside >= 8


def test_outside_profile_message():
    ranges = profile_ranges(builder.input_profiles(W32, builder.default_shapes(W32, 64), 4, 64))
    assert outside_profile({"image": (4, 512, 1024, 3)}, ranges) is None
    assert outside_profile({"image": (1, 512, 512, 3)}, ranges) is None
    message = outside_profile({"image": (1, 512, 1088, 3)}, ranges)
    assert message == ("input 'image' is batch 1, 512x1088 (HxW), outside the engine's profile "
                       "(batch 1..4, 512x512 .. 1024x1024 (HxW))")
    assert "batch 5" in outside_profile({"image": (5, 512, 704, 3)}, ranges)


# ----------------------------------------------------------------------------------------------
# The sidecar and the compatibility check (pure functions, hand-made values)


def test_sidecar_round_trip(tmp_path):
    plan = _write_plan(tmp_path, metadata=MULTI)
    sidecar = read_sidecar(plan)
    assert sidecar["tensorrt_version"] == "10.13.3.9" and sidecar["gpu"] == {"name": GPU.name,
                                                                              "compute_capability": "9.0"}
    assert sidecar["precision"] == "fp32" and sidecar["strongly_typed"] and sidecar["tf32"] is False
    assert sidecar["source_onnx"] == {"path": str(Path("/models/w32.onnx").resolve()), "sha256": "ab" * 32}
    assert sidecar["input_multiple"] == 64 and sidecar["max_batch"] == 4
    assert sidecar["base_shapes"] == {"min": "512x512", "opt": "512x704", "max": "1024x1024"}
    assert list(sidecar["profiles"][0]) == MULTI.input_names
    assert sidecar["metadata"]["export.opset"] == "17"  # the ONNX file's other props travel too
    # The metadata is the ONNX file's, with max_input_side set to the profile's largest side.
    from dataclasses import replace

    assert sidecar_metadata(sidecar, plan) == replace(MULTI, max_input_side=1024)


def test_compatible_sidecar_passes():
    plan = Path("w32.plan")
    check_compatible(_sidecar(plan), plan, "10.13.3.9", GPU)


@pytest.mark.parametrize("version, gpu, text", [
    ("10.13.2.6", GPU, "built with TensorRT 10.13.3.9, this is TensorRT 10.13.2.6"),
    ("11.1.0.106", GPU, "built with TensorRT 10.13.3.9, this is TensorRT 11.1.0.106"),
    ("10.13.3.9", GpuFacts("NVIDIA H200", "9.0"),
     "built for NVIDIA H100 80GB HBM3 (compute capability 9.0), this is NVIDIA H200"),
    ("10.13.3.9", GpuFacts("NVIDIA H100 80GB HBM3", "8.0"), "this is NVIDIA H100 80GB HBM3 (compute capability 8.0)"),
])
def test_incompatible_sidecar_is_one_line_naming_the_rebuild(version, gpu, text):
    plan = Path("models/w32.plan")
    with pytest.raises(UserError) as caught:
        check_compatible(_sidecar(plan), plan, version, gpu)
    message = str(caught.value)
    assert "\n" not in message and text in message
    assert message.startswith("models/w32.plan: ")
    assert f"python -m export.trt --onnx {Path('/models/w32.onnx').resolve()} -o models/w32.plan" in message


def test_network_flags_arithmetic():
    """Our creation-flag arithmetic on the enum values TensorRT's headers define (NvInfer.h: 10.x
    ``kEXPLICIT_BATCH = 0, kSTRONGLY_TYPED = 1``; 11.x ``kSTRONGLY_TYPED = 0``, deprecated and ignored,
    EXPLICIT_BATCH removed), and an enum without the flag. Plain namespaces holding those integers,
    not TensorRT: whether TensorRT builds a strongly typed network is for the GPU tests below."""
    from types import SimpleNamespace

    def fake(**values):
        return SimpleNamespace(NetworkDefinitionCreationFlag=SimpleNamespace(**values))

    assert builder.network_flags(fake(EXPLICIT_BATCH=0, STRONGLY_TYPED=1)) == 0b10
    assert builder.network_flags(fake(STRONGLY_TYPED=0, PREFER_AOT_PYTHON_PLUGINS=1)) == 0b01
    assert builder.network_flags(fake(PREFER_AOT_PYTHON_PLUGINS=1)) == 0


def test_check_io_compares_names_dtypes_ranks_and_fixed_dimensions():
    """``Backend._check_io``, the one I/O check of the ONNX and TensorRT backends, on specs written by
    hand: the specs the metadata promises pass; another order fails only where order counts (ONNX);
    another dtype, rank or fixed dimension fails with the tensor named; a dynamic dimension matches
    any size. Mutations tried: dropping the fixed-dimension comparison (the 18-joint case passes) and
    comparing sorted names for ordered files (the reordered case passes): both fail this test."""
    from dataclasses import replace as changed

    from runtime.backends.base import Backend, io_specs

    class Loaded(Backend):
        path = Path("/models/w32.onnx")
        inputs, outputs = io_specs(W32)

    backend = Loaded()
    names = "{kind} {found} do not match ({expected})"

    def check(outputs, ordered=True):
        backend._check_io({"inputs": list(backend.inputs), "outputs": outputs}, names, "FIX", ordered)

    candidates, heatmap, tags, tiles = backend.outputs
    check([candidates, heatmap, tags, tiles])
    check([candidates, changed(heatmap, shape=(None, None, None, None)), tags, tiles])  # dynamic: any size
    check([tags, candidates, tiles, heatmap], ordered=False)
    with pytest.raises(UserError) as error:
        check([tags, candidates, heatmap, tiles])
    assert str(error.value) == ("/models/w32.onnx: outputs ['tags', 'candidates', 'heatmap', 'tiles'] do not match "
                                "(['candidates', 'heatmap', 'tags', 'tiles']); FIX")
    with pytest.raises(UserError) as error:  # a file without the tile summary
        check([candidates, heatmap, tags])
    assert "outputs ['candidates', 'heatmap', 'tags'] do not match" in str(error.value)
    for wrong in (changed(heatmap, dtype="float16"), changed(heatmap, shape=(None, 17, None)),
                  changed(heatmap, shape=(None, 18, None, None))):
        with pytest.raises(UserError) as error:
            check([candidates, wrong, tags, tiles], ordered=False)
        assert str(error.value) == (f"/models/w32.onnx: output 'heatmap' is {wrong.dtype} {list(wrong.shape)}, "
                                    f"expected float32 [None, 17, None, None] (None = any size); FIX")


# ----------------------------------------------------------------------------------------------
# TensorRT on a GPU

# TensorRT FP32 (TF32 cleared: BuilderFlag.TF32 is on by default in TensorRT 10 and 11) against
# ONNX Runtime's CPU kernels: both compute in float32 but accumulate the convolution sums in other
# orders and may pick other algorithms (implicit GEMM, Winograd, FFT), which moves the outputs by
# ~1e-6..1e-5 of their magnitude over HigherHRNet's ~100 layers (ORT vs torch on the CPU: 1.5e-6).
# TF32 rounds every product's inputs to 10 mantissa bits (relative error 2^-11 ~ 5e-4 per product)
# and moves them by ~1e-3. 1e-4 sits an order of magnitude from both, so the test fails if TF32 (or
# anything coarser) leaks in and passes for any float32 algorithm. Candidate differences are accepted
# only at ties of the reference's heatmap within the same band (export.onnx.compare_outputs).
TRT_REL_TOLERANCE = 1e-4
TRT_TIE_BAND = 1e-4
GPU_SHAPES = "512x512,512x704,1024x1024"
GPU_MAX_BATCH = 2


def _image_path() -> Path:
    images = sorted((MINI / "images").glob("*.jpg")) if (MINI / "images").is_dir() else []
    return images[0] if images else REPO / "runtime" / "samples" / "000000000785.jpg"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install 'hrnet-deploy[trt]')")
    pytest.importorskip("torch", reason="exporting the ONNX file needs torch (pip install 'hrnet-deploy[export]')")
    pytest.importorskip("onnxruntime", reason="the comparison needs onnxruntime")
    from export import onnx as exporter

    folder = tmp_path_factory.mktemp("trt")
    model = folder / "w32.onnx"
    with contextlib.redirect_stdout(io.StringIO()):
        assert exporter.main(["--arch", "w32", "--checkpoint", "synthetic:0", "--skip-verify", "-o", str(model)]) == 0
    plan = builder.build_engine(model, folder / "w32.plan", shapes=GPU_SHAPES, timing_cache=folder / "trt.cache",
                                max_batch=GPU_MAX_BATCH, progress=False)
    return model, plan


@pytest.fixture(scope="module")
def trt_backend(engine):
    from runtime.backends import open_backend

    with open_backend(engine[1]) as backend:
        yield backend


@pytest.mark.gpu
def test_gpu_sidecar_records_this_machine(engine):
    import tensorrt as trt

    from runtime.backends.trt_backend import gpu_facts
    from runtime.files import file_sha256

    model, plan = engine
    sidecar = read_sidecar(plan)
    gpu = gpu_facts(0)
    assert sidecar["tensorrt_version"] == trt.__version__
    assert sidecar["gpu"] == {"name": gpu.name, "compute_capability": gpu.compute_capability}
    assert sidecar["plan_sha256"] == file_sha256(plan) and sidecar["source_onnx"]["sha256"] == file_sha256(model)
    assert sidecar["tf32"] is False and sidecar["precision"] == "fp32"
    assert (plan.parent / "trt.cache").stat().st_size > 0


@pytest.mark.gpu
def test_gpu_engine_matches_onnxruntime_cpu(engine, trt_backend):
    from export.verify import compare_outputs, prepared_feed
    from runtime.backends.onnx_backend import OnnxBackend

    feed = prepared_feed(trt_backend.metadata, _image_path())
    with OnnxBackend(engine[0]) as ort:
        reference = ort.run(feed)
    got = trt_backend.run(feed)
    comparison = compare_outputs(reference, got, TRT_REL_TOLERANCE, TRT_TIE_BAND)
    assert comparison.ok(TRT_REL_TOLERANCE), "\n".join(comparison.lines())
    # The same engine, another batch size and input shape (a new slot), still within tolerance.
    batch = {name: np.concatenate([array, array]) for name, array in feed.items()}
    twice = trt_backend.run(batch)
    assert np.array_equal(twice["heatmap"][0], twice["heatmap"][1])
    assert compare_outputs(reference, {k: v[:1] for k, v in twice.items()}, TRT_REL_TOLERANCE, TRT_TIE_BAND).ok(
        TRT_REL_TOLERANCE)


@pytest.mark.gpu
def test_gpu_device_grouping_equals_host_grouping(trt_backend):
    """PoseEstimator on the TensorRT backend, grouping on the host (refine on the device) and on the
    device; the host build on the very outputs the engine left in its buffers must give the same
    people, bit for bit."""
    from runtime.grouping import decode_people
    from runtime.pipeline import PoseEstimator
    from runtime.preprocess import read_image
    from runtime.results import people_in_image

    image = read_image(_image_path())
    for grouping in ("host", "device"):
        estimator = PoseEstimator(trt_backend, grouping=grouping)
        assert estimator.decoder is not None
        _check_people_equal_host(estimator, trt_backend, image, decode_people, people_in_image)


def _check_people_equal_host(estimator, trt_backend, image, decode_people, people_in_image):
    device_people = estimator.batch([image])[0]
    prepared = estimator.prepare(image)
    feed = {name: array[None] for name, array in zip(trt_backend.metadata.input_names, prepared.inputs)}
    outputs = trt_backend.device_io.download(trt_backend.device_slot(feed))
    decode = trt_backend.metadata.decode
    persons, scores = decode_people(outputs["candidates"][0], outputs["heatmap"][0], outputs["tags"][0],
                                    outputs["tiles"][0], decode.detection_threshold, decode.tag_threshold)
    host_people = people_in_image(persons, scores, prepared.base_geometry)
    assert len(device_people) == len(host_people) > 0
    for index, (a, b) in enumerate(zip(device_people, host_people)):
        assert np.array_equal(a.keypoints, b.keypoints) and a.score == b.score, f"person {index}"


@pytest.mark.gpu
def test_gpu_input_outside_the_profile_is_a_user_error(trt_backend):
    too_wide = {"image": np.zeros((1, 512, 1088, 3), np.uint8)}
    with pytest.raises(UserError, match=r"outside the engine's profile.*--shapes"):
        trt_backend.run(too_wide)
    too_many = {"image": np.zeros((GPU_MAX_BATCH + 1, 512, 512, 3), np.uint8)}
    with pytest.raises(UserError, match=r"batch 3, .*outside the engine's profile"):
        trt_backend.run(too_many)


@pytest.mark.gpu
def test_gpu_runtime_cli_runs_a_plan(engine, tmp_path):
    """``runtime.run --engine x.plan`` writes the people ONNX Runtime finds in the same image from the
    ONNX file the plan was built from: as many, each within the golden tolerance (FP32 engine vs
    FP32 ONNX Runtime on the CPU differ by float reassociation only), and at least one."""
    from runtime import run as cli

    results = {}
    for kind, path in (("plan", engine[1]), ("onnx", engine[0])):
        out = tmp_path / f"{kind}.json"
        with contextlib.redirect_stdout(io.StringIO()):
            code = cli.main(["--engine", str(path), "--image", str(_image_path()), "--out", str(out),
                             "--batch", str(GPU_MAX_BATCH)])
        assert code == 0, kind
        results[kind] = json.loads(out.read_text())
    plan, onnx = results["plan"], results["onnx"]
    assert len(plan) == len(onnx) > 0
    for index, (a, b) in enumerate(zip(plan, onnx)):
        assert np.abs(np.subtract(a["keypoints"], b["keypoints"])).max() <= 1e-3, f"person {index}"
        assert abs(a["score"] - b["score"]) <= 1e-4, f"person {index}"
