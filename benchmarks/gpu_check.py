"""python benchmarks/gpu_check.py — the one script that proves the GPU path on a GPU.

Run it from a checkout on a machine with an NVIDIA GPU and ``pip install -e '.[gpu]'`` (CUDA 13) or
``'.[gpu-cu12]'`` (CUDA 12); torch is optional, TensorRT is used when it imports. No network. It
checks, and prints one table:

  kernels      the CUDA simulator suites of tests/test_cuda_grouping.py run natively on the GPU:
               grouping, decode, tie-heavy refine, the API, the pipeline's device path (and, with
               torch, the mini-set suite), each compared bit for bit with the njit build
  onnx-cuda    ONNX Runtime CUDA FP32 (use_tf32=0) on 20 mini-set images: dense outputs against
               ONNX Runtime on the CPU (max relative difference, candidate sets), and the people of
               --grouping host and device against the CPU path (runtime.grouping) on the same outputs
  cuda-graphs  a captured CUDA graph replayed: replay outputs equal the first run's, another input
               between them gives other outputs
  stages       per-stage times from CUDA events (upload, graph, post-processing per grouping)
  tensorrt     the same people and timing rows for an FP32 engine built from the ONNX file, when
               ``tensorrt`` imports

Exit 0: every check passed; 1: a mismatch (the table says which); 2: no usable GPU (one line).

Examples:
  python benchmarks/gpu_check.py
  python benchmarks/gpu_check.py --onnx out/w32.onnx --images 20
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]
MINI = REPO.parent / "shared" / "data" / "coco_val2017_mini"
KERNEL_SUITES = ("group", "decode", "ties", "api", "pipeline")
# ONNX Runtime CUDA FP32 vs CPU: float32 reassociation only (cuDNN vs MLAS); far above it means TF32
# or a wrong binding.
MAX_DENSE_REL = 1e-4


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str]] = []
        self.failed = False

    def add(self, check: str, ok: bool | None, detail: str) -> None:
        """``ok``: True passed, False mismatch, None skipped (with the reason in ``detail``)."""
        self.rows.append((check, {True: "ok", False: "MISMATCH", None: "skipped"}[ok], detail))
        self.failed |= ok is False
        print(f"  {check}: {self.rows[-1][1]} {detail}", flush=True)

    def print(self) -> None:
        print("\n| check | result | detail |\n|---|---|---|")
        for row in self.rows:
            print("| " + " | ".join(row) + " |")


def require_gpu() -> None:
    """One line and exit 2 when there is no usable CUDA GPU (or only the simulator)."""
    from runtime.errors import UserError

    try:
        from runtime.cuda_grouping import import_cuda, probe

        if import_cuda()[1]:
            raise UserError("NUMBA_ENABLE_CUDASIM is set: this script checks a real GPU; unset it")
        probe()
    except UserError as error:
        print(f"gpu_check.py: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def same_people(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(p.keypoints, q.keypoints) and p.score == q.score
                                    for p, q in zip(a, b))


def check_kernels(table: Table) -> None:
    try:
        from tests import test_cuda_grouping as suites
        from tests import test_grouping  # noqa: F401 - the suites' case generators (munkres, hypothesis)
    except BaseException as exc:  # ImportError, or pytest's Skipped from importorskip outside pytest
        if not isinstance(exc, Exception) and type(exc).__name__ != "Skipped":
            raise
        table.add("kernels", None, f"the suites' test helpers are missing ({exc}): pip install pytest hypothesis "
                                   f"munkres==1.1.4")
        return
    names = KERNEL_SUITES
    try:
        import torch  # noqa: F401 - the mini suite's rendered outputs go through the torch decode

        names += ("mini",)
    except ImportError:
        table.add("kernels: mini", None, "torch is not installed (the rendered outputs need its decode)")
    for name in names:
        began = time.perf_counter()
        try:
            summary = suites.SUITES[name]()
        except AssertionError as error:
            table.add(f"kernels: {name}", False, " ".join(str(error).split())[:200])
            continue
        detail = ", ".join(f"{k} {v}" for k, v in summary.items())
        table.add(f"kernels: {name}", True, f"{detail}; bit-identical to njit ({time.perf_counter() - began:.1f} s)")


def onnx_file(path: Path | None) -> Path | None:
    if path is not None:
        return path
    target = REPO / "out" / "bench" / "w32.onnx"
    if not target.exists():
        try:
            import torch  # noqa: F401
        except ImportError:
            return None
        print(f"exporting {target} (w32, synthetic:0) ...", flush=True)
        subprocess.run([sys.executable, "-m", "export.onnx", "--arch", "w32", "-o", str(target)], check=True,
                       cwd=REPO, stdout=subprocess.DEVNULL)
    return target


def mini_images(count: int):
    from benchmarks.coco import CocoSet
    from runtime.preprocess import read_image

    if not (MINI / "images").is_dir():
        from runtime.run import bundled_samples

        return [(path.name, read_image(path)) for path in bundled_samples()[:count]]
    mini = CocoSet.open(MINI / "images", MINI / "person_keypoints.json")
    return [(image.path.name, read_image(image.path)) for image in mini.images[:count]]


def host_people(estimator, outputs, prepared):
    """The CPU path (runtime.grouping, njit) on outputs already on the host."""
    from runtime.results import people_in_image

    persons, scores = estimator.group(outputs)
    return people_in_image(persons, scores, prepared.base_geometry)


def check_backend(table: Table, label: str, backend, reference, images) -> None:
    """People of both groupings vs the CPU path on this backend's own outputs; dense outputs vs
    ``reference`` (ONNX Runtime on the CPU)."""
    from runtime.pipeline import PoseEstimator

    estimators = {grouping: PoseEstimator(backend, grouping=grouping) for grouping in ("host", "device")}
    cpu = PoseEstimator(reference)
    mismatches, worst, candidates_equal, cpu_identical = [], 0.0, 0, 0
    for name, image in images:
        prepared = cpu.prepare(image)
        feed = cpu.feed([prepared])
        outputs, expected = backend.run(feed), reference.run(feed)
        for key in ("heatmap", "tags"):
            scale = max(float(np.abs(expected[key]).max()), 1e-6)
            worst = max(worst, float(np.abs(outputs[key] - expected[key]).max()) / scale)
        found = [set(map(tuple, c[c[:, 2] > 0.1][:, :2].tolist())) for c in outputs["candidates"][0]]
        wanted = [set(map(tuple, c[c[:, 2] > 0.1][:, :2].tolist())) for c in expected["candidates"][0]]
        candidates_equal += found == wanted
        truth = host_people(cpu, outputs, prepared)
        for grouping, estimator in estimators.items():
            if not same_people(estimator(image), truth):
                mismatches.append(f"{name} ({grouping})")
        cpu_identical += same_people(truth, host_people(cpu, expected, prepared))
    n = len(images)
    table.add(f"{label}: people, grouping host and device vs the CPU path on its outputs", not mismatches,
              f"differ on {', '.join(mismatches[:4])}" if mismatches else f"identical on {n}/{n} images")
    table.add(f"{label}: dense outputs vs ONNX Runtime CPU", worst <= MAX_DENSE_REL,
              f"max rel diff {worst:.2e} (limit {MAX_DENSE_REL:g}); candidate sets equal on {candidates_equal}/{n}; "
              f"people identical to the CPU backend's on {cpu_identical}/{n} (float ties may split the rest)")


def check_graph_replay(table: Table, backend, images) -> None:
    from runtime.pipeline import PoseEstimator

    if not getattr(backend, "cuda_graph", False):
        table.add("cuda-graphs: capture and replay", None,
                  f"graphs are off: {getattr(backend, 'cuda_graph_refused', None) or 'not requested'}")
        return
    estimator = PoseEstimator(backend)
    feeds = [estimator.feed([estimator.prepare(image)]) for _, image in images[:2]]
    first = backend.run(feeds[0])
    replays = [backend.run(feeds[0]) for _ in range(3)]
    name = backend.metadata.input_names[0]
    other = backend.run(feeds[1]) if feeds[1][name].shape == feeds[0][name].shape else None
    again = backend.run(feeds[0])
    same = all(np.array_equal(first[k], r[k]) for r in replays + [again] for k in first)
    moved = other is None or not np.array_equal(other["heatmap"], first["heatmap"])
    table.add("cuda-graphs: capture and replay", same and moved,
              f"5 replays equal the first run: {same}; another image between gives other outputs: "
              f"{moved if other is not None else 'not tried (second image has another shape)'}")


def stage_times(backend, images, repeat: int) -> dict[str, dict[str, float]]:
    """Median ms per image of each stage, measured with CUDA events on the backend's stream."""
    from runtime.pipeline import PoseEstimator

    io, cuda = backend.device_io, backend.device_io.cuda
    result = {}
    for grouping in ("host", "device"):
        estimator = PoseEstimator(backend, grouping=grouping)
        decoder, decode = estimator.decoder, backend.metadata.decode
        launch = decoder.launch if grouping == "device" else decoder.launch_host_grouped
        samples: dict[str, list[float]] = {"upload + graph": [], "post-processing": [], "people back": []}
        for step in range(repeat + 1):
            for _, image in images:
                feed = estimator.feed([estimator.prepare(image)])
                marks = [cuda.event() for _ in range(4)]
                marks[0].record(io.stream)
                outputs = backend.run(feed, on_device=True)
                marks[1].record(io.stream)
                job = launch(outputs["candidates"][0], outputs["heatmap"][0], outputs["tags"][0],
                             decode.detection_threshold, decode.tag_threshold)
                marks[2].record(io.stream)
                decoder.collect(job)
                marks[3].record(io.stream)
                marks[3].synchronize()
                if step:  # the first pass compiles, allocates and captures
                    for key, (a, b) in zip(samples, zip(marks, marks[1:])):
                        samples[key].append(a.elapsed_time(b))
        result[grouping] = {key: statistics.median(values) for key, values in samples.items()}
    return result


def report_stages(table: Table, label: str, backend, images, repeat: int) -> None:
    times = stage_times(backend, images, repeat)
    for grouping, ms in times.items():
        table.add(f"{label}: stages, --grouping {grouping} (CUDA events, median ms)", True,
                  f"upload + graph {ms['upload + graph']:.2f}, post-processing {ms['post-processing']:.3f}, "
                  f"people back {ms['people back']:.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/gpu_check.py", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", type=Path, help="an FP32 export (default: export w32 synthetic:0 once, needs torch)")
    parser.add_argument("--images", type=int, default=20, help="mini-set images per check (default: 20)")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes over 4 images (default: 3)")
    args = parser.parse_args(argv)
    require_gpu()
    from runtime.backends.onnx_backend import OnnxBackend

    table = Table()
    began = time.perf_counter()
    check_kernels(table)
    path = onnx_file(args.onnx)
    if path is None:
        table.add("onnx-cuda", None, "no --onnx given and torch is not installed to export one")
    else:
        images = mini_images(args.images)
        with OnnxBackend(path, "cpu") as reference, OnnxBackend(path, "cuda") as gpu:
            check_backend(table, "onnx-cuda", gpu, reference, images)
            check_graph_replay(table, gpu, images)
            report_stages(table, "onnx-cuda", gpu, images[:4], args.repeat)
            try:
                import tensorrt  # noqa: F401
            except Exception as exc:  # noqa: BLE001 - ImportError or a broken wheel
                table.add("tensorrt", None, f"tensorrt does not import ({type(exc).__name__})")
            else:
                from export.trt import build_engine
                from runtime.backends.trt_backend import TrtBackend

                plan = build_engine(path, path.with_suffix(".check.plan"), max_batch=1, progress=False)
                with TrtBackend(plan) as engine:
                    check_backend(table, "tensorrt-fp32", engine, reference, images)
                    report_stages(table, "tensorrt-fp32", engine, images[:4], args.repeat)
    table.print()
    verdict = "MISMATCHES: see the table" if table.failed else "all checks passed"
    print(f"\n{time.perf_counter() - began:.0f} s; {verdict}")
    return 1 if table.failed else 0


if __name__ == "__main__":
    sys.exit(main())
