"""python benchmarks/coco.py — run the pipeline over a COCO tree and print the ten keypoint metrics.

Examples:
  python benchmarks/coco.py                                   # mini val2017 set, synthetic weights
  python benchmarks/coco.py --rendered                        # decode of GT-rendered network outputs
  python benchmarks/coco.py --coco-root /data/coco/val2017 --ann /data/coco/annotations/person_keypoints_val2017.json --checkpoint w32_512
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime.errors import UserError

REPO = Path(__file__).resolve().parents[1]
MINI_SET = REPO.parent / "shared" / "data" / "coco_val2017_mini"
METRICS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
# mmpose's names for the same ten numbers (used in golden/decode_mini.json).
MMPOSE_NAMES = ("AP", "AP .5", "AP .75", "AP (M)", "AP (L)", "AR", "AR .5", "AR .75", "AR (M)", "AR (L)")


@dataclass(frozen=True)
class CocoImage:
    id: int
    path: Path
    width: int
    height: int


@dataclass(frozen=True)
class CocoSet:
    """A COCO keypoints annotation file and the folder of its images."""

    ann: Path
    images: list[CocoImage]

    @classmethod
    def open(cls, root: Path | None = None, ann: Path | None = None) -> CocoSet:
        root = Path(root) if root else MINI_SET / "images"
        if ann is None:
            ann = MINI_SET / "person_keypoints.json" if root == MINI_SET / "images" else None
        if ann is None or not Path(ann).is_file():
            raise UserError(f"{ann or root}: annotation file not found; pass --ann person_keypoints_val2017.json")
        if not root.is_dir():
            raise UserError(f"{root}: image folder not found; pass --coco-root DIR (the val2017 images)")
        data = json.loads(Path(ann).read_text())
        images = [CocoImage(int(im["id"]), root / im["file_name"], int(im["width"]), int(im["height"]))
                  for im in sorted(data["images"], key=lambda im: im["file_name"])]
        return cls(Path(ann), images)

    def annotations(self) -> dict[int, list[dict]]:
        """Annotations of each image id, in file order."""
        data = json.loads(self.ann.read_text())
        by_image: dict[int, list[dict]] = {im.id: [] for im in self.images}
        for ann in data["annotations"]:
            by_image.setdefault(int(ann["image_id"]), []).append(ann)
        return by_image


def evaluate(ann: Path, results: list[dict], image_ids: list[int] | None = None) -> dict[str, float]:
    """COCO keypoint evaluation (SPEC §10): OKS 0.50:0.95, maxDets 20, all/medium/large areas."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(ann))
        if not results:
            return {name: 0.0 for name in METRICS}
        detections = truth.loadRes(results)
        evaluator = COCOeval(truth, detections, "keypoints")
        if image_ids is not None:
            evaluator.params.imgIds = image_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(METRICS, evaluator.stats)}


def rendered_outputs(image: CocoImage, annotations: list[dict], input_size: int = 512) -> list[np.ndarray]:
    """Raw network outputs ``[y0, y1]`` rendered from the ground truth (golden/render_outputs.py), each of
    batch 2 (the image, then its flipped copy): what ``export.graphs.DecodeOnly`` takes."""
    from benchmarks.render_outputs import render_raw_outputs

    maps = render_raw_outputs(image.width, image.height, annotations, input_size)
    return [np.concatenate([maps["y0"], maps["y0_flip"]]), np.concatenate([maps["y1"], maps["y1_flip"]])]


def rendered_decode(image: CocoImage, annotations: list[dict], input_size: int = 512, decode=None) -> dict:
    """``{"candidates", "heatmap", "tags", "tiles"}`` of network outputs rendered from the ground truth.

    ``decode``: raw outputs ``[y0, y1]`` → those outputs; by default the torch ``DecodeOnly`` (the
    reference's ``Decode``), or e.g. ``export.decode_onnx.DecodeOnlySession(path).run``.
    """
    raw = rendered_outputs(image, annotations, input_size)
    if decode is not None:
        return decode(raw)
    from export.decode_onnx import torch_outputs
    from runtime.metadata import DecodeConfig

    return torch_outputs(DecodeConfig(), raw)


def rendered_people(image: CocoImage, annotations: list[dict], input_size: int = 512, decode=None,
                    refine: bool = True):
    """People decoded from network outputs rendered from the ground truth (``decode`` as in
    ``rendered_decode``; ``refine=False``: without refine)."""
    from runtime.grouping import decode_people
    from runtime.metadata import DecodeConfig
    from runtime.preprocess import scale_geometry
    from runtime.results import people_in_image

    config = DecodeConfig()
    outputs = rendered_decode(image, annotations, input_size, decode)
    persons, scores = decode_people(outputs["candidates"][0], outputs["heatmap"][0], outputs["tags"][0],
                                    outputs["tiles"][0], config.detection_threshold, config.tag_threshold,
                                    with_refine=refine)
    return people_in_image(persons, scores, scale_geometry(image.width, image.height, input_size))


def print_metrics(metrics: dict[str, float]) -> None:
    print(" | ".join(f"{name:>5}" for name in METRICS))
    print(" | ".join(f"{metrics[name]:5.3f}" for name in METRICS))


def add_dataset_and_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every COCO benchmark shares: which tree, and which PyTorch reference model."""
    parser.add_argument("--coco-root", type=Path, help="folder of val2017 images (default: the mini set)")
    parser.add_argument("--ann", type=Path, help="person_keypoints json (default: the mini set's)")
    parser.add_argument("--arch", choices=("w32", "w48"), default="w32", help="(default: w32)")
    parser.add_argument("--input-size", type=int, choices=(512, 640), default=512, help="(default: 512)")
    parser.add_argument("--checkpoint",
                        help="PATH, zoo name or synthetic:SEED (default: the released checkpoint of --arch and --input-size when it is cached or downloads, else synthetic:0 with a note; synthetic:SEED is deterministic random weights, NOT a trained model)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python benchmarks/coco.py", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataset_and_model_arguments(parser)
    from runtime.cli import parse_scales

    parser.add_argument("--scales", type=parse_scales, default=(1.0,),
                        help="test scales, each from 0.25 to 4, e.g. 2,1,0.5 (default: 1)")
    parser.add_argument("--rendered", action="store_true",
                        help="decode network outputs rendered from the ground truth instead of running the network")
    parser.add_argument("--limit", type=int, help="only the first N images")
    parser.add_argument("--out", type=Path, help="also write the COCO results json here")
    return parser


def run(args: argparse.Namespace) -> int:
    from runtime.progress import progress
    from runtime.results import coco_results, write_json

    coco = CocoSet.open(args.coco_root, args.ann)
    images = coco.images[: args.limit] if args.limit else coco.images
    if args.out:
        from runtime.files import check_output_file

        check_output_file(args.out, "--out")
    if args.rendered:
        annotations = coco.annotations()
        people_of = lambda im: rendered_people(im, annotations.get(im.id, []), args.input_size)
    else:
        from runtime.backends import open_torch
        from runtime.cli import check_scales
        from runtime.pipeline import PoseEstimator

        from export.zoo import cli_checkpoint

        scales = check_scales(args.scales)
        args.checkpoint = cli_checkpoint(args.checkpoint, args.arch, args.input_size)
        estimator = PoseEstimator(open_torch(args.arch, args.checkpoint, args.input_size, scales))
        people_of = lambda im: estimator.estimate_file(im.path)
    results: list[dict] = []
    for image in progress(images, len(images), "rendered decode" if args.rendered else "images"):
        results.extend(coco_results(image.id, people_of(image)))
    if args.out:
        write_json(args.out, results)
    metrics = evaluate(coco.ann, results, [im.id for im in images])
    print(f"{len(images)} images, {len(results)} people" + (" (GT-rendered network outputs)" if args.rendered else ""))
    print_metrics(metrics)
    return 0


def main(argv: list[str] | None = None) -> int:
    from runtime.cli import run_cli

    return run_cli(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
