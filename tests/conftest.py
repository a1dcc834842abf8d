"""Shared fixtures: paths to ../shared (goldens, mini COCO set) and a synthetic-weights w32 backend."""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import io
import json
import resource
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
GOLDEN = SHARED / "golden"
MINI = SHARED / "data" / "coco_val2017_mini"


# (title, lines) that tests want shown at the end of the run, e.g. registers per CUDA kernel.
TERMINAL_REPORT: list[tuple[str, list[str]]] = []


# Where the suite's peak memory comes from: after each test, the peak RSS of this process and of the largest
# child process waited for so far (Linux reports KiB); each rise is charged to the test during which it
# happened (module fixtures to the first test that uses them).
_PEAK_KIB = {"pytest process": 0, "largest child": 0}
_PEAK_RISES: list[tuple[int, int, str, str]] = []  # (rise KiB, peak KiB, whose, test)


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, looked up once (``find_library`` runs ``ldconfig`` in a child process);
    None where the C library has none."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None


def release_freed_heap() -> None:
    """Hand the C heap's free pages back to the system (glibc ``malloc_trim``; a no-op without it): torch
    and ONNX Runtime free large buffers into the heap, whose pages would otherwise stay resident and add
    to the peak of every later test (measured on five test files: 2.48 -> 2.31 GiB)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    yield
    release_freed_heap()
    for whose, usage in (("pytest process", resource.RUSAGE_SELF), ("largest child", resource.RUSAGE_CHILDREN)):
        peak = resource.getrusage(usage).ru_maxrss
        if peak > _PEAK_KIB[whose]:
            _PEAK_RISES.append((peak - _PEAK_KIB[whose], peak, whose, item.nodeid))
            _PEAK_KIB[whose] = peak


def _peak_memory_lines(shown: int = 8) -> list[str]:
    lines = [f"peak RSS: pytest process {_PEAK_KIB['pytest process'] / 2**20:.2f} GiB, largest child process "
             f"{_PEAK_KIB['largest child'] / 2**20:.2f} GiB; the tests during which a peak rose most:"]
    for rise, peak, whose, test in sorted(_PEAK_RISES, reverse=True)[:shown]:
        lines.append(f"  +{rise / 2**20:.2f} GiB to {peak / 2**20:.2f} GiB ({whose}): {test}")
    return lines


def pytest_terminal_summary(terminalreporter):
    for title, lines in [*TERMINAL_REPORT, ("peak memory", _peak_memory_lines())]:
        terminalreporter.section(title)
        for line in lines:
            terminalreporter.write_line(line)


def cuda_device() -> str | None:
    """Why GPU tests cannot run here, or None when a CUDA device is present."""
    if not Path("/dev/nvidiactl").exists():
        return "no CUDA GPU on this machine (/dev/nvidiactl absent)"
    return None


def pytest_collection_modifyitems(config, items):
    reason = cuda_device()
    if reason:
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not here (it sits beside the checkout in the project's shared/ folder)")
    return path


def load_golden(name: str) -> dict:
    return json.loads(need(GOLDEN / name).read_text())


def run_main(function, argv: list[str]) -> tuple[int, str, str]:
    """Run a CLI's ``main`` in-process; return (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = function(argv)
    return code, out.getvalue(), err.getvalue()


def made_up_statistics(path: Path, activations: list[str]) -> Path:
    """A calibration statistics cache with a made-up largest |x| per tensor (1 .. 7, by name order), so
    that tests of what calib writes need no calibration run; minmax takes it as the range."""
    from calib.statistics import StreamingStatistics, range_exponent

    statistics = StreamingStatistics(activations)
    for i, name in enumerate(sorted(activations)):
        stats = statistics.tensors[name]
        stats.amax = float(1 + i % 7)
        stats.exponent = range_exponent(stats.amax)
    statistics.save(path)
    return path


@pytest.fixture(scope="session")
def w32_fp32_file(tmp_path_factory) -> Path:
    """HigherHRNet-W32 synthetic:0 exported once to FP32 ONNX (read only: the source of the INT8 tests)."""
    pytest.importorskip("onnx")
    pytest.importorskip("torch")
    from export import onnx as exporter

    path = tmp_path_factory.mktemp("fp32") / "w32.onnx"
    code, out, err = run_main(exporter.main, ["--arch", "w32", "--checkpoint", "synthetic:0", "--skip-verify",
                                              "-o", str(path)])
    assert code == 0, out + err
    return path


@pytest.fixture(scope="session")
def w32_synthetic():
    """The PyTorch reference backend, HigherHRNet-W32 with synthetic:0 weights, input 512."""
    pytest.importorskip("torch")
    from runtime.backends import open_torch

    with open_torch("w32", "synthetic:0", 512) as backend:
        yield backend


# The e2e golden's raw outputs are float32 sums over ~100 convolution layers. oneDNN picks its kernels
# (and so its order of summation) by the CPU's instruction set, so they are bit-identical to mmpose's
# only on a CPU that runs the kernels of the machine that made the golden. Elsewhere (e.g. an AVX2-only
# CPU) each value differs by float32 reassociation: measured here up to 5e-5 relative on the sampled
# values and 1.3e-8 on the float64 sums, with the people still identical.
RAW_SAMPLE_RTOL = 2e-4
SUM_RTOL = 1e-7


@pytest.fixture(scope="session")
def golden_cpu(w32_synthetic) -> bool:
    """True when this CPU reproduces the golden's raw network outputs bit for bit (first e2e record):
    then the raw-output and aggregated-sum checks are bit-level, otherwise within the tolerances above."""
    import numpy as np
    import torch

    from runtime.pipeline import PoseEstimator
    from runtime.preprocess import read_image

    record = load_golden("e2e_w32_512_seed0.json")["records"][0]
    prepared = PoseEstimator(w32_synthetic).prepare(read_image(need(MINI / "images" / record["file_name"])))
    graph = w32_synthetic.graph
    with torch.inference_mode():
        outputs = graph.network(graph.normalize(torch.from_numpy(np.ascontiguousarray(prepared.inputs[0][None]))))
    for y, ref in zip(outputs, record["raw_outputs"][0]):
        flat = y.double().flatten()
        if [flat[i * (flat.numel() - 1) // 4].item() for i in range(5)] != ref["samples"]:
            return False
    return True
