"""python benchmarks/speed.py — timings with a stage breakdown, as ratios measured in one run.

End to end (--section e2e), each backend in its own process (so peak RSS is its own), on the same
images: read + warp, graph, grouping + refine, total, images/s, peak RSS, for
  onnx          ONNX Runtime running the exported DecodeGraph + our grouping/refine (numba)
  torch         the PyTorch DecodeGraph + our grouping/refine
  mmpose-style  the same PyTorch graph outputs + the reference's host decode (NumPy + munkres),
                timed in the torch process on the same outputs (its RSS is the torch process's)

Host post-processing (--section host) (grouping + adjust + score + refine, from the same top-k candidates and maps):
ours (numba, runtime.grouping) vs a literal mmpose-style NumPy + munkres implementation
(benchmarks/baseline.py). Our refine reads the graph's tile summary (the ``tiles`` output), which the
DecodeGraph computes next to the network; the "tiles in graph ms" column is what that summary costs
there: ``export.graphs.tile_summary`` alone as an ONNX graph in ONNX Runtime (CPU, as the backend's
session) on the same maps, so host and graph cost are both in the run. Two kinds of maps:
  rendered  network outputs rendered from COCO ground truth (realistic scenes; the mini set's
            most crowded images)
  network   HigherHRNet-W32 with synthetic weights on the bundled samples (60-130 mostly
            incomplete people per image: a stress case for refine)

On a CUDA GPU (--device cuda), end to end per backend, each in its own process, every stage timed
on its own (upload = host → device inputs, graph, grouping + refine, download = what comes back):
  onnx-cuda-fp32   ONNX Runtime CUDA EP (use_tf32=0, CUDA graphs when the session accepts them),
                   outputs kept on the device, grouping + refine as CUDA kernels, only people back
  onnx-cuda-fp16   the same with the FP16 export (decode in FP32)
  trt-fp32, trt-fp16  TensorRT engines built from those two files (rows only where tensorrt imports)
  mmpose-style     torch eager FP32 on the GPU (TF32 off; network and dense decode), full heatmap and
                   tag maps copied back, the reference's host decode (NumPy + munkres)
with the ratios, and the device post-processing alone on the rendered and network maps. Grouping
runs where --grouping says (host: candidates back, njit grouping, refine on the device; device: all
on the GPU). Kernel and graph times in the "CUDA events" columns come from CUDA events on the
backend's stream (benchmarks/gpu_check.py's stage_times), not from host clocks around syncs.

Examples:
  python benchmarks/speed.py
  python benchmarks/speed.py --device cuda --images 6 --repeat 5
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


def mmpose_style(candidates: np.ndarray, heatmap: np.ndarray, tags: np.ndarray,
                 refine: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The reference's host steps after top-k: match by tag (munkres), adjust, score, refine."""
    from benchmarks import baseline

    persons = baseline.match_by_tag(*candidate_arrays(candidates))
    baseline.adjust(persons, heatmap)
    scores = baseline.person_scores(persons)
    for person in persons if refine else ():
        baseline.refine(heatmap, tags, person)
    return persons, scores


def ours(candidates: np.ndarray, heatmap: np.ndarray, tags: np.ndarray, tiles: np.ndarray,
         refine: bool = True) -> tuple[np.ndarray, np.ndarray]:
    from runtime.grouping import decode_people

    return decode_people(candidates, heatmap, tags, tiles, with_refine=refine)


def tile_summary_session():
    """``export.graphs.tile_summary`` alone, exported like the DecodeGraph (TorchScript exporter, H and W
    dynamic) and opened in ONNX Runtime on the CPU: ``run(summary_feed(heatmap, tags))`` → tiles."""
    import io
    import warnings

    import onnxruntime as ort
    import torch

    from export.graphs import tile_summary
    from export.onnx import OPSET

    class Summary(torch.nn.Module):
        def forward(self, heatmap, tag0, tag1):
            return tile_summary(heatmap, [tag0, tag1])

    sample = [torch.zeros((1, 17, 64, 64))] * 3
    axes = {name: {2: "height", 3: "width"} for name in ("heatmap", "tag0", "tag1")}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Summary(), tuple(sample), buffer, dynamo=False, opset_version=OPSET,
                          input_names=list(axes), output_names=["tiles"], dynamic_axes=axes)
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])

    def run(feed: dict[str, np.ndarray]) -> np.ndarray:
        return session.run(None, feed)[0][0]

    return run


def summary_feed(heatmap: np.ndarray, tags: np.ndarray) -> dict[str, np.ndarray]:
    """The tile summary graph's inputs: the heatmap and each tag component as its own contiguous map, as
    the DecodeGraph holds them before it interleaves the two components into ``tags``."""
    return {"heatmap": heatmap[None], "tag0": np.ascontiguousarray(tags[None, ..., 0]),
            "tag1": np.ascontiguousarray(tags[None, ..., 1])}


def rendered_maps(count: int):
    """Decoded maps of the ``count`` mini-set images with the most annotated people."""
    from benchmarks.coco import CocoSet, rendered_decode

    coco = CocoSet.open()
    annotations = coco.annotations()
    crowded = sorted(coco.images, key=lambda im: -sum(1 for a in annotations.get(im.id, []) if a.get("num_keypoints", 0)))
    for image in crowded[:count]:
        outputs = rendered_decode(image, annotations.get(image.id, []))
        yield image.path.name, outputs["candidates"][0], outputs["heatmap"][0], outputs["tags"][0], outputs["tiles"][0]


def network_maps(count: int):
    """Outputs of the synthetic-weights W32 DecodeGraph on the bundled samples."""
    from runtime.backends import open_torch
    from runtime.pipeline import PoseEstimator
    from runtime.preprocess import read_image
    from runtime.run import bundled_samples

    estimator = PoseEstimator(open_torch("w32", "synthetic:0", 512))
    for path in bundled_samples()[:count]:
        outputs = estimator.run_graph(estimator.prepare(read_image(path)))
        yield path.name, outputs["candidates"][0], outputs["heatmap"][0], outputs["tags"][0], outputs["tiles"][0]


def timed(function, arguments, repeat: int) -> tuple[float, tuple]:
    """Median wall time of ``repeat`` calls (seconds) and the last result."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = function(*arguments)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def host_postprocessing(maps, repeat: int, baseline_repeat: int, refine: bool = True) -> list[dict]:
    summary = tile_summary_session()
    rows = []
    for name, candidates, heatmap, tags, tiles in maps:
        ours(candidates, heatmap, tags, tiles, refine)  # compile / warm caches outside the timing
        t_ours, (persons, scores) = timed(ours, (candidates, heatmap, tags, tiles, refine), repeat)
        feed = (summary_feed(heatmap, tags),)
        if not np.array_equal(summary(*feed), tiles):
            raise SystemExit(f"{name}: the ONNX Runtime tile summary differs from the graph's tiles output")
        t_tiles, _ = timed(summary, feed, repeat)
        t_ref, (ref_persons, ref_scores) = timed(mmpose_style, (candidates, heatmap, tags, refine), baseline_repeat)
        identical = persons.shape == ref_persons.shape and np.allclose(persons, ref_persons, atol=1e-4)
        rows.append({"image": name, "size": f"{heatmap.shape[2]}x{heatmap.shape[1]}", "people": len(persons),
                     "missing": int((ref_persons[:, :, 2] == 0).sum()) if len(ref_persons) else 0,
                     "ours_ms": t_ours * 1e3, "tiles_ms": t_tiles * 1e3, "mmpose_ms": t_ref * 1e3,
                     "identical": identical})
    return rows


def print_rows(title: str, rows: list[dict]) -> None:
    print(f"\n### {title}\n")
    print("| image | map | people | ours ms | tiles in graph ms | mmpose-style ms | speed-up | identical people |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['image']} | {r['size']} | {r['people']} | {r['ours_ms']:.1f} | {r['tiles_ms']:.1f} | "
              f"{r['mmpose_ms']:.1f} | {r['mmpose_ms'] / r['ours_ms']:.0f}x | {'yes' if r['identical'] else 'NO'} |")
    total_ours = sum(r["ours_ms"] for r in rows)
    total_tiles = sum(r["tiles_ms"] for r in rows)
    total_ref = sum(r["mmpose_ms"] for r in rows)
    print(f"| **per image** | | | **{total_ours / len(rows):.1f}** | **{total_tiles / len(rows):.1f}** | "
          f"**{total_ref / len(rows):.1f}** | **{total_ref / total_ours:.0f}x** | |")


BACKENDS = ("onnx", "torch")


def end_to_end_worker(kind: str, engine: Path | None, count: int, refine: bool = True) -> list[dict]:
    """Run one backend over the bundled samples: stage seconds per image, images/s, peak RSS.

    The torch worker also times the reference's host decode (NumPy + munkres) on the same graph
    outputs: the mmpose-style row shares the torch network and differs only in post-processing.
    """
    from runtime.backends import open_backend, open_torch
    from runtime.pipeline import PoseEstimator
    from runtime.preprocess import read_image
    from runtime.run import bundled_samples

    backend = open_backend(engine) if kind == "onnx" else open_torch("w32", "synthetic:0", 512)
    estimator = PoseEstimator(backend, refine=refine)
    def our_decode(outputs, refine):
        return ours(outputs["candidates"][0], outputs["heatmap"][0], outputs["tags"][0], outputs["tiles"][0], refine)

    def mmpose_decode(outputs, refine):
        return mmpose_style(outputs["candidates"][0], outputs["heatmap"][0], outputs["tags"][0], refine)

    decoders = {kind: our_decode} if kind == "onnx" else {"torch": our_decode, "mmpose-style": mmpose_decode}
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
            persons, _ = decode(outputs, refine)
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


def end_to_end(engine: Path | None, count: int, refine: bool = True) -> list[dict]:
    engine = ensure_engine(engine)
    rows = []
    for kind in BACKENDS:
        done = subprocess.run([sys.executable, __file__, "--worker", kind, "--engine", str(engine),
                               "--images", str(count)] + ([] if refine else ["--no-refine"]),
                              capture_output=True, text=True, check=True)
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


GPU_BACKENDS = ("onnx-cuda-fp32", "onnx-cuda-fp16", "trt-fp32", "trt-fp16", "mmpose-style")


def tensorrt_imports() -> bool:
    try:
        import tensorrt  # noqa: F401
    except Exception:  # noqa: BLE001 - ImportError, or a stub wheel failing at import
        return False
    return True


def ensure_plan(onnx: Path) -> Path:
    """A batch-1 TensorRT engine of ``onnx``, built once beside it."""
    from export.trt import build_engine

    plan = onnx.with_suffix(".plan")
    if not plan.exists():
        print(f"building {plan} ...", flush=True)
        build_engine(onnx, plan, max_batch=1, progress=False)
    return plan
GPU_STAGES = ("read_warp", "upload", "graph", "group_refine", "download")


def check_gpu() -> None:
    """One line and exit 2 when the GPU section cannot run here."""
    from runtime.cuda_grouping import import_cuda
    from runtime.errors import UserError

    try:
        if import_cuda()[1]:
            raise UserError("NUMBA_ENABLE_CUDASIM is set: simulator timings mean nothing; unset it")
        import onnxruntime

        if hasattr(onnxruntime, "preload_dlls"):
            onnxruntime.preload_dlls()
        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            raise UserError("onnxruntime has no CUDA execution provider: pip install 'hrnet-deploy[gpu]'")
    except UserError as error:
        print(f"speed.py --device cuda: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def ensure_fp16_engine() -> Path:
    """The FP16 export of the benchmark model, made once under out/bench/."""
    path = Path(__file__).resolve().parents[1] / "out" / "bench" / "w32.fp16.onnx"
    if not path.exists():
        print(f"exporting {path} (w32, synthetic:0, fp16) ...", flush=True)
        subprocess.run([sys.executable, "-m", "export.onnx", "--arch", "w32", "--precision", "fp16", "-o", str(path)],
                       check=True, cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL)
    return path


def _stage_row(name: str, times, people: int) -> dict:
    seconds = {stage: getattr(times, stage) / times.images for stage in GPU_STAGES}
    seconds["device_total"] = sum(seconds[stage] for stage in GPU_STAGES[1:])
    return {"backend": name, "images": times.images, "people": people, "seconds": seconds,
            "images_per_s": 1.0 / (seconds["device_total"] + seconds["read_warp"])}


def gpu_worker(kind: str, engine: Path | None, count: int, repeat: int, grouping: str = "host",
               refine: bool = True) -> list[dict]:
    """One GPU backend over the bundled samples, warmed up (kernels compiled, CUDA graphs captured for
    every input shape), then ``repeat`` timed passes."""
    from runtime.backends import open_backend, open_torch
    from runtime.pipeline import PoseEstimator, StageTimes
    from runtime.preprocess import read_image
    from runtime.run import bundled_samples

    images = [read_image(path) for path in bundled_samples()[:count]]
    if kind == "mmpose-style":
        return [mmpose_style_gpu(open_torch("w32", "synthetic:0", 512, device="cuda"), images, repeat, refine)]
    from benchmarks.gpu_check import stage_times

    backend = open_backend(engine, device="cuda")
    estimator = PoseEstimator(backend, grouping=grouping, refine=refine)
    for _ in range(3):  # ONNX Runtime captures a shape's CUDA graph after a first plain run
        for image in images:
            estimator(image)
    estimator.times = StageTimes()
    people = sum(len(estimator(image)) for _ in range(repeat) for image in images)
    row = _stage_row(kind, estimator.times, people)
    row["cuda_graph"] = getattr(backend, "cuda_graph", False)
    row["cuda_graph_refused"] = getattr(backend, "cuda_graph_refused", None)
    row["events_ms"] = stage_times(backend, list(zip(range(len(images)), images)), repeat)[grouping]
    row["grouping"] = grouping
    return [row]


def mmpose_style_gpu(backend, images: list[np.ndarray], repeat: int, refine: bool = True) -> dict:
    """The reference's way on a GPU: network and dense decode in torch, maps to the host, host decode."""
    import torch

    from runtime.pipeline import PoseEstimator, StageTimes

    estimator = PoseEstimator(backend)  # only for prepare(); the stages are timed here
    names = backend.metadata.input_names
    times, people = StageTimes(), 0
    for position in range(repeat + 1):  # the first pass warms up (cuDNN autotuning, allocator)
        for image in images:
            began = time.perf_counter()
            prepared = estimator.prepare(image)
            warped = time.perf_counter()
            inputs = [torch.from_numpy(prepared.inputs[i][None]).to(backend.device) for i in range(len(names))]
            torch.cuda.synchronize()
            uploaded = time.perf_counter()
            with torch.inference_mode():
                candidates, heatmap, tags = backend.graph(*inputs)[:3]  # the tile summary is ours only
            torch.cuda.synchronize()
            ran = time.perf_counter()
            candidates, heatmap, tags = (t[0].cpu().numpy() for t in (candidates, heatmap, tags))
            downloaded = time.perf_counter()
            persons, _ = mmpose_style(candidates, heatmap, tags, refine)
            done = time.perf_counter()
            if position:
                times.add(StageTimes(read_warp=warped - began, upload=uploaded - warped, graph=ran - uploaded,
                                     download=downloaded - ran, group_refine=done - downloaded, images=1))
                people += len(persons)
    return _stage_row("mmpose-style", times, people)


def device_grouping(repeat: int, count: int) -> list[dict]:
    """Post-processing alone on maps already on the device, timed with CUDA events on the
    decoder's stream, for both groupings, vs the host build (host clock; it never leaves the CPU)."""
    from numba import cuda

    from runtime.backends.device import non_blocking_stream
    from runtime.cuda_grouping import DeviceDecoder

    decoder = DeviceDecoder(stream=non_blocking_stream(cuda))
    rows = []
    for kind, maps in (("rendered", rendered_maps(count)), ("network", network_maps(count))):
        for name, candidates, heatmap, tags, tiles in maps:
            on_device = [cuda.to_device(a) for a in (candidates, heatmap, tags)]
            t_host, (expected, _) = timed(ours, (candidates, heatmap, tags, tiles), repeat)
            row = {"maps": kind, "image": name, "size": f"{heatmap.shape[2]}x{heatmap.shape[1]}",
                   "people": len(expected), "njit_ms": t_host * 1e3, "identical": True}
            for grouping, launch in (("host", decoder.launch_host_grouped), ("device", decoder.launch)):
                samples = []
                for step in range(repeat + 1):  # the first run compiles and allocates
                    start, end = cuda.event(), cuda.event()
                    start.record(decoder.stream)
                    job = launch(*on_device)
                    end.record(decoder.stream)
                    persons, _ = decoder.collect(job)
                    end.synchronize()
                    if step:
                        samples.append(start.elapsed_time(end))
                row[f"grouping_{grouping}_ms"] = statistics.median(samples)
                row["identical"] &= persons.shape == expected.shape and np.array_equal(persons, expected)
            rows.append(row)
    return rows


def gpu_end_to_end(count: int, repeat: int, grouping: str = "host", refine: bool = True) -> list[dict]:
    engines = {"onnx-cuda-fp32": ensure_engine(None), "onnx-cuda-fp16": ensure_fp16_engine()}
    if tensorrt_imports():
        engines.update({"trt-fp32": ensure_plan(engines["onnx-cuda-fp32"]),
                        "trt-fp16": ensure_plan(engines["onnx-cuda-fp16"])})
    else:
        print("TensorRT rows skipped: tensorrt does not import here", flush=True)
    engines["mmpose-style"] = None
    rows = []
    for kind, engine in engines.items():
        command = [sys.executable, __file__, "--device", "cuda", "--worker", kind, "--images", str(count),
                   "--repeat", str(repeat), "--grouping", grouping] + ([] if refine else ["--no-refine"])
        done = subprocess.run(command + (["--engine", str(engine)] if engine else []),
                              capture_output=True, text=True, check=False)
        if done.returncode:
            raise SystemExit(f"{kind} worker failed:\n{done.stderr[-3000:]}")
        rows.extend(json.loads(done.stdout.strip().splitlines()[-1]))
    return rows


def print_gpu(rows: list[dict], grouping_rows: list[dict]) -> None:
    print(f"\n### GPU end to end, HigherHRNet-W32 input 512, synthetic weights, {rows[0]['images']} timed images "
          f"per backend (ms per image)\n")
    print("| backend | grouping | read + warp | upload | graph | grouping + refine | download | device total | "
          "device total / graph | images/s | CUDA events: upload + graph | post-processing | people back |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        s = r["seconds"]
        events = r.get("events_ms")
        event_cells = (f"{events['upload + graph']:.2f} | {events['post-processing']:.3f} | {events['people back']:.3f}"
                       if events else "- | - | -")
        print(f"| {r['backend']} | {r.get('grouping', 'host (NumPy)')} | "
              + " | ".join(f"{s[stage] * 1e3:.2f}" for stage in GPU_STAGES)
              + f" | {s['device_total'] * 1e3:.2f} | {s['device_total'] / s['graph']:.2f}x | {r['images_per_s']:.1f} | "
              + event_cells + " |")
    for r in rows:
        if r.get("cuda_graph_refused"):
            print(f"note: {r['backend']}: CUDA graphs refused by ONNX Runtime: {r['cuda_graph_refused']}")
    by = {r["backend"]: r["seconds"] for r in rows}
    print("\nratios (same run), end to end without read + warp:")
    for name in [r["backend"] for r in rows if r["backend"] != "mmpose-style"]:
        print(f"  mmpose-style / {name} = {by['mmpose-style']['device_total'] / by[name]['device_total']:.1f}x")
    print("\n### Post-processing alone (grouping + score + refine), maps already on the device; CUDA events\n")
    print("| maps | image | map | people | --grouping host ms | --grouping device ms | host njit ms | identical |")
    print("|---|---|---|---:|---:|---:|---:|---|")
    for r in grouping_rows:
        print(f"| {r['maps']} | {r['image']} | {r['size']} | {r['people']} | {r['grouping_host_ms']:.3f} | "
              f"{r['grouping_device_ms']:.3f} | {r['njit_ms']:.1f} | {'yes' if r['identical'] else 'NO'} |")


def main(argv: list[str] | None = None) -> int:
    from runtime.cli import examples

    parser = argparse.ArgumentParser(prog="python benchmarks/speed.py", description=__doc__.split("\n\n")[0],
                                     epilog=examples(__doc__, "Speed"),
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
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cpu: the CPU sections above; cuda: the GPU section (needs onnxruntime-gpu, "
                             "numba-cuda and a CUDA torch for the baseline) (default: cpu)")
    parser.add_argument("--grouping", choices=("host", "device"), default="host",
                        help="cuda: where the GPU backends group people (see python -m runtime.run --help) "
                             "(default: host)")
    parser.add_argument("--no-refine", action="store_true",
                        help="CPU sections and GPU backends without refine (grouping + adjust only) (default: refine on)")
    parser.add_argument("--worker", choices=BACKENDS + GPU_BACKENDS, help=argparse.SUPPRESS)
    from runtime.cli import run_cli

    return run_cli(parser, run, argv)


def run(args: argparse.Namespace) -> int:
    if args.worker:
        if args.device == "cuda":
            print(json.dumps(gpu_worker(args.worker, args.engine, args.images, args.repeat, args.grouping,
                                        not args.no_refine)))
        else:
            print(json.dumps(end_to_end_worker(args.worker, args.engine, args.images, not args.no_refine)))
        return 0
    if args.device == "cuda":
        check_gpu()
        print_gpu(gpu_end_to_end(args.images, args.repeat, args.grouping, not args.no_refine),
                  device_grouping(args.repeat, args.images))
        return 0
    if args.section in ("e2e", "all"):
        print_end_to_end(end_to_end(args.engine, args.images, not args.no_refine))
    if args.section in ("host", "all"):
        print(f"\nhost post-processing per image (grouping + adjust + score + refine), {os.cpu_count()} CPU cores")
        if args.maps in ("rendered", "both"):
            print_rows("GT-rendered maps (realistic scenes)",
                       host_postprocessing(rendered_maps(args.images), args.repeat, args.baseline_repeat,
                                           not args.no_refine))
        if args.maps in ("network", "both"):
            print_rows("synthetic-weights network maps (crowds of incomplete people)",
                       host_postprocessing(network_maps(args.images), args.repeat, args.baseline_repeat,
                                           not args.no_refine))
    return 0


if __name__ == "__main__":
    sys.exit(main())
