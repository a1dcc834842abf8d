"""python -m export.trt — build a TensorRT engine (.plan) from an exported ONNX file.

Examples:
  python -m export.trt --onnx w32.onnx                                   # -> w32.plan + w32.plan.json
  python -m export.trt --onnx w32.fp16.onnx --shapes 512x512,512x704,1024x1024 -o w32.fp16.plan
  python -m export.trt --onnx w32.int8.onnx --max-batch 8 --workspace 8 --timing-cache trt.cache
  python -m runtime.run --engine w32.plan --image-dir photos/ --out people.json

What is built
-------------
A strongly typed network: every layer runs in the precision the ONNX file gives it. Precision is
chosen when the ONNX file is written (``python -m export.onnx --precision fp16``: FP16 network, FP32
decode behind explicit casts; ``python -m calib``: INT8 Q/DQ), never by builder flags (TensorRT 11
removed ``BuilderFlag.FP16``/``INT8``). An INT8 file placed for ONNX Runtime (``calib --target
onnxruntime``, the default) is built as given, with a one-line warning to recalibrate with ``--target
tensorrt``. The network is created with the ``STRONGLY_TYPED`` creation flag where TensorRT has it
(required on 10.x; on 11.x strong typing is always on and the flag is deprecated and ignored).
TF32 is switched off (``BuilderFlag.TF32`` is on by default in TensorRT 10 and 11): float32 layers
stay float32, so an FP32 engine computes what ONNX Runtime computes.

Shapes
------
One optimization profile over dynamic batch, height and width of every image input. ``--shapes``
gives MIN,OPT,MAX sizes HxW (height x width) of the scale-1 input (``image``); with a multi-scale file
(inputs ``image_0`` … largest scale first) the scale-s input gets s x those sizes, rounded outwards
to the input multiple for MIN and MAX. Every side must be a multiple of the file's input multiple
(64: what ``runtime.preprocess`` produces) and MIN <= OPT <= MAX side by side. Defaults, for input
size S of the file (512 or 640): MIN SxS (the smallest input the preprocessing makes: the short side
is always S), OPT S x ceil64(4S/3) (a 4:3 landscape photo such as most of COCO: 512x704), MAX 2Sx2S
(every aspect ratio up to 2:1 either way; larger inputs are refused at run time with a message that
says to rebuild with larger --shapes). Batch: 1 .. --max-batch (default 4, as runtime.run --batch),
optimized for 1. The engine is tuned for OPT and runs any shape inside the profile.

What is written
---------------
``-o FILE`` (default: the ONNX path with .plan) and a JSON sidecar beside it, ``FILE.json``: the
TensorRT version, GPU name and compute capability, precision, TF32 off, the profile, the input
multiple, the source ONNX path and sha256, the plan's sha256, the toolkit version and the ONNX
file's ``metadata_props`` (ModelMetadata with ``max_input_side`` set to the profile's largest side),
so ``python -m runtime.run --engine FILE.plan`` needs nothing else. An engine runs only on the TensorRT
version and GPU model that built it; the runtime checks the sidecar and says to rebuild otherwise.
Both files are written to temporary names and renamed when complete. ``--timing-cache FILE`` is
loaded when it exists (a cache from another GPU or TensorRT version is ignored, with a note) and
written back after the build: rebuilds of the same network on the same GPU take seconds, not minutes.

Needs TensorRT >= 10 (``pip install 'hrnet-deploy[trt]'``) and an NVIDIA GPU with its driver; the
GPU is asked for its name and compute capability through numba-cuda. ``--help`` works without them.
Exit codes: 0 written, 2 user error (missing TensorRT, bad flag or file, unparsable ONNX, failed build).
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import math
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from calib.placement import ACTIVATIONS_KEY, DEFAULT_TARGET, TARGET_KEY
from runtime.backends.trt_backend import (
    PLAN_SUFFIXES,
    SIDECAR_FORMAT,
    SIDECAR_VERSION,
    GpuFacts,
    gpu_facts,
    import_tensorrt,
    sidecar_path,
)
from runtime.cli import examples, run_cli
from runtime.errors import UserError, require
from runtime.files import file_sha256, publish, write_temporary
from runtime.metadata import TOOLKIT_VERSION, ModelMetadata, read_props

DEFAULT_MAX_BATCH = 4
DEFAULT_WORKSPACE_GIB = 4.0
REEXPORT = "re-export it with python -m export.onnx"


# ----------------------------------------------------------------------------------------------
# Shapes (pure)


@dataclass(frozen=True)
class BaseShapes:
    """MIN, OPT and MAX ``(height, width)`` of the scale-1 network input."""

    min: tuple[int, int]
    opt: tuple[int, int]
    max: tuple[int, int]

    def text(self) -> str:
        return ",".join(base_shape_texts(self))


def base_shape_texts(shapes: BaseShapes) -> list[str]:
    """``["512x512", "512x704", "1024x1024"]`` (HxW of MIN, OPT, MAX)."""
    return [f"{h}x{w}" for h, w in (shapes.min, shapes.opt, shapes.max)]


def round_up(value: float, multiple: int) -> int:
    return math.ceil(value / multiple - 1e-9) * multiple


def round_down(value: float, multiple: int) -> int:
    return math.floor(value / multiple + 1e-9) * multiple


def parse_shapes(text: str) -> BaseShapes:
    """``"512x512,512x704,1024x1024"`` (HxW each) → BaseShapes; a UserError naming the flag otherwise."""
    example = "e.g. --shapes 512x512,512x704,1024x1024 (MIN,OPT,MAX as HxW)"
    parts = [part.strip().lower() for part in str(text).split(",")]
    if len(parts) != 3:
        raise UserError(f"--shapes {text}: give three sizes MIN,OPT,MAX, {example}")
    sizes = []
    for part in parts:
        h, sep, w = part.partition("x")
        if not sep or not h.strip().isdigit() or not w.strip().isdigit():
            raise UserError(f"--shapes {text}: {part!r} is not HxW, {example}")
        sizes.append((int(h), int(w)))
    return BaseShapes(*sizes)


def check_shapes(shapes: BaseShapes, multiple: int, max_side: int | None = None) -> BaseShapes:
    """Every side a positive multiple of ``multiple``, MIN <= OPT <= MAX per side, MAX within ``max_side``."""
    sides = [side for size in (shapes.min, shapes.opt, shapes.max) for side in size]
    if any(side <= 0 or side % multiple for side in sides):
        raise UserError(f"--shapes {shapes.text()}: every side must be a positive multiple of {multiple} (the file's "
                        f"input multiple), e.g. 512x512,512x704,1024x1024")
    for axis, label in ((0, "height"), (1, "width")):
        low, opt, high = shapes.min[axis], shapes.opt[axis], shapes.max[axis]
        if not low <= opt <= high:
            raise UserError(f"--shapes {shapes.text()}: {label}s must satisfy MIN <= OPT <= MAX "
                            f"({low}, {opt}, {high} given)")
    if max_side is not None and max(shapes.max) > max_side:
        raise UserError(f"--shapes {shapes.text()}: MAX side {max(shapes.max)} is beyond the {max_side} px this model "
                        f"file supports (its max_input_side); give a smaller MAX")
    return shapes


def default_shapes(metadata: ModelMetadata, multiple: int) -> BaseShapes:
    """MIN SxS, OPT S x ceil(4S/3) (a 4:3 landscape), MAX 2Sx2S (aspect ratios up to 2:1), S = input size."""
    size = round_up(metadata.input_size, multiple)
    opt_width = round_up(size * 4 / 3, multiple)
    largest = max(round_down(min(2 * size, metadata.max_input_side), multiple), opt_width)
    return BaseShapes((size, size), (size, opt_width), (largest, largest))


def input_profiles(metadata: ModelMetadata, shapes: BaseShapes, max_batch: int,
                   multiple: int) -> dict[str, dict[str, list[int]]]:
    """``{input name: {"min", "opt", "max": [N, H, W, 3]}}`` for every image input of the file.

    The scale-s input is s x the scale-1 size (the preprocessing's multi-scale geometry keeps that
    ratio exactly), rounded to the input multiple: down for MIN, up for MAX, to the nearest for OPT,
    so every scale-1 shape inside the profile has its other scales inside theirs.
    """
    if max_batch < 1:
        raise UserError(f"--max-batch {max_batch}: give at least 1")
    profiles = {}
    for name, scale in zip(metadata.input_names, metadata.decode.scales):
        low = [max(multiple, round_down(side * scale, multiple)) for side in shapes.min]
        high = [max(multiple, round_up(side * scale, multiple)) for side in shapes.max]
        opt = [min(max(multiple * round(side * scale / multiple), lo), hi)
               for side, lo, hi in zip(shapes.opt, low, high)]
        profiles[name] = {"min": [1, *low, 3], "opt": [1, *opt, 3], "max": [int(max_batch), *high, 3]}
    return profiles


# ----------------------------------------------------------------------------------------------
# The ONNX file and the sidecar


@dataclass(frozen=True)
class OnnxFacts:
    """What the exported file says about itself."""

    path: Path
    metadata: ModelMetadata
    props: dict[str, str]  # every metadata_props entry (hrnet_deploy.*, export.*, calib.*)
    input_multiple: int
    sha256: str


def read_onnx(path: Path) -> OnnxFacts:
    """The ONNX file's metadata_props (an hrnet-deploy export), input multiple and sha256."""
    onnx = require("onnx", "trt")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError and friends
        raise UserError(f"--onnx {path}: not a readable ONNX file ({' '.join(str(exc).split())[:120]})") from None
    facts = read_props({entry.key: entry.value for entry in model.metadata_props}, f"--onnx {path}", REEXPORT)
    del model
    return OnnxFacts(path, facts.metadata, facts.props, facts.input_multiple, file_sha256(path))


def placement_warning(onnx: OnnxFacts) -> str | None:
    """One line when ``onnx`` is an INT8 file whose Q/DQ nodes are not placed for TensorRT, else None.

    ``python -m calib`` records its ``--target`` in the metadata (``calib.target``); INT8 files without
    that key were all placed for ONNX Runtime.
    """
    target = onnx.props.get(TARGET_KEY, DEFAULT_TARGET)
    if onnx.metadata.precision != "int8" or target == "tensorrt":
        return None
    return (f"warning: --onnx {onnx.path}: INT8 Q/DQ placed for {target} (its CPU kernels), not as TensorRT's guide "
            f"recommends; recalibrate with python -m calib --target tensorrt for the engine")


def check_activations(onnx: OnnxFacts) -> None:
    """Refuse an INT8 file with uint8 activations (``calib.activations``): TensorRT's ONNX parser takes
    Q/DQ of signed int8 with zero point 0 only, so its build would fail at the first QuantizeLinear."""
    if onnx.metadata.precision == "int8" and onnx.props.get(ACTIVATIONS_KEY, "int8") != "int8":
        raise UserError(f"--onnx {onnx.path}: INT8 activations are {onnx.props[ACTIVATIONS_KEY]} (placed for "
                        f"{onnx.props.get(TARGET_KEY, DEFAULT_TARGET)}), and TensorRT quantizes to symmetric int8 "
                        f"only; recalibrate with python -m calib --target tensorrt for the engine")


def make_sidecar(plan: Path, plan_sha256: str, onnx: OnnxFacts, shapes: BaseShapes, max_batch: int,
                 profiles: dict, tensorrt_version: str, gpu: GpuFacts, workspace_gib: float) -> dict:
    """Everything the runtime needs besides the plan, and what the plan is tied to."""
    metadata = replace(onnx.metadata, max_input_side=max(shapes.max))
    props = {key: value for key, value in onnx.props.items() if not key.startswith("hrnet_deploy.")}
    props.update(metadata.to_props())
    return {
        "format": SIDECAR_FORMAT, "format_version": SIDECAR_VERSION,
        "plan": plan.name, "plan_sha256": plan_sha256,
        "tensorrt_version": str(tensorrt_version),
        "gpu": {"name": gpu.name, "compute_capability": gpu.compute_capability},
        "precision": metadata.precision, "strongly_typed": True, "tf32": False,
        "input_multiple": onnx.input_multiple,
        "base_shapes": dict(zip(("min", "opt", "max"), base_shape_texts(shapes))),
        "max_batch": int(max_batch),
        "profiles": [profiles],
        "workspace_gib": float(workspace_gib),
        "source_onnx": {"path": str(Path(onnx.path).resolve()), "sha256": onnx.sha256},
        "toolkit_version": TOOLKIT_VERSION,
        "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "metadata": props,
    }


# ----------------------------------------------------------------------------------------------
# TensorRT


def network_flags(trt) -> int:
    """Creation flags of a strongly typed network on TensorRT 10 and 11 alike.

    10.x: ``STRONGLY_TYPED`` must be set (bit 1; bit 0 is the deprecated EXPLICIT_BATCH). 11.x: the
    network is always strongly typed, the enum has no EXPLICIT_BATCH, and ``STRONGLY_TYPED`` (bit 0
    there) is deprecated and ignored. Setting it whenever the enum has it is right on both, and 0 is
    right if a later TensorRT drops it.
    """
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def parser_errors(parser) -> list[str]:
    """One line per ONNX parser error: node index and name, operator, description."""
    lines = []
    for index in range(parser.num_errors):
        error = parser.get_error(index)
        node, name, op = error.node(), error.node_name(), error.node_operator()
        where = f"node {node} {name!r} ({op})" if node >= 0 or name else "graph"
        lines.append(f"  {where}: {' '.join(str(error.desc()).split())}")
    return lines


def _progress_monitor(trt, stream):
    """A ``trt.IProgressMonitor``: phase lines in logs, plus a live step counter on a terminal."""

    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.lock = threading.Lock()
            self.phases: dict[str, tuple[int, int, float]] = {}  # name -> (depth, steps, start)
            self.tty = stream.isatty()
            self.live = False

        def _write(self, text: str) -> None:
            if self.live:
                stream.write("\r\033[K")
                self.live = False
            stream.write(text + "\n")
            stream.flush()

        def phase_start(self, phase_name, parent_phase, num_steps):
            try:
                with self.lock:
                    depth = self.phases[parent_phase][0] + 1 if parent_phase in self.phases else 0
                    self.phases[phase_name] = (depth, int(num_steps), time.perf_counter())
                    if depth <= (1 if self.tty else 0):
                        self._write(f"      {'  ' * depth}{phase_name} ({num_steps} steps)")
            except Exception:  # noqa: BLE001, S110 - progress must never stop a build
                pass

        def step_complete(self, phase_name, step):
            try:
                if self.tty:
                    with self.lock:
                        _, steps, _ = self.phases.get(phase_name, (0, 0, 0.0))
                        stream.write(f"\r\033[K      {phase_name}: {int(step) + 1}/{steps}")
                        stream.flush()
                        self.live = True
            except Exception:  # noqa: BLE001, S110 - as above
                pass
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            try:
                with self.lock:
                    depth, _, start = self.phases.pop(phase_name, (1, 0, 0.0))
                    if depth == 0:
                        self._write(f"      {phase_name}: done ({time.perf_counter() - start:.1f} s)")
            except Exception:  # noqa: BLE001, S110 - as above
                pass

    return Monitor()


def _attach_timing_cache(config, path: Path | None, say) -> None:
    """Load ``path`` into the builder config; a new cache when it is absent, damaged or from another GPU/TensorRT."""
    if path is None:
        return  # TensorRT keeps its own cache for the build
    data = path.read_bytes() if path.is_file() else b""
    if data:
        try:
            cache = config.create_timing_cache(data)
            if cache is not None and config.set_timing_cache(cache, False):
                say(f"      timing cache {path}: loaded ({len(data) / 1024:.0f} KiB)")
                return
        except Exception:  # noqa: BLE001, S110 - a damaged cache file is replaced, not fatal
            pass
        say(f"      timing cache {path}: made by another GPU or TensorRT version, or damaged; starting a new one")
    else:
        say(f"      timing cache {path}: new")
    config.set_timing_cache(config.create_timing_cache(b""), False)


def build_engine(onnx_path: str | Path, plan_path: str | Path | None = None, shapes: str | BaseShapes | None = None,
                 workspace_gib: float = DEFAULT_WORKSPACE_GIB, timing_cache: str | Path | None = None,
                 max_batch: int = DEFAULT_MAX_BATCH, progress: bool = True) -> Path:
    """Build a strongly typed engine from an hrnet-deploy ONNX file; write the plan and its sidecar.

    ``shapes``: ``"MIN,OPT,MAX"`` (HxW of the scale-1 input), a BaseShapes, or None for the defaults
    (see the module docstring). Returns the plan path. UserError for everything a user can fix.
    The steps: validate the request, read the file's facts and profile, parse, configure, build, write.
    """
    onnx_path = Path(onnx_path)
    plan = Path(plan_path) if plan_path is not None else onnx_path.with_suffix(".plan")
    cache_path = Path(timing_cache) if timing_cache is not None else None
    out = sys.stdout

    def say(text: str) -> None:
        if progress:
            print(text, file=out, flush=True)

    _validate_request(plan, cache_path, workspace_gib, max_batch)
    trt = import_tensorrt()
    facts, base, profiles = _read_model(onnx_path, shapes, max_batch)
    meta = facts.metadata
    gpu = gpu_facts(0)
    say(f"[1/5] {onnx_path}: HigherHRNet-{meta.arch.upper()} input {meta.input_size}, scales "
        f"{list(meta.decode.scales)}, {meta.precision}, weights {meta.checkpoint}")
    say(f"[2/5] TensorRT {trt.__version__} on {gpu.name} (compute capability {gpu.compute_capability}): parsing "
        f"into a strongly typed network")
    parsed = _parse(trt, onnx_path, meta)
    config = _configure(trt, parsed.builder, base, profiles, workspace_gib)
    say("[3/5] profile (NHWC min / opt / max): "
        + "; ".join(f"{name} {'x'.join(map(str, s['min']))} / {'x'.join(map(str, s['opt']))} / "
                    f"{'x'.join(map(str, s['max']))}" for name, s in profiles.items())
        + f"; workspace {workspace_gib:g} GiB; TF32 off")
    _attach_timing_cache(config, cache_path, say)
    if progress and hasattr(trt, "IProgressMonitor"):
        config.progress_monitor = _progress_monitor(trt, out)

    say("[4/5] building the engine (minutes on a first build; a --timing-cache makes rebuilds fast)")
    start = time.perf_counter()
    data = _build(parsed, config, onnx_path)
    seconds = time.perf_counter() - start
    digest = hashlib.sha256(data).hexdigest()
    sidecar = make_sidecar(plan, digest, facts, base, max_batch, profiles, trt.__version__, gpu, workspace_gib)
    _write(plan, data, sidecar, config, cache_path)
    say(f"[5/5] wrote {plan} ({len(data) / 1024**2:.1f} MiB, built in {seconds:.0f} s) and {sidecar_path(plan).name}"
        + (f"; timing cache {cache_path}" if cache_path is not None else ""))
    return plan


def _validate_request(plan: Path, cache_path: Path | None, workspace_gib: float, max_batch: int) -> None:
    """What can be refused before TensorRT is loaded: the output names, the settings, writable targets."""
    from runtime.results import check_writable

    if plan.suffix.lower() not in PLAN_SUFFIXES:
        raise UserError(f"-o {plan}: the engine file must end in .plan or .engine")
    if plan.is_dir() or (cache_path is not None and cache_path.is_dir()):
        raise UserError(f"{plan if plan.is_dir() else cache_path}: is a directory; give a file name")
    if not workspace_gib > 0:
        raise UserError(f"--workspace {workspace_gib}: give a positive size in GiB, e.g. 4")
    if max_batch < 1:
        raise UserError(f"--max-batch {max_batch}: give at least 1")
    for target in (plan, sidecar_path(plan), cache_path):
        if target is not None:
            check_writable(target)  # before minutes of building, not after


def _read_model(onnx_path: Path, shapes: str | BaseShapes | None,
                max_batch: int) -> tuple[OnnxFacts, BaseShapes, dict[str, dict[str, list[int]]]]:
    """The ONNX file's facts, the checked scale-1 shapes and the profile of every image input."""
    if onnx_path.suffix.lower() != ".onnx" or not onnx_path.is_file():
        raise UserError(f"--onnx {onnx_path}: no such .onnx file; export one with python -m export.onnx")
    facts = read_onnx(onnx_path)
    meta = facts.metadata
    check_activations(facts)
    warning = placement_warning(facts)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    if shapes is None:
        base = default_shapes(meta, facts.input_multiple)
    else:
        base = check_shapes(parse_shapes(shapes) if isinstance(shapes, str) else shapes, facts.input_multiple,
                            meta.max_input_side)
    return facts, base, input_profiles(meta, base, max_batch, facts.input_multiple)


@dataclass
class _ParsedNetwork:
    """The parsed network with the objects it depends on: TensorRT's parser owns the network's weights,
    so all of these stay alive until the engine is built."""

    logger: object
    builder: object
    network: object
    parser: object


def _parse(trt, onnx_path: Path, meta: ModelMetadata) -> _ParsedNetwork:
    """Parse the file into a strongly typed network whose inputs are the ones its metadata names."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        lines = parser_errors(parser)
        print(f"TensorRT's ONNX parser rejected {onnx_path} ({len(lines)} errors):", file=sys.stderr)
        for line in lines:
            print(line, file=sys.stderr)
        raise UserError(f"--onnx {onnx_path}: TensorRT {trt.__version__} cannot parse this file (errors above, one "
                        f"per node); {REEXPORT} (opset 17), or report the node")
    names = sorted(network.get_input(i).name for i in range(network.num_inputs))
    if names != sorted(meta.input_names):
        raise UserError(f"--onnx {onnx_path}: network inputs {names} do not match its metadata "
                        f"({meta.input_names}); {REEXPORT}")
    return _ParsedNetwork(logger, builder, network, parser)


def _configure(trt, builder, base: BaseShapes, profiles: dict[str, dict[str, list[int]]], workspace_gib: float):
    """The builder config: workspace limit, TF32 off, one optimization profile over every image input."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if hasattr(trt.BuilderFlag, "TF32"):  # on by default in 10.x and 11.x; a later release may drop it
        config.clear_flag(trt.BuilderFlag.TF32)
    profile = builder.create_optimization_profile()
    for name, shape in profiles.items():
        profile.set_shape(name, tuple(shape["min"]), tuple(shape["opt"]), tuple(shape["max"]))
    if config.add_optimization_profile(profile) < 0:
        raise UserError(f"--shapes {base.text()}: TensorRT rejected the optimization profile (messages above)")
    return config


def _build(parsed: _ParsedNetwork, config, onnx_path: Path) -> bytes:
    """The serialized engine."""
    serialized = parsed.builder.build_serialized_network(parsed.network, config)
    if serialized is None:
        raise UserError(f"--onnx {onnx_path}: TensorRT could not build an engine (messages above); try a larger "
                        f"--workspace, or smaller --shapes / --max-batch")
    data = bytes(serialized)
    del serialized
    return data


def _write(plan: Path, data: bytes, sidecar: dict, config, cache_path: Path | None) -> None:
    """The plan, its sidecar and the timing cache, each through a temporary file renamed when complete."""
    import json

    written = []
    try:
        written.append(write_temporary(plan, data))
        written.append(write_temporary(sidecar_path(plan), (json.dumps(sidecar, indent=2) + "\n").encode()))
        publish(written[0], plan)
        publish(written[1], sidecar_path(plan))
        if cache_path is not None:
            cache = config.get_timing_cache()
            if cache is not None:
                written.append(write_temporary(cache_path, bytes(cache.serialize())))
                publish(written[-1], cache_path)
    finally:
        for path in written:
            path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m export.trt",
        description="Build a strongly typed TensorRT engine (.plan, with a JSON sidecar) from an ONNX file written by "
                    "python -m export.onnx or python -m calib. Precision comes from the ONNX file.",
        epilog=examples(__doc__, "TensorRT engines and the GPU path"), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", required=True, type=Path, metavar="FILE",
                        help="the exported model (.onnx: fp32, fp16 or int8 Q/DQ) (required)")
    parser.add_argument("--shapes", metavar="MIN,OPT,MAX",
                        help="scale-1 input sizes as HxW, multiples of the file's input multiple (64), e.g. "
                             "512x512,512x704,1024x1024 (default: SxS, S x ceil64(4S/3), 2Sx2S for input size S: "
                             "the smallest input, a 4:3 landscape, every aspect ratio up to 2:1)")
    parser.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH, metavar="N",
                        help=f"largest batch the engine takes; it is optimized for 1 "
                             f"(default: {DEFAULT_MAX_BATCH}, as runtime.run --batch)")
    parser.add_argument("--workspace", type=float, default=DEFAULT_WORKSPACE_GIB, metavar="GiB",
                        help=f"TensorRT workspace memory pool limit in GiB "
                             f"(default: {DEFAULT_WORKSPACE_GIB:g})")
    parser.add_argument("--timing-cache", type=Path, metavar="FILE",
                        help="TensorRT timing cache: loaded if present, written back after the build (default: none)")
    parser.add_argument("-o", "--output", type=Path, metavar="FILE",
                        help="the engine to write, .plan or .engine; FILE.json is written beside it "
                             "(default: the ONNX path with .plan, e.g. w32.onnx -> w32.plan)")
    return parser


def run(args: argparse.Namespace) -> int:
    build_engine(args.onnx, args.output, args.shapes, args.workspace, args.timing_cache, args.max_batch)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
