"""SPEC §4 geometry table, §11 multi-scale example, the warp, and the way back to the image (§9)."""
from __future__ import annotations

import numpy as np
import pytest

from runtime.metadata import DecodeConfig
from runtime.preprocess import multi_scale_geometry, prepare, scale_geometry, to_image_coordinates, warp_matrix

# (image w, h), S, input (w, h), centre, scale — SPEC §4's table.
TABLE = [
    ((640, 425), 512, (832, 512), (320, 212), (3.453125, 2.125)),
    ((500, 333), 512, (832, 512), (250, 166), (2.705625, 1.665)),
    ((640, 429), 512, (768, 512), (320, 214), (3.2175, 2.145)),
    ((640, 392), 512, (896, 512), (320, 196), (3.43, 1.96)),
    ((640, 425), 640, (1024, 640), (320, 212), None),
]


@pytest.mark.parametrize("image, size, input_size, center, scale", TABLE)
def test_geometry_table(image, size, input_size, center, scale):
    geometry = scale_geometry(*image, size)
    assert geometry.input_size == input_size
    assert geometry.center == center
    if scale is not None:
        assert geometry.scale == pytest.approx(scale, rel=1e-12)


def test_portrait_geometry():
    # w < h: width gets S, height is rounded up to a multiple of 64; centre rounds half to even.
    geometry = scale_geometry(425, 640, 512)
    assert geometry.input_size == (512, 832)
    assert geometry.center == (212, 320)
    assert geometry.scale == pytest.approx((425 / 200, 832 / 512 * 425 / 200))


def test_multi_scale_example():
    """640×425 with [2, 1, 0.5]: 1792×1024, 896×512 (not 832), 448×256; same centre and scale."""
    decode = DecodeConfig(scales=(0.5, 2, 1))
    assert decode.scales == (2.0, 1.0, 0.5) and decode.base == 1
    geometries = multi_scale_geometry(640, 425, 512, decode.scales)
    assert [g.input_size for g in geometries] == [(1792, 1024), (896, 512), (448, 256)]
    assert len({(g.center, g.scale) for g in geometries}) == 1


def test_scales_must_include_one():
    with pytest.raises(ValueError):
        DecodeConfig(scales=(2.0, 0.5))


@pytest.mark.parametrize("size", [(640, 425), (425, 640), (333, 500), (1, 1)])
def test_warp_matrix_is_the_zoom_about_the_centre(size):
    """Net effect of the three-point construction: x' = s (x - cx) + w_res / 2 (up to float32 points)."""
    geometry = scale_geometry(*size, 512)
    w, h = size
    zoom = geometry.input_size[1] / h if w >= h else geometry.input_size[0] / w
    expected = np.array([[zoom, 0, geometry.input_size[0] / 2 - zoom * geometry.center[0]],
                         [0, zoom, geometry.input_size[1] / 2 - zoom * geometry.center[1]]])
    np.testing.assert_allclose(warp_matrix(geometry), expected, rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("size", [(640, 425), (425, 640), (500, 333)])
def test_back_to_image_inverts_the_warp(size):
    """SPEC §9 mapping applied to warped coordinates returns the image point (float32: 1e-3 px)."""
    geometry = scale_geometry(*size, 512)
    rng = np.random.default_rng(0)
    points = rng.uniform(0, min(size), (50, 2))
    matrix = warp_matrix(geometry)
    warped = points @ matrix[:, :2].T + matrix[:, 2]
    np.testing.assert_allclose(to_image_coordinates(warped, geometry), points, atol=1e-3)


def test_prepare_keeps_the_picture_centred():
    """A bright square at the image centre lands at the input centre."""
    image = np.zeros((425, 640, 3), np.uint8)
    image[202:223, 310:331] = 255
    prepared = prepare(image, 512, DecodeConfig())
    warped = prepared.inputs[0]
    assert warped.shape == (512, 832, 3) and warped.dtype == np.uint8
    ys, xs = np.nonzero(warped[..., 0] > 128)
    assert abs(xs.mean() - 416) < 1.5 and abs(ys.mean() - 256) < 1.5
