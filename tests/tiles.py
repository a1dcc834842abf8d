"""The tile summary refine searches, written with NumPy from its definition: the oracle for the graph's
``tiles`` output, and the summary the tests hand to ``grouping.refine`` for maps they make themselves.

Per joint and tile of ``TILE_SHAPE`` pixels (row-major tiles; a partial tile at the bottom or right
edge holds the pixels that are there): the largest heatmap value, then the smallest and largest of
each tag component (``TILE_FIELDS``). NaN propagates (``np.max``), which refine reads as unknown.
"""
from __future__ import annotations

import numpy as np

from runtime.metadata import TILE_SHAPE, tile_grid


def _summarise(heatmap: np.ndarray, tags: np.ndarray, joint: np.ndarray, ty: np.ndarray,
               tx: np.ndarray) -> np.ndarray:
    """``[n, 5]``: the summary of tiles ``(joint, ty, tx)`` of ``heatmap [17, H, W]`` and ``tags
    [17, H, W, 2]``. A partial tile's indices are clipped to the map: its edge pixels repeat, which
    changes no maximum or minimum."""
    rows, columns = TILE_SHAPE
    height, width = heatmap.shape[1:]
    y = np.minimum(ty[:, None] * rows + np.arange(rows), height - 1)[:, :, None]
    x = np.minimum(tx[:, None] * columns + np.arange(columns), width - 1)[:, None, :]
    j = joint[:, None, None]
    h, t = heatmap[j, y, x], tags[j, y, x]
    return np.stack([h.max(axis=(1, 2)), t[..., 0].min(axis=(1, 2)), t[..., 0].max(axis=(1, 2)),
                     t[..., 1].min(axis=(1, 2)), t[..., 1].max(axis=(1, 2))], axis=-1)


def tiles_of(heatmap: np.ndarray, tags: np.ndarray) -> np.ndarray:
    """Summary ``[..., 17, down, across, 5]`` of ``heatmap [..., 17, H, W]`` and ``tags [..., 17, H, W, 2]``."""
    heatmap = np.asarray(heatmap, np.float32)
    tags = np.asarray(tags, np.float32)
    joints, height, width = heatmap.shape[-3:]
    down, across = tile_grid(height, width)
    joint, ty, tx = (a.reshape(-1) for a in np.meshgrid(np.arange(joints), np.arange(down), np.arange(across),
                                                          indexing="ij"))
    images = [_summarise(h, t, joint, ty, tx) for h, t in zip(heatmap.reshape(-1, joints, height, width),
                                                               tags.reshape(-1, joints, height, width, 2))]
    return np.stack(images).reshape(*heatmap.shape[:-3], joints, down, across, 5)

