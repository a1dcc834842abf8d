"""python -m export.decode_onnx — the decode alone (``export.graphs.DecodeOnly``) as an ONNX file, and its runner.

Examples:
  python -m export.decode_onnx -o decode.onnx
  python -m export.decode_onnx --scales 2,1,0.5 -o decode_ms.onnx

The DecodeGraph file (``python -m export.onnx``) takes images. This file takes what the network would
have produced for them, so rendered or recorded network outputs go through an exported backend's own
decode (``benchmarks/parity.py --rendered``). No weights: it is the same for every architecture and
checkpoint.

* inputs, float32, one pair per scale (largest first): ``y0 [2N, 34, h, w]`` and ``y1 [2N, 17, 2h, 2w]``,
  the network's two outputs for the N images followed by their flipped copies; named ``y0``, ``y1``
  for one scale, ``y0_0``, ``y1_0``, ``y0_1`` … for several; every size dynamic;
* outputs: ``candidates``, ``heatmap``, ``tags``, ``tiles`` exactly as the DecodeGraph file's, at the base size
  ``4h × 4w`` of the scale-1 pair;
* ``metadata_props``: the decode parameters as ``decode_only.*`` keys (JSON values, ``DecodeConfig``'s
  fields) and ``export.*`` keys (opset, exporter, torch version). Not ``hrnet_deploy.*`` on purpose:
  ``runtime.run --engine`` refuses the file as "not an hrnet-deploy export" instead of feeding it images.

The FP16 and INT8 DecodeGraph files change only the network: their decode is this same FP32 graph
behind casts, so one decode-only file stands for all three ONNX precisions.

Written like the DecodeGraph file: same exporter and opset, traced at a small size, saved to a
temporary file beside the target, checked (``onnx.checker``, then ONNX Runtime against the torch
``DecodeOnly`` on seeded random outputs of another size and batch, with the DecodeGraph file's own
comparison: dense outputs within ``REL_TOLERANCE``, candidate differences only at ties) and only then
renamed into place. Exit codes: 0 written, 1 verification failed (nothing written), 2 user error.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from runtime.cli import check_scales, parse_scales, run_cli
from runtime.errors import UserError, require
from runtime.files import publish
from runtime.metadata import NUM_JOINTS, DecodeConfig

PREFIX = "decode_only."
# Trace at input size 256 with one image; verify at another size and batch (a portrait, two images).
TRACE = (640, 425, 256, 1)
VERIFY = (425, 640, 192, 2)


def input_names(config: DecodeConfig) -> list[str]:
    """``y0``, ``y1`` for one scale; ``y0_0``, ``y1_0``, ``y0_1``, ``y1_1`` … largest scale first."""
    if len(config.scales) == 1:
        return ["y0", "y1"]
    return [f"y{k}_{i}" for i in range(len(config.scales)) for k in (0, 1)]


def sample_outputs(config: DecodeConfig, width: int, height: int, size: int, batch: int, seed: int = 0) -> list[np.ndarray]:
    """Seeded standard-normal raw outputs shaped as the network's for a ``width × height`` image."""
    from export.graphs import Y0_STRIDE
    from runtime.preprocess import multi_scale_geometry

    rng = np.random.default_rng(seed)
    raw = []
    for geometry in multi_scale_geometry(width, height, size, config.scales):
        w, h = geometry.input_size[0] // Y0_STRIDE, geometry.input_size[1] // Y0_STRIDE
        raw.append(rng.standard_normal((2 * batch, 2 * NUM_JOINTS, h, w), dtype=np.float32))
        raw.append(rng.standard_normal((2 * batch, NUM_JOINTS, 2 * h, 2 * w), dtype=np.float32))
    return raw


def _dynamic_axes(config: DecodeConfig) -> dict[str, dict[int, str]]:
    names = input_names(config)
    axes = {name: {0: "batch2", 2: f"height_{name}", 3: f"width_{name}"} for name in names}
    axes["candidates"] = {0: "batch"}
    axes["heatmap"] = axes["tags"] = {0: "batch", 2: "height", 3: "width"}
    axes["tiles"] = {0: "batch", 2: "tiles_down", 3: "tiles_across"}
    return axes


def to_props(config: DecodeConfig) -> dict[str, str]:
    return {PREFIX + key: json.dumps(value) for key, value in asdict(config).items()}


def from_props(props: dict[str, str]) -> DecodeConfig:
    """Inverse of ``to_props``; raises KeyError/ValueError/TypeError on a map that did not come from it."""
    values = {key[len(PREFIX):]: json.loads(value) for key, value in props.items() if key.startswith(PREFIX)}
    if not values:
        raise KeyError(f"no {PREFIX}* keys")
    return DecodeConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def export_model(config: DecodeConfig, opset: int):
    """Trace ``DecodeOnly(config)`` and return the ``onnx.ModelProto`` with its metadata."""
    import torch

    from export.graphs import DecodeOnly
    from export.onnx import exporter_props, set_metadata, trace

    sample = tuple(torch.from_numpy(a) for a in sample_outputs(config, *TRACE))
    model = trace(DecodeOnly(config).eval(), sample, opset, input_names(config), _dynamic_axes(config))
    set_metadata(model, {**to_props(config), **exporter_props(opset)})
    model.producer_name = "hrnet-deploy"
    model.doc_string = f"HigherHRNet decode only (raw network outputs in; scales {list(config.scales)}; fp32)"
    return model


def torch_outputs(config: DecodeConfig, raw: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The reference: ``DecodeOnly`` in torch (eager, float32) on raw outputs."""
    import torch

    from export.graphs import DecodeOnly
    from runtime.metadata import OUTPUT_NAMES

    with torch.inference_mode():
        outputs = DecodeOnly(config)(*[torch.from_numpy(a) for a in raw])
    return {name: value.numpy() for name, value in zip(OUTPUT_NAMES, outputs)}


def verify(path: Path, config: DecodeConfig):
    """``onnx.checker``, then the file in ONNX Runtime against torch; returns the comparison."""
    import onnx

    from export.verify import compare_outputs

    onnx.checker.check_model(str(path))
    raw = sample_outputs(config, *VERIFY, seed=1)
    with DecodeOnlySession(path) as session:
        return compare_outputs(torch_outputs(config, raw), session.run(raw))


def write_decode_file(target: Path, config: DecodeConfig, opset: int | None = None) -> list[str]:
    """Export, verify and atomically write the decode-only file; returns the verification lines.

    Raises ``RuntimeError`` (and writes nothing) when ONNX Runtime and torch disagree beyond tolerance.
    """
    from export.onnx import OPSET, write_model
    from export.verify import REL_TOLERANCE

    temporary = write_model(export_model(config, opset or OPSET), target)
    try:
        comparison = verify(temporary, config)
        if not comparison.ok():
            raise RuntimeError(f"decode-only file: ONNX Runtime and torch disagree beyond tolerance (dense rel "
                               f"{REL_TOLERANCE:g}, candidate differences only at ties); {target} was not written: "
                               + "; ".join(comparison.lines()))
        publish(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return comparison.lines()


class DecodeOnlySession:
    """A decode-only file in ONNX Runtime (CPU): ``run([y0, y1, ...]) -> {candidates, heatmap, tags}``.

    Not a ``runtime.backends.Backend``: those take uint8 images and a model's ``ModelMetadata``; this
    takes float32 raw outputs and knows only the decode parameters. Session options are the
    ONNX Runtime backend's (default graph optimizations, CPU provider).
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        ort = require("onnxruntime", "edge")
        self.path = Path(path)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime reports unreadable files with several types
            text = " ".join(str(exc).split())[:200]
            raise UserError(f"{self.path}: not a readable ONNX model ({text}); write it again with "
                            f"python -m export.decode_onnx") from None
        try:
            self.config = from_props(dict(self.session.get_modelmeta().custom_metadata_map))
        except (KeyError, ValueError, TypeError) as exc:
            raise UserError(f"{self.path}: not a decode-only export ({exc}); write one with "
                            f"python -m export.decode_onnx") from None
        self.input_names = input_names(self.config)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.session = None

    def run(self, raw: list[np.ndarray]) -> dict[str, np.ndarray]:
        if len(raw) != len(self.input_names):
            raise UserError(f"{self.path}: {len(raw)} raw outputs given, the file takes {self.input_names}")
        feed = {name: np.ascontiguousarray(array, dtype=np.float32) for name, array in zip(self.input_names, raw)}
        return dict(zip(self.output_names, self.session.run(self.output_names, feed)))


def build_parser() -> argparse.ArgumentParser:
    from export.onnx import OPSET

    parser = argparse.ArgumentParser(prog="python -m export.decode_onnx", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=parse_scales, default=(1.0,),
                        help="test scales, one (y0, y1) input pair per scale, must include 1, e.g. 2,1,0.5 (default: 1)")
    parser.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset, 13-20 (default: {OPSET})")
    parser.add_argument("-o", "--output", type=Path, default=Path("decode.onnx"),
                        help="the .onnx file to write (default: decode.onnx)")
    return parser


def run(args: argparse.Namespace) -> int:
    if args.output.suffix != ".onnx" or args.output.is_dir():
        raise UserError(f"-o {args.output}: give a file name ending in .onnx")
    if not 13 <= args.opset <= 20:
        raise UserError(f"--opset {args.opset}: choose 13-20")
    config = DecodeConfig(scales=check_scales(tuple(args.scales)))
    try:
        lines = write_decode_file(args.output, config, args.opset)
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("ONNX Runtime (CPU) vs torch DecodeOnly on random raw outputs:")
    print("\n".join(lines))
    print(f"wrote {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
