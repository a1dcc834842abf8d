"""hrnet-deploy runtime: images in, people out, on any backend.

``runtime.PoseEstimator`` and ``runtime.Person`` are imported on first use, so ``import runtime``
stays light (no numba compilation, no torch) until they are needed.
"""
from __future__ import annotations

__all__ = ["PoseEstimator", "Person", "open_backend", "open_torch"]


def __getattr__(name: str):
    if name == "PoseEstimator":
        from runtime.pipeline import PoseEstimator

        return PoseEstimator
    if name == "Person":
        from runtime.results import Person

        return Person
    if name in ("open_backend", "open_torch"):
        import runtime.backends as backends

        return getattr(backends, name)
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")
