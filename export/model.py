"""HigherHRNet (bottom-up, COCO 17 joints) as plain PyTorch modules, W32 and W48.

The two variants differ only in the numbers of an ``ArchConfig``; small builder functions turn that
config into modules. Attribute names are chosen so that ``model.state_dict()`` has exactly the keys
and shapes of an mmpose 0.x checkpoint (SPEC §2): a checkpoint loads with ``load_state_dict`` and
nothing else. The computation follows SPEC §3 step by step, in the same order of operations as
mmpose, so float32 outputs on the same torch build are bit-identical.

Layout of the network::

    stem (2 x conv3x3 s2)  ->  layer1 (4 bottlenecks, 256 ch)  ->  transition1 -> stage2 (2 branches)
    -> transition2 -> stage3 (3 branches) -> transition3 -> stage4 (4 branches, last module: branch 0)
    -> head: y0 = final_layers.0(x)                          [N, 34, H/4, W/4] (17 heatmaps, 17 tags)
             x  = deconv_layers.0(cat([x, y0]))              [N, C,  H/2, W/2]
             y1 = final_layers.1(x)                          [N, 17, H/2, W/2]

``forward`` returns ``(y0, y1)`` without any output activation. It has no Python branching on
tensor values, so ``torch.onnx.export`` traces one graph that is valid for every H, W multiple of 32
(the up-fuse path is a nearest ``nn.Upsample`` with a constant scale factor -> a plain ONNX Resize).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from runtime.errors import UserError
from runtime.metadata import ARCHS, NUM_JOINTS


@dataclass(frozen=True)
class ArchConfig:
    """Everything that distinguishes one HigherHRNet variant from another."""

    name: str
    width: int  # C: channels of the highest-resolution branch; branch b has C * 2**b
    stem_channels: int = 64
    layer1_planes: int = 64  # bottleneck mid channels; output is 4x this
    layer1_blocks: int = 4
    stage_modules: tuple[int, ...] = (1, 4, 3)  # modules of stage2, stage3, stage4
    blocks_per_branch: int = 4
    head_blocks: int = 4  # basic blocks after the deconv of the head
    num_joints: int = NUM_JOINTS

    def branch_channels(self, num_branches: int) -> tuple[int, ...]:
        return tuple(self.width * 2**b for b in range(num_branches))


# The configuration of each name in runtime.metadata.ARCHS (the names every CLI and file uses).
ARCH_CONFIGS: dict[str, ArchConfig] = {name: ArchConfig(name=name, width=int(name[1:])) for name in ARCHS}


# ----------------------------------------------------------------------------------------------
# Layers and blocks


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=1, padding=0, bias=False)


def _conv_bn(conv: nn.Module, channels: int, relu: bool) -> nn.Sequential:
    """``Sequential(conv, BN[, ReLU])``: keys ``.0.weight`` and ``.1.*`` as in mmpose."""
    layers = [conv, nn.BatchNorm2d(channels)]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """3x3 conv, BN, ReLU, 3x3 conv, BN, plus identity, ReLU (channels unchanged, stride 1)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = _conv3x3(channels, channels)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = _conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + x)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (x4 channels) residual block of ``layer1``; optional 1x1+BN shortcut."""

    expansion = 4

    def __init__(self, cin: int, planes: int, downsample: bool):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = _conv1x1(cin, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, cout)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.downsample = _conv_bn(_conv1x1(cin, cout), cout, relu=False) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class HRModule(nn.Module):
    """Parallel branches of basic blocks followed by an all-to-all fusion.

    ``fuse_layers[i][j]`` maps branch j onto output i: ``nn.Identity`` for j == i (no parameters, so
    no state-dict keys, like mmpose's ``None``), 1x1 conv + BN + nearest upsample for j > i, and a
    chain of stride-2 3x3 convs for j < i. Output i is ``relu(sum_j fuse[i][j](x_j))`` summed in j
    order. With ``multiscale_output=False`` only output 0 is built and returned.
    """

    def __init__(self, channels: tuple[int, ...], num_blocks: int, multiscale_output: bool):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*(BasicBlock(c) for _ in range(num_blocks))) for c in channels
        )
        num_out = len(channels) if multiscale_output else 1
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(_fuse_path(channels, i, j) for j in range(len(channels))) for i in range(num_out)
        )
        self.relu = nn.ReLU()

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        outs = []
        for paths in self.fuse_layers:
            y = paths[0](xs[0])
            for path, x in zip(list(paths)[1:], xs[1:]):
                y = y + path(x)
            outs.append(self.relu(y))
        return outs


def _fuse_path(channels: tuple[int, ...], i: int, j: int) -> nn.Module:
    """The module carrying branch j to the resolution and width of branch i."""
    if j == i:
        return nn.Identity()
    if j > i:
        return nn.Sequential(
            _conv1x1(channels[j], channels[i]),
            nn.BatchNorm2d(channels[i]),
            nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"),
        )
    steps = []
    for t in range(i - j):
        last = t == i - j - 1
        cout = channels[i] if last else channels[j]
        steps.append(_conv_bn(_conv3x3(channels[j], cout, stride=2), cout, relu=not last))
    return nn.Sequential(*steps)


def _make_layer1(cfg: ArchConfig) -> nn.Sequential:
    cout = cfg.layer1_planes * Bottleneck.expansion
    blocks = [Bottleneck(cfg.stem_channels, cfg.layer1_planes, downsample=cfg.stem_channels != cout)]
    blocks += [Bottleneck(cout, cfg.layer1_planes, downsample=False) for _ in range(cfg.layer1_blocks - 1)]
    return nn.Sequential(*blocks)


def _make_transition(prev: tuple[int, ...], cur: tuple[int, ...]) -> nn.ModuleList:
    """Per output branch: identity if unchanged, 3x3 conv for a width change, 3x3 s2 for a new branch.

    A new branch reads the previous stage's lowest-resolution output and is wrapped in one more
    ``Sequential`` (keys ``transitionN.b.0.{0,1}``), as in mmpose.
    """
    layers: list[nn.Module] = []
    for b, cout in enumerate(cur):
        if b < len(prev):
            layers.append(nn.Identity() if prev[b] == cout else _conv_bn(_conv3x3(prev[b], cout), cout, relu=True))
        else:
            layers.append(nn.Sequential(_conv_bn(_conv3x3(prev[-1], cout, stride=2), cout, relu=True)))
    return nn.ModuleList(layers)


def _make_stage(cfg: ArchConfig, channels: tuple[int, ...], num_modules: int, last_stage: bool) -> nn.Sequential:
    modules = [
        HRModule(channels, cfg.blocks_per_branch, multiscale_output=not (last_stage and m == num_modules - 1))
        for m in range(num_modules)
    ]
    return nn.Sequential(*modules)


def _run_transition(transition: nn.ModuleList, ys: list[torch.Tensor]) -> list[torch.Tensor]:
    return [layer(ys[b] if b < len(ys) else ys[-1]) for b, layer in enumerate(transition)]


# ----------------------------------------------------------------------------------------------
# Backbone, head, model


class HRNetBackbone(nn.Module):
    """HRNet with four stages; returns the highest-resolution features ``[N, C, H/4, W/4]``."""

    def __init__(self, cfg: ArchConfig):
        super().__init__()
        stem = cfg.stem_channels
        self.conv1 = _conv3x3(3, stem, stride=2)
        self.bn1 = nn.BatchNorm2d(stem)
        self.conv2 = _conv3x3(stem, stem, stride=2)
        self.bn2 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU()
        self.layer1 = _make_layer1(cfg)

        prev: tuple[int, ...] = (cfg.layer1_planes * Bottleneck.expansion,)
        num_stages = len(cfg.stage_modules)
        for s, num_modules in enumerate(cfg.stage_modules):
            cur = cfg.branch_channels(s + 2)
            setattr(self, f"transition{s + 1}", _make_transition(prev, cur))
            setattr(self, f"stage{s + 2}", _make_stage(cfg, cur, num_modules, last_stage=s == num_stages - 1))
            prev = cur
        self.num_stages = num_stages

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        ys = [self.layer1(x)]
        for s in range(self.num_stages):
            xs = _run_transition(getattr(self, f"transition{s + 1}"), ys)
            for module in getattr(self, f"stage{s + 2}"):
                xs = module(xs)
            ys = xs
        return ys[0]


class HigherResolutionHead(nn.Module):
    """Associative-embedding head: 1/4 heatmaps+tags, then one deconv to 1/2 heatmaps."""

    def __init__(self, cfg: ArchConfig):
        super().__init__()
        c, k = cfg.width, cfg.num_joints
        self.final_layers = nn.ModuleList([
            nn.Conv2d(c, 2 * k, kernel_size=1),  # heatmaps 0..k-1, tags k..2k-1
            nn.Conv2d(c, k, kernel_size=1),
        ])
        deconv = nn.Sequential(
            nn.ConvTranspose2d(c + 2 * k, c, kernel_size=4, stride=2, padding=1, output_padding=0, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(),
        )
        blocks = [nn.Sequential(BasicBlock(c)) for _ in range(cfg.head_blocks)]
        self.deconv_layers = nn.ModuleList([nn.Sequential(deconv, *blocks)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y0 = self.final_layers[0](x)
        x = self.deconv_layers[0](torch.cat([x, y0], dim=1))
        y1 = self.final_layers[1](x)
        return y0, y1


class HigherHRNet(nn.Module):
    """Input ``[N, 3, H, W]`` normalized RGB (H, W multiples of 32; 64 for the pipeline's geometry).

    Returns ``(y0, y1)``: ``y0 [N, 34, H/4, W/4]`` (17 heatmaps then 17 tag maps) and
    ``y1 [N, 17, H/2, W/2]`` heatmaps.
    """

    def __init__(self, cfg: ArchConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = HRNetBackbone(cfg)
        self.keypoint_head = HigherResolutionHead(cfg)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.keypoint_head(self.backbone(x))


def build_model(arch: str) -> HigherHRNet:
    """A HigherHRNet of the named variant (``"w32"`` or ``"w48"``), float32, in eval mode.

    Weights are PyTorch's default initialization; load a checkpoint with ``export.checkpoint``.
    """
    if arch not in ARCH_CONFIGS:
        raise UserError(f"unknown arch {arch!r}: choose one of {', '.join(sorted(ARCHS))}")
    return HigherHRNet(ARCH_CONFIGS[arch]).float().eval()
