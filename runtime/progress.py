"""Progress of long loops, visible wherever the output goes.

On a terminal a tqdm bar; otherwise (CI logs, a file, a pipe) one line on stderr when the loop
starts and then at most every ``every_s`` seconds, so no step sits silent for minutes in a log.
``working`` does the same for one long call that has no items to count.
"""
from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
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


@contextmanager
def working(label: str, every_s: float = 10.0, file=None) -> Iterator[None]:
    """Show that one long call (a model's first run, a reference check) is still going.

    On a terminal a tqdm counter of seconds; otherwise a line when it starts, one every ``every_s``
    seconds from a background thread while it runs, and one when it ends. ``file``: where the lines
    go (default stderr; a tool whose own stage lines are on stdout passes stdout, so its stderr keeps
    only errors)."""
    file = file or sys.stderr
    start = time.monotonic()
    stop = threading.Event()
    if file.isatty():
        from tqdm import tqdm

        bar = tqdm(desc=label, unit="s", bar_format="{desc}: {elapsed}", file=file)

        def tick() -> None:
            while not stop.wait(1.0):
                bar.refresh()
    else:
        bar = None
        print(f"{label} ...", file=file, flush=True)

        def tick() -> None:
            while not stop.wait(every_s):
                print(f"{label}: still running ({time.monotonic() - start:.0f} s)", file=file, flush=True)

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        if bar is not None:
            bar.close()
        else:
            print(f"{label}: done in {time.monotonic() - start:.1f} s", file=file, flush=True)
