"""User-facing errors.

Anything a user can cause (a bad argument, a missing file, an existing output folder, missing
weights) is raised as :class:`UserError` with a one-line message that says what is wrong, which
file, and what to do. The CLI prints it as ``error: <message>`` and exits with status 2; it never
shows a traceback for these.
"""

from __future__ import annotations


class UserError(Exception):
    """An error caused by the user's input; its message is one line meant for the user."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class MissingWeightsError(UserError):
    """Pretrained weights are not in their cache folder and cannot be downloaded here."""
