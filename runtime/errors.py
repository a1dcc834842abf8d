"""The exception types of the CLI boundary: mistakes a user can fix, a model that computes garbage,
and an interruption by a signal.

CLIs catch them at their boundary (``runtime.cli.run_cli``) and print one line on stderr: exit code 2
for a ``UserError``, 128 + the signal number for ``Interrupted``. Anything else is a bug.
"""
from __future__ import annotations

import signal


class UserError(Exception):
    """A problem with the user's input; the message names the file and the fix."""


class ModelFault(UserError):
    """The model file itself is unusable (e.g. it computes NaN): no image of the run can succeed."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; ``message`` says what is kept."""

    def __init__(self, signum: int = signal.SIGINT, message: str = "") -> None:
        super().__init__(message)
        self.signum, self.message = int(signum), message

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name


def require(module: str, extra: str):
    """Import an optional heavy dependency, or raise a UserError naming what to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise UserError(f"{module} is not installed: pip install 'hrnet-deploy[{extra}]' ({exc})") from None
