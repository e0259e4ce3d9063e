"""The ground floor of the command line: the parser whose usage errors are one-line ``XltError``s, the
option helper every sub-command uses, and the exit codes."""

from __future__ import annotations

import argparse
import re

from xlt.errors import ECHO_CHARS, XltError, echo

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a process Ctrl-C ended


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is an ``XltError`` like any other bad input: one line, exit code 2."""

    def error(self, message: str):
        message = re.sub(r"'([^']{%d,})'" % ECHO_CHARS, lambda m: echo(m[1]), message)  # a value as given: cut
        raise XltError(f"{message} (see {self.prog} --help)".replace("\n", " "))


def add_option(parser: argparse.ArgumentParser, *flags: str, help: str, shown: str | None = None,
               **kwargs) -> argparse.Action:
    """An option whose help line ends with "(default: X)" or "(required)"; ``shown`` overrides X."""
    from xlt.config import show_value

    action = parser.add_argument(*flags, **kwargs)
    tail = "required" if action.required else f"default: {shown if shown is not None else show_value(action.default)}"
    action.help = f"{help} ({tail})".replace("%", "%%")  # argparse %-formats help lines
    return action
