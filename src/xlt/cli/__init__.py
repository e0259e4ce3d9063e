"""The command line: ``xlt train|evaluate|demo|retrieval|merge|translate``."""

from xlt.cli.main import main

__all__ = ["main"]
