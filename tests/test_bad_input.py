"""Issue 4's bad-input rows: each either handled exactly as the reference does (grayscale, RGBA, 16-bit,
EXIF) or refused with one clear line naming the file and the fix, exit code 2, nothing written."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from runtime.errors import UserError
from runtime.preprocess import read_image
from tests.conftest import REPO
from tests.test_cli import assert_one_line_error, run

SAMPLE = REPO / "runtime" / "samples" / "000000000785.jpg"


def refused(tmp_path, image, *needles):
    out = tmp_path / "out" / "results.json"
    done = run("-m", "runtime.run", "--image", str(image), "--out", str(out))
    assert_one_line_error(done, str(image.name), *needles)
    assert not out.exists()


def test_missing_file(tmp_path):
    refused(tmp_path, tmp_path / "gone.jpg", "no such file")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    refused(tmp_path, path, "empty")


def test_corrupt_jpeg(tmp_path):
    path = tmp_path / "cut.jpg"
    path.write_bytes(SAMPLE.read_bytes()[:200])
    refused(tmp_path, path, "not a readable image")


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are not pixels\n")
    refused(tmp_path, path, "not a readable image")


def test_one_pixel_image(tmp_path):
    path = tmp_path / "dot.png"
    cv2.imwrite(str(path), np.full((1, 1, 3), 128, np.uint8))
    refused(tmp_path, path, "too small")


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose frame header claims ``width`` x ``height``: the size is refused from the header
    and a 1/8 preview before any full-size buffer exists (no gigabyte image is made here either)."""
    ok, encoded = cv2.imencode(".jpg", np.full((64, 48, 3), 90, np.uint8))
    data = bytearray(encoded.tobytes())
    frame = data.find(b"\xff\xc0")  # SOF0: marker, length, precision, then height and width
    data[frame + 5:frame + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def test_png_chunk_longer_than_the_file(tmp_path):
    """A 100-byte PNG whose IHDR length field claims 2.7 GB: refused as unreadable before OpenCV allocates
    the chunk (mutation: without ``_png_chunks_fit`` the reading process peaks at ~2.6 GiB)."""
    import subprocess
    import sys

    ok, encoded = cv2.imencode(".png", np.full((18, 18, 3), 90, np.uint8))
    data = bytearray(encoded.tobytes())
    data[8:12] = bytes.fromhex("a100000d")
    path = tmp_path / "claims.png"
    path.write_bytes(bytes(data))
    refused(tmp_path, path, "not a readable image")
    probe = ("import resource, sys\nfrom runtime.errors import UserError\nfrom runtime.preprocess import read_image\n"
             "try:\n    read_image(sys.argv[1])\nexcept UserError:\n    pass\n"
             "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=120,
                          cwd=REPO, check=True)
    assert int(done.stdout.split()[-1]) < 2**19, f"peak {done.stdout.split()[-1]} KiB reading {path.name}"


def test_huge_image(tmp_path):
    path = tmp_path / "huge.jpg"
    path.write_bytes(_jpeg_claiming(20000, 20000))
    refused(tmp_path, path, "larger than 16384 px on a side", "downscale")


def test_too_many_pixels(tmp_path):
    """Sides within the limit, 144 megapixels in all: refused by the pixel count (mutation: without that
    check the image decodes and the run goes on)."""
    path = tmp_path / "wide.jpg"
    path.write_bytes(_jpeg_claiming(12000, 12000))
    refused(tmp_path, path, "about 12000x12000 px, larger than 128 megapixels", "downscale")


def test_input_beyond_what_the_model_supports(tmp_path):
    """A 100:1 strip needs a 51200 px wide input: the backend's metadata limit names it."""
    path = tmp_path / "strip.png"
    cv2.imwrite(str(path), np.zeros((40, 4000, 3), np.uint8))
    refused(tmp_path, path, "beyond", "px side")


def test_unwritable_output_path(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("")
    done = run("-m", "runtime.run", "--image", str(SAMPLE), "--out", str(blocked / "results.json"))
    assert done.returncode == 2 and "error:" in done.stderr and "Traceback" not in done.stderr


def test_onnx_of_another_model(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "other",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    path = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph), str(path))
    done = run("-m", "runtime.run", "--engine", str(path), "--image", str(SAMPLE), "--out", str(tmp_path / "r.json"))
    assert_one_line_error(done, "other.onnx", "export")


# Handled as the reference does: OpenCV IMREAD_COLOR semantics, checked against what it means.

def test_grayscale_is_replicated(tmp_path):
    gray = cv2.cvtColor(cv2.imread(str(SAMPLE)), cv2.COLOR_BGR2GRAY)
    path = tmp_path / "gray.png"
    cv2.imwrite(str(path), gray)
    image = read_image(path)
    assert image.shape == (*gray.shape, 3) and all(np.array_equal(image[..., c], gray) for c in range(3))


def test_rgba_drops_alpha(tmp_path):
    bgr = cv2.imread(str(SAMPLE))
    path = tmp_path / "rgba.png"
    cv2.imwrite(str(path), np.dstack([bgr, np.full(bgr.shape[:2], 7, np.uint8)]))
    assert np.array_equal(read_image(path), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def test_sixteen_bit_png_reduces_to_eight(tmp_path):
    bgr = cv2.imread(str(SAMPLE))
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), bgr.astype(np.uint16) * 257)
    assert np.array_equal(read_image(path), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def test_exif_orientation_is_applied(tmp_path):
    """Orientation 6 (rotate 90° clockwise to display) — OpenCV 4 applies it, as mmpose's loader did."""
    pil = pytest.importorskip("PIL.Image")
    rgb = cv2.cvtColor(cv2.imread(str(SAMPLE)), cv2.COLOR_BGR2RGB)
    exif = pil.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    pil.fromarray(rgb).save(path, quality=95, exif=exif.tobytes())
    image = read_image(path)
    plain = tmp_path / "plain.jpg"
    pil.fromarray(rgb).save(plain, quality=95)
    assert image.shape == (rgb.shape[1], rgb.shape[0], 3)
    assert np.array_equal(image, np.ascontiguousarray(np.rot90(read_image(plain), k=-1)))


def test_odd_images_run_through_the_cli(tmp_path):
    """Grayscale, RGBA and 16-bit files in one --image-dir run: exit 0, one summary line each."""
    bgr = cv2.resize(cv2.imread(str(SAMPLE)), (160, 106))
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "a_gray.png"), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(folder / "b_rgba.png"), np.dstack([bgr, np.full(bgr.shape[:2], 255, np.uint8)]))
    cv2.imwrite(str(folder / "c_deep.png"), bgr.astype(np.uint16) * 257)
    out = tmp_path / "r.json"
    done = run("-m", "runtime.run", "--image-dir", str(folder), "--out", str(out))
    assert done.returncode == 0, done.stderr
    for name in ("a_gray.png", "b_rgba.png", "c_deep.png"):
        assert f"{name}: " in done.stdout
    assert out.exists()


def test_reader_error_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_image(tmp_path / "nope.jpg")
