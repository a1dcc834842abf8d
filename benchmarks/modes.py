"""python benchmarks/modes.py — the speed/accuracy modes in one table: flip x refine x precision x input size.

Every row is measured in the same run on the first --images images of the mini COCO set (HigherHRNet-W32):

* AP, GT-rendered: COCO AP of network outputs rendered from the ground truth (benchmarks/render_outputs.py,
  both passes, so flip on/off is measurable) through the decode of that mode; it does not depend on the
  network, so it is the same for every precision;
* identical / mean OKS: agreement with the full mode (FP32, flip on, refine on, same input size) on
  synthetic:0 weights (share of images with identical people; mean OKS of people matched greedily,
  unmatched ones counting 0; see benchmarks/precision.py);
* AP, --checkpoint: COCO AP with real weights, when --checkpoint names a real checkpoint;
* graph ms: ONNX Runtime (CPU) per image, batch 1, synthetic weights; post ms: grouping + adjust
  (+ refine) per image on the GT-rendered maps (realistic crowds).

Model files go to OUT/models/ (export.onnx --skip-verify, reused; INT8 from python -m calib unless --int8
gives one), finished measurements to OUT/modes.json: a rerun skips them. Output: OUT/modes.md and
OUT/modes.png (AP vs ms), written atomically.

Examples:
  python benchmarks/modes.py                                    # 8 images, 512 and 640, FP32/FP16/INT8
  python benchmarks/modes.py --sizes 512 --int8 w32.int8.onnx   # INT8 from a file built before
  python benchmarks/modes.py --checkpoint w32_512 --images 40 --out out/modes-w32
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime.errors import UserError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PRECISIONS = ("fp32", "fp16", "int8")
SYNTHETIC = "synthetic:0"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def file_tag(weights: str) -> str:
    return "synthetic0" if weights == SYNTHETIC else Path(weights).stem.replace(":", "_")


def model_file(args: argparse.Namespace, weights: str, size: int, flip: bool, precision: str) -> Path | None:
    """The ONNX file of one mode, exported (or quantized) once into OUT/models/; None for an INT8 file
    that is neither given nor built yet under --no-build-int8."""
    stem = f"w32_{size}_{file_tag(weights)}" + ("" if flip else "_noflip")
    path = args.out / "models" / (f"{stem}.onnx" if precision == "fp32" else f"{stem}.{precision}.onnx")
    if precision == "int8" and weights == SYNTHETIC:
        given = given_int8(args.int8, size, flip)
        if given:
            return given
    if path.exists():
        return path
    if precision == "int8" and args.no_build_int8:
        say(f"{path.name}: not given (--int8) nor built; its rows are marked not measured (--no-build-int8)")
        return None
    if precision == "int8":
        source = model_file(args, weights, size, flip, "fp32")
        command = ["-m", "calib", "--onnx", str(source), "--images", str(args.calib_images), "--skip-verify",
                   "-o", str(path)]
    else:
        command = ["-m", "export.onnx", "--arch", "w32", "--input-size", str(size), "--checkpoint", weights,
                   "--precision", precision, "--skip-verify", "-o", str(path)] + ([] if flip else ["--no-flip"])
    say(f"building {path.name}: python {' '.join(command)}")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *command], cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        raise UserError(f"{path.name}: python {' '.join(command)} failed: {done.stderr.strip()[-500:]}")
    say(f"built {path.name} ({time.perf_counter() - started:.0f} s)")
    return path


def given_int8(files: list[Path], size: int, flip: bool) -> Path | None:
    """The --int8 file whose metadata holds this input size and flip setting, if one is given."""
    from runtime.backends import open_backend

    for path in files:
        with open_backend(path) as backend:
            meta = backend.metadata
        if meta.precision != "int8" or not meta.checkpoint.startswith("synthetic:0"):
            raise UserError(f"--int8 {path}: not an INT8 file of synthetic:0 weights ({meta.precision}, "
                            f"{meta.checkpoint}); build one with python -m calib --onnx W32.onnx")
        if meta.input_size == size and meta.decode.flip == flip:
            return path
    return None


def rendered_part(images, annotations, size: int) -> dict:
    """Per (flip, refine): COCO results and post-processing seconds of the GT-rendered maps."""
    from benchmarks.coco import rendered_outputs
    from export.decode_onnx import torch_outputs
    from runtime.grouping import decode_people
    from runtime.metadata import DecodeConfig
    from runtime.preprocess import scale_geometry
    from runtime.progress import progress
    from runtime.results import coco_results, people_in_image

    part = {mode_key(flip, refine): {"results": [], "post_s": 0.0} for flip in (True, False) for refine in (True, False)}
    say("compiling the grouping kernels (numba; cached after the first run)")
    one_person = np.zeros((17, 30, 5), np.float32)
    one_person[0, 0] = (1.0, 1.0, 0.5, 0.0, 0.0)
    decode_people(one_person, np.full((17, 8, 8), 0.2, np.float32), np.zeros((17, 8, 8, 2), np.float32),
                  np.array([[[[0.2, 0.0, 0.0, 0.0, 0.0]]]] * 17, np.float32))
    for image in progress(images, len(images), f"GT-rendered maps, input {size}"):
        raw = rendered_outputs(image, annotations.get(image.id, []), size)
        geometry = scale_geometry(image.width, image.height, size)
        for flip in (True, False):
            out = torch_outputs(DecodeConfig(flip=flip), raw if flip else [maps[:1] for maps in raw])
            for refine in (True, False):
                began = time.perf_counter()
                persons, scores = decode_people(out["candidates"][0], out["heatmap"][0], out["tags"][0],
                                                out["tiles"][0], with_refine=refine)
                part[mode_key(flip, refine)]["post_s"] += time.perf_counter() - began
                people = people_in_image(persons, scores, geometry)
                part[mode_key(flip, refine)]["results"].extend(coco_results(image.id, people))
    return part


def network_part(path: Path, images) -> dict:
    """Per refine setting: each image's people (x, y, score per joint, person scores) and COCO results,
    and the graph seconds, of one model file in ONNX Runtime (CPU)."""
    from runtime.backends import open_backend
    from runtime.grouping import decode_people
    from runtime.pipeline import PoseEstimator
    from runtime.preprocess import read_image
    from runtime.progress import progress
    from runtime.results import coco_results, people_in_image

    part = {"graph_s": 0.0, **{refine_key(r): {"people": {}, "results": []} for r in (True, False)}}
    with open_backend(path) as backend:
        estimator = PoseEstimator(backend)
        estimator.run_graph(estimator.prepare(read_image(images[0].path)))  # warm-up, untimed
        for image in progress(images, len(images), path.name):
            prepared = estimator.prepare(read_image(image.path))
            began = time.perf_counter()
            out = estimator.run_graph(prepared)
            part["graph_s"] += time.perf_counter() - began
            for refine in (True, False):
                persons, scores = decode_people(out["candidates"][0], out["heatmap"][0], out["tags"][0],
                                                out["tiles"][0], with_refine=refine)
                people = people_in_image(persons, scores, prepared.base_geometry)
                entry = part[refine_key(refine)]
                entry["people"][str(image.id)] = [[p.keypoints.tolist(), float(p.score)] for p in people]
                entry["results"].extend(coco_results(image.id, people))
    return part


def mode_key(flip: bool, refine: bool) -> str:
    return f"flip={'on' if flip else 'off'},{refine_key(refine)}"


def refine_key(refine: bool) -> str:
    return f"refine={'on' if refine else 'off'}"


def agreement(full: dict, other: dict) -> tuple[float, float]:
    """Share of images with identical people, and mean OKS, of ``other`` against ``full``."""
    from benchmarks.precision import identical, match_people, mean_oks

    def arrays(people):
        return (np.array([k for k, _ in people], np.float64).reshape(-1, 17, 3),
                np.array([s for _, s in people], np.float64))

    same, oks = 0, []
    for image_id, people in full.items():
        a, b = arrays(people), arrays(other[image_id])
        same += identical(a, b)
        oks.append(mean_oks(a[0], b[0], match_people(a[0], b[0])))
    return same / len(full), float(np.mean(oks))


class State:
    """Finished measurements in OUT/modes.json, keyed by what decides them; written after each one."""

    def __init__(self, path: Path, settings: dict) -> None:
        self.path = path
        self.settings = settings
        self.parts: dict = {}
        if path.exists():
            try:
                saved = json.loads(path.read_text())
            except ValueError:
                saved = {}
            if saved.get("settings") == settings:
                self.parts = saved.get("parts", {})

    def get(self, key: str, compute):
        if key not in self.parts:
            self.parts[key] = compute()
            from runtime.results import write_json

            write_json(self.path, {"settings": self.settings, "parts": self.parts})
        else:
            say(f"{key}: finished in an earlier run, reused")
        return self.parts[key]


def measure(args: argparse.Namespace) -> list[dict]:
    from benchmarks.coco import CocoSet, evaluate
    from runtime.files import file_sha256

    coco = CocoSet.open()
    images = coco.images[: args.images]
    ids = [im.id for im in images]
    annotations = coco.annotations()
    real = args.checkpoint if args.checkpoint and not args.checkpoint.startswith("synthetic:") else None
    state = State(args.out / "modes.json", {"images": ids, "calib_images": args.calib_images})
    rows = []
    for size in args.sizes:
        rendered = state.get(f"rendered|{size}", lambda: rendered_part(images, annotations, size))
        nets = {}
        for weights in [SYNTHETIC] + ([real] if real else []):
            for flip in (True, False):
                for precision in args.precisions:
                    if weights != SYNTHETIC and precision != "fp32" and not args.all_real:
                        continue
                    path = model_file(args, weights, size, flip, precision)
                    if path is None:
                        nets[weights, flip, precision] = None
                        continue
                    key = f"net|{size}|{file_sha256(path)[:16]}"
                    nets[weights, flip, precision] = state.get(key, lambda: network_part(path, images))
        full = nets[SYNTHETIC, True, "fp32"][refine_key(True)]["people"]
        for flip in (True, False):
            for refine in (True, False):
                mode = rendered[mode_key(flip, refine)]
                ap_rendered = evaluate(coco.ann, mode["results"], ids)["AP"]
                for precision in args.precisions:
                    net = nets[SYNTHETIC, flip, precision]
                    same, oks = agreement(full, net[refine_key(refine)]["people"]) if net else (None, None)
                    real_net = nets.get((real, flip, precision))
                    ap_real = evaluate(coco.ann, real_net[refine_key(refine)]["results"], ids)["AP"] if real_net else None
                    rows.append({"input": size, "flip": flip, "refine": refine, "precision": precision,
                                 "ap_rendered": ap_rendered, "identical": same, "mean_oks": oks, "ap_checkpoint": ap_real,
                                 "graph_ms": 1e3 * net["graph_s"] / len(images) if net else None,
                                 "post_ms": 1e3 * mode["post_s"] / len(images)})
    return rows


def markdown(rows: list[dict], args: argparse.Namespace) -> str:
    real = args.checkpoint if args.checkpoint and not args.checkpoint.startswith("synthetic:") else None
    lines = [f"HigherHRNet-W32, first {args.images} mini COCO images, ONNX Runtime CPU; identical / OKS against "
             f"FP32 + flip + refine at the same input size (synthetic:0 weights)", "",
             f"| input | flip | refine | precision | AP GT-rendered | identical | mean OKS | AP {real or '(no --checkpoint)'} "
             f"| graph ms | post ms | total ms |",
             "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ap_real = "not measured" if r["ap_checkpoint"] is None else f"{r['ap_checkpoint']:.3f}"
        if r["graph_ms"] is None:
            measured = "not measured | not measured"
            timing = f"not measured | {r['post_ms']:.1f} | not measured"
        else:
            measured = f"{100 * r['identical']:.0f}% | {r['mean_oks']:.3f}"
            timing = f"{r['graph_ms']:.0f} | {r['post_ms']:.1f} | {r['graph_ms'] + r['post_ms']:.0f}"
        lines.append(f"| {r['input']} | {'on' if r['flip'] else 'off'} | {'on' if r['refine'] else 'off'} | "
                     f"{r['precision'].upper()} | {r['ap_rendered']:.3f} | {measured} | {ap_real} | {timing} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    """AP (checkpoint's when measured, else GT-rendered) against total ms per image, one point per row."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from runtime.files import write_atomic

    figure, axes = plt.subplots(figsize=(8, 5))
    markers = {"fp32": "o", "fp16": "s", "int8": "^"}
    colours = {(True, True): "tab:blue", (True, False): "tab:cyan", (False, True): "tab:red", (False, False): "tab:orange"}
    for r in rows:
        if r["graph_ms"] is None:
            continue
        ap = r["ap_checkpoint"] if r["ap_checkpoint"] is not None else r["ap_rendered"]
        axes.scatter(r["graph_ms"] + r["post_ms"], ap, marker=markers[r["precision"]],
                     color=colours[r["flip"], r["refine"]], s=30 if r["input"] == 512 else 70, alpha=0.8)
    for (flip, refine), colour in colours.items():
        axes.scatter([], [], color=colour, label=f"flip {'on' if flip else 'off'}, refine {'on' if refine else 'off'}")
    for precision, marker in markers.items():
        axes.scatter([], [], color="grey", marker=marker, label=precision.upper())
    axes.set_xlabel("ms per image (graph + post-processing, this CPU); small marks 512, large 640")
    axes.set_ylabel("AP (GT-rendered)" if all(r["ap_checkpoint"] is None for r in rows) else "AP (checkpoint)")
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    write_atomic(path, buffer.getvalue())


def parse_list(choices, kind=str):
    def parse(text: str):
        values = tuple(kind(part) for part in text.split(",") if part.strip())
        bad = [v for v in values if v not in choices]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {','.join(map(str, choices))}")
        return values
    return parse


def build_parser() -> argparse.ArgumentParser:
    from runtime.cli import examples

    parser = argparse.ArgumentParser(prog="python benchmarks/modes.py", description=__doc__.split("\n\n")[0].split(" — ")[1],
                                     epilog=examples(__doc__, "Weights, pictures and modes"),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8, help="first N mini COCO images (default: 8)")
    parser.add_argument("--sizes", type=parse_list((512, 640), int), default=(512, 640),
                        help="input sizes, comma-separated (default: 512,640)")
    parser.add_argument("--precisions", type=parse_list(PRECISIONS), default=PRECISIONS,
                        help="comma-separated (default: fp32,fp16,int8)")
    parser.add_argument("--int8", type=Path, action="append", default=[], metavar="FILE",
                        help="an INT8 file of synthetic:0 weights (python -m calib) for the rows of its input size "
                             "and flip setting; repeatable (default: built with calib --images --calib-images)")
    parser.add_argument("--no-build-int8", action="store_true",
                        help="mark INT8 rows without a given or already built file not measured instead of "
                             "building them (calib takes minutes each) (default: build)")
    parser.add_argument("--calib-images", type=int, default=8, help="calibration images of a built INT8 file (default: 8)")
    parser.add_argument("--checkpoint", help="real weights (.pth or zoo name) for the AP column (default: none)")
    parser.add_argument("--all-real", action="store_true",
                        help="with --checkpoint: FP16/INT8 files of it too (default: FP32 only)")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "modes", help="(default: out/modes)")
    return parser


def run(args: argparse.Namespace) -> int:
    from runtime.files import check_output_dir, write_atomic

    if args.images < 1 or args.calib_images < 1:
        raise UserError("--images and --calib-images: give at least 1")
    if "fp32" not in args.precisions:
        raise UserError("--precisions: include fp32 (the full mode every row is compared with)")
    for path in args.int8:
        if not path.is_file():
            raise UserError(f"--int8 {path}: no such file; build one with python -m calib --onnx W32.onnx")
    check_output_dir(args.out, "--out")
    if args.checkpoint:
        from export.zoo import cli_checkpoint

        args.checkpoint = cli_checkpoint(args.checkpoint, "w32", args.sizes[0])
    started = time.perf_counter()
    rows = measure(args)
    table = markdown(rows, args)
    write_atomic(args.out / "modes.md", table.encode())
    plot(rows, args.out / "modes.png")
    print(table)
    print(f"written: {args.out / 'modes.md'}, {args.out / 'modes.png'} ({time.perf_counter() - started:.0f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    from runtime.cli import run_cli

    return run_cli(build_parser(), run, argv,
                   interrupted="a rerun of the same command resumes: finished measurements are kept in OUT/modes.json")


if __name__ == "__main__":
    sys.exit(main())
