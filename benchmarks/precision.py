"""python benchmarks/precision.py — FP16 and INT8 files against the FP32 file, in ONNX Runtime on the CPU.

W32 with synthetic:0 weights (unless --checkpoint) is exported in FP32 and FP16 and quantized to INT8
with ``python -m calib``, one file per row: each calibration method of ``--methods`` (32 calibration
images by default), the other Q/DQ placements of ``--targets``, and the sensitivity pass's files
(``--keep-float``, ``--target-sqnr``: layer groups kept float by measured sensitivity). The
evaluation images are mini COCO images outside every INT8 file's calibration set (the
``calib.image_names`` each file records). Per image, against the FP32 file:

* SQNR of the heatmap and the tags (dB; mean over images, worst image in brackets);
* candidate agreement: above-threshold candidate pixels both files have / pixels either has;
* identical people: share of images whose decoded people (grouping + refine) have the same count,
  keypoints within 0.01 px and scores within 0.01;
* same people count: share of images where both decode the same number of people;
* joints moved: of the people matched by OKS (below), the share of joints more than 0.01 px apart;
* mean OKS: people matched greedily by OKS (COCO sigmas, the FP32 person's keypoint box as its
  area); an unmatched person counts 0; averaged over max(#FP32, #other) people, then over images;
* graph time vs FP32: the sum over images of one timed graph run each, ONNX Runtime CPU, same
  process, the FP32 file timed on the same images right before each row's file, after one warm-up
  run of both.

Below the table: the layer groups each sensitivity row kept float, and how many of each INT8 file's
operators ONNX Runtime's CPU optimizer turned into integer ones (QLinearConv, QLinearAdd).

Synthetic weights make flat heatmaps with ~100 people per image whose values are often closer
than FP16 or INT8 noise: candidate, people and OKS numbers are a stress test of the discrete decode
steps (SPEC §12), far below what a trained checkpoint gives. SQNR is the number to compare.

Examples:
  python benchmarks/precision.py                       # 20 images, files built in a temporary folder
  python benchmarks/precision.py --methods percentile,entropy,minmax --keep-float 3 --target-sqnr 34
  python benchmarks/precision.py --images 40 --targets onnxruntime,tensorrt --workdir out/precision
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from calib.placement import DEFAULT_TARGET  # noqa: E402
from runtime.errors import UserError  # noqa: E402
from runtime.metadata import file_props  # noqa: E402

# COCO keypoint OKS constants (pycocotools' sigmas, nose ... right ankle).
SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]) / 10.0
POSITION_TOL = 0.01  # px
SCORE_TOL = 0.01


def _quiet(function, argv: list[str]) -> None:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = function(argv)
    if code != 0:
        raise SystemExit(f"{function.__module__} {' '.join(argv)} failed ({code}):\n{out.getvalue()}{err.getvalue()}")


@dataclass(frozen=True)
class Int8Variant:
    """One INT8 row: calibration method, Q/DQ placement and the sensitivity pass's choice (if any)."""

    method: str
    target: str = DEFAULT_TARGET
    keep_float: int | None = None
    target_sqnr: float | None = None

    def file_name(self, calib_images: int) -> str:
        parts = [self.method, str(calib_images)]
        if self.target != DEFAULT_TARGET:
            parts.append(self.target)
        if self.keep_float is not None:
            parts.append(f"keep{self.keep_float}")
        if self.target_sqnr is not None:
            parts.append(f"sqnr{self.target_sqnr:g}")
        return f"w32.int8.{'-'.join(parts)}.onnx"

    def calib_args(self) -> list[str]:
        args = ["--method", self.method, "--target", self.target]
        if self.keep_float is not None:
            args += ["--keep-float", str(self.keep_float)]
        if self.target_sqnr is not None:
            args += ["--target-sqnr", f"{self.target_sqnr:g}"]
        return args

    def label(self, calib_images: int, kept: dict | None) -> str:
        text = f"INT8 {self.method}, {calib_images} images"
        if self.target != DEFAULT_TARGET:
            text += f", {self.target} placement"
        if self.target_sqnr is not None:
            text += f", target {self.target_sqnr:g} dB"
        if kept is not None:
            count = len(kept["groups"])
            text += f", {count} group{'' if count == 1 else 's'} float"
        return text


def int8_variants(methods: list[str], targets: list[str], keep_float: list[int],
                  target_sqnr: float | None) -> list[Int8Variant]:
    """Every method (default placement), every other target (first method), then the sensitivity rows."""
    first = methods[0]
    rows = [Int8Variant(method) for method in methods]
    rows += [Int8Variant(first, target=target) for target in targets if target != DEFAULT_TARGET]
    rows += [Int8Variant(first, keep_float=count) for count in keep_float]
    if target_sqnr is not None:
        rows.append(Int8Variant(first, target_sqnr=target_sqnr))
    return rows


def build_files(folder: Path, checkpoint: str, variants: list[Int8Variant], calib_images: int,
                calib_dir: Path) -> dict[str, Path]:
    """FP32, FP16 and one INT8 file per variant in ``folder`` (reused when already there), by row key."""
    import calib.__main__ as calib_cli
    from export import onnx as exporter

    files = {"fp32": folder / "w32.onnx", "fp16": folder / "w32.fp16.onnx"}
    common = ["--arch", "w32", "--checkpoint", checkpoint, "--skip-verify"]
    if not files["fp32"].exists():
        print("exporting FP32 ...", flush=True)
        _quiet(exporter.main, [*common, "-o", str(files["fp32"])])
    if not files["fp16"].exists():
        print("exporting FP16 ...", flush=True)
        _quiet(exporter.main, [*common, "--precision", "fp16", "-o", str(files["fp16"])])
    for variant in variants:
        path = folder / variant.file_name(calib_images)
        if not path.exists():
            print(f"calibrating {path.name} (cached statistics and sensitivities are reused) ...", flush=True)
            # --skip-verify: this table is the measurement, and calib's 15 dB refusal would drop the very rows
            # (a method that clips too much) it exists to show.
            _quiet(calib_cli.main, ["--onnx", str(files["fp32"]), *variant.calib_args(), "--images",
                                    str(calib_images), "--calib", str(calib_dir), "--skip-verify", "-o", str(path)])
        files[path.name] = path
    return files


def evaluation_images(calib_dir: Path, calibration_names: set[str], count: int) -> list[Path]:
    """``count`` images of the folder, spread evenly over those no INT8 file was calibrated on."""
    from calib.dataset import IMAGE_SUFFIXES

    rest = sorted(p for p in calib_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.name not in calibration_names)
    if not rest:
        raise UserError(f"{calib_dir}: every image was used for calibration; lower --calib-images")
    picks = np.unique(np.linspace(0, len(rest) - 1, min(count, len(rest))).round().astype(int))
    return [rest[i] for i in picks]


def people_arrays(outputs: dict[str, np.ndarray], geometry) -> tuple[np.ndarray, np.ndarray]:
    """Decoded people of batch item 0 in image pixels: ``[P, 17, 3]`` (x, y, score) and person scores."""
    from runtime.grouping import decode_people
    from runtime.results import people_in_image

    persons, scores = decode_people(outputs["candidates"][0], outputs["heatmap"][0], outputs["tags"][0],
                                    outputs["tiles"][0])
    people = people_in_image(persons, scores, geometry)
    keypoints = np.array([p.keypoints for p in people], dtype=np.float64).reshape(-1, 17, 3)
    return keypoints, np.array([p.score for p in people], dtype=np.float64)


def identical(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> bool:
    (ka, sa), (kb, sb) = a, b
    return (ka.shape == kb.shape and np.abs(ka[..., :2] - kb[..., :2]).max(initial=0) <= POSITION_TOL
            and np.abs(ka[..., 2] - kb[..., 2]).max(initial=0) <= SCORE_TOL
            and np.abs(sa - sb).max(initial=0) <= SCORE_TOL)


def oks_matrix(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """OKS of every reference person (rows) with every other person (columns), all 17 joints counted."""
    if len(reference) == 0 or len(other) == 0:
        return np.zeros((len(reference), len(other)))
    span = reference[..., :2].max(axis=1) - reference[..., :2].min(axis=1)
    area = np.maximum(span[:, 0] * span[:, 1], 1.0)  # keypoint box of the reference person
    d2 = np.square(reference[:, None, :, :2] - other[None, :, :, :2]).sum(axis=3)
    e = d2 / (2.0 * area[:, None, None] * np.square(2.0 * SIGMAS)[None, None, :])
    return np.exp(-e).mean(axis=2)


def match_people(reference: np.ndarray, other: np.ndarray) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matching by OKS, best pair first: ``(reference index, other index, OKS)``."""
    matrix = oks_matrix(reference, other)
    pairs = []
    while matrix.size and matrix.max() > 0:
        i, j = np.unravel_index(np.argmax(matrix), matrix.shape)
        pairs.append((int(i), int(j), float(matrix[i, j])))
        matrix[i, :] = -1.0
        matrix[:, j] = -1.0
    return pairs


def mean_oks(reference: np.ndarray, other: np.ndarray, pairs: list[tuple[int, int, float]]) -> float:
    """Matched OKS summed, unmatched people counted 0, over max(#reference, #other); 1.0 when both are empty."""
    total = max(len(reference), len(other))
    return 1.0 if total == 0 else sum(oks for _, _, oks in pairs) / total


def moved_joints(reference: np.ndarray, other: np.ndarray, pairs: list[tuple[int, int, float]]) -> tuple[int, int]:
    """Joints of matched people that moved by more than POSITION_TOL, and how many joints are compared."""
    moved = sum(int((np.abs(reference[i, :, :2] - other[j, :, :2]).max(axis=1) > POSITION_TOL).sum())
                for i, j, _ in pairs)
    return moved, 17 * len(pairs)


@dataclass
class Tally:
    sqnr: dict[str, list[float]] = field(default_factory=lambda: {"heatmap": [], "tags": []})
    agreement: object = None
    identical: int = 0
    oks: list[float] = field(default_factory=list)
    same_count: int = 0
    moved: int = 0
    joints: int = 0
    seconds: float = 0.0


def _comma_list(text: str, choices: tuple[str, ...], flag: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in items if item not in choices]
    if not items or unknown:
        raise UserError(f"{flag} {text}: give a comma-separated list of {', '.join(choices)}")
    return items


def _measure_row(fp32, other, feeds: list, tally: Tally) -> float:
    """Compare ``other`` with ``fp32`` on every prepared image; returns the FP32 graph seconds of this row."""
    from export.verify import compare_precision

    fp32_seconds = 0.0
    for index, (prepared, feed) in enumerate(feeds):
        if index == 0:
            fp32.run(feed)
            other.run(feed)
        start = time.perf_counter()
        reference = fp32.run(feed)
        fp32_seconds += time.perf_counter() - start
        start = time.perf_counter()
        outputs = other.run(feed)
        tally.seconds += time.perf_counter() - start
        comparison = compare_precision(reference, outputs)
        for key in tally.sqnr:
            tally.sqnr[key].append(comparison.sqnr[key])
        tally.agreement = tally.agreement + comparison.agreement
        reference_people = people_arrays(reference, prepared.base_geometry)
        people = people_arrays(outputs, prepared.base_geometry)
        tally.identical += identical(reference_people, people)
        tally.same_count += len(people[0]) == len(reference_people[0])
        pairs = match_people(reference_people[0], people[0])
        tally.oks.append(mean_oks(reference_people[0], people[0], pairs))
        moved, joints = moved_joints(reference_people[0], people[0], pairs)
        tally.moved += moved
        tally.joints += joints
    return fp32_seconds


def run(args: argparse.Namespace) -> int:
    from calib.ort_cpu import optimized_op_counts
    from calib.placement import TARGETS
    from calib.quantize import METHODS, calibration_image_names
    from export.verify import CandidateAgreement
    from runtime.backends.onnx_backend import OnnxBackend
    from runtime.preprocess import prepare, read_image
    from runtime.progress import progress

    calib_dir = args.calib
    if args.images < 1:
        raise UserError(f"--images {args.images}: give at least 1")
    if not calib_dir.is_dir():
        raise UserError(f"--calib {calib_dir}: not a folder")
    methods = _comma_list(args.methods, METHODS, "--methods")
    targets = _comma_list(args.targets, TARGETS, "--targets")
    try:
        keep_float = [int(k) for k in args.keep_float.split(",") if k.strip()] if args.keep_float else []
    except ValueError:
        raise UserError(f"--keep-float {args.keep_float}: give comma-separated counts, e.g. 3 or 2,5") from None
    variants = int8_variants(methods, targets, keep_float, args.target_sqnr)
    with contextlib.ExitStack() as stack:
        folder = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hrnet-precision-")))
        folder.mkdir(parents=True, exist_ok=True)
        files = build_files(folder, args.checkpoint, variants, args.calib_images, calib_dir)
        props = {variant: file_props(folder / variant.file_name(args.calib_images)) for variant in variants}
        used = set().union(*(calibration_image_names(p) for p in props.values()))
        images = evaluation_images(calib_dir, used, args.images)
        labels = {"fp16": "FP16"}
        kept = {}
        for variant in variants:
            name = variant.file_name(args.calib_images)
            kept[name] = json.loads(props[variant]["calib.keep_float"]) if "calib.keep_float" in props[variant] else None
            labels[name] = variant.label(args.calib_images, kept[name])
        fp32 = stack.enter_context(OnnxBackend(files["fp32"]))
        meta = fp32.metadata
        feeds = []
        for path in images:
            prepared = prepare(read_image(path), meta.input_size, meta.decode)
            feeds.append((prepared, {name: array[None] for name, array in zip(meta.input_names, prepared.inputs)}))
        tallies = {name: Tally(agreement=CandidateAgreement(0, 0, 0)) for name in labels}
        fp32_seconds = {}
        for name in progress(list(labels), len(labels), "rows", unit="file"):
            with OnnxBackend(files[name]) as other:
                fp32_seconds[name] = _measure_row(fp32, other, feeds, tallies[name])
        int8_ops = {name: optimized_op_counts(files[name]) for name in labels if name != "fp16"}

    print(f"\nHigherHRNet-W32 {args.checkpoint}, {len(images)} mini-COCO images none of the INT8 files was calibrated "
          f"on, against the FP32 ONNX file; ONNX Runtime CPU "
          f"({sum(fp32_seconds.values()) / len(images) / len(labels):.2f} s per FP32 graph run)\n")
    print("| precision | heatmap SQNR dB, mean [worst] | tags SQNR dB, mean [worst] | candidate agreement "
          "| identical people | same people count | joints moved | mean OKS | graph time vs FP32 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, tally in tallies.items():
        cells = [labels[name]]
        for key in ("heatmap", "tags"):
            values = np.array(tally.sqnr[key])
            cells.append(f"{values.mean():.1f} [{values.min():.1f}]")
        cells.append(f"{tally.agreement.jaccard:.1%}")
        cells.append(f"{tally.identical}/{len(images)} ({tally.identical / len(images):.0%})")
        cells.append(f"{tally.same_count}/{len(images)}")
        cells.append(f"{tally.moved / max(tally.joints, 1):.1%}")
        cells.append(f"{np.mean(tally.oks):.3f}")
        cells.append(f"{tally.seconds / fp32_seconds[name]:.2f}×")
        print("| " + " | ".join(cells) + " |")
    print()
    for name, groups in kept.items():
        if groups is not None:
            print(f"{labels[name]}: float32 groups {', '.join(groups['groups']) or 'none'} "
                  f"({groups['sqnr_db']:.1f} dB on sensitivity images {', '.join(groups['images'])})")
    for name, ops in int8_ops.items():
        print(f"{labels[name]} in ONNX Runtime's optimized CPU graph: {ops['QLinearConv']} QLinearConv, "
              f"{ops['QLinearAdd']} QLinearAdd, {ops['Conv']} float Conv, {ops['ConvTranspose']} float ConvTranspose")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from calib.dataset import DEFAULT_IMAGES, default_calib_dir
    from calib.quantize import DEFAULT_METHOD

    parser = argparse.ArgumentParser(prog="python benchmarks/precision.py", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20, metavar="N",
                        help="evaluation images (mini COCO images not used for calibration) (default: 20)")
    parser.add_argument("--checkpoint", default="synthetic:0", help="weights of the W32 export (default: synthetic:0)")
    parser.add_argument("--methods", "--method", default=DEFAULT_METHOD, metavar="LIST",
                        help=f"INT8 calibration methods, one row each: percentile, entropy, minmax, comma-separated "
                             f"(default: {DEFAULT_METHOD})")
    parser.add_argument("--targets", default=DEFAULT_TARGET, metavar="LIST",
                        help=f"Q/DQ placements (python -m calib --target), one row for each other than onnxruntime, "
                             f"with the first method (default: {DEFAULT_TARGET})")
    parser.add_argument("--keep-float", metavar="LIST",
                        help="rows with that many most-sensitive layer groups kept float (python -m calib --keep-float), "
                             "comma-separated, first method (default: none)")
    parser.add_argument("--target-sqnr", type=float, metavar="DB",
                        help="a row with the fewest sensitive groups float that reach DB (python -m calib "
                             "--target-sqnr), first method (default: none)")
    parser.add_argument("--calib-images", type=int, default=DEFAULT_IMAGES, metavar="N",
                        help=f"INT8 calibration images (default: {DEFAULT_IMAGES})")
    parser.add_argument("--calib", type=Path, default=default_calib_dir(), metavar="DIR",
                        help="image folder for calibration and evaluation (default: the mini COCO val2017 set)")
    parser.add_argument("--workdir", type=Path, metavar="DIR",
                        help="keep the model files here and reuse them on the next run (default: a temporary folder)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from runtime.cli import run_cli

    return run_cli(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
