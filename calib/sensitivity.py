"""Which layer groups of an INT8 file cost the most accuracy, and which stay float to meet a target SQNR.

``python -m calib --keep-float N`` and ``--target-sqnr DB`` run this pass after the statistics:

1. **Groups.** The quantized nodes are grouped by the HRNet module the exporter's node names place
   them in (``layer_group``): the stem, ``layer1``, each transition, the parallel branches of each
   high-resolution module, each module's fuse layers (with its sums and ReLUs), and the head's
   deconvolution block: 22 groups for W32 and W48.
2. **Solo sensitivity.** For each group, a copy of the fully quantized model in which only that group
   is quantized (everything else float32, weights included) runs on the sensitivity images; its output
   SQNR against the FP32 file (``output_sqnr``: the lower of heatmap and tags, signal and noise summed
   over the images) ranks the groups, the lowest SQNR being the most sensitive.
3. **Choice.** ``--keep-float N`` keeps the N most sensitive groups float. ``--target-sqnr DB`` keeps
   the fewest most-sensitive groups (0, 1, 2, ... in rank order, each count measured on the same
   images) whose model reaches DB; ``--keep-float N`` then caps how many may be kept.

The sensitivity images are the first images of the calibration list, so the choice never looks at an
evaluation image. The solo SQNRs and every measured count are written to a JSON file beside the
calibration statistics (keyed by them, the method and the images), so a rerun measures nothing again.

Every variant is made by ``calib.quantize.keep_float_region`` (then ``fold_relus``) from the one
fully quantized model, the same functions that make the file that is written; they run in ONNX
Runtime on the CPU with its full graph optimizations, as the runtime does.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from runtime.errors import UserError
from runtime.files import write_atomic

DEFAULT_IMAGES = 2
SENSITIVITY_FORMAT = 1
_STAGE_MODULE = re.compile(r"^/network/backbone/(stage\d+\.\d+)(_\d+)?/(branches\.\d+/)?")
_SCOPE = re.compile(r"^/network/(backbone/(conv\d|relu(_\d)?/|layer\d|transition\d)|keypoint_head/deconv_layers\.\d+)")


def layer_group(node: str) -> str:
    """The layer group of a network node name: ``stage3.1.branches``, ``stage3.1.fuse``, ``layer1``, ``stem``...

    The copies of a multi-scale export (``stage3.1_1``, ``conv1_1``) share their module's group. Raises ValueError for a name outside the exporter's ``/network/`` scopes.
    """
    module = _STAGE_MODULE.match(node)
    if module:
        return f"{module.group(1)}.{'branches' if module.group(3) else 'fuse'}"
    scope = _SCOPE.match(node)
    if scope is None:
        raise ValueError(f"{node}: not a node of the exported network's modules")
    if scope.group(2):
        return "stem" if scope.group(2).startswith(("conv", "relu")) else scope.group(2)
    return "head"


def layer_groups(nodes: Iterable[str]) -> dict[str, list[str]]:
    """Nodes by layer group, groups in the order their first node comes in ``nodes`` (graph order)."""
    groups: dict[str, list[str]] = {}
    for node in nodes:
        groups.setdefault(layer_group(node), []).append(node)
    return groups


def output_sqnr(references: list[dict[str, np.ndarray]], outputs: list[dict[str, np.ndarray]]) -> float:
    """min over heatmap and tags of ``10 log10(Σ ref² / Σ (ref - out)²)``, the sums over all images (dB)."""
    worst = math.inf
    for name in ("heatmap", "tags"):
        signal = noise = 0.0
        for want, got in zip(references, outputs):
            want64, got64 = want[name].astype(np.float64), got[name].astype(np.float64)
            if not np.isfinite(got64).all():
                return -math.inf
            signal += float(np.square(want64).sum())
            noise += float(np.square(want64 - got64).sum())
        worst = min(worst, math.inf if noise == 0.0 else 10.0 * math.log10(max(signal, 1e-300) / noise))
    return worst


@dataclass(frozen=True)
class Sensitivity:
    """The solo SQNR of every group (graph order), and the SQNR measured with the k most sensitive kept float."""

    solo_db: dict[str, float]
    kept_db: dict[int, float]  # number of groups kept float (most sensitive first) -> output SQNR

    def ranking(self) -> list[str]:
        """Groups, most sensitive (lowest solo SQNR) first; equal SQNRs in graph order."""
        order = list(self.solo_db)
        return sorted(order, key=lambda g: (self.solo_db[g], order.index(g)))

    def to_json(self) -> str:
        return json.dumps({"format": SENSITIVITY_FORMAT, **asdict(self)}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Sensitivity:
        data = json.loads(text)
        if data.get("format") != SENSITIVITY_FORMAT:
            raise ValueError("another sensitivity format")
        return cls({g: float(v) for g, v in data["solo_db"].items()},
                   {int(k): float(v) for k, v in data["kept_db"].items()})


def choose(sensitivity: Sensitivity, measure: Callable[[int], float], keep_float: int | None,
           target_sqnr: float | None) -> int:
    """How many of the most sensitive groups stay float; ``measure(k)`` is the SQNR with k kept float.

    Without a target: ``keep_float``. With one: the smallest k (up to ``keep_float``, else every group)
    whose SQNR reaches the target, counts tried in increasing order; a UserError when none does.
    """
    groups = len(sensitivity.solo_db)
    if target_sqnr is None:
        if keep_float is None or not 0 <= keep_float <= groups:
            raise UserError(f"--keep-float {keep_float}: give 0 to {groups} (this model has {groups} layer groups)")
        return keep_float
    limit = groups if keep_float is None else keep_float
    for k in range(limit + 1):
        if measure(k) >= target_sqnr:
            return k
    raise UserError(f"--target-sqnr {target_sqnr:g}: not reached with up to {limit} of the {groups} layer groups kept "
                    f"float (best {max(measure(k) for k in range(limit + 1)):.1f} dB); lower the target or raise "
                    f"--keep-float")


def sensitivity_file(statistics: Path, method: str, image_digest: str) -> Path:
    """Where the pass's measurements are cached: beside the statistics, keyed by them, the method and the images."""
    key = hashlib.sha256(f"{statistics.name}\n{method}\n{image_digest}".encode()).hexdigest()[:16]
    return statistics.with_name(f"{statistics.stem}.sensitivity-{key}.json")


class SensitivityPass:
    """Variants of one fully quantized model, each run on the sensitivity images against the FP32 outputs.

    Measurements are cached in ``cache`` (JSON, written atomically after every new value), so an
    interrupted pass resumes.
    """

    def __init__(self, source, quantized_model, quantized: list[str], feeds: list[dict[str, np.ndarray]],
                 cache: Path) -> None:
        from runtime.backends.onnx_backend import OnnxBackend

        self.source, self.model, self.feeds, self.cache = source, quantized_model, feeds, cache
        self.groups = layer_groups(quantized)
        with OnnxBackend(source.path) as fp32:
            self.references = [fp32.run(feed) for feed in feeds]
        self._solo: dict[str, float] = {}
        self._kept: dict[int, float] = {}
        if cache.is_file():
            try:
                cached = Sensitivity.from_json(cache.read_text())
            except (ValueError, KeyError):
                cached = None
            if cached is not None and list(cached.solo_db) == list(self.groups):
                self._solo, self._kept = dict(cached.solo_db), dict(cached.kept_db)

    def result(self) -> Sensitivity:
        """What has been measured so far."""
        return Sensitivity(dict(self._solo), dict(self._kept))

    def _save(self) -> None:
        write_atomic(self.cache, self.result().to_json().encode())

    def variant(self, quantized: set[str]):
        """The fully quantized model with every node outside ``quantized`` float again (a copy)."""
        import onnx

        from calib.quantize import fold_relus, keep_float_region

        copy = onnx.ModelProto()
        copy.CopyFrom(self.model)
        keep_float_region(copy, quantized, self.source.model)
        fold_relus(copy)
        return copy

    def sqnr(self, quantized: set[str]) -> float:
        """Output SQNR of the variant that quantizes only ``quantized``, on the sensitivity images."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.enable_cpu_mem_arena = False
        options.log_severity_level = 3
        session = ort.InferenceSession(self.variant(quantized).SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        outputs = [dict(zip(names, session.run(None, feed))) for feed in self.feeds]
        return output_sqnr(self.references, outputs)

    def solo(self, progress: Callable[[Iterable[str]], Iterable[str]] = iter) -> Sensitivity:
        """Measure every group quantized alone (cached ones are not measured again)."""
        for group in progress(list(self.groups)):
            if group not in self._solo:
                self._solo[group] = self.sqnr(set(self.groups[group]))
                self._save()
        return self.result()

    def kept_nodes(self, count: int) -> list[str]:
        """The nodes of the ``count`` most sensitive groups (``solo`` must have run)."""
        if len(self._solo) != len(self.groups):
            raise RuntimeError("kept_nodes needs every group's solo SQNR: run solo() first")
        ranking = self.result().ranking()
        return [node for group in ranking[:count] for node in self.groups[group]]

    def measure_kept(self, count: int) -> float:
        """Output SQNR with the ``count`` most sensitive groups float and every other group quantized."""
        if count not in self._kept:
            every = {node for nodes in self.groups.values() for node in nodes}
            self._kept[count] = self.sqnr(every - set(self.kept_nodes(count)))
            self._save()
        return self._kept[count]
