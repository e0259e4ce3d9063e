"""The one exception type for bad user input, and one-line warnings for input xlt accepts but changes.

Anything the user can fix (a missing file, an unknown language, a label outside the label set)
raises :class:`XltError` with a one-line message; the CLI prints it and exits with code 2.
"""

from __future__ import annotations

import reprlib
import sys

ECHO_CHARS = 80  # the most characters of a user's value an error message repeats
_warned: set[str] = set()
_bounded = reprlib.Repr()  # a repr that stops early: a 200,000-element list costs no more than a short one
_bounded.maxlevel, _bounded.maxlist, _bounded.maxtuple, _bounded.maxdict = 3, 10, 10, 10
_bounded.maxset = _bounded.maxfrozenset = 10
_bounded.maxstring = _bounded.maxother = _bounded.maxlong = ECHO_CHARS


class XltError(Exception):
    """Bad input or configuration that the user can fix; the message is one line."""


def clip(text: str) -> str:
    """``text`` as an error message shows it unquoted: at most ``ECHO_CHARS`` characters, a cut marked "…"."""
    return text if len(text) <= ECHO_CHARS else text[: ECHO_CHARS - 1] + "…"


def echo(value: object) -> str:
    """``repr(value)`` as an error message repeats it: at most ``ECHO_CHARS`` characters, a cut marked
    with "…", so a long or huge value (a YAML list of 200,000 numbers) still makes a short line."""
    try:
        text = repr(value[: ECHO_CHARS + 1]) if isinstance(value, str) else _bounded.repr(value)
    except ValueError:  # an int past Python's 4,300-digit str() limit, maybe inside a list
        text = f"<a {type(value).__name__} too large to show>"
    return clip(text)


def warn(message: str) -> None:
    """``xlt: warning: ...`` on stderr, each distinct message once per process (files are read more than once)."""
    if message not in _warned:
        _warned.add(message)
        print(f"xlt: warning: {message}", file=sys.stderr)
