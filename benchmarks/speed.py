"""python benchmarks/speed.py — timings with a stage breakdown, as ratios measured in one run.

End to end (--section e2e), each backend in its own process (so peak RSS is its own), on the same
images: read + warp, graph, grouping + refine, total, images/s, peak RSS, for
  onnx          ONNX Runtime running the exported DecodeGraph + our grouping/refine (numba)
  torch         the PyTorch DecodeGraph + our grouping/refine
  mmpose-style  the same PyTorch graph outputs + the reference's host decode (NumPy + munkres),
                timed in the torch process on the same outputs (its RSS is the torch process's)

Host post-processing (--section host) (grouping + adjust + score + refine, from the same top-k candidates and maps):
ours (numba, runtime.grouping) vs a literal mmpose-style NumPy + munkres implementation
(benchmarks/baseline.py). Two kinds of maps:
  rendered  network outputs rendered from COCO ground truth (realistic scenes; the mini set's
            most crowded images)
  network   HigherHRNet-W32 with synthetic weights on the bundled samples (60-130 mostly
            incomplete people per image: a stress case for refine)

Examples:
  python benchmarks/speed.py
  python benchmarks/speed.py --section e2e --engine w32.onnx --images 6
  python benchmarks/speed.py --section host --images 8 --repeat 5
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def candidate_arrays(candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Our candidate tensor ``[17, k, 5]`` as the reference's top-k output (integer locations, vals, tags)."""
    return candidates[:, :, :2].astype(np.int64), candidates[:, :, 2].copy(), candidates[:, :, 3:5].copy()


def mmpose_style(candidates: np.ndarray, heatmap: np.ndarray, tags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reference's host steps after top-k: match by tag (munkres), adjust, score, refine."""
    from benchmarks import baseline

    persons = baseline.match_by_tag(*candidate_arrays(candidates))
    baseline.adjust(persons, heatmap)
    scores = baseline.person_scores(persons)
    for person in persons:
        baseline.refine(heatmap, tags, person)
    return persons, scores


def ours(candidates: np.ndarray, heatmap: np.ndarray, tags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from runtime.grouping import decode_people

    return decode_people(candidates, heatmap, tags)


def rendered_maps(count: int):
    """Decoded maps of the ``count`` mini-set images with the most annotated people."""
    import torch

    from benchmarks.coco import CocoSet
    from benchmarks.render_outputs import render_raw_outputs
    from export.graphs import Decode
    from runtime.metadata import DecodeConfig
    from runtime.preprocess import scale_geometry

    coco = CocoSet.open()
    annotations = coco.annotations()
    crowded = sorted(coco.images, key=lambda im: -sum(1 for a in annotations.get(im.id, []) if a.get("num_keypoints", 0)))
    decode = Decode(DecodeConfig())
    for image in crowded[:count]:
        maps = render_raw_outputs(image.width, image.height, annotations.get(image.id, []))
        w, h = scale_geometry(image.width, image.height, 512).input_size
        outputs = [(torch.from_numpy(np.concatenate([maps["y0"], maps["y0_flip"]])),
                    torch.from_numpy(np.concatenate([maps["y1"], maps["y1_flip"]])))]
        with torch.inference_mode():
            candidates, heatmap, tags = decode(outputs, h, w)
        yield image.path.name, candidates[0].numpy(), heatmap[0].numpy(), tags[0].numpy()


def network_maps(count: int):
    """Outputs of the synthetic-weights W32 DecodeGraph on the bundled samples."""
    from runtime.backends import open_torch
    from runtime.pipeline import PoseEstimator
    from runtime.preprocess import read_image
    from runtime.run import bundled_samples

    estimator = PoseEstimator(open_torch("w32", "synthetic:0", 512))
    for path in bundled_samples()[:count]:
        outputs = estimator.run_graph(estimator.prepare(read_image(path)))
        yield path.name, outputs["candidates"][0], outputs["heatmap"][0], outputs["tags"][0]


def timed(function, arguments, repeat: int) -> tuple[float, tuple]:
    """Median wall time of ``repeat`` calls (seconds) and the last result."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = function(*arguments)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def host_postprocessing(maps, repeat: int, baseline_repeat: int) -> list[dict]:
    rows = []
    for name, candidates, heatmap, tags in maps:
        ours(candidates, heatmap, tags)  # compile / warm caches outside the timing
        t_ours, (persons, scores) = timed(ours, (candidates, heatmap, tags), repeat)
        t_ref, (ref_persons, ref_scores) = timed(mmpose_style, (candidates, heatmap, tags), baseline_repeat)
        identical = persons.shape == ref_persons.shape and np.allclose(persons, ref_persons, atol=1e-4)
        rows.append({"image": name, "size": f"{heatmap.shape[2]}x{heatmap.shape[1]}", "people": len(persons),
                     "missing": int((ref_persons[:, :, 2] == 0).sum()) if len(ref_persons) else 0,
                     "ours_ms": t_ours * 1e3, "mmpose_ms": t_ref * 1e3, "identical": identical})
    return rows


def print_rows(title: str, rows: list[dict]) -> None:
    print(f"\n### {title}\n")
    print("| image | map | people | ours ms | mmpose-style ms | speed-up | identical people |")
    print("|---|---|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['image']} | {r['size']} | {r['people']} | {r['ours_ms']:.1f} | {r['mmpose_ms']:.1f} | "
              f"{r['mmpose_ms'] / r['ours_ms']:.0f}x | {'yes' if r['identical'] else 'NO'} |")
    total_ours = sum(r["ours_ms"] for r in rows)
    total_ref = sum(r["mmpose_ms"] for r in rows)
    print(f"| **per image** | | | **{total_ours / len(rows):.1f}** | **{total_ref / len(rows):.1f}** | "
          f"**{total_ref / total_ours:.0f}x** | |")


BACKENDS = ("onnx", "torch")


def end_to_end_worker(kind: str, engine: Path | None, count: int) -> list[dict]:
    """Run one backend over the bundled samples: stage seconds per image, images/s, peak RSS.

    The torch worker also times the reference's host decode (NumPy + munkres) on the same graph
    outputs: the mmpose-style row shares the torch network and differs only in post-processing.
    """
    from runtime.backends import open_backend, open_torch
    from runtime.pipeline import PoseEstimator
    from runtime.preprocess import read_image
    from runtime.run import bundled_samples

    backend = open_backend(engine) if kind == "onnx" else open_torch("w32", "synthetic:0", 512)
    estimator = PoseEstimator(backend)
    decoders = {kind: ours} if kind == "onnx" else {"torch": ours, "mmpose-style": mmpose_style}
    paths = bundled_samples()[:count]
    shared = {"read_warp": 0.0, "graph": 0.0}
    post = {name: 0.0 for name in decoders}
    people = {name: 0 for name in decoders}
    for position, path in enumerate([paths[0], *paths]):  # the first pass warms up (numba, allocators)
        start = time.perf_counter()
        prepared = estimator.prepare(read_image(path))
        warped = time.perf_counter()
        outputs = estimator.run_graph(prepared)
        ran = time.perf_counter()
        if position:
            shared["read_warp"] += warped - start
            shared["graph"] += ran - warped
        for name, decode in decoders.items():
            began = time.perf_counter()
            persons, _ = decode(outputs["candidates"][0], outputs["heatmap"][0], outputs["tags"][0])
            if position:
                post[name] += time.perf_counter() - began
                people[name] += len(persons)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = []
    for name in decoders:
        seconds = {stage: value / len(paths) for stage, value in shared.items()}
        seconds["group_refine"] = post[name] / len(paths)
        seconds["total"] = sum(seconds.values())
        rows.append({"backend": name, "images": len(paths), "people": people[name], "seconds": seconds,
                     "images_per_s": 1.0 / seconds["total"], "peak_rss_mb": rss})
    return rows


def ensure_engine(engine: Path | None) -> Path:
    """The ONNX file to time: the one given, or a W32 synthetic export made once under out/bench/."""
    if engine:
        return engine
    path = Path(__file__).resolve().parents[1] / "out" / "bench" / "w32.onnx"
    if not path.exists():
        print(f"exporting {path} (w32, synthetic:0) ...", flush=True)
        subprocess.run([sys.executable, "-m", "export.onnx", "--arch", "w32", "-o", str(path)], check=True,
                       cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL)
    return path


def end_to_end(engine: Path | None, count: int) -> list[dict]:
    engine = ensure_engine(engine)
    rows = []
    for kind in BACKENDS:
        done = subprocess.run([sys.executable, __file__, "--worker", kind, "--engine", str(engine),
                               "--images", str(count)], capture_output=True, text=True, check=True)
        rows.extend(json.loads(done.stdout.strip().splitlines()[-1]))
    return rows


def print_end_to_end(rows: list[dict]) -> None:
    print(f"\n### End to end, HigherHRNet-W32 input 512, synthetic weights, {rows[0]['images']} bundled samples, "
          f"{os.cpu_count()} CPU cores\n")
    print("| backend | read + warp ms | graph ms | grouping + refine ms | total ms | images/s | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        s = r["seconds"]
        print(f"| {r['backend']} | {s['read_warp'] * 1e3:.0f} | {s['graph'] * 1e3:.0f} | {s['group_refine'] * 1e3:.0f} | "
              f"{s['total'] * 1e3:.0f} | {r['images_per_s']:.2f} | {r['peak_rss_mb']:.0f} |")
    by = {r["backend"]: r["seconds"] for r in rows}
    print("\nratios (same run):")
    for stage in ("graph", "group_refine", "total"):
        print(f"  {stage}: torch / onnx = {by['torch'][stage] / by['onnx'][stage]:.2f}x, "
              f"mmpose-style / onnx = {by['mmpose-style'][stage] / by['onnx'][stage]:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/speed.py", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--section", choices=("e2e", "host", "all"), default="all",
                        help="end to end per backend, host post-processing, or both (default: all)")
    parser.add_argument("--engine", type=Path, help="ONNX file for the onnx backend (default: export w32 once)")
    parser.add_argument("--images", type=int, default=6, help="images per measurement (default: 6)")
    parser.add_argument("--repeat", type=int, default=5, help="host section: timed runs of ours per image (default: 5)")
    parser.add_argument("--baseline-repeat", type=int, default=1,
                        help="host section: timed runs of the mmpose-style baseline (default: 1; it is slow)")
    parser.add_argument("--maps", choices=("rendered", "network", "both"), default="both",
                        help="host section: which maps to time (default: both)")
    parser.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(end_to_end_worker(args.worker, args.engine, args.images)))
        return 0
    if args.section in ("e2e", "all"):
        print_end_to_end(end_to_end(args.engine, args.images))
    if args.section in ("host", "all"):
        print(f"\nhost post-processing per image (grouping + adjust + score + refine), {os.cpu_count()} CPU cores")
        if args.maps in ("rendered", "both"):
            print_rows("GT-rendered maps (realistic scenes)",
                       host_postprocessing(rendered_maps(args.images), args.repeat, args.baseline_repeat))
        if args.maps in ("network", "both"):
            print_rows("synthetic-weights network maps (crowds of incomplete people)",
                       host_postprocessing(network_maps(args.images), args.repeat, args.baseline_repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
