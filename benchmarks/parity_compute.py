"""Computing a parity run's people: each running backend over the images its cache lacks.

``seconds`` of an image is the time computing it takes (read + warp + graph + grouping, or render +
decode + grouping with --rendered), after one untimed warm-up image per backend and process (numba
compilation, allocators).
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Callable

from benchmarks.coco import CocoSet
from benchmarks.parity_cache import cache_path, read_cached, store_result
from benchmarks.parity_identity import REFERENCE
from benchmarks.parity_plan import BackendRun


def people_function(backend_run: BackendRun, args: argparse.Namespace, coco: CocoSet) -> Callable:
    """``image -> list[Person]`` for one backend (opens the model)."""
    if args.rendered:
        from benchmarks.coco import rendered_people

        annotations = coco.annotations()
        decode = None
        if backend_run.name != REFERENCE:
            from export.decode_onnx import DecodeOnlySession

            decode = DecodeOnlySession(backend_run.model).run
        return lambda image: rendered_people(image, annotations.get(image.id, []), args.input_size, decode,
                                             refine=not args.no_refine)
    from runtime.backends import open_backend, open_torch
    from runtime.pipeline import PoseEstimator

    backend = open_torch(args.arch, args.checkpoint, args.input_size, args.scales) if backend_run.name == REFERENCE \
        else open_backend(backend_run.model, "cpu")
    # --grouping applies to the GPU rows (TensorRT); people are identical either way, so it is no cache key
    grouping = getattr(args, "grouping", "host") if backend.device_io is not None else "host"
    estimator = PoseEstimator(backend, grouping=grouping, refine=not args.no_refine)
    return lambda image: estimator.estimate_file(image.path)


def compute(backend_runs: list[BackendRun], args: argparse.Namespace, coco: CocoSet, images: list) -> None:
    """Fill every running backend's cache for ``images``; what is there already is kept.

    Backends that share a cache key (the ONNX rows of --rendered) are computed once, by the first.
    """
    from tqdm import tqdm

    from runtime.results import write_json

    pending, first_of_key = {}, {}
    for backend_run in backend_runs:
        if backend_run.status != "run" or backend_run.key in pending:
            continue
        write_json(args.out / "cache" / backend_run.key / "identity.json", backend_run.identity)
        pending[backend_run.key] = [im for im in images
                                    if read_cached(cache_path(args.out, backend_run.key, im), im) is None]
        first_of_key[backend_run.key] = backend_run
    total = len(images) * len(pending)
    todo = sum(len(v) for v in pending.values())
    print(f"{len(images)} images x {len(pending)} backend runs: {total - todo} cached, {todo} to compute",
          file=sys.stderr, flush=True)
    with tqdm(total=total, initial=total - todo, unit="img", file=sys.stderr, dynamic_ncols=True,
              disable=args.no_progress or not sys.stderr.isatty()) as bar:
        for key, backend_run in first_of_key.items():
            if not pending[key]:
                continue
            bar.set_description(backend_run.name)
            people_of = people_function(backend_run, args, coco)
            people_of(pending[key][0])  # warm-up (numba compilation, allocators): not timed
            for image in pending[key]:
                start = time.perf_counter()
                people = people_of(image)
                seconds = time.perf_counter() - start
                store_result(args.out, key, image, seconds, people)
                bar.update(1)
