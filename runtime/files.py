"""Files the toolkit writes and reads back: atomic writes, content hashes, the cache folder."""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from runtime.errors import UserError

CACHE_ENV = "HRNET_DEPLOY_CACHE"


def cache_dir() -> Path:
    """Downloads and caches: ``$HRNET_DEPLOY_CACHE`` or ``~/.cache/hrnet-deploy``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hrnet-deploy"


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place (``publish``)."""
    temporary = write_temporary(path, data)
    try:
        publish(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_temporary(target: str | Path, data: bytes) -> Path:
    """``data`` in a new temporary file beside ``target``, for ``publish`` to rename onto it later
    (several outputs can be written first and published together)."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise UserError(f"{target}: cannot write here ({exc.strerror}); choose another output path") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def publish(temporary: str | Path, target: str | Path) -> None:
    """Give a checked temporary file (``mkstemp`` makes it 0600) the permissions a plain new file
    would get under the current umask, then rename it onto ``target``."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(temporary, 0o666 & ~mask)
    os.replace(temporary, target)
