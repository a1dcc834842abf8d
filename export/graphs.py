"""The DecodeGraph: everything dense between the uint8 image and the grouping, as one torch module.

``DecodeGraph = Decode ∘ network ∘ Normalize``: normalize (SPEC §4.4) → batch each image with its
horizontal flip → HigherHRNet → flip back + permute (SPEC §5) → resize every stage directly to the base
size, average stages, flips and scales (SPEC §5, §11) → NMS 5×5 → top-k per joint → gather tags →
quarter-pixel adjust of each candidate (SPEC §6, §8) → the tile summary refine searches (SPEC §8,
``tile_summary``). ``Decode`` alone can be fed recorded or rendered
network outputs; ``DecodeOnly`` is the same decode with nothing but those outputs as inputs (what
``export.decode_onnx`` exports).

Written for export from the start: no Python control flow on tensor values, H and W dynamic (taken
from tensor shapes), integer index arithmetic only. Everything after the network stays float32.

Precision: ``DecodeGraph(..., precision="fp16")`` runs a half-precision network between two explicit
casts — normalize in float32, cast to float16, network, cast both outputs back to float32, decode in
float32 (SPEC §12) — so the exported graph is strongly typed, as TensorRT's strongly typed networks
require. The float32 path has no casts at all and is unchanged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from runtime.metadata import MEAN, NUM_JOINTS, STD, TILE_SHAPE, DecodeConfig

# Candidate columns, in this order, in the ``candidates`` output.
CANDIDATE_FIELDS = ("x", "y", "val", "tag0", "tag1")
# Precisions the network can run in inside the graph (the decode is float32 in every case).
NETWORK_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}
# ``y0`` is this many times smaller than the network input (SPEC §3), so it fixes the base size.
Y0_STRIDE = 4


class Normalize(nn.Module):
    """uint8 ``[N, H, W, 3]`` RGB → float32 ``[N, 3, H, W]``: ``(x / 255 - mean) / std`` (SPEC §4.4)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        # Cast first: the uint8 input is then read by one Cast only (TensorRT takes uint8 at I/O only).
        x = image.to(torch.float32).permute(0, 3, 1, 2) / 255.0
        # Contiguous NCHW: a channels-last view would send the network down other (equally valid,
        # not bit-identical) convolution kernels than the reference's.
        return ((x - self.mean) / self.std).contiguous()


def _resize(x: torch.Tensor, height, width) -> torch.Tensor:
    """Bilinear resize straight to the base size (a same-size resize is an exact copy)."""
    return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)


def _gather(flat: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return torch.gather(flat, 2, index)


def _tile_reduce(x: torch.Tensor, reduce) -> torch.Tensor:
    """``reduce`` (``torch.amax`` / ``torch.amin``) of ``[N, J, H, W]`` over tiles of TILE_SHAPE:
    ``[N, J, H / rows, W / columns]``. Along each row's contiguous runs of ``columns`` first, then
    over ``rows`` of those: both reductions read memory in order. On ONNX Runtime's CPU kernels this
    form ran faster than one reduction over two strided axes or a MaxPool of the tile's size (one
    exploratory timing, not a benchmark); what the summary costs in the graph is the "tiles in
    graph" column of ``benchmarks/speed.py --section host``."""
    rows, columns = TILE_SHAPE
    n, joints, height = x.shape[:3]
    across = reduce(x.reshape(n, joints, height, -1, columns), 4)
    return reduce(across.reshape(n, joints, -1, rows, across.shape[3]), 3)


def tile_summary(heatmap: torch.Tensor, tag_maps: list[torch.Tensor]) -> torch.Tensor:
    """``[N, 17, H / 8, W / 16, 5]``: per joint and tile of TILE_SHAPE pixels the largest heatmap
    value and the smallest and largest value of each tag component (``TILE_FIELDS``).

    Refine (``runtime.grouping``) bounds a tile's scores by these and searches only the tiles that
    can hold a person's maximum, so the host never reads a whole map. Maxima and minima are exact,
    so the summary is bit-exact for any reduction order; H and W must be multiples of the tile sides
    (every base size is). A NaN in a tile may or may not appear in its summary, depending on the
    backend: refine treats a NaN field as unknown.
    """
    fields = [_tile_reduce(heatmap, torch.amax)]
    for tag in tag_maps:
        fields += [_tile_reduce(tag, torch.amin), _tile_reduce(tag, torch.amax)]
    return torch.stack(fields, dim=4)


class Decode(nn.Module):
    """Raw network outputs of every scale → ``(candidates, heatmap, tags, tiles)``.

    Input: one ``(y0, y1)`` pair per scale (largest first), batch ``2N``: the raw outputs of the N
    images, then those of their flipped copies (batch ``N``, the images alone, when ``config.flip``
    is off). Outputs at the base size ``H × W``: ``candidates [N, 17, k, 5]`` (adjusted x, y, val,
    tag0, tag1), ``heatmap [N, 17, H, W]`` and ``tags [N, 17, H, W, 2]`` (original and flipped tag of
    each pixel, SPEC §5.3) and ``tiles [N, 17, H / 8, W / 16, 5]`` (``tile_summary``).

    Without the flip test the reference's tags have one component. The second component is then 0:
    every distance grouping and refine take is ``sqrt(d0² + 0)``, which is ``|d0|`` exactly (the
    square root of a correctly rounded square is exact), so people are those of a one-component
    tag, and every consumer keeps one layout.
    """

    def __init__(self, config: DecodeConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("flip_index", torch.tensor(config.flip_index, dtype=torch.long), persistent=False)

    def _unflip(self, y: torch.Tensor) -> torch.Tensor:
        """Flip a flipped pass back along width, then swap left/right joints in every group of 17 channels."""
        y = torch.flip(y, dims=[3])
        groups = [torch.index_select(g, 1, self.flip_index) for g in torch.split(y, NUM_JOINTS, dim=1)]
        return torch.cat(groups, dim=1) if len(groups) > 1 else groups[0]

    def aggregate(self, outputs: list[tuple[torch.Tensor, torch.Tensor]], height,
                  width) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Heatmap ``[N,17,H,W]`` averaged over stages, flips and scales; the two tag components
        ``[N,17,H,W]`` of scale 1 (original and flipped pass)."""
        total = None
        tag_maps = None
        for index, (y0, y1) in enumerate(outputs):
            if self.config.flip:
                n = y0.shape[0] // 2
                passes = ((y0[:n], y1[:n]), (self._unflip(y0[n:]), self._unflip(y1[n:])))
            else:
                passes = ((y0, y1),)
            stage_averages = [(_resize(a[:, :NUM_JOINTS], height, width) + _resize(b, height, width)) / 2.0
                              for a, b in passes]
            heatmap = (stage_averages[0] + stage_averages[1]) / 2.0 if self.config.flip else stage_averages[0]
            total = heatmap if total is None else total + heatmap
            if index == self.config.base:
                tag_maps = [_resize(a[:, NUM_JOINTS:], height, width) for a, _ in passes]
                if not self.config.flip:
                    tag_maps.append(torch.zeros_like(tag_maps[0]))
        if len(outputs) > 1:
            total = total / float(len(outputs))
        return total, tag_maps

    def candidates(self, heatmap: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
        """NMS, top-k, tag gather and quarter-pixel adjust of every candidate (SPEC §6, §8)."""
        n, joints = heatmap.shape[:2]
        # The map's height and width as int64 tensors computed from the data (sums of ones), not from
        # its shape: shape values live on the host in ONNX Runtime, and a host tensor entering this
        # device-side index arithmetic would need a copy node, which rules out CUDA graphs.
        height = torch.ones_like(heatmap[0, 0, :, 0]).sum().to(torch.int64)
        width = torch.ones_like(heatmap[0, 0, 0, :]).sum().to(torch.int64)
        pad = (self.config.nms_kernel - 1) // 2
        pooled = F.max_pool2d(heatmap, self.config.nms_kernel, 1, pad)
        suppressed = heatmap * torch.eq(pooled, heatmap).to(heatmap.dtype)
        val, index = torch.topk(suppressed.reshape(n, joints, -1), self.config.top_k, dim=2)
        x = torch.remainder(index, width)
        y = torch.div(index, width, rounding_mode="trunc")  # index >= 0: truncation is the floor

        flat_tags = tags.reshape(n, joints, -1, tags.shape[-1])
        tag = torch.stack([_gather(flat_tags[..., c], index) for c in range(tags.shape[-1])], dim=3)

        flat = heatmap.reshape(n, joints, -1)
        row = y * width
        # Neighbours clamped to the map by comparisons (an integer Clip is float-only in TensorRT).
        right = _gather(flat, row + x + torch.lt(x, width - 1).to(x.dtype))
        left = _gather(flat, row + x - torch.gt(x, 0).to(x.dtype))
        down = _gather(flat, (y + torch.lt(y, height - 1).to(y.dtype)) * width + x)
        up = _gather(flat, (y - torch.gt(y, 0).to(y.dtype)) * width + x)
        quarter = torch.tensor(0.25, dtype=heatmap.dtype)
        x_adjusted = x.to(heatmap.dtype) + torch.where(right > left, quarter, -quarter) + 0.5
        y_adjusted = y.to(heatmap.dtype) + torch.where(down > up, quarter, -quarter) + 0.5
        return torch.cat([x_adjusted.unsqueeze(3), y_adjusted.unsqueeze(3), val.unsqueeze(3), tag], dim=3)

    def forward(self, outputs: list[tuple[torch.Tensor, torch.Tensor]], height, width):
        heatmap, tag_maps = self.aggregate(outputs, height, width)
        tags = torch.stack(tag_maps, dim=4)
        return self.candidates(heatmap, tags), heatmap, tags, tile_summary(heatmap, tag_maps)


class DecodeOnly(nn.Module):
    """``Decode`` with the raw outputs as its only inputs: ``forward(y0, y1, y0, y1, ...)``.

    One ``(y0, y1)`` pair per scale, largest first, each of batch ``2N`` as ``Decode`` takes them (the
    N images, then their flipped copies; ``N`` without the flip test). The base size is ``Y0_STRIDE`` times the scale-1 ``y0``:
    exactly the scale-1 network input, whose sides are multiples of 32 (SPEC §3).
    """

    def __init__(self, config: DecodeConfig | None = None) -> None:
        super().__init__()
        self.decode = Decode(config or DecodeConfig())

    def forward(self, *raw: torch.Tensor):
        pairs = list(zip(raw[0::2], raw[1::2]))
        y0 = pairs[self.decode.config.base][0]
        return self.decode(pairs, y0.shape[2] * Y0_STRIDE, y0.shape[3] * Y0_STRIDE)


class DecodeGraph(nn.Module):
    """uint8 image(s) → ``(candidates, heatmap, tags, tiles)``: the whole dense part of the reference.

    One uint8 ``[N, H_s, W_s, 3]`` input per scale, largest first (sizes from
    ``runtime.preprocess.multi_scale_geometry``); the scale-1 input sets the base size.

    ``precision`` is the network's: ``"fp32"``, or ``"fp16"`` for a network whose parameters the
    caller has already converted to half (``network.half()``); the casts around it are added here.
    """

    def __init__(self, network: nn.Module, config: DecodeConfig | None = None, precision: str = "fp32") -> None:
        super().__init__()
        if precision not in NETWORK_DTYPES:
            raise ValueError(f"precision {precision!r}: choose one of {', '.join(NETWORK_DTYPES)}")
        self.config = config or DecodeConfig()
        self.precision = precision
        self.normalize = Normalize()
        self.network = network
        self.decode = Decode(self.config)

    def _run_network(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.precision == "fp32":
            return self.network(x)
        y0, y1 = self.network(x.to(NETWORK_DTYPES[self.precision]))
        return y0.to(torch.float32), y1.to(torch.float32)

    def forward(self, *images: torch.Tensor):
        inputs = [self.normalize(image) for image in images]
        batches = [torch.cat([x, torch.flip(x, dims=[3])], dim=0) if self.config.flip else x for x in inputs]
        outputs = [self._run_network(batch) for batch in batches]
        base = inputs[self.config.base]
        return self.decode(outputs, base.shape[2], base.shape[3])
