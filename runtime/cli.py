"""What every command-line tool of the toolkit shares: scale parsing and the error boundary.

``run_cli`` is the one boundary of every entry point (runtime.run, export.onnx, export.trt, calib, the
benchmark scripts). Whatever the user did wrong ends as one line on stderr, never a traceback:

  exit 0    success
  exit 2    a usage error, bad input, a model file that cannot be used, an output that cannot be written
  exit 3    runtime.run finished, but skipped some images (one line each on stderr)
  exit 130  interrupted by SIGINT (Ctrl-C), 143 by SIGTERM; finished work is kept (the line says where)
"""
from __future__ import annotations

import argparse
import math
import signal
import sys
from collections.abc import Callable

from runtime.errors import Interrupted, UserError

EXIT_USER_ERROR = 2
EXIT_SKIPPED = 3


def parse_scales(text: str) -> tuple[float, ...]:
    """``"2,1,0.5"`` → ``(2.0, 1.0, 0.5)``; finite numbers within ``SCALE_RANGE`` only, so an impossible
    value is refused while the arguments are parsed, before any work (including 1 is checked later)."""
    from runtime.metadata import SCALE_RANGE

    example = "give comma-separated numbers, e.g. 2,1,0.5"
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--scales {text!r}: {example}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"--scales {text!r}: {example}")
    low, high = SCALE_RANGE
    bad = [v for v in values if not (math.isfinite(v) and low <= v <= high)]
    if bad:
        raise argparse.ArgumentTypeError(f"--scales {text!r}: {bad[0]!r} is outside {low:g}..{high:g}; every scale "
                                         f"must be a finite number from {low:g} to {high:g}, e.g. 2,1,0.5")
    return values


def check_scales(scales: tuple[float, ...]) -> tuple[float, ...]:
    """Scales sorted largest first; a UserError naming the flag when they are unusable."""
    from runtime.metadata import DecodeConfig

    try:
        return DecodeConfig(scales=scales).scales
    except ValueError as error:
        raise UserError(f"--scales: {error}, e.g. --scales 2,1,0.5") from None


def examples(doc: str, readme_section: str, limit: int = 3) -> str:
    """A ``--help`` epilog: the first ``limit`` lines of the docstring's ``Examples:`` block and where README
    explains the rest (help stays short; the details live in one place)."""
    block = doc.split("Examples:", 1)[1].split("\n\n", 1)[0]
    lines = [line for line in block.splitlines() if line.strip()][:limit]
    return "Examples:\n" + "\n".join(lines) + f"\n\nDetails: README.md, section \"{readme_section}\"."


def _one_line_usage_error(parser: argparse.ArgumentParser) -> Callable[[str], None]:
    def error(message: str) -> None:
        text = " ".join(str(message).split())
        print(f"error: {text} (see {parser.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR)

    return error


def _raise_interrupted(signum: int, _frame) -> None:
    raise Interrupted(signum)


def _install_handlers() -> dict[int, object]:
    """SIGINT and SIGTERM raise ``Interrupted`` (in the main thread); returns the handlers replaced."""
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[signum] = signal.signal(signum, _raise_interrupted)
        except (ValueError, OSError):  # not the main thread: leave signals alone
            break
    return previous


def run_cli(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int],
            argv: list[str] | None = None, interrupted: str = "") -> int:
    """Parse, run, and turn every error a user can cause into one line on stderr and its exit code.

    ``interrupted`` is what the line says after an interruption when the tool itself adds nothing
    (e.g. that a rerun resumes)."""
    from runtime.files import WRITE_ERRNOS, write_error

    parser.error = _one_line_usage_error(parser)
    previous = _install_handlers()
    try:
        args = parser.parse_args(argv)
        return run(args)
    except UserError as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as stop:
        if not isinstance(stop, Interrupted):
            stop = Interrupted(signal.SIGINT)
        said = stop.message or interrupted or "nothing half-written was left behind"
        print(f"interrupted ({stop.signal_name}): {said}", file=sys.stderr)
        return stop.exit_code
    except OSError as exc:
        # A full disk, a read-only or vanished folder met by a library's own writer: the environment,
        # not a bug; the library's message would only repeat it inside a traceback.
        if exc.errno not in WRITE_ERRNOS or not exc.filename:
            raise
        print(f"error: {write_error(exc.filename, exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
