"""Shared fixtures: paths to ../shared (goldens, mini COCO set) and a synthetic-weights w32 backend."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
GOLDEN = SHARED / "golden"
MINI = SHARED / "data" / "coco_val2017_mini"


# (title, lines) that tests want shown at the end of the run, e.g. registers per CUDA kernel.
TERMINAL_REPORT: list[tuple[str, list[str]]] = []


def pytest_terminal_summary(terminalreporter):
    for title, lines in TERMINAL_REPORT:
        terminalreporter.section(title)
        for line in lines:
            terminalreporter.write_line(line)


def cuda_device() -> str | None:
    """Why GPU tests cannot run here, or None when a CUDA device is present."""
    if not Path("/dev/nvidiactl").exists():
        return "no CUDA GPU on this machine (/dev/nvidiactl absent)"
    return None


def pytest_collection_modifyitems(config, items):
    reason = cuda_device()
    if reason:
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not here (it sits beside the checkout in the project's shared/ folder)")
    return path


def load_golden(name: str) -> dict:
    return json.loads(need(GOLDEN / name).read_text())


@pytest.fixture(scope="session")
def w32_synthetic():
    """The PyTorch reference backend, HigherHRNet-W32 with synthetic:0 weights, input 512."""
    pytest.importorskip("torch")
    from runtime.backends import open_torch

    with open_torch("w32", "synthetic:0", 512) as backend:
        yield backend
