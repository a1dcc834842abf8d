"""The one exception type for mistakes a user can fix (bad file, wrong flag, missing package).

CLIs catch it at their boundary and print one line on stderr, exit code 2. Anything else is a bug.
"""
from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input; the message names the file and the fix."""


def require(module: str, extra: str):
    """Import an optional heavy dependency, or raise a UserError naming what to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise UserError(f"{module} is not installed: pip install 'hrnet-deploy[{extra}]' ({exc})") from None
