"""The command line: ``xlt train|evaluate|demo|retrieval|merge|translate``."""

from xlt.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
