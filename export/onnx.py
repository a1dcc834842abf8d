"""python -m export.onnx — export the DecodeGraph to one self-contained ONNX file.

Examples:
  python -m export.onnx --arch w32                                  # synthetic:0 weights -> w32.onnx
  python -m export.onnx --arch w32 --checkpoint w32_512 -o w32_512.onnx
  python -m export.onnx --arch w48 --checkpoint ckpt.pth --scales 2,1,0.5 --simplify -o w48_ms.onnx
  python -m export.onnx --arch w32 --checkpoint w32_512 --precision fp16 -o w32_512.fp16.onnx

What is written
---------------
The whole dense part of the reference (normalize, flip test, HigherHRNet, stage/flip/scale averaging,
NMS, top-k, tag gather, quarter-pixel adjust) as a single ONNX graph:

* inputs: one uint8 ``[N, H, W, 3]`` RGB image per scale, named by ``ModelMetadata.input_names``
  (``image``, or ``image_0`` … largest scale first); N, H and W are dynamic, H and W must be
  multiples of 64 (what ``runtime.preprocess`` produces; recorded as ``export.input_multiple``);
* outputs: ``candidates [N, 17, k, 5]``, ``heatmap [N, 17, H, W]``, ``tags [N, 17, H, W, 2]`` at the
  scale-1 size, and ``tiles [N, 17, H / 8, W / 16, 5]``, the summary refine searches
  (``export.graphs.tile_summary``);
* weights inside the file (never an external-data sidecar; HigherHRNet-W48 is ~255 MB, far below
  protobuf's 2 GB limit);
* ``metadata_props``: ``ModelMetadata.to_props()`` (what every backend reads) plus ``export.*`` keys:
  opset, exporter, torch version, checkpoint file sha256 (empty for synthetic weights), sha256 of
  the weights themselves, input multiple.

The file is written to a temporary name beside the target, checked (``onnx.checker``, then ONNX
Runtime against the torch DecodeGraph on a real image) and only then renamed into place.

Exporter and opset
------------------
The TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``), opset 17.

* The TorchScript exporter ships with torch 2.13 (deprecated, with a warning that we silence)
  and traces the DecodeGraph in a few seconds into a graph of plain ONNX ops: BatchNorm folded into
  the convolutions (only the BN after the ConvTranspose stays a BatchNormalization node), dynamic
  H/W carried by Shape/Gather arithmetic, nothing outside the default domain. The torch.export-based
  exporter (torch's default) does not serve this graph on torch 2.13 / onnxscript 0.7.2: with H, W
  declared as ``64 * Dim`` it raises the opset to 18 (down-conversion to 17 "may not be successful",
  its own warning) and cannot translate ``torch.remainder(index, width)`` with a symbolic width
  (``aten_remainder_scalar``). torch is pinned (``torch==2.13.0`` in the ``export`` extra), so the
  TorchScript exporter stays available; a torch without it stops the export with a clear message.
* Opset 17 sits inside what every target parses: TensorRT 10.0 parses opsets 9–20 and later 10.x
  releases up to 24 (onnx-tensorrt ``docs/operators.md`` of each release), TensorRT 8.5 up to 17,
  ONNX Runtime all of them.

Every op type in the exported graph, against the TensorRT 10 ONNX parser's support matrix
(onnx/onnx-tensorrt ``docs/operators.md``, the 10.x table):

* Conv, ConvTranspose, BatchNormalization, Relu, Add/Sub/Mul/Div, MaxPool (2-D, no Indices output,
  no dilation), Equal/Greater/Less, Where, Cast (incl. UINT8), Concat/Split/Slice (negative step for
  the flip), Reshape/Transpose/Unsqueeze, Shape/Gather, Not/And/Xor: supported, FP32/INT64/BOOL.
* Resize: ``linear`` + ``half_pixel`` (decode, by ``sizes``) and ``nearest`` + ``asymmetric`` +
  ``floor`` (fuse layers, by constant ``scales``) are both listed as supported modes.
* TopK: supported for FP32; restrictions ``sorted`` must be 1 and K < 3840 — ours is sorted, K = 30
  (a constant initializer). TensorRT's TopK layer yields INT32 indices unless told otherwise
  (``ITopKLayer::setIndicesType``, TensorRT 10 API); the indices only feed GatherElements and
  Mod/Div, which take INT32 and INT64 alike, and an index into ``H·W`` fits INT32 for inputs up to
  46k × 46k pixels.
* GatherElements: supported with INT32 and INT64 indices.
* Mod (``fmod=0``) and Div on INT64 (``x = idx % W``, ``y = idx // W``): listed with INT32/INT64
  in 10.x (8.x lacked INT64 Mod).
* Clip is listed for floating types only: the graph clamps its integer neighbour indices with
  comparisons (Less/Greater, Cast, Add/Sub) instead, so no integer Clip is traced.
* TensorRT accepts UINT8 only as a network input or output: the graph casts the uint8 input to
  float before anything else reads it (shapes are taken from the float tensor), so a Cast is the
  input's only reader.

Integer index arithmetic stays INT64 in the file (what ONNX Runtime expects; TensorRT 10 runs INT64
natively for these ops), all decode arithmetic is FP32 (SPEC §12). This support is read from the
parser's documentation, not proven by a TensorRT parse: TensorRT does not install on the machines the
project is tested on (README, "What ran where").

Precision
---------
``--precision fp16`` writes the network in FP16 and everything else in FP32, with explicit Cast nodes
between them (normalize FP32 → Cast FP16 → network → Cast FP32 on both outputs → decode FP32), so the
file is strongly typed: TensorRT's strongly typed networks take the precision of every layer from
the file. Inputs and outputs do not change (uint8 in, float32 out); ``ModelMetadata.precision`` says
``fp16``. It is done in torch: BatchNorm is folded into the convolutions in FP32 first (the
exporter would otherwise fold it in FP16 arithmetic), then the network is cast to half and the
DecodeGraph adds the casts. The FP16 graph is traced at a smaller size (half-precision convolutions
are slow on the CPU; the traced graph does not depend on the size).

The FP16 file is verified against the FP32 PyTorch graph with tolerances for FP16 rather than for
reordered FP32 sums: per-output SQNR (signal-to-quantization-noise ratio, dB) must stay above
``FP16_SQNR_FLOOR_DB``; the candidate-set agreement is printed, not checked, because the discrete
decode steps (threshold, NMS equality, top-k) flip at ties that FP16 noise is large enough to cross.
ONNX Runtime's CPU provider has no FP16 kernels for most of these ops on x86 and runs them in FP32
around inserted casts, so CPU accuracy is close to, not equal to, a GPU's FP16 accuracy. INT8 is
``python -m calib`` (explicit Q/DQ on top of an FP32 export).

Exit codes: 0 written and verified, 1 verification failed (nothing written), 2 user error.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export.zoo import SYNTHETIC_DEFAULT, cli_checkpoint, zoo_entry_for
from runtime.cli import check_scales, parse_scales, run_cli
from runtime.errors import UserError, require
from runtime.files import check_output_file, publish, write_temporary
from export.verify import (FP16_SQNR_FLOOR_DB, REL_TOLERANCE, PrecisionComparison, compare_outputs, compare_precision,
                           onnxruntime_outputs, prepared_feed, torch_outputs)
from runtime.metadata import (ARCHS, INPUT_MULTIPLE, INPUT_MULTIPLE_KEY, INPUT_SIZES, OUTPUT_NAMES, DecodeConfig,
                              ModelMetadata)
from runtime.progress import working

OPSET = 17
EXPORTER = "torch.onnx TorchScript exporter (dynamo=False)"
MAX_BYTES = 2 * 1024**3  # protobuf's limit for one message: above it weights need external data
# Keys beside ModelMetadata's own in metadata_props (ModelMetadata.from_props ignores them).
EXPORT_PREFIX = "export."

PRECISIONS = ("fp32", "fp16")
# The FP16 DecodeGraph is traced at this input size (FP16 convolutions are slow on the CPU).
FP16_TRACE_SIZE = 64


def _samples_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "runtime" / "samples"


DEFAULT_VERIFY_IMAGE = "000000000785.jpg"


# ----------------------------------------------------------------------------------------------
# Building and exporting


@dataclass(frozen=True)
class Built:
    """The torch DecodeGraph to export, what the file will say about itself, and the weights' digests."""

    graph: object
    metadata: ModelMetadata
    checkpoint_sha256: str  # the checkpoint file's sha256; "" for synthetic weights
    weights_sha256: str  # sha256 of the state dict's tensors (names, shapes, bytes) in key order
    # The FP32 DecodeGraph that verification compares with (``graph`` itself for an FP32 export).
    reference: object = None

    def __post_init__(self) -> None:
        if self.reference is None:
            object.__setattr__(self, "reference", self.graph)


def build(arch: str, checkpoint: str = SYNTHETIC_DEFAULT, input_size: int = 512,
          scales: tuple[float, ...] = (1.0,), precision: str = "fp32", flip: bool = True) -> Built:
    """Load ``arch`` with ``checkpoint`` and wrap it in the DecodeGraph that gets exported.

    ``flip=False``: a graph without the flip test (one network pass per image; SPEC §5).

    ``precision="fp16"``: the exported graph runs a folded, half-precision copy of the network; the
    FP32 graph is kept as ``Built.reference``. ``weights_sha256`` is always that of the FP32 weights.
    """
    require("torch", "export")
    from export.checkpoint import load_model
    from export.graphs import DecodeGraph

    if input_size not in INPUT_SIZES:
        raise UserError(f"--input-size {input_size}: choose one of {', '.join(map(str, INPUT_SIZES))}")
    if precision not in PRECISIONS:
        raise UserError(f"--precision {precision}: choose one of {', '.join(PRECISIONS)} (INT8: python -m calib)")
    decode = DecodeConfig(scales=check_scales(tuple(scales)), flip=flip)
    network, provenance = load_model(arch, checkpoint)
    metadata = ModelMetadata(arch=arch, input_size=input_size, decode=decode, checkpoint=provenance,
                             precision=precision)
    file_sha = "" if provenance.startswith("synthetic:") else provenance
    reference = DecodeGraph(network, decode).eval()
    graph = reference if precision == "fp32" else DecodeGraph(half_network(network), decode, precision).eval()
    return Built(graph, metadata, file_sha, weights_digest(network.state_dict()), reference)


def fold_batchnorm(network):
    """A copy of ``network`` with every BatchNorm folded into the convolution that feeds it (in FP32).

    The pairs are read from the network's own data flow (``torch.fx``): a BatchNorm whose input is a
    Conv2d/ConvTranspose2d output read by nothing else. Module names are kept (the folded
    BatchNorm becomes an Identity), so the exported nodes keep their scope names.
    """
    import copy

    import torch
    from torch import nn
    from torch.ao.quantization import fuse_modules

    traced = torch.fx.symbolic_trace(network)
    modules = dict(traced.named_modules())
    pairs = []
    for node in traced.graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], nn.BatchNorm2d):
            continue
        source = node.args[0]
        if (isinstance(source, torch.fx.Node) and source.op == "call_module" and len(source.users) == 1
                and isinstance(modules[source.target], (nn.Conv2d, nn.ConvTranspose2d))):
            pairs.append([source.target, node.target])
    return fuse_modules(copy.deepcopy(network).eval(), pairs, inplace=False)


def half_network(network):
    """The network for an FP16 export: BatchNorm folded in FP32, then every parameter cast to half."""
    return fold_batchnorm(network).half().eval()


def weights_digest(state: dict) -> str:
    """sha256 over every tensor of a state dict: name, dtype, shape and bytes, in key order."""
    digest = hashlib.sha256()
    for name, tensor in state.items():
        array = tensor.detach().cpu().contiguous().numpy()
        digest.update(f"{name}|{array.dtype.str}|{list(array.shape)}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def trace_inputs(metadata: ModelMetadata, size: int = 256) -> list:
    """Small uint8 inputs with the shape relations of a real image (one per scale) for tracing.

    Sizes come from the same multi-scale geometry as at run time (a 640×425 landscape image, input
    size ``size``, 256 by default, so tracing stays fast); H ≠ W and the scales differ in size, so no
    dimension can be mistaken for another. The traced graph is valid for every size: shapes are read
    at run time.
    """
    import torch

    from runtime.preprocess import multi_scale_geometry

    rng = np.random.default_rng(0)
    inputs = []
    for geometry in multi_scale_geometry(640, 425, size, metadata.decode.scales):
        width, height = geometry.input_size
        inputs.append(torch.from_numpy(rng.integers(0, 256, size=(1, height, width, 3), dtype=np.uint8)))
    return inputs


def _dynamic_axes(metadata: ModelMetadata) -> dict[str, dict[int, str]]:
    names = metadata.input_names
    axes = {name: {0: "batch", 1: f"height_{i}" if len(names) > 1 else "height",
                   2: f"width_{i}" if len(names) > 1 else "width"} for i, name in enumerate(names)}
    base = axes[names[metadata.decode.base]]
    axes["candidates"] = {0: "batch"}
    axes["heatmap"] = {0: "batch", 2: base[1], 3: base[2]}
    axes["tags"] = {0: "batch", 2: base[1], 3: base[2]}
    axes["tiles"] = {0: "batch", 2: "tiles_down", 3: "tiles_across"}
    return axes


def trace(module, inputs: tuple, opset: int, input_names: list[str], dynamic_axes: dict[str, dict[int, str]]):
    """``module`` traced by the TorchScript exporter into an ``onnx.ModelProto`` (outputs OUTPUT_NAMES)."""
    onnx = require("onnx", "export")
    import torch

    with tempfile.TemporaryDirectory(prefix="hrnet-onnx-") as folder:
        raw = Path(folder) / "traced.onnx"
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's deprecation notice and tracer warnings
            try:
                torch.onnx.export(module, inputs, str(raw), dynamo=False, opset_version=opset,
                                  input_names=input_names, output_names=list(OUTPUT_NAMES),
                                  dynamic_axes=dynamic_axes, do_constant_folding=True)
            except TypeError as exc:  # a torch without the TorchScript exporter
                raise UserError(f"this torch ({torch.__version__}) cannot run the TorchScript ONNX exporter "
                                f"({exc}); install the pinned version: pip install 'hrnet-deploy[export]'") from None
        return onnx.load(str(raw))


def export_model(built: Built, opset: int = OPSET):
    """Trace the DecodeGraph and return the finished ``onnx.ModelProto`` (metadata and passes applied)."""
    metadata = built.metadata
    size = FP16_TRACE_SIZE if metadata.precision == "fp16" else 256
    model = trace(built.graph, tuple(trace_inputs(metadata, size)), opset, metadata.input_names,
                  _dynamic_axes(metadata))
    _fix_output_shapes(model, metadata)
    props = dict(metadata.to_props())
    props.update(export_props(built, opset))
    set_metadata(model, props)
    model.producer_name = "hrnet-deploy"
    model.producer_version = metadata.toolkit_version
    model.doc_string = (f"HigherHRNet-{metadata.arch.upper()} DecodeGraph (input size {metadata.input_size}, "
                        f"scales {list(metadata.decode.scales)}, weights {metadata.checkpoint}, "
                        f"network {metadata.precision}, decode fp32)")
    return model


def exporter_props(opset: int) -> dict[str, str]:
    """What made a file: opset, exporter and torch version (``export.*`` keys)."""
    import torch

    return {f"{EXPORT_PREFIX}opset": str(opset), f"{EXPORT_PREFIX}exporter": EXPORTER,
            f"{EXPORT_PREFIX}torch_version": torch.__version__}


def export_props(built: Built, opset: int) -> dict[str, str]:
    return {**exporter_props(opset),
            f"{EXPORT_PREFIX}checkpoint_sha256": built.checkpoint_sha256,
            f"{EXPORT_PREFIX}weights_sha256": built.weights_sha256,
            INPUT_MULTIPLE_KEY: str(INPUT_MULTIPLE)}


def set_metadata(model, props: dict[str, str]) -> None:
    """Replace the model's ``metadata_props`` by ``props``."""
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


# ----------------------------------------------------------------------------------------------
# Graph passes for TensorRT (see the module docstring)


def _fix_output_shapes(model, metadata: ModelMetadata) -> None:
    """Static sizes where the tracer left symbols: 17 joints, k candidates, 5 fields, 2 tags, 5 tile fields."""
    fixed = {"candidates": {1: 17, 2: metadata.decode.top_k, 3: 5}, "heatmap": {1: 17}, "tags": {1: 17, 4: 2},
             "tiles": {1: 17, 4: 5}}
    for output in model.graph.output:
        for axis, size in fixed.get(output.name, {}).items():
            dim = output.type.tensor_type.shape.dim[axis]
            dim.Clear()
            dim.dim_value = size


# ----------------------------------------------------------------------------------------------
# Simplification


def simplify(model):
    """Constant-fold and clean the graph with onnxslim (or onnxsim); metadata is kept."""
    props = {p.key: p.value for p in model.metadata_props}
    try:
        import onnxslim
    except ImportError:
        onnxslim = None
    if onnxslim is not None:
        simplified = onnxslim.slim(model)
        tool = f"onnxslim {getattr(onnxslim, '__version__', '')}".strip()
    else:
        try:
            import onnxsim
        except ImportError:
            raise UserError("--simplify needs onnxslim (or onnxsim): pip install onnxslim") from None
        simplified, ok = onnxsim.simplify(model)
        if not ok:
            raise UserError("onnxsim could not validate the simplified model; export without --simplify")
        tool = "onnxsim"
    set_metadata(simplified, {**props, f"{EXPORT_PREFIX}simplified_by": tool})
    return simplified, tool


# ----------------------------------------------------------------------------------------------
# Writing


def write_model(model, target: Path) -> Path:
    """Save ``model`` with its weights inside to a temporary file beside ``target``; return that path
    (``runtime.files.write_temporary``: a full disk is one line, nothing left behind)."""
    size = model.ByteSize()
    if size >= MAX_BYTES:
        raise UserError(f"the model is {size / 1024**3:.2f} GB, above ONNX's 2 GB single-file limit")
    return write_temporary(target, model.SerializeToString())


def file_size_estimate(built: Built) -> int:
    """Bytes the exported file will take, from the graph's tensors (its weights dominate), with headroom."""
    tensors = [*built.graph.parameters(), *built.graph.buffers()]
    return int(sum(t.numel() * t.element_size() for t in tensors) * 1.05) + (1 << 20)


# ----------------------------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m export.onnx",
        description="Export the HigherHRNet DecodeGraph (uint8 image(s) in; candidates, heatmap and tags out) "
                    "to one ONNX file with its weights and metadata inside, then check it in ONNX Runtime "
                    "against PyTorch on a real image.",
        epilog=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", required=True, choices=ARCHS, help="network width (required)")
    parser.add_argument("--input-size", type=int, choices=INPUT_SIZES, default=512,
                        help="short side of the network input the checkpoint was trained for (default: 512)")
    parser.add_argument("--checkpoint",
                        help="a .pth file, a zoo name (w32_512, w32_640, w48_512), or synthetic:SEED "
                             "(default: the released checkpoint of --arch and --input-size when it is cached or downloads, else synthetic:0 with a note; synthetic:SEED is deterministic random weights, NOT a trained model)")
    parser.add_argument("--no-flip", action="store_true",
                        help="leave out the flip test: one network pass per image instead of two (about half the "
                             "network time, lower accuracy); the file's metadata says so (default: flip test on, "
                             "as the reference evaluates)")
    parser.add_argument("--opset", type=int, default=OPSET,
                        help=f"ONNX opset, 13-20 (default: {OPSET}, which TensorRT 8.5+, TensorRT 10 and ONNX Runtime "
                             f"all parse)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="network precision: fp32, or fp16 (the decode stays fp32 behind explicit casts; "
                             "input uint8 and outputs float32 either way) (default: fp32; INT8: python -m calib)")
    parser.add_argument("--scales", type=parse_scales, default=(1.0,),
                        help="test scales baked into the graph, must include 1; one input per scale, "
                             "e.g. 2,1,0.5 (default: 1)")
    parser.add_argument("--simplify", action="store_true",
                        help="simplify the graph with onnxslim (or onnxsim) and verify again (default: off)")
    parser.add_argument("--verify-image", type=Path, default=_samples_dir() / DEFAULT_VERIFY_IMAGE,
                        help=f"image for the ONNX Runtime vs PyTorch check (default: the bundled {DEFAULT_VERIFY_IMAGE})")
    parser.add_argument("--skip-verify", action="store_true",
                        help="write the file without the ONNX Runtime vs PyTorch check (default: check)")
    parser.add_argument("-o", "--output", type=Path,
                        help="the .onnx file to write (default: ARCH.onnx in the current folder, e.g. w32.onnx; "
                             "ARCH.fp16.onnx with --precision fp16)")
    return parser


def _stage(text: str) -> None:
    print(text, flush=True)


class _PrecisionCheck:
    """``ok()`` for a lower-precision file: every SQNR above the floor."""

    def __init__(self, comparison: PrecisionComparison, floor_db: float) -> None:
        self.comparison, self.floor_db = comparison, floor_db

    def ok(self) -> bool:
        return self.comparison.ok(self.floor_db)

    def lines(self) -> list[str]:
        return self.comparison.lines()


def _check_file(path: Path, feed, reference, label: str, precision: str = "fp32"):
    """checker + ONNX Runtime vs the torch reference; returns (comparison, ORT outputs).

    FP32: dense outputs within ``REL_TOLERANCE`` and candidate differences only at ties. FP16: the
    SQNR of every output above ``FP16_SQNR_FLOOR_DB`` (against the FP32 PyTorch graph).
    """
    import onnx

    onnx.checker.check_model(str(path))
    start = time.perf_counter()
    with working(f"      {label}: ONNX Runtime (CPU) run", file=sys.stdout):
        outputs = onnxruntime_outputs(path, feed)
    seconds = time.perf_counter() - start
    if precision == "fp32":
        comparison = compare_outputs(reference, outputs)
        _stage(f"      {label}: onnx.checker passed; ONNX Runtime (CPU) vs PyTorch ({seconds:.1f} s):")
    else:
        comparison = _PrecisionCheck(compare_precision(reference, outputs), FP16_SQNR_FLOOR_DB)
        _stage(f"      {label}: onnx.checker passed; {precision} in ONNX Runtime (CPU) vs FP32 PyTorch "
               f"({seconds:.1f} s), SQNR floor {FP16_SQNR_FLOOR_DB:g} dB:")
    for line in comparison.lines():
        _stage(line)
    return comparison, outputs


def run(args: argparse.Namespace) -> int:
    precision = getattr(args, "precision", "fp32")
    target = args.output or Path(f"{args.arch}.onnx" if precision == "fp32" else f"{args.arch}.{precision}.onnx")
    if target.suffix != ".onnx":
        raise UserError(f"-o {target}: the output file must end in .onnx")
    if target.is_dir():
        raise UserError(f"-o {target}: is a directory; give a file name such as {target / (args.arch + '.onnx')}")
    if not 13 <= args.opset <= 20:
        raise UserError(f"--opset {args.opset}: choose 13-20 (TensorRT 10.0 parses up to 20; default {OPSET})")
    if not args.skip_verify and not args.verify_image.is_file():
        raise UserError(f"--verify-image {args.verify_image}: no such image file")
    check_output_file(target, "-o")
    check_scales(tuple(args.scales))
    args.checkpoint = cli_checkpoint(args.checkpoint, args.arch, args.input_size)  # before the heavy imports
    require("onnx", "export")

    _stage(f"[1/4] loading HigherHRNet-{args.arch.upper()} weights ({args.checkpoint})")
    built = build(args.arch, args.checkpoint, args.input_size, args.scales, precision, flip=not args.no_flip)
    check_output_file(target, "-o", need_bytes=file_size_estimate(built) * (2 if args.simplify else 1))
    if built.metadata.checkpoint.startswith("synthetic:"):
        entry = zoo_entry_for(args.arch, args.input_size)
        _stage("      note: synthetic weights are deterministic random numbers, not a trained model; pass "
               f"--checkpoint {entry.alias if entry else 'PATH'} (or a .pth file) for a useful export")
    _stage(f"[2/4] exporting with the {EXPORTER}, opset {args.opset}, "
           f"scales {list(built.metadata.decode.scales)}"
           + ("" if precision == "fp32" else f", network {precision} (BatchNorm folded in fp32), decode fp32")
           + ("" if built.metadata.decode.flip else ", no flip test"))
    start = time.perf_counter()
    with working("      tracing the graph", file=sys.stdout):
        model = export_model(built, args.opset)
    _stage(f"      {len(model.graph.node)} nodes, {model.ByteSize() / 1024**2:.1f} MiB "
           f"({time.perf_counter() - start:.1f} s)")
    temporary = write_model(model, target)
    written = [temporary]
    try:
        if args.skip_verify:
            import onnx

            _stage("[3/4] onnx.checker")
            onnx.checker.check_model(str(temporary))
            _stage("      passed; ONNX Runtime vs PyTorch check skipped (--skip-verify)")
        else:
            _stage(f"[3/4] PyTorch reference on {args.verify_image.name}")
            feed = prepared_feed(built.metadata, args.verify_image)
            start = time.perf_counter()
            with working("      PyTorch reference run", file=sys.stdout):
                reference = torch_outputs(built, feed)
            _stage(f"      {time.perf_counter() - start:.1f} s")
            comparison, plain = _check_file(temporary, feed, reference, "exported graph", precision)
            if not comparison.ok():
                return _verification_failed(target, precision)
        if args.simplify:
            _stage("[4/4] simplifying")
            model, tool = simplify(model)
            simplified = write_model(model, target)
            written.append(simplified)
            _stage(f"      {tool}: {len(model.graph.node)} nodes")
            if not args.skip_verify:
                comparison, outputs = _check_file(simplified, feed, reference, "simplified graph", precision)
                change = max(float(np.abs(outputs[name] - plain[name]).max()) for name in OUTPUT_NAMES)
                _stage(f"      simplified vs exported graph in ONNX Runtime: max |difference| {change:.3e}")
                if not comparison.ok():
                    return _verification_failed(target, precision)
            temporary = simplified
        else:
            _stage("[4/4] no simplification (--simplify not given)")
        publish(temporary, target)
    finally:
        for path in written:
            if path.exists():
                path.unlink()
    _stage(f"wrote {target} ({target.stat().st_size / 1024**2:.1f} MiB, weights inside)")
    return 0


def _verification_failed(target: Path, precision: str = "fp32") -> int:
    if precision == "fp32":
        rule = f"dense rel {REL_TOLERANCE:g}, candidate differences only at ties"
    else:
        rule = f"{precision}: SQNR of every output at least {FP16_SQNR_FLOOR_DB:g} dB against FP32 PyTorch"
    print(f"error: ONNX Runtime and PyTorch disagree beyond tolerance ({rule}); {target} was not written",
          file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
