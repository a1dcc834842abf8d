"""Load test of a running Triton server (runtime.serve, or an export.triton ensemble), loopback only.

For each number of concurrent clients (default 1, 2, 4, 8, 16), every client sends a bounded number of
requests (``--requests``, one image each) and waits for each answer before the next. Each client has
its own image (one sample shifted by a different amount, all of one size so that the server's dynamic
batcher can put different clients' requests into one batch). Printed per level: throughput
(images/s), p50/p95/p99 latency, requests failed / lost / duplicated / mixed up (must all be 0) and
the server's own batch-size histogram (Triton's statistics: executions per batch size) — what
dynamic batching bought.

* failed: the server answered with an error; lost: no answer (timeout, connection dropped);
* duplicated: the server executed more inferences than the clients sent (its own inference count);
* mixed up: an answer that is not the people of the image sent (compared with that client's answer
  to the same image before the timed run).

Example (two shells):
  python -m runtime.serve --engine out/w32.onnx --max-batch 8
  python benchmarks/serve_load.py --url triton://127.0.0.1:8000/hrnet --clients 1,2,4,8,16 --requests 3
"""
from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime.cli import run_cli  # noqa: E402
from runtime.errors import UserError  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "runtime" / "samples" / "000000000785.jpg"


def parse_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--clients {text!r}: give comma-separated counts, e.g. 1,2,4,8,16") from None
    if not counts or min(counts) < 1 or max(counts) > 64:
        raise argparse.ArgumentTypeError(f"--clients {text!r}: counts between 1 and 64")
    return counts


def check_loopback(host: str) -> None:
    """This load test only ever targets this machine."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host.strip("[]"), None)}
    except socket.gaierror:
        raise UserError(f"{host}: cannot resolve; give a loopback address such as 127.0.0.1") from None
    if not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        raise UserError(f"{host}: not a loopback address; serve_load.py only loads a server on this machine "
                        f"(127.0.0.1, localhost, ::1)")


@dataclass
class Level:
    clients: int
    requests: int
    wall_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    failed: int = 0
    lost: int = 0
    mixed_up: int = 0
    executed: int = 0
    histogram: dict[int, int] = field(default_factory=dict)

    @property
    def sent(self) -> int:
        return self.clients * self.requests

    @property
    def duplicated(self) -> int:
        """Inferences the server ran beyond the answers received."""
        return max(0, self.executed - len(self.latencies_ms))


def statistics(client, model: str) -> tuple[int, dict[int, int]]:
    """The server's inference count and executions per batch size for ``model``."""
    stats = client.get_inference_statistics(model)["model_stats"][0]
    histogram = {int(item["batch_size"]): int(item["compute_infer"]["count"]) for item in stats.get("batch_stats", [])}
    return int(stats.get("inference_count", 0)), histogram


def client_images(count: int, image: np.ndarray) -> list[np.ndarray]:
    return [np.ascontiguousarray(np.roll(image, shift=29 * i, axis=1)) for i in range(count)]


def run_level(url: str, clients: int, requests: int, feeds: list[dict], expected: list[dict], stats_client,
              model: str) -> Level:
    from runtime.backends.triton_backend import TritonBackend

    level = Level(clients, requests)
    lock = threading.Lock()
    backends = []
    ready = threading.Barrier(clients + 1)

    def worker(index: int) -> None:
        try:
            backend = TritonBackend(url)
        except UserError:
            with lock:
                level.lost += requests
            ready.wait(timeout=120)
            return
        backends.append(backend)
        ready.wait(timeout=120)
        for _ in range(requests):
            began = time.perf_counter()
            try:
                answer = backend.run(feeds[index])
            except UserError as error:
                with lock:
                    if "timed out" in str(error) or "no Triton server" in str(error):
                        level.lost += 1
                    else:
                        level.failed += 1
                continue
            elapsed = (time.perf_counter() - began) * 1000.0
            same = all(np.array_equal(answer[name], expected[index][name]) for name in expected[index])
            with lock:
                level.latencies_ms.append(elapsed)
                level.mixed_up += 0 if same else 1
        backend.close()

    executed_before, histogram_before = statistics(stats_client, model)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    ready.wait(timeout=120)
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    level.wall_s = time.perf_counter() - start
    executed_after, histogram_after = statistics(stats_client, model)
    level.executed = executed_after - executed_before
    level.histogram = {size: histogram_after[size] - histogram_before.get(size, 0) for size in sorted(histogram_after)
                       if histogram_after[size] - histogram_before.get(size, 0)}
    return level


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python benchmarks/serve_load.py", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="triton://127.0.0.1:8000/hrnet",
                        help="the served model, on this machine (default: triton://127.0.0.1:8000/hrnet)")
    parser.add_argument("--clients", type=parse_counts, default=[1, 2, 4, 8, 16],
                        help="concurrent client counts to run, in order (default: 1,2,4,8,16)")
    parser.add_argument("--requests", type=int, default=3, metavar="N",
                        help="requests per client per level, 1..100 (default: 3)")
    parser.add_argument("--image", type=Path, default=SAMPLE, help=f"the image to shift per client (default: {SAMPLE.name})")
    return parser


def run(args: argparse.Namespace) -> int:
    import platform

    import tritonclient.http as http

    from runtime.backends.triton_backend import TritonBackend, TritonUrl
    from runtime.pipeline import PoseEstimator
    from runtime.preprocess import read_image

    if not 1 <= args.requests <= 100:
        raise UserError(f"--requests {args.requests}: give 1..100")
    target = TritonUrl.parse(args.url)
    check_loopback(target.host)
    with TritonBackend(args.url) as backend:
        estimator = PoseEstimator(backend)
        images = client_images(max(args.clients), read_image(args.image))
        feeds = [estimator.feed([estimator.prepare(image)]) for image in images]
        expected = [backend.run(feed) for feed in feeds]  # each image's answer, before any load
        shape = feeds[0][backend.metadata.input_names[0]].shape
        print(f"{target}: {backend.metadata.arch.upper()} input {backend.metadata.input_size}, max batch "
              f"{backend.max_batch}, one {shape[2]}x{shape[1]} image per request; {platform.processor() or platform.machine()}, "
              f"{time.strftime('%Y-%m-%d')}")
    stats_client = http.InferenceServerClient(target.endpoint, network_timeout=target.timeout)
    print("| clients | requests | images/s | p50 ms | p95 ms | p99 ms | failed | lost | duplicated | mixed up | "
          "server batch sizes (executions) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    bad = 0
    for clients in args.clients:
        level = run_level(args.url, clients, args.requests, feeds, expected, stats_client, target.model)
        answered = len(level.latencies_ms)
        p50, p95, p99 = (np.percentile(level.latencies_ms, q) if answered else float("nan") for q in (50, 95, 99))
        histogram = ", ".join(f"{size}: {count}" for size, count in level.histogram.items()) or "none"
        print(f"| {clients} | {level.sent} | {answered / level.wall_s:.2f} | {p50:.0f} | {p95:.0f} | {p99:.0f} | "
              f"{level.failed} | {level.lost} | {level.duplicated} | {level.mixed_up} | {histogram} |", flush=True)
        bad += level.failed + level.lost + level.duplicated + level.mixed_up
    stats_client.close()
    if bad:
        print(f"error: {bad} requests failed, were lost, duplicated or mixed up", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
