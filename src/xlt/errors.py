"""The one exception type for bad user input, and one-line warnings for input xlt accepts but changes.

Anything the user can fix (a missing file, an unknown language, a label outside the label set)
raises :class:`XltError` with a one-line message; the CLI prints it and exits with code 2.
"""

from __future__ import annotations

import sys

_warned: set[str] = set()


class XltError(Exception):
    """Bad input or configuration that the user can fix; the message is one line."""


def warn(message: str) -> None:
    """``xlt: warning: ...`` on stderr, each distinct message once per process (files are read more than once)."""
    if message not in _warned:
        _warned.add(message)
        print(f"xlt: warning: {message}", file=sys.stderr)
