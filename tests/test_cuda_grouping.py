"""runtime.cuda_grouping (the device build) against runtime.grouping (the host build), bit for bit.

Without a GPU the kernels run on numba's CUDA simulator.  ``NUMBA_ENABLE_CUDASIM`` is read once,
when numba is first imported, and it swaps ``numba.cuda`` for the simulator for the whole
process; so the simulator checks run in a subprocess (``python -m tests.test_cuda_grouping
SUITE``) and this pytest process keeps the ordinary numba.  Each suite compares persons (count,
order, every bit), scores and refined joints with the host build on random tie-heavy cases made
by the generators of tests/test_grouping.py; a failure names the suite, case and seed.

Other checks: the kernels compile for a real GPU target (PTX for sm_90; needs libNVVM, not a
GPU) without fused multiply-adds; a clear UserError where CUDA is absent; and, with a GPU
(marker ``gpu``), the real device path on the mini COCO set's decoded maps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import MINI, REPO, need
from tests.tiles import tiles_of

# Simulator cases per suite (the simulator runs each kernel thread as a Python thread; a refine
# case on a small map takes about a second). Each covers every map kind, map size and block size at
# least once; the host build these are compared with is itself checked against munkres 1.1.4 and the
# baseline on thousands of tie-heavy cases (tests/test_grouping.py).
GROUP_CASES = 40  # 8 per threshold pair
DECODE_CASES = 7  # one case of each of the seven map kinds; every map size of MAP_SIZES
TIE_CASES = 14
MAP_SIZES = [(12, 16), (13, 17), (16, 20), (20, 28), (24, 32)]
THREADS = [8, 16, 32, 64]


def run_suite(name: str, simulator: bool = True, timeout: int = 600) -> dict:
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    if simulator:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    done = subprocess.run([sys.executable, "-m", "tests.test_cuda_grouping", name], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"suite {name} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def real_gpu() -> bool:
    try:
        import numba
        from numba import cuda

        return not numba.config.ENABLE_CUDASIM and cuda.is_available()
    except Exception:
        return False


# ---------------------------------------------------------------------------------------------
# pytest side
# ---------------------------------------------------------------------------------------------


def test_simulator_group_matches_host():
    result = run_suite("group")
    assert result["cases"] >= GROUP_CASES and result["persons"] > 5 * GROUP_CASES


def test_simulator_decode_matches_host():
    result = run_suite("decode")
    assert result["cases"] == DECODE_CASES
    assert result["refined"] > 10 * DECODE_CASES  # refine really filled joints


def test_simulator_tie_heavy_refine_matches_host():
    result = run_suite("ties")
    assert result["cases"] >= TIE_CASES and result["chunked"] >= 1


def test_simulator_inputs_buffers_and_errors():
    result = run_suite("api")
    assert result["cases"] > 0


def test_simulator_pipeline_device_path_matches_host():
    result = run_suite("pipeline")
    assert result["images"] >= 6 and result["people"] > 0


def test_simulator_mini_set_both_groupings_match_cpu_path():
    """--grouping host and device through PoseEstimator on 7 mini-set images (GT-rendered
    outputs) give the CPU path's people bit for bit.  Mutation tried: the refine search kernel
    not launched (persons come back unrefined) fails here (000000000885.jpg, person 0)."""
    need(MINI / "images")
    pytest.importorskip("torch")  # the rendered outputs go through the torch decode
    result = run_suite("mini")
    assert result["images"] >= MINI_IMAGES and result["people"] > 0 and result["refined"] > 0


def test_kernels_compile_and_link_without_fma_or_spills(request):
    """Every kernel compiles to PTX (libNVVM only, no GPU) and links to sm_87 (Orin), sm_89 and
    sm_90 machine code (nvJitLink): the PTX holds no fused multiply-add, flush-to-zero or
    approximate instruction, and no kernel spills to local memory.  Registers per kernel and
    architecture are printed at the end of the pytest run.  The control build with plain
    products does fuse (so the fma check cannot pass vacuously).  In CI (``CI`` set) the numba-cuda
    that the dev extra installs must be there: a skip there is a failure."""
    result = run_suite("ptx", simulator=False)
    if "skip" in result:
        if os.environ.get("CI"):
            pytest.fail(f"CI must compile the CUDA kernels: {result['skip']}")
        pytest.skip(result["skip"])
    for name, counts in result["kernels"].items():
        assert counts == {"fma.": 0, ".ftz": 0, ".approx": 0}, (name, counts)
    assert result["plain_products_fma"] > 0
    lines = []
    for name, per_arch in result["sass"].items():
        assert sorted(per_arch) == ["sm_87", "sm_89", "sm_90"], name
        for arch, info in per_arch.items():
            assert info["spill_stores"] == 0 and info["spill_loads"] == 0, (name, arch, info)
            assert 0 < info["registers"] <= 255, (name, arch, info)
            lines.append(f"{name:>7} {arch}: {info['registers']:3d} registers, stack {info['stack']} B, "
                         f"spills 0, cubin {info['cubin_bytes']} B")
    from tests.conftest import TERMINAL_REPORT

    TERMINAL_REPORT.append(("CUDA kernels (PTX from numba-cuda, linked with nvJitLink, no GPU)", lines))


def test_user_error_without_cuda():
    if real_gpu():
        pytest.skip("a CUDA GPU is present")
    import numba

    if numba.config.ENABLE_CUDASIM:
        pytest.skip("the CUDA simulator is enabled in this process")
    from runtime import cuda_grouping
    from runtime.errors import UserError

    cuda_grouping._build.cache_clear()
    with pytest.raises(UserError, match=r"hrnet-deploy\[gpu\].*NUMBA_ENABLE_CUDASIM"):
        cuda_grouping.DeviceDecoder()


@pytest.mark.gpu
def test_gpu_mini_set_matches_host():
    """The real device path on the decoded maps of the mini COCO set: NumPy inputs, numba device
    arrays and (with a CUDA torch) torch tensors read through ``__cuda_array_interface__``.
    Its speed against the host build is measured by ``benchmarks/speed.py --device cuda``."""
    if not real_gpu():
        pytest.skip("no CUDA GPU")
    torch = pytest.importorskip("torch")
    from numba import cuda

    from runtime import grouping
    from runtime.cuda_grouping import DeviceDecoder

    decoder = DeviceDecoder(stream=cuda.stream())
    checked = people = 0
    for name, cand, heatmap, tags, tiles in mini_set_maps(limit=40):
        expected, expected_scores = grouping.decode_people(cand, heatmap, tags, tiles)
        inputs = [(cand, heatmap, tags), tuple(cuda.to_device(a) for a in (cand, heatmap, tags))]
        if torch.cuda.is_available():
            inputs.append(tuple(torch.from_numpy(a).cuda() for a in (cand, heatmap, tags)))
        for form, args in enumerate(inputs):
            persons, scores = decoder.decode(*args)
            assert same_bits(persons, expected) and same_bits(scores, expected_scores), (name, form)
        checked += 1
        people += len(expected)
    assert checked > 0 and people > 0


def mini_set_maps(limit: int):
    """``(file name, candidates, heatmap, tags, tiles)`` of mini-set images: network outputs rendered
    from the ground truth (benchmarks/render_outputs.py) through the torch decode."""
    from benchmarks.coco import CocoSet, rendered_decode

    mini = CocoSet.open(need(MINI / "images"), need(MINI / "person_keypoints.json"))
    annotations = mini.annotations()
    for image in mini.images[:limit]:
        outputs = rendered_decode(image, annotations.get(image.id, []))
        yield (image.path.name, outputs["candidates"][0], outputs["heatmap"][0], outputs["tags"][0],
               outputs["tiles"][0])


def same_bits(a, b) -> bool:
    a = np.ascontiguousarray(a, dtype=np.float32)
    b = np.ascontiguousarray(b, dtype=np.float32)
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


# ---------------------------------------------------------------------------------------------
# Suites (run in the subprocess)
# ---------------------------------------------------------------------------------------------


def _decoders():
    from runtime.cuda_grouping import DeviceDecoder

    return {threads: DeviceDecoder(threads_per_block=threads) for threads in THREADS}


def _threads_for(height: int, width: int) -> int:
    """The smallest block size that cuts a joint map into at most 4 tiles (several blocks per
    joint, so the reduction across blocks is exercised, without the simulator's per-block cost
    growing too much)."""
    from runtime.cuda_grouping import _PIXELS_PER_THREAD

    return next(t for t in THREADS if -(-height * width // (t * _PIXELS_PER_THREAD)) <= 4)


def suite_group() -> dict:
    """Grouping alone on tie-heavy candidates (duplicate keys, empty joints, K up to 30)."""
    from runtime import grouping
    from tests.test_grouping import as_candidates, random_topk

    decoder = _decoders()[16]
    thresholds = [(0.1, 1.0), (0.1, 1.0), (0.3, 1.0), (0.1, 0.6), (0.0, 2.5)]
    persons = 0
    for case in range(GROUP_CASES):
        seed = 600_000 + case
        cand = as_candidates(*random_topk(np.random.default_rng(seed)))
        det, tag = thresholds[case % len(thresholds)]
        expected = grouping.group(cand, det, tag)
        got = decoder.group(cand, det, tag)
        assert same_bits(got, expected), f"group: seed {seed}, thresholds {(det, tag)}"
        persons += len(expected)
    return {"cases": GROUP_CASES, "persons": persons}


def suite_decode() -> dict:
    """Group + score + refine (decode_people) on small tie-heavy maps, several block sizes."""
    from runtime import grouping
    from tests.test_grouping import adjusted_candidates, variant_maps

    decoders = _decoders()
    kinds = ["plain", "plain", "continuous", "negative", "far_tags", "plateau", "one_tag"]
    refined = 0
    for case in range(DECODE_CASES):
        seed = 700_000 + case
        rng = np.random.default_rng(seed)
        kind = kinds[case % len(kinds)]
        # far-apart tags make a person of nearly every candidate: keep those maps smallest
        height, width = MAP_SIZES[0 if kind == "far_tags" else case % len(MAP_SIZES)]
        heatmap, tags = variant_maps(rng, kind, height, width)
        cand = adjusted_candidates(heatmap, tags)
        expected, expected_scores = grouping.decode_people(cand, heatmap, tags, tiles_of(heatmap, tags))
        threads = _threads_for(height, width)
        persons, scores = decoders[threads].decode(cand, heatmap, tags)
        where = f"decode: seed {seed}, {kind} {height}x{width}, {threads} threads"
        assert persons.shape == expected.shape, f"{where}: {persons.shape} != {expected.shape}"
        assert same_bits(scores, expected_scores), f"{where}: scores"
        assert same_bits(persons, expected), f"{where}: first difference at {first_difference(persons, expected)}"
        refined += int((expected[:, :, 2] > 0).sum() - (grouping.group(cand)[:, :, 2] > 0).sum())
    return {"cases": DECODE_CASES, "refined": refined}


def suite_ties() -> dict:
    """Refine alone on hand-made ties: persons placed on the maps directly."""
    from runtime import grouping
    from tests.test_grouping import variant_maps

    decoders = _decoders()
    cases = chunked = 0

    def check(persons, heatmap, tags, where, threads=16):
        nonlocal cases
        expected = persons.copy()
        grouping.refine(expected, heatmap, tags, tiles_of(heatmap, tags))
        got = persons.copy()
        decoders[threads].refine(got, heatmap, tags)
        assert same_bits(got, expected), f"ties: {where}: first difference at {first_difference(got, expected)}"
        cases += 1
        return got

    # Whole maps of one value: every pixel ties, the first row-major pixel wins, in every block.
    for case, (height, width) in enumerate(MAP_SIZES[:3]):
        for value in (0.5, 0.0):
            heatmap = np.full((17, height, width), value, np.float32)
            tags = np.zeros((17, height, width, 2), np.float32)
            persons = np.zeros((2, 17, 5), np.float32)
            persons[:, 0, :3] = [[1, 1, 0.9], [width - 1, height - 1, 0.7]]
            check(persons, heatmap, tags, f"flat {value} {height}x{width}", THREADS[case])

    # Signed zeros: pixel 0 scores -0.0 (heatmap -0.0, tag distance 0) and later pixels +0.0
    # (heatmap 1, tag distance 1), one of them the first pixel of another thread, one in another
    # block; all tie, so pixel 0 wins and (val -0.0) nothing is written.
    heatmap = np.full((17, 12, 16), -0.0, np.float32)
    tags = np.zeros((17, 12, 16, 2), np.float32)
    for y, x in ((0, 5), (9, 3)):
        heatmap[:, y, x] = 1.0
        tags[:, y, x] = (1.0, 0.0)
    persons = np.zeros((1, 17, 5), np.float32)
    persons[0, 0, :3] = (0, 0, 0.9)
    assert (check(persons, heatmap, tags, "signed zeros")[0, 1:, 2] == 0).all()

    # Equal maxima in different blocks and threads: a later block holds an equal score.
    rng = np.random.default_rng(800_000)
    for case in range(len(MAP_SIZES)):
        height, width = MAP_SIZES[case]
        heatmap = (rng.integers(0, 4, (17, height, width)) * 0.25).astype(np.float32)
        tags = (rng.integers(0, 3, (17, height, width, 2)) * 0.5).astype(np.float32)
        persons = np.zeros((int(rng.integers(1, 5)), 17, 5), np.float32)
        for p in range(len(persons)):
            joints = rng.choice(17, size=int(rng.integers(1, 6)), replace=False)
            persons[p, joints, 0] = rng.integers(0, width, len(joints))
            persons[p, joints, 1] = rng.integers(0, height, len(joints))
            persons[p, joints, 2] = 0.5
        check(persons, heatmap, tags, f"quantized seed 800000 case {case}", _threads_for(height, width))

    # Odd values: NaN and infinite pixels, a person whose tag is NaN, one without any joint.
    heatmap, tags = variant_maps(np.random.default_rng(800_100), "plain", 12, 16)
    heatmap[3, 2, 5] = np.inf
    heatmap[4, 1:3, :] = np.nan
    tags[5, 0, 0] = np.nan
    tags[6, :, 4] = np.inf
    persons = np.zeros((4, 17, 5), np.float32)
    persons[0, 0, :3] = (4, 4, 0.9)
    persons[1, 5, :3] = (0, 0, 0.9)  # its tag is NaN: every score is NaN, pixel 0 is taken
    persons[3, 2, :3] = (6, 3, 0.4)
    check(persons, heatmap, tags, "NaN and inf")

    # More persons than one shared-memory chunk (64) miss the same joints.
    heatmap, tags = variant_maps(np.random.default_rng(800_200), "continuous", 6, 9)
    persons = np.zeros((70, 17, 5), np.float32)
    persons[:, 0, :3] = np.stack([np.arange(70) % 9, np.arange(70) % 6, np.full(70, 0.5)], axis=1)
    persons[:, 16, :3] = (2, 2, 0.5)
    check(persons, heatmap, tags, "70 persons")
    chunked += 1
    return {"cases": cases, "chunked": chunked}


def suite_api() -> dict:
    """Device-array inputs read in place, buffer reuse across shapes, empty results, errors."""
    from numba import cuda

    from runtime import grouping
    from runtime.cuda_grouping import DeviceDecoder, decode_people_device
    from tests.test_grouping import adjusted_candidates, random_maps

    decoder = DeviceDecoder(threads_per_block=16)
    cases = 0
    shapes = [(12, 16), (16, 20), (12, 16)]
    for case, (height, width) in enumerate(shapes):
        heatmap, tags = random_maps(np.random.default_rng(900_000 + case), height, width)
        cand = adjusted_candidates(heatmap, tags)
        expected = grouping.decode_people(cand, heatmap, tags, tiles_of(heatmap, tags))
        persons, scores = decoder.decode(cand, heatmap, tags)
        assert same_bits(persons, expected[0]) and same_bits(scores, expected[1]), f"api {case}"
        uploads, work = dict(decoder._uploads), (decoder._group_work, decoder._refine_work)
        # device arrays are read where they are: no upload buffer is used, made or replaced
        persons, scores = decoder.decode(*(cuda.to_device(a) for a in (cand, heatmap, tags)))
        assert same_bits(persons, expected[0]) and same_bits(scores, expected[1]), f"api {case}"
        assert decoder._uploads == uploads
        # work buffers are allocated once per shape
        assert (decoder._group_work, decoder._refine_work) == work
        cases += 2
    persons, scores = decode_people_device(cand, heatmap, tags)
    assert same_bits(persons, expected[0]) and same_bits(scores, expected[1])

    empty = decoder.decode(np.zeros((17, 30, 5), np.float32), heatmap, tags)
    assert empty[0].shape == (0, 17, 5) and empty[1].shape == (0,)
    assert decoder.group(np.zeros((17, 0, 5), np.float32)).shape == (0, 17, 5)
    nobody = np.zeros((0, 17, 5), np.float32)
    decoder.refine(nobody, heatmap, tags)
    for bad, match in [((np.zeros((16, 30, 5), np.float32), heatmap, tags), "candidates"),
                       ((cand, heatmap[:, :, :5], tags), "tags"),
                       ((cand, cuda.to_device(heatmap.astype(np.float64)), tags), "float32")]:
        try:
            decoder.decode(*bad)
        except ValueError as exc:
            assert match in str(exc), str(exc)
        else:
            raise AssertionError(f"no ValueError for bad {match}")
    return {"cases": cases + 2}


class _MapsBackend:
    """A stand-in GPU backend for the pipeline's device path: it returns small tie-heavy maps (one
    set per image of the batch, whatever the feed) from ``run(feed)`` on the host and, through
    ``DeviceIO`` buffers, from ``run(feed, on_device=True)`` — so the two PoseEstimator paths must
    give the same people. Only the glue is under test here; the backends' own device runs need a GPU."""

    name = "maps"
    max_batch = None

    def __init__(self, device_io, seed: int) -> None:
        from runtime.backends.base import io_specs
        from runtime.metadata import ModelMetadata

        self.metadata = ModelMetadata("w32", 512)
        self.inputs, self.outputs = io_specs(self.metadata)
        self.device_io, self.seed, self.calls = device_io, seed, 0

    def _maps(self, batch: int) -> dict[str, np.ndarray]:
        from tests.test_grouping import adjusted_candidates, variant_maps

        rng = np.random.default_rng(self.seed + self.calls)
        self.calls += 1
        made = [variant_maps(rng, "plain", 16, 20) for _ in range(batch)]
        return {"candidates": np.stack([adjusted_candidates(h, t) for h, t in made]),
                "heatmap": np.stack([h for h, _ in made]), "tags": np.stack([t for _, t in made]),
                "tiles": np.stack([tiles_of(h, t) for h, t in made])}

    def run(self, feed, on_device=False):
        host = self._maps(len(next(iter(feed.values()))))
        if not on_device:
            return host
        slot = self.device_io.slot({name: (a.shape, "uint8") for name, a in feed.items()},
                                   {name: (a.shape, "float32") for name, a in host.items()})
        def graph():  # stands in for the engine: writes the outputs on the DeviceIO stream
            for name, array in host.items():
                slot.outputs[name].copy_to_device(array, stream=self.device_io.stream)

        return self.device_io.execute(slot, feed, graph)


def suite_pipeline() -> dict:
    """PoseEstimator with a backend that keeps its outputs on the device (simulated) gives the
    people of the host path, image by image and in a batch, with grouping on the host (the
    default: candidates copied back, refine on the device) and on the device."""
    from runtime.backends.device import DeviceIO
    from runtime.pipeline import PoseEstimator

    images = [np.full((48 + 8 * i, 64, 3), 10 * i, np.uint8) for i in range(3)] * 2
    host_path = PoseEstimator(_MapsBackend(None, seed=900_000))
    assert host_path.decoder is None
    expected_all = host_path.batch(images) + [host_path(images[0])]
    host_path.backend.max_batch = 1
    expected_all += host_path.batch(images)
    people = 0
    for grouping in ("host", "device"):
        host_path.backend.calls = 0
        device_backend = _MapsBackend(DeviceIO(0), seed=900_000)
        device_path = PoseEstimator(device_backend, grouping=grouping)
        assert device_path.decoder is not None
        got_all = device_path.batch(images)
        if grouping == "host":  # the other entry points once (the device grouping's kernel is the same)
            got_all += [device_path(images[0])]
            device_backend.max_batch = 1  # a TensorRT profile's limit: pairs run one by one
            got_all += device_path.batch(images)
        for got, expected in zip(got_all, expected_all[:len(got_all)], strict=True):
            assert len(got) == len(expected), f"pipeline ({grouping} grouping): person count"
            for a, b in zip(got, expected):
                assert same_bits(a.keypoints, b.keypoints) and a.score == b.score, f"pipeline ({grouping}): person"
            people += len(got)
        if grouping == "host":
            times = device_path.times
            assert times.images == 2 * len(images) + 1 and min(times.upload, times.graph, times.group_refine,
                                                               times.download) >= 0
            # one buffer set per input shape: 3 pairs, 3 single images (one of them also run alone before)
            assert sorted(key[0][1][0] for key in device_backend.device_io.slots) == [1, 1, 1, 2, 2, 2]
    return {"images": len(expected_all), "people": people}


class _RenderedBackend(_MapsBackend):
    """A stand-in GPU backend whose outputs are the mini set's GT-rendered network outputs through
    the torch decode, one image per run (max_batch 1), in the order the images are given."""

    max_batch = 1

    def __init__(self, device_io, outputs: list[dict], input_size: int) -> None:
        from runtime.backends.base import io_specs
        from runtime.metadata import ModelMetadata

        self.metadata = ModelMetadata("w32", input_size)
        self.inputs, self.outputs = io_specs(self.metadata)
        self.device_io, self.queue = device_io, list(outputs)

    def _maps(self, batch: int) -> dict[str, np.ndarray]:
        return self.queue.pop(0)


MINI_IMAGES = 7
MINI_INPUT_SIZE = 32  # small maps (32 x 64 and up): the simulator runs each CUDA thread as a Python thread
MINI_THREADS = 32


def suite_mini() -> dict:
    """7 mini-set images through PoseEstimator: GT-rendered outputs (input size 32) left "on the
    device" (simulator), grouped on the host and on the device: the people of the CPU path."""
    from benchmarks.coco import CocoSet, rendered_decode
    from runtime import cuda_grouping
    from runtime.backends.device import DeviceIO
    from runtime.pipeline import PoseEstimator
    from runtime.preprocess import read_image

    # 64 pixels per search thread instead of 8: 8x fewer simulator threads; the result never depends
    # on the tiling (the other suites run the GPU's value of 8)
    cuda_grouping._PIXELS_PER_THREAD = 64
    mini = CocoSet.open(MINI / "images", MINI / "person_keypoints.json")
    annotations = mini.annotations()
    chosen = [image for image in mini.images if annotations.get(image.id)][:int(os.environ.get("MINI_IMAGES",
                                                                                             MINI_IMAGES))]
    outputs = [rendered_decode(image, annotations[image.id], MINI_INPUT_SIZE) for image in chosen]
    pictures = [read_image(image.path) for image in chosen]
    cpu = PoseEstimator(_RenderedBackend(None, outputs, MINI_INPUT_SIZE))
    expected = [cpu(picture) for picture in pictures]
    people = refined = 0
    for grouping in ("host", "device"):
        gpu = PoseEstimator(_RenderedBackend(DeviceIO(0), outputs, MINI_INPUT_SIZE), grouping=grouping)
        gpu.decoder.threads = MINI_THREADS
        for image, picture, want in zip(chosen, pictures, expected, strict=True):
            got = gpu(picture)
            assert len(got) == len(want), f"mini ({grouping}): {image.path.name}: {len(got)} != {len(want)} people"
            for index, (a, b) in enumerate(zip(got, want)):
                assert same_bits(a.keypoints, b.keypoints) and a.score == b.score, \
                    f"mini ({grouping}): {image.path.name}: person {index}"
            people += len(got)
    from runtime import grouping as host

    for out in outputs:
        cand = out["candidates"][0]
        decoded = host.decode_people(cand, out["heatmap"][0], out["tags"][0], out["tiles"][0])[0]
        refined += int((decoded[:, :, 2] > 0).sum() - (host.group(cand)[:, :, 2] > 0).sum())
    return {"images": len(chosen), "people": people, "refined": refined}


SASS_ARCHS = ("sm_87", "sm_89", "sm_90")


def _link_info(ptx: str, arch: str) -> dict:
    """Link one kernel's PTX to ``arch`` machine code with nvJitLink (cuda.core's Linker; no GPU
    needed) and read registers, stack and spills from ptxas' verbose log."""
    import re

    from cuda.core import Linker, LinkerOptions, ObjectCode

    linker = Linker(ObjectCode.from_ptx(ptx.encode()), options=LinkerOptions(arch=arch, verbose=True))
    try:
        cubin = linker.link("cubin")
        log = linker.get_info_log()
    finally:
        linker.close()

    def number(pattern):
        found = re.search(pattern, log)
        assert found, f"{arch}: no {pattern!r} in the linker's log:\n{log}"
        return int(found.group(1))

    return {"registers": number(r"Used (\d+) registers"), "stack": number(r"(\d+) bytes stack frame"),
            "spill_stores": number(r"(\d+) bytes spill stores"), "spill_loads": number(r"(\d+) bytes spill loads"),
            "cubin_bytes": len(cubin.code)}


def suite_ptx() -> dict:
    """Compile each kernel to PTX for compute capability 8.7 without a GPU, count the
    instructions that would break bit parity, and link the PTX to machine code for every
    architecture of SASS_ARCHS.  numba-cuda asks the current device for its compute capability
    when it compiles device functions; with no GPU here that question is answered with (8, 7)."""
    import importlib.util

    if importlib.util.find_spec("numba_cuda") is None:
        return {"skip": "numba-cuda is not installed (pip install 'hrnet-deploy[dev]' or '[gpu]'); numba's own, "
                        "older CUDA target is not what the gpu extra ships"}
    import numba
    from numba import cuda

    def probe(x):
        x[0] = 1.0

    try:
        cuda.compile_ptx(probe, (numba.float32[::1],), cc=(8, 7))
    except Exception as exc:  # no libNVVM / NVRTC
        return {"skip": f"cannot compile CUDA here ({type(exc).__name__}: {str(exc)[:120]}); "
                        "pip install 'numba-cuda[cu13]' brings libNVVM and NVRTC"}
    import types

    from numba.cuda import dispatcher

    dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=(8, 7))
    from runtime import cuda_grouping, grouping

    k, p, h, w = 30, 510, 24, 32
    f4, f8, i8, i1 = np.float32, np.float64, np.int64, np.int8

    def a(shape, dtype):
        return numba.typeof(np.zeros(shape, dtype))

    signatures = {
        "group": (a((17, k, 5), f4), numba.float64, numba.float64, a((p, 17, 5), f4), a(p, f4),
                  a((p, 17, 2), f4), a(p, i8), a((p, 2), f4), a(k, i8), a((k, p), f8), a((p, p), f8),
                  a((p, p), i1), a(p, i1), a(p, i1), a((2 * p, 2), i8), a((p, 2), i8), a(1, i8)),
        "person": (a((p, 17, 5), f4), a(1, i8), a((17, h, w, 2), f4), a(p, f4), a((p, 2), f4), a(p, i1),
                   a((17, p), i8), a(17, i8), a((17, p), i8)),
        "search": (a((17, h, w), f4), a((17, h, w, 2), f4), a((p, 2), f4), a((17, p), i8), a(17, i8),
                   a((17, p), i8)),
        "write": (a((p, 17, 5), f4), a((17, h, w), f4), a((17, p), i8), a(17, i8), a((17, p), i8)),
    }

    def compile_all(build):
        return {name: cuda.compile_ptx(getattr(build, name).py_func, signature, cc=(8, 7))[0]
                for name, signature in signatures.items()}

    def bad_counts(ptx):
        return {bad: ptx.count(bad) for bad in ("fma.", ".ftz", ".approx")}

    ptx = compile_all(cuda_grouping._device_build(cuda, False, disk_cache=False))
    sass = {name: {arch: _link_info(code, arch) for arch in SASS_ARCHS} for name, code in ptx.items()}
    # The control: the same build with plain products (what NVVM fuses).
    cuda_grouping._mul32_rn, cuda_grouping._mul64_rn = grouping._mul32, grouping._mul64
    plain = compile_all(cuda_grouping._device_build(cuda, False, disk_cache=False))
    return {"kernels": {name: bad_counts(code) for name, code in ptx.items()}, "sass": sass,
            "plain_products_fma": sum(bad_counts(code)["fma."] for code in plain.values())}


def first_difference(got: np.ndarray, expected: np.ndarray):
    if got.shape != expected.shape:
        return f"shapes {got.shape} vs {expected.shape}"
    diff = np.argwhere(got.view(np.uint32) != expected.view(np.uint32))
    if not len(diff):
        return None
    p, j = diff[0][:2]
    return f"person {p}, joint {j}: {got[p, j].tolist()} vs {expected[p, j].tolist()}"


SUITES = {"group": suite_group, "decode": suite_decode, "ties": suite_ties, "api": suite_api,
          "pipeline": suite_pipeline, "mini": suite_mini, "ptx": suite_ptx}


if __name__ == "__main__":
    # The simulator runs each CUDA thread as a Python thread; a short switch interval keeps
    # threads waiting on the simulator's locks from stalling for the default 5 ms.
    sys.setswitchinterval(5e-4)
    began = time.perf_counter()
    summary = SUITES[sys.argv[1]]()
    summary["seconds"] = round(time.perf_counter() - began, 1)
    print(json.dumps(summary))
