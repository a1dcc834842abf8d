"""python -m runtime.tritonserver — run a model repository on the tritonserver that nvidia-pytriton bundles.

For trying a repository written by ``python -m export.triton`` on a box without Docker (a CPU one
included): the wheel carries a real tritonserver with the Python backend, but no onnxruntime or
TensorRT backend, so write the repository with ``--graph-backend python --device cpu``. The Python
backend stub of this interpreter's version is put in place, and the stub is made to load this
interpreter's libpython (``runtime.serving.python_backend_environment``). The models' Python
imports (numpy, numba, onnxruntime) come from this environment.

Examples:
  python -m export.triton --engine w32.onnx --graph-backend python --device cpu -o repo/
  python -m runtime.tritonserver --model-repository repo/ --http-port 8000
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runtime.cli import run_cli
from runtime.errors import UserError, require
from runtime.serving import python_backend_environment

LOOPBACK = "127.0.0.1"


def prepare_server(folder: Path) -> Path:
    """A copy of the bundled server in ``folder`` with this Python's backend stub; returns its root."""
    require("pytriton", "serve")
    from pytriton.utils.distribution import get_root_module_path, get_stub_path

    source = get_root_module_path() / "tritonserver"
    target = folder / "tritonserver"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("python_backend_stubs"))
    stub = get_stub_path(f"{sys.version_info[0]}.{sys.version_info[1]}")
    if not stub.is_file():
        raise UserError(f"nvidia-pytriton has no Python backend stub for Python {sys.version_info[0]}."
                        f"{sys.version_info[1]} ({stub}); use Python 3.10-3.13")
    shutil.copy(stub, target / "backends" / "python" / "triton_python_backend_stub")
    return target


def server_environment() -> dict[str, str]:
    """This interpreter's libpython first, then the libraries the wheel ships; this Python on PATH."""
    from pytriton.utils.distribution import get_libs_path

    env = python_backend_environment()
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (env.get("LD_LIBRARY_PATH"), str(get_libs_path())) if p)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def command(server: Path, repository: Path, host: str, http_port: int, grpc_port: int, metrics_port: int,
            exit_timeout: int = 30) -> list[str]:
    return [str(server / "bin" / "tritonserver"), f"--model-repository={repository}",
            f"--backend-directory={server / 'backends'}", f"--cache-directory={server / 'caches'}",
            f"--http-address={host}", f"--http-port={http_port}", f"--grpc-address={host}",
            f"--grpc-port={grpc_port}", f"--metrics-address={host}", f"--metrics-port={metrics_port}",
            "--strict-readiness=true", f"--exit-timeout-secs={exit_timeout}", "--log-verbose=0"]


class BundledServer:
    """``with BundledServer(repo, ports) as server:`` a running tritonserver process; stopped on exit."""

    def __init__(self, repository: Path, http_port: int, grpc_port: int, metrics_port: int, host: str = LOOPBACK,
                 log: Path | None = None) -> None:
        self.repository = Path(repository).resolve()
        if not (self.repository.is_dir() and any(self.repository.glob("*/config.pbtxt"))):
            raise UserError(f"{repository}: not a model repository (no NAME/config.pbtxt inside); write one with "
                            f"python -m export.triton")
        self.folder = Path(tempfile.mkdtemp(prefix="hrnet-tritonserver-"))
        self.argv = command(prepare_server(self.folder), self.repository, host, http_port, grpc_port, metrics_port)
        self.url = f"{host}:{http_port}"
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self) -> "BundledServer":
        out = open(self.log, "wb") if self.log else None
        self.process = subprocess.Popen(self.argv, env=server_environment(), stdout=out, stderr=subprocess.STDOUT
                                        if out else None)
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until /v2/health/ready answers 200; a UserError if the process exits or time runs out."""
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise UserError(f"tritonserver exited with code {self.process.returncode} before it was ready "
                                f"(its log{f' in {self.log}' if self.log else ' above'} says why)")
            try:
                with urllib.request.urlopen(f"http://{self.url}/v2/health/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise UserError(f"tritonserver at {self.url} not ready after {timeout:g} s")

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM (in-flight requests finish), then SIGKILL after ``timeout``; the exit code."""
        code = None
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                code = self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                code = self.process.wait()
        elif self.process is not None:
            code = self.process.returncode
        shutil.rmtree(self.folder, ignore_errors=True)
        return code

    def __enter__(self) -> "BundledServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runtime.tritonserver", description=__doc__.split("\n\n")[0].split(" — ", 1)[1],
        epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-repository", type=Path, required=True, metavar="DIR",
                        help="a repository from python -m export.triton --graph-backend python")
    parser.add_argument("--host", default=LOOPBACK, help=f"listen address (default: {LOOPBACK})")
    parser.add_argument("--http-port", type=int, default=8000, help="HTTP port (default: 8000)")
    parser.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (default: 8001)")
    parser.add_argument("--metrics-port", type=int, default=8002, help="metrics port (default: 8002)")
    return parser


def run(args: argparse.Namespace) -> int:
    server = BundledServer(args.model_repository, args.http_port, args.grpc_port, args.metrics_port, args.host)
    signal.signal(signal.SIGTERM, lambda *_: server.process.send_signal(signal.SIGTERM))
    try:
        server.start()
        return server.process.wait()
    except KeyboardInterrupt:
        return server.stop() or 0
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
