"""Where HigherHRNet weights come from, and loading them strictly.

A checkpoint is named in one of three ways (the ``--checkpoint`` flag of every CLI):

* a path to a file: an mmpose 0.x checkpoint (``{'meta', 'state_dict', ...}``), a bare state dict,
  a file of the original HigherHRNet repo (same sub-names without the ``backbone.`` /
  ``keypoint_head.`` prefixes), any of them possibly with DataParallel's ``module.`` prefix;
* a zoo name (``export.zoo.ZOO``): one of the three released mmpose checkpoints, by file stem or
  short alias (``w32_512``, ``w32_640``, ``w48_512``), looked up in the cache folder and downloaded
  there once;
* ``synthetic:SEED``: deterministic weights from ``export.synthetic_weights`` (used by the goldens).

Files are read with ``torch.load(weights_only=True)``, so a file that carries pickled code is
refused instead of executed. The state dict is then checked against the model's own keys and shapes;
every problem a user can fix surfaces as one ``UserError`` naming the file and the fix.
"""
from __future__ import annotations

import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch

from export.model import ARCH_CONFIGS, HigherHRNet, build_model
from export.synthetic_weights import synthetic_state_dict
from export.zoo import SYNTHETIC_PREFIX, ZOO, ZOO_ENTRIES, _fetch_zoo
from runtime.errors import UserError
from runtime.files import file_sha256

# First component of an unprefixed (original HigherHRNet repo) key -> the mmpose prefix it gets.
_ORIGINAL_REPO_ROOTS = {
    **{root: "backbone." for root in ("conv1", "bn1", "conv2", "bn2", "layer1", "transition1", "transition2",
                                      "transition3", "stage2", "stage3", "stage4")},
    "final_layers": "keypoint_head.",
    "deconv_layers": "keypoint_head.",
}
_SHOW = 3  # names listed per kind of key problem
_CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".pkl", ".tar")


# ----------------------------------------------------------------------------------------------
# Public API


def resolve_state_dict(spec: str, arch: str) -> tuple[dict[str, torch.Tensor], str]:
    """Return ``(state dict with mmpose keys, provenance)`` for a checkpoint spec, checked strictly.

    ``spec`` is a file path, a zoo name or ``synthetic:SEED``. The provenance is the file's sha256
    (hex) or ``"synthetic:SEED"``. Every problem a user can fix raises ``UserError``.
    """
    return _resolve(spec, arch, _template(arch))


def load_model(arch: str, checkpoint: str) -> tuple[HigherHRNet, str]:
    """Build ``arch``, load ``checkpoint`` strictly, return ``(model in eval mode, provenance)``."""
    model = build_model(arch)
    state, provenance = _resolve(checkpoint, arch, model.state_dict())
    model.load_state_dict(state, strict=True)
    return model.eval(), provenance


# ----------------------------------------------------------------------------------------------
# Resolution


def _template(arch: str) -> dict[str, torch.Tensor]:
    """Keys, shapes and dtypes of ``arch``'s state dict, without allocating weights."""
    _check_arch(arch)
    with torch.device("meta"):
        return HigherHRNet(ARCH_CONFIGS[arch]).state_dict()


def _check_arch(arch: str) -> None:
    if arch not in ARCH_CONFIGS:
        raise UserError(f"unknown arch {arch!r}: choose one of {', '.join(sorted(ARCH_CONFIGS))}")


def _resolve(spec: str, arch: str, template: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    _check_arch(arch)
    spec = os.fspath(spec)
    if spec.startswith(SYNTHETIC_PREFIX):
        seed_text = spec[len(SYNTHETIC_PREFIX):]
        try:
            seed = int(seed_text)
        except ValueError:
            raise UserError(f"checkpoint {spec!r}: synthetic weights need an integer seed, e.g. synthetic:0") from None
        state = synthetic_state_dict(dict(template), seed)  # drawn in sorted key order
        return {key: state[key] for key in template}, f"{SYNTHETIC_PREFIX}{seed}"
    path = Path(spec).expanduser()
    if not os.path.lexists(path) and spec in ZOO:
        entry = ZOO[spec]
        if entry.arch != arch:
            same = ", ".join(e.alias for e in ZOO_ENTRIES if e.arch == arch) or "none"
            raise UserError(f"zoo checkpoint {spec!r} is a {entry.arch} model, not {arch}: pass --arch {entry.arch}, "
                            f"or pick a {arch} checkpoint ({same})")
        path, digest = _fetch_zoo(entry)
        return _load_file(path, arch, template), digest
    if not os.path.lexists(path) and not _looks_like_path(spec):
        names = ", ".join(e.alias for e in ZOO_ENTRIES)
        raise UserError(f"checkpoint {spec!r} is neither a file nor a zoo name: use a zoo name ({names}, or a "
                        f"zoo file name without .pth), a path to a .pth file, or synthetic:SEED")
    return _load_file(path, arch, template), file_sha256(path)


def _looks_like_path(spec: str) -> bool:
    return os.sep in spec or "/" in spec or spec.lower().endswith(_CHECKPOINT_SUFFIXES) or spec.startswith(("~", "."))


# ----------------------------------------------------------------------------------------------
# Reading a file


def _load_file(path: Path, arch: str, template: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    obj = _read(path)
    state = _normalize_keys(path, _extract_state_dict(path, obj))
    _check_against(path, arch, state, template)
    return {key: state[key] for key in template}  # the model's key order


def _read(path: Path) -> Any:
    if not os.path.lexists(path):
        raise UserError(f"checkpoint file not found: {path} (give an existing .pth file, a zoo name such as "
                        f"{ZOO_ENTRIES[0].alias}, or synthetic:SEED)")
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.suffix in _CHECKPOINT_SUFFIXES)[:_SHOW]
        also = f" (it holds {', '.join(inside)})" if inside else ""
        raise UserError(f"checkpoint {path} is a directory{also}: give the path of the checkpoint file itself")
    if not path.exists():
        raise UserError(f"checkpoint {path} is a broken link: point --checkpoint at the real file")
    if path.stat().st_size == 0:
        raise UserError(f"checkpoint {path} is empty (0 bytes), likely an interrupted download or copy: fetch it again")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols it then reads or refuses
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UserError(_unpickling_message(path, exc)) from None
    except Exception as exc:  # torch reports damaged archives with many exception types
        raise UserError(f"could not read checkpoint {path}: the file is truncated or corrupt "
                        f"({type(exc).__name__}: {_first_sentence(exc)}); fetch it again") from None


def _unpickling_message(path: Path, exc: Exception) -> str:
    text = str(exc)
    resave = ("if you trust its source, re-save only its tensors once with "
              "torch.save(torch.load(PATH, weights_only=False)['state_dict'], NEW_PATH) and load NEW_PATH")
    found = re.search(r"GLOBAL\s+([\w.]+)", text)
    if found:
        return (f"checkpoint {path} is not a plain weights file: it names the Python object {found.group(1)}, "
                f"and unpickling named objects can run arbitrary code, so torch.load(weights_only=True) refused "
                f"it. Only trusted tensors-only checkpoints load; {resave}")
    detail = re.search(r"Unsupported operand \d+|invalid load key[^.\n]*", text)
    reason = detail.group(0) if detail else "unpickling failed"
    return (f"checkpoint {path} is not a plain weights file ({reason}): it is corrupt, not a PyTorch checkpoint, "
            f"or a pickle carrying code. Only trusted tensors-only checkpoints load; fetch the file again, or {resave}")


def _first_sentence(exc: Exception) -> str:
    text = " ".join(str(exc).split()) or "no details"
    return text.split(". ", 1)[0][:200]


def _extract_state_dict(path: Path, obj: Any) -> Mapping[str, Any]:
    if isinstance(obj, Mapping):
        inner = obj.get("state_dict")
        if isinstance(inner, Mapping):
            return inner
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
        top = ", ".join(repr(k) for k in list(obj)[:2 * _SHOW])
        raise UserError(f"checkpoint {path} holds no state dict: expected an mmpose checkpoint with a 'state_dict' "
                        f"entry or a mapping of names to tensors, found entries {top or '(none)'}")
    raise UserError(f"checkpoint {path} holds a {type(obj).__name__}, not a state dict: save model.state_dict() "
                    f"or an mmpose checkpoint")


def _normalize_keys(path: Path, state: Mapping[str, Any]) -> dict[str, Any]:
    """mmpose key names for mmpose, original-repo and ``module.``-prefixed files."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        name = str(key)
        if name.startswith("module."):
            name = name[len("module."):]
        prefix = _ORIGINAL_REPO_ROOTS.get(name.split(".", 1)[0])
        if prefix:
            name = prefix + name
        if name in out:
            raise UserError(f"checkpoint {path} holds {name!r} twice (with and without a prefix): "
                            f"keep one copy of the weights")
        out[name] = value
    return out


def _check_against(path: Path, arch: str, state: Mapping[str, Any], template: Mapping[str, torch.Tensor]) -> None:
    missing = [k for k in template if k not in state]
    unexpected = [k for k in state if k not in template or not isinstance(state[k], torch.Tensor)]
    misshaped = [k for k in template if isinstance(state.get(k), torch.Tensor) and state[k].shape != template[k].shape]
    if not (missing or unexpected or misshaped):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing ({_names(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({_names(unexpected)})")
    if misshaped:
        shown = ", ".join(f"{k} {list(state[k].shape)} vs {list(template[k].shape)}" for k in misshaped[:_SHOW])
        more = ", ..." if len(misshaped) > _SHOW else ""
        parts.append(f"{len(misshaped)} with another shape (file vs model: {shown}{more})")
    raise UserError(f"checkpoint {path} does not match HigherHRNet-{arch} "
                    f"({len(template)} keys): {'; '.join(parts)}. {_hint(arch, state, template)}")


def _names(keys: list[str]) -> str:
    return ", ".join(keys[:_SHOW]) + (", ..." if len(keys) > _SHOW else "")


def _hint(arch: str, state: Mapping[str, Any], template: Mapping[str, torch.Tensor]) -> str:
    width = _file_width(state)
    other = next((a for a, cfg in ARCH_CONFIGS.items() if cfg.width == width), None)
    if other is not None and other != arch:
        return f"This looks like a {other} checkpoint given for --arch {arch}? Pass --arch {other}."
    if not any(k in template for k in state):
        return ("It does not look like a HigherHRNet pose checkpoint (mmpose, original repo or module.-prefixed): "
                "check the file.")
    if not any(k.startswith("keypoint_head.") for k in state):
        return "The file has no keypoint head (a backbone-only or ImageNet file?): use a COCO pose checkpoint."
    return "Use an unmodified HigherHRNet COCO checkpoint of mmpose 0.x or of the original repo."


def _file_width(state: Mapping[str, Any]) -> int | None:
    """C of the file's network, read from keys whose shape gives it away, or None."""
    probes = (("keypoint_head.final_layers.1.weight", 1), ("backbone.transition1.0.0.weight", 0),
              ("keypoint_head.final_layers.0.weight", 1))
    for key, dim in probes:
        value = state.get(key)
        if isinstance(value, torch.Tensor) and value.dim() > dim:
            return int(value.shape[dim])
    return None
