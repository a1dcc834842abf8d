"""python benchmarks/parity.py — AP and per-image parity of every backend against the PyTorch reference.

For each backend: the ten COCO keypoint metrics and their deltas against torch, per-image agreement with
torch (images with identical people, keypoint displacement of matched people, mean OKS, people missed
and added) and images/s. Backends that cannot run here are listed as skipped with the reason.
Output: Markdown tables on stdout, OUT/parity.json and OUT/parity.png.

Backends:
  torch      the PyTorch reference (always run: every other backend is compared with it)
  onnx       ONNX Runtime (CPU), FP32 export        ─┐ exported once into OUT/models/ with
  onnx-fp16  ONNX Runtime (CPU), FP16 network        │ `python -m export.onnx` (and `python -m calib`
  onnx-int8  ONNX Runtime (CPU), INT8 Q/DQ network  ─┘ for INT8), reused while their settings hold
  trt-fp32   TensorRT engines (python -m export.trt) built once from the onnx, onnx-fp16 and onnx-int8
  trt-fp16   files into OUT/models/ (profile: batch 1, up to the largest input of the run), run on the
  trt-int8   GPU with grouping + refine in CUDA kernels; skipped with the reason without TensorRT

Agreement: in each image, reference and backend people are paired greedily by OKS (COCO sigmas, the
area of the reference person's keypoint box), highest OKS first, pairs below OKS 0.5 left unpaired.
An image is "identical" when both lists have the same people in the same order (keypoints within
0.01 px, joint and person scores within 1e-4). Displacement: pixel distance of each joint that both
people of a pair have (score > 0). Missed: reference people left unpaired; added: backend people left
unpaired.

Resuming: every (backend, image) result is written atomically as OUT/cache/KEY/IMAGE_ID.json:
  {"file": "000000000785.jpg", "image_id": 785, "seconds": 0.61,
   "people": [{"keypoints": [x, y, score] * 17 (image pixels), "score": person score}, ...]}
KEY is the first 16 hex digits of the sha256 of the backend's identity (written beside the results as
OUT/cache/KEY/identity.json): arch, input size, checkpoint provenance (synthetic:SEED, zoo file name or
the file's sha256), scales, precision, backend name and device, for exported backends the model file's
sha256 (and the calibration image count for INT8); in --rendered mode the input size, and for the ONNX
rows the decode-only file's sha256 (one key for all three, see below). A run skips the images already
in its cache, so an interrupted run continues where it stopped, and a change of settings gives new
keys only to the backends it affects. `seconds` is the time of that image when
it was computed (read + warp + graph + grouping; one untimed warm-up image per backend and process).

--rendered feeds network outputs rendered from the ground truth (benchmarks/coco.py rendered_outputs)
to each backend's own decode instead of running the network; on the full mini set every backend's
metrics are compared with ../shared/golden/decode_mini.json: torch's must equal them to 1e-9 (exit 1
otherwise); every other backend's largest difference is printed beside it (its decode may decide
exact float32 ties differently, see the README). Single scale only (the renderer draws scale 1).
  torch                        the torch Decode, as benchmarks/coco.py --rendered runs it
  onnx, onnx-fp16, onnx-int8   the decode-only ONNX file (python -m export.decode_onnx, written once
                               into OUT/models/) in ONNX Runtime (CPU). The FP16 and INT8 files cast
                               only the network; their decode is the FP32 one, identical to onnx's.
                               So the three rows are one run of that file (one cache key), and each
                               row says so in its note.
  trt-*                        skipped: TensorRT is needed (and a decode-only engine is not built yet).

With a zoo checkpoint on a COCO tree other than the mini set, the published numbers of that checkpoint
(export/checkpoint.py ZOO) are printed beside the measured ones; SPEC §13 lists why they can differ.

Examples:
  python benchmarks/parity.py --limit 20
  python benchmarks/parity.py --rendered --backends torch,onnx
  python benchmarks/parity.py --coco-root /data/coco/val2017 --ann /data/coco/annotations/person_keypoints_val2017.json --checkpoint w32_512 --backends torch,onnx,onnx-fp16 --out out/parity-w32
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.coco import METRICS, MINI_SET, MMPOSE_NAMES, CocoSet, evaluate
from runtime.errors import UserError

REPO = Path(__file__).resolve().parents[1]
GOLDEN_DECODE = REPO.parent / "shared" / "golden" / "decode_mini.json"
SPEC = REPO.parent / "shared" / "SPEC.md"

REFERENCE = "torch"
ONNX_BACKENDS = ("onnx", "onnx-fp16", "onnx-int8")
TRT_BACKENDS = ("trt-fp32", "trt-fp16", "trt-int8")
BACKENDS = (REFERENCE, *ONNX_BACKENDS, *TRT_BACKENDS)
PRECISION = {"torch": "fp32", "onnx": "fp32", "onnx-fp16": "fp16", "onnx-int8": "int8",
             "trt-fp32": "fp32", "trt-fp16": "fp16", "trt-int8": "int8"}

CACHE_FORMAT = 1  # bump when the per-image file layout changes: every key changes with it
STOP_ENV = "HRNET_PARITY_STOP_AFTER"
STOP_EXIT_CODE = 75
GOLDEN_TOLERANCE = 1e-9

# COCO keypoint sigmas (pycocotools), nose … right ankle.
COCO_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]) / 10.0
MATCH_OKS = 0.5
IDENTICAL_PX = 0.01
IDENTICAL_SCORE = 1e-4


# ----------------------------------------------------------------------------------------------
# Identities and cache keys


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


# ----------------------------------------------------------------------------------------------
# Backends: which can run here, and their model files


@dataclass
class Plan:
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

    FP32/FP16 files are named by the hash of their export settings; the INT8 file by the hash of the
    FP32 file it is quantized from and the calibration settings.
    """
    from runtime.files import file_sha256

    models = args.out / "models"
    precision = "fp16" if name == "onnx-fp16" else "fp32"
    export_id = {key: settings[key] for key in ("arch", "input_size", "checkpoint", "scales")}
    stem = f"{args.arch}-{args.input_size}-{identity_key({**export_id, 'precision': precision})}"
    path = models / f"{stem}.{precision}.onnx"
    if not path.is_file():
        _run_tool(_export_command(args, precision, path), f"exporting {name} model to {path} (once)")
    if name != "onnx-int8":
        return path
    source_sha = file_sha256(path)
    int8 = models / f"{stem}.int8-{identity_key({'source': source_sha, 'images': args.calib_images})}.onnx"
    if not int8.is_file():
        _run_tool([sys.executable, "-m", "calib", "--onnx", str(path), "-o", str(int8), "--images", str(args.calib_images)],
                  f"calibrating {name} model {int8} on {args.calib_images} images (once)")
    return int8


# The ONNX file each TensorRT engine is built from: precision lives in the file (strongly typed builds).
TRT_SOURCE = {"trt-fp32": "onnx", "trt-fp16": "onnx-fp16", "trt-int8": "onnx-int8"}


def engine_file(name: str, args: argparse.Namespace, settings: dict, images: list) -> Path:
    """The TensorRT plan of a trt-* backend under OUT/models/, built on first use from its ONNX file,
    with a profile whose largest shape covers every image of the run (batch 1)."""
    from runtime.metadata import INPUT_MULTIPLE
    from export.trt import BaseShapes, build_engine, default_shapes
    from runtime.metadata import ModelMetadata
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


def plan_rendered(plan: Plan, settings: dict, args: argparse.Namespace) -> None:
    """--rendered: each backend's own decode of the rendered outputs."""
    from runtime.files import file_sha256

    if plan.name == REFERENCE:
        plan.identity = backend_identity(plan.name, settings)
    elif plan.name in TRT_BACKENDS:
        plan.status, plan.reason = "skipped", "no decode-only TensorRT engine yet (export.trt.build_engine on the decode-only file)"
    else:
        try:
            plan.model = decode_only_file(args)
        except RuntimeError as error:
            plan.status, plan.reason = "failed", str(error)
            return
        plan.identity = decode_only_identity(settings, file_sha256(plan.model))
        plan.note = (f"decode-only ONNX file {plan.model.name} in ONNX Runtime (CPU); one run shared by onnx, "
                     "onnx-fp16 and onnx-int8, whose decode is the same FP32 graph (FP16/INT8 change only the network)")


def plan_backends(args: argparse.Namespace, images: list) -> list[Plan]:
    """Availability, model files and cache keys of the requested backends (torch first, always)."""
    from runtime.files import file_sha256

    names = [REFERENCE] + [n for n in args.backends if n != REFERENCE]
    settings = settings_identity(args)
    plans = []
    for name in names:
        plan = Plan(name)
        reason = unavailable(name)
        if reason:
            plan.status, plan.reason = "skipped", reason
        elif args.rendered:
            plan_rendered(plan, settings, args)
        elif name == REFERENCE:
            plan.identity = backend_identity(name, settings)
        else:
            try:
                plan.model = (engine_file(name, args, settings, images) if name in TRT_BACKENDS
                              else model_file(name, args, settings))
            except (RuntimeError, UserError) as error:
                plan.status, plan.reason = "failed", str(error)
            else:
                plan.identity = backend_identity(name, settings, file_sha256(plan.model), args.calib_images)
        if plan.identity:
            plan.key = identity_key(plan.identity)
        plans.append(plan)
    if plans[0].status != "run":
        raise UserError(f"the reference backend cannot run here: {plans[0].reason}")
    return plans


# ----------------------------------------------------------------------------------------------
# Per-image results and their cache


def cache_path(out: Path, key: str, image) -> Path:
    return out / "cache" / key / f"{image.id}.json"


def read_cached(path: Path, image) -> dict | None:
    """A cached result of ``image``, or None when absent, unreadable or of another file."""
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return entry if entry.get("file") == image.path.name and isinstance(entry.get("people"), list) else None


def person_entries(people) -> list[dict]:
    return [{"keypoints": [float(v) for v in p.keypoints.reshape(-1)], "score": float(p.score)} for p in people]


class StopHook:
    """``HRNET_PARITY_STOP_AFTER=N``: exit after N freshly computed images (tests interrupt runs with it)."""

    def __init__(self) -> None:
        value = os.environ.get(STOP_ENV, "").strip()
        self.left = int(value) if value else None

    def computed(self) -> None:
        if self.left is None:
            return
        self.left -= 1
        if self.left <= 0:
            print(f"{STOP_ENV}: stopping here (exit {STOP_EXIT_CODE})", file=sys.stderr, flush=True)
            raise SystemExit(STOP_EXIT_CODE)


def people_function(plan: Plan, args: argparse.Namespace, coco: CocoSet):
    """``image -> list[Person]`` for one backend (opens the model)."""
    if args.rendered:
        from benchmarks.coco import rendered_people

        annotations = coco.annotations()
        decode = None
        if plan.name != REFERENCE:
            from export.decode_onnx import DecodeOnlySession

            decode = DecodeOnlySession(plan.model).run
        return lambda image: rendered_people(image, annotations.get(image.id, []), args.input_size, decode,
                                             refine=not args.no_refine)
    from runtime.backends import open_backend, open_torch
    from runtime.pipeline import PoseEstimator

    backend = open_torch(args.arch, args.checkpoint, args.input_size, args.scales) if plan.name == REFERENCE \
        else open_backend(plan.model, "cpu")
    # --grouping applies to the GPU rows (TensorRT); people are identical either way, so it is no cache key
    grouping = getattr(args, "grouping", "host") if backend.device_io is not None else "host"
    estimator = PoseEstimator(backend, grouping=grouping, refine=not args.no_refine)
    return lambda image: estimator.estimate_file(image.path)


def compute(plans: list[Plan], args: argparse.Namespace, coco: CocoSet, images: list) -> None:
    """Fill every running backend's cache for ``images``; what is there already is kept.

    Backends that share a cache key (the ONNX rows of --rendered) are computed once, by the first.
    """
    from tqdm import tqdm

    from runtime.results import write_json

    pending, runs = {}, {}
    for plan in plans:
        if plan.status != "run" or plan.key in pending:
            continue
        write_json(args.out / "cache" / plan.key / "identity.json", plan.identity)
        pending[plan.key] = [im for im in images if read_cached(cache_path(args.out, plan.key, im), im) is None]
        runs[plan.key] = plan
    total = len(images) * len(pending)
    todo = sum(len(v) for v in pending.values())
    print(f"{len(images)} images x {len(pending)} backend runs: {total - todo} cached, {todo} to compute",
          file=sys.stderr, flush=True)
    stop = StopHook()
    with tqdm(total=total, initial=total - todo, unit="img", file=sys.stderr, dynamic_ncols=True,
              disable=args.no_progress or not sys.stderr.isatty()) as bar:
        for key, plan in runs.items():
            if not pending[key]:
                continue
            bar.set_description(plan.name)
            people_of = people_function(plan, args, coco)
            people_of(pending[key][0])  # warm-up (numba compilation, allocators): not timed
            for image in pending[key]:
                start = time.perf_counter()
                people = people_of(image)
                seconds = time.perf_counter() - start
                write_json(cache_path(args.out, plan.key, image),
                           {"file": image.path.name, "image_id": image.id, "seconds": seconds,
                            "people": person_entries(people)})
                bar.update(1)
                stop.computed()


def load_results(plan: Plan, out: Path, images: list) -> dict[int, dict]:
    results = {}
    for image in images:
        entry = read_cached(cache_path(out, plan.key, image), image)
        if entry is None:
            raise RuntimeError(f"{plan.name}: no cached result for {image.path.name}")
        results[image.id] = entry
    return results


# ----------------------------------------------------------------------------------------------
# Agreement with the reference


def _keypoints(people: list[dict]) -> np.ndarray:
    return np.array([p["keypoints"] for p in people], dtype=np.float64).reshape(-1, 17, 3)


def oks_matrix(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """OKS of every (reference person, other person) pair, over the joints the reference person has."""
    variances = (2 * COCO_SIGMAS) ** 2
    result = np.zeros((len(reference), len(other)))
    for i, ref in enumerate(reference):
        visible = ref[:, 2] > 0
        if not visible.any():
            continue
        xy = ref[visible, :2]
        area = max(float(np.prod(xy.max(axis=0) - xy.min(axis=0))), 1.0)
        for j, person in enumerate(other):
            d2 = ((person[visible, :2] - xy) ** 2).sum(axis=1)
            result[i, j] = float(np.exp(-d2 / variances[visible] / (area * 2)).mean())
    return result


def greedy_pairs(oks: np.ndarray, threshold: float = MATCH_OKS) -> list[tuple[int, int, float]]:
    """Pairs (reference, other, OKS), highest OKS first, each person used once, OKS ≥ threshold."""
    pairs = []
    if oks.size == 0:
        return pairs
    order = np.argsort(-oks, axis=None, kind="stable")
    used_ref, used_other = set(), set()
    for flat in order:
        i, j = divmod(int(flat), oks.shape[1])
        if oks[i, j] < threshold:
            break
        if i in used_ref or j in used_other:
            continue
        used_ref.add(i), used_other.add(j)
        pairs.append((i, j, float(oks[i, j])))
    return pairs


def identical_people(reference: list[dict], other: list[dict]) -> bool:
    if len(reference) != len(other):
        return False
    a, b = _keypoints(reference), _keypoints(other)
    return bool(np.all(np.abs(a[..., :2] - b[..., :2]) <= IDENTICAL_PX)
                and np.all(np.abs(a[..., 2] - b[..., 2]) <= IDENTICAL_SCORE)
                and all(abs(p["score"] - q["score"]) <= IDENTICAL_SCORE for p, q in zip(reference, other)))


def agreement(reference: dict[int, dict], other: dict[int, dict]) -> dict:
    identical = reference_people = matched = missed = added = 0
    oks_values, distances = [], []
    for image_id, ref_entry in reference.items():
        ref, got = ref_entry["people"], other[image_id]["people"]
        identical += identical_people(ref, got)
        a, b = _keypoints(ref), _keypoints(got)
        pairs = greedy_pairs(oks_matrix(a, b))
        reference_people += len(ref)
        matched += len(pairs)
        missed += len(ref) - len(pairs)
        added += len(got) - len(pairs)
        for i, j, value in pairs:
            oks_values.append(value)
            both = (a[i, :, 2] > 0) & (b[j, :, 2] > 0)
            distances.extend(np.hypot(*(a[i, both, :2] - b[j, both, :2]).T).tolist())
    images = len(reference)
    return {"images": images, "identical_images": identical,
            "identical_pct": 100.0 * identical / images if images else None,
            "reference_people": reference_people, "matched": matched, "missed": missed, "added": added,
            "mean_oks": float(np.mean(oks_values)) if oks_values else None,
            "median_px": float(np.median(distances)) if distances else None,
            "p95_px": float(np.percentile(distances, 95)) if distances else None}


# ----------------------------------------------------------------------------------------------
# Report


def coco_list(results: dict[int, dict]) -> list[dict]:
    return [{"image_id": image_id, "category_id": 1, "keypoints": p["keypoints"], "score": p["score"]}
            for image_id, entry in results.items() for p in entry["people"]]


def golden_check(rows: list[dict]) -> dict:
    """Every run's ten metrics against decode_mini.json's: the largest |difference| per backend.

    ``ok`` is the reference's verdict: the torch decode must reproduce mmpose's numbers. Another
    backend's decode can take other decisions at exact float32 ties of the maps (equal top-k values
    in another order, an NMS plateau split by a rounding difference), so its difference is reported.
    """
    golden = json.loads(GOLDEN_DECODE.read_text())["metrics"]
    expected = {ours: float(golden[theirs]) for ours, theirs in zip(METRICS, MMPOSE_NAMES)}
    worst = {row["name"]: max(abs(row["metrics"][m] - expected[m]) for m in METRICS)
             for row in rows if row["status"] == "run"}
    return {"file": "golden/decode_mini.json", "expected": expected, "tolerance": GOLDEN_TOLERANCE,
            "max_abs_diff": worst, "ok": worst[REFERENCE] <= GOLDEN_TOLERANCE}


def published_numbers(args: argparse.Namespace, is_mini: bool, measured: dict[str, float]) -> dict | None:
    if args.rendered or is_mini:
        return None
    from export.zoo import MULTISCALE_SCALES, ZOO

    entry = ZOO.get(args.checkpoint)
    if entry is None or entry.arch != args.arch or entry.input_size != args.input_size:
        return None
    if tuple(args.scales) == (1.0,):
        names = {m: m for m in ("AP", "AP50", "AP75", "AR", "AR50")}
    elif tuple(args.scales) == tuple(float(s) for s in MULTISCALE_SCALES):
        names = {"AP": "AP_ms"}
    else:
        return None
    rows = {m: {"published": float(entry.metrics[p]), "measured": measured[m],
                "delta": measured[m] - float(entry.metrics[p])} for m, p in names.items()}
    return {"checkpoint": entry.name, "metrics": rows,
            "note": "published numbers come from the original code / mmpose <= 0.18; SPEC section 13 lists the differences"}


def _f(value, digits: int = 3, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def markdown(report: dict) -> str:
    lines = [f"### Parity: {report['title']}", "",
             "| backend | " + " | ".join(METRICS) + " |", "|---|" + "---:|" * len(METRICS)]
    for row in report["backends"]:
        if row["status"] != "run":
            continue
        cells = [_f(row["metrics"][m]) + ("" if row["name"] == REFERENCE else f" ({_f(row['delta'][m], signed=True)})")
                 for m in METRICS]
        lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    lines += ["", "| backend | identical images | median px | p95 px | mean OKS | matched | missed | added | images/s |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in report["backends"]:
        if row["status"] != "run":
            continue
        speed = _f(row["speed"]["images_per_s"], 2)
        if row["name"] == REFERENCE:
            lines.append(f"| {row['name']} | (reference) | | | | | | | {speed} |")
            continue
        a = row["agreement"]
        lines.append(f"| {row['name']} | {a['identical_images']}/{a['images']} ({_f(a['identical_pct'], 1)} %) | "
                     f"{_f(a['median_px'], 4)} | {_f(a['p95_px'], 4)} | {_f(a['mean_oks'], 4)} | {a['matched']} | "
                     f"{a['missed']} | {a['added']} | {speed} |")
    notes = [f"- {row['name']}: {row['note']}" for row in report["backends"] if row["status"] == "run" and row["note"]]
    notes += [f"- {row['name']}: {row['status']}: {row['reason']}" for row in report["backends"] if row["status"] != "run"]
    if notes:
        lines += [""] + notes
    if report.get("golden"):
        g = report["golden"]
        lines += ["", f"golden {g['file']}, max |diff| over the ten metrics:"]
        lines += [f"- {name}: {diff:.3g} ({'equal to' if diff <= g['tolerance'] else 'DIFFERENT beyond'} {g['tolerance']:g})"
                  for name, diff in g["max_abs_diff"].items()]
    if report.get("published"):
        p = report["published"]
        lines += ["", f"Published numbers of {p['checkpoint']} beside the measured torch ones:", "",
                  "| metric | published | measured | delta |", "|---|---:|---:|---:|"]
        lines += [f"| {m} | {r['published']:.3f} | {r['measured']:.3f} | {r['delta']:+.3f} |" for m, r in p["metrics"].items()]
        lines += ["", f"Differences: see SPEC §13 ({SPEC}) — the published numbers come from older code."]
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in report["backends"] if row["status"] == "run"]
    names = [row["name"] for row in rows]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    aps = [row["metrics"]["AP"] for row in rows]
    bars = left.bar(names, aps, color="tab:blue")
    left.bar_label(bars, labels=[f"{ap:.3f}" for ap in aps])
    left.set_title("COCO AP")
    left.set_ylim(0, 1.05)
    x = np.arange(len(names))
    identical = [100.0 if row["name"] == REFERENCE else (row["agreement"]["identical_pct"] or 0.0) for row in rows]
    oks = [100.0 if row["name"] == REFERENCE else 100.0 * (row["agreement"]["mean_oks"] or 0.0) for row in rows]
    right.bar(x - 0.2, identical, 0.4, label="identical images %")
    right.bar(x + 0.2, oks, 0.4, label="mean OKS x 100")
    right.set_xticks(x, names)
    right.set_ylim(0, 105)
    right.set_title("agreement with torch")
    right.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    figure.suptitle(report["title"])
    figure.tight_layout()
    from io import BytesIO

    from runtime.files import write_atomic

    buffer = BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    write_atomic(path, buffer.getvalue())


def build_report(plans: list[Plan], args: argparse.Namespace, coco: CocoSet, images: list, is_mini: bool) -> dict:
    results = {plan.name: load_results(plan, args.out, images) for plan in plans if plan.status == "run"}
    reference = results[REFERENCE]
    ids = [im.id for im in images]
    rows, ref_metrics = [], None
    for plan in plans:
        row = {"name": plan.name, "status": plan.status, "reason": plan.reason, "note": plan.note,
               "key": plan.key or None, "model": str(plan.model.relative_to(args.out)) if plan.model else None}
        if plan.status == "run":
            mine = results[plan.name]
            metrics = evaluate(coco.ann, coco_list(mine), ids)
            ref_metrics = ref_metrics or metrics
            seconds = sum(entry["seconds"] for entry in mine.values())
            row.update(metrics=metrics, delta={m: metrics[m] - ref_metrics[m] for m in METRICS},
                       people=sum(len(entry["people"]) for entry in mine.values()),
                       agreement=None if plan.name == REFERENCE else agreement(reference, mine),
                       speed={"images_per_s": len(mine) / seconds if seconds > 0 else None,
                              "seconds_per_image": seconds / len(mine) if mine else None,
                              "what": "render + decode + grouping" if args.rendered else "read + warp + graph + grouping"})
        rows.append(row)
    mode = "GT-rendered network outputs" if args.rendered else \
        f"HigherHRNet-{args.arch.upper()} {args.input_size}, {args.checkpoint}, scales {','.join(f'{s:g}' for s in args.scales)}"
    mode += ", no refine" if args.no_refine else ""
    report = {"tool": "benchmarks/parity.py", "title": f"{mode}, {len(images)} images",
              "settings": {"rendered": args.rendered, "arch": args.arch, "input_size": args.input_size,
                           "checkpoint": args.checkpoint, "scales": list(args.scales), "limit": args.limit,
                           "calib_images": args.calib_images, "refine": not args.no_refine},
              "dataset": {"ann": coco.ann.name, "images": len(images), "mini_set": is_mini},
              "reference": REFERENCE, "backends": rows, "golden": None, "published": None}
    if args.rendered and is_mini and len(images) == len(coco.images) and GOLDEN_DECODE.is_file() \
            and not args.no_refine:  # the golden is the reference's decode with refine
        report["golden"] = golden_check(rows)
    report["published"] = published_numbers(args, is_mini, ref_metrics)
    return report


# ----------------------------------------------------------------------------------------------
# CLI


def parse_backends(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in BACKENDS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"--backends {text!r}: choose from {','.join(BACKENDS)}")
    return list(dict.fromkeys(names))


def build_parser() -> argparse.ArgumentParser:
    from benchmarks.coco import add_dataset_and_model_arguments
    from runtime.cli import examples, parse_scales

    parser = argparse.ArgumentParser(prog="python benchmarks/parity.py", description=__doc__.split("\n\n")[0],
                                     epilog=examples(__doc__, "AP parity across backends"),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_and_model_arguments(parser)
    parser.add_argument("--backends", type=parse_backends, default=list(BACKENDS),
                        help=f"comma-separated, from {','.join(BACKENDS)} (default: all; torch is always run)")
    parser.add_argument("--scales", type=parse_scales, default=(1.0,), help="test scales, e.g. 2,1,0.5 (default: 1)")
    parser.add_argument("--rendered", action="store_true",
                        help="decode network outputs rendered from the ground truth instead of running the network (default: run it)")
    parser.add_argument("--limit", type=int, help="only the first N images (sorted by file name) (default: all)")
    parser.add_argument("--calib-images", type=int, default=8, help="onnx-int8: calibration images (default: 8)")
    parser.add_argument("--grouping", choices=("host", "device"), default="host",
                        help="TensorRT rows: group on the host (refine on the GPU) or all on the GPU; identical "
                             "people (default: host)")
    parser.add_argument("--no-refine", action="store_true",
                        help="every backend without refine: people straight from grouping + adjust (default: refine on)")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "parity",
                        help="results, per-image cache and exported models (default: out/parity)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (it is shown only when stderr is a terminal anyway) (default: shown)")
    return parser


def run(args: argparse.Namespace) -> int:
    from runtime.cli import check_scales
    from runtime.files import check_output_dir
    from runtime.results import write_json

    args.scales = check_scales(tuple(args.scales))
    if args.rendered and args.scales != (1.0,):
        raise UserError("--rendered: single scale only (the renderer draws scale-1 network outputs); drop --scales")
    if args.limit is not None and args.limit < 1:
        raise UserError("--limit: give a positive number of images")
    if args.calib_images < 1:
        raise UserError("--calib-images: give a positive number of images")
    check_output_dir(args.out, "--out")
    coco = CocoSet.open(args.coco_root, args.ann)
    is_mini = coco.ann.resolve() == (MINI_SET / "person_keypoints.json").resolve()
    images = coco.images[: args.limit] if args.limit else coco.images
    if not images:
        raise UserError(f"{coco.ann}: no images")
    from export.zoo import SYNTHETIC_DEFAULT, cli_checkpoint

    if args.rendered:  # rendered outputs replace the network: its weights take no part
        args.checkpoint = args.checkpoint or SYNTHETIC_DEFAULT
    else:
        args.checkpoint = cli_checkpoint(args.checkpoint, args.arch, args.input_size)
    plans = plan_backends(args, images)
    compute(plans, args, coco, images)
    report = build_report(plans, args, coco, images, is_mini)
    write_json(args.out / "parity.json", report)
    plot(report, args.out / "parity.png")
    print(markdown(report))
    print(f"\nwritten: {args.out / 'parity.json'}, {args.out / 'parity.png'}")
    if report["golden"] and not report["golden"]["ok"]:
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    from runtime.cli import run_cli

    return run_cli(build_parser(), run, argv,
                   interrupted="a rerun of the same command resumes: every image finished so far is cached "
                               "under --out's cache/ folder")


if __name__ == "__main__":
    sys.exit(main())
