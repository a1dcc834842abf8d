"""Serving on Triton, against real servers on loopback ports chosen free at test time (no mocks).

* ``runtime.serve`` (PyTriton's tritonserver) serves a small exported DecodeGraph
  (``tests/tiny_model.py``); ``runtime.run --engine triton://...`` must write byte-identical
  results.json and pictures to a local run of the same file; 8 concurrent clients must each get their
  own image's people while the dynamic batcher mixes their requests; a bad request gets its error and
  the server keeps serving; SIGTERM lets in-flight requests finish.
* A repository written by ``export.triton --graph-backend python`` runs on the bundled tritonserver
  binary (``runtime.tritonserver``): its ensemble (graph → people) must give the local run's people;
  killing that server mid-run leaves the client with one line and no results file.
* The ``onnxruntime_onnx`` / ``tensorrt_plan`` configs that cannot be loaded here are parsed with
  Triton's own ``model_config`` protobuf schema (shipped in tritonclient) and checked field by field
  against the model file.

Every server is started and stopped here with bounded waits; every request loop is bounded.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO

pytest.importorskip("onnxruntime")
pytest.importorskip("torch", reason="the test model is exported with torch")
pytest.importorskip("pytriton", reason="serving needs the serve extra: pip install 'hrnet-deploy[serve]'")
http = pytest.importorskip("tritonclient.http")

from export import triton as repository_writer  # noqa: E402
from runtime import run as run_cli  # noqa: E402
from runtime.errors import UserError  # noqa: E402
from tests.tiny_model import export_tiny  # noqa: E402

SAMPLES = sorted((REPO / "runtime" / "samples").glob("*.jpg"))
READY_TIMEOUT_S = 240  # a cold start compiles the numba grouping in the server process
QUEUE_DELAY_US = 300_000  # long enough that concurrent requests surely meet in the batcher


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def wait_ready(port: int, process: subprocess.Popen, log: Path, model: str, timeout: float = READY_TIMEOUT_S) -> None:
    """Until ``model`` is ready on the server (bounded); the server's log on failure."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/{model}/ready", timeout=2) as answer:
                if answer.status == 200:
                    return
        time.sleep(0.5)
    process.kill()
    pytest.fail(f"server not ready after {timeout} s:\n{log.read_text(errors='replace')[-3000:]}")


def stop(process: subprocess.Popen, timeout: float = 60) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def local_run(engine: str | Path, images: list[Path], out: Path, draw: Path | None = None, batch: int = 4):
    """runtime.run in-process: (exit code, stdout, stderr)."""
    argv = ["--engine", str(engine), "--image", *map(str, images), "--out", str(out), "--batch", str(batch)]
    if draw:
        argv += ["--draw", str(draw)]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = run_cli.main(argv)
    return code, stdout.getvalue(), stderr.getvalue()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("triton")


@pytest.fixture(scope="module")
def model(folder) -> Path:
    return export_tiny(folder / "tiny.onnx")


@pytest.fixture(scope="module")
def local(model, folder) -> tuple[bytes, Path]:
    """The local run of the file: results.json bytes and the pictures folder."""
    code, out, err = local_run(model, SAMPLES, folder / "local.json", folder / "local_pictures")
    assert code == 0, out + err
    return (folder / "local.json").read_bytes(), folder / "local_pictures"


@pytest.fixture(scope="module")
def served(model, folder):
    """``python -m runtime.serve`` on free loopback ports: yields (URL, process, HTTP port)."""
    http_port, grpc_port, metrics_port = free_ports(3)
    log = folder / "serve.log"
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "runtime.serve", "--engine", str(model), "--http-port", str(http_port),
             "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port), "--max-batch", "4",
             "--max-queue-delay-us", str(QUEUE_DELAY_US), "--exit-timeout", "60"],
            cwd=REPO, env=env(), stdout=handle, stderr=subprocess.STDOUT)
    wait_ready(http_port, process, log, "hrnet_metadata")  # bound after the pose model
    yield f"triton://127.0.0.1:{http_port}/hrnet", process, http_port
    stop(process)


# ----------------------------------------------------------------------------------------------
# runtime.serve + the client backend


def test_served_run_writes_what_a_local_run_writes(served, local, folder):
    """results.json and the pictures of ``--engine triton://`` equal a local run's, byte for byte.

    Mutation tried: ``runtime.serve.pose_model`` dropping each image's last person → fails here."""
    url, _, _ = served
    code, out, err = local_run(url, SAMPLES, folder / "served.json", folder / "served_pictures")
    assert code == 0, out + err
    assert out.startswith(f"model: {url}")
    assert (folder / "served.json").read_bytes() == local[0]
    pictures = sorted(p.name for p in local[1].iterdir())
    assert pictures == sorted(p.name for p in (folder / "served_pictures").iterdir()) and len(pictures) == len(SAMPLES)
    for name in pictures:
        assert (folder / "served_pictures" / name).read_bytes() == (local[1] / name).read_bytes(), name


def _distinct_images(count: int) -> list[np.ndarray]:
    """``count`` different images of one size (so the batcher can put them in one batch)."""
    from runtime.preprocess import read_image

    base = read_image(SAMPLES[0])
    return [np.ascontiguousarray(np.roll(base, shift=37 * i, axis=1)) for i in range(count)]


def test_concurrent_clients_get_their_own_people(served, model):
    """8 threads, each with its own client and image, 3 requests each, started together: every answer
    is that image's people from a local run, and Triton did batch requests of different clients.

    Mutation tried: ``runtime.serve.pose_model`` dropping each image's last person → fails here (a
    batch-order mix-up fails the same per-image comparison)."""
    from runtime.backends import open_backend
    from runtime.pipeline import PoseEstimator

    url, _, port = served
    images = _distinct_images(8)
    with open_backend(model) as backend:
        estimator = PoseEstimator(backend)
        expected = [estimator(image) for image in images]
    assert len({len(p) for p in expected}) > 1 or len({p[0].score for p in expected if p}) > 1  # images differ
    before = _batch_executions(port)
    barrier = threading.Barrier(len(images))
    answers: dict[int, list] = {}
    errors: list[str] = []

    def client(index: int) -> None:
        try:
            with open_backend(url) as remote:
                served_estimator = PoseEstimator(remote)
                barrier.wait(timeout=60)
                answers[index] = [served_estimator(images[index]) for _ in range(3)]
        except Exception as exc:  # noqa: BLE001 - reported below with the thread's index
            errors.append(f"client {index}: {exc!r}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(images))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors and not any(t.is_alive() for t in threads), errors
    for index, runs in answers.items():
        for people in runs:
            assert len(people) == len(expected[index]), index
            for got, want in zip(people, expected[index]):
                np.testing.assert_array_equal(got.keypoints, want.keypoints)
                assert got.score == want.score
    after = _batch_executions(port)
    batched = {size: after.get(size, 0) - before.get(size, 0) for size in after}
    assert sum(n for size, n in batched.items() if size > 1) > 0, f"no batch of more than one request: {batched}"


def _batch_executions(port: int) -> dict[int, int]:
    """Triton's own statistics: executions of the pose model per batch size."""
    with contextlib.closing(http.InferenceServerClient(f"127.0.0.1:{port}")) as client:
        stats = client.get_inference_statistics("hrnet")["model_stats"][0]
    return {int(item["batch_size"]): int(item["compute_infer"]["count"]) for item in stats.get("batch_stats", [])}


def test_bad_request_gets_its_error_and_the_server_keeps_serving(served):
    """A float image, a 4-channel image and a side that is no multiple of 64 are each refused with an
    error for that request; a good request right after is answered.

    Guards against a bad batch taking the server down (PyTriton stops the server on its
    ``PyTritonUnrecoverableError``): the good request after it must be answered."""
    _, _, port = served
    bad = [np.zeros((1, 256, 256, 3), np.float32), np.zeros((1, 256, 256, 4), np.uint8),
           np.zeros((1, 100, 256, 3), np.uint8)]
    with contextlib.closing(http.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=60)) as client:
        for array in bad:
            item = http.InferInput("image", list(array.shape), "FP32" if array.dtype == np.float32 else "UINT8")
            item.set_data_from_numpy(array)
            with pytest.raises(Exception) as refused:
                client.infer("hrnet", [item])
            assert "hrnet" in str(refused.value) or "image" in str(refused.value) or "64" in str(refused.value)
        good = http.InferInput("image", [1, 256, 384, 3], "UINT8")
        good.set_data_from_numpy(np.full((1, 256, 384, 3), 128, np.uint8))
        result = client.infer("hrnet", [good])
        assert result.as_numpy("count").shape == (1, 1)
        assert client.is_server_ready()


def test_client_errors_are_one_line_naming_the_url(served, folder):
    """Server down, model not ready, a timeout, a malformed URL: exit 2, one line naming the URL, no
    results file. Mutation tried: ``TritonBackend._call`` without its connection-refused branch → the
    'down' case fails (a generic line that does not say no server answers)."""
    url, _, port = served
    (dead,) = free_ports(1)
    cases = {f"triton://127.0.0.1:{dead}/hrnet": "no Triton server answers",
             f"triton://127.0.0.1:{port}/nosuchmodel": "is not ready",
             f"{url}?timeout=0.001": "timed out",
             "triton://127.0.0.1/hrnet": "not a Triton model address"}
    for address, words in cases.items():
        out = folder / "errors.json"
        code, stdout, stderr = local_run(address, SAMPLES[:1], out)
        lines = stderr.strip().splitlines()
        assert code == 2 and len(lines) == 1, (address, stderr)
        assert words in lines[0] and address.split("?")[0] in lines[0], (address, lines[0])
        assert not out.exists()


def test_sigterm_lets_in_flight_requests_finish(served):
    """Requests waiting in the batcher's queue (its delay is QUEUE_DELAY_US) when SIGTERM arrives are
    answered, then the server exits 0. Runs last against the module's server (it stops it).

    Guards the graceful path (``Triton.stop``: tritonserver drains, then the proxy closes); a shutdown
    that kills the server first leaves the three clients with errors."""
    from runtime.backends import open_backend
    from runtime.pipeline import PoseEstimator

    url, process, _ = served
    image = _distinct_images(1)[0]
    start = threading.Barrier(4)
    results: list = []
    errors: list = []

    def client() -> None:
        try:
            with open_backend(url) as remote:  # connected (metadata read) before the signal
                estimator = PoseEstimator(remote)
                start.wait(timeout=60)
                results.append(estimator(image))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(3)]
    for thread in threads:
        thread.start()
    start.wait(timeout=60)
    time.sleep(QUEUE_DELAY_US / 1e6 / 3)  # the requests are on the server, held by the batcher's delay
    process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=120)
    assert process.wait(timeout=120) == 0
    assert not errors and len(results) == 3, errors
    assert all(len(r) == len(results[0]) for r in results)


# ----------------------------------------------------------------------------------------------
# export.triton on the bundled tritonserver


@pytest.fixture(scope="module")
def repository(model, folder) -> Path:
    out = folder / "repo"
    assert repository_writer.main(["--engine", str(model), "--graph-backend", "python", "--device", "cpu",
                                   "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def bundled(repository, folder):
    from runtime.tritonserver import BundledServer

    http_port, grpc_port, metrics_port = free_ports(3)
    server = BundledServer(repository, http_port, grpc_port, metrics_port, log=folder / "tritonserver.log").start()
    wait_ready(http_port, server.process, folder / "tritonserver.log", "hrnet")
    yield server, f"triton://127.0.0.1:{http_port}/hrnet"
    server.stop()


def test_ensemble_of_the_repository_gives_the_local_people(bundled, local, folder):
    """The ensemble (Python-backend graph in ONNX Runtime → Python-backend people) writes the local
    run's results.json. Mutation tried: the people model passing the detection threshold as the tag
    threshold → fails here."""
    _, url = bundled
    code, out, err = local_run(url, SAMPLES, folder / "ensemble.json")
    assert code == 0, out + err
    assert (folder / "ensemble.json").read_bytes() == local[0]


def test_server_killed_mid_run_leaves_one_line_and_no_results(bundled, folder):
    """SIGKILL of the server while a client runs many images: exit 2, one line naming the URL; the run
    stops there (no image after it is tried) and keeps only what was finished (a valid results file,
    or none). Runs last against the bundled server (it kills it)."""
    server, url = bundled
    out = folder / "killed.json"
    images = [str(p) for p in SAMPLES] * 5
    client = subprocess.Popen([sys.executable, "-m", "runtime.run", "--engine", url, "--image", *images, "--out",
                               str(out), "--batch", "1"], cwd=REPO, env=env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    first = client.stdout.readline()  # the model line: connected
    while "people" not in first and client.poll() is None:
        first = client.stdout.readline()
    server.process.kill()
    server.process.wait(timeout=30)
    _, stderr = client.communicate(timeout=120)
    lines = stderr.strip().splitlines()
    assert client.returncode == 2 and len(lines) == 1, stderr
    assert url in lines[0]
    assert not out.exists() or isinstance(json.loads(out.read_text()), list)


# ----------------------------------------------------------------------------------------------
# Configs that cannot be loaded here: Triton's own schema, field by field


def _parse(path: Path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def _file_io(model: Path) -> tuple[dict, dict]:
    import onnx

    from tritonclient.grpc import model_config_pb2

    graph = onnx.load(str(model)).graph
    types = {onnx.TensorProto.UINT8: model_config_pb2.TYPE_UINT8, onnx.TensorProto.FLOAT: model_config_pb2.TYPE_FP32}

    def spec(values):
        return {v.name: (types[v.type.tensor_type.elem_type],
                         [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim][1:])
                for v in values}

    return spec(graph.input), spec(graph.output)


def _fake_plan(model: Path, folder: Path, max_batch: int) -> Path:
    """A .plan (not an engine: these bytes only stand in for one) with the sidecar export.trt writes."""
    import json

    from export import trt as builder
    from runtime.backends.trt_backend import GpuFacts, sidecar_path

    facts = builder.read_onnx(model)
    shapes = builder.default_shapes(facts.metadata, facts.input_multiple)
    profiles = builder.input_profiles(facts.metadata, shapes, max_batch, facts.input_multiple)
    plan = folder / f"tiny_b{max_batch}.plan"
    plan.write_bytes(b"not an engine")
    sidecar = builder.make_sidecar(plan, "0" * 64, facts, shapes, max_batch, profiles, "10.13.0",
                                   GpuFacts("a GPU", "9.0"), 1.0)
    sidecar_path(plan).write_text(json.dumps(sidecar))
    return plan


@pytest.mark.parametrize("kind", ["onnx", "plan"])
def test_native_configs_match_triton_schema_and_the_file(kind, model, folder):
    """Every config.pbtxt parses with Triton's ModelConfig; platform, batch, inputs and outputs (names,
    types, dims) equal the file's; the ensemble wires graph → people; the metadata round-trips.

    Mutation tried: the heatmap output written with dims [17, -1] → the field check fails."""
    from tritonclient.grpc import model_config_pb2 as pb

    from runtime.backends import open_backend
    from runtime.serving import METADATA_KEY, parse_metadata_json

    source = model if kind == "onnx" else _fake_plan(model, folder, 2)
    out = folder / f"native_{kind}"
    assert repository_writer.main(["--engine", str(source), "--instances", "2", "-o", str(out)]) == 0
    graph, people, ensemble = (_parse(out / name / "config.pbtxt") for name in ("hrnet_graph", "hrnet_people", "hrnet"))
    assert graph.platform == ("onnxruntime_onnx" if kind == "onnx" else "tensorrt_plan")
    assert (out / "hrnet_graph" / "1" / f"model.{kind}").read_bytes() == source.read_bytes()
    assert graph.max_batch_size == (4 if kind == "onnx" else 2) == people.max_batch_size == ensemble.max_batch_size
    inputs, outputs = _file_io(model)
    assert {i.name: (i.data_type, list(i.dims)) for i in graph.input} == inputs
    assert {o.name: (o.data_type, list(o.dims)) for o in graph.output} == outputs
    assert graph.HasField("dynamic_batching")
    assert [(g.count, g.kind) for g in graph.instance_group] == [(2, pb.ModelInstanceGroup.KIND_GPU)]
    assert people.backend == "python" and {i.name for i in people.input} == set(outputs)
    assert ensemble.platform == "ensemble" and {i.name: list(i.dims) for i in ensemble.input} == \
        {name: dims for name, (_, dims) in inputs.items()}
    steps = ensemble.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["hrnet_graph", "hrnet_people"]
    assert dict(steps[0].output_map) == dict(steps[1].input_map) == {n: n for n in outputs}
    assert dict(steps[1].output_map) == {o.name: o.name for o in ensemble.output} == {o.name: o.name for o in people.output}
    with open_backend(model) as backend:
        meta = backend.metadata
    for config in (graph, people, ensemble):
        assert parse_metadata_json(config.parameters[METADATA_KEY].string_value)[0] == \
            (meta if kind == "onnx" else parse_metadata_json(config.parameters[METADATA_KEY].string_value)[0])
    assert parse_metadata_json(ensemble.parameters[METADATA_KEY].string_value)[0].input_names == meta.input_names
    text = (out / "README.md").read_text()
    assert "tritonserver --model-repository=/models" in text
    assert ("TensorRT 10.13.0" in text) == (kind == "plan")


def test_plan_batch_beyond_its_profile_is_one_line(model, folder):
    plan = _fake_plan(model, folder, 2)
    with pytest.raises(UserError, match=r"batches 1\.\.2.*--max-batch 2"):
        repository_writer.write_repository(plan, folder / "too_big", repository_writer.Options(max_batch=4))
    assert not (folder / "too_big").exists()


def test_client_grouping_writes_the_graph_only(model, folder):
    out = folder / "client_side"
    assert repository_writer.main(["--engine", str(model), "--grouping-on", "client", "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "hrnet"]
    assert _parse(out / "hrnet" / "config.pbtxt").platform == "onnxruntime_onnx"


def test_existing_output_is_never_overwritten(model, folder):
    out = folder / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(UserError, match="not an empty folder"):
        repository_writer.write_repository(model, out, repository_writer.Options())
    assert (out / "mine.txt").read_text() == "keep"


def test_python_backend_environment_puts_this_libpython_first():
    """Mutation tried: appending LIBDIR instead of prepending → fails."""
    import sysconfig

    from runtime.serving import python_backend_environment

    libdir = sysconfig.get_config_var("LIBDIR")
    env = python_backend_environment({"LD_LIBRARY_PATH": f"/usr/lib/x86_64-linux-gnu:{libdir}"})
    assert env["LD_LIBRARY_PATH"].split(":") == [libdir, "/usr/lib/x86_64-linux-gnu"]
    assert python_backend_environment({})["LD_LIBRARY_PATH"] == libdir


def test_backend_stub_loads_this_interpreters_libpython():
    """The dynamic loader, asked with the server's environment, resolves the stub's libpython inside
    this interpreter's LIBDIR (without it, on this machine: Debian's /lib/x86_64-linux-gnu copy)."""
    import shutil
    import sysconfig

    from pytriton.utils.distribution import get_stub_path

    from runtime.tritonserver import server_environment

    if not shutil.which("ldd") or sysconfig.get_config_var("Py_ENABLE_SHARED") != 1:
        pytest.skip("needs ldd and a shared-library Python")
    stub = get_stub_path(f"{sys.version_info[0]}.{sys.version_info[1]}")
    listing = subprocess.run(["ldd", str(stub)], env=server_environment(), capture_output=True, text=True,
                             timeout=30).stdout
    (line,) = [entry for entry in listing.splitlines() if "libpython" in entry]
    assert str(Path(sysconfig.get_config_var("LIBDIR")).resolve()) in str(Path(line.split("=>")[1].split("(")[0].strip()).resolve())
