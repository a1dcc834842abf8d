"""The model files of a parity run under OUT/models/: made on first use with the project's own tools, reused after.

ONNX files come from ``python -m export.onnx`` (and ``python -m calib`` for INT8), TensorRT plans from
export.trt's ``build_engine``, the decode-only file from export.decode_onnx. Each file is named by the
hash of the settings it is made from, so a change of settings makes a new file beside the old one.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from benchmarks.coco import REPO
from benchmarks.parity_identity import INT8_TARGET, identity_key
from calib.placement import DEFAULT_TARGET
from runtime.errors import UserError

# The ONNX file each TensorRT engine is built from: precision lives in the file (strongly typed builds),
# and the INT8 engine's Q/DQ are placed for TensorRT.
TRT_SOURCE = {"trt-fp32": "onnx", "trt-fp16": "onnx-fp16", "trt-int8": "onnx-int8-tensorrt"}


def _export_command(args: argparse.Namespace, precision: str, target: Path) -> list[str]:
    return [sys.executable, "-m", "export.onnx", "--arch", args.arch, "--input-size", str(args.input_size),
            "--checkpoint", args.checkpoint, "--scales", ",".join(f"{s:g}" for s in args.scales),
            "--precision", precision, "-o", str(target)]


def _run_tool(command: list[str], what: str) -> None:
    print(f"{what} ...", file=sys.stderr, flush=True)
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"{' '.join(command[1:4])} failed (exit {done.returncode}): {tail[0]}")


def model_file(name: str, args: argparse.Namespace, settings: dict) -> Path:
    """The exported file of an ONNX backend under OUT/models/, made on first use and reused after.

    FP32/FP16 files are named by the hash of their export settings; an INT8 file by the hash of the
    FP32 file it is quantized from and the calibration settings (image count and Q/DQ placement).
    """
    from runtime.files import file_sha256

    models = args.out / "models"
    precision = "fp16" if name == "onnx-fp16" else "fp32"
    export_id = {key: settings[key] for key in ("arch", "input_size", "checkpoint", "scales")}
    stem = f"{args.arch}-{args.input_size}-{identity_key({**export_id, 'precision': precision})}"
    path = models / f"{stem}.{precision}.onnx"
    if not path.is_file():
        _run_tool(_export_command(args, precision, path), f"exporting {name} model to {path} (once)")
    if name not in INT8_TARGET:
        return path
    calibration = {"source": file_sha256(path), "images": args.calib_images}
    if INT8_TARGET[name] != DEFAULT_TARGET:
        calibration["target"] = INT8_TARGET[name]
    int8 = models / f"{stem}.int8-{identity_key(calibration)}.onnx"
    if not int8.is_file():
        _run_tool([sys.executable, "-m", "calib", "--onnx", str(path), "-o", str(int8), "--images", str(args.calib_images),
                   "--target", INT8_TARGET[name]],
                  f"calibrating {name} model {int8} on {args.calib_images} images, Q/DQ for {INT8_TARGET[name]} (once)")
    check_held_out(int8, calibration_names(args.calib_images))
    return int8


def calibration_names(calib_images: int) -> set[str]:
    """File names of the images ``python -m calib --images N`` calibrates on (its default folder, the mini
    COCO val2017 set): a run with INT8 backends evaluates every backend without them."""
    from calib.dataset import default_calib_dir, list_images

    return {path.name for path in list_images(default_calib_dir(), calib_images)}


def check_held_out(model: Path, held_out: set[str]) -> None:
    """A UserError when an INT8 file records calibration images (``calib.image_names``) the run evaluates on."""
    from calib.quantize import calibration_image_names
    from runtime.metadata import file_props

    seen = sorted(calibration_image_names(file_props(model)) - held_out)
    if seen:
        raise UserError(f"{model}: calibrated on {', '.join(seen[:3])}, which this run evaluates on; delete the file "
                        f"so that it is calibrated again")


def engine_file(name: str, args: argparse.Namespace, settings: dict, images: list) -> Path:
    """The TensorRT plan of a trt-* backend under OUT/models/, built on first use from its ONNX file,
    with a profile whose largest shape covers every image of the run (batch 1)."""
    from export.trt import BaseShapes, build_engine, default_shapes
    from runtime.metadata import INPUT_MULTIPLE, ModelMetadata
    from runtime.preprocess import scale_geometry

    source = model_file(TRT_SOURCE[name], args, settings)
    defaults = default_shapes(ModelMetadata(args.arch, args.input_size), INPUT_MULTIPLE)
    sizes = [scale_geometry(image.width, image.height, args.input_size).input_size for image in images]
    largest = (max([h for _, h in sizes] + [defaults.opt[0]]), max([w for w, _ in sizes] + [defaults.opt[1]]))
    shapes = BaseShapes(defaults.min, defaults.opt, largest)
    plan = args.out / "models" / f"{source.stem}.{identity_key({'shapes': shapes.text()})}.plan"
    if not plan.is_file():
        print(f"building the {name} engine {plan} (once) ...", file=sys.stderr, flush=True)
        build_engine(source, plan, shapes=shapes, max_batch=1, progress=False)
    return plan


def decode_only_file(args: argparse.Namespace) -> Path:
    """The decode-only ONNX file under OUT/models/ (named by the hash of its export settings), made on first use."""
    from dataclasses import asdict

    from export.decode_onnx import write_decode_file
    from export.onnx import OPSET
    from runtime.metadata import DecodeConfig

    config = DecodeConfig()
    path = args.out / "models" / f"decode-only-{identity_key({'decode': asdict(config), 'opset': OPSET})}.onnx"
    if not path.is_file():
        print(f"exporting the decode-only file {path} (once) ...", file=sys.stderr, flush=True)
        write_decode_file(path, config)
    return path
