"""Files the toolkit writes and reads back: atomic writes, output checks, content hashes, the cache folder.

Every file the toolkit writes (results, pictures, models, engines, sidecars, caches, parity files) goes
through ``write_temporary``/``publish`` (or ``write_atomic``, both at once): the bytes go to a new
temporary file beside the target, are flushed to the disk, and only a complete file is renamed onto
the target. When the disk is full, the folder read-only or the file too large, the temporary file
and any folder made for it are removed, an existing target is left untouched, and the failure is a
``UserError`` naming the file and what the error number means. ``check_output_file`` and
``check_output_dir`` try the same before any long work.
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from runtime.errors import UserError

CACHE_ENV = "HRNET_DEPLOY_CACHE"

# What to do about the usual reasons a write fails; anything else gets the generic advice.
_ADVICE = {
    errno.ENOSPC: "free some space or choose another location",
    errno.EDQUOT: "free some of your disk quota or choose another location",
    errno.EFBIG: "the file is larger than this file system (or the process's file-size limit) allows; "
                 "choose another location",
    errno.EROFS: "this file system is read-only; choose another location",
    errno.EACCES: "choose a location you may write to",
    errno.EPERM: "choose a location you may write to",
}
# Error numbers that mean "this location cannot take the file", not a bug of ours.
WRITE_ERRNOS = frozenset((*_ADVICE, errno.EIO, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.EMLINK,
                          errno.ENOENT, errno.ELOOP, errno.EEXIST, errno.ETXTBSY, errno.EBUSY))


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


def write_error(target: str | Path, exc: OSError, flag: str = "") -> UserError:
    """One line for a failed write of ``target``: the file, what ``exc``'s error number means, the fix."""
    meaning = os.strerror(exc.errno) if exc.errno else str(exc)
    advice = _ADVICE.get(exc.errno, "choose another location")
    name = f"{flag} {target}" if flag else str(target)
    return UserError(f"{name}: cannot write it ({meaning}); {advice}")


def _make_parents(folder: Path, target: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; returns the ones created, deepest last."""
    missing = []
    probe = folder
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise UserError(f"{target}: {probe} is a file, not a folder; choose another output path")
    created = []
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            continue  # another writer made it meanwhile
        except OSError as exc:
            _remove_empty(created)
            raise write_error(target, exc) from None
        created.append(path)
    return created


def _remove_empty(folders: list[Path]) -> None:
    """Remove folders made for a write that failed (deepest first), where they are still empty."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            return


def _temporary_beside(target: Path, suffix: str = ".tmp") -> tuple[int, Path, list[Path]]:
    """A new temporary file in ``target``'s folder (made when missing): descriptor, path, folders made."""
    created = _make_parents(target.parent, target)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    except OSError as exc:
        _remove_empty(created)
        raise write_error(target, exc) from None
    return fd, Path(name), created


def write_temporary(target: str | Path, data: bytes) -> Path:
    """``data`` in a new temporary file beside ``target``, flushed to the disk, for ``publish`` to rename
    onto it later (several outputs can be written first and published together).

    A failed write removes the temporary file (and folders made for it) and raises a UserError."""
    target = Path(target)
    fd, temporary, created = _temporary_beside(target)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        _remove_empty(created)
        raise write_error(target, exc) from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        _remove_empty(created)
        raise
    return temporary


def temporary_beside(target: str | Path, suffix: str) -> Path:
    """An empty temporary file beside ``target`` ending in ``suffix``, for a writer that picks its format by
    the name and writes over time (a video); ``publish`` it when complete, unlink it otherwise."""
    fd, temporary, _ = _temporary_beside(Path(target), suffix)
    os.close(fd)
    return temporary


def write_with(target: str | Path, writer: Callable[[Path], None]) -> None:
    """Atomically write ``target`` with a library's own file writer: ``writer(path)`` fills a temporary
    file beside ``target``, which is then published; a failure leaves ``target`` untouched."""
    target = Path(target)
    fd, temporary, created = _temporary_beside(target)
    os.close(fd)
    try:
        writer(temporary)
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        _remove_empty(created)
        raise write_error(target, exc) from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        _remove_empty(created)
        raise
    publish(temporary, target)


def publish(temporary: str | Path, target: str | Path) -> None:
    """Give a checked temporary file (``mkstemp`` makes it 0600) the permissions a plain new file
    would get under the current umask, then rename it onto ``target``. On failure the temporary file
    is removed, ``target`` is left untouched, and a UserError names it."""
    mask = os.umask(0)
    os.umask(mask)
    try:
        os.chmod(temporary, 0o666 & ~mask)
        os.replace(temporary, target)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        if Path(target).is_dir():
            raise UserError(f"{target}: is a directory; give a file name for the output") from None
        raise write_error(target, exc) from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place (``publish``)."""
    publish(write_temporary(path, data), path)


def _existing_folder(path: Path, shown: str) -> Path:
    """The nearest existing folder at or above ``path``; a UserError when a file stands in the way."""
    probe = path if str(path) else Path(".")
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{shown}: {probe} is a file, not a folder; choose another output path")
    return probe


def _probe(folder: Path, shown: str, need_bytes: int) -> None:
    """Write one byte to a temporary file in ``folder`` (and remove it), so a read-only, full or
    forbidden location fails at once with one line; then compare the free space with ``need_bytes``."""
    try:
        fd, name = tempfile.mkstemp(prefix=".hrnet-deploy-probe.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise write_error(shown, exc) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(b"\0")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise write_error(shown, exc) from None
    finally:
        Path(name).unlink(missing_ok=True)
    if need_bytes:
        free = shutil.disk_usage(folder).free
        if free < need_bytes:
            raise UserError(f"{shown}: cannot write it (needs about {need_bytes / 2**20:.0f} MiB, {free / 2**20:.1f} "
                            f"MiB free on {folder}); free some space or choose another location")


def check_output_file(path: str | Path, flag: str = "", need_bytes: int = 0) -> None:
    """Fail at once, before any long work, when ``path`` cannot be written as a file (it is a folder, a file
    stands where a folder must be, the location is read-only, full, forbidden, or has less than
    ``need_bytes`` free). Nothing is left behind: no folder is made, the probe file is removed."""
    path = Path(path)
    shown = f"{flag} {path}" if flag else str(path)
    if path.is_dir():
        raise UserError(f"{shown}: is a directory; give a file name for the output")
    _probe(_existing_folder(path.parent, shown), shown, need_bytes)


def check_output_dir(path: str | Path, flag: str = "") -> None:
    """Like ``check_output_file`` for a folder that files will be written into (made when missing)."""
    path = Path(path)
    shown = f"{flag} {path}" if flag else str(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{shown}: is a file, not a folder; give a folder for the output")
    _probe(_existing_folder(path, shown), shown, 0)
