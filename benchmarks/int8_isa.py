"""python benchmarks/int8_isa.py — which integer paths of the CPU ONNX Runtime uses for an INT8 file, and what each is worth.

ONNX Runtime's CPU kernels (MLAS) pick their integer code by what the processor reports: AVX2,
AVX-VNNI or AVX-512 VNNI dot-product instructions for the symmetric-weight convolution kernels, and
AMX tiles for its u8 × s8 matrix multiply, which Linux lets a process use only after it asks the
kernel for the tile-data state (``arch_prctl(ARCH_REQ_XCOMP_PERM)``). This benchmark:

* prints the processor's integer features (``/proc/cpuinfo``) and whether ONNX Runtime asked for,
  and was granted, the AMX state on import (``arch_prctl(ARCH_GET_XCOMP_PERM)`` afterwards);
* prints the operators of ONNX Runtime's optimized graph of the INT8 file (``calib/ort_cpu.py``);
* times the FP32 and the INT8 file on the same images in child processes, alternately with AMX
  allowed and with the AMX request refused (a 15-line ``LD_PRELOAD`` shim, compiled here with ``cc``,
  that answers that one ``arch_prctl`` with EPERM, so ONNX Runtime keeps to its AVX-512 VNNI kernels),
  each child timing FP32 and INT8 image by image after one warm-up run of both, and prints the INT8 /
  FP32 graph-time ratio of each configuration and the INT8 time without AMX against with it.

Build the files first, e.g. ``python benchmarks/precision.py --workdir out/precision`` (FP32 ``w32.onnx``
and INT8 ``w32.int8.percentile-32.onnx`` are written there).

Example:
  python benchmarks/int8_isa.py --fp32 out/precision/w32.onnx --int8 out/precision/w32.int8.percentile-32.onnx
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime.errors import UserError

ARCH_GET_XCOMP_PERM = 0x1022
ARCH_REQ_XCOMP_PERM = 0x1023
XFEATURE_XTILEDATA = 18
SYS_ARCH_PRCTL = 158  # x86-64
INTEGER_FLAGS = ("avx2", "avx_vnni", "avx512_vnni", "avx512bw", "amx_tile", "amx_int8")

SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <sys/syscall.h>
long syscall(long number, ...) {
    va_list ap; va_start(ap, number);
    long a[6]; for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long);
    va_end(ap);
    if (number == SYS_arch_prctl && a[0] == REQUEST) { errno = EPERM; return -1; }
    static long (*next)(long, ...) = 0;
    if (!next) next = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
    return next(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}
""".replace("REQUEST", hex(ARCH_REQ_XCOMP_PERM))


def amx_granted() -> bool:
    """Whether this process holds the AMX tile-data state (Linux x86-64)."""
    libc = ctypes.CDLL(None, use_errno=True)
    features = ctypes.c_uint64(0)
    if libc.syscall(SYS_ARCH_PRCTL, ARCH_GET_XCOMP_PERM, ctypes.byref(features)) != 0:
        return False
    return bool(features.value >> XFEATURE_XTILEDATA & 1)


def cpu_flags() -> list[str]:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return [flag for flag in INTEGER_FLAGS if flag in flags]


def child(fp32: Path, int8: Path, images: int) -> dict:
    """Graph seconds of each file over the same images, one run each after a warm-up of both."""
    import onnxruntime  # noqa: F401  (imported first: MLAS asks for AMX when it loads)

    from benchmarks.coco import MINI_SET
    from calib.dataset import list_images
    from runtime.backends.onnx_backend import OnnxBackend
    from runtime.preprocess import prepare, read_image

    granted = amx_granted()
    seconds = {"fp32": 0.0, "int8": 0.0}
    with OnnxBackend(fp32) as reference, OnnxBackend(int8) as quantized:
        meta = reference.metadata
        paths = list_images(MINI_SET / "images", images)  # timing only: nothing here is scored
        for index, path in enumerate(paths):
            prepared = prepare(read_image(path), meta.input_size, meta.decode)
            feed = {name: array[None] for name, array in zip(meta.input_names, prepared.inputs)}
            if index == 0:
                reference.run(feed)
                quantized.run(feed)
            for key, backend in (("fp32", reference), ("int8", quantized)):
                start = time.perf_counter()
                backend.run(feed)
                seconds[key] += time.perf_counter() - start
    return {"amx_granted": granted, **seconds}


def build_shim(folder: Path) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise UserError("no C compiler (cc) here: the AMX-refusing shim cannot be built; install gcc")
    source, library = folder / "refuse_amx.c", folder / "refuse_amx.so"
    source.write_text(SHIM)
    subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(source), "-ldl"], check=True)
    return library


def run(args: argparse.Namespace) -> int:
    from calib.ort_cpu import optimized_op_counts

    for flag, path in (("--fp32", args.fp32), ("--int8", args.int8)):
        if not path.is_file():
            raise UserError(f"{flag} {path}: no such file; build it with python benchmarks/precision.py --workdir DIR")
    print(f"processor integer features: {', '.join(cpu_flags()) or 'none of ' + ', '.join(INTEGER_FLAGS)}")
    ops = optimized_op_counts(args.int8)
    print("ONNX Runtime's optimized CPU graph of the INT8 file: "
          + ", ".join(f"{count} {op}" for op, count in ops.most_common()))
    results = {"amx allowed": [], "amx refused": []}
    with tempfile.TemporaryDirectory(prefix="hrnet-isa-") as folder:
        shim = build_shim(Path(folder))
        for round_ in range(args.rounds):
            for config, rows in results.items():
                env = dict(os.environ)
                if config == "amx refused":
                    env["LD_PRELOAD"] = str(shim)
                done = subprocess.run([sys.executable, __file__, "--child", "--fp32", str(args.fp32), "--int8",
                                       str(args.int8), "--images", str(args.images)], env=env, capture_output=True,
                                      text=True, check=False)
                if done.returncode != 0:
                    raise UserError(f"the timing child ({config}) failed: {done.stderr.strip().splitlines()[-1:]}")
                result = json.loads(done.stdout.strip().splitlines()[-1])
                rows.append(result)
                print(f"round {round_ + 1}, {config}: AMX state granted {result['amx_granted']}, FP32 "
                      f"{result['fp32'] / args.images * 1e3:.0f} ms, INT8 {result['int8'] / args.images * 1e3:.0f} ms "
                      f"per image", flush=True)
    print(f"\n{args.images} images, {args.rounds} rounds; each figure the best round\n")
    print("| configuration | FP32 ms per image | INT8 ms per image | INT8 / FP32 |")
    print("|---|---:|---:|---:|")
    best = {}
    for config, rows in results.items():
        fp32 = min(row["fp32"] for row in rows) / args.images * 1e3
        int8 = min(row["int8"] for row in rows) / args.images * 1e3
        best[config] = int8
        print(f"| {config} | {fp32:.0f} | {int8:.0f} | {int8 / fp32:.2f} |")
    print(f"\nINT8 with AMX refused / with AMX allowed: {best['amx refused'] / best['amx allowed']:.2f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--fp32", type=Path, required=True, help="the FP32 ONNX file")
    parser.add_argument("--int8", type=Path, required=True, help="the INT8 Q/DQ file (python -m calib)")
    parser.add_argument("--images", type=int, default=4, help="mini-set images timed per child (default: 4)")
    parser.add_argument("--rounds", type=int, default=2, help="children per configuration, alternating (default: 2)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser


def dispatch(args: argparse.Namespace) -> int:
    if args.images < 1 or args.rounds < 1:
        raise UserError(f"--images {args.images} --rounds {args.rounds}: give at least 1 of each")
    if args.child:
        print(json.dumps(child(args.fp32, args.int8, args.images)))
        return 0
    return run(args)


def main(argv: list[str] | None = None) -> int:
    from runtime.cli import run_cli

    return run_cli(build_parser(), dispatch, argv)


if __name__ == "__main__":
    sys.exit(main())
