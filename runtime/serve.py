"""python -m runtime.serve — serve an exported model with Triton Inference Server (through PyTriton).

PyTriton starts a real tritonserver (bundled in the nvidia-pytriton wheel, CPU boxes included) whose
Python backend hands each dynamically batched request set to a ``PoseEstimator`` in this process:
the backend runs the DecodeGraph (ONNX Runtime on the CPU or CUDA, or a TensorRT engine), then
grouping + refine, and the people go back as ``runtime.serving`` describes (persons in map
coordinates, scores, count). Clients send the network input that ``runtime.preprocess.prepare``
makes and map the people back to image pixels, as ``python -m runtime.run --engine
triton://HOST:PORT/NAME`` does. Beside the pose model, ``NAME_metadata`` answers with the model's
metadata, so the client needs no flag.

SIGTERM or Ctrl-C stops it gracefully: tritonserver refuses new requests, finishes those in flight
(up to --exit-timeout seconds), then the process exits 0.

Examples:
  python -m runtime.serve --engine w32.onnx                       # http://127.0.0.1:8000, model "hrnet"
  python -m runtime.serve --engine w32.plan --max-batch 8 --max-queue-delay-us 5000
  python -m runtime.run --engine triton://127.0.0.1:8000/hrnet --image a.jpg --out people.json
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path

import numpy as np

from runtime.cli import run_cli
from runtime.errors import UserError, require
from runtime.serving import METADATA_MODEL_SUFFIX, max_people, metadata_json, pad_people, python_backend_environment

LOOPBACK = "127.0.0.1"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runtime.serve", description=__doc__.split("\n\n")[0].split(" — ", 1)[1],
        epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", type=Path, required=True, metavar="FILE",
                        help="an exported model: .onnx (python -m export.onnx) or a TensorRT .plan (python -m export.trt)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where an .onnx runs (cuda needs onnxruntime-gpu); a .plan always runs on the GPU "
                             "(default: cpu)")
    parser.add_argument("--name", default="hrnet", help="model name clients address (default: hrnet)")
    parser.add_argument("--host", default=LOOPBACK,
                        help=f"address the HTTP, gRPC and metrics endpoints listen on (default: {LOOPBACK}, this "
                             f"machine only; 0.0.0.0 for every interface)")
    parser.add_argument("--http-port", type=int, default=8000, help="HTTP port (default: 8000)")
    parser.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (default: 8001)")
    parser.add_argument("--metrics-port", type=int, default=8002, help="Prometheus metrics port (default: 8002)")
    parser.add_argument("--max-batch", type=int, default=4, metavar="N",
                        help="largest batch Triton's dynamic batcher forms (capped by a TensorRT profile; default: 4)")
    parser.add_argument("--max-queue-delay-us", type=int, default=2000, metavar="US",
                        help="how long a request may wait for others to batch with, in microseconds (default: 2000)")
    parser.add_argument("--exit-timeout", type=int, default=30, metavar="S",
                        help="on SIGTERM, seconds to let in-flight requests finish (default: 30)")
    return parser


def check_port(host: str, port: int, flag: str) -> None:
    """A UserError naming the flag when ``port`` cannot be listened on."""
    if not 0 < port < 65536:
        raise UserError(f"{flag} {port}: give a port between 1 and 65535")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server's own listener does
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UserError(f"{flag} {port}: cannot listen on {host}:{port} ({exc.strerror}); choose a free port "
                            f"with {flag}") from None


def pose_model(estimator, limit: int):
    """The inference callable: one Triton batch of prepared inputs → ``runtime.serving`` people."""
    from pytriton.decorators import batch

    from runtime.pipeline import StageTimes
    from runtime.preprocess import Prepared

    names = estimator.metadata.input_names
    base = estimator.metadata.decode.base

    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        count = inputs[names[0]].shape[0]
        prepared = [Prepared([inputs[name][i] for name in names], [], base) for i in range(count)]
        times = StageTimes(images=count)
        found = estimator.decode_batch(prepared, times)
        estimator.times.add(times)
        return pad_people(found, limit)

    return infer


def metadata_model(text: str):
    """The companion model's callable: every request gets the metadata JSON."""
    answer = np.array([text.encode()], dtype=np.object_)

    def infer(requests):
        return [{"metadata": answer} for _ in requests]

    return infer


def serve(args: argparse.Namespace) -> int:
    require("pytriton", "serve")
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import DEFAULT_PROTECTED_ENDPOINTS, Triton, TritonConfig, TritonSecurityConfig

    from runtime.backends import open_backend
    from runtime.pipeline import PoseEstimator

    for flag, port in (("--http-port", args.http_port), ("--grpc-port", args.grpc_port),
                       ("--metrics-port", args.metrics_port)):
        check_port(args.host, port, flag)
    if args.max_batch < 1:
        raise UserError(f"--max-batch {args.max_batch}: give at least 1")
    if args.max_queue_delay_us < 0:
        raise UserError(f"--max-queue-delay-us {args.max_queue_delay_us}: give 0 or more")
    # The server process inherits this environment (see runtime.serving.python_backend_environment).
    os.environ.update(python_backend_environment())
    for name in ("pytriton", "pytriton.server", "pytriton.triton", "pytriton.models", "pytriton.proxy"):
        logging.getLogger(name).setLevel(logging.ERROR)

    estimator = PoseEstimator(open_backend(args.engine, device=args.device))
    meta = estimator.metadata
    max_batch = min(args.max_batch, estimator.backend.max_batch or args.max_batch)
    if max_batch < args.max_batch:
        print(f"note: --max-batch {args.max_batch} capped to {max_batch}, the largest batch of {args.engine}'s profile")
    limit = max_people(meta)
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())

    config = TritonConfig(http_address=args.host, http_port=args.http_port, grpc_address=args.host,
                          grpc_port=args.grpc_port, metrics_address=args.host, metrics_port=args.metrics_port,
                          exit_timeout_secs=args.exit_timeout, strict_readiness=True, log_verbose=0)
    # Statistics stay open: they are Triton's own batch-size histogram (benchmarks/serve_load.py reads it).
    security = TritonSecurityConfig(restricted_endpoints=[e for e in DEFAULT_PROTECTED_ENDPOINTS if e != "statistics"])
    triton = Triton(config=config, security_config=security)
    try:
        inputs = [Tensor(name=name, dtype=np.uint8, shape=(-1, -1, 3)) for name in meta.input_names]
        outputs = [Tensor(name="persons", dtype=np.float32, shape=(limit, 17, 5)),
                   Tensor(name="scores", dtype=np.float32, shape=(limit,)),
                   Tensor(name="count", dtype=np.int32, shape=(1,))]
        batcher = DynamicBatcher(max_queue_delay_microseconds=args.max_queue_delay_us)
        triton.bind(model_name=args.name, infer_func=pose_model(estimator, limit), inputs=inputs, outputs=outputs,
                    config=ModelConfig(max_batch_size=max_batch, batcher=batcher), strict=True)
        triton.bind(model_name=args.name + METADATA_MODEL_SUFFIX,
                    infer_func=metadata_model(metadata_json(meta, estimator.backend.stride)),
                    inputs=[Tensor(name="request", dtype=np.int32, shape=(1,))],
                    outputs=[Tensor(name="metadata", dtype=bytes, shape=(1,))],
                    config=ModelConfig(batching=False))
        triton.run()
        print(f"serving {args.engine.name} ({estimator.backend.name}, HigherHRNet-{meta.arch.upper()} input "
              f"{meta.input_size}) as model {args.name!r}, max batch {max_batch}, queue delay "
              f"{args.max_queue_delay_us} us\n  http://{args.host}:{args.http_port} (ready: /v2/health/ready), "
              f"grpc {args.host}:{args.grpc_port}, metrics http://{args.host}:{args.metrics_port}/metrics\n"
              f"  client: python -m runtime.run --engine triton://{args.host}:{args.http_port}/{args.name} "
              f"--image IMAGE --out results.json", flush=True)
        while not stop.wait(1.0):
            if not triton.is_alive():
                print("error: tritonserver stopped by itself (its messages above say why)", file=sys.stderr)
                return 1
        print("stopping: finishing the requests in flight", flush=True)
    finally:
        triton.stop()
        estimator.backend.close()
    print(f"stopped ({estimator.times.images} images served)", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), serve, argv)


if __name__ == "__main__":
    sys.exit(main())
