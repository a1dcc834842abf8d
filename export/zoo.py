"""The released HigherHRNet checkpoints: where they live, the cache that holds them, and the default.

Torch-free, so a CLI can say which weights it will use within a second of starting, before torch is
imported. ``ZOO`` is the single table of released weights that the CLIs, ``export.checkpoint`` and
the parity report read. A zoo file is downloaded once into ``runtime.files.cache_dir()`` (a
temporary file beside the target, renamed only once its sha256 matches the 8 hex digits in its
released name) and read from there afterwards.

``default_checkpoint`` is what a CLI uses when no ``--checkpoint`` is given: the released file for
the chosen arch and input size when it is cached or its server answers within a few seconds, else
``synthetic:0`` with one line saying why. ``$HRNET_DEPLOY_ZOO_URL`` replaces the download address's
folder (a mirror inside a closed network).
"""
from __future__ import annotations

import hashlib
import os
import socket
import sys
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from runtime.errors import UserError
from runtime.files import CACHE_ENV, cache_dir, file_sha256

SYNTHETIC_PREFIX = "synthetic:"
SYNTHETIC_DEFAULT = "synthetic:0"
ZOO_URL_ENV = "HRNET_DEPLOY_ZOO_URL"
# How long the default may wait for the zoo's server to accept a connection before it falls back.
REACH_SECONDS = 3.0


ZOO_BASE_URL = "https://download.openmmlab.com/mmpose/bottom_up/"
MULTISCALE_SCALES = (2, 1, 0.5)  # the scales of the published ``AP_ms``


@dataclass(frozen=True)
class ZooEntry:
    """One released checkpoint: where it lives, what it is, what it scored (SPEC §1, COCO val2017).

    ``metrics`` holds the published single-scale flip-test numbers ``AP``, ``AP50``, ``AP75``,
    ``AR``, ``AR50`` and ``AP_ms`` (multi-scale ``MULTISCALE_SCALES``).
    """

    name: str  # the file stem, e.g. higher_hrnet32_coco_512x512-8ae85183_20200713
    alias: str  # short name, e.g. w32_512
    url: str
    sha256_prefix: str  # the 8 hex digits in the file name: the file's sha256 starts with them
    arch: str
    input_size: int  # S: the short side of the network input
    metrics: Mapping[str, float] = field(hash=False)

    @property
    def filename(self) -> str:
        return self.name + ".pth"


def _entry(stem: str, alias: str, arch: str, size: int, ap, ap50, ap75, ar, ar50, ap_ms) -> ZooEntry:
    sha = stem.rsplit("-", 1)[1].split("_", 1)[0]
    metrics = {"AP": ap, "AP50": ap50, "AP75": ap75, "AR": ar, "AR50": ar50, "AP_ms": ap_ms}
    return ZooEntry(stem, alias, f"{ZOO_BASE_URL}{stem}.pth", sha, arch, size, MappingProxyType(metrics))


ZOO_ENTRIES: tuple[ZooEntry, ...] = (
    _entry("higher_hrnet32_coco_512x512-8ae85183_20200713", "w32_512", "w32", 512,
           0.677, 0.870, 0.738, 0.723, 0.890, 0.706),
    _entry("higher_hrnet32_coco_640x640-a22fe938_20200712", "w32_640", "w32", 640,
           0.686, 0.871, 0.747, 0.733, 0.898, 0.706),
    _entry("higher_hrnet48_coco_512x512-60fedcbc_20200712", "w48_512", "w48", 512,
           0.686, 0.873, 0.741, 0.731, 0.892, 0.716),
)

# Every accepted zoo name (file stem and alias) -> its entry.
ZOO: dict[str, ZooEntry] = {n: e for e in ZOO_ENTRIES for n in (e.name, e.alias)}


def zoo_path(name: str) -> Path:
    """The local file of a zoo checkpoint, downloading and verifying it on first use."""
    entry = _zoo_entry(name)
    return _fetch_zoo(entry)[0]


def _zoo_entry(name: str) -> ZooEntry:
    if name not in ZOO:
        raise UserError(f"unknown zoo checkpoint {name!r}: known names are {', '.join(ZOO)}")
    return ZOO[name]


# ----------------------------------------------------------------------------------------------
# Zoo cache and download


def _urlopen(url: str):
    """Open ``url`` for reading (the single network access of this module; tests replace it)."""
    return urllib.request.urlopen(url, timeout=60)


def _fetch_zoo(entry: ZooEntry) -> tuple[Path, str]:
    """Path and sha256 of the zoo file in the cache, downloading it first if it is not there."""
    target = cache_dir() / entry.filename
    if os.path.lexists(target):
        if target.is_dir() or not target.is_file():
            raise UserError(f"zoo checkpoint {target} is not a regular file: remove it and retry")
        digest = file_sha256(target)
        if not digest.startswith(entry.sha256_prefix):
            raise UserError(
                f"zoo checkpoint {target} has sha256 {digest[:16]}..., expected it to start with "
                f"{entry.sha256_prefix}: the file is corrupt, incomplete or a different checkpoint; delete it "
                f"and download {source_url(entry)} again (or pass --checkpoint PATH)")
        return target, digest
    return target, _download(entry, target)


def _download(entry: ZooEntry, target: Path) -> str:
    """Download ``entry`` to ``target`` (temporary file beside it, renamed when verified); return sha256."""
    manual = (f"download {source_url(entry)} yourself and save it as {target} (or set {CACHE_ENV} to the folder "
              f"holding {entry.filename}), or pass --checkpoint PATH to a local copy")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{entry.filename}.", suffix=".part", dir=target.parent)
    except OSError as exc:
        raise UserError(f"cannot write to the checkpoint cache {target.parent} ({exc}): {manual}") from None
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        try:
            with os.fdopen(fd, "wb") as out, _urlopen(source_url(entry)) as response:
                _copy_with_progress(response, out, digest, entry.filename)
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise UserError(f"could not download zoo checkpoint {entry.alias} ({reason}): {manual}") from None
        hexdigest = digest.hexdigest()
        if not hexdigest.startswith(entry.sha256_prefix):
            raise UserError(f"downloaded {source_url(entry)} has sha256 {hexdigest[:16]}..., expected it to start with "
                            f"{entry.sha256_prefix} (damaged transfer?): retry, or {manual}")
        os.replace(tmp, target)
        return hexdigest
    finally:
        if tmp.exists():
            tmp.unlink()


def _copy_with_progress(response, out, digest, label: str) -> None:
    from tqdm import tqdm

    headers = getattr(response, "headers", None)
    length = headers.get("Content-Length") if headers is not None else None
    total = int(length) if length and str(length).isdigit() else None
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
              disable=not sys.stdout.isatty()) as bar:
        while True:
            chunk = response.read(1 << 20)
            if not chunk:
                break
            out.write(chunk)
            digest.update(chunk)
            bar.update(len(chunk))


def zoo_entry_for(arch: str, input_size: int) -> ZooEntry | None:
    """The released checkpoint of ``arch`` trained at ``input_size``, if there is one."""
    return next((e for e in ZOO_ENTRIES if e.arch == arch and e.input_size == input_size), None)


def source_url(entry: ZooEntry) -> str:
    """Where ``entry`` is downloaded from: its release address, or the same file under ``$HRNET_DEPLOY_ZOO_URL``."""
    mirror = os.environ.get(ZOO_URL_ENV)
    return f"{mirror.rstrip('/')}/{entry.filename}" if mirror else entry.url


def default_checkpoint(arch: str, input_size: int) -> tuple[str, str | None]:
    """``(checkpoint spec, note)`` for a CLI run without ``--checkpoint``.

    The zoo alias when its file is cached or its server accepts a connection within
    ``REACH_SECONDS`` (the download itself then happens when the weights are loaded, with
    progress); otherwise ``synthetic:0`` and a one-line note saying why and how to get real weights.
    """
    entry = zoo_entry_for(arch, input_size)
    synthetic = f"using {SYNTHETIC_DEFAULT} (deterministic random weights, not a trained model)"
    if entry is None:
        return SYNTHETIC_DEFAULT, (f"no released checkpoint for HigherHRNet-{arch.upper()} at input {input_size}: "
                                   f"{synthetic}; pass --checkpoint PATH for your own")
    target = cache_dir() / entry.filename
    if target.is_file():
        return entry.alias, None
    url = source_url(entry)
    problem = _unreachable(url)
    if problem is None:
        return entry.alias, None
    return SYNTHETIC_DEFAULT, (f"the {entry.alias} checkpoint is not cached and {problem}: {synthetic}; for real "
                               f"weights save {url} as {target} or pass --checkpoint PATH")


def _unreachable(url: str, seconds: float = REACH_SECONDS) -> str | None:
    """Why ``url``'s server cannot be reached within ``seconds`` (name lookup included), or None."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            socket.create_connection((parts.hostname, port), timeout=seconds).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(exc.strerror or str(exc))

    probe = threading.Thread(target=connect, daemon=True)  # a hanging name lookup must not hold the CLI
    probe.start()
    probe.join(seconds)
    if not outcome:
        return f"{parts.hostname} did not answer within {seconds:g} s"
    return None if outcome[0] is None else f"{parts.hostname} cannot be reached ({outcome[0]})"


def cli_checkpoint(given: str | None, arch: str, input_size: int) -> str:
    """The ``--checkpoint`` a CLI runs with: the one given, else ``default_checkpoint``'s, whose note
    (why synthetic weights are used) goes to stdout as one line, beside the other notes of a run."""
    if given:
        return given
    spec, note = default_checkpoint(arch, input_size)
    if note:
        print(f"note: {note}", flush=True)
    return spec
