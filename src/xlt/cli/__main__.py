"""``python -m xlt.cli``: the ``xlt`` command."""

from xlt.cli.main import entry

entry()
