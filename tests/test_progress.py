"""Progress lines in a non-terminal run (mutation tried: no line before the first item fails this)."""
from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_lines_appear_when_stderr_is_not_a_terminal():
    code = ("import time\nfrom runtime.progress import progress\n"
            "for _ in progress(range(3), 3, 'work', every_s=0.0):\n    time.sleep(0.01)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    lines = done.stderr.splitlines()
    assert done.returncode == 0 and lines[0] == "work: 0/3 img"
    assert [line.split(" (")[0] for line in lines[1:4]] == ["work: 1/3 img", "work: 2/3 img", "work: 3/3 img"]
    assert lines[-1].startswith("work: 3/3 img done in")


def test_rendered_coco_run_reports_progress_in_a_log():
    done = subprocess.run([sys.executable, "benchmarks/coco.py", "--rendered", "--limit", "2"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "rendered decode: 0/2 img" in done.stderr and "rendered decode: 2/2 img done in" in done.stderr


def test_one_long_call_reports_that_it_is_still_running():
    """``working``: a start line, "still running" lines while the call lasts, an end line (mutation tried:
    the background thread never started fails the "still running" check)."""
    code = ("import time\nfrom runtime.progress import working\n"
            "with working('checking', every_s=0.05):\n    time.sleep(0.3)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    lines = done.stderr.splitlines()
    assert done.returncode == 0 and lines[0] == "checking ..."
    assert len([line for line in lines if line.startswith("checking: still running (")]) >= 2
    assert lines[-1].startswith("checking: done in ")
