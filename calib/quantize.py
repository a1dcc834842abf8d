"""INT8 post-training quantization of an exported DecodeGraph: explicit Q/DQ, for TensorRT.

Placement per target
--------------------
``calib.placement`` holds the rules of each target (``python -m calib --target``): which node types are
quantized and which of their tensors get Q/DQ. The two sections below describe the default,
``onnxruntime``; ``tensorrt`` quantizes the inputs of the convolutions and Adds only, as NVIDIA's
guide asks (see that module). The float region and the per-reader quantizers are the same for both.

What gets quantized
-------------------
Only the network (nodes named ``/network/...`` by the exporter): its Conv, ConvTranspose and Add
nodes, and the Relu and nearest-neighbour Resize nodes that read an int8 output of those, minus
the two ``keypoint_head.final_layers`` 1×1 convolutions that produce the heatmaps and tags.
Everything before (uint8 → float normalize) and after (stage/flip averaging, Resize, NMS MaxPool,
TopK, Gather, the ±0.25 adjust) stays float32: SPEC §12's discrete decisions compare values a few
1e-3 apart, which INT8 steps of the final layers' outputs would wipe out. After ONNX Runtime has
placed its Q/DQ nodes, any float node that was handed a DequantizeLinear output (the quantizer
rewires every reader of a quantized tensor, not only the quantized ones) is given the float tensor
back, and Q/DQ nodes left without readers are removed — so no Q/DQ sits in front of the decode or
the final layers.

Where the Q/DQ pairs sit
------------------------
On the inputs *and* the outputs of the quantized nodes, so that the network body is a chain of
int8 tensors: ``DQ → Conv → Q``, ``DQ, DQ → Add → Q``, ``DQ → Relu → Q``, and a Resize whose output
reuses its input's scale (a nearest-neighbour copy changes no value). Each tensor has one
calibrated scale, whichever node reads it. The exceptions: ConvTranspose keeps a float
output (a float BatchNormalization reads it, and ONNX Runtime has no integer deconvolution), and
nodes outside the plan read float.

Why outputs too: ONNX Runtime's CPU provider computes in integers only where a whole unit is
quantized — it replaces ``DQ(x), DQ(w) → Conv → Q`` by ``QLinearConv`` and ``DQ, DQ → Add → Q`` by
``QLinearAdd``, and drops the Q/DQ around the Resize; a Conv with Q/DQ on its inputs only is
dequantized and convolved in float (an inputs-only file took 1.13× the FP32 graph time). Relu has no
integer kernel there; with the ``onnxruntime`` placement's zero-based ranges the Q before it already
clamps at zero and ``fold_relus`` removes it (see calib.placement). TensorRT takes Q/DQ on outputs as
well (its guide shows a convolution and an element-wise Add each fused with the Q after them). Its
placement advice would leave no Q/DQ between a convolution and its ReLU, which ONNX Runtime needs;
that placement is ``--target tensorrt``, and what either costs in a TensorRT engine is not measured here
(no TensorRT on these machines).

With int8 activations (``tensorrt``), one Q→DQ pair per reading node (``DedicatedQDQPair``), all
with the tensor's scale: on x86 ONNX Runtime converts an int8 pair to uint8 (what its integer
kernels take) only where the Q feeds a single DQ, so a tensor read by a convolution and a residual
Add needs two quantizers, and ``separate_reader_quantizers`` keeps ONNX Runtime from merging them
again. The ``onnxruntime`` placement quantizes activations to uint8 directly: one Q per tensor.

Q/DQ format (what TensorRT's explicit quantization takes, TensorRT 10 "Working with quantized types")
------------------------------------------------------------------------------------------------------
* ``QuantFormat.QDQ``; weights ``QInt8`` and symmetric (zero point 0, ``WeightSymmetric``); activations
  per tensor, ``QInt8`` and symmetric for ``tensorrt`` (``ActivationSymmetric``), ``QUInt8`` for
  ``onnxruntime`` (zero point 128, or 0 on the zero-based ReLU tensors); weights per output channel
  (axis 0 for Conv, axis 1 for ConvTranspose, whose weight layout is ``[in, out, kh, kw]``), stored
  as int8 initializers read by a DequantizeLinear.
* Bias left float (``QuantizeBias=False``): the TensorRT ONNX parser takes DequantizeLinear on 8-bit
  tensors only; it fuses the float bias into the INT8 convolution itself.
* The ``axis`` attribute that tells a tensor's quantizers apart is ignored for per-tensor scales
  (ONNX spec; TensorRT's parser resets it).

ONNX Runtime (CPU) runs the same file: it is how INT8 accuracy is measured here without a GPU, and
``calib.ort_cpu`` counts the integer operators its optimizer forms.

Calibration
-----------
Statistics come from real images through the runtime preprocessing (``calib.dataset``), one image at
a time, over exactly the tensors the quantizer needs (the float inputs and outputs of the nodes
above, bar a Resize's output). The graph runs in pieces (``calib.pieces``) and every tensor is folded
into a running maximum and a 2048-bin histogram of |x| as it is produced (``calib.statistics``), so
memory holds one piece's tensors of one image, never all ~740 of them. One pass serves every method,
each giving a threshold t on |x| (the range [-t, t], or [0, t] for the zero-based ReLU tensors):

* ``percentile`` (default): the range at the 99.999th percentile of |x|: robust to the few extreme
  activations a handful of images produce;
* ``entropy``: the Kullback-Leibler threshold search known from TensorRT's entropy calibrator;
* ``minmax``: the full observed range.

The statistics are cached on disk (``.npz``, written atomically), keyed by the model file's sha256,
the images (names and bytes), the placement (``Placement.key``: the target, which op types are
quantized, which pass values through, which keep a float output), the measured tensors, the
histogram size and the ONNX Runtime version: a rerun with any method skips the images, and a cache
written for another placement is never read. The chosen method's thresholds reach ``quantize_static`` as fixed ranges.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from calib.placement import (
    ACTIVATIONS_KEY,
    ONNXRUNTIME,
    TARGET_KEY,
    Placement,
    float_inputs,
    release_inputs,
    tensor_readers,
)
from runtime.errors import UserError
from runtime.files import cache_dir, file_sha256
from runtime.metadata import ModelMetadata, read_props

METHODS = ("percentile", "entropy", "minmax")
DEFAULT_METHOD = "percentile"
# Every op type a placement (calib.placement) quantizes is one of these: the calibrator looks at their tensors.
QUANTIZED_OP_TYPES = ONNXRUNTIME.op_types
NETWORK_SCOPE = "/network/"
# The two head output convolutions (and their copies for further scales: final_layers.0_1 ...).
FINAL_LAYER = re.compile(r"/keypoint_head/final_layers\.\d+(_\d+)?/")
# Each method's settings (calib.statistics); the statistics themselves serve every method.
METHOD_OPTIONS = {
    "percentile": {"percentile": 99.999},
    "entropy": {"levels": 128},
    "minmax": {},
}
QUANTIZER_OPTIONS = {
    "ActivationSymmetric": True,
    "WeightSymmetric": True,
    "QuantizeBias": False,
    "AddQDQPairToWeight": False,
    "QDQOpTypePerChannelSupportToAxis": {"Conv": 0, "ConvTranspose": 1},
}
CACHE_FORMAT = 3  # bump when what the cache holds changes meaning
# QuantizeLinear's ``axis`` (default 1) is ignored for a per-tensor scale (ONNX spec; TensorRT's parser resets it).
# Distinct values on the quantizers of one tensor keep ONNX Runtime from merging them (see
# separate_reader_quantizers); the activations here are NCHW feature maps, so 0, 2 and 3 are the other valid ones.
SPARE_AXES = (0, 2, 3)
REEXPORT = "export an FP32 model with python -m export.onnx (without --simplify) and quantize that"


def default_cache_dir() -> Path:
    """``calib/`` in the toolkit's cache folder (beside the checkpoint cache)."""
    return cache_dir() / "calib"


# ----------------------------------------------------------------------------------------------
# The source model


@dataclass(frozen=True)
class Source:
    """An FP32 hrnet-deploy ONNX file: its graph (weights inside, shared weights inlined), metadata, digest."""

    path: Path
    model: object  # onnx.ModelProto
    metadata: ModelMetadata
    props: dict[str, str]
    sha256: str


def open_source(path: Path) -> Source:
    """Load and check the model to quantize; every problem a user can fix is a one-line UserError."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise UserError(f"--onnx {path}: no such file; {REEXPORT}")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf reports bad files with several exception types
        raise UserError(f"--onnx {path}: not a readable ONNX file ({' '.join(str(exc).split())[:160]})") from None
    facts = read_props({p.key: p.value for p in model.metadata_props}, f"--onnx {path}", REEXPORT)
    metadata, props = facts.metadata, facts.props
    if metadata.precision != "fp32":
        raise UserError(f"--onnx {path}: this file is {metadata.precision}; INT8 calibration starts from the FP32 "
                        f"export ({REEXPORT})")
    inline_shared_weights(model)
    return Source(path, model, metadata, props, file_sha256(path))


def inline_shared_weights(model) -> int:
    """Let every reader of ``Identity(initializer)`` read the initializer itself; returns how many went.

    A multi-scale export runs the network once per scale, and the exporter hands the second and third
    copy their (shared) weights through Identity nodes. The quantizer only treats initializers as
    weights; an Identity output would be taken for an activation without calibration statistics.
    """
    initializers = {t.name for t in model.graph.initializer}
    outputs = {o.name for o in model.graph.output}
    alias = {node.output[0]: node.input[0] for node in model.graph.node
             if node.op_type == "Identity" and node.input[0] in initializers and node.output[0] not in outputs}
    if not alias:
        return 0
    for node in model.graph.node:
        for index, name in enumerate(node.input):
            if name in alias:
                node.input[index] = alias[name]
    for node in [n for n in model.graph.node if n.op_type == "Identity" and n.output[0] in alias]:
        model.graph.node.remove(node)
    return len(alias)


@dataclass(frozen=True)
class Plan:
    """Which nodes are quantized, which stay float on purpose, and the activations to calibrate."""

    quantize: list[str]  # node names handed to the quantizer
    final_layers: list[str]  # the head output convolutions, kept float
    activations: list[str]  # float tensors ``quantize`` reads and writes (what calibration measures)
    placement: Placement = ONNXRUNTIME  # the target's Q/DQ rules
    float_inputs: list[tuple[str, int]] = field(default_factory=list)  # (node, input) the placement keeps float


def plan(model, quantize_final_layers: bool = False, placement: Placement = ONNXRUNTIME) -> Plan:
    """Read the quantization plan off the exporter's node names (``/network/...`` scopes).

    ``activations`` lists every float input the quantizer is handed, those of ``float_inputs`` included:
    ONNX Runtime's quantizer wants a range for every input of a node it quantizes, and the Q/DQ pairs of
    ``float_inputs`` are taken out after it has placed them.
    """
    initializers = {t.name for t in model.graph.initializer}
    constants = {out for node in model.graph.node if node.op_type == "Constant" for out in node.output}
    network = [n for n in model.graph.node if n.name.startswith(NETWORK_SCOPE) and n.op_type in QUANTIZED_OP_TYPES]
    final = [n.name for n in network if FINAL_LAYER.search(n.name)]
    chosen, int8_outputs = [], set()
    for node in network:  # graph order: a node's producers come first
        if node.op_type not in placement.op_types or (FINAL_LAYER.search(node.name) and not quantize_final_layers):
            continue
        if node.op_type in placement.pass_through and node.input[0] not in int8_outputs:
            continue
        chosen.append(node)
        if node.op_type not in placement.float_output:
            int8_outputs.add(node.output[0])
    if not any(n.op_type == "Conv" for n in chosen) or not final:
        raise UserError(f"the graph has no {NETWORK_SCOPE} convolutions or no final_layers: node names were changed "
                        f"(a simplifier?) or it is not an hrnet-deploy DecodeGraph; {REEXPORT}")
    skip = initializers | constants | {n.output[0] for n in chosen if n.op_type in placement.shared_scale}
    activations = []
    for node in chosen:
        reads = node.input[:1] if node.op_type in ("Conv", "ConvTranspose", *placement.pass_through) else node.input
        writes = node.output[:1] if node.op_type not in placement.float_output else []
        for name in [*reads, *writes]:
            if name and name not in skip and name not in activations:
                activations.append(name)
    names = [n.name for n in chosen]
    return Plan(names, final, activations, placement, float_inputs(model, set(names), placement))


# ----------------------------------------------------------------------------------------------
# Calibration (cached)


def cache_key(source_sha256: str, images_sha256: str, activations: list[str],
              placement: Placement = ONNXRUNTIME) -> str:
    """sha256 over everything the statistics depend on (not the method: every method reads the same ones)."""
    import onnxruntime

    from calib.statistics import DEFAULT_BINS, FORMAT

    payload = {"format": [CACHE_FORMAT, FORMAT], "model": source_sha256, "bins": DEFAULT_BINS, "images": images_sha256,
               "placement": placement.key(),
               "tensors": hashlib.sha256("\n".join(sorted(activations)).encode()).hexdigest(),
               "onnxruntime": onnxruntime.__version__}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def cache_file(cache_dir: Path, metadata: ModelMetadata, key: str) -> Path:
    return Path(cache_dir) / f"{metadata.arch}-{metadata.input_size}-{key[:24]}.npz"


@contextlib.contextmanager
def _quiet():
    """ONNX Runtime's quantization tools print and log progress of their own; keep the CLI's output ours."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(previous)


def calibrate(source: Source, steps: Plan, paths: Iterable[Path], cache: Path) -> bool:
    """Write the statistics of ``steps.activations`` over the images ``paths`` to ``cache`` unless it is there.

    The graph runs piece by piece (calib.pieces) and each tensor is folded into streaming histograms
    (calib.statistics) as it comes, so memory holds about one piece's tensors of one image. Returns
    True on a cache hit."""
    from calib.dataset import calibration_feeds
    from calib.pieces import PieceRunner, cut
    from calib.statistics import StreamingStatistics

    if cache.is_file():
        return True
    statistics = StreamingStatistics(steps.activations)
    with PieceRunner(cut(source.model, steps.activations)) as runner:
        for _, feed in calibration_feeds(paths, source.metadata):
            runner.measure(feed, statistics.add)
            statistics.images += 1
    try:
        statistics.save(cache)
    except UserError as error:
        raise UserError(f"calibration cache {error}; or pass --cache-dir DIR") from None
    return False


def activation_ranges(cache: Path, method: str) -> dict[str, float]:
    """Each activation's threshold on |x| by ``method``, from the cached statistics."""
    from calib.statistics import StreamingStatistics

    return StreamingStatistics.load(cache).thresholds(method, **METHOD_OPTIONS[method])


# ----------------------------------------------------------------------------------------------
# Quantization


def quantize(source: Source, steps: Plan, method: str, cache: Path):
    """Q/DQ model from the cached statistics, placed by ``steps.placement``, decode and final layers float;
    returns the ModelProto. ``keep_float_region`` makes variants of it with fewer nodes quantized;
    ``fold_relus`` is the last step of any variant, once its float region is settled."""
    import numpy as np
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    thresholds = activation_ranges(cache, method)
    zero_based = relu_tensors(source.model, steps) if steps.placement.zero_based_relu else set()
    ranges = TensorsData(CalibrationMethod.MinMax,
                         {name: TensorData(lowest=np.float32(0.0 if name in zero_based else -t), highest=np.float32(t))
                          for name, t in thresholds.items()})
    overrides = {name: [{"symmetric": False}] for name in sorted(zero_based) if name in thresholds}
    activation_type = QuantType.QInt8 if steps.placement.activations == "int8" else QuantType.QUInt8
    with tempfile.TemporaryDirectory(prefix="hrnet-quant-") as folder, _quiet():
        raw, table = Path(folder) / "quantized.onnx", Path(folder) / "ranges.json"
        save_tensors_data(ranges, table)  # quantize_static reads given ranges only from such a file
        quantize_static(source.model, str(raw), None, quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(steps.placement.op_types), per_channel=True, reduce_range=False,
                        activation_type=activation_type, weight_type=QuantType.QInt8,
                        nodes_to_quantize=steps.quantize, calibrate_method=CalibrationMethod.MinMax,
                        extra_options={**QUANTIZER_OPTIONS, "TensorQuantOverrides": overrides,
                                       "DedicatedQDQPair": steps.placement.one_quantizer_per_reader,
                                       "OpTypesToExcludeOutputQuantization": list(steps.placement.float_output)},
                        calibration_cache_path=str(table))
        model = onnx.load(str(raw))
    release_inputs(model, steps.float_inputs)
    keep_float_region(model, set(steps.quantize), source.model)
    separate_reader_quantizers(model)
    return model


def relu_tensors(model, steps: Plan) -> set[str]:
    """The tensors quantized over ``[0, t]`` (``Placement.zero_based_relu``): each quantized Relu's output,
    and its input where the Relu is the only reader.

    ONNX Runtime's quantizer gives a Relu's sole-reader input the Relu output's range, so with the zero point
    at the type's minimum the Q on the convolution's (or Add's) output clamps at zero exactly as the Relu
    does (what ``fold_relus`` relies on); an input read by other nodes too keeps its own symmetric range.
    """
    quantized = set(steps.quantize)
    readers = tensor_readers(model)
    tensors = set()
    for node in model.graph.node:
        if node.op_type == "Relu" and node.name in quantized:
            tensors.add(node.output[0])
            if len(readers.get(node.input[0], ())) == 1:
                tensors.add(node.input[0])
    return tensors


def keep_float_region(model, quantized: set[str], float_model=None) -> int:
    """Give every node outside ``quantized`` its float inputs back; drop Q/DQ nodes nobody reads.

    Activations come back from the Q they were quantized by. Weights (an int8 initializer behind a
    DequantizeLinear) come back from ``float_model``, the FP32 graph the model was quantized from,
    whose node of the same name reads the float tensor; without it only activations are restored.
    Returns how many inputs were rewired.
    """
    producers = {out: node for node in model.graph.node for out in node.output}
    initializers = {t.name for t in model.graph.initializer}
    float_nodes = {n.name: n for n in float_model.graph.node} if float_model is not None else {}
    float_weights = {t.name: t for t in float_model.graph.initializer} if float_model is not None else {}
    rewired = 0
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") or node.name in quantized:
            continue
        for index, name in enumerate(node.input):
            dq = producers.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producers.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[index] = q.input[0]
            elif dq.input[0] in initializers and node.name in float_nodes:
                weight = float_nodes[node.name].input[index]
                if weight not in initializers:
                    model.graph.initializer.append(float_weights[weight])
                    initializers.add(weight)
                node.input[index] = weight
            else:
                continue
            rewired += 1
    _drop_unread(model)
    return rewired


def fold_relus(model) -> int:
    """Remove each Relu that reads ``DQ(Q(x))`` with the zero point at its type's minimum; returns how many.

    Such a DQ yields no negative value, so the Relu returns its input unchanged, and a Q after it with
    the same scale and zero point returns the Q before it (dequantizing and quantizing with one scale
    gives the integer back). When every reader of the Relu is such a Q, the Relu and those Qs go, and
    their readers read the first Q: the graph computes the same numbers without the float Relu and the
    dequantize/quantize pass around it that ONNX Runtime would otherwise run between two integer
    operators. A Relu read by a float node (the final layers) stays. Run it after ``keep_float_region``:
    a float region chosen later would be handed the Relu's unclamped input.
    """
    import numpy as np
    from onnx import numpy_helper

    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}
    readers = tensor_readers(model)
    outputs = {o.name for o in model.graph.output}

    def params(q):
        zero = constants.get(q.input[2]) if len(q.input) > 2 else None
        scale = constants.get(q.input[1])
        return None if zero is None or scale is None else (scale.tobytes(), zero.dtype.str, zero.tobytes())

    folded = []
    for relu in [n for n in model.graph.node if n.op_type == "Relu"]:
        dq = producers.get(relu.input[0])
        q = producers.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        if q is None or q.op_type != "QuantizeLinear" or params(q) is None or relu.output[0] in outputs:
            continue
        zero = constants[q.input[2]]
        if zero.shape != () or zero != np.iinfo(zero.dtype).min:
            continue
        after = readers.get(relu.output[0], [])
        if not after or any(r.op_type != "QuantizeLinear" or params(r) != params(q) for r in after):
            continue
        for second in after:
            for reader in readers.get(second.output[0], []):
                reader.input[:] = [q.output[0] if name == second.output[0] else name for name in reader.input]
        folded.append(relu)
        folded.extend(after)
    for node in folded:
        model.graph.node.remove(node)
    _drop_unread(model)
    return sum(n.op_type == "Relu" for n in folded)


def separate_reader_quantizers(model) -> int:
    """Mark the QuantizeLinear nodes of a tensor read by several quantized nodes with distinct ``axis`` values.

    With int8 activations (the ``tensorrt`` placement) each reader has its own Q→DQ pair (``DedicatedQDQPair``);
    uint8 ones have one Q per tensor and nothing to mark. On x86, ONNX Runtime turns an int8 Q→DQ pair into
    uint8 (what its integer kernels take) only where the Q feeds exactly one DQ, and its common-subexpression
    elimination would first merge identical quantizers of one tensor into a Q feeding several DQs: those readers
    would then convolve and add in float. The axis values (meaningless for per-tensor scales) keep the nodes
    apart; scale and zero point stay the same. A fifth reader would share the first one's node. Returns how many
    nodes were marked.
    """
    from onnx import helper

    quantizers: dict[str, list] = {}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear":
            quantizers.setdefault(node.input[0], []).append(node)
    marked = 0
    for nodes in quantizers.values():
        for node, axis in zip(nodes[1:], SPARE_AXES):
            node.attribute.append(helper.make_attribute("axis", axis))
            marked += 1
    return marked


def _drop_unread(model) -> None:
    """Remove Q/DQ nodes whose outputs nobody reads, then initializers nobody reads."""
    outputs = {o.name for o in model.graph.output}
    while True:
        read = {name for node in model.graph.node for name in node.input} | outputs
        dead = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(out in read for out in n.output)]
        if not dead:
            break
        for node in dead:
            model.graph.node.remove(node)
    read = {name for node in model.graph.node for name in node.input}
    unused = [t for t in model.graph.initializer if t.name not in read]
    for tensor in unused:
        model.graph.initializer.remove(tensor)


def int8_props(source: Source, method: str, images: list[Path], images_sha256: str, key: str,
               placement: Placement = ONNXRUNTIME, keep_float: dict | None = None) -> dict[str, str]:
    """The source's metadata with ``precision`` int8, plus what the calibration and the placement were.

    ``calib.image_names`` lists the calibration images (file names, in order) so that an evaluation can
    leave them out; ``keep_float`` (from the sensitivity pass) is recorded as ``calib.keep_float``.
    """
    import onnxruntime

    props = {k: v for k, v in source.props.items() if not k.startswith("hrnet_deploy.")}
    props.update(replace(source.metadata, precision="int8").to_props())
    props.update({"calib.method": method, "calib.options": json.dumps(METHOD_OPTIONS[method], sort_keys=True),
                  "calib.images": str(len(images)), "calib.images_sha256": images_sha256,
                  "calib.image_names": json.dumps([Path(p).name for p in images]),
                  "calib.source_sha256": source.sha256, "calib.cache_key": key,
                  "calib.onnxruntime_version": onnxruntime.__version__,
                  "calib.quantized_op_types": ",".join(placement.op_types), TARGET_KEY: placement.target,
                  ACTIVATIONS_KEY: placement.activations})
    if keep_float is not None:
        props["calib.keep_float"] = json.dumps(keep_float, sort_keys=True)
    return props


def calibration_image_names(props: dict[str, str]) -> set[str]:
    """The file names an INT8 file was calibrated on (``calib.image_names``); empty for other files."""
    return set(json.loads(props.get("calib.image_names", "[]")))


def qdq_summary(model) -> dict[str, int]:
    """Counts for the CLI: Q and DQ nodes, quantized convolutions (int8 weights behind a DQ)."""
    producers = {out: node for node in model.graph.node for out in node.output}
    convs = [n for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    int8 = sum(1 for n in convs if (p := producers.get(n.input[1])) is not None and p.op_type == "DequantizeLinear")
    return {"QuantizeLinear": sum(n.op_type == "QuantizeLinear" for n in model.graph.node),
            "DequantizeLinear": sum(n.op_type == "DequantizeLinear" for n in model.graph.node),
            "int8 convolutions": int8, "float convolutions": len(convs) - int8}


def float_region_violations(model, quantized: set[str]) -> list[str]:
    """Nodes outside ``quantized`` that read a DequantizeLinear output (should be none)."""
    producers = {out: node for node in model.graph.node for out in node.output}
    bad = []
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") or node.name in quantized:
            continue
        if any((p := producers.get(name)) is not None and p.op_type == "DequantizeLinear" for name in node.input):
            bad.append(node.name)
    return bad
