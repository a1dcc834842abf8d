"""python benchmarks/soak.py — many images through one PoseEstimator, resident memory sampled after each.

Prints the resident set size (RSS) at the start (model open, before the first image), its peak, at the
end, and the slope of a least-squares line through the samples after the warm-up (MB per 1,000
images): a leak shows as a positive slope that does not fade, a healthy run as a flat line once the
allocators and numba's compiled code have settled. Images are the mini COCO set (or --image-dir),
repeated in order until N are done.

Examples:
  python benchmarks/soak.py --engine w32.onnx                 # 1,000 images, ONNX Runtime on the CPU
  python benchmarks/soak.py --images 200 --warmup 20           # PyTorch reference, synthetic weights
  python benchmarks/soak.py --engine w32.onnx --image-dir photos/ --images 5000 --json soak.json
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime.errors import Interrupted, UserError

MINI_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_val2017_mini" / "images"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def rss_mb() -> float:
    """The current resident set size of this process in MB (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1024 ** 2


def slope_per_1000(samples: list[float], warmup: int) -> float:
    """Least-squares slope of the samples after ``warmup`` images, in MB per 1,000 images."""
    tail = np.asarray(samples[warmup:], dtype=np.float64)
    if tail.size < 2:
        return float("nan")
    return float(np.polyfit(np.arange(tail.size, dtype=np.float64), tail, 1)[0] * 1000.0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python benchmarks/soak.py", description=__doc__.split("\n\n")[0].split(" — ")[1],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", type=Path, help="an exported .onnx (or .plan) file (default: the PyTorch "
                                                    "reference of --arch with synthetic:0 weights)")
    parser.add_argument("--arch", choices=("w32", "w48"), default="w32", help="PyTorch reference width (default: w32)")
    parser.add_argument("--input-size", type=int, choices=(512, 640), default=512,
                        help="PyTorch reference input size (default: 512)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the model runs (default: cpu)")
    parser.add_argument("--image-dir", type=Path, default=MINI_IMAGES,
                        help="folder of images, repeated in name order (default: the mini COCO val2017 set)")
    parser.add_argument("--images", type=int, default=1000, help="images to run in all (default: 1000)")
    parser.add_argument("--warmup", type=int, default=20,
                        help="images left out of the slope (allocators and compilation settle) (default: 20)")
    parser.add_argument("--json", type=Path, help="also write the samples and figures to this JSON file")
    return parser


def run(args: argparse.Namespace) -> int:
    from runtime.files import check_output_file, write_atomic

    if args.images < 2:
        raise UserError(f"--images {args.images}: give at least 2")
    if not 0 <= args.warmup < args.images - 1:
        raise UserError(f"--warmup {args.warmup}: give 0 to {args.images - 2} (fewer than --images)")
    if not args.image_dir.is_dir():
        raise UserError(f"--image-dir {args.image_dir}: not a folder of images")
    paths = sorted(p for p in args.image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise UserError(f"--image-dir {args.image_dir}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    if args.json:
        check_output_file(args.json, "--json")

    from runtime.backends import open_backend, open_torch
    from runtime.pipeline import PoseEstimator

    backend = open_backend(args.engine, args.device) if args.engine else \
        open_torch(args.arch, "synthetic:0", args.input_size, device=args.device)
    stopped = None
    with backend:
        estimator = PoseEstimator(backend)
        start_rss = rss_mb()
        samples: list[float] = []
        began = time.perf_counter()
        try:
            for index in range(args.images):
                estimator.estimate_file(paths[index % len(paths)])
                samples.append(rss_mb())
                if (index + 1) % 25 == 0 or index + 1 == args.images:
                    print(f"{index + 1}/{args.images} images, RSS {samples[-1]:.0f} MB "
                          f"({time.perf_counter() - began:.0f} s)", file=sys.stderr, flush=True)
        except KeyboardInterrupt as stop:  # report the measurements so far: finished work is not thrown away
            stopped = stop
            if len(samples) < args.warmup + 2:
                raise Interrupted(getattr(stop, "signum", signal.SIGINT),
                                  f"after {len(samples)} images, too few for a slope; nothing written") from None
        seconds = time.perf_counter() - began
    meta = estimator.metadata
    report = {"model": f"{backend.name}, HigherHRNet-{meta.arch.upper()} input {meta.input_size}, {meta.precision}, "
                       f"weights {meta.checkpoint}",
              "images": args.images, "images_done": len(samples), "distinct_images": len(paths),
              "warmup": args.warmup, "seconds": seconds,
              "start_rss_mb": start_rss, "peak_rss_mb": max(samples), "end_rss_mb": samples[-1],
              "after_warmup_rss_mb": samples[args.warmup], "slope_mb_per_1000": slope_per_1000(samples, args.warmup),
              "samples_mb": samples}
    print(f"{report['model']}: {len(samples)} of {args.images} images ({len(paths)} distinct, repeated) in "
          f"{seconds:.0f} s")
    print(f"RSS start {start_rss:.0f} MB (model open), after {args.warmup} warm-up images "
          f"{report['after_warmup_rss_mb']:.0f} MB, peak {report['peak_rss_mb']:.0f} MB, end {samples[-1]:.0f} MB; "
          f"slope after warm-up {report['slope_mb_per_1000']:+.1f} MB per 1,000 images")
    if args.json:
        write_atomic(args.json, (json.dumps(report, indent=1) + "\n").encode())
    if stopped is not None:
        raise Interrupted(getattr(stopped, "signum", signal.SIGINT),
                          f"the figures above cover the {len(samples)} images done before it")
    return 0


def main(argv: list[str] | None = None) -> int:
    from runtime.cli import run_cli

    return run_cli(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
