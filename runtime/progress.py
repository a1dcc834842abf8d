"""Progress of long loops, visible wherever the output goes.

On a terminal a tqdm bar; otherwise (CI logs, a file, a pipe) one line on stderr when the loop
starts and then at most every ``every_s`` seconds, so no step sits silent for minutes in a log.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

Item = TypeVar("Item")


def progress(items: Iterable[Item], total: int | None, label: str, unit: str = "img",
             every_s: float = 10.0) -> Iterator[Item]:
    """Yield ``items`` while reporting how many of ``total`` are done under ``label``."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        yield from tqdm(items, total=total, desc=label, unit=unit)
        return
    of = f"/{total}" if total else ""
    print(f"{label}: 0{of} {unit}", file=sys.stderr, flush=True)
    start = last = time.monotonic()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= every_s:
            last = now
            rate = done / (now - start)
            print(f"{label}: {done}{of} {unit} ({rate:.2f} {unit}/s)", file=sys.stderr, flush=True)
    print(f"{label}: {done}{of} {unit} done in {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
