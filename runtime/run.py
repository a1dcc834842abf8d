"""python -m runtime.run — people with 17 keypoints from images, as COCO results json and pictures.

Examples:
  python -m runtime.run                                   # bundled samples, synthetic weights
  python -m runtime.run --checkpoint w32_512 --image a.jpg b.jpg --out people.json --draw pictures/
  python -m runtime.run --arch w48 --checkpoint ckpt.pth --image a.jpg --scales 2,1,0.5
"""
from __future__ import annotations

import argparse
import sys
import time
from importlib import resources
from pathlib import Path

from runtime.errors import UserError
from runtime.metadata import ARCHS, INPUT_SIZES

SYNTHETIC_DEFAULT = "synthetic:0"


def bundled_samples() -> list[Path]:
    """The COCO val2017 sample images shipped inside the package."""
    folder = resources.files("runtime") / "samples"
    return sorted(Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".jpg"))


def parse_scales(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--scales {text!r}: give comma-separated numbers, e.g. 2,1,0.5") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runtime.run", description=__doc__.split("\n\n")[0].split(" — ", 1)[1],
        epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    model = parser.add_argument_group("model (the PyTorch reference)")
    model.add_argument("--arch", choices=ARCHS, default="w32", help="network width (default: w32)")
    model.add_argument("--input-size", type=int, choices=INPUT_SIZES, default=512,
                       help="short side of the network input, as the checkpoint was trained (default: 512)")
    model.add_argument("--checkpoint", default=SYNTHETIC_DEFAULT,
                       help="a .pth file, a zoo name (w32_512, w32_640, w48_512 or the mmpose file name, "
                            "downloaded to a cache), or synthetic:SEED for deterministic random weights "
                            f"(default: {SYNTHETIC_DEFAULT} — not a trained model)")
    model.add_argument("--scales", type=parse_scales, default=(1.0,),
                       help="test scales, must include 1, e.g. 2,1,0.5 for multi-scale (default: 1)")
    io = parser.add_argument_group("images and results")
    io.add_argument("--image", nargs="+", type=Path, metavar="IMAGE",
                    help="image files, in the order results are written (default: the bundled samples)")
    io.add_argument("--out", type=Path, default=Path("results.json"),
                    help="COCO keypoint results json, one entry per person (default: results.json)")
    io.add_argument("--draw", type=Path, metavar="DIR", help="write a skeleton picture per image into DIR")
    return parser


def check_scales(scales: tuple[float, ...]) -> tuple[float, ...]:
    from runtime.metadata import DecodeConfig

    try:
        return DecodeConfig(scales=scales).scales
    except ValueError as error:
        raise UserError(f"--scales: {error}, e.g. --scales 2,1,0.5") from None


def open_estimator(args: argparse.Namespace):
    from runtime.backends import open_torch
    from runtime.pipeline import PoseEstimator

    return PoseEstimator(open_torch(args.arch, args.checkpoint, args.input_size, check_scales(args.scales)))


def describe(estimator) -> str:
    meta = estimator.metadata
    text = (f"model: {estimator.backend.name}, HigherHRNet-{meta.arch.upper()} input {meta.input_size}, "
            f"scales {list(meta.decode.scales)}, weights {meta.checkpoint}")
    if meta.checkpoint.startswith("synthetic:"):
        text += ("\nnote: synthetic weights — deterministic random numbers, not a trained model; the people found "
                 "are meaningless as poses. Pass --checkpoint w32_512 (or a .pth file) for real results.")
    return text


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from runtime.draw import write_picture
    from runtime.preprocess import read_image
    from runtime.results import check_writable, coco_results, image_id, write_json

    images = args.image
    if not images:
        images = bundled_samples()
        print(f"no --image given: using the {len(images)} bundled COCO val2017 samples")
    check_writable(args.out)
    estimator = open_estimator(args)
    print(describe(estimator))

    results: list[dict] = []
    start = time.perf_counter()
    progress = tqdm(images, unit="img", disable=len(images) < 8 or not sys.stderr.isatty())
    for position, path in enumerate(progress):
        began = time.perf_counter()
        image = read_image(path)
        people = estimator(image)
        results.extend(coco_results(image_id(path, position), people))
        if args.draw:
            write_picture(args.draw / f"{Path(path).stem}.jpg", image, people)
        height, width = image.shape[:2]
        progress.write(f"{Path(path).name}: {len(people)} people ({width}x{height}, "
                       f"{time.perf_counter() - began:.2f} s)")
    write_json(args.out, results)
    elapsed = time.perf_counter() - start
    print(f"wrote {len(results)} people from {len(images)} images to {args.out} ({elapsed:.1f} s)"
          + (f"; pictures in {args.draw}" if args.draw else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
