"""Calibration images: real photos turned into model inputs by exactly the runtime's preprocessing.

The calibration feeds are what the model file takes at run time: one uint8 ``[1, H, W, 3]`` RGB image
per scale, decoded and warped by ``runtime.preprocess`` (``read_image`` then ``prepare``) with the
input size and scales the file's own metadata names. Normalization, the flip batch and everything
else happen inside the graph, so calibration sees the same tensors inference will.

Input sizes: the network input of each image has its own width (or height) — ``ceil64`` of the image's
aspect ratio — and the graph takes any input shape, so every image is calibrated at its own size,
batch 1, one image at a time. No bucketing or padding is needed, and nothing is seen at
a size or border that inference would not produce.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from runtime.errors import UserError
from runtime.metadata import ModelMetadata

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
DEFAULT_IMAGES = 32


def default_calib_dir() -> Path:
    """The mini COCO val2017 set beside the checkout: ``../shared/data/coco_val2017_mini/images``."""
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_val2017_mini" / "images"


def list_images(folder: Path, count: int = DEFAULT_IMAGES) -> list[Path]:
    """``count`` images of ``folder``, spread evenly over its files sorted by name (all if fewer).

    Deterministic: the same folder and count always give the same list, in the same order.
    """
    folder = Path(folder)
    if count < 1:
        raise UserError(f"--images {count}: give at least 1")
    if not folder.is_dir():
        raise UserError(f"--calib {folder}: not a folder; give a folder of calibration images (JPEG/PNG)")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise UserError(f"--calib {folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    if len(paths) <= count:
        return paths
    picks = np.unique(np.linspace(0, len(paths) - 1, count).round().astype(int))
    return [paths[i] for i in picks]


def image_list_digest(paths: list[Path]) -> str:
    """sha256 over the images' names and bytes, in order: part of the calibration cache key."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def image_feed(path: Path, metadata: ModelMetadata) -> dict[str, np.ndarray]:
    """One image's batch-1 model inputs, exactly as ``runtime.pipeline.PoseEstimator`` makes them."""
    from runtime.preprocess import prepare, read_image

    prepared = prepare(read_image(path), metadata.input_size, metadata.decode)
    return {name: array[None] for name, array in zip(metadata.input_names, prepared.inputs)}


def calibration_feeds(paths: Iterable[Path], metadata: ModelMetadata) -> Iterator[tuple[Path, dict[str, np.ndarray]]]:
    """``(path, feed)`` per image, decoded when asked for, so that memory holds one image at a time."""
    for path in paths:
        try:
            feed = image_feed(path, metadata)
        except UserError as error:
            raise UserError(f"calibration image {error}") from None
        yield path, feed
