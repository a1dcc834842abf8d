"""Which requested backends run here, with their model files and cache keys (torch first, always)."""
from __future__ import annotations

import argparse
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.parity_identity import (ONNX_BACKENDS, REFERENCE, TRT_BACKENDS, backend_identity,
                                        decode_only_identity, identity_key, settings_identity)
from benchmarks.parity_models import decode_only_file, engine_file, model_file
from runtime.errors import UserError


@dataclass
class BackendRun:
    """One requested backend: ``status`` is ``run``, ``skipped`` or ``failed``; ``note`` qualifies a run."""

    name: str
    status: str = "run"
    reason: str = ""
    note: str = ""
    identity: dict = field(default_factory=dict)
    key: str = ""
    model: Path | None = None


def unavailable(name: str) -> str | None:
    """Why ``name`` cannot run on this machine, or None."""
    if name in TRT_BACKENDS and importlib.util.find_spec("tensorrt") is None:
        return "TensorRT not installed (pip install 'hrnet-deploy[trt]' on a machine with an NVIDIA GPU)"
    if name in ONNX_BACKENDS:
        for module, extra in (("onnxruntime", "edge"), ("onnx", "export"), ("torch", "export")):
            if importlib.util.find_spec(module) is None:
                return f"{module} not installed (pip install 'hrnet-deploy[{extra}]')"
    if name == REFERENCE and importlib.util.find_spec("torch") is None:
        return "torch not installed (pip install 'hrnet-deploy[export]')"
    return None


def plan_rendered(backend_run: BackendRun, settings: dict, args: argparse.Namespace) -> None:
    """--rendered: each backend's own decode of the rendered outputs."""
    from runtime.files import file_sha256

    if backend_run.name == REFERENCE:
        backend_run.identity = backend_identity(backend_run.name, settings)
    elif backend_run.name in TRT_BACKENDS:
        backend_run.status = "skipped"
        backend_run.reason = "no decode-only TensorRT engine yet (export.trt.build_engine on the decode-only file)"
    else:
        try:
            backend_run.model = decode_only_file(args)
        except RuntimeError as error:
            backend_run.status, backend_run.reason = "failed", str(error)
            return
        backend_run.identity = decode_only_identity(settings, file_sha256(backend_run.model))
        backend_run.note = (f"decode-only ONNX file {backend_run.model.name} in ONNX Runtime (CPU); one run shared "
                            "by the ONNX rows, whose decode is the same FP32 graph (FP16/INT8 change only the "
                            "network)")


def plan_backends(args: argparse.Namespace, images: list) -> list[BackendRun]:
    """Availability, model files and cache keys of the requested backends (torch first, always)."""
    from runtime.files import file_sha256

    names = [REFERENCE] + [n for n in args.backends if n != REFERENCE]
    settings = settings_identity(args)
    backend_runs = []
    for name in names:
        backend_run = BackendRun(name)
        reason = unavailable(name)
        if reason:
            backend_run.status, backend_run.reason = "skipped", reason
        elif args.rendered:
            plan_rendered(backend_run, settings, args)
        elif name == REFERENCE:
            backend_run.identity = backend_identity(name, settings)
        else:
            try:
                backend_run.model = (engine_file(name, args, settings, images) if name in TRT_BACKENDS
                                     else model_file(name, args, settings))
            except (RuntimeError, UserError) as error:
                backend_run.status, backend_run.reason = "failed", str(error)
            else:
                backend_run.identity = backend_identity(name, settings, file_sha256(backend_run.model),
                                                        args.calib_images)
        if backend_run.identity:
            backend_run.key = identity_key(backend_run.identity)
        backend_runs.append(backend_run)
    if backend_runs[0].status != "run":
        raise UserError(f"the reference backend cannot run here: {backend_runs[0].reason}")
    return backend_runs
