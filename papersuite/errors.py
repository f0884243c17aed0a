"""User-facing errors.

A `UserError` is a problem with what the user gave us (a missing file, a malformed line, an unknown
model). The CLI prints it as one line on stderr and exits with code 2; anything else is a bug and
gets a short message plus the path of a full traceback log, exit code 1.
"""
from __future__ import annotations

try:  # typer >= 0.2x vendors its own click; its exceptions are the ones typer catches
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer uses the click package
    from click import exceptions as click_exceptions


class UserError(click_exceptions.ClickException):
    """Bad input: one clear line naming the problem and where it is, exit code 2.

    Subclassing ClickException lets typer's CliRunner and click's own machinery see exit code 2
    too; `cli.py` prints it as a single line without rich panels.
    """

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)

    def __str__(self) -> str:  # one line, always
        return " ".join(self.message.split("\n"))


def require(condition: bool, message: str, *, where: str | None = None) -> None:
    """Raise `UserError(message)` unless `condition` holds: validation at the boundary."""
    if not condition:
        raise UserError(message, where=where)
