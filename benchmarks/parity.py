"""python benchmarks/parity.py — AP and per-image parity of every backend against the PyTorch reference.

For each backend: the ten COCO keypoint metrics and their deltas against torch, per-image agreement with
torch (images with identical people, keypoint displacement of matched people, mean OKS, people missed
and added) and images/s. Backends that cannot run here are listed as skipped with the reason.
Output: Markdown tables on stdout, OUT/parity.json and OUT/parity.png.

Backends:
  torch      the PyTorch reference (always run: every other backend is compared with it)
  onnx       ONNX Runtime (CPU), FP32 export        ─┐ exported once into OUT/models/ with
  onnx-fp16  ONNX Runtime (CPU), FP16 network        │ `python -m export.onnx` (and `python -m calib`
  onnx-int8  ONNX Runtime (CPU), INT8 Q/DQ network   │ for INT8), reused while their settings hold
  onnx-int8-tensorrt  the same, Q/DQ placed for    ─┘ TensorRT (python -m calib --target tensorrt)
  trt-fp32   TensorRT engines (python -m export.trt) built once from the onnx, onnx-fp16 and
  trt-fp16   onnx-int8-tensorrt files into OUT/models/ (profile: batch 1, up to the largest input of the
  trt-int8   run), run on the GPU with grouping + refine in CUDA kernels; skipped without TensorRT

INT8 files are calibrated on --calib-images images of the mini COCO val2017 set (python -m calib's
default choice, recorded in each file's calib.image_names); when a run has INT8 backends, every
backend is evaluated without those images (by file name, so also on a full val2017 tree).

Agreement with torch (people paired by OKS, identical images, displacement, missed and added people):
defined in benchmarks/parity_agreement.py's docstring.

Resuming: every (backend, image) result is written atomically as OUT/cache/KEY/IMAGE_ID.json:
  {"file": "000000000785.jpg", "image_id": 785, "seconds": 0.61,
   "people": [{"keypoints": [x, y, score] * 17 (image pixels), "score": person score}, ...]}
KEY is the first 16 hex digits of the sha256 of the backend's identity (written beside the results as
OUT/cache/KEY/identity.json): arch, input size, checkpoint provenance (synthetic:SEED, zoo file name or
the file's sha256), scales, precision, backend name and device, for exported backends the model file's
sha256 (and the calibration image count for INT8); in --rendered mode the input size, and for the ONNX
rows the decode-only file's sha256 (one key for all three, see below). A run skips the images already
in its cache, so an interrupted run continues where it stopped, and a change of settings gives new
keys only to the backends it affects. `seconds` is the time computing that image took (read +
warp + graph + grouping; one untimed warm-up image per backend and process).

--rendered feeds network outputs rendered from the ground truth (benchmarks/coco.py rendered_outputs)
to each backend's own decode instead of running the network; on the full mini set every backend's
metrics are compared with ../shared/golden/decode_mini.json: torch's must equal them to 1e-9 (exit 1
otherwise); every other backend's largest difference is printed beside it (its decode may decide
exact float32 ties differently, see the README). Single scale only (the renderer draws scale 1).
  torch                        the torch Decode, as benchmarks/coco.py --rendered runs it
  onnx, onnx-fp16, onnx-int8*  the decode-only ONNX file (python -m export.decode_onnx, written once
                               into OUT/models/) in ONNX Runtime (CPU). The FP16 and INT8 files cast
                               only the network; their decode is the FP32 one, identical to onnx's.
                               So the ONNX rows are one run of that file (one cache key), and each
                               row says so in its note.
  trt-*                        skipped: TensorRT is needed (and a decode-only engine is not built yet).

With a zoo checkpoint on a COCO tree other than the mini set, the published numbers of that checkpoint
(export/checkpoint.py ZOO) are printed beside the measured ones; SPEC §13 lists why they can differ.

Modules (one job each): parity_identity.py backend names, identities and cache keys; parity_models.py
the model files under OUT/models/; parity_plan.py which backends run (BackendRun); parity_cache.py the
per-image cache; parity_compute.py filling it; parity_agreement.py OKS pairing and agreement;
parity_report.py parity.json, the Markdown tables and the PNG; this file the CLI.

Examples:
  python benchmarks/parity.py --limit 20
  python benchmarks/parity.py --rendered --backends torch,onnx
  python benchmarks/parity.py --coco-root /data/coco/val2017 --ann /data/coco/annotations/person_keypoints_val2017.json --checkpoint w32_512 --backends torch,onnx,onnx-fp16 --out out/parity-w32
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.coco import MINI_SET, REPO, CocoSet
from benchmarks.parity_compute import compute
from benchmarks.parity_identity import BACKENDS, PRECISION
from benchmarks.parity_models import calibration_names
from benchmarks.parity_plan import plan_backends
from benchmarks.parity_report import build_report, markdown, plot
from runtime.errors import UserError


def parse_backends(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in BACKENDS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"--backends {text!r}: choose from {','.join(BACKENDS)}")
    return list(dict.fromkeys(names))


def evaluation_images(images: list, args: argparse.Namespace) -> list:
    """The images every backend is evaluated on: without the INT8 files' calibration images when the run
    has an INT8 backend that runs the network (not --rendered, whose decode-only file has no INT8)."""
    if args.rendered or not any(PRECISION[name] == "int8" for name in args.backends):
        return images
    held_out = calibration_names(args.calib_images)
    kept = [image for image in images if image.path.name not in held_out]
    print(f"evaluating every backend on the {len(kept)} of {len(images)} images that are not among the INT8 "
          f"files' {args.calib_images} calibration images", file=sys.stderr, flush=True)
    return kept


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
    parser.add_argument("--calib-images", type=int, default=8, help="INT8 backends: calibration images, left out of the evaluation (default: 8)")
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
    images = evaluation_images(coco.images, args)
    images = images[: args.limit] if args.limit else images
    if not images:
        raise UserError(f"{coco.ann}: no images")
    from export.zoo import SYNTHETIC_DEFAULT, cli_checkpoint

    if args.rendered:  # rendered outputs replace the network: its weights take no part
        args.checkpoint = args.checkpoint or SYNTHETIC_DEFAULT
    else:
        args.checkpoint = cli_checkpoint(args.checkpoint, args.arch, args.input_size)
    backend_runs = plan_backends(args, images)
    compute(backend_runs, args, coco, images)
    report = build_report(backend_runs, args, coco, images, is_mini)
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
