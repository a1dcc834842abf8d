"""python benchmarks/calib_cost.py — wall time and peak memory of ``python -m calib`` per image count.

Each count runs the calib CLI in its own process with an empty statistics cache (so every image is
measured) and the INT8-vs-FP32 check on: the whole command a user runs. Reported per count: wall
seconds, the seconds of the statistics stage (as the CLI prints them) and the process's peak
resident memory. The FP32 source file is exported once first (W32, synthetic:0, unless --onnx).

Examples:
  python benchmarks/calib_cost.py                       # 8 and 64 images
  python benchmarks/calib_cost.py --counts 8 --onnx out/w32.onnx
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Runs the calib CLI in-process and prints the process's own peak RSS when it ends (Linux: KiB).
CHILD = ("import resource, sys\nfrom calib.__main__ import main\ncode = main(sys.argv[1:])\n"
         "print('peak_rss_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)\nsys.exit(code)\n")


def measure(onnx: Path, count: int, folder: Path) -> dict:
    command = [sys.executable, "-c", CHILD, "--onnx", str(onnx), "--images", str(count),
               "--cache-dir", str(folder / f"cache{count}"), "-o", str(folder / f"int8-{count}.onnx")]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"python -m calib --images {count} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    peak = int(re.search(r"peak_rss_kib (\d+)", done.stdout).group(1))
    stage = float(re.search(r"statistics written to \S+ \(([\d.]+) s\)", done.stdout).group(1))
    sqnr = [float(v) for v in re.findall(r"SQNR\s+([\d.]+) dB", done.stdout)]
    return {"images": count, "wall_s": round(wall, 1), "statistics_s": stage, "peak_rss_gib": round(peak / 2**20, 2),
            "sqnr_db": sqnr}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/calib_cost.py",
                                     description="Time and peak memory of python -m calib, per number of images.")
    parser.add_argument("--counts", default="8,64", help="image counts, comma-separated (default: 8,64)")
    parser.add_argument("--onnx", type=Path, help="FP32 file to calibrate (default: export W32 synthetic:0 first)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",")]
    with tempfile.TemporaryDirectory(prefix="calib-cost-") as tmp:
        folder = Path(tmp)
        onnx = args.onnx
        if onnx is None:
            onnx = folder / "w32.onnx"
            subprocess.run([sys.executable, "-m", "export.onnx", "--arch", "w32", "--checkpoint", "synthetic:0",
                            "--skip-verify", "-o", str(onnx)], cwd=REPO, check=True, capture_output=True)
        rows = []
        for count in counts:
            rows.append(measure(onnx, count, folder))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{platform.processor() or platform.machine()}, {date.today()}\n")
    print("| images | wall s | statistics s | peak RSS GiB | SQNR dB (heatmap, tags, candidates) |\n|---:|---:|---:|---:|---|")
    for row in rows:
        print(f"| {row['images']} | {row['wall_s']} | {row['statistics_s']} | {row['peak_rss_gib']} | "
              f"{', '.join(f'{v:.1f}' for v in row['sqnr_db'])} |")
    if args.json:
        from runtime.files import write_with

        write_with(args.json, lambda path: path.write_text(json.dumps(rows, indent=1)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
