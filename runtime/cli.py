"""What every command-line tool of the toolkit shares: scale parsing and the user-error boundary."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from runtime.errors import UserError


def parse_scales(text: str) -> tuple[float, ...]:
    """``"2,1,0.5"`` → ``(2.0, 1.0, 0.5)`` (validated later by ``DecodeConfig``)."""
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--scales {text!r}: give comma-separated numbers, e.g. 2,1,0.5") from None


def check_scales(scales: tuple[float, ...]) -> tuple[float, ...]:
    """Scales sorted largest first; a UserError naming the flag when they are unusable."""
    from runtime.metadata import DecodeConfig

    try:
        return DecodeConfig(scales=scales).scales
    except ValueError as error:
        raise UserError(f"--scales: {error}, e.g. --scales 2,1,0.5") from None


def run_cli(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int],
            argv: list[str] | None = None) -> int:
    """Parse, run, and turn a UserError into one line on stderr with exit code 2."""
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
