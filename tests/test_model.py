"""export.model: mmpose key names and shapes, parameter counts, output shapes, bit-exactness.

The expected key set is generated here from the patterns written in SPEC §2 (not from the model),
and the sample shapes are the numbers of SPEC §2/§3 written out by hand.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from export.model import ARCH_CONFIGS, ArchConfig, HigherHRNet, build_model
from export.synthetic_weights import synthetic_state_dict

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
GOLDEN_RECIPE = SHARED / "golden" / "synthetic_weights.py"
E2E_GOLDEN = SHARED / "golden" / "e2e_w32_512_seed0.json"
MINI_IMAGES = SHARED / "data" / "coco_val2017_mini" / "images"

BN_ENTRIES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
PARAM_COUNTS = {"w32": 28_645_331, "w48": 63_827_139}
WIDTHS = {"w32": 32, "w48": 48}


# ----------------------------------------------------------------------------------------------
# The reference key list, written from SPEC §2's pattern text


def _conv(prefix: str) -> list[str]:
    return [f"{prefix}.weight"]


def _bn(prefix: str) -> list[str]:
    return [f"{prefix}.{e}" for e in BN_ENTRIES]


def _conv_bn(prefix: str) -> list[str]:
    """``{prefix}.{0,1}``: conv then BN."""
    return _conv(f"{prefix}.0") + _bn(f"{prefix}.1")


def _basic_block(prefix: str) -> list[str]:
    return _conv(f"{prefix}.conv1") + _bn(f"{prefix}.bn1") + _conv(f"{prefix}.conv2") + _bn(f"{prefix}.bn2")


def spec_keys() -> set[str]:
    keys: list[str] = []
    b = "backbone"
    keys += _conv(f"{b}.conv1") + _bn(f"{b}.bn1") + _conv(f"{b}.conv2") + _bn(f"{b}.bn2")
    for k in range(4):
        for n in (1, 2, 3):
            keys += _conv(f"{b}.layer1.{k}.conv{n}") + _bn(f"{b}.layer1.{k}.bn{n}")
    keys += _conv_bn(f"{b}.layer1.0.downsample")
    keys += _conv_bn(f"{b}.transition1.0")
    keys += _conv_bn(f"{b}.transition1.1.0")
    keys += _conv_bn(f"{b}.transition2.2.0")
    keys += _conv_bn(f"{b}.transition3.3.0")
    stages = {2: (1, 2), 3: (4, 3), 4: (3, 4)}  # stage -> (modules, branches)
    for stage, (modules, branches) in stages.items():
        for m in range(modules):
            prefix = f"{b}.stage{stage}.{m}"
            for br in range(branches):
                for k in range(4):
                    keys += _basic_block(f"{prefix}.branches.{br}.{k}")
            outputs = 1 if (stage == 4 and m == modules - 1) else branches
            for i in range(outputs):
                for j in range(branches):
                    if j > i:
                        keys += _conv_bn(f"{prefix}.fuse_layers.{i}.{j}")
                    elif j < i:
                        for t in range(i - j):
                            keys += _conv_bn(f"{prefix}.fuse_layers.{i}.{j}.{t}")
    h = "keypoint_head"
    for n in (0, 1):
        keys += [f"{h}.final_layers.{n}.weight", f"{h}.final_layers.{n}.bias"]
    keys += _conv_bn(f"{h}.deconv_layers.0.0")
    for blk in range(1, 5):
        keys += _basic_block(f"{h}.deconv_layers.0.{blk}.0")
    assert len(keys) == len(set(keys))
    return set(keys)


def spec_sample_shapes(c: int) -> dict[str, list[int]]:
    """One or more keys of every pattern family with the shape SPEC §2/§3 gives it."""
    return {
        "backbone.conv1.weight": [64, 3, 3, 3],
        "backbone.bn1.running_var": [64],
        "backbone.conv2.weight": [64, 64, 3, 3],
        "backbone.bn2.num_batches_tracked": [],
        "backbone.layer1.0.conv1.weight": [64, 64, 1, 1],
        "backbone.layer1.0.conv2.weight": [64, 64, 3, 3],
        "backbone.layer1.0.conv3.weight": [256, 64, 1, 1],
        "backbone.layer1.0.bn3.weight": [256],
        "backbone.layer1.3.conv1.weight": [64, 256, 1, 1],
        "backbone.layer1.0.downsample.0.weight": [256, 64, 1, 1],
        "backbone.layer1.0.downsample.1.running_mean": [256],
        "backbone.transition1.0.0.weight": [c, 256, 3, 3],
        "backbone.transition1.0.1.bias": [c],
        "backbone.transition1.1.0.0.weight": [2 * c, 256, 3, 3],
        "backbone.transition1.1.0.1.weight": [2 * c],
        "backbone.transition2.2.0.0.weight": [4 * c, 2 * c, 3, 3],
        "backbone.transition3.3.0.0.weight": [8 * c, 4 * c, 3, 3],
        "backbone.transition3.3.0.1.running_var": [8 * c],
        "backbone.stage2.0.branches.1.3.conv2.weight": [2 * c, 2 * c, 3, 3],
        "backbone.stage3.3.branches.2.0.bn1.weight": [4 * c],
        "backbone.stage4.2.branches.3.3.conv1.weight": [8 * c, 8 * c, 3, 3],
        "backbone.stage2.0.fuse_layers.0.1.0.weight": [c, 2 * c, 1, 1],
        "backbone.stage2.0.fuse_layers.1.0.0.0.weight": [2 * c, c, 3, 3],
        "backbone.stage3.1.fuse_layers.0.2.1.weight": [c],
        "backbone.stage3.2.fuse_layers.1.2.0.weight": [2 * c, 4 * c, 1, 1],
        "backbone.stage3.0.fuse_layers.2.0.0.0.weight": [c, c, 3, 3],
        "backbone.stage3.0.fuse_layers.2.0.1.0.weight": [4 * c, c, 3, 3],
        "backbone.stage3.0.fuse_layers.2.1.0.0.weight": [4 * c, 2 * c, 3, 3],
        "backbone.stage4.0.fuse_layers.0.3.0.weight": [c, 8 * c, 1, 1],
        "backbone.stage4.1.fuse_layers.3.0.2.0.weight": [8 * c, c, 3, 3],
        "backbone.stage4.1.fuse_layers.3.0.2.1.weight": [8 * c],
        "backbone.stage4.1.fuse_layers.3.1.1.0.weight": [8 * c, 2 * c, 3, 3],
        "backbone.stage4.2.fuse_layers.0.3.0.weight": [c, 8 * c, 1, 1],
        "keypoint_head.final_layers.0.weight": [34, c, 1, 1],
        "keypoint_head.final_layers.0.bias": [34],
        "keypoint_head.final_layers.1.weight": [17, c, 1, 1],
        "keypoint_head.final_layers.1.bias": [17],
        "keypoint_head.deconv_layers.0.0.0.weight": [c + 34, c, 4, 4],
        "keypoint_head.deconv_layers.0.0.1.running_mean": [c],
        "keypoint_head.deconv_layers.0.1.0.conv1.weight": [c, c, 3, 3],
        "keypoint_head.deconv_layers.0.4.0.bn2.weight": [c],
    }


# ----------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module", params=sorted(ARCH_CONFIGS))
def arch_model(request) -> tuple[str, HigherHRNet]:
    return request.param, build_model(request.param)


@pytest.fixture(scope="module")
def synthetic_w32() -> HigherHRNet:
    model = build_model("w32")
    model.load_state_dict(synthetic_state_dict(model.state_dict(), 0), strict=True)
    return model


def _load_by_path(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tensor_digest(t: torch.Tensor) -> str:
    t = t.detach().contiguous().cpu()
    return hashlib.sha256(str(t.dtype).encode() + str(tuple(t.shape)).encode() + t.numpy().tobytes()).hexdigest()


# ----------------------------------------------------------------------------------------------
# Structure


def test_arch_table():
    assert set(ARCH_CONFIGS) == {"w32", "w48"}
    for name, cfg in ARCH_CONFIGS.items():
        assert isinstance(cfg, ArchConfig) and cfg.name == name and cfg.width == WIDTHS[name]
    # The variants differ in data only: every field but name and width is shared.
    a, b = ARCH_CONFIGS["w32"], ARCH_CONFIGS["w48"]
    assert {f: getattr(a, f) for f in a.__dataclass_fields__ if f not in ("name", "width")} == \
        {f: getattr(b, f) for f in b.__dataclass_fields__ if f not in ("name", "width")}


def test_state_dict_keys_equal_spec(arch_model):
    _, model = arch_model
    got = list(model.state_dict())
    assert len(got) == len(set(got)) == 1810
    expected = spec_keys()
    assert len(expected) == 1810
    assert not (set(got) - expected), f"keys not in SPEC: {sorted(set(got) - expected)[:10]}"
    assert not (expected - set(got)), f"SPEC keys missing: {sorted(expected - set(got))[:10]}"
    assert all(k.startswith(("backbone.", "keypoint_head.")) for k in got)


def test_entry_kinds(arch_model):
    _, model = arch_model
    sd = model.state_dict()
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    assert len(params) == 907
    assert len(buffers) == 903
    assert sum(1 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)) == 301
    assert set(params) | set(buffers) == set(sd)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            assert m.eps == 1e-5
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and m.bias is not None:
            assert m.out_channels in (34, 17)  # only the head's output layers carry a bias


def test_sample_shapes(arch_model):
    arch, model = arch_model
    sd = model.state_dict()
    for key, shape in spec_sample_shapes(WIDTHS[arch]).items():
        assert key in sd, key
        assert list(sd[key].shape) == shape, (key, list(sd[key].shape), shape)
    assert sd["backbone.bn1.num_batches_tracked"].dtype == torch.int64
    assert all(v.dtype == torch.float32 for k, v in sd.items() if not k.endswith("num_batches_tracked"))


def test_parameter_counts(arch_model):
    arch, model = arch_model
    assert sum(p.numel() for p in model.parameters()) == PARAM_COUNTS[arch]


def test_build_model_is_eval_float32(arch_model):
    _, model = arch_model
    assert not model.training and not any(m.training for m in model.modules())
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_unknown_arch():
    from runtime.errors import UserError

    with pytest.raises(UserError, match="unknown arch 'w64'.*w32, w48"):
        build_model("w64")


# ----------------------------------------------------------------------------------------------
# Forward


@pytest.mark.parametrize("h, w", [(512, 832), (832, 512)], ids=["landscape", "portrait"])
def test_output_shapes(synthetic_w32, h, w):
    with torch.no_grad():
        y0, y1 = synthetic_w32(torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(1)))
    assert tuple(y0.shape) == (1, 34, h // 4, w // 4)
    assert tuple(y1.shape) == (1, 17, h // 2, w // 2)
    assert y0.dtype == y1.dtype == torch.float32
    assert torch.isfinite(y0).all() and torch.isfinite(y1).all()
    assert (y1 < 0).any()  # no output activation


def test_eval_forward_is_deterministic(synthetic_w32):
    x = torch.randn(2, 3, 256, 320, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a0, a1 = synthetic_w32(x)
        b0, b1 = synthetic_w32(x.clone())
    assert torch.equal(a0, b0) and torch.equal(a1, b1)
    # Batch items are independent in eval mode (running statistics, no batch statistics).
    with torch.no_grad():
        c0, c1 = synthetic_w32(x[1:])
    torch.testing.assert_close(c0, a0[1:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c1, a1[1:], rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Synthetic weights contract


def test_vendored_recipe_is_byte_identical():
    if not GOLDEN_RECIPE.is_file():
        pytest.skip(f"{GOLDEN_RECIPE} is absent (no ../shared checkout)")
    vendored = REPO / "export" / "synthetic_weights.py"
    assert vendored.read_bytes() == GOLDEN_RECIPE.read_bytes()


@pytest.mark.parametrize("arch", ["w32", "w48"])
def test_synthetic_recipe_matches_golden_module(arch):
    if not GOLDEN_RECIPE.is_file():
        pytest.skip(f"{GOLDEN_RECIPE} is absent (no ../shared checkout)")
    golden = _load_by_path("golden_synthetic_weights", GOLDEN_RECIPE)
    template = build_model(arch).state_dict()
    ours = synthetic_state_dict(template, 0)
    theirs = golden.synthetic_state_dict(template, 0)
    assert list(ours) == list(theirs) == sorted(template)
    for key in ours:
        assert _tensor_digest(ours[key]) == _tensor_digest(theirs[key]), key


# ----------------------------------------------------------------------------------------------
# Bit-exactness against mmpose 0.29.0 (golden raw outputs, synthetic seed 0)


def _golden_records():
    if not E2E_GOLDEN.is_file():
        return []
    return json.loads(E2E_GOLDEN.read_text())["records"]


def _preprocess(path: Path, size: int):
    """SPEC §4 steps 1-4, transcribed only to feed the golden inputs (checked by their sha256)."""
    cv2 = pytest.importorskip("cv2")
    import numpy as np

    img = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]

    def ceil64(v: float) -> int:
        return int(math.ceil(v / 64) * 64)

    if w >= h:
        h_res, w_res = size, ceil64(size / h * w)
        scale_x = w_res / h_res * h / 200
    else:
        w_res, h_res = size, ceil64(size / w * h)
        scale_x = w / 200
    cx, cy = round(w / 2), round(h / 2)

    def third(a, b):
        return b + np.array([-(a - b)[1], (a - b)[0]], dtype=np.float32)

    src = np.zeros((3, 2), np.float32)
    dst = np.zeros((3, 2), np.float32)
    src[0] = [cx, cy]
    src[1] = src[0] + np.array([0, -scale_x * 100], np.float32)
    dst[0] = [w_res / 2, h_res / 2]
    dst[1] = np.array([w_res / 2, h_res / 2 - w_res / 2], np.float32)
    src[2], dst[2] = third(src[0], src[1]), third(dst[0], dst[1])
    warped = cv2.warpAffine(img, cv2.getAffineTransform(src, dst), (w_res, h_res))
    x = warped.astype(np.float32) / np.float32(255.0)
    x = (x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


_RECORDS = _golden_records()


@pytest.mark.parametrize(
    "record",
    [pytest.param(r, id=r["file_name"], marks=() if i == 0 else pytest.mark.slow) for i, r in enumerate(_RECORDS)]
    or [pytest.param(None, marks=pytest.mark.skip(reason=f"{E2E_GOLDEN} is absent (no ../shared checkout)"))],
)
def test_raw_outputs_match_mmpose(synthetic_w32, record, golden_cpu):
    """Raw outputs against mmpose's: bit for bit where this CPU rounds the convolutions as the golden's
    machine did (``golden_cpu``), else within float32 reassociation (tests/conftest.py says why and how
    much). Mutation tried: a BatchNorm eps of 1e-4 instead of 1e-5 fails the tolerance check too."""
    from tests.conftest import RAW_SAMPLE_RTOL, SUM_RTOL

    image = MINI_IMAGES / record["file_name"]
    if not image.is_file():
        pytest.skip(f"{image} is absent")
    x = _preprocess(image, 512)
    expected_in = record["inputs"][0]
    assert list(x.shape) == expected_in["shape"]
    assert hashlib.sha256(x.tobytes()).hexdigest() == expected_in["sha256"], "input transcription differs"
    with torch.no_grad():
        outputs = synthetic_w32(torch.from_numpy(x))
    for name, y, ref in zip(("y0", "y1"), outputs, record["raw_outputs"][0]):
        assert list(y.shape) == ref["shape"], name
        flat = y.double().flatten()
        n = flat.numel()
        samples = [flat[i * (n - 1) // 4].item() for i in range(5)]
        if golden_cpu:
            assert samples == ref["samples"], name  # float32 values stored exactly: bit-identical
        else:
            scale = ref["mean_abs"]
            assert all(abs(a - b) <= RAW_SAMPLE_RTOL * max(abs(b), scale) for a, b in zip(samples, ref["samples"])), \
                (name, samples, ref["samples"])
        rtol = 1e-12 if golden_cpu else SUM_RTOL
        assert math.isclose(flat.sum().item(), ref["sum"], rel_tol=rtol), name
        assert math.isclose(flat.abs().mean().item(), ref["mean_abs"], rel_tol=rtol), name


def test_torch_backend_restores_the_tf32_flags(monkeypatch):
    """A CUDA run turns TF32 off only while the graph runs (mutation tried: not restoring the flags
    in ``TorchBackend._float32`` fails this). The device is faked so the flag handling runs on the CPU."""
    import torch

    import numpy as np

    from runtime.backends.torch_backend import TorchBackend

    seen = []

    class Graph(torch.nn.Module):
        def forward(self, image):
            seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
            return image.float(), image.float(), image.float()

    from runtime.metadata import ModelMetadata

    backend = TorchBackend(Graph(), ModelMetadata(arch="w32", input_size=512, checkpoint="synthetic:0"))
    backend.device = torch.device("cuda")  # only _float32 reads it; the tensors below stay on the CPU
    monkeypatch.setattr(torch.Tensor, "to", lambda self, *a, **k: self)
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        backend._run({name: np.zeros((1, 64, 64, 3), np.uint8) for name in backend.metadata.input_names})
        assert seen == [(False, False)]
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before
