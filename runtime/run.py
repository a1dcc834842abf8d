"""python -m runtime.run — people with 17 keypoints from images, as COCO results json and pictures.

The model is an exported file (--engine w32.onnx: everything it needs is read from the file) or the
PyTorch reference built from --arch/--input-size/--checkpoint/--scales.

Examples:
  python -m runtime.run                                   # bundled samples, synthetic weights, PyTorch
  python -m runtime.run --engine w32.onnx --image-dir photos/ --out people.json --draw pictures/
  python -m runtime.run --checkpoint w32_512 --image a.jpg b.jpg --out people.json
  python -m runtime.run --engine w32.onnx --video clip.mp4 --out clip.json --device cuda
  python -m runtime.run --engine w32.plan --image-dir photos/ --out people.json   # TensorRT, on the GPU
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path

import numpy as np

from runtime.cli import check_scales, parse_scales, run_cli
from runtime.draw import PictureStyle
from runtime.errors import UserError
from runtime.metadata import ARCHS, INPUT_SIZES



def bundled_samples() -> list[Path]:
    """The COCO val2017 sample images shipped inside the package."""
    folder = resources.files("runtime") / "samples"
    return sorted(Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".jpg"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runtime.run", description=__doc__.split("\n\n")[0].split(" — ", 1)[1],
        epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    engine = parser.add_argument_group("model file")
    engine.add_argument("--engine", type=Path, metavar="FILE",
                        help="an exported model (.onnx from python -m export.onnx, or a TensorRT .plan from python -m "
                             "export.trt); replaces the PyTorch flags below")
    engine.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the model runs: cpu, or cuda (an .onnx --engine needs onnxruntime-gpu, the PyTorch "
                             "reference a CUDA torch); a .plan always runs on the GPU (default: cpu)")
    model = parser.add_argument_group("PyTorch reference (when no --engine is given)")
    model.add_argument("--arch", choices=ARCHS, default="w32", help="network width (default: w32)")
    model.add_argument("--input-size", type=int, choices=INPUT_SIZES, default=512,
                       help="short side of the network input, as the checkpoint was trained (default: 512)")
    model.add_argument("--checkpoint",
                       help="a .pth file, a zoo name (w32_512, w32_640, w48_512 or the mmpose file name, "
                            "downloaded to a cache), or synthetic:SEED for deterministic random weights "
                            "(default: the released checkpoint of --arch and --input-size when it is cached or downloads, else synthetic:0 with a note; synthetic:SEED is deterministic random weights, NOT a trained model)")
    model.add_argument("--scales", type=parse_scales, default=(1.0,),
                       help="test scales, must include 1, e.g. 2,1,0.5 for multi-scale (default: 1)")
    io = parser.add_argument_group("images and results")
    sources = io.add_mutually_exclusive_group()
    sources.add_argument("--image", nargs="+", type=Path, metavar="IMAGE",
                         help="image files, in the order results are written (default: the bundled samples)")
    sources.add_argument("--image-dir", type=Path, metavar="DIR",
                         help="every .jpg/.jpeg/.png/.bmp/.webp file in DIR, sorted by name")
    sources.add_argument("--video", type=Path, metavar="PATH",
                         help="every frame of a video file (image_id = frame number, from 0)")
    io.add_argument("--out", type=Path, default=Path("results.json"),
                    help="COCO keypoint results json, one entry per person (default: results.json)")
    io.add_argument("--draw", type=Path, metavar="DIR", help="write a skeleton picture per image (or frame) into DIR")
    io.add_argument("--min-score", type=float, metavar="S",
                    help="keep only people whose score is at least S, in results and pictures (default: results "
                         f"keep everyone, as COCO evaluation needs; pictures show people from {PictureStyle.min_score})")
    io.add_argument("--max-people", type=int, metavar="N",
                    help="keep at most the N best-scoring people per image, in results and pictures (default: all)")
    io.add_argument("--batch", type=int, default=4, metavar="N",
                    help="images per graph run when their input sizes are equal (default: 4)")
    return parser


def open_estimator(args: argparse.Namespace):
    from runtime.backends import open_backend, open_torch
    from runtime.pipeline import PoseEstimator

    if args.engine:
        return PoseEstimator(open_backend(args.engine, device=args.device))
    return PoseEstimator(open_torch(args.arch, args.checkpoint, args.input_size, check_scales(args.scales),
                                    device=args.device))


def describe(estimator) -> str:
    meta = estimator.metadata
    text = (f"model: {estimator.backend.name}, HigherHRNet-{meta.arch.upper()} input {meta.input_size}, "
            f"scales {list(meta.decode.scales)}, {meta.precision}, weights {meta.checkpoint}"
            + ("" if meta.decode.flip else ", flip test off"))
    refused = getattr(estimator.backend, "cuda_graph_refused", None)
    if refused:
        text += f"\nnote: running without CUDA graphs (ONNX Runtime refused them: {refused})"
    if meta.checkpoint.startswith("synthetic:"):
        text += "\nnote: synthetic weights — deterministic random numbers, not a trained model; the people found " \
                "are meaningless as poses. " + real_weights_hint(estimator.backend, meta)
    return text


def real_weights_hint(backend, meta) -> str:
    """How to get real people from this model: a checkpoint for the PyTorch path, a new export for a file."""
    from export.zoo import zoo_entry_for

    entry = zoo_entry_for(meta.arch, meta.input_size)
    weights = f"--checkpoint {entry.alias}" if entry else "--checkpoint PATH"
    path = getattr(backend, "path", None)
    if path is None:
        return f"Pass {weights} (or a .pth file) for real results."
    scales = "" if meta.decode.scales == (1.0,) else " --scales " + ",".join(f"{s:g}" for s in meta.decode.scales)
    return (f"{path} was exported from them: export real weights with python -m export.onnx --arch {meta.arch} "
            f"--input-size {meta.input_size}{scales} {weights}.")


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def image_sources(args: argparse.Namespace) -> tuple[int, Iterator[tuple[str, int, Callable[[], np.ndarray]]]]:
    """How many inputs there are, and ``(name, image_id, load)`` for each, in results order."""
    from runtime.preprocess import read_image
    from runtime.results import image_id

    if args.video:
        return video_frames(args.video)
    if args.image_dir:
        if not args.image_dir.is_dir():
            raise UserError(f"{args.image_dir}: not a folder; pass --image-dir DIR with images in it")
        paths = sorted(p for p in args.image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise UserError(f"{args.image_dir}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    else:
        paths = args.image or bundled_samples()
        if not args.image:
            print(f"no --image given: using the {len(paths)} bundled COCO val2017 samples")
        missing = [p for p in paths if not Path(p).is_file()]
        if missing:
            raise UserError(f"{missing[0]}: no such image file"
                            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "") + "; check the path")
    return len(paths), ((Path(p).name, image_id(p, i), lambda p=p: read_image(p)) for i, p in enumerate(paths))


def video_frames(path: Path) -> tuple[int, Iterator[tuple[str, int, Callable[[], np.ndarray]]]]:
    # FFmpeg logs its own complaints to stderr; the one line below says what is wrong and what to do.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    import cv2

    if not path.is_file():
        raise UserError(f"{path}: no such video file; check the path")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise UserError(f"{path}: OpenCV cannot open this video; convert it to H.264 MP4")
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))

    def frames():
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            yield f"{path.stem}_{index:06d}", index, lambda rgb=rgb: rgb
            index += 1
        capture.release()
        if index == 0:
            raise UserError(f"{path}: no frame could be decoded; convert it to H.264 MP4")

    return count, frames()


def chunks(items: Iterator, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def kept_people(people: list, min_score: float | None, max_people: int | None) -> list:
    """The people a run keeps: score at least ``min_score``, then the ``max_people`` best, in results order."""
    if min_score is not None:
        people = [p for p in people if p.score >= min_score]
    if max_people is not None and len(people) > max_people:
        best = sorted(range(len(people)), key=lambda i: -people[i].score)[:max_people]
        people = [people[i] for i in sorted(best)]
    return people


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from runtime.draw import write_picture
    from runtime.results import check_writable, coco_results, write_json

    if args.batch < 1:
        raise UserError(f"--batch {args.batch}: give at least 1")
    if args.max_people is not None and args.max_people < 1:
        raise UserError(f"--max-people {args.max_people}: give at least 1")
    if args.min_score is not None and not 0 <= args.min_score <= 1:
        raise UserError(f"--min-score {args.min_score}: person scores lie in 0..1; give a value in that range")
    count, sources = image_sources(args)
    if not args.engine:
        from export.zoo import cli_checkpoint

        args.checkpoint = cli_checkpoint(args.checkpoint, args.arch, args.input_size)
    check_writable(args.out)
    estimator = open_estimator(args)
    print(describe(estimator))
    style = PictureStyle(min_score=PictureStyle.min_score if args.min_score is None else args.min_score,
                         max_people=args.max_people, synthetic=estimator.metadata.checkpoint.startswith("synthetic:"))

    results: list[dict] = []
    start = time.perf_counter()
    with tqdm(total=count or None, unit="img", disable=count < 8 or not sys.stderr.isatty()) as progress:
        for chunk in chunks(sources, args.batch):
            began = time.perf_counter()
            images = [load() for _, _, load in chunk]
            try:
                people = estimator.batch(images)
            except UserError as error:
                raise UserError(f"{', '.join(name for name, _, _ in chunk)}: {error}") from None
            each = (time.perf_counter() - began) / len(chunk)
            timing = f"{each:.2f} s" if len(chunk) == 1 else f"{each:.2f} s, the average of a batch of {len(chunk)}"
            for (name, number, _), image, found in zip(chunk, images, people):
                found = kept_people(found, args.min_score, args.max_people)
                results.extend(coco_results(number, found))
                if args.draw:
                    write_picture(args.draw / f"{Path(name).stem}.jpg", image, found, style)
                height, width = image.shape[:2]
                progress.write(f"{name}: {len(found)} {'person' if len(found) == 1 else 'people'} "
                               f"({width}x{height}, {timing})")
                progress.update()
    write_json(args.out, results)
    elapsed = time.perf_counter() - start
    images_done = estimator.times.images
    print(f"wrote {len(results)} people from {images_done} image{'' if images_done == 1 else 's'} to {args.out} ({elapsed:.1f} s, "
          f"{images_done / elapsed:.2f} images/s)" + (f"; pictures in {args.draw}" if args.draw else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
