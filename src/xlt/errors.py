"""The one exception type for bad user input.

Anything the user can fix (a missing file, an unknown language, a label outside the label set)
raises :class:`XltError` with a one-line message; the CLI prints it and exits with code 2.
"""


class XltError(Exception):
    """Bad input or configuration that the user can fix; the message is one line."""
