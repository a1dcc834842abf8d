"""Image reading and the reference's input geometry (SPEC §4 one scale, §11 multi-scale).

Everything here is host work on one image: decode the file, choose the network input size, centre
and scale exactly as mmpose 0.29 does, and warp the image with OpenCV. The network input stays
uint8 RGB; normalization happens inside the exported graph.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from runtime.errors import UserError
from runtime.metadata import DecodeConfig

# Sizes we agree to decode: beyond the largest side or pixel count the warp is pointless for a 512/640
# network and the decoded buffers take gigabytes (2**27 px: 384 MiB of BGR, as much again for the RGB
# copy); below the smallest side there is nothing to find.
MAX_IMAGE_SIDE = 16384
MAX_IMAGE_PIXELS = 2**27
MIN_IMAGE_SIDE = 8
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Geometry:
    """How one image maps to one network input (SPEC §4).

    ``input_size`` is ``(w_res, h_res)``; ``center`` and ``scale`` are the reference's box
    (``scale`` in units of 200 px), from which the warp and the way back (SPEC §9) are built.
    """

    image_size: tuple[int, int]
    input_size: tuple[int, int]
    center: tuple[int, int]
    scale: tuple[float, float]


def _ceil64(value: float) -> int:
    return int(math.ceil(value / 64.0)) * 64


def scale_geometry(width: int, height: int, size: int, scale: float = 1.0, min_scale: float = 1.0) -> Geometry:
    """Geometry of one scale of a (multi-scale) test, SPEC §4 and §11 (``scale == min_scale == 1``: §4)."""
    min_input = _ceil64(min_scale * size)
    center = (round(width / 2.0), round(height / 2.0))
    if width < height:
        w_res = int(min_input * scale / min_scale)
        h_res = int(_ceil64(min_input / width * height) * scale / min_scale)
        box = (width / 200.0, h_res / w_res * width / 200.0)
    else:
        h_res = int(min_input * scale / min_scale)
        w_res = int(_ceil64(min_input / height * width) * scale / min_scale)
        box = (w_res / h_res * height / 200.0, height / 200.0)
    return Geometry((width, height), (w_res, h_res), center, box)


def multi_scale_geometry(width: int, height: int, size: int, scales: tuple[float, ...]) -> list[Geometry]:
    """One Geometry per scale of ``scales`` (validated and sorted largest first by ``DecodeConfig``)."""
    return [scale_geometry(width, height, size, s, min(scales)) for s in scales]


def _turned_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SPEC §4's third point of a pair: ``b`` plus ``a - b`` turned a quarter turn, in float32."""
    (ax, ay), (bx, by) = a, b
    return np.array([bx - (ay - by), by + (ax - bx)], dtype=np.float32)


def warp_matrix(geometry: Geometry) -> np.ndarray:
    """The 2×3 affine matrix from image to network input, solved from three float32 point pairs.

    SPEC §4: the centre goes to the middle of the input, the point ``scale_x · 100`` above the centre to
    ``w_res / 2`` above that middle, and a third point is derived from each pair. The
    result is ``x' = s (x - cx) + w_res / 2`` up to the float32 rounding of those points, which the
    reference's warped pixels carry: solving from the same rounded points keeps them bit-identical.
    """
    w_res, h_res = geometry.input_size
    cx, cy = geometry.center
    middle_x, middle_y = w_res / 2, h_res / 2
    pair_src = np.array([[cx, cy], [cx, cy - geometry.scale[0] * 100.0]], dtype=np.float32)
    pair_dst = np.array([[middle_x, middle_y], [middle_x, middle_y - w_res / 2]], dtype=np.float32)
    src = np.vstack([pair_src, _turned_point(*pair_src)])
    dst = np.vstack([pair_dst, _turned_point(*pair_dst)])
    return cv2.getAffineTransform(src, dst)


def warp(image: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Warp an RGB uint8 ``[h, w, 3]`` image to the network input ``[h_res, w_res, 3]`` (bilinear, 0 border)."""
    return cv2.warpAffine(image, warp_matrix(geometry), geometry.input_size, flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


@contextlib.contextmanager
def _decoder_quiet():
    """OpenCV's bundled libpng/libjpeg print their complaints about a damaged file straight to file
    descriptor 2; the UserError below says it in one line, so they are sent to /dev/null meanwhile."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _jpeg_frame_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` of a JPEG's first frame header (SOFn), walking the marker segments before the
    first scan; None when there is none to read."""
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == 0xDA:  # start of scan: no frame header before it
            return None
        length = int.from_bytes(data[at + 2:at + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and at + 9 <= len(data):
            return int.from_bytes(data[at + 7:at + 9], "big"), int.from_bytes(data[at + 5:at + 7], "big")
        at += 2 + length
    return None


def _png_chunks_fit(data: bytes) -> bool:
    """False when a PNG chunk claims more bytes than the file holds: OpenCV's PNG reader allocates a
    chunk's stated length before reading it, so a 200-byte file could ask for gigabytes."""
    at = 8
    while at + 8 <= len(data):
        length = int.from_bytes(data[at:at + 4], "big")
        if at + 12 + length > len(data):
            return False
        if data[at + 4:at + 8] == b"IEND":
            break
        at += 12 + length
    return True


def _declared_size(data: np.ndarray) -> tuple[int, int] | None:
    """``(width, height)`` as a JPEG, PNG or BMP header states it, None for other formats.

    A decoder allocates for the size its header claims (OpenCV decodes PNG and BMP in full even for a
    reduced read; libjpeg keeps whole-image coefficient buffers for progressive files), so a header
    that claims a huge image is refused before any decoding.
    """
    if data[:2].tobytes() == b"\xff\xd8":
        return _jpeg_frame_size(data[:1 << 20].tobytes())
    head = data[:26].tobytes()
    if head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR" and len(head) >= 24:
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head[:2] == b"BM" and len(head) >= 26:
        return (abs(int.from_bytes(head[18:22], "little", signed=True)),
                abs(int.from_bytes(head[22:26], "little", signed=True)))
    return None


def _check_size(path: Path, width: int, height: int) -> None:
    if max(width, height) > MAX_IMAGE_SIDE:
        raise UserError(f"{path}: image is larger than {MAX_IMAGE_SIDE} px on a side; downscale it first")
    if width * height > MAX_IMAGE_PIXELS:
        raise UserError(f"{path}: image is about {width}x{height} px, larger than {MAX_IMAGE_PIXELS // 2**20} "
                        f"megapixels (2**20 px); downscale it first")


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to RGB uint8 ``[h, w, 3]`` as the reference does (OpenCV ``IMREAD_COLOR``).

    Grayscale is replicated to three channels, alpha dropped, 16-bit reduced to 8-bit, and the EXIF
    orientation applied — all by OpenCV itself, exactly like mmpose's loader.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise UserError(f"{path}: is a directory; pass image files (or --image-dir DIR)")
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise UserError(f"{path}: file is empty; give a JPEG or PNG image")
    unreadable = f"{path}: not a readable image (corrupt or unsupported format); give a JPEG or PNG image"
    if data[:8].tobytes() == _PNG_SIGNATURE and not _png_chunks_fit(data.tobytes()):
        raise UserError(unreadable)
    declared = _declared_size(data)
    if declared is not None:
        _check_size(path, *declared)
    try:
        # A 1/8-size decode is cheap for JPEG and tells the size before a huge buffer is allocated.
        # (OpenCV cannot shrink images under 8 px; those decode in full below.)
        with _decoder_quiet():
            preview = cv2.imdecode(data, cv2.IMREAD_REDUCED_GRAYSCALE_8)
    except cv2.error:
        preview = np.zeros((1, 1), np.uint8)
    if preview is None:
        raise UserError(unreadable)
    if declared is None:  # the preview has one pixel per 8 x 8 block
        _check_size(path, 8 * preview.shape[1], 8 * preview.shape[0])
    try:
        with _decoder_quiet():
            image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None:
        raise UserError(unreadable)
    if min(image.shape[:2]) < MIN_IMAGE_SIDE:
        height, width = image.shape[:2]
        raise UserError(f"{path}: image is {width}x{height} px, too small to hold a person "
                        f"(at least {MIN_IMAGE_SIDE} px a side)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@dataclass(frozen=True)
class Prepared:
    """Network inputs of one image (uint8 ``[h_res, w_res, 3]`` per scale, largest first) and their geometry."""

    inputs: list[np.ndarray]
    geometries: list[Geometry]
    base: int

    @property
    def base_geometry(self) -> Geometry:
        """The scale-1 geometry: base size, centre and scale of the way back (SPEC §9, §11)."""
        return self.geometries[self.base]


def prepare(image: np.ndarray, size: int, decode: DecodeConfig) -> Prepared:
    """Warp one RGB image to every scale's network input."""
    height, width = image.shape[:2]
    geometries = multi_scale_geometry(width, height, size, decode.scales)
    return Prepared([warp(image, g) for g in geometries], geometries, decode.base)


def to_image_coordinates(points: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Map ``[..., 2]`` base-size map coordinates back to image pixels (SPEC §9), in float32 like the reference."""
    w_res, h_res = geometry.input_size
    box = np.array(geometry.scale, dtype=np.float64) * 200.0
    out = np.array(points, dtype=np.float32, copy=True)
    out[..., 0] = out[..., 0] * np.float32(box[0] / w_res) + np.float32(geometry.center[0]) - np.float32(box[0] * 0.5)
    out[..., 1] = out[..., 1] * np.float32(box[1] / h_res) + np.float32(geometry.center[1]) - np.float32(box[1] * 0.5)
    return out
