"""export.checkpoint: every accepted file form loads the same tensors; every bad input is one clear UserError.

Material: ``synthetic:0`` state dicts saved to temporary folders. Files for error cases are built
cheaply (all tensors are views of one shared storage), so only the good-path files are full size.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import urllib.error
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from export import checkpoint
from export import zoo
from export.checkpoint import load_model, resolve_state_dict
from export.zoo import ZOO, ZOO_ENTRIES, ZooEntry
from export.model import HigherHRNet, ARCH_CONFIGS, build_model
from export.synthetic_weights import synthetic_state_dict
from runtime.errors import UserError



def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cheap_state_dict(arch: str) -> OrderedDict:
    """Keys and shapes of ``arch`` with every float tensor a view of one small shared storage."""
    with torch.device("meta"):
        template = HigherHRNet(ARCH_CONFIGS[arch]).state_dict()
    base = torch.linspace(-1, 1, max(v.numel() for v in template.values()))
    out = OrderedDict()
    for key, ref in template.items():
        if ref.dtype == torch.int64:
            out[key] = torch.tensor(0)
        else:
            out[key] = base[: ref.numel()].view(ref.shape)
    return out


def _original_repo_name(key: str) -> str:
    return key.split(".", 1)[1]  # drop "backbone." / "keypoint_head."


@pytest.fixture(scope="module")
def synthetic() -> dict[str, torch.Tensor]:
    state, provenance = resolve_state_dict("synthetic:0", "w32")
    assert provenance == "synthetic:0"
    return state


@pytest.fixture(scope="module")
def files(tmp_path_factory, synthetic) -> dict[str, Path]:
    """The four accepted forms of the same weights (and combinations), saved once per module."""
    folder = tmp_path_factory.mktemp("good")
    forms = {
        "mmpose": {"meta": {"epoch": 300, "mmpose_version": "0.29.0", "config": "model = dict(...)"},
                   "state_dict": OrderedDict(synthetic)},
        "bare": OrderedDict(synthetic),
        "original_repo": OrderedDict((_original_repo_name(k), v) for k, v in synthetic.items()),
        "module_prefix": {"state_dict": OrderedDict((f"module.{k}", v) for k, v in synthetic.items())},
        "module_original_repo": OrderedDict((f"module.{_original_repo_name(k)}", v) for k, v in synthetic.items()),
    }
    paths = {}
    for name, obj in forms.items():
        paths[name] = folder / f"{name}.pth"
        torch.save(obj, paths[name])
    return paths


@pytest.fixture(scope="module")
def cheap_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cheap")
    paths = {}
    for arch in ARCH_CONFIGS:
        paths[arch] = folder / f"{arch}_cheap.pth"
        torch.save({"state_dict": _cheap_state_dict(arch)}, paths[arch])
    return paths


def _expect_error(spec, arch: str, *patterns: str) -> str:
    with pytest.raises(UserError) as info:
        resolve_state_dict(str(spec), arch)
    message = str(info.value)
    for pattern in patterns:
        assert re.search(pattern, message), f"{pattern!r} not in: {message}"
    assert "\n" not in message, "the CLI prints a UserError as one line"
    return message


# ----------------------------------------------------------------------------------------------
# Zoo table


def test_zoo_table():
    assert len(ZOO_ENTRIES) == 3
    assert {e.alias for e in ZOO_ENTRIES} == {"w32_512", "w32_640", "w48_512"}
    for entry in ZOO_ENTRIES:
        assert isinstance(entry, ZooEntry)
        assert ZOO[entry.alias] is ZOO[entry.name] is entry
        assert entry.url == f"https://download.openmmlab.com/mmpose/bottom_up/{entry.filename}"
        assert re.fullmatch(r"[0-9a-f]{8}", entry.sha256_prefix) and f"-{entry.sha256_prefix}_" in entry.name
        assert entry.arch in ARCH_CONFIGS
        assert set(entry.metrics) == {"AP", "AP50", "AP75", "AR", "AR50", "AP_ms"}
    w32_512 = ZOO["higher_hrnet32_coco_512x512-8ae85183_20200713"]
    assert (w32_512.arch, w32_512.input_size, w32_512.sha256_prefix) == ("w32", 512, "8ae85183")
    assert dict(w32_512.metrics) == {"AP": 0.677, "AP50": 0.870, "AP75": 0.738, "AR": 0.723, "AR50": 0.890,
                                     "AP_ms": 0.706}
    assert (ZOO["w32_640"].input_size, ZOO["w32_640"].sha256_prefix, ZOO["w32_640"].metrics["AP"]) == (640, "a22fe938", 0.686)
    assert (ZOO["w48_512"].arch, ZOO["w48_512"].sha256_prefix, ZOO["w48_512"].metrics["AP_ms"]) == ("w48", "60fedcbc", 0.716)


# ----------------------------------------------------------------------------------------------
# Good paths


@pytest.mark.parametrize("form", ["mmpose", "bare", "original_repo", "module_prefix", "module_original_repo"])
def test_accepted_forms_load_identical_tensors(files, synthetic, form):
    state, provenance = resolve_state_dict(str(files[form]), "w32")
    assert provenance == _sha256(files[form])
    assert list(state) == list(synthetic)
    for key, value in synthetic.items():
        assert torch.equal(state[key], value), key
        assert state[key].dtype == value.dtype


def test_synthetic_equals_recipe_on_built_model(synthetic):
    template = build_model("w32").state_dict()
    expected = synthetic_state_dict(template, 0)
    assert list(synthetic) == list(template)  # returned in the model's key order
    assert all(torch.equal(synthetic[k], expected[k]) for k in expected)
    other, provenance = resolve_state_dict("synthetic:7", "w32")
    assert provenance == "synthetic:7"
    assert not torch.equal(other["backbone.conv1.weight"], synthetic["backbone.conv1.weight"])


def test_load_model_from_file_and_synthetic(files, synthetic):
    model, provenance = load_model("w32", str(files["original_repo"]))
    assert isinstance(model, HigherHRNet) and not model.training
    assert provenance == _sha256(files["original_repo"])
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], synthetic[k]) for k in synthetic)
    model2, provenance2 = load_model("w32", "synthetic:0")
    assert provenance2 == "synthetic:0"
    assert all(torch.equal(v, loaded[k]) for k, v in model2.state_dict().items())


# ----------------------------------------------------------------------------------------------
# Bad files


def test_w48_file_for_w32(cheap_files):
    message = _expect_error(cheap_files["w48"], "w32", re.escape(str(cheap_files["w48"])),
                            r"w48 checkpoint given for --arch w32\?", r"--arch w48",
                            r"\d+ with another shape", r"backbone\.")
    assert "missing" not in message and "unexpected" not in message  # same keys, other shapes


def test_w32_file_for_w48(cheap_files):
    _expect_error(cheap_files["w32"], "w48", r"w32 checkpoint given for --arch w48\?", r"--arch w32")


def test_missing_and_unexpected_keys_are_named(tmp_path):
    state = _cheap_state_dict("w32")
    del state["keypoint_head.final_layers.1.bias"]
    state["backbone.extra_layer.weight"] = torch.zeros(3)
    path = tmp_path / "edited.pth"
    torch.save(state, path)
    _expect_error(path, "w32", re.escape(str(path)), r"1 missing \(keypoint_head\.final_layers\.1\.bias\)",
                  r"1 unexpected \(backbone\.extra_layer\.weight\)")


def test_foreign_state_dict(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"fc.weight": torch.zeros(2, 2), "fc.bias": torch.zeros(2)}, path)
    _expect_error(path, "w32", r"1810 missing", r"2 unexpected \(fc\.weight, fc\.bias\)",
                  r"does not look like a HigherHRNet")


def test_no_state_dict_inside(tmp_path):
    path = tmp_path / "meta_only.pth"
    torch.save({"meta": {"epoch": 1}, "optimizer": {}}, path)
    _expect_error(path, "w32", re.escape(str(path)), r"holds no state dict", r"'meta'")


@pytest.mark.parametrize("fraction", [0.5, 0.01], ids=["half", "head"])
def test_truncated_file(tmp_path, cheap_files, fraction):
    data = cheap_files["w32"].read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[: int(len(data) * fraction)])
    _expect_error(path, "w32", re.escape(str(path)), r"truncated or corrupt", r"fetch it again")


def test_legacy_format_truncated(tmp_path):
    path = tmp_path / "legacy.pth"
    torch.save({"a": torch.zeros(10000)}, path, _use_new_zipfile_serialization=False)
    path.write_bytes(path.read_bytes()[:5000])
    _expect_error(path, "w32", r"truncated or corrupt")


class _RunsCode:
    """Unpickling this would run a shell command that creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


@pytest.mark.parametrize("how", ["torch_save", "pickle_protocol2", "pickle_protocol4"])
def test_pickle_carrying_code_is_refused_and_not_run(tmp_path, how):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    if how == "torch_save":
        torch.save({"state_dict": {"backbone.conv1.weight": torch.zeros(1)}, "hook": _RunsCode(marker)}, path)
    else:  # a plain pickle (no tensors: their own reduce function would be refused first)
        with open(path, "wb") as f:
            pickle.dump({"state_dict": {"w": [0.0]}, "hook": _RunsCode(marker)}, f, protocol=int(how[-1]))
    message = _expect_error(path, "w32", re.escape(str(path)), r"not a plain weights file",
                            r"trusted tensors-only checkpoints")
    if how != "pickle_protocol4":  # protocol 4 framing is rejected before the global is reached
        assert re.search(r"(posix|nt|os)\.system", message), message
    assert not marker.exists(), "the pickled command ran"


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere" / "model.pth"
    _expect_error(path, "w32", r"not found", re.escape(str(path)))


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pth"
    path.touch()
    _expect_error(path, "w32", re.escape(str(path)), r"empty \(0 bytes\)")


def test_directory(tmp_path):
    (tmp_path / "inside.pth").write_bytes(b"x")
    _expect_error(tmp_path, "w32", re.escape(str(tmp_path)), r"is a directory", r"inside\.pth")


def test_unknown_zoo_name():
    _expect_error("w64_512", "w32", r"'w64_512' is neither a file nor a zoo name", r"w32_512, w32_640, w48_512")


def test_zoo_name_for_other_arch():
    _expect_error("w48_512", "w32", r"'w48_512' is a w48 model", r"--arch w48", r"w32_512, w32_640")


def test_bad_synthetic_seed_and_arch():
    _expect_error("synthetic:abc", "w32", r"integer seed")
    _expect_error("synthetic:0", "w64", r"unknown arch 'w64'")


# ----------------------------------------------------------------------------------------------
# Zoo cache and download (no network is touched: the opener is replaced)


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("HRNET_DEPLOY_CACHE", str(folder))

    def offline(url):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(zoo, "_urlopen", offline)
    return folder


def test_cache_dir_default(monkeypatch):
    monkeypatch.delenv("HRNET_DEPLOY_CACHE", raising=False)
    assert zoo.cache_dir() == Path.home() / ".cache" / "hrnet-deploy"


@pytest.mark.parametrize("name", ["w32_512", "higher_hrnet32_coco_512x512-8ae85183_20200713"])
def test_zoo_without_network_says_what_to_do(cache, name):
    entry = ZOO[name]
    message = _expect_error(name, "w32", r"could not download", re.escape(entry.url),
                            re.escape(str(cache / entry.filename)), r"--checkpoint PATH", r"name resolution")
    assert "HRNET_DEPLOY_CACHE" in message
    assert not [p for p in cache.iterdir()], "no partial download may stay behind"


def test_zoo_cached_file_with_wrong_hash_is_rejected(cache, cheap_files):
    entry = ZOO["w32_512"]
    cache.mkdir(parents=True)
    target = cache / entry.filename
    target.write_bytes(cheap_files["w32"].read_bytes())
    _expect_error("w32_512", "w32", re.escape(str(target)), r"sha256", entry.sha256_prefix, r"delete it")


def _fake_entry(path: Path, name: str = "fake_512") -> ZooEntry:
    return ZooEntry(name=f"{name}_file", alias=name, url=f"https://example.invalid/{name}_file.pth",
                    sha256_prefix=_sha256(path)[:8], arch="w32", input_size=512, metrics={"AP": 0.0})


def test_zoo_cached_file_with_right_hash_loads(cache, files, synthetic, monkeypatch):
    entry = _fake_entry(files["mmpose"])
    monkeypatch.setitem(ZOO, entry.alias, entry)
    cache.mkdir(parents=True)
    (cache / entry.filename).write_bytes(files["mmpose"].read_bytes())
    state, provenance = resolve_state_dict(entry.alias, "w32")
    assert provenance == _sha256(files["mmpose"])
    assert all(torch.equal(state[k], synthetic[k]) for k in synthetic)


def test_zoo_download_is_verified_and_renamed(cache, files, synthetic, monkeypatch):
    entry = _fake_entry(files["bare"])
    monkeypatch.setitem(ZOO, entry.alias, entry)
    served = []

    def serve(url):
        served.append(url)
        return io.BytesIO(files["bare"].read_bytes())

    monkeypatch.setattr(zoo, "_urlopen", serve)
    state, provenance = resolve_state_dict(entry.alias, "w32")
    assert served == [entry.url]
    assert provenance == _sha256(files["bare"])
    assert sorted(p.name for p in cache.iterdir()) == [entry.filename]
    assert torch.equal(state["backbone.conv1.weight"], synthetic["backbone.conv1.weight"])
    resolve_state_dict(entry.alias, "w32")  # second use reads the cache
    assert len(served) == 1


def test_zoo_download_with_wrong_hash_leaves_nothing(cache, cheap_files, files, monkeypatch):
    entry = _fake_entry(files["bare"])
    monkeypatch.setitem(ZOO, entry.alias, entry)
    monkeypatch.setattr(zoo, "_urlopen", lambda url: io.BytesIO(cheap_files["w32"].read_bytes()))
    _expect_error(entry.alias, "w32", r"downloaded .* has sha256", entry.sha256_prefix)
    assert not list(cache.iterdir())
