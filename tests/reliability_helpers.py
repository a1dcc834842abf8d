"""Small disks for the reliability tests: a tmpfs of 1 MiB (these machines run tests as root), filled to
a chosen number of free bytes, or a read-only one; where no tmpfs can be mounted, a file-size limit
(RLIMIT_FSIZE) stands in for the full disk; with neither the test skips and says why."""
from __future__ import annotations

import contextlib
import errno
import os
import resource
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class SmallDisk:
    """A folder where writes beyond ``free`` bytes fail: a filled tmpfs, or (``limit``) a file-size limit
    that ``preexec`` applies to a child process and ``limited()`` to this one."""

    path: Path
    limit: int | None = None

    def preexec(self):
        if self.limit is None:
            return None
        limit = self.limit
        return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    @contextlib.contextmanager
    def limited(self):
        if self.limit is None:
            yield
            return
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (self.limit, hard))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))

    def listing(self) -> list[str]:
        """What is in the folder, the filler left out."""
        return sorted(str(p.relative_to(self.path)) for p in self.path.rglob("*") if p.name != FILLER)


FILLER = ".filler"


def _mount(path: Path, options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


def _unmount(path: Path) -> None:
    subprocess.run(["umount", str(path)], capture_output=True)


def fill(path: Path, free: int) -> None:
    """Write a filler file until at most ``free`` bytes are left on the file system of ``path``."""
    with open(path / FILLER, "ab") as handle:
        while True:
            left = os.statvfs(path).f_bavail * os.statvfs(path).f_frsize
            if left <= free:
                return
            try:
                handle.write(b"\0" * min(left - free, 1 << 16))
                handle.flush()
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    return
                raise


@contextlib.contextmanager
def small_disk(folder: Path, free: int = 0, existing: dict[str, bytes] | None = None):
    """A ``SmallDisk`` at ``folder`` with about ``free`` bytes left, holding the ``existing`` files."""
    disk = folder / "disk"
    if _mount(disk, "size=1m"):
        try:
            for name, data in (existing or {}).items():
                (disk / name).write_bytes(data)
            fill(disk, free)
            yield SmallDisk(disk)
        finally:
            _unmount(disk)
        return
    disk.mkdir(parents=True, exist_ok=True)
    for name, data in (existing or {}).items():
        (disk / name).write_bytes(data)
    try:
        resource.getrlimit(resource.RLIMIT_FSIZE)
    except (ValueError, OSError) as exc:  # pragma: no cover - platform without RLIMIT_FSIZE
        pytest.skip(f"neither a tmpfs can be mounted here (not root?) nor a file-size limit set ({exc})")
    yield SmallDisk(disk, limit=max(free, 1))


@contextlib.contextmanager
def read_only_disk(folder: Path):
    """A read-only tmpfs (EROFS on every write, also for root); skips where none can be mounted."""
    disk = folder / "ro"
    if not _mount(disk, "size=64k,ro"):
        pytest.skip("no read-only tmpfs can be mounted here (mount needs root); the permission case is covered "
                    "by the full-disk tests")
    try:
        yield disk
    finally:
        _unmount(disk)
