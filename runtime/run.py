"""python -m runtime.run — people with 17 keypoints from images, as COCO results json and pictures.

The model is an exported file (--engine w32.onnx: everything it needs is read from the file) or the
PyTorch reference built from --arch/--input-size/--checkpoint/--scales.

Examples:
  python -m runtime.run                                   # bundled samples, synthetic weights, PyTorch
  python -m runtime.run --engine w32.onnx --image-dir photos/ --out people.json --draw pictures/
  python -m runtime.run --checkpoint w32_512 --image a.jpg b.jpg --out people.json
  python -m runtime.run --engine w32.onnx --video clip.mp4 --out clip.json --device cuda
  python -m runtime.run --engine w32.plan --image-dir photos/ --out people.json   # TensorRT, on the GPU
  python -m runtime.run --engine triton://127.0.0.1:8000/hrnet --image a.jpg --out people.json   # a Triton server

A bad image (missing, empty, corrupt, too small or too large) is reported on stderr, one line each, and
skipped; the others are processed and written. Exit codes: 0 every image done; 3 done, but some images
are skipped; 2 nothing could be done (bad flag, model or output; every image bad; --strict at the
first bad image); 130 / 143 interrupted by SIGINT / SIGTERM (the results finished so far are written).
Pictures are named after the input (a.jpg -> DIR/a.jpg) and go to a folder that holds no input.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from runtime.cli import EXIT_SKIPPED, EXIT_USER_ERROR, check_scales, examples, parse_scales, run_cli
from runtime.errors import Interrupted, ModelFault, UserError
from runtime.draw import PictureStyle
from runtime.metadata import ARCHS, INPUT_SIZES



def bundled_samples() -> list[Path]:
    """The COCO val2017 sample images shipped inside the package."""
    folder = resources.files("runtime") / "samples"
    return sorted(Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".jpg"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runtime.run", description=__doc__.split("\n\n")[0].split(" — ", 1)[1],
        epilog=examples(__doc__, "Export and run anywhere"), formatter_class=argparse.RawDescriptionHelpFormatter)
    engine = parser.add_argument_group("model file")
    engine.add_argument("--engine", metavar="FILE",
                        help="an exported model (.onnx from python -m export.onnx, or a TensorRT .plan from python -m "
                             "export.trt), or a served one: triton://HOST:PORT/MODEL (python -m runtime.serve); replaces "
                             "the PyTorch flags below (default: the PyTorch reference)")
    engine.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the model runs: cpu, or cuda (an .onnx --engine needs onnxruntime-gpu, the PyTorch "
                             "reference a CUDA torch); a .plan always runs on the GPU (default: cpu)")
    engine.add_argument("--grouping", choices=("host", "device"), default="host",
                        help="where a GPU backend groups people: host (only the ~10 KB of candidates come back, "
                             "grouped on a CPU core; refine runs on the GPU on the maps in place) or device (all on "
                             "the GPU, grouping on one GPU thread); identical people (default: host)")
    engine.add_argument("--no-refine", action="store_true",
                        help="people straight from grouping + adjust, without refine filling missing joints from "
                             "the dense maps (SPEC §8): a cheaper host step, a lower AP (default: refine on)")
    model = parser.add_argument_group("PyTorch reference (when no --engine is given)")
    model.add_argument("--arch", choices=ARCHS, help="network width (default: w32)")
    model.add_argument("--input-size", type=int, choices=INPUT_SIZES,
                       help="short side of the network input, as the checkpoint was trained (default: 512)")
    model.add_argument("--checkpoint",
                       help="a .pth file, a zoo name (w32_512, w32_640, w48_512 or the mmpose file name, "
                            "downloaded to a cache), or synthetic:SEED for deterministic random weights "
                            "(default: the released checkpoint of --arch and --input-size when it is cached or downloads, else synthetic:0 with a note; synthetic:SEED is deterministic random weights, NOT a trained model)")
    model.add_argument("--scales", type=parse_scales,
                       help="test scales, must include 1, each from 0.25 to 4, e.g. 2,1,0.5 for multi-scale "
                            "(default: 1). With --engine these flags may only repeat what the file holds")
    io = parser.add_argument_group("images and results")
    sources = io.add_mutually_exclusive_group()
    sources.add_argument("--image", nargs="+", type=Path, metavar="IMAGE",
                         help="image files, in the order results are written (default: the bundled samples)")
    sources.add_argument("--image-dir", type=Path, metavar="DIR",
                         help="every .jpg/.jpeg/.png/.bmp/.webp file in DIR, sorted by name (default: none)")
    sources.add_argument("--video", type=Path, metavar="PATH",
                         help="every frame of a video file (image_id = frame number, from 0); also writes the "
                              "annotated video (see --video-out) (default: none)")
    io.add_argument("--out", type=Path, default=Path("results.json"),
                    help="COCO keypoint results json, one entry per person (default: results.json)")
    io.add_argument("--video-out", type=Path, metavar="FILE",
                    help="with --video: the annotated video, MP4 (mp4v) at the input's frame rate (default: --out "
                         "with .mp4, e.g. results.mp4)")
    io.add_argument("--draw", type=Path, metavar="DIR",
                    help="write a skeleton picture per image (or frame) into DIR, a folder that holds no input (default: no pictures)")
    io.add_argument("--min-score", type=float, metavar="S",
                    help="keep only people whose score is at least S, in results and pictures (default: results "
                         f"keep everyone, as COCO evaluation needs; pictures show people from {PictureStyle.min_score})")
    io.add_argument("--max-people", type=int, metavar="N",
                    help="keep at most the N best-scoring people per image, in results and pictures (default: all)")
    io.add_argument("--batch", type=int, default=4, metavar="N",
                    help="images per graph run when their input sizes are equal (default: 4)")
    io.add_argument("--strict", action="store_true",
                    help="stop at the first bad image (exit 2; what was finished before it is written) instead "
                         "of reporting and skipping it (default: skip, exit 3 when any was skipped)")
    return parser


def open_estimator(args: argparse.Namespace):
    from runtime.backends import open_backend, open_torch
    from runtime.pipeline import PoseEstimator

    if args.engine:
        backend = open_backend(args.engine, device=args.device)
        try:
            check_engine_flags(args, backend.metadata)
        except UserError:
            backend.close()
            raise
    else:
        from export.zoo import cli_checkpoint

        scales = check_scales(args.scales or (1.0,))
        args.checkpoint = cli_checkpoint(args.checkpoint, args.arch or "w32", args.input_size or 512)
        backend = open_torch(args.arch or "w32", args.checkpoint, args.input_size or 512, scales, device=args.device)
    try:
        return PoseEstimator(backend, grouping=args.grouping, refine=not args.no_refine)
    except BaseException:
        backend.close()
        raise


def check_engine_flags(args: argparse.Namespace, meta) -> None:
    """With --engine, a PyTorch flag may only repeat what the file holds: one that asks for something
    else is an error saying what the file holds and how to export what is asked."""
    held = {"--arch": meta.arch, "--input-size": meta.input_size, "--scales": meta.decode.scales,
            "--checkpoint": meta.checkpoint}
    asked = {"--arch": args.arch, "--input-size": args.input_size,
             "--scales": check_scales(args.scales) if args.scales else None, "--checkpoint": args.checkpoint}

    def differs(flag: str) -> bool:
        if asked[flag] is None:
            return False
        if flag == "--checkpoint":  # the file records a zoo name, file name or synthetic:SEED
            return not (asked[flag] in held[flag] or Path(asked[flag]).stem in held[flag])
        return asked[flag] != held[flag]

    def text(flag: str, value) -> str:
        return ",".join(f"{s:g}" for s in value) if flag == "--scales" else str(value)

    conflicts = [flag for flag in held if differs(flag)]
    if not conflicts:
        return
    flag = conflicts[0]
    holds = ", ".join(f"{name} {text(name, value)}" for name, value in held.items())
    command = " ".join(f"{name} {text(name, asked[name] if differs(name) else held[name])}" for name in held)
    raise UserError(f"{flag} {text(flag, asked[flag])}: {args.engine} was exported with {holds}, and the file "
                    f"decides; drop {flag}, or export what you asked for: python -m export.onnx {command}")


def describe(estimator) -> str:
    meta = estimator.metadata
    text = (f"model: {estimator.backend.name}, HigherHRNet-{meta.arch.upper()} input {meta.input_size}, "
            f"scales {list(meta.decode.scales)}, {meta.precision}, weights {meta.checkpoint}"
            + ("" if meta.decode.flip else ", flip test off") + ("" if estimator.refine else ", refine off"))
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


@dataclass(frozen=True)
class Source:
    """One input in results order: its name (for messages and pictures), COCO image id and loader."""

    name: str
    image_id: int
    load: Callable[[], np.ndarray]


def input_paths(args: argparse.Namespace) -> list[Path]:
    """The image files to read, in results order (the bundled samples without --image/--image-dir)."""
    if args.image_dir:
        if not args.image_dir.is_dir():
            raise UserError(f"--image-dir {args.image_dir}: not a folder; pass --image-dir DIR with images in it")
        paths = sorted(p for p in args.image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise UserError(f"{args.image_dir}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        return paths
    if args.image:
        return list(args.image)
    paths = bundled_samples()
    print(f"no --image given: using the {len(paths)} bundled COCO val2017 samples")
    return paths


def image_sources(paths: list[Path]) -> Iterator[Source]:
    from runtime.preprocess import read_image
    from runtime.results import image_id

    return (Source(Path(p).name, image_id(p, i), lambda p=p: read_image(p)) for i, p in enumerate(paths))


def video_frames(path: Path) -> tuple[int, float, Iterator[Source]]:
    """Frame count, frame rate and frames of a video file."""
    # FFmpeg logs its own complaints to stderr; the one line below says what is wrong and what to do.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    import cv2

    if path.is_dir():
        raise UserError(f"--video {path}: is a directory; give a video file (or --image-dir DIR for a folder of images)")
    if not path.is_file():
        raise UserError(f"{path}: no such video file; check the path")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise UserError(f"{path}: OpenCV cannot open this video; convert it to H.264 MP4")
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)

    def frames():
        index = 0
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                yield Source(f"{path.stem}_{index:06d}", index, lambda rgb=rgb: rgb)
                index += 1
        finally:
            capture.release()
        if index == 0:
            raise UserError(f"{path}: no frame could be decoded; convert it to H.264 MP4")

    return count, fps, frames()


def chunks(items: Iterator, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def protect_inputs(args: argparse.Namespace, inputs: list[Path]) -> None:
    """Refuse, before any work, an output that would write over an input: --out naming an input (or the
    model file), or --draw naming a folder that holds an input (pictures are named like their inputs)."""
    owned = [*inputs] + [p for p in (args.engine, args.checkpoint and Path(args.checkpoint)) if p]
    for path in owned:
        if _same_file(args.out, Path(path)):
            raise UserError(f"--out {args.out}: that is an input ({path}); results would replace it, so give the "
                            f"results a file of their own, e.g. --out results.json")
        if args.video_out and _same_file(args.video_out, Path(path)):
            raise UserError(f"--video-out {args.video_out}: that is an input ({path}); give the annotated video a "
                            f"file of its own, e.g. --video-out {Path(path).stem}_people.mp4")
    if args.draw:
        for path in inputs:
            if _same_file(args.draw, Path(path).parent):
                raise UserError(f"--draw {args.draw}: it holds the input {Path(path).name}, and pictures are named "
                                f"like their inputs; give the pictures a folder of their own, e.g. "
                                f"--draw {args.draw / 'pictures'}")


def picture_name(name: str, used: set[str]) -> str:
    """``a.jpg`` -> ``a.jpg``; a second input with the same stem (``a.png``) gets ``a_png.jpg``, and so on."""
    stem = Path(name).stem
    candidate = f"{stem}.jpg"
    if candidate in used:
        candidate = f"{stem}_{Path(name).suffix.lstrip('.') or 'frame'}.jpg"
    count = 2
    while candidate in used:
        candidate = f"{stem}_{count}.jpg"
        count += 1
    used.add(candidate)
    return candidate


@dataclass
class Progress:
    """What a run has finished and what it skipped."""

    results: list[dict] = field(default_factory=list)
    done: int = 0
    skipped: list[str] = field(default_factory=list)
    video: object = None  # runtime.draw.VideoSink of --video


def picture_style(args: argparse.Namespace, estimator) -> PictureStyle:
    """What the pictures show: ``--min-score`` / ``--max-people`` where given, and the synthetic banner."""
    return PictureStyle(min_score=PictureStyle.min_score if args.min_score is None else args.min_score,
                        max_people=args.max_people, synthetic=estimator.metadata.checkpoint.startswith("synthetic:"))


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

    from runtime.files import check_output_dir, check_output_file

    if args.batch < 1:
        raise UserError(f"--batch {args.batch}: give at least 1")
    if args.max_people is not None and args.max_people < 1:
        raise UserError(f"--max-people {args.max_people}: give at least 1")
    if args.min_score is not None and not 0 <= args.min_score <= 1:
        raise UserError(f"--min-score {args.min_score}: person scores lie in 0..1; give a value in that range")
    if args.engine is not None and Path(args.engine).is_dir():
        raise UserError(f"--engine {args.engine}: is a directory; give the model file itself (an .onnx from "
                        f"python -m export.onnx or a .plan from python -m export.trt)")
    if args.video_out and not args.video:
        raise UserError("--video-out: it is the annotated copy of a --video input; add --video FILE")
    if args.video:
        inputs = [args.video]
        count, fps, sources = video_frames(args.video)
        args.video_out = args.video_out or args.out.with_suffix(".mp4")
    else:
        inputs = input_paths(args)
        count, sources = len(inputs), image_sources(inputs)
    protect_inputs(args, inputs)
    check_output_file(args.out, "--out")
    if args.video_out:
        from runtime.draw import VideoSink

        check_output_file(args.video_out, "--video-out")
    if args.draw:
        check_output_dir(args.draw, "--draw")
    opened = []

    def estimator():
        """The model, opened when the first image has been read (a run of bad images never loads it)."""
        if not opened:
            opened.append(open_estimator(args))
            print(describe(opened[0]))
        return opened[0]

    progress = Progress(video=VideoSink(args.video_out, fps) if args.video_out else None)
    start = time.perf_counter()
    try:
        with tqdm(total=count or None, unit="img", disable=count < 8 or not sys.stderr.isatty()) as bar:
            process(args, estimator, sources, progress, bar)
    except KeyboardInterrupt as stop:
        signum = stop.signum if isinstance(stop, Interrupted) else signal.SIGINT
        raise Interrupted(signum, keep_finished(args, progress, start, "interrupted")) from None
    except UserError as error:
        if progress.done:
            print(keep_finished(args, progress, start, "stopped"))
        raise error from None
    if not progress.done:
        if progress.video:
            progress.video.close(keep=False)
        return EXIT_USER_ERROR  # every image is bad: each has its line, nothing is written
    print(keep_finished(args, progress, start, "wrote"))
    device_io = getattr(opened[0].backend, "device_io", None) if opened else None
    note = device_io.eviction_note(progress.done) if device_io is not None else None
    if note:
        print(note)
    return EXIT_SKIPPED if progress.skipped else 0


def keep_finished(args: argparse.Namespace, progress: Progress, start: float, how: str) -> str:
    """Write the results finished so far (atomically) and say so; the line of a run's end."""
    from runtime.results import write_json

    if not progress.done:
        if progress.video:
            progress.video.close(keep=False)
        return "no image was finished, nothing written"
    write_json(args.out, progress.results)
    video = progress.video is not None and progress.video.close(keep=True)
    elapsed = time.perf_counter() - start
    text = (f"{len(progress.results)} people from {progress.done} image{'' if progress.done == 1 else 's'} to {args.out} ({elapsed:.1f} s, "
            f"{progress.done / elapsed:.2f} images/s)" + (f"; pictures in {args.draw}" if args.draw else "")
            + (f"; annotated video {args.video_out} ({progress.video.frames} frames)" if video else ""))
    if progress.skipped:
        text += f"; {len(progress.skipped)} skipped: {', '.join(progress.skipped[:5])}" + \
            (" ..." if len(progress.skipped) > 5 else "")
    if how == "wrote":
        return "wrote " + text
    kept = f"the results of the {progress.done} image{'' if progress.done == 1 else 's'} finished so far are written: {text}"
    return kept if how == "interrupted" else f"{how}: {kept}"


def process(args: argparse.Namespace, estimator: Callable, sources: Iterator[Source], progress: Progress,
            bar) -> None:
    """Every image of ``sources`` through ``estimator``, in batches; bad images are reported and skipped
    (``--strict``: the first one stops the run)."""
    from runtime.draw import draw_people, write_picture
    from runtime.progress import working
    from runtime.results import coco_results

    used: set[str] = set()

    def skip(source: Source, error: UserError) -> None:
        message = " ".join(str(error).split())
        if args.strict:
            raise UserError(f"{message} (--strict: stopped at this image)")
        bar.write(f"error: {message}; skipped", file=sys.stderr)
        progress.skipped.append(source.name)
        bar.update()

    for chunk in chunks(sources, args.batch):
        began = time.perf_counter()
        loaded = []
        for source in chunk:
            try:
                loaded.append((source, source.load()))
            except UserError as error:
                skip(source, error)
        opening = time.perf_counter()
        model = estimator() if loaded else None
        began += time.perf_counter() - opening  # an image's time is its own work, not the model's loading
        if model is not None and not progress.done and not progress.skipped:
            with working(f"first batch ({len(loaded)} image{'' if len(loaded) == 1 else 's'}): compiling the "
                         f"grouping kernels (first run only) and running the model", file=sys.stdout):
                finished = estimate(model, loaded, skip)
        else:
            finished = estimate(model, loaded, skip)
        each = (time.perf_counter() - began) / max(1, len(loaded))
        timing = f"{each:.2f} s" if len(loaded) == 1 else f"{each:.2f} s, the average of a batch of {len(loaded)}"
        for (source, image), found in finished:
            found = kept_people(found, args.min_score, args.max_people)
            if args.draw:
                write_picture(args.draw / picture_name(source.name, used), image, found, picture_style(args, estimator()))
            if progress.video:
                progress.video.write(draw_people(image, found, picture_style(args, estimator())))
            progress.results.extend(coco_results(source.image_id, found))
            progress.done += 1
            height, width = image.shape[:2]
            bar.write(f"{source.name}: {len(found)} {'person' if len(found) == 1 else 'people'} "
                      f"({width}x{height}, {timing})")
            bar.update()


def estimate(estimator, loaded: list, skip) -> list:
    """``((source, image), people)`` for the images the model accepts; an image it refuses is skipped
    (a batch that fails is retried image by image, so one image cannot lose the others)."""
    if not loaded:
        return []
    try:
        return list(zip(loaded, estimator.batch([image for _, image in loaded])))
    except ModelFault:
        raise
    except UserError as error:
        if len(loaded) > 1:
            return [pair for item in loaded for pair in estimate(estimator, [item], skip)]
        skip(loaded[0][0], UserError(f"{loaded[0][0].name}: {error}"))
        return []


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
