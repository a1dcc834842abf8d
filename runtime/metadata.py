"""What a model file knows about itself: architecture, input size and decode parameters.

Every backend carries a ``ModelMetadata`` (ONNX ``metadata_props``, a JSON sidecar beside a TensorRT
plan, or the arguments a torch model is built from), so the pipeline never asks the user for what the
file already says. Torch-free on purpose: edge deployments read it too.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

from runtime.errors import UserError

NUM_JOINTS = 17
FLIP_INDEX = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
ARCHS = ("w32", "w48")
INPUT_SIZES = (512, 640)
# What every exported graph returns, in this order.
OUTPUT_NAMES = ("candidates", "heatmap", "tags", "tiles")
# The ``tiles`` output summarises each joint's maps for refine (SPEC §8) in tiles of TILE_SHAPE
# (rows, columns) pixels, row-major, with TILE_FIELDS per tile: the largest heatmap value and the
# range of each tag component. Base sizes are multiples of 16 (every INPUT_MULTIPLE is), so the
# tiles of a graph cover its maps exactly.
TILE_SHAPE = (8, 16)
TILE_FIELDS = ("heatmap_max", "tag0_min", "tag0_max", "tag1_min", "tag1_max")
# Input sides must be multiples of this: what runtime.preprocess produces for every scale. An ONNX file
# records it under INPUT_MULTIPLE_KEY beside the ModelMetadata keys.
INPUT_MULTIPLE = 64
INPUT_MULTIPLE_KEY = "export.input_multiple"
TOOLKIT_VERSION = "0.1.0"
# Test scales a file may hold: 0.25 of a 512 input is 128 px, 4 times it 2048 px (mmpose's are 2, 1, 0.5).
SCALE_RANGE = (0.25, 4.0)


def tile_grid(height: int, width: int) -> tuple[int, int]:
    """Tiles down and across a ``height x width`` map (a partial tile at an edge counts)."""
    rows, cols = TILE_SHAPE
    return -(-height // rows), -(-width // cols)


@dataclass(frozen=True)
class DecodeConfig:
    """Decode parameters of the reference's HigherHRNet test config (mmpose 0.29).

    ``scales`` are sorted largest first and must contain 1 (tags are read there). The two thresholds
    are applied by the grouping, not in the graph; they travel as metadata. ``flip`` is the flip test
    (SPEC §5, on in the reference's config): off, the network runs once per image instead of twice,
    the heatmap is the stage average of that one pass and each pixel's tag is that pass's alone.
    """

    scales: tuple[float, ...] = (1.0,)
    flip: bool = True
    top_k: int = 30
    nms_kernel: int = 5
    detection_threshold: float = 0.1
    tag_threshold: float = 1.0
    flip_index: tuple[int, ...] = field(default=FLIP_INDEX)

    def __post_init__(self) -> None:
        ordered = tuple(sorted((float(s) for s in self.scales), reverse=True))
        low, high = SCALE_RANGE
        if not all(math.isfinite(s) and low <= s <= high for s in ordered):
            raise ValueError(f"scales {list(self.scales)}: every scale must be a number from {low:g} to {high:g}")
        if 1.0 not in ordered or len(set(ordered)) != len(ordered):
            raise ValueError(f"scales {list(self.scales)}: distinct positive factors including 1 are required")
        object.__setattr__(self, "scales", ordered)
        object.__setattr__(self, "flip_index", tuple(int(i) for i in self.flip_index))

    @property
    def base(self) -> int:
        """Index of scale 1 in ``scales``."""
        return self.scales.index(1.0)


@dataclass(frozen=True)
class ModelMetadata:
    """Everything the pipeline needs to run a model file, whatever the backend."""

    arch: str
    input_size: int
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    checkpoint: str = ""
    precision: str = "fp32"
    toolkit_version: str = TOOLKIT_VERSION
    mean: tuple[float, ...] = MEAN
    std: tuple[float, ...] = STD
    # Longest side of the scale-1 network input the file is meant for (a TensorRT profile's maximum;
    # for other files a memory guard: 4096 px holds an 8:1 panorama at input size 512).
    max_input_side: int = 4096

    @property
    def input_names(self) -> list[str]:
        """One uint8 image input per scale, largest first: ``image`` alone, or ``image_0``, ``image_1`` …"""
        count = len(self.decode.scales)
        return ["image"] if count == 1 else [f"image_{i}" for i in range(count)]

    def to_props(self) -> dict[str, str]:
        """Flat string map (ONNX ``metadata_props``, engine sidecar)."""
        props = {key: value for key, value in asdict(self).items() if key != "decode"}
        props.update({f"decode.{key}": value for key, value in asdict(self.decode).items()})
        return {f"hrnet_deploy.{key}": json.dumps(value) for key, value in props.items()}

    @classmethod
    def from_props(cls, props: dict[str, str]) -> "ModelMetadata":
        """Inverse of ``to_props``; raises KeyError/ValueError on a map that did not come from it."""
        prefix = "hrnet_deploy."
        values = {key[len(prefix):]: json.loads(value) for key, value in props.items() if key.startswith(prefix)}
        decode = {key[len("decode."):]: values.pop(key) for key in list(values) if key.startswith("decode.")}
        decode = DecodeConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in decode.items()})
        tuples = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(decode=decode, **tuples)


@dataclass(frozen=True)
class FileFacts:
    """What an exported file's ``metadata_props`` say: the metadata, the input multiple, every entry."""

    metadata: ModelMetadata
    input_multiple: int
    props: dict[str, str]  # hrnet_deploy.*, export.*, calib.* entries as written


def file_props(path) -> dict[str, str]:
    """The ``metadata_props`` of the ONNX file at ``path``, as written (onnx is imported only here)."""
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def read_props(props: dict[str, str], where: str, fix: str = "re-export it with python -m export.onnx") -> FileFacts:
    """Parse a file's ``metadata_props`` however they are read (onnx, ONNX Runtime, a sidecar).

    The one reader every consumer shares, so a file is accepted or refused the same way everywhere.
    A map without hrnet_deploy keys, or with damaged ones, is a ``UserError`` that starts with
    ``where`` (the file, or the flag that named it) and ends with ``fix``.
    """
    props = dict(props)
    if not any(key.startswith("hrnet_deploy.") for key in props):
        raise UserError(f"{where}: not an hrnet-deploy export (no hrnet_deploy metadata in the file); {fix}")
    try:
        metadata = ModelMetadata.from_props(props)
    except (KeyError, ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
        raise UserError(f"{where}: its hrnet_deploy metadata is incomplete or damaged ({exc}); {fix}") from None
    value = props.get(INPUT_MULTIPLE_KEY, "")
    multiple = int(value) if value.isdigit() and int(value) > 0 else INPUT_MULTIPLE
    return FileFacts(metadata, multiple, props)
