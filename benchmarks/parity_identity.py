"""The backends of a parity run and what decides each one's results: its identity and cache key.

A backend's cache key is the first 16 hex digits of the sha256 of its identity, every setting that
decides its results (benchmarks/parity.py's docstring lists them). Settings that do not change a
backend's results leave its key alone, so a rerun with other settings reuses what still holds.
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from runtime.errors import UserError

REFERENCE = "torch"
ONNX_BACKENDS = ("onnx", "onnx-fp16", "onnx-int8", "onnx-int8-tensorrt")
TRT_BACKENDS = ("trt-fp32", "trt-fp16", "trt-int8")
BACKENDS = (REFERENCE, *ONNX_BACKENDS, *TRT_BACKENDS)
PRECISION = {"torch": "fp32", "onnx": "fp32", "onnx-fp16": "fp16", "onnx-int8": "int8", "onnx-int8-tensorrt": "int8",
             "trt-fp32": "fp32", "trt-fp16": "fp16", "trt-int8": "int8"}
# The Q/DQ placement (python -m calib --target) of each INT8 ONNX file.
INT8_TARGET = {"onnx-int8": "onnxruntime", "onnx-int8-tensorrt": "tensorrt"}

CACHE_FORMAT = 1  # bump when the per-image file layout changes: every key changes with it


def checkpoint_identity(spec: str) -> str:
    """What the weights are, without loading them: ``synthetic:SEED``, ``zoo:FILE_STEM`` or ``sha256:HEX``."""
    from runtime.files import file_sha256

    if spec.startswith("synthetic:"):
        return spec
    path = Path(spec).expanduser()
    if path.is_file():
        return "sha256:" + file_sha256(path)
    from export.zoo import ZOO

    if spec in ZOO:  # the zoo file is verified against the sha256 prefix in its name when it is loaded
        return "zoo:" + ZOO[spec].name
    raise UserError(f"--checkpoint {spec}: no such file and not a zoo name or synthetic:SEED")


def settings_identity(args: argparse.Namespace, checkpoint: str | None = None) -> dict:
    """The settings every backend of a run shares."""
    refine = {} if not getattr(args, "no_refine", False) else {"refine": False}
    if args.rendered:
        return {"format": CACHE_FORMAT, "mode": "rendered", "input_size": args.input_size, **refine}
    return {"format": CACHE_FORMAT, "mode": "network", "arch": args.arch, "input_size": args.input_size,
            "checkpoint": checkpoint if checkpoint is not None else checkpoint_identity(args.checkpoint),
            "scales": list(args.scales), **refine}


def backend_identity(name: str, settings: dict, model_sha256: str | None = None, calib_images: int | None = None) -> dict:
    """Everything that decides one backend's results; its hash is the cache key."""
    identity = {**settings, "backend": name, "precision": PRECISION[name],
                "device": "cuda" if name in TRT_BACKENDS else "cpu"}
    if name != REFERENCE:
        identity["model_sha256"] = model_sha256
    if name.endswith("int8"):
        identity["calib_images"] = calib_images
    return identity


def decode_only_identity(settings: dict, model_sha256: str) -> dict:
    """--rendered, ONNX rows: the decode-only file decides the results, whatever the network's precision."""
    return {**settings, "backend": "onnx-decode-only", "precision": "fp32", "device": "cpu",
            "model_sha256": model_sha256}


def identity_key(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
