"""python -m calib — INT8 Q/DQ model from an FP32 export, calibrated on real images.

Examples:
  python -m calib --onnx w32.onnx -o w32.int8.onnx                  # 32 mini-COCO images, percentile
  python -m calib --onnx w32.onnx --target-sqnr 34 --calib photos/ --images 64 -o w32.int8.onnx  # keep layers float
  python -m calib --onnx w32.onnx --target tensorrt -o w32.trt-int8.onnx  # Q/DQ placed for export.trt

What is written
---------------
The same DecodeGraph with explicit QuantizeLinear/DequantizeLinear nodes (int8 weights per channel,
bias float), placed for ``--target``: ``onnxruntime`` on the inputs and outputs of the network's
convolutions, Adds, ReLUs and upsampling Resizes, uint8 activations, the ReLUs folded into the
quantizers before them, so that ONNX Runtime's CPU provider runs the convolutions and Adds as integer
operators back to back; ``tensorrt`` (symmetric int8 activations) on the inputs of the convolutions and
Adds only, as NVIDIA's TensorRT guide recommends (calib/placement.py). The decode and the two final
head layers stay float32 (see calib/quantize.py for why and how). Inputs and outputs do not change
(uint8 in, float32 out); ``ModelMetadata.precision`` says ``int8`` and ``calib.*`` metadata keys
record the method, the images (``calib.image_names``: the file names, so that an evaluation can leave
them out), the source file and the target. Either file runs in ONNX Runtime (CPU or CUDA) and in a
strongly typed TensorRT build.

Layers kept float by measurement
--------------------------------
``--keep-float N`` and ``--target-sqnr DB`` add a sensitivity pass (calib/sensitivity.py): each of the
network's layer groups (stem, layer1, transitions, the branches and the fuse layers of every
high-resolution module, the head) is quantized alone and ranked by the output SQNR against FP32 on the
first ``--sensitivity-images`` calibration images; the most sensitive groups then stay float32 (weights
and activations), N of them, or the fewest that reach DB. ``calib.keep_float`` records the groups, the
SQNR they reached and the images measured. Measurements are cached beside the statistics.

Calibration statistics are cached (``--cache-dir``, default ``~/.cache/hrnet-deploy/calib``, or
``$HRNET_DEPLOY_CACHE/calib``), keyed by the model's sha256, the method, the images, the Q/DQ
placement and the ONNX Runtime version, so a rerun only quantizes. The result is checked against the
FP32 file in ONNX Runtime on one image (per-output SQNR, candidate agreement) before it is renamed
into place, and the integer operators ONNX Runtime's CPU optimizer forms from it are counted.

Exit codes: 0 written and checked, 1 check failed (nothing written), 2 user error.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from runtime.errors import UserError, require
from runtime.files import check_output_file, publish

# Lowest per-output SQNR (INT8 file vs the FP32 file, ONNX Runtime) before the file is refused. One
# symmetric 8-bit rounding of a well-calibrated activation has an SQNR of ~35-40 dB; ~740 quantized
# tensors in series add their noise, and post-training INT8 of a CNN usually ends at 20-35 dB
# (measured here with synthetic:0 weights and 8 or more percentile calibration images: 30-31 dB on
# heatmap and tags with symmetric int8 activations, 33-34 dB with the onnxruntime placement's uint8
# zero-based ReLU ranges; with Q/DQ on inputs only, quantizing the two final layers cost another
# 0.1-0.2 dB). 15 dB
# (noise RMS 18% of the signal's) is far below that: a broken calibration (statistics of another
# model or of garbage images, a wrong per-channel axis, saturating ranges), not quantization noise.
INT8_SQNR_FLOOR_DB = 15.0
DEFAULT_VERIFY_IMAGE = "000000000785.jpg"


def _samples_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "runtime" / "samples"


def build_parser() -> argparse.ArgumentParser:
    from calib.dataset import DEFAULT_IMAGES, default_calib_dir
    from calib.placement import DEFAULT_TARGET, TARGETS
    from calib.quantize import DEFAULT_METHOD, METHODS, default_cache_dir
    from calib.sensitivity import DEFAULT_IMAGES as SENSITIVITY_IMAGES

    parser = argparse.ArgumentParser(
        prog="python -m calib",
        description="Quantize an FP32 hrnet-deploy ONNX export to INT8 with explicit Q/DQ nodes (ONNX Runtime "
                    "static quantization), calibrated on real images with the runtime's preprocessing; the decode "
                    "and the final head layers stay float32.",
        epilog=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", type=Path, required=True, metavar="FILE",
                        help="the FP32 export to quantize (from python -m export.onnx, without --simplify) (required)")
    parser.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD,
                        help=f"calibration: percentile (99.999%% of |x|), entropy (KL threshold, slow) or minmax "
                             f"(default: {DEFAULT_METHOD})")
    parser.add_argument("--target", choices=TARGETS, default=DEFAULT_TARGET,
                        help=f"Q/DQ placement: onnxruntime (integer CPU kernels) or tensorrt (NVIDIA's guide, for "
                             f"export.trt) (default: {DEFAULT_TARGET})")
    parser.add_argument("--calib", type=Path, default=default_calib_dir(), metavar="DIR",
                        help="folder of calibration images (JPEG/PNG) (default: the mini COCO val2017 set, "
                             "../shared/data/coco_val2017_mini/images)")
    parser.add_argument("--images", type=int, default=DEFAULT_IMAGES, metavar="N",
                        help=f"how many images of --calib, spread evenly over its sorted files (default: {DEFAULT_IMAGES})")
    parser.add_argument("--keep-float", type=int, metavar="N",
                        help="keep the N layer groups whose quantization costs the most output SQNR in float32 "
                             "(measured by a sensitivity pass, calib/sensitivity.py); with --target-sqnr: keep at most N "
                             "(default: none kept)")
    parser.add_argument("--target-sqnr", type=float, metavar="DB",
                        help="keep the fewest most-sensitive layer groups in float32 that bring the heatmap and tags "
                             "SQNR against FP32 (on the sensitivity images) to DB or above (default: no sensitivity "
                             "pass, every group quantized)")
    parser.add_argument("--sensitivity-images", type=int, default=SENSITIVITY_IMAGES, metavar="N",
                        help=f"how many of the calibration images the sensitivity pass measures on (default: "
                             f"{SENSITIVITY_IMAGES})")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir(), metavar="DIR",
                        help="where calibration statistics are cached (default: ~/.cache/hrnet-deploy/calib or "
                             "$HRNET_DEPLOY_CACHE/calib)")
    parser.add_argument("--verify-image", type=Path, default=_samples_dir() / DEFAULT_VERIFY_IMAGE, metavar="IMAGE",
                        help=f"image for the INT8 vs FP32 check (default: the bundled {DEFAULT_VERIFY_IMAGE})")
    parser.add_argument("--skip-verify", action="store_true", help="write without the INT8 vs FP32 check (default: check)")
    parser.add_argument("-o", "--output", type=Path, metavar="FILE",
                        help="the .onnx file to write (default: STEM.int8.onnx in the current folder, e.g. w32.int8.onnx)")
    return parser


def _stage(text: str) -> None:
    print(text, flush=True)


def run(args: argparse.Namespace) -> int:
    require("onnx", "export")
    require("onnxruntime", "export")
    from calib import quantize as q
    from calib.dataset import image_list_digest, list_images
    from calib.placement import PLACEMENTS
    from export.onnx import set_metadata, write_model
    from export.verify import compare_precision, prepared_feed
    from runtime.progress import progress

    target = args.output or Path(f"{args.onnx.stem}.int8.onnx")
    if target.suffix != ".onnx":
        raise UserError(f"-o {target}: the output file must end in .onnx")
    if target.is_dir():
        raise UserError(f"-o {target}: is a directory; give a file name such as {target / 'w32.int8.onnx'}")
    if target.exists() and args.onnx.exists() and target.resolve() == args.onnx.resolve():
        raise UserError(f"-o {target}: would overwrite the FP32 model it is made from; choose another name")
    if not args.skip_verify and not args.verify_image.is_file():
        raise UserError(f"--verify-image {args.verify_image}: no such image file")
    check_output_file(target, "-o", need_bytes=args.onnx.stat().st_size // 3 if args.onnx.is_file() else 0)
    paths = list_images(args.calib, args.images)

    _stage(f"[1/4] reading {args.onnx}")
    source = q.open_source(args.onnx)
    meta = source.metadata
    placement = PLACEMENTS[args.target]
    steps = q.plan(source.model, placement=placement)
    _stage(f"      HigherHRNet-{meta.arch.upper()} input {meta.input_size}, scales {list(meta.decode.scales)}, "
           f"weights {meta.checkpoint}; placement for {placement.target}: {len(steps.quantize)} network nodes to "
           f"quantize ({', '.join(placement.op_types)}), {len(steps.final_layers)} final layers and the decode "
           f"kept float32")

    images_sha = image_list_digest(paths)
    key = q.cache_key(source.sha256, images_sha, steps.activations, placement)
    cache = q.cache_file(args.cache_dir, meta, key)
    _stage(f"[2/4] calibration statistics: {len(paths)} images from {args.calib} (each at its own input size), "
           f"{len(steps.activations)} activations, histograms streamed piece by piece")
    start = time.perf_counter()
    hit = cache.is_file()
    if not hit:
        check_output_file(cache, "--cache-dir")
        q.calibrate(source, steps, progress(paths, len(paths), "      calibration images"), cache)
    _stage(f"      {'cache hit' if hit else 'statistics written to'} {cache} ({time.perf_counter() - start:.1f} s)")

    activations = "uint8 activations, ReLUs folded" if steps.placement.zero_based_relu else "symmetric int8 activations"
    _stage(f"[3/4] quantizing: {args.method} ranges (ONNX Runtime quantize_static, QDQ, {activations}, "
           f"per-channel int8 weights)")
    start = time.perf_counter()
    model = q.quantize(source, steps, args.method, cache)
    _stage(f"      ({time.perf_counter() - start:.1f} s)")
    kept_groups, kept_nodes = None, []
    if args.keep_float is not None or args.target_sqnr is not None:
        model, kept_groups, kept_nodes = _keep_sensitive_float(args, source, steps, model, paths, cache)
    else:
        q.fold_relus(model)
    violations = q.float_region_violations(model, set(steps.quantize) - set(kept_nodes))
    if violations:  # keep_float_region guarantees none; a failure here is a bug, not a user error
        raise AssertionError(f"float nodes still read DequantizeLinear outputs: {violations[:3]}")
    set_metadata(model, q.int8_props(source, args.method, paths, images_sha, key, placement, kept_groups))
    counts = ", ".join(f"{count} {name}" for name, count in q.qdq_summary(model).items())
    _stage(f"      {counts}")
    temporary = write_model(model, target)
    try:
        if args.skip_verify:
            import onnx

            onnx.checker.check_model(str(temporary))
            _stage("[4/4] onnx.checker passed; INT8 vs FP32 check skipped (--skip-verify)")
        else:
            import onnx

            from calib.ort_cpu import optimized_op_counts
            from runtime.backends.onnx_backend import OnnxBackend

            onnx.checker.check_model(str(temporary))
            feed = prepared_feed(meta, args.verify_image)
            with OnnxBackend(source.path) as fp32:  # one session at a time: each holds a full run's activations
                reference = fp32.run(feed)
            with OnnxBackend(temporary) as int8:
                outputs = int8.run(feed)
            comparison = compare_precision(reference, outputs)
            _stage(f"[4/4] onnx.checker passed; INT8 vs FP32 in ONNX Runtime (CPU) on {args.verify_image.name}, "
                   f"SQNR floor {INT8_SQNR_FLOOR_DB:g} dB:")
            for line in comparison.lines():
                _stage(line)
            ops = optimized_op_counts(temporary)
            _stage(f"      ONNX Runtime's optimized CPU graph: {ops['QLinearConv']} QLinearConv, {ops['QLinearAdd']} "
                   f"QLinearAdd, {ops['Conv']} float Conv, {ops['ConvTranspose']} float ConvTranspose")
            if not comparison.ok(INT8_SQNR_FLOOR_DB):
                print(f"error: the INT8 model's SQNR is below {INT8_SQNR_FLOOR_DB:g} dB against FP32 (broken "
                      f"calibration?); {target} was not written", file=sys.stderr)
                return 1
        publish(temporary, target)
    finally:
        if temporary.exists():
            temporary.unlink()
    _stage(f"wrote {target} ({target.stat().st_size / 1024**2:.1f} MiB, precision int8)")
    return 0


def _keep_sensitive_float(args: argparse.Namespace, source, steps, model, paths: list[Path], cache: Path):
    """The sensitivity pass: rank the layer groups, keep the chosen ones float; returns the model, what
    was kept (for the metadata) and the kept nodes."""
    from calib.dataset import image_feed, image_list_digest
    from calib.sensitivity import SensitivityPass, choose, sensitivity_file
    from runtime.progress import progress

    if args.sensitivity_images < 1:
        raise UserError(f"--sensitivity-images {args.sensitivity_images}: give at least 1")
    if args.target_sqnr is not None and not math.isfinite(args.target_sqnr):
        raise UserError(f"--target-sqnr {args.target_sqnr}: give a finite number of dB, e.g. 35")
    images = paths[:args.sensitivity_images]
    start = time.perf_counter()
    probe = SensitivityPass(source, model, steps.quantize, [image_feed(p, source.metadata) for p in images],
                            sensitivity_file(cache, args.method, image_list_digest(images)))
    _stage(f"      sensitivity pass: {len(probe.groups)} layer groups, each quantized alone, output SQNR against FP32 "
           f"on {len(images)} calibration image(s) (cached in {probe.cache})")
    sensitivity = probe.solo(lambda groups: progress(groups, len(groups), "      layer groups", unit="group"))
    ranking = sensitivity.ranking()
    shown = ", ".join(f"{g} {sensitivity.solo_db[g]:.1f}" for g in ranking[:6])
    _stage(f"      most sensitive first (dB when quantized alone): {shown}, ...")
    count = choose(sensitivity, probe.measure_kept, args.keep_float, args.target_sqnr)
    measured = ", ".join(f"{k}: {db:.1f} dB" for k, db in sorted(probe.result().kept_db.items()))
    _stage(f"      SQNR with the k most sensitive groups float, k: {measured}")
    kept_nodes = probe.kept_nodes(count)
    model = probe.variant(set(steps.quantize) - set(kept_nodes))
    kept = {"groups": ranking[:count], "sqnr_db": round(probe.measure_kept(count), 2),
            "target_sqnr_db": args.target_sqnr, "images": [p.name for p in images]}
    _stage(f"      keeping {count} layer group(s) float32: {', '.join(ranking[:count]) or 'none'} "
           f"({kept['sqnr_db']:.1f} dB; {time.perf_counter() - start:.0f} s)")
    return model, kept, kept_nodes


def main(argv: list[str] | None = None) -> int:
    from runtime.cli import run_cli

    return run_cli(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
