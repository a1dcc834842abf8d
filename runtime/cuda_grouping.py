"""Grouping (SPEC §7) and refine (SPEC §8) on a CUDA device, from the sources of runtime.grouping.

What runs where
---------------
``runtime.grouping`` holds grouping, scoring and the parts of refine once, as plain functions over
preallocated arrays (the refine search differs, see below).  This
module compiles those same functions with ``numba.cuda.jit(device=True)`` (through
``grouping.link``) and wraps them in four small kernels:

1. **group** (one thread): grouping is sequential (each joint's assignment depends on the
   persons made so far), so one thread runs ``_group`` for the image and writes the persons and
   their count into device buffers.
2. **person step** (one block): per person, the score (``_person_score``, taken before refine)
   and the tag refine compares against (``_prev_tag``); then, per joint, the list of persons
   that miss it (``_misses_joint``).
3. **search** (grid: pixel tiles x 17 joints): the dense part of refine.  Each thread loads a few
   pixels of one joint's heatmap and tag map once and scores them for every person on that
   joint's list (``_refine_score32``), keeping its own first maximum per person.  Across threads
   and blocks the first row-major maximum is found with an exact, order-free reduction: a score
   and its pixel are packed into one int64 key (see ``_score_key``) whose maximum is the
   highest score at the lowest pixel index, reduced with ``atomic.max`` first in shared memory,
   then into one key per (joint, person).  ``max`` is associative and commutative, so the
   result does not depend on scheduling.
4. **write** (a block per joint, a thread per person): ``_write_refined`` turns the winning
   pixel into the refined joint, exactly as the host does.

The maps are read where they are: numba device arrays and any object with
``__cuda_array_interface__`` (ONNX Runtime / TensorRT output buffers, CuPy, torch) are used in
place; NumPy inputs are copied into device buffers kept for the next call.  Only the people come
back: the count, then ``count x 17 x 5`` joints and ``count`` scores.

Bit-identical to the host, and FMA contraction
----------------------------------------------
Parity needs every float multiply and add rounded on its own.  numba's CPU target never fuses
them without fastmath; NVVM does: ``fastmath=False`` in numba-cuda keeps flush-to-zero and
approximate division and square root off, but NVVM's ``-fma`` option (on by default, not
exposed by numba-cuda) still contracts ``a * b + c`` into one ``fma.rn`` instruction, and the
``np.float32`` casts around a product do not stop it (they are no-ops to the compiler).  So
runtime.grouping routes every product that feeds an addition through ``_mul32`` / ``_mul64``,
and this build replaces them with ``libdevice.fmul_rn`` / ``dmul_rn`` (CUDA's ``__fmul_rn`` /
``__dmul_rn``, documented as never merged into a multiply-add), which compile to ``mul.rn.f32``
/ ``mul.rn.f64``; ptxas does not contract PTX arithmetic with an explicit rounding mode either.
``tests/test_cuda_grouping.py::test_kernels_compile_and_link_without_fma_or_spills`` compiles
every kernel to PTX (libNVVM, no GPU) and checks that no ``fma``, ``.ftz`` or ``.approx``
instruction is left, and that the same build with plain products does have FMAs (so the check
cannot pass vacuously).  The fused multiply-adds that ptxas itself emits inside the correctly
rounded ``div.rn.f32`` and ``sqrt.rn`` sequences are exact by construction.  The simulator
(``NUMBA_ENABLE_CUDASIM=1``) runs these functions as Python on NumPy scalars, where nothing is
ever fused, so it cannot show any of this; results on real hardware are checked by the ``gpu``
test.

The device refine search is not the host's, and what proves them equal
-----------------------------------------------------------------------
Both return, per (joint, person), the first row-major maximum of ``hm - round(||tag - prev||)``
(SPEC §8); they differ in how they find it, because the hardware rewards opposite things.
The host's search (``grouping.HOST_REFINE``) is sequential and data-dependent: per joint it
builds tag buckets of the graph's tile summary in freshly allocated arrays, sorts them
(``np.argsort``) and then lets each person visit a few tiles in the order of exact bounds,
stopping early.  Allocation, sorting and NumPy array functions are not available in CUDA
device code, and the part that would port (one thread per (joint, person) walking its tiles)
gives a few thousand threads of divergent, serial, uncoalesced work on a device built for
hundreds of thousands of threads: the dense pass here reads each map once, coalesced, scores
every pixel against every person on the joint's list with every thread busy, and reduces with
an order-free ``atomic.max`` (on the device the graph's ``tiles`` output is not read).  The two
are proved equal, bit for bit, by the simulator suites of ``tests/test_cuda_grouping.py``
(``decode``: group + score + refine on tie-heavy
maps of seven kinds; ``ties``: flat maps, signed zeros, equal maxima in other threads and
blocks, NaN and infinities, more persons than one shared-memory chunk), by the ``gpu`` test on
the mini set's maps on real hardware, and score by score by
``tests/test_gpu_setup.py::test_device_refine_score_in_float32_equals_the_host_float64_rounding``;
the host search itself is held to the NumPy transcription of SPEC §8 in
``tests/test_grouping.py``.  Mutation tried: the search kernel keeping the last of equal
scores (``score >= best``) fails the ``ties`` suite.

Float64 on the device, and why
------------------------------
Consumer GPUs and Jetson run float64 at 1/32 to 1/64 of the float32 rate, so the device keeps
float64 only where bit parity with the reference needs it:

* **grouping** (``_group``, one thread, and only with ``--grouping device``): tag distances, their
  half-to-even rounding, the ``< 1`` test and the munkres costs are float64, because mmpose
  assembles candidates in float64 (SPEC §7); a float32 distance rounds differently at the .5 and
  1.0 boundaries and changes pairings.  A few hundred operations per image.
* **writing a refined joint** (``_write_refined``): ``+ 0.5`` and the ``±0.25`` adjust in float64
  as the reference does, 17 x persons operations.
* **not the refine search**, the per-pixel x per-person hot loop: the device scores with
  ``_refine_score32``, all float32, where the host's ``_refine_score`` rounds in float64 (both
  on the same ``grouping._tag_distance``).  It equals the host's float64 rounding
  bit for bit: ``round(dist)`` of a float32 below 2**23 is exact in float32 with the add/subtract
  2**23 trick (above, every float32 is an integer already), and ``h - r`` rounded once to float32
  equals the float64 difference rounded to float32 (double rounding is harmless for a
  subtraction when the wider format has at least 2p + 2 bits: 53 >= 50).  Checked against the
  host on every simulator suite and on edge values in tests/test_gpu_setup.py.

Under the simulator the two products keep their plain definitions (the libdevice functions have
no Python implementation) and the float bit pattern is read with NumPy instead of
``libdevice.float_as_int``; everything else is the code the GPU runs.
"""

from __future__ import annotations

import functools
import hashlib
import os
import types
import warnings
from pathlib import Path

import numpy as np

from runtime import grouping
from runtime.errors import UserError

# The cores the kernels below call by name.  _device_build compiles the kernels in a namespace in
# which each of these names is the core's device-compiled version (grouping.link).
from runtime.grouping import (
    _group,
    _misses_joint,
    _person_score,
    _prev_tag,
    _tag_distance,
    _write_refined,
)

# numba.cuda and numba.cuda.libdevice as the kernels see them: importing numba.cuda decides for
# the whole process whether the simulator runs, so _device_build puts the modules into the
# kernels' namespace when the first decoder is made, never at import.
cuda = libdevice = None

__all__ = ["DeviceDecoder", "decode_people_device"]

NUM_JOINTS = grouping.NUM_JOINTS

# Smallest int64: the key of "no pixel yet" (every real key is larger, see _score_key).
_KEY_NONE = -9223372036854775808
_LOW32 = 4294967295
_HIGH32 = 4294967296
# Pixels each search thread loads (held in registers while it scores every person).
_PIXELS_PER_THREAD = 8
# Persons whose block keys sit in shared memory at a time.
_PERSON_CHUNK = 64
_INSTALL = ("pip install 'hrnet-deploy[gpu]' (CUDA 13 drivers) or 'hrnet-deploy[gpu-cu12]' (CUDA 12, "
            "JetPack 6)")
# Where compiled kernels are kept between processes (one folder per source and numba-cuda version).
KERNEL_CACHE_ENV = "HRNET_DEPLOY_KERNEL_CACHE"


# ---------------------------------------------------------------------------------------------
# Device functions and kernels (plain Python; _device_build compiles clones of them)
# ---------------------------------------------------------------------------------------------


def _mul32_rn(a, b):
    return libdevice.fmul_rn(a, b)


def _mul64_rn(a, b):
    return libdevice.dmul_rn(a, b)


_TWO23 = np.float32(8388608.0)


def _refine_score32(h, t0, t1, p0, p1):
    """``grouping._refine_score`` with the rounding and the subtraction in float32 (see the
    module docstring for why the bits are the same)."""
    dist = _tag_distance(t0, t1, p0, p1)
    if dist < _TWO23:
        dist = np.float32(np.float32(dist + _TWO23) - _TWO23)
    return np.float32(h - dist)


def _float_bits(x):
    """The bit pattern of float32 ``x`` as an int32 (NumPy: the simulator's version)."""
    return int(np.float32(x).view(np.int32))


def _float_bits_libdevice(x):
    """``_float_bits`` on the GPU."""
    return libdevice.float_as_int(x)


def _score_key(score, at):
    """int64 key that orders (score, pixel) as refine's argmax does: higher score first, then
    the lower row-major pixel index ``at`` (< 2**32).

    The high 32 bits are the float32 bit pattern made order-preserving as a signed integer
    (negative floats get their magnitude bits flipped); -0.0 counts as +0.0 because the host's
    ``score > best`` does not tell them apart.  The low 32 bits are ``2**32 - 1 - at``.  NaN
    and -inf never reach here (no pixel scoring them is ever chosen), so every key is larger
    than ``_KEY_NONE``.
    """
    bits = 0
    if score != 0.0:
        bits = _float_bits(score)
        if bits < 0:
            bits = bits ^ 0x7FFFFFFF
    return np.int64(bits) * _HIGH32 + (_LOW32 - at)


def _key_pixel(key):
    """The pixel of a key; pixel 0 for ``_KEY_NONE`` (the host's start value of the search)."""
    if key == _KEY_NONE:
        return 0
    return _LOW32 - (key & _LOW32)


def _group_kernel(cand, det_thr, tag_thr, persons, keys, tag_list, tag_len, means, sel, dist,
                  C, marked, row_cov, col_cov, path, pairs, count):
    if cuda.grid(1) == 0:
        count[0] = _group(cand, det_thr, tag_thr, persons, keys, tag_list,
                          tag_len, means, sel, dist, C, marked, row_cov, col_cov, path, pairs)


def _person_kernel(persons, count, tags, scores, prev, has_prev, who, n_who, best_key):
    t = cuda.threadIdx.x
    n_threads = cuda.blockDim.x
    n_persons = count[0]
    for p in range(t, n_persons, n_threads):
        scores[p] = _person_score(persons, p)
        has_prev[p] = 1 if _prev_tag(persons, p, tags, prev) > 0 else 0
    cuda.syncthreads()
    for j in range(t, persons.shape[1], n_threads):
        n = 0
        for p in range(n_persons):
            if _misses_joint(persons, p, j, has_prev):
                who[j, n] = p
                best_key[j, n] = _KEY_NONE
                n += 1
        n_who[j] = n


def _search_kernel(heatmap, tags, prev, who, n_who, best_key):
    j = cuda.blockIdx.y
    n = n_who[j]
    if n == 0:  # the same for the whole block
        return
    t = cuda.threadIdx.x
    n_threads = cuda.blockDim.x
    width = heatmap.shape[2]
    n_pixels = heatmap.shape[1] * width

    # This thread's pixels: row-major, n_threads apart (neighbouring threads read neighbours).
    h = cuda.local.array(_PIXELS_PER_THREAD, np.float32)
    g0 = cuda.local.array(_PIXELS_PER_THREAD, np.float32)
    g1 = cuda.local.array(_PIXELS_PER_THREAD, np.float32)
    at = cuda.local.array(_PIXELS_PER_THREAD, np.int64)
    m = 0
    first = cuda.blockIdx.x * n_threads * _PIXELS_PER_THREAD + t
    for i in range(_PIXELS_PER_THREAD):
        pixel = first + i * n_threads
        if pixel < n_pixels:
            y = pixel // width
            x = pixel - y * width
            h[m] = heatmap[j, y, x]
            g0[m] = tags[j, y, x, 0]
            g1[m] = tags[j, y, x, 1]
            at[m] = pixel
            m += 1

    block_key = cuda.shared.array(_PERSON_CHUNK, np.int64)
    for c0 in range(0, n, _PERSON_CHUNK):
        chunk = min(_PERSON_CHUNK, n - c0)
        cuda.syncthreads()  # every thread is done with the previous chunk's keys
        for c in range(t, chunk, n_threads):
            block_key[c] = _KEY_NONE
        cuda.syncthreads()
        for k in range(chunk):
            c = (k + t) % chunk  # neighbouring threads update different keys
            p = who[j, c0 + c]
            p0 = prev[p, 0]
            p1 = prev[p, 1]
            # this thread's first maximum, as the host scans: strict '>' in pixel order, so
            # NaN and -inf never win and equal scores (-0.0 == +0.0 included) keep the first
            best = np.float32(-np.inf)
            best_at = -1
            for i in range(m):
                score = _refine_score32(h[i], g0[i], g1[i], p0, p1)
                if score > best:
                    best = score
                    best_at = at[i]
            if best_at >= 0:
                cuda.atomic.max(block_key, c, _score_key(best, best_at))
        cuda.syncthreads()
        for c in range(t, chunk, n_threads):
            if block_key[c] != _KEY_NONE:
                cuda.atomic.max(best_key, (j, c0 + c), block_key[c])


def _write_kernel(persons, heatmap, who, n_who, best_key):
    j = cuda.blockIdx.x
    for q in range(cuda.threadIdx.x, n_who[j], cuda.blockDim.x):
        _write_refined(j, who[j, q], _key_pixel(best_key[j, q]), persons, heatmap)


# ---------------------------------------------------------------------------------------------
# The device build
# ---------------------------------------------------------------------------------------------


def import_cuda():
    """``(numba.cuda, simulator?)``, or a UserError that says what is missing."""
    try:
        import numba
        from numba import cuda
    except Exception as exc:  # ImportError, or numba-cuda failing at import (numpy >= 2.5)
        raise UserError(f"numba.cuda cannot be imported ({exc}): {_INSTALL}") from None
    if numba.config.ENABLE_CUDASIM:
        return cuda, True
    try:
        available = cuda.is_available()
    except Exception:
        available = False
    if not available:
        raise UserError("CUDA post-processing needs an NVIDIA GPU with its driver and "
                        f"numba-cuda; none is usable here ({_INSTALL}; or set "
                        "NUMBA_ENABLE_CUDASIM=1 to run the kernels on the slow CPU simulator)")
    return cuda, False


@functools.cache
def _build() -> types.SimpleNamespace:
    """The device build for this process (compiled when a kernel is first launched)."""
    return _device_build(*import_cuda())


def _device_build(cuda, simulator: bool, disk_cache: bool = True) -> types.SimpleNamespace:
    """Cores of runtime.grouping and the kernels above, as ``numba.cuda.jit`` dispatchers.

    Nothing is compiled here: numba-cuda compiles each kernel (and the device functions it
    calls) for the argument types and the current GPU at its first launch, or loads it from the
    on-disk cache (``kernel_cache_dir()``) that the first compile wrote.
    """
    namespace = grouping.core_namespace()
    namespace.update(cuda=cuda, _KEY_NONE=_KEY_NONE, _LOW32=_LOW32, _HIGH32=_HIGH32, _TWO23=_TWO23,
                     _PIXELS_PER_THREAD=_PIXELS_PER_THREAD, _PERSON_CHUNK=_PERSON_CHUNK)
    device = cuda.jit(device=True)
    functions = grouping.by_name(grouping.SHARED_CORES)
    if simulator:
        # the libdevice products have no Python implementation: the plain products stay (the
        # simulator runs NumPy scalars, which are never fused)
        functions["_float_bits"] = _float_bits
    else:
        from numba.cuda import libdevice

        namespace["libdevice"] = libdevice
        functions.update(_mul32=_mul32_rn, _mul64=_mul64_rn, _float_bits=_float_bits_libdevice)
    functions.update(_refine_score32=_refine_score32, _score_key=_score_key, _key_pixel=_key_pixel)
    grouping.link(functions, device, namespace)
    kernels = {name: grouping.link({fn.__name__: fn}, cuda.jit, namespace)[fn.__name__]
               for name, fn in (("group", _group_kernel), ("person", _person_kernel),
                                ("search", _search_kernel), ("write", _write_kernel))}
    if not simulator and disk_cache:
        for kernel in kernels.values():
            _cache_on_disk(kernel)
    from numba.cuda.cudadrv import devicearray

    return types.SimpleNamespace(cuda=cuda, simulator=simulator, namespace=namespace,
                                 is_device_array=devicearray.is_cuda_ndarray, **kernels)


# ---------------------------------------------------------------------------------------------
# Kernels cached on disk
# ---------------------------------------------------------------------------------------------


def kernel_cache_root() -> Path:
    """``$HRNET_DEPLOY_KERNEL_CACHE``, else ``~/.cache/hrnet-deploy/kernels``."""
    root = os.environ.get(KERNEL_CACHE_ENV)
    return Path(root) if root else Path.home() / ".cache" / "hrnet-deploy" / "kernels"


def kernel_source_key() -> str:
    """sha256 of what the kernels are compiled from: this file, runtime/grouping.py (whose cores
    the kernels inline) and the numba-cuda version.  numba's own cache index adds the argument
    types, the compute capability and the CUDA runtime version; its file stamp alone would miss an
    edit of runtime/grouping.py, hence this key in the folder name and as the stamp."""
    import importlib.metadata

    digest = hashlib.sha256()
    for path in (Path(__file__), Path(grouping.__file__)):
        digest.update(path.read_bytes())
    try:
        digest.update(importlib.metadata.version("numba-cuda").encode())
    except importlib.metadata.PackageNotFoundError:
        digest.update(b"numba-cuda absent")
    return digest.hexdigest()


def kernel_cache_dir() -> Path:
    return kernel_cache_root() / kernel_source_key()[:24]


@functools.cache
def _cache_class():
    """A numba-cuda ``CUDACache`` whose files live in ``kernel_cache_dir()`` (not beside the
    source, which may be read-only) and whose stamp is ``kernel_source_key()``."""
    from numba.cuda.core.caching import _CacheLocator
    from numba.cuda.dispatcher import CUDACache, CUDACacheImpl

    class KernelLocator(_CacheLocator):
        def __init__(self, py_func, py_file):
            self._lineno = py_func.__code__.co_firstlineno
            self._path = str(kernel_cache_dir())
            self._stamp = kernel_source_key()

        def get_cache_path(self):
            return self._path

        def get_source_stamp(self):
            return self._stamp

        def get_disambiguator(self):
            return str(self._lineno)

        @classmethod
        def from_function(cls, py_func, py_file):
            return cls(py_func, py_file)

    class KernelCacheImpl(CUDACacheImpl):
        _locator_classes = [KernelLocator]

    class KernelCache(CUDACache):
        _impl_class = KernelCacheImpl

    return KernelCache


def _cache_on_disk(kernel) -> None:
    """Give one kernel dispatcher the on-disk cache: a later process loads it instead of compiling
    (about 15 s for the four kernels).  Where the cache folder cannot be written, kernels are
    compiled per process as before."""
    try:
        kernel_cache_dir().mkdir(parents=True, exist_ok=True)
        kernel._cache = _cache_class()(kernel.py_func)
    except OSError:
        pass


# ---------------------------------------------------------------------------------------------
# The probe: is CUDA usable for these kernels, and if not, what exactly is missing
# ---------------------------------------------------------------------------------------------


def _package_major(*names: str) -> int | None:
    import importlib.metadata

    for name in names:
        try:
            return int(importlib.metadata.version(name).split(".")[0])
        except (importlib.metadata.PackageNotFoundError, ValueError):
            continue
    return None


def check_cuda_majors(driver: tuple[int, int] | None, toolkit_major: int | None) -> None:
    """A UserError when the installed CUDA wheels (cuda-bindings, NVRTC) are for a newer CUDA
    major than the driver runs: CUDA 13 wheels need a CUDA 13 driver (>= 580)."""
    if driver is None or toolkit_major is None or driver[0] >= toolkit_major:
        return
    extra = "gpu-cu12" if driver[0] == 12 else "gpu"
    raise UserError(f"the NVIDIA driver supports CUDA {driver[0]}.{driver[1]}, but the installed numba-cuda "
                    f"wheels are for CUDA {toolkit_major}: pip install 'hrnet-deploy[{extra}]' (or upgrade "
                    f"the driver)")


def explain_cuda_failure(exc: BaseException) -> str:
    """One line naming what a failed kernel compile or launch lacks, and the extra that installs it."""
    text = " ".join(str(exc).split())[:200]
    kind = type(exc).__name__
    lowered = f"{kind} {text}".lower()
    if "nvrtc" in lowered:
        what = "NVRTC (libnvrtc) is not installed, so the CUDA kernels cannot be compiled"
    elif "nvvm" in lowered:
        what = "libNVVM is not installed, so the CUDA kernels cannot be compiled"
    elif "nvjitlink" in lowered:
        what = "nvJitLink is not installed, so the CUDA kernels cannot be linked"
    elif "driver" in lowered or "cuinit" in lowered or "libcuda" in lowered:
        what = "the NVIDIA driver is missing or cannot start"
    elif "ptx" in lowered and ("version" in lowered or "unsupported" in lowered):
        what = "the driver is older than the CUDA major the kernels were compiled with"
    else:
        what = "a CUDA kernel could not be compiled or run"
    return f"{what} ({kind}: {text}): {_INSTALL}"


def probe() -> None:
    """Load every kernel (from the disk cache, else compile) and run one tiny decode.

    Called when a GPU backend opens, so a box without a usable driver, NVRTC/NVVM or with wheels
    for the wrong CUDA major fails at once with one line, not with a traceback at the first
    image.  A no-op under the simulator.
    """
    dev = _build()
    if dev.simulator:
        return
    try:
        from numba.cuda.cudadrv import driver

        check_cuda_majors(driver.get_version(), _package_major("cuda-bindings"))
        decoder = DeviceDecoder()
        cand = np.zeros((NUM_JOINTS, 1, 5), np.float32)
        cand[0, 0] = (1.0, 1.0, 0.5, 0.0, 0.0)  # one person, one joint: refine searches a 4x4 map
        heatmap = np.zeros((NUM_JOINTS, 4, 4), np.float32)
        persons, _ = decoder.decode(cand, heatmap, np.zeros(heatmap.shape + (2,), np.float32))
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - numba-cuda, cuda-bindings and pathfinder raise many types
        raise UserError(explain_cuda_failure(exc)) from None
    if persons.shape != (1, NUM_JOINTS, 5):
        raise UserError(f"the CUDA probe decoded {persons.shape[0]} persons from one candidate (expected 1): "
                        f"the GPU or its driver computes wrongly; {_INSTALL}")


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


class DeviceDecoder:
    """Runs grouping and refine on the device; work buffers are kept and reused per shape.

    ``stream``: a numba stream (``numba.cuda.stream()``, or ``numba.cuda.external_stream(ptr)``
    for the stream a TensorRT engine or ONNX Runtime session writes its outputs on); 0 is the
    default stream.  ``threads_per_block`` sets the block size of the person, search and write
    kernels (small values make more blocks; the result never depends on it).

    Example::

        decoder = DeviceDecoder()
        persons, scores = decoder.decode(outputs["candidates"][0], outputs["heatmap"][0],
                                         outputs["tags"][0])
    """

    def __init__(self, stream=0, threads_per_block: int = 128):
        if threads_per_block < 1:
            raise ValueError(f"threads_per_block must be >= 1, got {threads_per_block}")
        self._dev = _build()
        self._cuda = self._dev.cuda
        self.stream = stream
        self.threads = int(threads_per_block)
        self._group_work = None  # buffers for one candidate count K
        self._refine_work = None  # buffers for one person capacity
        self._uploads = {}  # name -> device copy of the last NumPy input of that name

    # -- inputs ------------------------------------------------------------------------------

    def _device_input(self, array, name):
        """A float32 device view of ``array``: device arrays as they are, NumPy copied over."""
        cuda = self._cuda
        if self._dev.is_device_array(array):
            view = array
        elif hasattr(array, "__cuda_array_interface__"):
            view = cuda.as_cuda_array(array)
        else:
            host = np.ascontiguousarray(array, dtype=np.float32)
            view = self._uploads.get(name)
            if view is None or view.shape != host.shape:
                view = cuda.device_array(host.shape, np.float32, stream=self.stream)
                self._uploads[name] = view
            view.copy_to_device(host, stream=self.stream)
            return view
        if np.dtype(view.dtype) != np.float32:
            raise ValueError(f"{name} must be float32 on the device, got {np.dtype(view.dtype)}")
        return view

    def _candidates(self, candidates):
        cand = self._device_input(candidates, "candidates")
        if len(cand.shape) != 3 or cand.shape[0] != NUM_JOINTS or cand.shape[2] != 5:
            raise ValueError(f"group: candidates must be [17, K, 5], got shape {tuple(cand.shape)}")
        return cand

    def _maps(self, heatmap, tags):
        heat = self._device_input(heatmap, "heatmap")
        if len(heat.shape) != 3 or heat.shape[0] != NUM_JOINTS or 0 in heat.shape:
            raise ValueError(f"refine: heatmap must be [17, H, W], got shape {tuple(heat.shape)}")
        tag = self._device_input(tags, "tags")
        if tuple(tag.shape) != tuple(heat.shape) + (2,):
            raise ValueError(f"refine: tags must be {tuple(heat.shape) + (2,)}, got shape "
                             f"{tuple(tag.shape)}")
        if heat.shape[1] * heat.shape[2] > _LOW32:
            raise ValueError(f"refine: maps of {heat.shape[1]}x{heat.shape[2]} pixels are too large")
        return heat, tag

    # -- work buffers (allocated when the shape changes, otherwise reused) --------------------

    def _group_buffers(self, n_k):
        work = self._group_work
        if work is None or work.n_k != n_k:
            cuda, stream = self._cuda, self.stream
            n_max = NUM_JOINTS * n_k
            n = max(n_k, n_max)

            def empty(shape, dtype):
                return cuda.device_array(shape, dtype, stream=stream)

            work = types.SimpleNamespace(
                n_k=n_k, persons=empty((n_max, NUM_JOINTS, 5), np.float32),
                keys=empty(n_max, np.float32), tag_list=empty((n_max, NUM_JOINTS, 2), np.float32),
                tag_len=empty(n_max, np.int64), means=empty((n_max, 2), np.float32),
                sel=empty(n_k, np.int64), dist=empty((n_k, n_max), np.float64),
                C=empty((n, n), np.float64), marked=empty((n, n), np.int8),
                row_cov=empty(n, np.int8), col_cov=empty(n, np.int8),
                path=empty((2 * n, 2), np.int64), pairs=empty((n, 2), np.int64),
                count=empty(1, np.int64))
            self._group_work = work
        return work

    def _refine_buffers(self, capacity):
        work = self._refine_work
        if work is None or work.capacity != capacity:
            cuda, stream = self._cuda, self.stream

            def empty(shape, dtype):
                return cuda.device_array(shape, dtype, stream=stream)

            work = types.SimpleNamespace(
                capacity=capacity, scores=empty(capacity, np.float32),
                prev=empty((capacity, 2), np.float32), has_prev=empty(capacity, np.int8),
                who=empty((NUM_JOINTS, capacity), np.int64), n_who=empty(NUM_JOINTS, np.int64),
                best_key=empty((NUM_JOINTS, capacity), np.int64))
            self._refine_work = work
        return work

    # -- launches ------------------------------------------------------------------------------

    def _launch(self, kernel, grid, block, *args):
        with warnings.catch_warnings():
            # numba-cuda warns about grids below 128 blocks; group, person and write are small
            # on purpose
            warnings.filterwarnings("ignore", message="Grid size .* low occupancy")
            kernel[grid, block, self.stream](*args)

    def _launch_group(self, cand, detection_threshold, tag_threshold):
        work = self._group_buffers(cand.shape[1])
        self._launch(self._dev.group, 1, 1, cand, float(detection_threshold),
                     float(tag_threshold), work.persons, work.keys, work.tag_list, work.tag_len,
                     work.means, work.sel, work.dist, work.C, work.marked, work.row_cov,
                     work.col_cov, work.path, work.pairs, work.count)
        return work

    def _launch_refine(self, persons, count, heat, tag):
        """Scores (before refine) and refine of the ``count`` persons in device ``persons``."""
        dev, threads = self._dev, self.threads
        work = self._refine_buffers(persons.shape[0])
        self._launch(dev.person, 1, threads, persons, count, tag, work.scores, work.prev,
                     work.has_prev, work.who, work.n_who, work.best_key)
        tiles = -(-(heat.shape[1] * heat.shape[2]) // (threads * _PIXELS_PER_THREAD))
        self._launch(dev.search, (tiles, NUM_JOINTS), threads, heat, tag, work.prev, work.who,
                     work.n_who, work.best_key)
        self._launch(dev.write, NUM_JOINTS, threads, persons, heat, work.who, work.n_who,
                     work.best_key)
        return work

    def _copy_back(self, persons, count, scores=None):
        """``count`` persons (and their scores) to the host: the only device -> host copies."""
        stream = self.stream
        host_count = count.copy_to_host(stream=stream)
        self._synchronize()
        n = int(host_count[0])
        if n == 0:
            out = np.zeros((0, NUM_JOINTS, 5), np.float32)
            return out if scores is None else (out, np.zeros(0, np.float32))
        out = persons[:n].copy_to_host(stream=stream)
        host_scores = None if scores is None else scores[:n].copy_to_host(stream=stream)
        self._synchronize()
        return out if scores is None else (out, host_scores)

    def _synchronize(self):
        if not isinstance(self.stream, int):  # copies on the default stream (0) are blocking
            self.stream.synchronize()

    def synchronize(self) -> None:
        """Wait for everything launched on the decoder's stream (for timing the stages)."""
        if isinstance(self.stream, int):
            self._cuda.synchronize()
        else:
            self.stream.synchronize()

    # -- the API, mirroring runtime.grouping -------------------------------------------------

    def group(self, candidates, detection_threshold: float = 0.1,
              tag_threshold: float = 1.0) -> np.ndarray:
        """Like ``grouping.group``: persons float32 ``[P, 17, 5]`` from candidates ``[17, K, 5]``."""
        cand = self._candidates(candidates)
        if cand.shape[1] == 0:
            return np.zeros((0, NUM_JOINTS, 5), np.float32)
        work = self._launch_group(cand, detection_threshold, tag_threshold)
        return self._copy_back(work.persons, work.count)

    def decode(self, candidates, heatmap, tags, detection_threshold: float = 0.1,
               tag_threshold: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Like ``grouping.decode_people``: group, score, refine; returns ``(persons, scores)``."""
        return self.collect(self.launch(candidates, heatmap, tags, detection_threshold, tag_threshold))

    def launch(self, candidates, heatmap, tags, detection_threshold: float = 0.1,
               tag_threshold: float = 1.0):
        """``decode`` without the copy back: queue the kernels on the stream, return a job for
        ``collect``. The decoder's work buffers hold one job: collect it before the next launch."""
        cand = self._candidates(candidates)
        heat, tag = self._maps(heatmap, tags)
        if cand.shape[1] == 0:
            return None
        work = self._launch_group(cand, detection_threshold, tag_threshold)
        return work, self._launch_refine(work.persons, work.count, heat, tag)

    def launch_host_grouped(self, candidates, heatmap, tags, detection_threshold: float = 0.1,
                            tag_threshold: float = 1.0):
        """``launch`` with grouping on the host (``--grouping host``): only the candidates
        (17 x K x 5 float32, about 10 KB) come to the host, ``grouping.group`` (njit) groups them,
        the persons go back up and score + refine run on the device on the maps where they lie.
        Grouping is sequential: one CPU core runs it far faster than one GPU thread."""
        heat, tag = self._maps(heatmap, tags)
        if self._dev.is_device_array(candidates) or hasattr(candidates, "__cuda_array_interface__"):
            cand = self._candidates(candidates).copy_to_host(stream=self.stream)
            self._synchronize()
        else:
            cand = np.ascontiguousarray(candidates, dtype=np.float32)
            if cand.ndim != 3 or cand.shape[0] != NUM_JOINTS or cand.shape[2] != 5:
                raise ValueError(f"group: candidates must be [17, K, 5], got shape {cand.shape}")
        persons = grouping.group(cand, detection_threshold, tag_threshold)
        if len(persons) == 0:
            return None
        cuda, stream = self._cuda, self.stream
        on_device = cuda.to_device(persons, stream=stream)
        count = cuda.to_device(np.array([len(persons)], np.int64), stream=stream)
        refined = self._launch_refine(on_device, count, heat, tag)
        return types.SimpleNamespace(persons=on_device, count=count), refined

    def collect(self, job) -> tuple[np.ndarray, np.ndarray]:
        """The people of a launched job on the host: ``(persons [P, 17, 5], scores [P])``."""
        if job is None:
            return np.zeros((0, NUM_JOINTS, 5), np.float32), np.zeros(0, np.float32)
        work, refined = job
        return self._copy_back(work.persons, work.count, refined.scores)

    def refine(self, persons: np.ndarray, heatmap, tags) -> None:
        """Like ``grouping.refine``: fill missing joints of host ``persons [P, 17, 5]`` in place."""
        if not isinstance(persons, np.ndarray) or persons.ndim != 3 or persons.shape[1:] != (
                NUM_JOINTS, 5):
            raise ValueError("refine: persons must be a [P, 17, 5] array")
        heat, tag = self._maps(heatmap, tags)
        if persons.shape[0] == 0:
            return
        cuda, stream = self._cuda, self.stream
        on_device = cuda.to_device(np.ascontiguousarray(persons, dtype=np.float32), stream=stream)
        count = cuda.to_device(np.array([persons.shape[0]], np.int64), stream=stream)
        self._launch_refine(on_device, count, heat, tag)
        persons[...] = self._copy_back(on_device, count)


def decode_people_device(candidates, heatmap, tags, detection_threshold: float = 0.1,
                         tag_threshold: float = 1.0, decoder: DeviceDecoder | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
    """``grouping.decode_people`` on the device: ``(persons [P, 17, 5], scores [P])`` float32.

    ``candidates [17, K, 5]``, ``heatmap [17, H, W]`` and ``tags [17, H, W, 2]`` (float32) may be
    NumPy arrays or device arrays (numba device arrays, anything with
    ``__cuda_array_interface__``), which are read in place.  Pass a ``DeviceDecoder`` to reuse
    its buffers (and stream) across calls; without one, a new decoder allocates them.  Raises
    ``UserError`` when no CUDA device (nor the simulator) is usable.
    """
    decoder = decoder if decoder is not None else DeviceDecoder()
    return decoder.decode(candidates, heatmap, tags, detection_threshold, tag_threshold)
