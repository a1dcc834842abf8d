"""Q/DQ placement per target (``python -m calib --target tensorrt|onnxruntime``), checked on the graph.

TensorRT cannot be installed here, so the ``tensorrt`` placement is checked rule by rule against the
recommendations of NVIDIA's TensorRT Developer Guide ("Working with Quantized Types" → "Explicit
Quantization" → "Q/DQ Layer-Placement Recommendations", summarised in calib/placement.py): every
input of a weighted layer quantized, no Q on a convolution's output (so none between a convolution
and its ReLU), the residual input of every Add quantized and its fusion partner float, no Q/DQ of
ReLU or Resize of their own, and the decode and the final layers float. The expected fusion partners
are derived here from the FP32 graph, not taken from ``calib.placement``.

Fixtures: W32 with synthetic:0 weights exported in FP32 (seconds), and both placements quantized from
a calibration cache written here with made-up ranges (where Q/DQ sit does not depend on the values,
and no calibration has to run). One real ``python -m calib --target tensorrt`` run (minmax, one image)
checks the CLI, its metadata and its INT8-vs-FP32 check; that file then runs through
``python -m runtime.run --engine`` on the CPU and meets ``export.trt``'s placement warning.

Mutations tried, each failing the tests named: ``TENSORRT.float_fusion_partner=False`` (the Add's
conv input quantized: test_trt_add_inputs, test_trt_no_q_on_convolution_outputs,
test_trt_plan_calibrates_only_what_the_quantizer_reads); TENSORRT with Relu quantized behind int8
Conv outputs (``op_types`` + Relu, ``pass_through=("Relu",)``, ``float_output=("ConvTranspose",)``:
test_trt_no_q_on_convolution_outputs, test_trt_relu_reads_the_convolution, test_trt_qdq_only_on_inputs);
``fusion_partner`` taking the last matching input instead of the first (test_trt_add_inputs,
test_trt_no_q_on_convolution_outputs); ``placement_warning`` asking for ``calib.target == "onnxruntime"``
(test_export_trt_warning: a file without the key). ``float_output=("ConvTranspose",)`` alone only
fails the plan test: the float-region pass and ONNX Runtime's own rules drop a Q on a Conv output
that no quantized node reads.
"""
from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import MINI, REPO, made_up_statistics, need
from tests.conftest import run_main as _main

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

import calib.__main__ as calib_cli  # noqa: E402
from calib import quantize as q  # noqa: E402
from calib.placement import ONNXRUNTIME, PLACEMENTS, TARGET_KEY  # noqa: E402
from export import onnx as exporter  # noqa: E402
from export import trt as builder  # noqa: E402

SAMPLE = REPO / "runtime" / "samples" / "000000000785.jpg"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("placement")


@pytest.fixture(scope="module")
def fp32_file(w32_fp32_file) -> Path:
    return w32_fp32_file


@pytest.fixture(scope="module")
def source(fp32_file):
    return q.open_source(fp32_file)


@pytest.fixture(scope="module")
def placed(folder, source) -> dict[str, tuple]:
    """Per target: (Plan, quantized ModelProto with the INT8 metadata, the file written)."""
    result = {}
    for target, placement in PLACEMENTS.items():
        steps = q.plan(source.model, placement=placement)
        cache = made_up_statistics(folder / f"ranges-{target}.npz", steps.activations)
        model = q.quantize(source, steps, "minmax", cache)
        exporter.set_metadata(model, q.int8_props(source, "minmax", [], "none", "fake", placement))
        path = folder / f"w32.{target}.fake.onnx"
        onnx.save_model(model, str(path))
        result[target] = (steps, model, path)
    return result


class Graph:
    """Producers and readers of every tensor of a model."""

    def __init__(self, model) -> None:
        self.nodes = list(model.graph.node)
        self.producers = {out: n for n in self.nodes for out in n.output}
        self.readers: dict[str, list] = {}
        for node in self.nodes:
            for name in node.input:
                self.readers.setdefault(name, []).append(node)
        self.initializers = {t.name: t for t in model.graph.initializer}

    def op(self, name: str) -> str | None:
        node = self.producers.get(name)
        return None if node is None else node.op_type

    def network(self, *op_types: str) -> list:
        return [n for n in self.nodes if n.name.startswith("/network/") and n.op_type in op_types]

    def reader_types(self, name: str) -> list[str]:
        return sorted(r.op_type for r in self.readers.get(name, []))


def _final(node) -> bool:
    return bool(q.FINAL_LAYER.search(node.name))


@pytest.fixture(scope="module")
def trt_graph(placed) -> Graph:
    return Graph(placed["tensorrt"][1])


@pytest.fixture(scope="module")
def fp32_graph(source) -> Graph:
    return Graph(source.model)


# ----------------------------------------------------------------------------------------------
# tensorrt: the rules one by one


def test_trt_weighted_layer_inputs_are_quantized(trt_graph):
    """Rule 1: every network Conv/ConvTranspose but the final layers reads DQ(Q(activation)) and DQ(int8 weights,
    per output channel); the bias stays a float initializer."""
    g = trt_graph
    weighted = [n for n in g.network("Conv", "ConvTranspose") if not _final(n)]
    assert len(weighted) > 300
    for conv in weighted:
        dq = g.producers.get(conv.input[0])
        assert dq is not None and dq.op_type == "DequantizeLinear" and g.op(dq.input[0]) == "QuantizeLinear", conv.name
        weights = g.producers[conv.input[1]]
        assert weights.op_type == "DequantizeLinear", conv.name
        stored = g.initializers[weights.input[0]]
        assert stored.data_type == onnx.TensorProto.INT8, conv.name
        axis = {a.name: a.i for a in weights.attribute}.get("axis", 1)
        out_axis = 1 if conv.op_type == "ConvTranspose" else 0
        assert axis == out_axis, conv.name
        scale = onnx.numpy_helper.to_array(g.initializers[weights.input[1]])
        assert scale.shape == (stored.dims[out_axis],), f"{conv.name}: weights not per channel"
        assert len(conv.input) < 3 or conv.input[2] in g.initializers, f"{conv.name}: bias must stay float"


def _expected_partner(add, fp32: Graph) -> int | None:
    """The input of ``add`` TensorRT fuses with (from the FP32 graph): the first one that a convolution
    writes and nothing but this Add reads."""
    for index, name in enumerate(add.input):
        if fp32.op(name) in ("Conv", "ConvTranspose") and len(fp32.readers[name]) == 1:
            return index
    return None


def test_trt_add_inputs(trt_graph, fp32_graph):
    """Rule 4: every network Add reads DQ on its residual input(s); its fusion partner, the convolution
    output that only this Add reads, reaches it float, straight from that convolution."""
    adds = {n.name: n for n in trt_graph.network("Add")}
    fp32_adds = fp32_graph.network("Add")
    assert len(fp32_adds) == len(adds) > 150
    fused = both = 0
    for original in fp32_adds:
        add = adds[original.name]
        partner = _expected_partner(original, fp32_graph)
        for index, name in enumerate(add.input):
            if index == partner:
                assert name == original.input[index] and trt_graph.op(name) == "Conv", f"{add.name}[{index}]"
            else:
                assert trt_graph.op(name) == "DequantizeLinear", f"{add.name}[{index}] is not quantized"
        fused += partner is not None
        both += partner is None
    assert fused > 100 and both > 20, (fused, both)  # residual blocks, and the fuse layers' sums


def test_trt_no_q_on_convolution_outputs(trt_graph, fp32_graph):
    """Rule 2: a convolution's output meets no Q, except as the residual input of an Add whose fusion
    partner is another convolution (a block with a downsampling branch): then it is that Add's
    quantized second operand, read by that Q alone."""
    residual = 0
    for conv in trt_graph.network("Conv", "ConvTranspose"):
        quantizers = [r for r in trt_graph.readers.get(conv.output[0], []) if r.op_type == "QuantizeLinear"]
        if not quantizers:
            continue
        (quant,) = quantizers
        assert trt_graph.reader_types(conv.output[0]) == ["QuantizeLinear"], conv.name
        (dq,) = trt_graph.readers[quant.output[0]]
        (add,) = trt_graph.readers[dq.output[0]]
        assert add.op_type == "Add", f"{conv.name}: its output is quantized for a {add.op_type}"
        original = next(n for n in fp32_graph.network("Add") if n.name == add.name)
        partner = _expected_partner(original, fp32_graph)
        assert partner is not None and original.input[partner] != conv.output[0], conv.name
        residual += 1
    assert residual > 0


def test_trt_relu_reads_the_convolution(trt_graph):
    """Rule 3: no Q/DQ between a convolution (or a fused Add) and its ReLU: every ReLU reads a float
    tensor, and no QuantizeLinear reads what a ReLU reads."""
    relus = trt_graph.network("Relu")
    assert len(relus) > 250
    from_conv = 0
    for relu in relus:
        assert trt_graph.op(relu.input[0]) in ("Conv", "Add", "BatchNormalization"), relu.name
        assert "QuantizeLinear" not in trt_graph.reader_types(relu.input[0]), relu.name
        from_conv += trt_graph.op(relu.input[0]) == "Conv"
    assert from_conv > 100


def test_trt_qdq_only_on_inputs(trt_graph):
    """Quantize inputs, not outputs: each Q feeds one DQ, and each activation DQ feeds one network Conv,
    ConvTranspose or Add; Resize and Relu have no Q/DQ of their own (the Q after an upsampling Resize is
    the Add's input quantizer)."""
    g = trt_graph
    for node in g.nodes:
        if node.op_type == "QuantizeLinear":
            assert g.reader_types(node.output[0]) == ["DequantizeLinear"], node.name
        elif node.op_type == "DequantizeLinear" and node.input[0] not in g.initializers:
            readers = g.readers[node.output[0]]
            assert len(readers) == 1 and readers[0].op_type in ("Conv", "ConvTranspose", "Add"), node.name
            assert readers[0].name.startswith("/network/") and not _final(readers[0]), node.name
    resizes = g.network("Resize")
    assert resizes
    for resize in resizes:
        assert g.op(resize.input[0]) == "Conv", resize.name
        assert g.reader_types(resize.output[0]) == ["QuantizeLinear"], resize.name


def test_trt_activations_symmetric_int8(trt_graph, placed):
    """TensorRT's explicit quantization takes symmetric int8 only: every Q/DQ zero point an int8 zero (the
    onnxruntime placement's are uint8, some at 0 and some at 128)."""
    g = trt_graph
    qdq = [n for n in g.nodes if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq
    for node in qdq:
        zero = g.initializers[node.input[2]]
        assert zero.data_type == onnx.TensorProto.INT8 and not onnx.numpy_helper.to_array(zero).any(), node.name
    ort_graph = Graph(placed["onnxruntime"][1])
    ort_zeros = {int(onnx.numpy_helper.to_array(ort_graph.initializers[n.input[2]])) for n in ort_graph.nodes
                 if n.op_type == "QuantizeLinear"}
    assert ort_zeros == {0, 128}


def test_trt_decode_and_final_layers_float(placed, trt_graph):
    """Rule 5: the final layers, the head's Concat and BatchNorm and the decode read float tensors only."""
    steps = placed["tensorrt"][0]
    assert q.float_region_violations(placed["tensorrt"][1], set(steps.quantize)) == []
    finals = [n for n in trt_graph.network("Conv") if _final(n)]
    assert len(finals) == 2
    for node in [*finals, *[n for n in trt_graph.nodes if not n.name.startswith("/network/")]]:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            assert "DequantizeLinear" not in {trt_graph.op(i) for i in node.input}, node.name
    qdq = [n for n in trt_graph.nodes if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert not [n.name for n in qdq if n.name.startswith("/decode/") or "final_layers" in n.name]


def test_trt_plan_calibrates_only_what_the_quantizer_reads(placed):
    """The tensorrt plan measures the inputs of its Convs and Adds, no outputs: fewer tensors than
    the onnxruntime plan, and every activation Q of the file reads one of them."""
    trt_steps, trt_model, _ = placed["tensorrt"]
    ort_steps = placed["onnxruntime"][0]
    assert len(trt_steps.activations) < len(ort_steps.activations)
    quantized = {n.input[0] for n in trt_model.graph.node if n.op_type == "QuantizeLinear"}
    assert quantized <= set(trt_steps.activations)
    # The fusion partners are measured (ONNX Runtime's quantizer wants their range) but placed float.
    assert set(trt_steps.activations) - quantized


# ----------------------------------------------------------------------------------------------
# onnxruntime: the default, unchanged


def test_onnxruntime_is_the_default(source, placed):
    """``plan`` without a placement is the onnxruntime one; it keeps no input float and puts a Q on every
    network convolution's output (what QLinearConv needs; test_precision checks the rest of it)."""
    default = q.plan(source.model)
    steps, model, _ = placed["onnxruntime"]
    assert default == steps and default.placement is ONNXRUNTIME and default.float_inputs == []
    g = Graph(model)
    for conv in g.network("Conv"):
        if not _final(conv):
            assert g.reader_types(conv.output[0]) == ["QuantizeLinear"], conv.name


def test_metadata_records_the_target(placed):
    for target, (_, model, _) in placed.items():
        props = {p.key: p.value for p in model.metadata_props}
        assert props[TARGET_KEY] == target
        assert props["calib.quantized_op_types"] == ",".join(PLACEMENTS[target].op_types)


# ----------------------------------------------------------------------------------------------
# The CLI, ONNX Runtime and export.trt


@pytest.fixture(scope="module")
def cli_tensorrt(folder, fp32_file) -> tuple[Path, str]:
    path = folder / "w32.trt.int8.onnx"
    code, out, err = _main(calib_cli.main, ["--onnx", str(fp32_file), "--target", "tensorrt", "--method", "minmax",
                                            "--images", "1", "--calib", str(need(MINI / "images")),
                                            "--cache-dir", str(folder / "cache"), "-o", str(path)])
    assert code == 0, out + err
    return path, out


def test_cli_tensorrt_target(cli_tensorrt, placed):
    """The CLI's file has the tensorrt placement (same Q/DQ structure as the fixture's) and passed the
    INT8-vs-FP32 SQNR check before writing it."""
    path, out = cli_tensorrt
    assert "placement for tensorrt" in out and "SQNR" in out, out
    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    assert props[TARGET_KEY] == "tensorrt" and props["hrnet_deploy.precision"] == json.dumps("int8")

    def structure(m) -> list[tuple[str, str, tuple[str, ...]]]:
        g = Graph(m)
        return [(n.op_type, n.name, tuple(str(g.op(i)) for i in n.input)) for n in g.nodes]

    assert structure(model) == structure(placed["tensorrt"][1])


def test_tensorrt_file_runs_in_onnxruntime_cpu(cli_tensorrt, tmp_path):
    out = tmp_path / "people.json"
    done = subprocess.run([sys.executable, "-m", "runtime.run", "--engine", str(cli_tensorrt[0]), "--image",
                           str(SAMPLE), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert ", int8," in done.stdout
    results = json.loads(out.read_text())
    assert results and all(len(r["keypoints"]) == 51 and np.isfinite(r["keypoints"]).all() for r in results)


def test_export_trt_warning(cli_tensorrt, placed, fp32_file):
    """export.trt's one-line warning: for an onnxruntime-placed INT8 file and for an INT8 file without
    ``calib.target`` (made before the key existed, so onnxruntime-placed); not for a tensorrt-placed one
    nor for FP32."""
    ort_file = placed["onnxruntime"][2]
    warning = builder.placement_warning(builder.read_onnx(ort_file))
    assert warning is not None and len(warning.splitlines()) == 1
    assert str(ort_file) in warning and "--target tensorrt" in warning and "onnxruntime" in warning
    assert builder.placement_warning(builder.read_onnx(cli_tensorrt[0])) is None
    assert builder.placement_warning(builder.read_onnx(fp32_file)) is None
    facts = builder.read_onnx(ort_file)
    legacy = builder.OnnxFacts(facts.path, facts.metadata, {k: v for k, v in facts.props.items() if k != TARGET_KEY},
                               facts.input_multiple, facts.sha256)
    assert builder.placement_warning(legacy) == warning


def test_export_trt_refuses_uint8_activations(cli_tensorrt, placed, fp32_file):
    """An onnxruntime-placed file (uint8 activations, ``calib.activations``) is refused in one line naming
    the file and the fix; a tensorrt-placed one, FP32 and an INT8 file without the key (int8 activations)
    pass. Mutation: checking the target instead of the activations lets a legacy file fail."""
    from runtime.errors import UserError

    ort_file = placed["onnxruntime"][2]
    facts = builder.read_onnx(ort_file)
    assert facts.props["calib.activations"] == "uint8"
    with pytest.raises(UserError) as refused:
        builder.check_activations(facts)
    message = str(refused.value)
    assert len(message.splitlines()) == 1 and str(ort_file) in message and "--target tensorrt" in message
    assert builder.read_onnx(cli_tensorrt[0]).props["calib.activations"] == "int8"
    builder.check_activations(builder.read_onnx(cli_tensorrt[0]))
    builder.check_activations(builder.read_onnx(fp32_file))
    legacy = builder.OnnxFacts(facts.path, facts.metadata, {k: v for k, v in facts.props.items()
                                                            if k != "calib.activations"},
                               facts.input_multiple, facts.sha256)
    builder.check_activations(legacy)


def test_calib_help_names_the_target():
    done = subprocess.run([sys.executable, "-m", "calib", "--help"], cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "--target {onnxruntime,tensorrt}" in text and "(default: onnxruntime)" in text, done.stdout
    assert "--target tensorrt" in text  # an example


def test_unknown_target_is_one_line():
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as stop:
        calib_cli.main(["--onnx", "x.onnx", "--target", "tflite"])
    assert stop.value.code == 2
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and "--target" in lines[0] and "tensorrt" in lines[0], lines

