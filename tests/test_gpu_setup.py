"""The GPU path's set-up, checked on any machine: the extras per CUDA major, the probe's one-line
errors, the kernel disk cache's key, the device-slot bound, ONNX Runtime's CUDA-graph refusal
detection, and that the names the (skipped here) GPU tests use exist.

None of this runs a kernel or imitates a GPU; what needs one is in the ``gpu``-marked tests and in
``benchmarks/gpu_check.py``.
"""
from __future__ import annotations

import ast
import configparser
import re

import numpy as np
import pytest

from tests.conftest import REPO


def extras() -> dict[str, list[str]]:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    return {name: [line.strip() for line in value.strip().splitlines() if line.strip()]
            for name, value in config["options.extras_require"].items()}


@pytest.mark.parametrize("extra, major", [("gpu", 13), ("gpu-cu12", 12), ("trt", 13), ("trt-cu12", 12)])
def test_gpu_extras_bring_nvrtc_for_their_cuda_major(extra, major):
    """Each GPU extra installs numba-cuda with the NVRTC/NVVM wheels of its CUDA major, numpy<2.5,
    and no cuda-python (nothing imports it; 13.x needs driver >= 580). Fails on the old extras
    (plain numba-cuda, cuda-python>=12)."""
    lines = extras()[extra]
    assert f"numba-cuda[cu{major}]>=0.30.4" in lines, lines
    assert "numpy<2.5" in lines
    assert not any(line.startswith("cuda-python") for line in lines), lines
    assert not any(re.fullmatch(r"numba-cuda(>=.*)?", line) for line in lines), "plain numba-cuda has no NVRTC"
    if extra.startswith("trt"):
        assert any(line.startswith(f"tensorrt-cu{major}>=10") for line in lines)


def test_dev_extra_compiles_kernels():
    """CI installs the dev extra: it must bring what compiles every kernel without a GPU."""
    lines = extras()["dev"]
    assert "numba-cuda[cu13]>=0.30.4" in lines and "numpy<2.5" in lines


def test_no_module_imports_cuda_python():
    """The extras leave cuda-python out because no module imports it (``cuda.bindings`` comes
    with numba-cuda and is used through it)."""
    for path in list((REPO / "runtime").rglob("*.py")) + list((REPO / "export").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(name == "cuda" or name.startswith("cuda.") for name in names), path


# ---------------------------------------------------------------------------------------------
# The probe


def test_probe_names_missing_nvrtc_and_its_extra():
    """What numba-cuda raises without the NVRTC wheel (cuda.pathfinder's DynamicLibNotFoundError
    for libnvrtc.so.13, the error finding 3 quotes) becomes one line naming both extras.
    Mutation tried: the nvrtc branch removed (falls to the generic line without NVRTC)."""
    from runtime.cuda_grouping import explain_cuda_failure

    class DynamicLibNotFoundError(RuntimeError):
        pass

    line = explain_cuda_failure(DynamicLibNotFoundError("Failure finding \"libnvrtc.so.13\": not found"))
    assert "\n" not in line
    assert line.startswith("NVRTC (libnvrtc) is not installed")
    assert "hrnet-deploy[gpu]" in line and "hrnet-deploy[gpu-cu12]" in line


def test_probe_names_missing_driver_and_nvvm():
    from runtime.cuda_grouping import explain_cuda_failure

    assert explain_cuda_failure(RuntimeError("CUDA driver library cannot be found")).startswith(
        "the NVIDIA driver is missing")
    assert explain_cuda_failure(ImportError("libNVVM cannot be found")).startswith("libNVVM is not installed")


def test_probe_wrong_cuda_major_names_the_cu12_extra():
    """CUDA 13 wheels on a CUDA 12.6 driver (JetPack 6): one line naming the gpu-cu12 extra."""
    from runtime.cuda_grouping import check_cuda_majors
    from runtime.errors import UserError

    with pytest.raises(UserError, match=r"supports CUDA 12\.6.*for CUDA 13.*hrnet-deploy\[gpu-cu12\]"):
        check_cuda_majors((12, 6), 13)
    check_cuda_majors((13, 0), 13)
    check_cuda_majors((13, 1), 12)  # newer drivers run older wheels
    check_cuda_majors(None, 13)


def test_probe_failure_through_the_cli_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path):
    """A probe failure when a GPU backend opens reaches the user as one line and exit code 2."""
    from runtime import cuda_grouping
    from runtime import run as cli
    from runtime.errors import UserError

    def missing(*args, **kwargs):
        raise UserError(cuda_grouping.explain_cuda_failure(RuntimeError("libnvrtc.so.13 not found")))

    monkeypatch.setattr("runtime.backends.open_backend", missing)
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    code = cli.main(["--engine", str(model), "--device", "cuda", "--out", str(tmp_path / "o.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "NVRTC" in err[0]


# ---------------------------------------------------------------------------------------------
# The kernel disk cache


def test_kernel_cache_key_follows_both_sources(monkeypatch, tmp_path):
    """The cache folder is keyed by runtime/cuda_grouping.py, runtime/grouping.py (whose cores the
    kernels inline: numba's own file stamp would miss their edit) and the numba-cuda version.
    Mutation tried: hashing only cuda_grouping.py (the grouping.py edit keeps the key)."""
    from runtime import cuda_grouping, grouping

    monkeypatch.setenv(cuda_grouping.KERNEL_CACHE_ENV, str(tmp_path))
    before = cuda_grouping.kernel_cache_dir()
    assert before.parent == tmp_path and len(before.name) == 24
    edited = tmp_path / "grouping.py"
    edited.write_bytes((REPO / "runtime" / "grouping.py").read_bytes() + b"\n# edited\n")
    monkeypatch.setattr(grouping, "__file__", str(edited))
    assert cuda_grouping.kernel_cache_dir() != before


def test_device_build_caches_every_kernel_on_disk(monkeypatch, tmp_path):
    """Each of the four kernels of a real (non-simulator) build gets the on-disk cache in
    ``kernel_cache_dir()`` (no GPU needed to build dispatchers; compiling waits for a launch)."""
    pytest.importorskip("numba_cuda")
    import numba

    if numba.config.ENABLE_CUDASIM:
        pytest.skip("the CUDA simulator is enabled in this process")
    from numba import cuda

    from runtime import cuda_grouping

    monkeypatch.setenv(cuda_grouping.KERNEL_CACHE_ENV, str(tmp_path))
    build = cuda_grouping._device_build(cuda, False)
    for name in ("group", "person", "search", "write"):
        cache = getattr(build, name)._cache
        assert type(cache).__name__ == "KernelCache", name
        assert cache.cache_path == str(cuda_grouping.kernel_cache_dir())
    assert cuda_grouping.kernel_cache_dir().is_dir()
    plain = cuda_grouping._device_build(cuda, False, disk_cache=False)
    assert type(plain.group._cache).__name__ != "KernelCache"


# ---------------------------------------------------------------------------------------------
# Device slots (the LRU bound) and ONNX Runtime's CUDA graphs


class _FakeArrays:
    """Allocations for DeviceIO without CUDA: host arrays stand in for device buffers; only the
    slot bookkeeping is under test."""

    @staticmethod
    def device_array(shape, dtype, stream=None):
        return np.zeros(shape, dtype)


def _device_io(max_slots):
    from runtime.backends.device import DeviceIO

    io = DeviceIO.__new__(DeviceIO)
    io.cuda, io.stream, io.device_id = _FakeArrays, None, 0
    io.max_slots, io.slots, io.evictions = max_slots, __import__("collections").OrderedDict(), 0
    return io


def test_device_slots_are_lru_bounded_and_release_what_was_bound():
    """At most max_slots shapes are kept; the least recently used one goes, and what the backend
    bound to it (``state["release"]``: IO binding, captured graph) is released first.
    Mutation tried: no move_to_end on a hit (the hit slot is evicted instead)."""
    io = _device_io(2)
    released = []

    def slot(height):
        made = io.slot({"image": ((1, height, 64, 3), "uint8")}, {"heatmap": ((1, 17, height, 64), "float32")})
        made.state.setdefault("release", lambda: released.append(height))
        return made

    first = slot(64)
    slot(128)
    assert slot(64) is first  # a hit, now the most recent
    slot(192)  # evicts 128, the least recently used
    assert released == [128] and io.evictions == 1
    assert sorted(key[0][1][1] for key in io.slots) == [64, 192]
    slot(128)
    assert released == [128, 64] and io.evictions == 2


def test_eviction_note_only_when_shapes_thrash():
    io = _device_io(2)
    for height in (64, 128, 192, 256):
        io.slot({"image": ((1, height, 64, 3), "uint8")}, {})
    assert io.evictions == 2
    assert io.eviction_note(4) and "2 device-buffer evictions over 4 images" in io.eviction_note(4)
    assert io.eviction_note(100) is None  # rare evictions: no note


def test_cuda_graph_refusal_is_detected_when_onnxruntime_falls_back(tmp_path):
    """onnxruntime's Python layer drops a CUDA EP it cannot start and runs on the CPU without an
    error: ``open_with_cuda_graphs`` must see that and say why graphs are off, not report graphs
    on. Run with the real (CPU-only here) onnxruntime, whose CUDA EP is absent.
    Mutation tried: without the providers check the CPU session is returned as graph-enabled."""
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has a CUDA EP")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "identity.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    from runtime.backends.onnx_backend import open_with_cuda_graphs

    options = ort.SessionOptions()
    options.log_severity_level = 4
    session, why = open_with_cuda_graphs(ort, str(path), options, {"device_id": "0", "user_compute_stream": "1"})
    assert session is None and why and "\n" not in why


# ---------------------------------------------------------------------------------------------
# The GPU tests' names


def _attributes_used(path, variable: str) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == variable}


def _attributes_defined(cls) -> set[str]:
    import inspect
    import textwrap

    names = set()
    for klass in cls.__mro__:
        names |= set(vars(klass))
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        names |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                  and isinstance(node.value, ast.Name) and node.value.id == "self" and isinstance(node.ctx, ast.Store)}
    return names


@pytest.mark.parametrize("test_file, variable, backend", [
    ("test_trt.py", "trt_backend", "runtime.backends.trt_backend.TrtBackend"),
    ("test_onnx.py", "ort_cuda", "runtime.backends.onnx_backend.OnnxBackend"),
])
def test_gpu_tests_use_only_names_the_backends_have(test_file, variable, backend):
    """The gpu-marked tests skip here, so a misspelt method (``trt_backend._slot`` for
    ``device_slot``, finding 1) would only show on a GPU: every attribute they use on a backend
    must exist on its class. Fails on the old test_trt.py."""
    import importlib

    module, _, name = backend.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    missing = _attributes_used(REPO / "tests" / test_file, variable) - _attributes_defined(cls)
    assert not missing, f"{test_file} uses {sorted(missing)} on {name}, which has no such attribute"


# ---------------------------------------------------------------------------------------------
# Float32 on the device


def test_device_refine_score_in_float32_equals_the_host_float64_rounding():
    """The device's float32 ``_refine_score32`` gives the host ``_refine_score``'s bits on random
    values and on the edges: distances at exact halves (ties to even), heatmap values tiny next to
    the rounded distance, distances at and above 2**23, infinities and NaN.
    Mutation tried: without the ``dist < 2**23`` guard, distances of 2**23 + odd fail."""
    import numba

    from runtime import cuda_grouping, grouping

    namespace = grouping.link(grouping.by_name(grouping.SHARED_CORES), numba.njit,
                              dict(grouping.core_namespace(), _TWO23=cuda_grouping._TWO23))
    device = grouping.link({"_refine_score32": cuda_grouping._refine_score32}, numba.njit,
                           namespace)["_refine_score32"]
    host = grouping.cores().refine_score
    rng = np.random.default_rng(1234)
    f4 = np.float32
    cases = [(f4(h), f4(t), f4(0.0), f4(0.0), f4(0.0)) for h in (0.0, -0.0, 1e-30, 0.7, -3.25, 1e6)
             for t in (0.5, 1.5, 2.5, 3.49999976, 8388607.5, 8388609.0, 16777215.0, 3e38, np.inf, np.nan)]
    cases += [tuple(f4(v) for v in row) for row in np.concatenate(
        [rng.normal(0, 1, (4000, 5)), rng.normal(0, 50, (4000, 5)),
         np.round(rng.normal(0, 8, (4000, 5)) * 4) / 4], axis=0)]
    for args in cases:
        a, b = device(*args), host(*args)
        assert np.array_equal(np.float32(a).view(np.uint32), np.float32(b).view(np.uint32)) or (
            np.isnan(a) and np.isnan(b)), (args, a, b)
