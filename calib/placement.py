"""Where the Q/DQ nodes of an INT8 file sit, per target runtime (``python -m calib --target``).

The two runtimes turn the same kind of Q/DQ file into integer kernels by different rules, so the
placement that makes one fast is not the one the other's documentation asks for. Both keep the
decode and the two final head layers float32 (``calib.quantize``) and quantize weights per channel,
symmetric int8; they differ in which tensors of the network get a Q→DQ pair and in the activations'
type (symmetric int8 for TensorRT, uint8 for ONNX Runtime).

``onnxruntime`` (default)
    Q/DQ on the inputs *and* outputs of Conv, Add, Relu and nearest Resize, so that ONNX Runtime's
    CPU provider finds the whole units ``DQ, DQ(w) → Conv → Q`` and ``DQ, DQ → Add → Q`` that it
    replaces by QLinearConv and QLinearAdd (see calib/quantize.py for the details and measurements).
    Activations are uint8, the type ONNX Runtime's x86 integer kernels take (u8 activations × s8
    weights), so no int8→uint8 conversion is needed and one Q may feed several DQs. A quantized
    Relu's input and output are quantized over ``[0, t]`` with zero point 0, the type's minimum:
    the Q on the convolution's (or Add's) output then clamps at zero exactly as the Relu does, so
    ``calib.quantize.fold_relus`` takes the Relu and its second Q out (no float Relu is left
    between QLinearConv / QLinearAdd nodes), and the non-negative values get all 256 codes.
    Other activations are symmetric (zero point 128).

``tensorrt``
    The layer-placement recommendations of the TensorRT Developer Guide, section "Working with
    Quantized Types" → "Explicit Quantization" → "Q/DQ Layer-Placement Recommendations", which in
    short say:

    * a weighted layer (Convolution, Deconvolution, GEMM) should have every input quantized: its
      activation and its weights, so that it can compute in INT8;
    * the output of a weighted layer is not quantized by default: TensorRT fuses what follows (bias,
      batch normalization, ReLU) into the layer and decides itself where the next Q goes;
    * batch-normalization and ReLU fusions are not to be imitated with Q/DQ nodes: TensorRT keeps the
      arithmetic of those fusions itself, so a ReLU reads its convolution's float output;
    * an element-wise addition that follows a weighted layer (a residual block) is fused into that
      layer, the other operand entering the fused kernel as its residual input; that residual input
      should be quantized, because its precision sets the precision of the fused layer's output
      (a float residual forces a float output and keeps the next Q from fusing in).

    Here that means: Conv and ConvTranspose read DQ on their activation and weights and write float;
    an Add reads DQ on every input but its *fusion partner*, the input written by a convolution that
    nothing else reads (the first such input), which stays float so that TensorRT can fuse the Add
    into that convolution; Relu and Resize get no Q/DQ of their own. The residual rule is why some
    convolution outputs still meet a Q: where both operands of an Add are convolution outputs (a
    block with a downsampling branch), the second one is the residual input and is quantized (TensorRT
    can give that convolution an INT8 output). A nearest-neighbour Resize only copies values, so Q
    and Resize commute: the Q sits where the Add reads the upsampled tensor, and TensorRT's Q/DQ
    propagation may move it ahead of the Resize onto the convolution's output; which of the two it
    does is TensorRT's choice and is not measured here (no TensorRT on these machines).

    ONNX Runtime runs such a file correctly but mostly in float: with no Q on a convolution's
    output it forms no QLinearConv. ``export.trt`` warns when it is given an INT8 file placed for
    ``onnxruntime`` (metadata key ``calib.target``; files without it are ``onnxruntime``-placed).
"""
from __future__ import annotations

from dataclasses import dataclass

TARGET_KEY = "calib.target"
ACTIVATIONS_KEY = "calib.activations"  # "int8" or "uint8"; files without it have int8 activations
TARGETS = ("onnxruntime", "tensorrt")
DEFAULT_TARGET = "onnxruntime"


@dataclass(frozen=True)
class Placement:
    """Which network nodes a target quantizes and which of their tensors get Q/DQ."""

    target: str
    op_types: tuple[str, ...]  # node types handed to the quantizer
    pass_through: tuple[str, ...]  # quantized only where the tensor they read is int8 (the chain is not cut)
    float_output: tuple[str, ...]  # quantized nodes whose output stays float (no Q on it)
    shared_scale: tuple[str, ...]  # quantized nodes whose output reuses its input's scale (no statistics)
    float_fusion_partner: bool  # an Add keeps its fusion partner's input float (see fusion_partner)
    activations: str = "int8"  # the activations' 8-bit type: "int8" (symmetric) or "uint8"
    zero_based_relu: bool = False  # a quantized Relu's tensors get the range [0, t] and the Relu is folded away

    @property
    def one_quantizer_per_reader(self) -> bool:
        """Whether each reader of a tensor gets a Q→DQ pair of its own (int8 activations; see calib.quantize)."""
        return self.activations == "int8"

    def key(self) -> dict:
        """What of the placement decides which tensors are measured, as JSON-ready values (part of the
        calibration cache key); the activation type and the ReLU ranges only change how the measured
        thresholds become scales, so statistics serve either."""
        return {"target": self.target, "op_types": list(self.op_types), "pass_through": list(self.pass_through),
                "float_output": list(self.float_output), "shared_scale": list(self.shared_scale),
                "float_fusion_partner": self.float_fusion_partner}


ONNXRUNTIME = Placement(
    target="onnxruntime",
    op_types=("Conv", "ConvTranspose", "Add", "Relu", "Resize"),
    # Relu clamps at 0, a nearest-neighbour Resize copies: they pass int8 values on.
    pass_through=("Relu", "Resize"),
    # No integer ConvTranspose on ONNX Runtime's CPU, and a float BatchNormalization reads the head's one.
    float_output=("ConvTranspose",),
    shared_scale=("Resize",),
    float_fusion_partner=False,
    activations="uint8",
    zero_based_relu=True,
)
TENSORRT = Placement(
    target="tensorrt",
    op_types=("Conv", "ConvTranspose", "Add"),
    pass_through=(),
    float_output=("Conv", "ConvTranspose", "Add"),  # quantize inputs, not outputs
    shared_scale=(),
    float_fusion_partner=True,
)
PLACEMENTS = {p.target: p for p in (ONNXRUNTIME, TENSORRT)}
WEIGHTED = ("Conv", "ConvTranspose")


def fusion_partner(add, producers: dict, readers: dict) -> int | None:
    """Index of the input of ``add`` that TensorRT fuses it with: written by a convolution read by ``add`` alone.

    ``producers`` maps a tensor to the node writing it, ``readers`` a tensor to the nodes reading it (the
    float graph, before quantization). None when no input qualifies (e.g. an Add of a ReLU output and an
    upsampled tensor): then every input is quantized.
    """
    for index, name in enumerate(add.input):
        node = producers.get(name)
        if node is not None and node.op_type in WEIGHTED and len(readers.get(name, ())) == 1:
            return index
    return None


def tensor_readers(model) -> dict[str, list]:
    """Every tensor name of ``model``'s graph mapped to the nodes that read it, in graph order."""
    readers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    return readers


def float_inputs(model, quantized: set[str], placement: Placement) -> list[tuple[str, int]]:
    """``(node name, input index)`` of the quantized nodes' inputs that ``placement`` keeps float."""
    if not placement.float_fusion_partner:
        return []
    producers = {out: node for node in model.graph.node for out in node.output}
    readers = tensor_readers(model)
    kept = []
    for node in model.graph.node:
        if node.op_type == "Add" and node.name in quantized:
            index = fusion_partner(node, producers, readers)
            if index is not None:
                kept.append((node.name, index))
    return kept


def release_inputs(model, inputs: list[tuple[str, int]]) -> int:
    """Let each ``(node, index)`` read the float tensor behind its ``DQ(Q(x))`` again; returns how many.

    The Q/DQ nodes left unread are removed by the caller (``calib.quantize``).
    """
    producers = {out: node for node in model.graph.node for out in node.output}
    by_name = {node.name: node for node in model.graph.node}
    released = 0
    for name, index in inputs:
        node = by_name[name]
        dq = producers.get(node.input[index])
        q = producers.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        if q is not None and q.op_type == "QuantizeLinear":
            node.input[index] = q.input[0]
            released += 1
    return released

